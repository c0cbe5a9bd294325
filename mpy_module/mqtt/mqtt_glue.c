/*
 * Helpers the Rust core calls into. Each one catches every MicroPython
 * exception with nlr_push, so nothing ever unwinds through a Rust frame.
 */
#include <string.h>

#include "py/runtime.h"
#include "py/stream.h"
#include "py/mperrno.h"
#include "py/objstr.h"
#include "py/builtin.h"
#include "py/mphal.h"
#include "py/objlist.h"
#include "mqtt.h"

#if MICROPY_PY_MQTT

/******************************************************************************/
// Objects

mp_obj_t mqtt_c_new_str(const char *data, size_t len) {
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        mp_obj_t o = mp_obj_new_str(data, len);
        nlr_pop();
        return o;
    }
    return MP_OBJ_NULL;
}

mp_obj_t mqtt_c_new_bytes(const uint8_t *data, size_t len) {
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        mp_obj_t o = mp_obj_new_bytes(data, len);
        nlr_pop();
        return o;
    }
    return MP_OBJ_NULL;
}

mp_obj_t mqtt_c_new_tuple(size_t n, const mp_obj_t *items) {
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        mp_obj_t o = mp_obj_new_tuple(n, items);
        nlr_pop();
        return o;
    }
    return MP_OBJ_NULL;
}

mp_obj_t mqtt_c_new_bytearray(size_t len, uint8_t **items) {
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        mp_obj_t o = mp_obj_new_bytearray_by_ref(0, NULL);
        mp_obj_array_t *a = MP_OBJ_TO_PTR(o);
        a->items = m_new(uint8_t, len ? len : 1);
        a->len = len;
        a->free = 0;
        *items = a->items;
        nlr_pop();
        return o;
    }
    return MP_OBJ_NULL;
}

/******************************************************************************/
// Callbacks

bool mqtt_exit_requested;

// Ctrl-C and sys.exit(): the user's, never a callback's or a stream's failure.
static bool mqtt_is_user_exit(mp_obj_t exc) {
    const mp_obj_type_t *t = mp_obj_get_type(exc);
    return mp_obj_is_subclass_fast(MP_OBJ_FROM_PTR(t), MP_OBJ_FROM_PTR(&mp_type_KeyboardInterrupt))
           || mp_obj_is_subclass_fast(MP_OBJ_FROM_PTR(t), MP_OBJ_FROM_PTR(&mp_type_SystemExit));
}

static void mqtt_call_protected(mp_obj_t cb, size_t n, const mp_obj_t *args) {
    if (cb == MP_OBJ_NULL || cb == mp_const_none) {
        return;
    }
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        mp_call_function_n_kw(cb, n, 0, args);
        nlr_pop();
    } else {
        mp_obj_t exc = MP_OBJ_FROM_PTR(nlr.ret_val);
        if (mqtt_is_user_exit(exc)) {
            // Ctrl-C and sys.exit() are the user's, not the callback's failure:
            // the VM raises them in the script once the pump is done (the
            // pump itself runs inside the scheduler and must return normally).
            if (mp_obj_is_subclass_fast(MP_OBJ_FROM_PTR(mp_obj_get_type(exc)), MP_OBJ_FROM_PTR(&mp_type_SystemExit))) {
                mqtt_exit_requested = true; // the firmware ends, even with clients connected
            }
            mp_sched_exception(exc);
            mqtt_c_request_pump(); // interrupts a blocking sleep/read to raise it
            return;
        }
        // An exception in a callback is printed and the client goes on.
        mp_printf(MICROPY_ERROR_PRINTER, "mqtt: exception in callback\n");
        mp_obj_print_exception(MICROPY_ERROR_PRINTER, exc);
    }
}

void mqtt_c_call_connect(mp_obj_t cb, mp_int_t rc, bool session_present) {
    if (cb == MP_OBJ_NULL || cb == mp_const_none) {
        return;
    }
    mp_obj_t args[2] = { MP_OBJ_NEW_SMALL_INT(rc), MP_OBJ_NULL };
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        args[1] = mp_obj_new_dict(1);
        mp_obj_dict_store(args[1], MP_OBJ_NEW_QSTR(MP_QSTR_session_present), mp_obj_new_bool(session_present));
        nlr_pop();
    } else {
        return; // out of memory: nothing sensible to call with
    }
    mqtt_call_protected(cb, 2, args);
}

void mqtt_c_call_message(mp_obj_t cb, mp_obj_t topic, mp_obj_t payload) {
    mp_obj_t args[2] = { topic, payload };
    mqtt_call_protected(cb, 2, args);
}

