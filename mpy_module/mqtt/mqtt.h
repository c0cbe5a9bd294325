/*
 * The interface between the C shim of the `mqtt` module and its Rust core.
 *
 * mqtt_rs_*  are implemented in Rust (src/binding); they never raise: errors
 *            come back in an mqtt_status_t and the C side raises them.
 * mqtt_c_*   are implemented in C (this folder); they never raise either:
 *            every MicroPython call that can raise is made inside nlr_push
 *            here, so a MicroPython exception never unwinds a Rust frame.
 *
 * This header is also the input of bindgen (see build.rs).
 */
#ifndef MICROPY_INCLUDED_MQTT_H
#define MICROPY_INCLUDED_MQTT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "py/obj.h"

// What went wrong in a call into Rust; the C side turns it into an exception.
typedef enum {
    MQTT_STATUS_OK = 0,
    MQTT_STATUS_TYPE_ERROR = 1,   // TypeError(msg)
    MQTT_STATUS_VALUE_ERROR = 2,  // ValueError(msg)
    MQTT_STATUS_MQTT_ERROR = 3,   // MqttError(code, ErrorDescription(code))
    MQTT_STATUS_MEMORY_ERROR = 4, // MemoryError
    MQTT_STATUS_RAISE = 5,        // raise the exception object `exc`
} mqtt_status_kind_t;

typedef struct _mqtt_status_t {
    mqtt_status_kind_t kind;
    int code;           // MQTT_STATUS_MQTT_ERROR: the errno
    const char *msg;    // static text of a TYPE/VALUE error (not NUL-terminated)
    size_t msg_len;
    mp_obj_t exc;       // MQTT_STATUS_RAISE
} mqtt_status_t;

// Which callback a Rust event dispatch is for.
typedef enum {
    MQTT_CB_CONNECT = 0,
    MQTT_CB_MESSAGE = 1,
    MQTT_CB_PUBLISH = 2,
    MQTT_CB_SUBSCRIBE = 3,
    MQTT_CB_UNSUBSCRIBE = 4,
    MQTT_CB_COUNT = 5,
} mqtt_cb_t;

// ---- implemented in Rust ------------------------------------------------------

size_t mqtt_rs_client_size(void);
// persistence: a directory path (str) or MP_OBJ_NULL (the session lives in memory).
void mqtt_rs_client_init(void *rs, mp_obj_t url, mp_obj_t client_id, mp_obj_t persistence, int slot, mqtt_status_t *st);
void mqtt_rs_client_deinit(void *rs, bool initialised);
void mqtt_rs_client_print(void *rs, const char **url, size_t *url_len);
void mqtt_rs_connect(void *rs, mp_obj_t on_connect, mp_obj_t options, mqtt_status_t *st);
mp_int_t mqtt_rs_publish(void *rs, mp_obj_t topic, mp_obj_t message, mp_obj_t qos, mp_obj_t retain, mqtt_status_t *st);
mp_int_t mqtt_rs_subscribe(void *rs, mp_obj_t topics, bool unsubscribe, mqtt_status_t *st);
void mqtt_rs_disconnect(void *rs, mqtt_status_t *st);
bool mqtt_rs_is_connected(void *rs);
// The mids of the unfinished publishes, as a list.
mp_obj_t mqtt_rs_pending(void *rs, mqtt_status_t *st);
bool mqtt_rs_in_doubt(void *rs);
// Connected, connecting or waiting to retry.
bool mqtt_rs_is_active(void *rs);
void mqtt_rs_set_callback(void *rs, mqtt_cb_t which, mp_obj_t cb, mqtt_status_t *st);
// Drives one client: I/O, timers, callbacks. Returns true while the client is
// active (connected, connecting or waiting to retry).
bool mqtt_rs_pump(void *rs, mp_obj_t self);
bool mqtt_rs_ready(void *rs);
const char *mqtt_rs_error_description(mp_int_t code, size_t *len);

// ---- implemented in C ---------------------------------------------------------

// Objects (MP_OBJ_NULL when out of memory).
mp_obj_t mqtt_c_new_str(const char *data, size_t len);
mp_obj_t mqtt_c_new_bytes(const uint8_t *data, size_t len);
mp_obj_t mqtt_c_new_bytearray(size_t len, uint8_t **items);
mp_obj_t mqtt_c_new_tuple(size_t n, const mp_obj_t *items);

// Callbacks: called with the exception printed and swallowed.
void mqtt_c_call_connect(mp_obj_t cb, mp_int_t rc, bool session_present);
void mqtt_c_call_message(mp_obj_t cb, mp_obj_t topic, mp_obj_t payload);
void mqtt_c_call_ints(mp_obj_t cb, size_t n, mp_int_t a, mp_int_t b);
void mqtt_c_call_subscribe(mp_obj_t cb, mp_int_t mid, const uint8_t *granted, size_t n);

