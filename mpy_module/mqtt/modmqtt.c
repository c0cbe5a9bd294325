/*
 * The `mqtt` module of the DL-7450 firmware: module and type registration,
 * argument checking that needs the runtime, and raising of errors. The
 * protocol, the options and the connection logic are in Rust (src/binding,
 * src/proto); see mqtt.h for the interface.
 */
#include <stdlib.h>
#include <string.h>

#include "py/runtime.h"
#include "py/objexcept.h"
#include "py/mphal.h"
#include "mqtt.h"

#if MICROPY_PY_MQTT

// A client: the Python object with the Rust state inline (so the GC sees the
// Python objects the Rust state refers to).
typedef struct _mqtt_client_obj_t {
    mp_obj_base_t base;
    struct _mqtt_client_obj_t *next_active; // list rooted in MP_STATE_VM(mqtt_active)
    int slot;                               // event-loop slot (mqtt_c_watch)
    bool active;
    uint64_t rs[];                          // mqtt_rs_client_size() bytes
} mqtt_client_obj_t;

MP_REGISTER_ROOT_POINTER(struct _mqtt_client_obj_t *mqtt_active);
MP_REGISTER_ROOT_POINTER(mp_obj_t mqtt_user_exitfunc);

extern const mp_obj_type_t mqtt_type_client;

MP_DEFINE_EXCEPTION(MqttError, Exception)

/******************************************************************************/
// Errors

static mp_obj_t mqtt_error_description_str(mp_int_t code) {
    size_t len;
    const char *s = mqtt_rs_error_description(code, &len);
    return mp_obj_new_str(s, len);
}

NORETURN static void mqtt_raise_code(mp_int_t code) {
    mp_obj_t args[2] = { MP_OBJ_NEW_SMALL_INT(code), mqtt_error_description_str(code) };
    nlr_raise(mp_obj_new_exception_args(&mp_type_MqttError, 2, args));
}

static void mqtt_check(const mqtt_status_t *st) {
    switch (st->kind) {
        case MQTT_STATUS_OK:
            return;
        case MQTT_STATUS_TYPE_ERROR:
            mp_raise_msg_varg(&mp_type_TypeError, MP_ERROR_TEXT("%.*s"), (int)st->msg_len, st->msg);
        case MQTT_STATUS_VALUE_ERROR:
            mp_raise_msg_varg(&mp_type_ValueError, MP_ERROR_TEXT("%.*s"), (int)st->msg_len, st->msg);
        case MQTT_STATUS_MEMORY_ERROR:
            m_malloc_fail(0);
        case MQTT_STATUS_RAISE:
            nlr_raise(st->exc);
        default:
            mqtt_raise_code(st->code);
    }
}

static mp_obj_t mqtt_ErrorDescription(mp_obj_t errno_in) {
    if (!mp_obj_is_int(errno_in)) {
        mp_raise_TypeError(MP_ERROR_TEXT("errno must be an int"));
    }
    // Every code is a small int; a big int is simply unknown.
    mp_int_t code = mp_obj_is_small_int(errno_in) ? MP_OBJ_SMALL_INT_VALUE(errno_in) : (mp_int_t)INT32_MIN;
    return mqtt_error_description_str(code);
}
static MP_DEFINE_CONST_FUN_OBJ_1(mqtt_ErrorDescription_obj, mqtt_ErrorDescription);

/******************************************************************************/
// The list of active clients and the pump

static void mqtt_set_active(mqtt_client_obj_t *self, bool active);

static bool mqtt_pumping;

bool mqtt_c_pump_running(void) {
    return mqtt_pumping;
}

static void mqtt_pump_all(void) {
    if (mqtt_pumping) {
        return;
    }
    mqtt_pumping = true;
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        mqtt_client_obj_t *c = MP_STATE_VM(mqtt_active);
        while (c != NULL) {
            mqtt_client_obj_t *next = c->next_active;
            if (!mqtt_rs_pump(c->rs, MP_OBJ_FROM_PTR(c))) {
                mqtt_set_active(c, false);
            }
            c = next;
        }
        nlr_pop();
    } else {
        // Nothing in the pump raises (every call that can is protected). Should
        // something still, hand it to the VM: the pump runs inside the
        // scheduler, which must not be left by an exception.
        mp_sched_exception(MP_OBJ_FROM_PTR(nlr.ret_val));
    }
    mqtt_pumping = false;
}

