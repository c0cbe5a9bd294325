//! The MicroPython binding layer (feature `firmware`): the `mqtt_rs_*`
//! functions the C shim calls (see mpy_module/mqtt/mqtt.h). None of them
//! raises or panics: errors go back in an `mqtt_status_t` and the C side
//! raises them, so a MicroPython exception never crosses a Rust frame.
pub mod client;
mod dispatch;
pub mod ffi;
pub mod mem;
pub mod obj;
mod options;
#[cfg(feature = "persistence")]
mod persist;
#[cfg(not(feature = "persistence"))]
#[path = "persist_off.rs"]
mod persist;
mod transport;
mod websocket;

use client::{set_status, ApiError, Client};
use core::mem::size_of;
use ffi::*;

fn st_result<T>(st: *mut mqtt_status_t, r: Result<T, ApiError>, dflt: T) -> T {
    match r {
        Ok(v) => v,
        Err(e) => {
            set_status(st, e);
            dflt
        }
    }
}

#[no_mangle]
pub extern "C" fn mqtt_rs_client_size() -> usize {
    size_of::<Client>()
}

/// # Safety
/// `rs` points to `mqtt_rs_client_size()` zeroed bytes, 8-aligned, in a GC block.
#[no_mangle]
pub unsafe extern "C" fn mqtt_rs_client_init(
    rs: *mut core::ffi::c_void,
    url: Obj,
    client_id: Obj,
    persistence: Obj,
    slot: i32,
    st: *mut mqtt_status_t,
) {
    let r = Client::init(rs as *mut Client, url, client_id, persistence, slot);
    st_result(st, r, ())
}

/// # Safety
/// `rs` is a client made by `mqtt_rs_client_init` (or zeroed: then nothing happens).
#[no_mangle]
pub unsafe extern "C" fn mqtt_rs_client_deinit(rs: *mut core::ffi::c_void, initialised: bool) {
    if initialised {
        (*(rs as *mut Client)).deinit();
    }
}

/// # Safety
/// `rs` is a live client.
#[no_mangle]
pub unsafe extern "C" fn mqtt_rs_client_print(rs: *mut core::ffi::c_void, url: *mut *const core::ffi::c_char, len: *mut usize) {
    let u = (*(rs as *mut Client)).url();
    *url = u.as_ptr() as *const _;
    *len = u.len();
}

/// # Safety
/// `rs` is a live client; objects are valid.
#[no_mangle]
pub unsafe extern "C" fn mqtt_rs_connect(rs: *mut core::ffi::c_void, on_connect: Obj, options: Obj, st: *mut mqtt_status_t) {
    let r = (*(rs as *mut Client)).connect(on_connect, options);
    st_result(st, r, ())
}

/// # Safety
/// `rs` is a live client; objects are valid.
#[no_mangle]
pub unsafe extern "C" fn mqtt_rs_publish(
    rs: *mut core::ffi::c_void,
    topic: Obj,
    message: Obj,
    qos: Obj,
    retain: Obj,
    st: *mut mqtt_status_t,
) -> isize {
    let r = (*(rs as *mut Client)).publish(topic, message, qos, retain);
    st_result(st, r, 0)
}

/// # Safety
/// `rs` is a live client; objects are valid.
#[no_mangle]
pub unsafe extern "C" fn mqtt_rs_subscribe(rs: *mut core::ffi::c_void, topics: Obj, unsubscribe: bool, st: *mut mqtt_status_t) -> isize {
    let r = (*(rs as *mut Client)).subscribe(topics, unsubscribe);
    st_result(st, r, 0)
}

/// # Safety
/// `rs` is a live client.
#[no_mangle]
pub unsafe extern "C" fn mqtt_rs_disconnect(rs: *mut core::ffi::c_void, st: *mut mqtt_status_t) {
    let r = (*(rs as *mut Client)).disconnect();
    st_result(st, r, ())
}

/// # Safety
/// `rs` is a live client.
#[no_mangle]
pub unsafe extern "C" fn mqtt_rs_is_connected(rs: *mut core::ffi::c_void) -> bool {
    (*(rs as *mut Client)).is_connected()
}

/// # Safety
/// `rs` is a live client.
#[no_mangle]
pub unsafe extern "C" fn mqtt_rs_pending(rs: *mut core::ffi::c_void, st: *mut mqtt_status_t) -> Obj {
    let r = (*(rs as *mut Client)).pending();
    st_result(st, r, NULL)
}

/// # Safety
/// `rs` is a live client.
#[no_mangle]
pub unsafe extern "C" fn mqtt_rs_in_doubt(rs: *mut core::ffi::c_void) -> bool {
    (*(rs as *mut Client)).in_doubt()
}

/// # Safety
/// `rs` is a live client.
#[no_mangle]
pub unsafe extern "C" fn mqtt_rs_is_active(rs: *mut core::ffi::c_void) -> bool {
    (*(rs as *mut Client)).is_active()
}

/// # Safety
/// `rs` is a live client.
#[no_mangle]
pub unsafe extern "C" fn mqtt_rs_set_callback(rs: *mut core::ffi::c_void, which: mqtt_cb_t, cb: Obj, st: *mut mqtt_status_t) {
    let r = (*(rs as *mut Client)).set_callback(which as usize, cb);
    st_result(st, r, ())
}

/// # Safety
/// `rs` is a live client, `self_` its object (kept on the C stack meanwhile).
#[no_mangle]
pub unsafe extern "C" fn mqtt_rs_pump(rs: *mut core::ffi::c_void, self_: Obj) -> bool {
    let _ = self_;
    dispatch::pump(rs as *mut Client)
}

/// # Safety
/// `rs` is a live client.
#[no_mangle]
pub unsafe extern "C" fn mqtt_rs_ready(rs: *mut core::ffi::c_void) -> bool {
    dispatch::ready(rs as *const Client)
}

/// # Safety
/// `len` is writable.
#[no_mangle]
pub unsafe extern "C" fn mqtt_rs_error_description(code: isize, len: *mut usize) -> *const core::ffi::c_char {
    let code = i32::try_from(code).unwrap_or(i32::MIN);
    let s = crate::proto::rc::description(code);
    *len = s.len();
    s.as_ptr() as *const _
}
