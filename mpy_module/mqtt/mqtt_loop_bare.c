/*
 * The event loop glue of the `mqtt` module on ports without threads (device
 * ports, bare metal): no waker thread and no signals.
 *
 * - The port's event hook (MICROPY_INTERNAL_EVENT_HOOK) calls mqtt_poll(),
 *   which schedules the pump when a client is due or its socket is ready.
 *   The hook runs wherever MicroPython waits: time.sleep(), the idle REPL,
 *   and mqtt_c_run_until_idle() after the main script.
 * - The port's idle wait (MICROPY_INTERNAL_WFE) sleeps no longer than
 *   mqtt_next_deadline_ms(), so keep-alive and retries happen on time while
 *   the CPU sleeps.
 * - A timer interrupt may call mqtt_poll_isr(): deadlines then also fire
 *   while a script computes, and the VM runs the pump at its next branch.
 */
#include "py/runtime.h"
#include "py/mphal.h"
#include "mqtt.h"

#if MICROPY_PY_MQTT && !(MICROPY_PY_THREAD && defined(__unix__))

typedef struct {
    bool used;
    bool armed;
    uint64_t deadline;
} mqtt_slot_t;

static mqtt_slot_t mqtt_slots[MQTT_MAX_CLIENTS];

// mp_hal_ticks_ms() widened to 64 bits. Interrupts are off while the
// wrap-around state changes: mqtt_poll_isr() reads the clock too.
uint64_t mqtt_c_ticks_ms(void) {
    static uint64_t hi;
    static mp_uint_t last;
    mp_uint_t atomic_state = MICROPY_BEGIN_ATOMIC_SECTION();
    mp_uint_t t = mp_hal_ticks_ms();
    if (t < last) {
        hi += (uint64_t)1 << (8 * sizeof(mp_uint_t) > 32 ? 32 : 8 * sizeof(mp_uint_t));
    }
    last = t;
    uint64_t now = hi + t;
    MICROPY_END_ATOMIC_SECTION(atomic_state);
    return now;
}

int mqtt_c_slot_alloc(void) {
    for (int i = 0; i < MQTT_MAX_CLIENTS; i++) {
        if (!mqtt_slots[i].used) {
            mqtt_slots[i] = (mqtt_slot_t) { .used = true, .armed = false, .deadline = UINT64_MAX };
            return i;
        }
    }
    return -1;
}

void mqtt_c_watch(int slot, int fd, bool want_write, uint64_t deadline_ms) {
    (void)fd; // readiness is asked of the socket object (mqtt_rs_ready)
    (void)want_write;
    if (slot < 0 || slot >= MQTT_MAX_CLIENTS) {
        return;
    }
    mp_uint_t atomic_state = MICROPY_BEGIN_ATOMIC_SECTION();
    mqtt_slots[slot].deadline = deadline_ms;
    mqtt_slots[slot].armed = true;
    MICROPY_END_ATOMIC_SECTION(atomic_state);
}

bool mqtt_c_take_readable(int slot) {
    (void)slot;
    return true; // readiness is asked of the socket object: the pump reads to see
}

void mqtt_c_sock_quickack(int fd) {
    (void)fd; // lwIP acknowledges on its own schedule
}

void mqtt_c_unwatch(int slot) {
    if (slot >= 0 && slot < MQTT_MAX_CLIENTS) {
        mqtt_slots[slot].armed = false;
    }
}

void mqtt_c_slot_free(int slot) {
    if (slot >= 0 && slot < MQTT_MAX_CLIENTS) {
        mqtt_slots[slot].used = false;
        mqtt_slots[slot].armed = false;
    }
}

uint64_t mqtt_next_deadline_ms(void) {
    uint64_t next = UINT64_MAX;
    mp_uint_t atomic_state = MICROPY_BEGIN_ATOMIC_SECTION();
    for (int i = 0; i < MQTT_MAX_CLIENTS; i++) {
        if (mqtt_slots[i].used && mqtt_slots[i].armed && mqtt_slots[i].deadline < next) {
            next = mqtt_slots[i].deadline;
        }
    }
    MICROPY_END_ATOMIC_SECTION(atomic_state);
    return next;
}

void mqtt_poll_isr(void) {
    if (mqtt_c_ticks_ms() >= mqtt_next_deadline_ms()) {
        mqtt_schedule_pump();
    }
}

void mqtt_c_request_pump(void) {
    mqtt_schedule_pump();
}

// After the main script: run the clients until none is active. Each round
// waits in the port's idle wait until the next deadline or an interrupt.
void mqtt_c_run_until_idle(void) {
    while (mqtt_any_active()) {
        uint64_t now = mqtt_c_ticks_ms();
        uint64_t next = mqtt_next_deadline_ms();
        uint64_t wait = next <= now ? 0 : next - now;
        // A bounded wait: a port whose idle wait ignores the deadline still
        // comes back to look.
        mp_event_wait_ms(wait > 1000 ? 1000 : (mp_uint_t)wait);
    }
}

#endif // MICROPY_PY_MQTT && !(MICROPY_PY_THREAD && defined(__unix__))
