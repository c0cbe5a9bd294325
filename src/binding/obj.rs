//! Reading MicroPython objects without raising: every accessor checks the
//! type first and answers None for anything else.
use super::ffi::*;
use core::slice;

/// What kind of buffer an object is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum BufKind {
    Str,
    Bytes,
    ByteArray,
}

/// The UTF-8 data of a `str` (interned or on the heap).
///
/// # Safety
/// `o` must be a valid object; the slice lives as long as the object.
pub unsafe fn str_data<'a>(o: Obj) -> Option<&'a [u8]> {
    if is_qstr(o) {
        let mut len: usize = 0;
        let p = qstr_data(qstr_value(o), &mut len);
        return Some(slice::from_raw_parts(p, len));
    }
    if is_type(o, &mp_type_str) {
        let s = o as *const mp_obj_str_t;
        return Some(slice::from_raw_parts((*s).data, (*s).len));
    }
    None
}

/// The bytes of a `str`, `bytes` or `bytearray`.
///
/// # Safety
/// As for [`str_data`]; a bytearray's slice is only valid until it is resized.
pub unsafe fn buffer_data<'a>(o: Obj) -> Option<(&'a [u8], BufKind)> {
    if let Some(s) = str_data(o) {
        return Some((s, BufKind::Str));
    }
    if is_type(o, &mp_type_bytes) {
        let s = o as *const mp_obj_str_t;
        return Some((slice::from_raw_parts((*s).data, (*s).len), BufKind::Bytes));
    }
    if is_type(o, &mp_type_bytearray) {
        let a = o as *const mp_obj_array_t;
        let len = (*a).len;
        if len == 0 {
            return Some((&[], BufKind::ByteArray));
        }
        return Some((slice::from_raw_parts((*a).items as *const u8, len), BufKind::ByteArray));
    }
    None
}

/// A small int's value (every int this module accepts is small).
pub fn int_value(o: Obj) -> Option<isize> {
    if is_small_int(o) {
        Some(small_int_value(o))
    } else {
        None
    }
}

/// True/False (or an int 0/1).
pub fn bool_value(o: Obj) -> Option<bool> {
    if o == true_() {
        Some(true)
    } else if o == false_() {
        Some(false)
    } else {
        match int_value(o) {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        }
    }
}

/// Whether `o` is a heap int too large for a small int.
///
/// # Safety
/// `o` must be a valid object.
pub unsafe fn is_big_int(o: Obj) -> bool {
    is_type(o, &mp_type_int)
}

/// The items of a tuple or a list.
///
/// # Safety
/// `o` must be a valid object; a list's slice is only valid until it changes.
pub unsafe fn seq_items<'a>(o: Obj) -> Option<(&'a [Obj], bool)> {
    if is_type(o, &mp_type_tuple) {
        let t = o as *const mp_obj_tuple_t;
        let n = (*t).len;
        return Some((slice::from_raw_parts((*t).items.as_ptr(), n), true));
    }
    if is_type(o, &mp_type_list) {
        let l = o as *const mp_obj_list_t;
        let n = (*l).len;
        if n == 0 {
            return Some((&[], false));
        }
        return Some((slice::from_raw_parts((*l).items, n), false));
    }
    None
}

/// The (key, value) pairs of a dict, in table order.
///
/// # Safety
/// `o` must be a valid object, the dict unchanged while iterating.
pub unsafe fn dict_entries<'a>(o: Obj) -> Option<impl Iterator<Item = (Obj, Obj)> + 'a> {
    if !is_type(o, &mp_type_dict) {
        return None;
    }
    let d = o as *const mp_obj_dict_t;
    let map = &(*d).map;
    let table: &[mp_map_elem_t] = if map.alloc == 0 || map.table.is_null() {
        &[]
    } else {
        slice::from_raw_parts(map.table, map.alloc)
    };
    // Empty slots hold MP_OBJ_NULL, deleted ones MP_OBJ_SENTINEL (4).
    Some(table.iter().filter(|e| !e.key.is_null() && e.key as usize != 4).map(|e| (e.key, e.value)))
}
