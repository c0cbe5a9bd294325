// Input of bindgen: the MicroPython API the Rust binding layer uses.
#include "py/runtime.h"
#include "py/obj.h"
#include "py/objstr.h"
#include "py/objarray.h"
#include "py/objtuple.h"
#include "py/objlist.h"
#include "py/objint.h"
#include "py/gc.h"
#include "py/qstr.h"
#include "mqtt.h"
#include "py/stream.h"
#include "py/mperrno.h"

// Values of function-like macros bindgen cannot evaluate on its own.
enum {
    MQTT_OBJ_REPR = MICROPY_OBJ_REPR,
    MQTT_OBJ_REPR_A = MICROPY_OBJ_REPR_A,
    MQTT_STREAM_POLL_RD = MP_STREAM_POLL_RD,
    MQTT_STREAM_POLL_WR = MP_STREAM_POLL_WR,
    MQTT_STREAM_POLL_ERR = MP_STREAM_POLL_ERR,
    MQTT_STREAM_POLL_HUP = MP_STREAM_POLL_HUP,
    MQTT_EAGAIN = MP_EAGAIN,
    MQTT_ENOENT = MP_ENOENT,
    MQTT_EWOULDBLOCK = MP_EWOULDBLOCK,
};