// Transport through the firmware's `socket` module. Returns 0, or a positive
// errno (OSError), or -1 for a failure that is not an OSError (message in *what).
int mqtt_c_sock_open(const char *host, size_t host_len, uint16_t port, mp_obj_t *sock, int *fd, const char **what);
// Non-blocking stream I/O: bytes done, or -1 with *err (MP_EAGAIN: try later).
mp_int_t mqtt_c_sock_read(mp_obj_t sock, uint8_t *buf, size_t len, int *err);
mp_int_t mqtt_c_sock_write(mp_obj_t sock, const uint8_t *buf, size_t len, int *err);
// Readiness (MP_STREAM_POLL_RD/WR/ERR/HUP flags) without blocking.
uintptr_t mqtt_c_sock_poll(mp_obj_t sock, uintptr_t flags);
void mqtt_c_sock_close(mp_obj_t sock);
// *err of a read/write whose stream call raised (TLS): the text is kept.
#define MQTT_ERR_RAISED (-1000)
const char *mqtt_c_last_error(size_t *len);

// TLS through the firmware's `tls` module. The context: MP_OBJ_NULL with
// *exc set when the data is invalid, or with *exc MP_OBJ_NULL when there is no
// trust store (no cadata and no platform CA bundle).
mp_obj_t mqtt_c_tls_context(mp_obj_t cadata, mp_obj_t cert, mp_obj_t key, mp_obj_t *exc);
// A TLS socket over `sock` (handshake in later reads/writes); MP_OBJ_NULL on failure.
mp_obj_t mqtt_c_tls_wrap(mp_obj_t ctx, mp_obj_t sock, const char *host, size_t host_len);
uint32_t mqtt_c_random(void);

// Files through the firmware's file API (the persistent store). Each returns 0,
// a positive errno (OSError), or -1 for any other exception.
int mqtt_c_file_open(mp_obj_t path, const char *mode, mp_obj_t *file);
int mqtt_c_file_read(mp_obj_t file, uint8_t *buf, size_t len, size_t *got);
int mqtt_c_file_write(mp_obj_t file, const uint8_t *buf, size_t len);
// Makes what was written durable (fsync on the unix port, sync on littlefs/FAT).
int mqtt_c_file_flush(mp_obj_t file);
void mqtt_c_file_close(mp_obj_t file);
int mqtt_c_fs_rename(mp_obj_t from, mp_obj_t to);
// 1 when `path` is a directory (made first if absent and `make`), 0 when absent,
// else an error.
int mqtt_c_fs_dir(mp_obj_t path, bool make);
mp_obj_t mqtt_c_new_list(size_t n, mp_obj_t **items);

// Time and the event loop.
uint64_t mqtt_c_ticks_ms(void);
// The client in `slot` wants the pump to run when fd is readable (or writable
// when want_write), or at deadline_ms (UINT64_MAX: none). fd < 0: no socket.
void mqtt_c_watch(int slot, int fd, bool want_write, uint64_t deadline_ms);
void mqtt_c_unwatch(int slot);
// Whether the event loop found the client's socket readable since the last
// call (and forgets it). A back-end that cannot tell answers true.
bool mqtt_c_take_readable(int slot);
// After a read from TCP socket fd: acknowledge what came at once rather than
// after the delayed-ACK timer (a broker with Nagle's algorithm on holds its
// next small packet until then). A back-end without the option does nothing.
void mqtt_c_sock_quickack(int fd);
int mqtt_c_slot_alloc(void);
void mqtt_c_slot_free(int slot);
// Asks for the pump to run soon (from the Python thread).
void mqtt_c_request_pump(void);
// Runs the clients until none is active (after the main script).
void mqtt_c_run_until_idle(void);

// The event loop as a port sees it (README, "Porting notes").
#ifndef MQTT_MAX_CLIENTS
#define MQTT_MAX_CLIENTS (32)
#endif
// From the port's event hook (MICROPY_INTERNAL_EVENT_HOOK): schedules the pump
// when a client's deadline has come or its socket is ready. Cheap when idle.
void mqtt_poll(void);
// From an interrupt (a timer tick, a network interrupt): schedules the pump
// when a client's deadline has come. Touches no MicroPython object.
void mqtt_poll_isr(void);
// The earliest deadline of any client, in mqtt_c_ticks_ms() time
// (UINT64_MAX: none): the port's idle wait sleeps no longer than this.
uint64_t mqtt_next_deadline_ms(void);
// Whether any client is connected or reconnecting.
bool mqtt_any_active(void);
void mqtt_schedule_pump(void);
bool mqtt_pump_pending(void);
// Whether the pump is running (an API call from a callback).
bool mqtt_c_pump_running(void);
// Unix back-end: a sleep of the Python thread that waits for the clients
// itself (the DL-7450 variant routes time.sleep*() and mp_hal_delay_ms() here).
void mqtt_port_sleep_us(uint64_t us);

#endif // MICROPY_INCLUDED_MQTT_H
