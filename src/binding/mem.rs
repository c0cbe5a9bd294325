//! Memory the engine uses, allocated on the MicroPython heap without raising
//! (gc_alloc answers NULL when out of memory). Blocks are referenced from the
//! client's own GC block, so the collector keeps them, and it scans them, so
//! the Python objects stored in queued requests stay alive.
use super::ffi::*;
use crate::proto::codec::Sink;
use crate::proto::engine::Queue;
use core::mem::{size_of, MaybeUninit};
use core::ptr;

unsafe fn alloc_bytes(n: usize) -> *mut u8 {
    gc_alloc(n, 0) as *mut u8
}

unsafe fn free_bytes(p: *mut u8) {
    if !p.is_null() {
        gc_free(p as *mut _);
    }
}

/// An order-keeping ring buffer on the GC heap that grows by doubling and gives
/// memory back with `trim`.
pub struct GcQueue<T> {
    buf: *mut MaybeUninit<T>,
    cap: usize,
    head: usize,
    len: usize,
}

impl<T> GcQueue<T> {
    pub const fn new() -> Self {
        GcQueue { buf: ptr::null_mut(), cap: 0, head: 0, len: 0 }
    }

    fn slot(&self, i: usize) -> *mut MaybeUninit<T> {
        // i < cap is checked by the callers
        unsafe { self.buf.add((self.head + i) % self.cap) }
    }

    fn grow(&mut self) -> bool {
        let new_cap = if self.cap == 0 { QUEUE_MIN_CAP } else { self.cap.saturating_mul(2) };
        self.resize(new_cap)
    }

    /// Moves the elements into a new block of `new_cap` (>= len) slots.
    fn resize(&mut self, new_cap: usize) -> bool {
        let bytes = match new_cap.checked_mul(size_of::<T>()) {
            Some(b) => b,
            None => return false,
        };
        unsafe {
            let nb = alloc_bytes(bytes) as *mut MaybeUninit<T>;
            if nb.is_null() {
                return false;
            }
            for i in 0..self.len {
                ptr::copy_nonoverlapping(self.slot(i), nb.add(i), 1);
            }
            free_bytes(self.buf as *mut u8);
            self.buf = nb;
        }
        self.cap = new_cap;
        self.head = 0;
        true
    }

    /// Whether `trim` would give memory back.
    pub fn oversized(&self) -> bool {
        self.cap > QUEUE_MIN_CAP && self.len <= self.cap / 4
    }

    /// Gives memory back after a burst: a block at most a quarter full moves to one
    /// twice the length (never below the first block's size, so a steady flow of a few
    /// elements does not allocate each time). A failed allocation keeps the bigger block.
    pub fn trim(&mut self) {
        if self.oversized() {
            let want = self.len.saturating_mul(2).max(QUEUE_MIN_CAP).next_power_of_two();
            self.resize(want);
        }
    }
}

/// Slots of a queue's first block.
const QUEUE_MIN_CAP: usize = 4;

impl<T> Queue<T> for GcQueue<T> {
    fn len(&self) -> usize {
        self.len
    }
    fn get(&self, i: usize) -> Option<&T> {
        if i < self.len {
            Some(unsafe { (*self.slot(i)).assume_init_ref() })
        } else {
            None
        }
    }
    fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        if i < self.len {
            Some(unsafe { (*self.slot(i)).assume_init_mut() })
        } else {
            None
        }
    }
    fn push_back(&mut self, v: T) -> Result<(), T> {
        if self.len == self.cap && !self.grow() {
            return Err(v);
        }
        unsafe { (*self.slot(self.len)).write(v) };
        self.len += 1;
        Ok(())
    }
    fn remove(&mut self, i: usize) -> Option<T> {
        if i >= self.len {
            return None;
        }
        unsafe {
            let v = (*self.slot(i)).assume_init_read();
            if i == 0 {
                self.head = (self.head + 1) % self.cap;
            } else {
                for k in i..self.len - 1 {
                    ptr::copy_nonoverlapping(self.slot(k + 1), self.slot(k), 1);
                }
            }
            self.len -= 1;
            if self.len == 0 {
                self.head = 0;
            }
            Some(v)
        }
    }
}

