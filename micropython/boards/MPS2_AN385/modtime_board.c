// time.time() of the DL-7450 device firmware: the board has no real-time
// clock, so the epoch is the boot. Included by extmod/modtime.c.
#include "py/mphal.h"

static mp_obj_t mp_time_time_get(void) {
    return mp_obj_new_int_from_ull(mp_hal_time_ns() / 1000000000u);
}
