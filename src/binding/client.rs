//! `MqttClient`: the Rust side of the MicroPython class. Validates arguments
//! without raising (the C shim raises from the returned status), keeps the
//! Python objects a request refers to (so payloads are never copied), drives
//! the transport through the firmware's `socket` module and the sans-IO
//! engine, and dispatches the engine's events to the Python callbacks.
//!
//! The state lives inline in the client's GC block, so the garbage collector
//! sees every Python object it refers to; the queue and the buffers are GC
//! blocks referenced from it.
use super::ffi::*;
use super::mem::{GcBuf, GcQueue};
use super::obj::*;
use crate::proto::codec::{self, ConnectParams, QoS, Will};
use crate::proto::engine::{Action, Config, Engine, Entry, Event, Inbox, LostReason, Request};
use crate::proto::ws::{self, FrameDecoder, UpgradeParser, WsChunk, WsSink};
use crate::proto::{rc, url};
use core::ptr;

/// An error for the C side to raise.
pub enum ApiError {
    Type(&'static str),
    Value(&'static str),
    Mqtt(i32),
    Memory,
    /// An exception object made by a protected C call, raised as it is.
    Raise(Obj),
}

pub type ApiResult<T> = Result<T, ApiError>;

pub fn set_status(st: *mut mqtt_status_t, e: ApiError) {
    if st.is_null() {
        return;
    }
    let mut exc = NULL;
    let (kind, code, msg): (mqtt_status_kind_t, i32, &'static str) = match e {
        ApiError::Type(m) => (mqtt_status_kind_t_MQTT_STATUS_TYPE_ERROR, 0, m),
        ApiError::Value(m) => (mqtt_status_kind_t_MQTT_STATUS_VALUE_ERROR, 0, m),
        ApiError::Mqtt(c) => (mqtt_status_kind_t_MQTT_STATUS_MQTT_ERROR, c, ""),
        ApiError::Memory => (mqtt_status_kind_t_MQTT_STATUS_MEMORY_ERROR, 0, ""),
        ApiError::Raise(o) => {
            exc = o;
            (mqtt_status_kind_t_MQTT_STATUS_RAISE, 0, "")
        }
    };
    unsafe {
        (*st).exc = exc;
        (*st).kind = kind;
        (*st).code = code;
        (*st).msg = msg.as_ptr() as *const _;
        (*st).msg_len = msg.len();
    }
}

/// An outbound request: PUBLISH (topic `str`, payload `str`/`bytes`) or
/// SUBSCRIBE/UNSUBSCRIBE (a tuple or a list of `(filter, qos)` tuples, or of
/// filters for unsubscribe). The objects are immutable, so the slices stay valid
/// while the request is queued.
#[derive(Clone, Copy)]
pub struct Req {
    a: Obj,
    b: Obj,
}

impl Req {
    fn single(&self) -> bool {
        unsafe { is_filter_pair(self.a) || str_data(self.a).is_some() }
    }
}

/// A `(str, int)` tuple.
unsafe fn is_filter_pair(o: Obj) -> bool {
    match seq_items(o) {
        Some((items, true)) if items.len() == 2 => {
            str_data(items[0]).is_some() && is_small_int(items[1])
        }
        _ => false,
    }
}

impl Request for Req {
    fn topic(&self) -> &[u8] {
        unsafe { str_data(self.a).unwrap_or(&[]) }
    }
    fn payload(&self) -> &[u8] {
        unsafe { buffer_data(self.b).map(|(d, _)| d).unwrap_or(&[]) }
    }
    fn filter_count(&self) -> usize {
        if self.single() {
            return 1;
        }
        unsafe { seq_items(self.a).map(|(i, _)| i.len()).unwrap_or(0) }
    }
    fn filter(&self, i: usize) -> Option<(&[u8], u8)> {
        unsafe {
            if let Some(s) = str_data(self.a) {
                return if i == 0 { Some((s, 0)) } else { None };
            }
            let o = if is_filter_pair(self.a) {
                if i == 0 {
                    self.a
                } else {
                    return None;
                }
            } else {
                *seq_items(self.a)?.0.get(i)?
            };
            if let Some(s) = str_data(o) {
                return Some((s, 0));
            }
            let (pair, _) = seq_items(o)?;
            let f = str_data(*pair.first()?)?;
            let q = int_value(*pair.get(1)?)?;
            Some((f, q as u8))
        }
    }
}

/// An incoming message being received: the topic `str` and the payload
/// `bytearray` allocated at its announced size, filled in place.
pub struct InMsg {
    topic: Obj,
    payload: Obj,
    items: *mut u8,
    len: usize,
}

struct Alloc;

impl Inbox for Alloc {
    type Msg = InMsg;
    fn begin(&mut self, topic: &str, payload_len: usize) -> Option<InMsg> {
        unsafe {
            let t = mqtt_c_new_str(topic.as_ptr() as *const _, topic.len());
            if t.is_null() {
                return None;
            }
            let mut items: *mut u8 = ptr::null_mut();
            let p = mqtt_c_new_bytearray(payload_len, &mut items);
            if p.is_null() {
                return None;
            }
            Some(InMsg { topic: t, payload: p, items, len: payload_len })
        }
    }
    fn payload_mut<'a>(&mut self, msg: &'a mut InMsg) -> &'a mut [u8] {
        if msg.len == 0 || msg.items.is_null() {
            return &mut [];
        }
        unsafe { core::slice::from_raw_parts_mut(msg.items, msg.len) }
    }
}