void mqtt_c_call_ints(mp_obj_t cb, size_t n, mp_int_t a, mp_int_t b) {
    mp_obj_t args[2] = { MP_OBJ_NEW_SMALL_INT(a), MP_OBJ_NEW_SMALL_INT(b) };
    mqtt_call_protected(cb, n, args);
}

void mqtt_c_call_subscribe(mp_obj_t cb, mp_int_t mid, const uint8_t *granted, size_t n) {
    if (cb == MP_OBJ_NULL || cb == mp_const_none) {
        return;
    }
    mp_obj_t args[2] = { MP_OBJ_NEW_SMALL_INT(mid), MP_OBJ_NULL };
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        args[1] = mp_obj_new_list(n, NULL);
        mp_obj_list_t *l = MP_OBJ_TO_PTR(args[1]);
        for (size_t i = 0; i < n; i++) {
            l->items[i] = MP_OBJ_NEW_SMALL_INT(granted[i]);
        }
        nlr_pop();
    } else {
        return;
    }
    mqtt_call_protected(cb, 2, args);
}

// A stream written in Python (io.IOBase) runs VM code, which raises a pending
// Ctrl-C or sys.exit() at its first branch. That exception is handed back to
// the VM, and the stream call reports "try again": the connection is not to
// blame.
static bool mqtt_requeue_user_exit(mp_obj_t exc) {
    if (!mqtt_is_user_exit(exc)) {
        return false;
    }
    mp_sched_exception(exc);
    return true;
}

/******************************************************************************/
// Transport through the firmware's socket module

static mp_obj_t mqtt_socket_const(mp_obj_t mod, qstr name, mp_int_t dflt) {
    mp_obj_t dest[2];
    mp_load_method_maybe(mod, name, dest);
    return dest[0] != MP_OBJ_NULL ? dest[0] : MP_OBJ_NEW_SMALL_INT(dflt);
}

static mp_obj_t mqtt_call_method(mp_obj_t obj, qstr name, size_t n, const mp_obj_t *args) {
    mp_obj_t dest[2 + 4];
    mp_load_method(obj, name, dest);
    for (size_t i = 0; i < n; i++) {
        dest[2 + i] = args[i];
    }
    return mp_call_method_n_kw(n, 0, dest);
}

static int mqtt_oserror_errno(mp_obj_t exc, const char **what) {
    if (mp_obj_is_subclass_fast(MP_OBJ_FROM_PTR(mp_obj_get_type(exc)), MP_OBJ_FROM_PTR(&mp_type_OSError))) {
        mp_obj_t v = mp_obj_exception_get_value(exc);
        if (mp_obj_is_small_int(v) && MP_OBJ_SMALL_INT_VALUE(v) > 0) {
            return MP_OBJ_SMALL_INT_VALUE(v);
        }
        *what = "host name lookup failed";
        return -1;
    }
    *what = "socket error";
    return -1;
}

