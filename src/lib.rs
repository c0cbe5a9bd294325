//! DL-7450 `mqtt` module: a sans-IO MQTT 3.1.1 client core (`proto`) and, with the
//! `firmware` feature, the MicroPython binding layer built on the bindgen-generated
//! MicroPython API (`binding`).
#![no_std]

#[cfg(test)]
extern crate std;

pub mod proto;

#[cfg(feature = "firmware")]
pub mod binding;

/// The core returns errors and never panics; should a bug panic anyway, the
/// firmware stops here instead of unwinding into MicroPython.
#[cfg(all(feature = "firmware", not(test)))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    extern "C" {
        fn abort() -> !;
    }
    unsafe { abort() }
}
