/*
 * DL-7450 host firmware: MicroPython's unix port configured as the host
 * stand-in for the DL-7450 device firmware, with the `mqtt` module built in.
 */

// Same feature level as the unix "standard" variant.
#define MICROPY_CONFIG_ROM_LEVEL (MICROPY_CONFIG_ROM_LEVEL_EXTRA_FEATURES)

// The mqtt module schedules its event pump with a static scheduler node, so it
// never competes with Python callbacks for the scheduler's queue.
#define MICROPY_SCHEDULER_STATIC_NODES (1)
#define MICROPY_SCHEDULER_DEPTH        (8)

// Unix extras (sys.atexit, time, select, websocket, ...). Included by this
// path so that the variant can live outside the MicroPython tree.
#include "variants/mpconfigvariant_common.h"

// Ctrl-C is delivered through the scheduler, not by raising from inside the
// SIGINT handler: a raise from a signal handler could unwind through the
// mqtt module's Rust frames, which must never happen.
#undef MICROPY_ASYNC_KBD_INTR
#define MICROPY_ASYNC_KBD_INTR (0)

#if defined(MICROPY_PY_MQTT) && MICROPY_PY_MQTT
// Sleeps wait for the mqtt clients on the Python thread: one poll() on their
// sockets until the end of the sleep or the next client deadline, and the
// clients run as soon as a socket is ready (mpy_module/mqtt/mqtt_loop_unix.c).
// mp_hal_delay_ms() (time.sleep_ms) is replaceable by design; time.sleep()
// and time.sleep_us() go through this variant's time module include.
#include <stdint.h>
void mqtt_port_sleep_us(uint64_t us);
#define mp_hal_delay_ms(ms) mqtt_port_sleep_us((uint64_t)(ms) * 1000u)
#undef MICROPY_PY_TIME_INCLUDEFILE
#define MICROPY_PY_TIME_INCLUDEFILE "modtime_dl7450.inc"
#endif