int mqtt_c_sock_open(const char *host, size_t host_len, uint16_t port, mp_obj_t *sock, int *fd, const char **what) {
    *sock = MP_OBJ_NULL;
    *fd = -1;
    *what = NULL;
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        mp_obj_t mod = mp_import_name(MP_QSTR_socket, mp_const_none, MP_OBJ_NEW_SMALL_INT(0));
        mp_obj_t sock_stream = mqtt_socket_const(mod, MP_QSTR_SOCK_STREAM, 1);
        mp_obj_t gai_args[2] = { mp_obj_new_str(host, host_len), MP_OBJ_NEW_SMALL_INT(port) };
        mp_obj_t res = mp_call_function_n_kw(mp_load_attr(mod, MP_QSTR_getaddrinfo), 2, 0, gai_args);
        size_t n;
        mp_obj_t *items;
        mp_obj_get_array(res, &n, &items);
        // Prefer an IPv4 stream address (brokers listening on 127.0.0.1 only
        // are common), else the first stream address.
        mp_obj_t *ai = NULL;
        mp_obj_t af_inet = mqtt_socket_const(mod, MP_QSTR_AF_INET, 2);
        for (size_t i = 0; i < n; i++) {
            size_t m;
            mp_obj_t *e;
            mp_obj_get_array(items[i], &m, &e);
            if (m < 5 || (e[1] != sock_stream && e[1] != MP_OBJ_NEW_SMALL_INT(0))) {
                continue;
            }
            if (ai == NULL || (e[0] == af_inet && ai[0] != af_inet)) {
                ai = e;
            }
        }
        if (ai == NULL) {
            nlr_pop();
            *what = "host name lookup failed";
            return -1;
        }
        mp_obj_t sargs[3] = { ai[0], sock_stream, ai[2] };
        mp_obj_t s = mp_call_function_n_kw(mp_load_attr(mod, MP_QSTR_socket), 3, 0, sargs);
        *sock = s;
        // Each packet leaves at once: no Nagle delay waiting for an ACK.
        mp_obj_t opt[3] = {
            mqtt_socket_const(mod, MP_QSTR_IPPROTO_TCP, 6),
            mqtt_socket_const(mod, MP_QSTR_TCP_NODELAY, 1),
            MP_OBJ_NEW_SMALL_INT(1),
        };
        mqtt_call_method(s, MP_QSTR_setsockopt, 3, opt);
        mp_obj_t no = mp_const_false;
        mqtt_call_method(s, MP_QSTR_setblocking, 1, &no);
        nlr_buf_t nlr2;
        if (nlr_push(&nlr2) == 0) {
            mqtt_call_method(s, MP_QSTR_connect, 1, &ai[4]);
            nlr_pop();
        } else {
            mp_obj_t exc = MP_OBJ_FROM_PTR(nlr2.ret_val);
            int err = mqtt_oserror_errno(exc, what);
            if (err != MP_EINPROGRESS && err != MP_EAGAIN) {
                nlr_raise(exc);
            }
        }
        const mp_stream_p_t *sp = mp_get_stream(s);
        int errcode;
        mp_uint_t f = sp->ioctl(s, MP_STREAM_GET_FILENO, 0, &errcode);
        *fd = f == MP_STREAM_ERROR ? -1 : (int)f;
        nlr_pop();
        return 0;
    } else {
        mqtt_requeue_user_exit(MP_OBJ_FROM_PTR(nlr.ret_val));
        int err = mqtt_oserror_errno(MP_OBJ_FROM_PTR(nlr.ret_val), what);
        if (*sock != MP_OBJ_NULL) {
            mqtt_c_sock_close(*sock);
            *sock = MP_OBJ_NULL;
        }
        return err;
    }
}

// The text of the last exception a stream call raised (a TLS failure: the
// tls module raises for handshake and record errors). Room for the exception's
// name and a whole certificate verification report (mbedtls's tls module
// writes at most 256 bytes of it).
static char mqtt_last_error[12 + 256 + 16];
static size_t mqtt_last_error_len;

static void mqtt_remember_exception(mp_obj_t exc) {
    vstr_t vstr;
    vstr_init_fixed_buf(&vstr, sizeof(mqtt_last_error), mqtt_last_error);
    mp_print_t print = { &vstr, (mp_print_strn_t)vstr_add_strn };
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        mp_obj_print_helper(&print, exc, PRINT_EXC);
        nlr_pop();
    }
    mqtt_last_error_len = vstr.len;
}

const char *mqtt_c_last_error(size_t *len) {
    *len = mqtt_last_error_len;
    return mqtt_last_error;
}

mp_int_t mqtt_c_sock_read(mp_obj_t sock, uint8_t *buf, size_t len, int *err) {
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        mp_uint_t r = mp_get_stream(sock)->read(sock, buf, len, err);
        nlr_pop();
        return r == MP_STREAM_ERROR ? -1 : (mp_int_t)r;
    }
    if (mqtt_requeue_user_exit(MP_OBJ_FROM_PTR(nlr.ret_val))) {
        *err = MP_EAGAIN;
        return -1;
    }
    mqtt_remember_exception(MP_OBJ_FROM_PTR(nlr.ret_val));
    *err = MQTT_ERR_RAISED;
    return -1;
}

mp_int_t mqtt_c_sock_write(mp_obj_t sock, const uint8_t *buf, size_t len, int *err) {
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        mp_uint_t r = mp_get_stream(sock)->write(sock, buf, len, err);
        nlr_pop();
        return r == MP_STREAM_ERROR ? -1 : (mp_int_t)r;
    }
    if (mqtt_requeue_user_exit(MP_OBJ_FROM_PTR(nlr.ret_val))) {
        *err = MP_EAGAIN;
        return -1;
    }
    mqtt_remember_exception(MP_OBJ_FROM_PTR(nlr.ret_val));
    *err = MQTT_ERR_RAISED;
    return -1;
}

/******************************************************************************/
// TLS through the firmware's `tls` module

#ifndef MQTT_PLATFORM_CA_BUNDLE
#if defined(__unix__)
#define MQTT_PLATFORM_CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"
#endif
#endif