/// The options of `connect()` that outlive the call.
struct Options {
    keep_alive: u16,
    username: Obj,
    password: Obj,
    will_topic: Obj,
    will_message: Obj,
    will_qos: u8,
    will_retain: bool,
    trust_store: Obj,
    key_store: Obj,
    private_key: Obj,
}

impl Options {
    const fn new() -> Self {
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    None,
    /// TCP connect in progress.
    Connecting,
    /// HTTP upgrade sent (over TLS for wss), waiting for 101.
    WsUpgrade,
    /// MQTT bytes flow (TLS handshake, if any, runs inside the first writes/reads).
    Up,
}

/// Largest WebSocket frame accepted (the MQTT packet limit plus framing).
const WS_MAX_FRAME: u64 = 1 << 21;

const CB_CONNECT: usize = mqtt_cb_t_MQTT_CB_CONNECT as usize;
const CB_MESSAGE: usize = mqtt_cb_t_MQTT_CB_MESSAGE as usize;
const CB_PUBLISH: usize = mqtt_cb_t_MQTT_CB_PUBLISH as usize;
const CB_SUBSCRIBE: usize = mqtt_cb_t_MQTT_CB_SUBSCRIBE as usize;
const CB_UNSUBSCRIBE: usize = mqtt_cb_t_MQTT_CB_UNSUBSCRIBE as usize;
const CB_COUNT: usize = mqtt_cb_t_MQTT_CB_COUNT as usize;

const RX_SIZE: usize = 2048;
/// How much a pump round reads before it lets callbacks run.
const READ_BUDGET: usize = 64 * 1024;
/// How much is batched into one write.
const WRITE_BATCH: usize = 16 * 1024;

pub type Queue = GcQueue<Entry<Req>>;

pub struct Client {
    url: Obj,
    scheme: url::Scheme,
    port: u16,
    host: (*const u8, usize),
    client_id: Obj,
    slot: i32,
    cbs: [Obj; CB_COUNT],
    opts: Options,
    engine: Engine<Req, Queue, InMsg>,
    path: (*const u8, usize),
    tls_ctx: Obj,
    /// The stream MQTT (or WebSocket) bytes go through: the TCP socket, or a TLS socket over it.
    sock: Obj,
    /// The TCP socket itself.
    raw: Obj,
    fd: i32,
    transport: Transport,
    /// The last write could not go on because the TCP socket is full (wait for POLLOUT).
    write_blocked: bool,
    /// The cause of the last transport failure, for on_connect (0: from the reason).
    fail_code: i32,
    ws_key: [u8; 16],
    ws_up: UpgradeParser,
    ws_dec: FrameDecoder,
    rng: u32,
    send: GcBuf,
    send_off: usize,
    rx: [u8; RX_SIZE],
    rx_start: usize,
    rx_end: usize,
}

fn now() -> u64 {
    unsafe { mqtt_c_ticks_ms() }
}

fn check_callback(cb: Obj) -> ApiResult<Obj> {
    // The C side has checked callability; None removes the callback.
    if cb.is_null() || is_none(cb) {
        Ok(none())
    } else {
        Ok(cb)
    }
}

fn qos_of(o: Obj) -> ApiResult<QoS> {
    match int_value(o) {
        Some(q @ 0..=2) => QoS::try_from(q as u8).map_err(|_| ApiError::Type("qos must be 0, 1 or 2")),
        _ => Err(ApiError::Type("qos must be 0, 1 or 2")),
    }
}

/// Topic-name and topic-filter errors of the codec, as the contract wants
/// them: NUL is MqttError -7, everything else a TypeError.
fn topic_error(e: codec::Error, what: &'static str) -> ApiError {
    match e {
        codec::Error::NulChar => ApiError::Mqtt(rc::TOPICNAME_TRUNCATED),
        codec::Error::BadUtf8 => ApiError::Type("topic is not valid UTF-8"),
        codec::Error::StringTooLong => ApiError::Type("topic is longer than 65535 bytes"),
        _ => ApiError::Type(what),
    }
}

impl Client {
    /// # Safety
    /// `this` points to zeroed memory of `size_of::<Client>()` bytes inside a GC block.
    pub unsafe fn init(this: *mut Client, url_obj: Obj, client_id: Obj, slot: i32) -> ApiResult<()> {
        let url_bytes = str_data(url_obj).ok_or(ApiError::Type("broker_url must be a str"))?;
        if str_data(client_id).is_none() {
            return Err(ApiError::Type("client_id must be a str"));
        }
        let url_str = core::str::from_utf8(url_bytes).map_err(|_| ApiError::Value("broker_url is not valid UTF-8"))?;
        let parsed = url::parse(url_str).map_err(|e| match e {
            url::UrlError::BadScheme => ApiError::Mqtt(rc::BAD_PROTOCOL),
            url::UrlError::Malformed(m) => ApiError::Value(m),
        })?;
        ptr::write(
            this,
            Client {
                url: url_obj,
                scheme: parsed.scheme,
                port: parsed.port,
                host: (parsed.host.as_ptr(), parsed.host.len()),
                path: (parsed.path.as_ptr(), parsed.path.len()),
                tls_ctx: NULL,
                client_id,
                slot,
                cbs: [none(); CB_COUNT],
                opts: Options::new(),
                engine: Engine::new(Config::default(), GcQueue::new()),
                sock: NULL,
                raw: NULL,
                fd: -1,
                transport: Transport::None,
                write_blocked: false,
                fail_code: 0,
                ws_key: [0; 16],
                ws_up: UpgradeParser::new(&[0; 16]),
                ws_dec: FrameDecoder::new(WS_MAX_FRAME),
                rng: 0,
                send: GcBuf::new(),
                send_off: 0,
                rx: [0; RX_SIZE],
                rx_start: 0,
                rx_end: 0,
            },
        );
        Ok(())
    }

