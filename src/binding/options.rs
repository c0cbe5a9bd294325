//! The options of `connect()`: parsing and checking them, and what of them
//! outlives the call.
use super::client::*;
use super::ffi::*;
use super::obj::*;
use crate::proto::codec;
use crate::proto::engine::Config;
use crate::proto::rc;

/// The options of `connect()` that outlive the call.
pub(super) struct Options {
    pub(super) keep_alive: u16,
    pub(super) username: Obj,
    pub(super) password: Obj,
    pub(super) will_topic: Obj,
    pub(super) will_message: Obj,
    pub(super) will_qos: u8,
    pub(super) will_retain: bool,
    pub(super) trust_store: Obj,
    pub(super) key_store: Obj,
    pub(super) private_key: Obj,
}

impl Options {
    pub(super) const fn new() -> Self {
        Options {
            keep_alive: 0,
            username: NULL,
            password: NULL,
            will_topic: NULL,
            will_message: NULL,
            will_qos: 0,
            will_retain: false,
            trust_store: NULL,
            key_store: NULL,
            private_key: NULL,
        }
    }
}

impl Client {
    /// `connect(on_connect, options={})`
    pub unsafe fn connect(&mut self, on_connect: Obj, options: Obj) -> ApiResult<()> {
        if self.engine.is_active() {
            return Err(ApiError::Mqtt(rc::COMMAND_IGNORED));
        }
        let cb = check_callback(on_connect)?;
        let mut o = Options::new();
        let mut config = Config::default();
        if !options.is_null() && !is_none(options) {
            let entries = dict_entries(options).ok_or(ApiError::Type("options must be a dict"))?;
            for (k, v) in entries {
                let key = str_data(k).ok_or(ApiError::Type("option names must be str"))?;
                match key {
                    b"keep_alive" => {
                        o.keep_alive = if is_none(v) {
                            0
                        } else {
                            match int_value(v) {
                                Some(n @ 0..=65535) => n as u16,
                                _ => return Err(ApiError::Type("keep_alive must be an int 0..65535 or None")),
                            }
                        }
                    }
                    b"username" => {
                        str_data(v).ok_or(ApiError::Type("username must be a str"))?;
                        o.username = v;
                    }
                    b"password" => {
                        match buffer_data(v) {
                            Some(_) => o.password = v,
                            None => return Err(ApiError::Type("password must be str, bytes or bytearray")),
                        }
                    }
                    b"will_topic" => {
                        str_data(v).ok_or(ApiError::Type("will_topic must be a str"))?;
                        o.will_topic = v;
                    }
                    b"will_qos" => {
                        o.will_qos = match int_value(v) {
                            Some(q @ 0..=2) => q as u8,
                            _ => return Err(ApiError::Type("will_qos must be 0, 1 or 2")),
                        }
                    }
                    b"will_message" => {
                        if !is_none(v) && buffer_data(v).is_none() {
                            return Err(ApiError::Type("will_message must be str, bytes, bytearray or None"));
                        }
                        o.will_message = if is_none(v) { NULL } else { v };
                    }
                    b"will_retain" => {
                        o.will_retain = bool_value(v).ok_or(ApiError::Type("will_retain must be a bool"))?;
                    }
                    b"trust_store" | b"key_store" | b"private_key" => {
                        if buffer_data(v).is_none() {
                            return Err(ApiError::Type("TLS options must be str, bytes or bytearray"));
                        }
                        match key {
                            b"trust_store" => o.trust_store = v,
                            b"key_store" => o.key_store = v,
                            _ => o.private_key = v,
                        }
                    }
                    b"max_inflight" => {
                        config.max_inflight = match int_value(v) {
                            Some(n @ 1..=65535) => n as u16,
                            _ => return Err(ApiError::Type("max_inflight must be an int 1..65535")),
                        }
                    }
                    b"max_buffered" => {
                        config.max_buffered = match int_value(v) {
                            Some(n) if n >= 0 => n as usize,
                            Some(_) => return Err(ApiError::Mqtt(rc::MAX_BUFFERED_BOUND)),
                            // a big int: a huge bound is no bound; a negative one is -19
                            None if is_big_int(v) && mp_obj_int_sign(v) < 0 => {
                                return Err(ApiError::Mqtt(rc::MAX_BUFFERED_BOUND))
                            }
                            None if is_big_int(v) => usize::MAX,
                            None => return Err(ApiError::Type("max_buffered must be an int >= 0")),
                        }
                    }
                    b"poison_retries" => {
                        config.poison_retries = match int_value(v) {
                            Some(n @ 0..=255) => n as u8,
                            _ => return Err(ApiError::Type("poison_retries must be an int 0..255")),
                        }
                    }
                    b"max_packet_size" => {
                        config.max_packet_size = if is_none(v) {
                            None
                        } else {
                            match int_value(v) {
                                Some(n) if n > 0 => Some(n as usize),
                                _ => return Err(ApiError::Type("max_packet_size must be an int > 0 or None")),
                            }
                        }
                    }
                    _ => return Err(ApiError::Type("unknown connect option")),
                }
            }
        }
        let has = |x: Obj| !x.is_null();
        if has(o.password) && !has(o.username) {
            return Err(ApiError::Type("password needs username"));
        }
        let will_given = has(o.will_message) || o.will_retain || will_key_present(options);
        if will_given && !has(o.will_topic) {
            return Err(ApiError::Type("will options need will_topic"));
        }
        if has(o.will_topic) {
            if !will_qos_present(options) {
                return Err(ApiError::Type("will_topic needs will_qos"));
            }
            let t = str_data(o.will_topic).unwrap_or(&[]);
            if t.is_empty() {
                return Err(ApiError::Mqtt(rc::ZERO_LENGTH_WILL_TOPIC));
            }
            codec::validate_topic_name(t).map_err(|e| topic_error(e, "will_topic must be a valid topic name"))?;
        }
        let tls_opts = has(o.trust_store) || has(o.key_store) || has(o.private_key);
        if tls_opts && !self.scheme.is_tls() {
            return Err(ApiError::Type("TLS options need an ssl, mqtts or wss URL"));
        }
        if has(o.private_key) && !has(o.key_store) {
            return Err(ApiError::Type("private_key needs key_store"));
        }
        // bytearray values may change after the call: keep a copy (the tls
        // module takes no bytearray either).
        o.password = freeze(o.password)?;
        o.will_message = freeze(o.will_message)?;
        o.trust_store = freeze(o.trust_store)?;
        o.key_store = freeze(o.key_store)?;
        o.private_key = freeze(o.private_key)?;
        if self.scheme.is_tls() {
            // One TLS context for all (re)connections: invalid certificate or
            // key data is an exception now rather than a failure later.
            let mut exc = NULL;
            let ctx = mqtt_c_tls_context(o.trust_store, o.key_store, o.private_key, &mut exc);
            if ctx.is_null() {
                return Err(if exc.is_null() { ApiError::Mqtt(rc::TLS_NO_TRUST_STORE) } else { ApiError::Raise(exc) });
            }
            self.tls_ctx = ctx;
        }
        if self.rng == 0 {
            self.rng = mqtt_c_random() | 1;
        }


        self.engine.set_config(config);
        self.opts = o;
        self.cbs[CB_CONNECT] = cb;
        self.fail_code = 0;
        self.engine.connect(now()).map_err(ApiError::Mqtt)
    }
}

/// Whether any of the will options other than will_topic was given.
unsafe fn will_key_present(options: Obj) -> bool {
    if options.is_null() || is_none(options) {
        return false;
    }
    match dict_entries(options) {
        Some(it) => {
            for (k, _) in it {
                if let Some(b"will_qos" | b"will_message" | b"will_retain") = str_data(k) {
                    return true;
                }
            }
            false
        }
        None => false,
    }
}

unsafe fn will_qos_present(options: Obj) -> bool {
    match dict_entries(options) {
        Some(mut it) => it.any(|(k, _)| str_data(k) == Some(b"will_qos")),
        None => false,
    }
}