// The platform's CA bundle, or MP_OBJ_NULL when the port has none.
static mp_obj_t mqtt_platform_ca(void) {
    #ifdef MQTT_PLATFORM_CA_BUNDLE
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        mp_obj_t args[2] = { MP_OBJ_NEW_QSTR(qstr_from_str(MQTT_PLATFORM_CA_BUNDLE)), MP_OBJ_NEW_QSTR(MP_QSTR_rb) };
        mp_obj_t f = mp_builtin_open(2, args, (mp_map_t *)&mp_const_empty_map);
        mp_obj_t data = mqtt_call_method(f, MP_QSTR_read, 0, NULL);
        mqtt_call_method(f, MP_QSTR_close, 0, NULL);
        nlr_pop();
        return data;
    }
    #endif
    return MP_OBJ_NULL;
}

mp_obj_t mqtt_c_tls_context(mp_obj_t cadata, mp_obj_t cert, mp_obj_t key, mp_obj_t *exc) {
    *exc = MP_OBJ_NULL;
    if (cadata == MP_OBJ_NULL) {
        cadata = mqtt_platform_ca();
        if (cadata == MP_OBJ_NULL) {
            return MP_OBJ_NULL; // no trust store at all
        }
    }
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        mp_obj_t mod = mp_import_name(MP_QSTR_tls, mp_const_none, MP_OBJ_NEW_SMALL_INT(0));
        mp_obj_t proto = mp_load_attr(mod, MP_QSTR_PROTOCOL_TLS_CLIENT);
        mp_obj_t ctx = mp_call_function_n_kw(mp_load_attr(mod, MP_QSTR_SSLContext), 1, 0, &proto);
        mp_store_attr(ctx, MP_QSTR_verify_mode, mp_load_attr(mod, MP_QSTR_CERT_REQUIRED));
        mqtt_call_method(ctx, MP_QSTR_load_verify_locations, 1, &cadata);
        if (cert != MP_OBJ_NULL) {
            // key_store may hold the private key too
            mp_obj_t ck[2] = { cert, key != MP_OBJ_NULL ? key : cert };
            mqtt_call_method(ctx, MP_QSTR_load_cert_chain, 2, ck);
        }
        nlr_pop();
        return ctx;
    }
    *exc = MP_OBJ_FROM_PTR(nlr.ret_val);
    return MP_OBJ_NULL;
}

mp_obj_t mqtt_c_tls_wrap(mp_obj_t ctx, mp_obj_t sock, const char *host, size_t host_len) {
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        mp_obj_t dest[2 + 1 + 4];
        mp_load_method(ctx, MP_QSTR_wrap_socket, dest);
        dest[2] = sock;
        dest[3] = MP_OBJ_NEW_QSTR(MP_QSTR_server_hostname);
        dest[4] = mp_obj_new_str(host, host_len);
        dest[5] = MP_OBJ_NEW_QSTR(MP_QSTR_do_handshake_on_connect);
        dest[6] = mp_const_false; // the handshake runs in our non-blocking reads and writes
        mp_obj_t s = mp_call_method_n_kw(1, 2, dest);
        nlr_pop();
        return s;
    }
    mqtt_remember_exception(MP_OBJ_FROM_PTR(nlr.ret_val));
    return MP_OBJ_NULL;
}

uint32_t mqtt_c_random(void) {
    uint32_t r = 0;
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        #ifdef MICROPY_PY_RANDOM_SEED_INIT_FUNC
        r = MICROPY_PY_RANDOM_SEED_INIT_FUNC; // the port's hardware/OS randomness
        #else
        r = (uint32_t)mp_hal_ticks_us() * 2654435761u;
        #endif
        nlr_pop();
    }
    return r;
}

uintptr_t mqtt_c_sock_poll(mp_obj_t sock, uintptr_t flags) {
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        int err;
        mp_uint_t r = mp_get_stream(sock)->ioctl(sock, MP_STREAM_POLL, flags, &err);
        nlr_pop();
        return r == MP_STREAM_ERROR ? MP_STREAM_POLL_ERR : r;
    }
    if (mqtt_requeue_user_exit(MP_OBJ_FROM_PTR(nlr.ret_val))) {
        return 0;
    }
    return MP_STREAM_POLL_ERR;
}

void mqtt_c_sock_close(mp_obj_t sock) {
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        int err;
        mp_get_stream(sock)->ioctl(sock, MP_STREAM_CLOSE, 0, &err);
        nlr_pop();
    } else {
        mqtt_requeue_user_exit(MP_OBJ_FROM_PTR(nlr.ret_val));
    }
}

/******************************************************************************/
// Files through the firmware's own file API (builtins.open and the os module),
// so the persistent store works on every filesystem the port mounts.

static int mqtt_file_error(mp_obj_t exc) {
    mqtt_requeue_user_exit(exc);
    const char *what;
    int err = mqtt_oserror_errno(exc, &what);
    return err > 0 ? err : -1;
}