    pub fn deinit(&mut self) {
        self.close_transport();
    }

    pub fn url(&self) -> &[u8] {
        unsafe { str_data(self.url).unwrap_or(&[]) }
    }

    pub fn is_connected(&self) -> bool {
        self.engine.is_connected()
    }

    pub fn is_active(&self) -> bool {
        self.engine.is_active()
    }

    pub fn set_callback(&mut self, which: usize, cb: Obj) -> ApiResult<()> {
        let cb = check_callback(cb)?;
        match self.cbs.get_mut(which) {
            Some(slot) => {
                *slot = cb;
                Ok(())
            }
            None => Err(ApiError::Value("no such callback")),
        }
    }

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

    /// `publish(topic, message, qos, retain=False) -> mid`
    pub unsafe fn publish(&mut self, topic: Obj, message: Obj, qos: Obj, retain: Obj) -> ApiResult<isize> {
        let t = str_data(topic).ok_or(ApiError::Type("topic must be a str"))?;
        if t.is_empty() {
            return Err(ApiError::Type("topic must not be empty"));
        }
        codec::validate_topic_name(t).map_err(|e| topic_error(e, "topic must not contain + or #"))?;
        let (_, kind) = buffer_data(message).ok_or(ApiError::Type("message must be str, bytes or bytearray"))?;
        let qos = qos_of(qos)?;
        let retain = bool_value(retain).ok_or(ApiError::Type("retain must be a bool"))?;
        let payload = if kind == BufKind::ByteArray { freeze(message)? } else { message };
        let mid = self
            .engine
            .publish(now(), Req { a: topic, b: payload }, qos, retain)
            .map_err(ApiError::Mqtt)?;
        self.flush_now();
        Ok(mid as isize)
    }

