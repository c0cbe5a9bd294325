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
use crate::proto::{rc, url};
use core::ptr;

/// An error for the C side to raise.
pub enum ApiError {
    Type(&'static str),
    Value(&'static str),
    Mqtt(i32),
    Memory,
}

pub type ApiResult<T> = Result<T, ApiError>;

pub fn set_status(st: *mut mqtt_status_t, e: ApiError) {
    if st.is_null() {
        return;
    }
    let (kind, code, msg): (mqtt_status_kind_t, i32, &'static str) = match e {
        ApiError::Type(m) => (mqtt_status_kind_t_MQTT_STATUS_TYPE_ERROR, 0, m),
        ApiError::Value(m) => (mqtt_status_kind_t_MQTT_STATUS_VALUE_ERROR, 0, m),
        ApiError::Mqtt(c) => (mqtt_status_kind_t_MQTT_STATUS_MQTT_ERROR, c, ""),
        ApiError::Memory => (mqtt_status_kind_t_MQTT_STATUS_MEMORY_ERROR, 0, ""),
    };
    unsafe {
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
    Connecting,
    Up,
}

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
    sock: Obj,
    fd: i32,
    transport: Transport,
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
                client_id,
                slot,
                cbs: [none(); CB_COUNT],
                opts: Options::new(),
                engine: Engine::new(Config::default(), GcQueue::new()),
                sock: NULL,
                fd: -1,
                transport: Transport::None,
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
        if self.scheme.is_tls() || self.scheme.is_websocket() {
            // TLS and WebSocket transports are not in this build yet.
            return Err(ApiError::Mqtt(rc::SSL_NOT_SUPPORTED));
        }
        // bytearray values may change after the call: keep a copy.
        o.password = freeze(o.password)?;
        o.will_message = freeze(o.will_message)?;
        o.trust_store = freeze(o.trust_store)?;
        o.key_store = freeze(o.key_store)?;
        o.private_key = freeze(o.private_key)?;


        self.engine.set_config(config);
        self.opts = o;
        self.cbs[CB_CONNECT] = cb;
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
        let req = Req { a: topics, b: NULL };
        let n = validate_filters(topics, unsubscribe)?;
        if n == 0 {
            return Err(ApiError::Type("no topic filter given"));
        }
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

    fn close_transport(&mut self) {
        if !self.sock.is_null() {
            unsafe { mqtt_c_sock_close(self.sock) };
        }
        self.sock = NULL;
        self.fd = -1;
        self.transport = Transport::None;
        self.send.clear();
        self.send_off = 0;
        self.rx_start = 0;
        self.rx_end = 0;
    }

    fn lost(&mut self, now: u64, reason: LostReason) {
        self.close_transport();
        self.engine.handle_transport_down(now, reason);
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
            let reason = if r < 0 { LostReason::Dns } else { LostReason::Io };
            self.engine.handle_transport_down(now, reason);
            return;
        }
        self.sock = sock;
        self.fd = fd;
        self.transport = Transport::Connecting;
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
            self.engine.handle_transport_up(now, &params, &mut self.send);
        }
    }

    /// Reads what the socket has (within a budget); false when nothing came.
    fn read_some(&mut self, now: u64) -> bool {
        let mut progress = false;
        let mut total = 0usize;
        while self.transport == Transport::Up && total < READ_BUDGET {
            if self.rx_start == self.rx_end {
                self.rx_start = 0;
                self.rx_end = 0;
                let mut err: i32 = 0;
                let n = unsafe { mqtt_c_sock_read(self.sock, self.rx.as_mut_ptr(), RX_SIZE, &mut err) };
                if n < 0 {
                    if err as u32 != MQTT_EAGAIN as u32 {
                        self.lost(now, LostReason::Io);
                        return true;
                    }
                    break;
                }
                if n == 0 {
                    self.lost(now, LostReason::Closed);
                    return true;
                }
                self.rx_end = n as usize;
                total += n as usize;
                progress = true;
            }
            let data = match self.rx.get(self.rx_start..self.rx_end) {
                Some(d) => d,
                None => break,
            };
            let used = self.engine.handle_bytes(now, data, &mut Alloc);
            if used == 0 && self.rx_start != self.rx_end {
                break; // events must be delivered first
            }
            self.rx_start += used;
        }
        progress
    }

    /// Writes what the engine has to send; false when nothing moved.
    fn flush(&mut self, now: u64) -> bool {
        let mut progress = false;
        while self.transport == Transport::Up {
            if self.send_off >= self.send.len() {
                self.send.clear();
                self.send_off = 0;
                while self.send.len() < WRITE_BATCH && self.engine.poll_transmit(now, &mut self.send) {}
                if self.send.len() == 0 {
                    break;
                }
            }
            let data = self.send.get(self.send_off..).unwrap_or(&[]);
            let mut err: i32 = 0;
            let n = unsafe { mqtt_c_sock_write(self.sock, data.as_ptr(), data.len(), &mut err) };
            if n < 0 {
                if err as u32 != MQTT_EAGAIN as u32 {
                    self.lost(now, LostReason::Io);
                    return true;
                }
                break;
            }
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
            let f = unsafe { mqtt_c_sock_poll(self.sock, (MQTT_STREAM_POLL_WR | MQTT_STREAM_POLL_RD) as usize) };
            if f & ((MQTT_STREAM_POLL_ERR | MQTT_STREAM_POLL_HUP) as usize) != 0 {
                self.lost(now, LostReason::Io);
                return true;
            }
            if f & (MQTT_STREAM_POLL_WR as usize) != 0 {
                self.transport = Transport::Up;
                self.connect_params_up(now);
                progress = true;
            }
        }
        if self.transport == Transport::Up {
            progress |= self.read_some(now);
            progress |= self.flush(now);
        }
        progress
    }

    fn want_write(&self) -> bool {
        self.transport == Transport::Connecting || self.send_off < self.send.len()
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
            break;
        }
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
        Event::Connect { rc, session_present, .. } => {
            let cb = (*p).cbs[CB_CONNECT];
            mqtt_c_call_connect(cb, rc as mp_int_t, session_present);
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