#if MICROPY_SCHEDULER_STATIC_NODES
static mp_sched_node_t mqtt_pump_node;

static void mqtt_pump_node_cb(mp_sched_node_t *node) {
    (void)node;
    mqtt_pump_all();
}

void mqtt_schedule_pump(void) {
    mp_sched_schedule_node(&mqtt_pump_node, mqtt_pump_node_cb);
}

bool mqtt_pump_pending(void) {
    // Also while an exception deferred from a callback (Ctrl-C, sys.exit())
    // waits for the VM: the Python thread must leave its blocking call to
    // raise it.
    return mqtt_pump_node.callback != NULL || MP_STATE_MAIN_THREAD(mp_pending_exception) != MP_OBJ_NULL;
}
#else
static volatile bool mqtt_pump_queued;

static mp_obj_t mqtt_pump_sched(mp_obj_t arg) {
    (void)arg;
    mqtt_pump_queued = false;
    mqtt_pump_all();
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(mqtt_pump_sched_obj, mqtt_pump_sched);

void mqtt_schedule_pump(void) {
    if (!mqtt_pump_queued) {
        mqtt_pump_queued = mp_sched_schedule(MP_OBJ_FROM_PTR(&mqtt_pump_sched_obj), mp_const_none);
    }
}

bool mqtt_pump_pending(void) {
    return mqtt_pump_queued || MP_STATE_MAIN_THREAD(mp_pending_exception) != MP_OBJ_NULL;
}
#endif

// The port's event hook: schedule the pump when a client's deadline has come
// or its socket is ready. The pump itself runs from the scheduler, so every
// callback runs there, never inside the hook.
void mqtt_poll(void) {
    if (MP_STATE_VM(mqtt_active) == NULL || mqtt_pump_pending()) {
        return;
    }
    if (mqtt_c_ticks_ms() >= mqtt_next_deadline_ms()) {
        mqtt_schedule_pump();
        return;
    }
    for (mqtt_client_obj_t *c = MP_STATE_VM(mqtt_active); c != NULL; c = c->next_active) {
        if (mqtt_rs_ready(c->rs)) {
            mqtt_schedule_pump();
            return;
        }
    }
}

// mqtt.poll(): run the clients now (for scripts on ports without an event hook).
static mp_obj_t mqtt_poll_obj_fun(void) {
    mqtt_pump_all();
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_0(mqtt_poll_obj, mqtt_poll_obj_fun);

bool mqtt_any_active(void) {
    return MP_STATE_VM(mqtt_active) != NULL;
}

#if MICROPY_PY_SYS_ATEXIT
// Runs the clients until none is active, then the script's own sys.atexit
// function: the firmware stays alive after the main script returns while a
// client is connected or reconnecting, as on the device.

// The unix port calls the exit function without an exception handler: this
// one must not raise. sys.exit() from a callback ends the process with its
// code; any other exception (Ctrl-C) is printed and ends it with status 1.
static void mqtt_atexit_exit(mp_obj_t exc) {
    int status = 1;
    if (mp_obj_is_subclass_fast(MP_OBJ_FROM_PTR(mp_obj_get_type(exc)), MP_OBJ_FROM_PTR(&mp_type_SystemExit))) {
        mp_obj_t code = mp_obj_exception_get_value(exc);
        status = code == mp_const_none ? 0 : (mp_obj_is_small_int(code) ? MP_OBJ_SMALL_INT_VALUE(code) : 1);
    } else {
        mp_obj_print_exception(MICROPY_ERROR_PRINTER, exc);
    }
    exit(status);
}

extern bool mqtt_exit_requested;

static mp_obj_t mqtt_atexit(void) {
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        // Callbacks still scheduled when the script ended run first.
        mp_handle_pending(true);
        if (!mqtt_exit_requested) {
            mqtt_c_run_until_idle();
        }
        // A Ctrl-C or sys.exit() from such a callback is pending: raise it.
        mp_handle_pending(true);
        mp_obj_t user = MP_STATE_VM(mqtt_user_exitfunc);
        MP_STATE_VM(mqtt_user_exitfunc) = mp_const_none;
        if (user != MP_OBJ_NULL && mp_obj_is_callable(user)) {
            mp_call_function_0(user);
        }
        nlr_pop();
    } else {
        mqtt_atexit_exit(MP_OBJ_FROM_PTR(nlr.ret_val));
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_0(mqtt_atexit_obj, mqtt_atexit);

static void mqtt_hook_atexit(void) {
    mp_obj_t cur = MP_STATE_VM(sys_exitfunc);
    if (cur != MP_OBJ_FROM_PTR(&mqtt_atexit_obj)) {
        // Keep the script's own atexit function and run it after ours.
        MP_STATE_VM(mqtt_user_exitfunc) = cur;
        MP_STATE_VM(sys_exitfunc) = MP_OBJ_FROM_PTR(&mqtt_atexit_obj);
    }
}
#else
// Without sys.atexit the port's main loop calls mqtt_c_run_until_idle()
// after the main script.
static void mqtt_hook_atexit(void) {
}
#endif

static void mqtt_set_active(mqtt_client_obj_t *self, bool active) {
    if (active == self->active) {
        return;
    }
    self->active = active;
    if (active) {
        self->next_active = MP_STATE_VM(mqtt_active);
        MP_STATE_VM(mqtt_active) = self;
        mqtt_hook_atexit();
    } else {
        mqtt_client_obj_t **p = &MP_STATE_VM(mqtt_active);
        while (*p != NULL && *p != self) {
            p = &(*p)->next_active;
        }
        if (*p == self) {
            *p = self->next_active;
        }
        self->next_active = NULL;
        mqtt_c_unwatch(self->slot);
    }
}

/******************************************************************************/
// MqttClient

static mqtt_client_obj_t *mqtt_client_get(mp_obj_t self_in) {
    return MP_OBJ_TO_PTR(self_in);
}

// MqttClient(broker_url, client_id, *, persistence=None)
static mp_obj_t mqtt_client_make_new(const mp_obj_type_t *type, size_t n_args, size_t n_kw, const mp_obj_t *all_args) {
    enum { ARG_broker_url, ARG_client_id, ARG_persistence };
    static const mp_arg_t allowed_args[] = {
        { MP_QSTR_broker_url, MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
        { MP_QSTR_client_id, MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
        { MP_QSTR_persistence, MP_ARG_KW_ONLY | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
    };
    mp_arg_val_t args[MP_ARRAY_SIZE(allowed_args)];
    if (n_kw == 0) {
        // The common case: no argument table to fill.
        mp_arg_check_num(n_args, n_kw, 2, 2, false);
        args[ARG_broker_url].u_obj = all_args[0];
        args[ARG_client_id].u_obj = all_args[1];
        args[ARG_persistence].u_obj = MP_OBJ_NULL;
    } else {
        mp_arg_parse_all_kw_array(n_args, n_kw, all_args, MP_ARRAY_SIZE(allowed_args), allowed_args, args);
    }
    int slot = mqtt_c_slot_alloc();
    if (slot < 0) {
        mqtt_raise_code(-1);
    }
    size_t size = sizeof(mqtt_client_obj_t) + mqtt_rs_client_size();
    mqtt_client_obj_t *self = m_malloc_with_finaliser(size);
    memset(self, 0, size);
    self->base.type = type;
    self->slot = slot;
    mqtt_status_t st = { MQTT_STATUS_OK, 0, NULL, 0, MP_OBJ_NULL };
    mqtt_rs_client_init(self->rs, args[ARG_broker_url].u_obj, args[ARG_client_id].u_obj, args[ARG_persistence].u_obj, slot, &st);
    if (st.kind != MQTT_STATUS_OK) {
        self->base.type = &mp_type_object; // no finaliser work for a half-made client
        mqtt_c_slot_free(slot);
        mqtt_check(&st);
    }
    return MP_OBJ_FROM_PTR(self);
}

static void mqtt_client_print(const mp_print_t *print, mp_obj_t self_in, mp_print_kind_t kind) {
    (void)kind;
    mqtt_client_obj_t *self = mqtt_client_get(self_in);
    const char *url;
    size_t len;
    mqtt_rs_client_print(self->rs, &url, &len);
    mp_printf(print, "<MqttClient %.*s %s>", (int)len, url,
        mqtt_rs_is_connected(self->rs) ? "connected" : (mqtt_rs_is_active(self->rs) ? "connecting" : "disconnected"));
}

static mp_obj_t mqtt_client_del(mp_obj_t self_in) {
    mqtt_client_obj_t *self = mqtt_client_get(self_in);
    if (self->base.type == &mqtt_type_client) {
        mqtt_rs_client_deinit(self->rs, true);
        mqtt_c_slot_free(self->slot);
        self->slot = -1;
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(mqtt_client_del_obj, mqtt_client_del);

// connect(on_connect, options={})
static mp_obj_t mqtt_client_connect(size_t n_args, const mp_obj_t *pos_args, mp_map_t *kw_args) {
    enum { ARG_on_connect, ARG_options };
    static const mp_arg_t allowed_args[] = {
        { MP_QSTR_on_connect, MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
        { MP_QSTR_options, MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
    };
    mp_arg_val_t args[MP_ARRAY_SIZE(allowed_args)];
    mp_arg_parse_all(n_args - 1, pos_args + 1, kw_args, MP_ARRAY_SIZE(allowed_args), allowed_args, args);
    mp_obj_t cb = args[ARG_on_connect].u_obj;
    if (cb != mp_const_none && !mp_obj_is_callable(cb)) {
        mp_raise_TypeError(MP_ERROR_TEXT("callback must be callable or None"));
    }
    mqtt_client_obj_t *self = mqtt_client_get(pos_args[0]);
    mqtt_status_t st = { MQTT_STATUS_OK, 0, NULL, 0, MP_OBJ_NULL };
    mqtt_rs_connect(self->rs, cb, args[ARG_options].u_obj, &st);
    mqtt_check(&st);
    mqtt_set_active(self, true);
    mqtt_c_request_pump();
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_KW(mqtt_client_connect_obj, 1, mqtt_client_connect);

// publish(topic, message, qos, retain=False) -> mid
static mp_obj_t mqtt_client_publish(size_t n_args, const mp_obj_t *pos_args, mp_map_t *kw_args) {
    mp_obj_t retain = mp_const_false;
    if (kw_args->used > 0 || n_args != 4) {
        enum { ARG_topic, ARG_message, ARG_qos, ARG_retain };
        static const mp_arg_t allowed_args[] = {
            { MP_QSTR_topic, MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
            { MP_QSTR_message, MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
            { MP_QSTR_qos, MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
            { MP_QSTR_retain, MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
        };
        mp_arg_val_t args[MP_ARRAY_SIZE(allowed_args)];
        mp_arg_parse_all(n_args - 1, pos_args + 1, kw_args, MP_ARRAY_SIZE(allowed_args), allowed_args, args);
        mqtt_client_obj_t *self = mqtt_client_get(pos_args[0]);
        mqtt_status_t st = { MQTT_STATUS_OK, 0, NULL, 0, MP_OBJ_NULL };
        mp_obj_t r = args[ARG_retain].u_obj == MP_OBJ_NULL ? mp_const_false : args[ARG_retain].u_obj;
        mp_int_t mid = mqtt_rs_publish(self->rs, args[ARG_topic].u_obj, args[ARG_message].u_obj, args[ARG_qos].u_obj, r, &st);
        mqtt_check(&st);
        return MP_OBJ_NEW_SMALL_INT(mid);
    }
    // The common case, positional arguments only: no argument table to fill.
    mqtt_client_obj_t *self = mqtt_client_get(pos_args[0]);
    mqtt_status_t st = { MQTT_STATUS_OK, 0, NULL, 0, MP_OBJ_NULL };
    mp_int_t mid = mqtt_rs_publish(self->rs, pos_args[1], pos_args[2], pos_args[3], retain, &st);
    mqtt_check(&st);
    return MP_OBJ_NEW_SMALL_INT(mid);
}
static MP_DEFINE_CONST_FUN_OBJ_KW(mqtt_client_publish_obj, 1, mqtt_client_publish);

static mp_obj_t mqtt_client_sub_common(mp_obj_t self_in, mp_obj_t topics, bool unsubscribe) {
    mqtt_client_obj_t *self = mqtt_client_get(self_in);
    mqtt_status_t st = { MQTT_STATUS_OK, 0, NULL, 0, MP_OBJ_NULL };
    mp_int_t mid = mqtt_rs_subscribe(self->rs, topics, unsubscribe, &st);
    if (st.kind == MQTT_STATUS_MQTT_ERROR) {
        // "a negative code when the request could not be started"
        return MP_OBJ_NEW_SMALL_INT(st.code);
    }
    mqtt_check(&st);
    return MP_OBJ_NEW_SMALL_INT(mid);
}

static mp_obj_t mqtt_client_subscribe(mp_obj_t self_in, mp_obj_t topics) {
    return mqtt_client_sub_common(self_in, topics, false);
}
static MP_DEFINE_CONST_FUN_OBJ_2(mqtt_client_subscribe_obj, mqtt_client_subscribe);

static mp_obj_t mqtt_client_unsubscribe(mp_obj_t self_in, mp_obj_t topics) {
    return mqtt_client_sub_common(self_in, topics, true);
}
static MP_DEFINE_CONST_FUN_OBJ_2(mqtt_client_unsubscribe_obj, mqtt_client_unsubscribe);

static mp_obj_t mqtt_client_disconnect(mp_obj_t self_in) {
    mqtt_client_obj_t *self = mqtt_client_get(self_in);
    mqtt_status_t st = { MQTT_STATUS_OK, 0, NULL, 0, MP_OBJ_NULL };
    mqtt_rs_disconnect(self->rs, &st);
    mqtt_check(&st);
    mqtt_c_request_pump();
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(mqtt_client_disconnect_obj, mqtt_client_disconnect);

static mp_obj_t mqtt_client_is_connected(mp_obj_t self_in) {
    return mp_obj_new_bool(mqtt_rs_is_connected(mqtt_client_get(self_in)->rs));
}
static MP_DEFINE_CONST_FUN_OBJ_1(mqtt_client_is_connected_obj, mqtt_client_is_connected);

// pending() -> list of the mids of the unfinished publishes
static mp_obj_t mqtt_client_pending(mp_obj_t self_in) {
    mqtt_client_obj_t *self = mqtt_client_get(self_in);
    mqtt_status_t st = { MQTT_STATUS_OK, 0, NULL, 0, MP_OBJ_NULL };
    mp_obj_t list = mqtt_rs_pending(self->rs, &st);
    mqtt_check(&st);
    return list;
}
static MP_DEFINE_CONST_FUN_OBJ_1(mqtt_client_pending_obj, mqtt_client_pending);

// in_doubt() -> whether the message on_message runs for may have been delivered before
static mp_obj_t mqtt_client_in_doubt(mp_obj_t self_in) {
    return mp_obj_new_bool(mqtt_rs_in_doubt(mqtt_client_get(self_in)->rs));
}
static MP_DEFINE_CONST_FUN_OBJ_1(mqtt_client_in_doubt_obj, mqtt_client_in_doubt);

static mp_obj_t mqtt_client_set_cb(mp_obj_t self_in, mp_obj_t cb, mqtt_cb_t which) {
    mqtt_client_obj_t *self = mqtt_client_get(self_in);
    if (cb != mp_const_none && !mp_obj_is_callable(cb)) {
        mp_raise_TypeError(MP_ERROR_TEXT("callback must be callable or None"));
    }
    mqtt_status_t st = { MQTT_STATUS_OK, 0, NULL, 0, MP_OBJ_NULL };
    mqtt_rs_set_callback(self->rs, which, cb, &st);
    mqtt_check(&st);
    return mp_const_none;
}

static mp_obj_t mqtt_client_on_message(mp_obj_t self_in, mp_obj_t cb) {
    return mqtt_client_set_cb(self_in, cb, MQTT_CB_MESSAGE);
}
static MP_DEFINE_CONST_FUN_OBJ_2(mqtt_client_on_message_obj, mqtt_client_on_message);

static mp_obj_t mqtt_client_on_subscribe(mp_obj_t self_in, mp_obj_t cb) {
    return mqtt_client_set_cb(self_in, cb, MQTT_CB_SUBSCRIBE);
}
static MP_DEFINE_CONST_FUN_OBJ_2(mqtt_client_on_subscribe_obj, mqtt_client_on_subscribe);

static mp_obj_t mqtt_client_on_publish(mp_obj_t self_in, mp_obj_t cb) {
    return mqtt_client_set_cb(self_in, cb, MQTT_CB_PUBLISH);
}
static MP_DEFINE_CONST_FUN_OBJ_2(mqtt_client_on_publish_obj, mqtt_client_on_publish);

static mp_obj_t mqtt_client_on_unsubscribe(mp_obj_t self_in, mp_obj_t cb) {
    return mqtt_client_set_cb(self_in, cb, MQTT_CB_UNSUBSCRIBE);
}
static MP_DEFINE_CONST_FUN_OBJ_2(mqtt_client_on_unsubscribe_obj, mqtt_client_on_unsubscribe);

static const mp_rom_map_elem_t mqtt_client_locals_dict_table[] = {
    { MP_ROM_QSTR(MP_QSTR___del__), MP_ROM_PTR(&mqtt_client_del_obj) },
    { MP_ROM_QSTR(MP_QSTR_connect), MP_ROM_PTR(&mqtt_client_connect_obj) },
    { MP_ROM_QSTR(MP_QSTR_publish), MP_ROM_PTR(&mqtt_client_publish_obj) },
    { MP_ROM_QSTR(MP_QSTR_subscribe), MP_ROM_PTR(&mqtt_client_subscribe_obj) },
    { MP_ROM_QSTR(MP_QSTR_unsubscribe), MP_ROM_PTR(&mqtt_client_unsubscribe_obj) },
    { MP_ROM_QSTR(MP_QSTR_disconnect), MP_ROM_PTR(&mqtt_client_disconnect_obj) },
    { MP_ROM_QSTR(MP_QSTR_is_connected), MP_ROM_PTR(&mqtt_client_is_connected_obj) },
    { MP_ROM_QSTR(MP_QSTR_pending), MP_ROM_PTR(&mqtt_client_pending_obj) },
    { MP_ROM_QSTR(MP_QSTR_in_doubt), MP_ROM_PTR(&mqtt_client_in_doubt_obj) },
    { MP_ROM_QSTR(MP_QSTR_on_message), MP_ROM_PTR(&mqtt_client_on_message_obj) },
    { MP_ROM_QSTR(MP_QSTR_on_subscribe), MP_ROM_PTR(&mqtt_client_on_subscribe_obj) },
    { MP_ROM_QSTR(MP_QSTR_on_publish), MP_ROM_PTR(&mqtt_client_on_publish_obj) },
    { MP_ROM_QSTR(MP_QSTR_on_unsubscribe), MP_ROM_PTR(&mqtt_client_on_unsubscribe_obj) },
};
static MP_DEFINE_CONST_DICT(mqtt_client_locals_dict, mqtt_client_locals_dict_table);

MP_DEFINE_CONST_OBJ_TYPE(
    mqtt_type_client,
    MP_QSTR_MqttClient,
    MP_TYPE_FLAG_NONE,
    make_new, mqtt_client_make_new,
    print, mqtt_client_print,
    locals_dict, &mqtt_client_locals_dict
    );

/******************************************************************************/
// The module

static const mp_rom_map_elem_t mqtt_module_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR_mqtt) },
    { MP_ROM_QSTR(MP_QSTR_QOS0), MP_ROM_INT(0) },
    { MP_ROM_QSTR(MP_QSTR_QOS1), MP_ROM_INT(1) },
    { MP_ROM_QSTR(MP_QSTR_QOS2), MP_ROM_INT(2) },
    { MP_ROM_QSTR(MP_QSTR_ErrorDescription), MP_ROM_PTR(&mqtt_ErrorDescription_obj) },
    { MP_ROM_QSTR(MP_QSTR_MqttError), MP_ROM_PTR(&mp_type_MqttError) },
    { MP_ROM_QSTR(MP_QSTR_MqttClient), MP_ROM_PTR(&mqtt_type_client) },
    { MP_ROM_QSTR(MP_QSTR_Client), MP_ROM_PTR(&mqtt_type_client) },
    { MP_ROM_QSTR(MP_QSTR_poll), MP_ROM_PTR(&mqtt_poll_obj) },
};
static MP_DEFINE_CONST_DICT(mqtt_module_globals, mqtt_module_globals_table);

const mp_obj_module_t mqtt_user_cmodule = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&mqtt_module_globals,
};

MP_REGISTER_MODULE(MP_QSTR_mqtt, mqtt_user_cmodule);

#endif // MICROPY_PY_MQTT