    /// `subscribe(topics)` / `unsubscribe(topics)` -> mid
    pub unsafe fn subscribe(&mut self, topics: Obj, unsubscribe: bool) -> ApiResult<isize> {
        let n = validate_filters(topics, unsubscribe)?;
        if n == 0 {
            return Err(ApiError::Type("no topic filter given"));
        }
        // A list may change after the call: the request keeps a tuple copy
        // (its items are immutable str and (str, int) tuples).
        let topics = match seq_items(topics) {
            Some((items, false)) => {
                let t = mqtt_c_new_tuple(items.len(), items.as_ptr());
                if t.is_null() {
                    return Err(ApiError::Memory);
                }
                t
            }
            _ => topics,
        };
        let req = Req { a: topics, b: NULL };
        let r = if unsubscribe {
            self.engine.unsubscribe(now(), req)
        } else {
            self.engine.subscribe(now(), req)
        };
        let mid = r.map_err(ApiError::Mqtt)?;
        self.flush_now();
        Ok(mid as isize)
    }

    pub fn disconnect(&mut self) -> ApiResult<()> {
        self.engine.disconnect(now()).map_err(ApiError::Mqtt)?;
        self.flush_now();
        Ok(())
    }

    // ---- transport ----------------------------------------------------------

    fn host(&self) -> &str {
        unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(self.host.0, self.host.1)) }
    }

    /// A WebSocket masking key (xorshift32 seeded from the platform's RNG:
    /// masking needs unpredictability towards intermediaries, not secrecy).
    fn next_mask(rng: &mut u32) -> [u8; 4] {
        let mut x = *rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *rng = x;
        x.to_le_bytes()
    }

    fn close_transport(&mut self) {
        if !self.sock.is_null() {
            unsafe { mqtt_c_sock_close(self.sock) };
        }
        if !self.raw.is_null() && self.raw != self.sock {
            unsafe { mqtt_c_sock_close(self.raw) };
        }
        self.sock = NULL;
        self.raw = NULL;
        self.fd = -1;
        self.transport = Transport::None;
        self.write_blocked = false;
        self.send.clear();
        self.send_off = 0;
        self.rx_start = 0;
        self.rx_end = 0;
    }

    /// The transport failed: `code` (0: derive it from `reason`) is what
    /// on_connect reports.
    fn lost(&mut self, now: u64, reason: LostReason, code: i32) {
        self.close_transport();
        self.fail_code = code;
        self.engine.handle_transport_down(now, reason);
    }

    /// A stream error: an errno, or a raised exception (TLS) whose text says what failed.
    fn stream_failed(&mut self, now: u64, err: i32) {
        let handshaking = self.scheme.is_tls() && !self.engine.is_connected();
        if err == MQTT_ERR_RAISED && handshaking {
            let mut len = 0usize;
            let p = unsafe { mqtt_c_last_error(&mut len) };
            let text = unsafe { core::slice::from_raw_parts(p as *const u8, len) };
            self.lost(now, LostReason::Tls, classify_tls_error(text));
        } else if handshaking {
            // a reset during the TLS handshake: the broker refused it
            self.lost(now, LostReason::Tls, rc::TLS_PEER_REJECTED);
        } else {
            self.lost(now, LostReason::Io, 0);
        }
    }

    fn open_transport(&mut self, now: u64) {
        self.close_transport();
        let mut sock = NULL;
        let mut fd: i32 = -1;
        let mut what: *const core::ffi::c_char = ptr::null();
        let r = unsafe {
            mqtt_c_sock_open(self.host.0 as *const _, self.host.1, self.port, &mut sock, &mut fd, &mut what)
        };
        if r != 0 || sock.is_null() {
            if r < 0 {
                self.lost(now, LostReason::Dns, rc::DNS_FAILED);
            } else {
                self.lost(now, LostReason::Io, rc::CONNECT_FAILED);
            }
            return;
        }
        self.sock = sock;
        self.raw = sock;
        self.fd = fd;
        self.transport = Transport::Connecting;
    }

    /// TCP is up: TLS over it, then the WebSocket upgrade or MQTT's CONNECT.
    fn tcp_up(&mut self, now: u64) {
        if self.scheme.is_tls() {
            let host = self.host();
            let t = unsafe { mqtt_c_tls_wrap(self.tls_ctx, self.raw, host.as_ptr() as *const _, host.len()) };
            if t.is_null() {
                self.stream_failed(now, MQTT_ERR_RAISED);
                return;
            }
            self.sock = t;
        }
        if self.scheme.is_websocket() {
            for chunk in self.ws_key.chunks_mut(4) {
                let m = Self::next_mask(&mut self.rng);
                chunk.copy_from_slice(&m);
            }
            self.ws_up = UpgradeParser::new(&self.ws_key);
            self.ws_dec = FrameDecoder::new(WS_MAX_FRAME);
            let default_port = self.port == self.scheme.default_port();
            let (host, path) = (self.host, self.path);
            let host = unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(host.0, host.1)) };
            let path = unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(path.0, path.1)) };
            if !ws::encode_upgrade(&mut self.send, host, self.port, default_port, path, &self.ws_key) {
                self.lost(now, LostReason::OutOfMemory, 0);
                return;
            }
            self.transport = Transport::WsUpgrade;
        } else {
            self.transport = Transport::Up;
            self.connect_params_up(now);
        }
    }

    fn connect_params_up(&mut self, now: u64) {
        unsafe {
            let id = core::str::from_utf8_unchecked(str_data(self.client_id).unwrap_or(&[]));
            let user = if self.opts.username.is_null() {
                None
            } else {
                Some(core::str::from_utf8_unchecked(str_data(self.opts.username).unwrap_or(&[])))
            };
            let pass = if self.opts.password.is_null() {
                None
            } else {
                buffer_data(self.opts.password).map(|(d, _)| d)
            };
            let will = if self.opts.will_topic.is_null() {
                None
            } else {
                Some(Will {
                    topic: core::str::from_utf8_unchecked(str_data(self.opts.will_topic).unwrap_or(&[])),
                    payload: if self.opts.will_message.is_null() {
                        &[]
                    } else {
                        buffer_data(self.opts.will_message).map(|(d, _)| d).unwrap_or(&[])
                    },
                    qos: QoS::try_from(self.opts.will_qos).unwrap_or(QoS::AtMostOnce),
                    retain: self.opts.will_retain,
                })
            };
            let params = ConnectParams {
                client_id: id,
                clean_session: false,
                keep_alive_s: self.opts.keep_alive,
                username: user,
                password: pass,
                will,
            };
            if self.scheme.is_websocket() {
                let rng = &mut self.rng;
                let mut sink = WsSink::new(&mut self.send, || Self::next_mask(rng));
                self.engine.handle_transport_up(now, &params, &mut sink);
            } else {
                self.engine.handle_transport_up(now, &params, &mut self.send);
            }
        }
    }

    /// Feeds MQTT bytes to the engine; returns how many it took.
    fn feed_mqtt(&mut self, now: u64, data_start: usize, data_end: usize) -> usize {
        match self.rx.get(data_start..data_end) {
            Some(d) => self.engine.handle_bytes(now, d, &mut Alloc),
            None => 0,
        }
    }

    /// Processes what is in `rx`; false when it must wait (events to deliver first).
    fn process_rx(&mut self, now: u64) -> bool {
        while self.rx_start < self.rx_end {
            match self.transport {
                Transport::WsUpgrade => {
                    let data = self.rx.get(self.rx_start..self.rx_end).unwrap_or(&[]);
                    match self.ws_up.feed(data) {
                        Ok(Some(n)) => {
                            self.rx_start += n;
                            self.transport = Transport::Up;
                            self.connect_params_up(now);
                        }
                        Ok(None) => self.rx_start = self.rx_end,
                        Err(_) => {
                            self.lost(now, LostReason::Protocol, rc::WEBSOCKET_FAILED);
                            return true;
                        }
                    }
                }
                Transport::Up if self.scheme.is_websocket() => {
                    let data = self.rx.get(self.rx_start..self.rx_end).unwrap_or(&[]);
                    let (n, chunk) = match self.ws_dec.feed(data) {
                        Ok(r) => r,
                        Err(e) => {
                            let code = if matches!(e, ws::WsError::Closed(_)) { rc::CONNECTION_CLOSED } else { rc::WEBSOCKET_FAILED };
                            self.lost(now, LostReason::Protocol, code);
                            return true;
                        }
                    };
                    match chunk {
                        None => self.rx_start += n,
                        Some(WsChunk::Data(d)) => {
                            let dlen = d.len();
                            let start = self.rx_start + n - dlen;
                            let end = self.rx_start + n;
                            let used = self.feed_mqtt(now, start, end);
                            if used < dlen {
                                self.ws_dec.unconsume(dlen - used);
                                self.rx_start = end - (dlen - used);
                                return false;
                            }
                            self.rx_start = end;
                        }
                        Some(WsChunk::Ping(p)) => {
                            let mut buf = [0u8; ws::MAX_CONTROL_PAYLOAD];
                            let len = p.len().min(buf.len());
                            buf[..len].copy_from_slice(&p[..len]);
                            self.rx_start += n;
                            let mask = Self::next_mask(&mut self.rng);
                            ws::encode_pong(&mut self.send, &buf[..len], mask);
                        }
                        Some(WsChunk::Pong) => self.rx_start += n,
                        Some(WsChunk::Close(_)) => {
                            self.rx_start += n;
                            let mask = Self::next_mask(&mut self.rng);
                            ws::encode_close(&mut self.send, ws::CLOSE_NO_STATUS, mask);
                            self.flush(now);
                            self.lost(now, LostReason::Closed, rc::CONNECTION_CLOSED);
                            return true;
                        }
                    }
                }
                Transport::Up => {
                    let used = self.feed_mqtt(now, self.rx_start, self.rx_end);
                    self.rx_start += used;
                    if used == 0 {
                        return false;
                    }
                }
                _ => return true,
            }
        }
        true
    }

    /// Reads what the socket has (within a budget); false when nothing came.
    fn read_some(&mut self, now: u64) -> bool {
        let mut progress = false;
        let mut total = 0usize;
        while matches!(self.transport, Transport::Up | Transport::WsUpgrade) && total < READ_BUDGET {
            if self.rx_start == self.rx_end {
                self.rx_start = 0;
                self.rx_end = 0;
                let mut err: i32 = 0;
                let n = unsafe { mqtt_c_sock_read(self.sock, self.rx.as_mut_ptr(), RX_SIZE, &mut err) };
                if n < 0 {
                    if err as u32 != MQTT_EAGAIN as u32 {
                        self.stream_failed(now, err);
                        return true;
                    }
                    break;
                }
                if n == 0 {
                    let code = if self.scheme.is_tls() && !self.engine.is_connected() {
                        rc::TLS_PEER_REJECTED
                    } else {
                        rc::CONNECTION_CLOSED
                    };
                    self.lost(now, LostReason::Closed, code);
                    return true;
                }
                self.rx_end = n as usize;
                total += n as usize;
                progress = true;
            }
            if !self.process_rx(now) {
                break; // events must be delivered first
            }
        }
        progress
    }

    /// Writes what the engine has to send; false when nothing moved.
    fn flush(&mut self, now: u64) -> bool {
        let mut progress = false;
        while matches!(self.transport, Transport::Up | Transport::WsUpgrade) {
            if self.send_off >= self.send.len() {
                self.send.clear();
                self.send_off = 0;
                if self.transport == Transport::Up {
                    if self.scheme.is_websocket() {
                        // one WebSocket frame per MQTT packet
                        while self.send.len() < WRITE_BATCH {
                            let rng = &mut self.rng;
                            let mut sink = WsSink::new(&mut self.send, || Self::next_mask(rng));
                            if !self.engine.poll_transmit(now, &mut sink) {
                                break;
                            }
                        }
                    } else {
                        while self.send.len() < WRITE_BATCH && self.engine.poll_transmit(now, &mut self.send) {}
                    }
                }
                if self.send.len() == 0 {
                    break;
                }
            }
            let data = self.send.get(self.send_off..).unwrap_or(&[]);
            let mut err: i32 = 0;
            let n = unsafe { mqtt_c_sock_write(self.sock, data.as_ptr(), data.len(), &mut err) };
            if n < 0 {
                if err as u32 != MQTT_EAGAIN as u32 {
                    self.stream_failed(now, err);
                    return true;
                }
                // Plain TCP: the socket is full. TLS: the socket may be writable
                // while the handshake waits for the peer: then wait for input.
                let f = unsafe { mqtt_c_sock_poll(self.raw, MQTT_STREAM_POLL_WR as usize) };
                self.write_blocked = f & (MQTT_STREAM_POLL_WR as usize) == 0;
                break;
            }
            self.write_blocked = false;
            self.send_off += n as usize;
            progress = true;
        }
        progress
    }

    /// From an API call: send what can go now, and let the pump deliver events.
    fn flush_now(&mut self) {
        let t = now();
        self.flush(t);
        unsafe { mqtt_c_request_pump() };
    }

    /// One round of I/O and timers; true when something happened.
    fn drive(&mut self, now: u64) -> bool {
        let mut progress = false;
        self.engine.handle_timeout(now);
        match self.engine.poll_action(now) {
            Action::OpenTransport => {
                self.open_transport(now);
                progress = true;
            }
            Action::CloseTransport => {
                self.flush(now);
                self.close_transport();
                progress = true;
            }
            Action::Idle => {}
        }
        if self.transport == Transport::Connecting {
            let f = unsafe { mqtt_c_sock_poll(self.raw, (MQTT_STREAM_POLL_WR | MQTT_STREAM_POLL_RD) as usize) };
            if f & ((MQTT_STREAM_POLL_ERR | MQTT_STREAM_POLL_HUP) as usize) != 0 {
                self.lost(now, LostReason::Io, rc::CONNECT_FAILED);
                return true;
            }
            if f & (MQTT_STREAM_POLL_WR as usize) != 0 {
                self.tcp_up(now);
                progress = true;
            }
        }
        if matches!(self.transport, Transport::Up | Transport::WsUpgrade) {
            progress |= self.read_some(now);
            progress |= self.flush(now);
        }
        progress
    }

    fn want_write(&self) -> bool {
        self.transport == Transport::Connecting || (self.send_off < self.send.len() && self.write_blocked)
    }

    /// The code on_connect reports for a failure the engine announced with rc -1.
    fn failure_code(&mut self, reason: Option<LostReason>) -> i32 {
        let code = core::mem::replace(&mut self.fail_code, 0);
        if code != 0 {
            return code;
        }
        match reason {
            Some(r) => rc::lost_reason_code(r),
            None => rc::FAILURE,
        }
    }
}