/// Size of the send buffer's first block.
const SEND_MIN_CAP: usize = 128;

/// A growable byte buffer on the GC heap: the client's send buffer. It keeps
/// its first block between packets, so steady-state publishing of small
/// messages allocates nothing; a bigger block is given back by `trim`.
pub struct GcBuf {
    ptr: *mut u8,
    cap: usize,
    len: usize,
}

impl GcBuf {
    pub const fn new() -> Self {
        GcBuf { ptr: ptr::null_mut(), cap: 0, len: 0 }
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn clear(&mut self) {
        self.len = 0;
    }
    /// Whether `trim` would give memory back.
    pub fn oversized(&self) -> bool {
        self.len == 0 && self.cap > SEND_MIN_CAP
    }

    /// Frees a block that grew beyond the first size (after a burst or a large
    /// payload); the next packet allocates a small one again.
    pub fn trim(&mut self) {
        if self.oversized() {
            unsafe { free_bytes(self.ptr) };
            self.ptr = ptr::null_mut();
            self.cap = 0;
        }
    }
    pub fn get(&self, r: core::ops::RangeFrom<usize>) -> Option<&[u8]> {
        if self.ptr.is_null() || r.start > self.len {
            return if r.start == 0 { Some(&[]) } else { None };
        }
        Some(unsafe { core::slice::from_raw_parts(self.ptr.add(r.start), self.len - r.start) })
    }
    fn grow_for(&mut self, extra: usize) -> bool {
        let need = match self.len.checked_add(extra) {
            Some(n) => n,
            None => return false,
        };
        if need <= self.cap {
            return true;
        }
        let mut new_cap = if self.cap == 0 { SEND_MIN_CAP } else { self.cap };
        while new_cap < need {
            new_cap = match new_cap.checked_mul(2) {
                Some(c) => c,
                None => return false,
            };
        }
        unsafe {
            let nb = alloc_bytes(new_cap);
            if nb.is_null() {
                return false;
            }
            if self.len > 0 {
                ptr::copy_nonoverlapping(self.ptr, nb, self.len);
            }
            free_bytes(self.ptr);
            self.ptr = nb;
        }
        self.cap = new_cap;
        true
    }
}

impl Sink for GcBuf {
    fn reserve(&mut self, len: usize) -> bool {
        self.grow_for(len)
    }
    fn put(&mut self, bytes: &[u8]) -> bool {
        if bytes.is_empty() {
            return true;
        }
        if !self.grow_for(bytes.len()) {
            return false;
        }
        unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.add(self.len), bytes.len()) };
        self.len += bytes.len();
        true
    }
}

/// A value of `T` in its own GC block (no finaliser: `T` needs no drop), or null
/// when the heap is full.
pub unsafe fn gc_box<T>(v: T) -> *mut T {
    let p = alloc_bytes(size_of::<T>()) as *mut T;
    if !p.is_null() {
        ptr::write(p, v);
    }
    p
}

/// Frees a block made by `gc_box` (null: nothing) and nulls the pointer.
pub unsafe fn gc_unbox<T>(p: &mut *mut T) {
    free_bytes(*p as *mut u8);
    *p = ptr::null_mut();
}

/// A byte block of `n` bytes on the GC heap, or null.
pub unsafe fn gc_bytes(n: usize) -> *mut u8 {
    alloc_bytes(n)
}

/// Frees a block made by `gc_bytes` (null: nothing) and nulls the pointer.
pub unsafe fn gc_free_bytes(p: &mut *mut u8) {
    free_bytes(*p);
    *p = ptr::null_mut();
}