static mp_obj_t mqtt_os_fun(qstr name) {
    mp_obj_t mod = mp_import_name(MP_QSTR_os, mp_const_none, MP_OBJ_NEW_SMALL_INT(0));
    return mp_load_attr(mod, name);
}

int mqtt_c_file_open(mp_obj_t path, const char *mode, mp_obj_t *file) {
    *file = MP_OBJ_NULL;
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        mp_obj_t mod = mp_import_name(MP_QSTR_builtins, mp_const_none, MP_OBJ_NEW_SMALL_INT(0));
        mp_obj_t args[2] = { path, mp_obj_new_str(mode, strlen(mode)) };
        mp_obj_t f = mp_call_function_n_kw(mp_load_attr(mod, MP_QSTR_open), 2, 0, args);
        mp_get_stream_raise(f, MP_STREAM_OP_READ | MP_STREAM_OP_WRITE | MP_STREAM_OP_IOCTL);
        *file = f;
        nlr_pop();
        return 0;
    }
    return mqtt_file_error(MP_OBJ_FROM_PTR(nlr.ret_val));
}

int mqtt_c_file_read(mp_obj_t file, uint8_t *buf, size_t len, size_t *got) {
    *got = 0;
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        int err = 0;
        mp_uint_t r = mp_get_stream(file)->read(file, buf, len, &err);
        nlr_pop();
        if (r == MP_STREAM_ERROR) {
            return err > 0 ? err : -1;
        }
        *got = r;
        return 0;
    }
    return mqtt_file_error(MP_OBJ_FROM_PTR(nlr.ret_val));
}

int mqtt_c_file_write(mp_obj_t file, const uint8_t *buf, size_t len) {
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        const mp_stream_p_t *sp = mp_get_stream(file);
        while (len > 0) {
            int err = 0;
            mp_uint_t r = sp->write(file, buf, len, &err);
            if (r == MP_STREAM_ERROR || r == 0) {
                nlr_pop();
                return r == 0 ? MP_ENOSPC : (err > 0 ? err : -1);
            }
            buf += r;
            len -= r;
        }
        nlr_pop();
        return 0;
    }
    return mqtt_file_error(MP_OBJ_FROM_PTR(nlr.ret_val));
}

int mqtt_c_file_flush(mp_obj_t file) {
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        int err = 0;
        mp_uint_t r = mp_get_stream(file)->ioctl(file, MP_STREAM_FLUSH, 0, &err);
        nlr_pop();
        return r == MP_STREAM_ERROR ? (err > 0 ? err : -1) : 0;
    }
    return mqtt_file_error(MP_OBJ_FROM_PTR(nlr.ret_val));
}

void mqtt_c_file_close(mp_obj_t file) {
    mqtt_c_sock_close(file); // a file is a stream too
}

int mqtt_c_fs_rename(mp_obj_t from, mp_obj_t to) {
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        mp_obj_t args[2] = { from, to };
        mp_call_function_n_kw(mqtt_os_fun(MP_QSTR_rename), 2, 0, args);
        nlr_pop();
        return 0;
    }
    return mqtt_file_error(MP_OBJ_FROM_PTR(nlr.ret_val));
}

int mqtt_c_fs_dir(mp_obj_t path, bool make) {
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        mp_obj_t st = mp_call_function_n_kw(mqtt_os_fun(MP_QSTR_stat), 1, 0, &path);
        mp_obj_t mode = mp_obj_subscr(st, MP_OBJ_NEW_SMALL_INT(0), MP_OBJ_SENTINEL);
        nlr_pop();
        return (mp_obj_get_int(mode) & 0x4000) ? 1 : MP_ENOTDIR;
    }
    int err = mqtt_file_error(MP_OBJ_FROM_PTR(nlr.ret_val));
    if (err != MP_ENOENT || !make) {
        return err == MP_ENOENT ? 0 : err;
    }
    if (nlr_push(&nlr) == 0) {
        mp_call_function_n_kw(mqtt_os_fun(MP_QSTR_mkdir), 1, 0, &path);
        nlr_pop();
        return 1;
    }
    return mqtt_file_error(MP_OBJ_FROM_PTR(nlr.ret_val));
}

mp_obj_t mqtt_c_new_list(size_t n, mp_obj_t **items) {
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        mp_obj_t o = mp_obj_new_list(n, NULL);
        *items = ((mp_obj_list_t *)MP_OBJ_TO_PTR(o))->items;
        nlr_pop();
        return o;
    }
    return MP_OBJ_NULL;
}

#endif // MICROPY_PY_MQTT