/// Which TLS failure the tls module's exception text describes.
fn classify_tls_error(text: &[u8]) -> i32 {
    let has = |needle: &[u8]| text.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle));
    if has(b"Common Name") || has(b"CN") && has(b"match") || has(b"hostname") {
        rc::TLS_NAME_MISMATCH
    } else if has(b"not correctly signed")
        || has(b"trusted")
        || has(b"VERIFY_FAILED")
        || has(b"verif")
        || has(b"expired")
        || has(b"revoked")
    {
        rc::TLS_CERT_NOT_TRUSTED
    } else if has(b"alert") || text.starts_with(b"OSError: ") {
        // a fatal alert, or the broker closing or resetting the handshake
        rc::TLS_PEER_REJECTED
    } else {
        rc::TLS_HANDSHAKE_FAILED
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

/// A `bytes` copy of a `bytearray` (other objects are immutable already).
unsafe fn freeze(o: Obj) -> ApiResult<Obj> {
    if o.is_null() {
        return Ok(o);
    }
    match buffer_data(o) {
        Some((d, BufKind::ByteArray)) => {
            let b = mqtt_c_new_bytes(d.as_ptr(), d.len());
            if b.is_null() {
                Err(ApiError::Memory)
            } else {
                Ok(b)
            }
        }
        _ => Ok(o),
    }
}

/// Checks `topics` (one `(filter, qos)` tuple or a list of them; for
/// unsubscribe also plain filters) and returns how many filters there are.
unsafe fn validate_filters(topics: Obj, unsubscribe: bool) -> ApiResult<usize> {
    let bad = ApiError::Type("topics must be a (filter, qos) tuple or a list of them");
    let check_one = |o: Obj| -> ApiResult<()> {
        let (f, q) = if let Some(s) = str_data(o) {
            if !unsubscribe {
                return Err(ApiError::Type("topics must be a (filter, qos) tuple or a list of them"));
            }
            (s, None)
        } else {
            let (pair, is_tuple) =
                seq_items(o).ok_or(ApiError::Type("topics must be a (filter, qos) tuple or a list of them"))?;
            if !is_tuple || pair.len() != 2 {
                return Err(ApiError::Type("topics must be a (filter, qos) tuple or a list of them"));
            }
            let f = str_data(pair[0]).ok_or(ApiError::Type("a topic filter must be a str"))?;
            (f, Some(pair[1]))
        };
        if f.is_empty() {
            return Err(ApiError::Type("a topic filter must not be empty"));
        }
        codec::validate_topic_filter(f).map_err(|e| topic_error(e, "invalid topic filter"))?;
        if let Some(q) = q {
            qos_of(q)?;
        }
        Ok(())
    };
    if str_data(topics).is_some() || is_filter_pair(topics) {
        check_one(topics)?;
        return Ok(1);
    }
    match seq_items(topics) {
        Some((items, false)) => {
            for &o in items {
                check_one(o)?;
            }
            Ok(items.len())
        }
        Some((_, true)) => {
            // a tuple that is not a (filter, qos) pair
            check_one(topics)?;
            Ok(1)
        }
        None => Err(bad),
    }
}

/// Runs one client: timers, transport, callbacks. Returns whether the client is
/// still active.
///
/// # Safety
/// `p` is a live client. No Rust borrow of it is held while a callback runs, as
/// a callback may call back into the client.
pub unsafe fn pump(p: *mut Client) -> bool {
    let mut busy = true;
    for _ in 0..64 {
        let t = now();
        let mut progress = (*p).drive(t);
        loop {
            let ev = (*p).engine.poll_event();
            let ev = match ev {
                Some(e) => e,
                None => break,
            };
            progress = true;
            dispatch(p, ev);
        }
        if !progress {
            busy = false;
            break;
        }
    }
    if busy {
        // Still work to do (e.g. TLS data already read from the socket, which
        // the waker cannot see): let other clients and the script run, then
        // come back.
        mqtt_c_request_pump();
    }
    let c = &mut *p;
    let active = c.engine.is_active() || !c.sock.is_null();
    if active {
        let deadline = c.engine.poll_timeout().unwrap_or(u64::MAX);
        mqtt_c_watch(c.slot, c.fd, c.want_write(), deadline);
    }
    active
}

unsafe fn dispatch(p: *mut Client, ev: Event<InMsg>) {
    match ev {
        Event::Connect { rc, session_present, reason } => {
            let code = if rc == rc::FAILURE { (*p).failure_code(reason) } else { rc };
            if rc >= 0 {
                (*p).fail_code = 0;
            }
            let cb = (*p).cbs[CB_CONNECT];
            mqtt_c_call_connect(cb, code as mp_int_t, session_present);
        }
        Event::Message { msg, .. } => {
            let cb = (*p).cbs[CB_MESSAGE];
            mqtt_c_call_message(cb, msg.topic, msg.payload);
        }
        Event::Published { mid, rc } => {
            let cb = (*p).cbs[CB_PUBLISH];
            mqtt_c_call_ints(cb, 2, mid as mp_int_t, rc as mp_int_t);
        }
        Event::Subscribed { mid, granted } => {
            let cb = (*p).cbs[CB_SUBSCRIBE];
            mqtt_c_call_subscribe(cb, mid as mp_int_t, granted.as_ptr(), granted.len());
        }
        Event::Unsubscribed { mid } => {
            let cb = (*p).cbs[CB_UNSUBSCRIBE];
            mqtt_c_call_ints(cb, 1, mid as mp_int_t, 0);
        }
    }
}
