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
use super::options::Options;
use super::persist::Store;
use crate::proto::codec::{self, QoS};
use crate::proto::engine::{Config, Engine, Entry, Inbox, Kind, Request};
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
    /// A PUBLISH of `topic` (a str) with `payload` (str or bytes).
    #[cfg(feature = "persistence")]
    pub(super) fn publish(topic: Obj, payload: Obj) -> Req {
        Req { a: topic, b: payload }
    }
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
    pub(super) topic: Obj,
    pub(super) payload: Obj,
}

pub(super) struct Alloc;

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
            Some(InMsg { topic: t, payload: p })
        }
    }
    fn payload_mut<'a>(&mut self, msg: &'a mut InMsg) -> &'a mut [u8] {
        // the bytearray made by `begin`: its items are a GC block of its length
        match unsafe { buffer_data(msg.payload) } {
            Some((d, BufKind::ByteArray)) if !d.is_empty() => unsafe {
                core::slice::from_raw_parts_mut(d.as_ptr() as *mut u8, d.len())
            },
            _ => &mut [],
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Transport {
    None,
    /// TCP connect in progress.
    Connecting,
    /// HTTP upgrade sent (over TLS for wss), waiting for 101.
    #[cfg_attr(not(feature = "websocket"), allow(dead_code))]
    WsUpgrade,
    /// MQTT bytes flow (TLS handshake, if any, runs inside the first writes/reads).
    Up,
}

pub(super) const CB_CONNECT: usize = mqtt_cb_t_MQTT_CB_CONNECT as usize;
pub(super) const CB_MESSAGE: usize = mqtt_cb_t_MQTT_CB_MESSAGE as usize;
pub(super) const CB_PUBLISH: usize = mqtt_cb_t_MQTT_CB_PUBLISH as usize;
pub(super) const CB_SUBSCRIBE: usize = mqtt_cb_t_MQTT_CB_SUBSCRIBE as usize;
pub(super) const CB_UNSUBSCRIBE: usize = mqtt_cb_t_MQTT_CB_UNSUBSCRIBE as usize;
pub(super) const CB_COUNT: usize = mqtt_cb_t_MQTT_CB_COUNT as usize;

/// The receive buffer inside the client: one read of up to this much is tried
/// first, so an idle wake-up, an acknowledgement or a small message needs no
/// other buffer.
pub(super) const RX_SMALL: usize = 64;
/// The receive buffer a read moves to when the small one came back full (more
/// is waiting): a GC block that lives while its bytes are being processed.
pub(super) const RX_SIZE: usize = 2048;
/// How long the buffers stay grown after a burst before they are given back.
pub(super) const TRIM_DELAY_MS: u64 = 1000;
/// How soon a pump retries when a new QoS 2 message could not get heap for its id.
pub(super) const RX_BLOCKED_RETRY_MS: u64 = 100;
/// How much a pump round reads before it lets callbacks run.
pub(super) const READ_BUDGET: usize = 64 * 1024;
/// How much is batched into one write.
pub(super) const WRITE_BATCH: usize = 16 * 1024;

pub type Queue = GcQueue<Entry<Req>>;
/// Inbound QoS 2 packet ids between PUBLISH and PUBREL: a GC block that grows
/// with them (2 bytes each) and shrinks back.
pub type InboundIds = GcQueue<u16>;

pub struct Client {
    pub(super) url: Obj,
    pub(super) scheme: url::Scheme,
    pub(super) port: u16,
    pub(super) host: (*const u8, usize),
    pub(super) client_id: Obj,
    pub(super) slot: i32,
    pub(super) cbs: [Obj; CB_COUNT],
    pub(super) opts: Options,
    pub(super) engine: Engine<Req, Queue, InMsg, InboundIds>,
    #[cfg_attr(not(feature = "websocket"), allow(dead_code))]
    pub(super) path: (*const u8, usize),
    pub(super) tls_ctx: Obj,
    /// The stream MQTT (or WebSocket) bytes go through: the TCP socket, or a TLS socket over it.
    pub(super) sock: Obj,
    /// The TCP socket itself.
    pub(super) raw: Obj,
    pub(super) fd: i32,
    pub(super) transport: Transport,
    /// The last write could not go on because the TCP socket is full (wait for POLLOUT).
    pub(super) write_blocked: bool,
    /// The cause of the last transport failure, for on_connect (0: from the reason).
    pub(super) fail_code: i32,
    /// WebSocket state while a ws/wss transport is open.
    #[cfg(feature = "websocket")]
    pub(super) ws: super::websocket::WsState,
    pub(super) rng: u32,
    pub(super) send: GcBuf,
    pub(super) send_off: usize,
    /// The receive buffer in use: `rx_small`, or a GC block of `RX_SIZE` bytes.
    pub(super) rx_big: *mut u8,
    pub(super) rx_small: [u8; RX_SMALL],
    pub(super) rx_start: usize,
    pub(super) rx_end: usize,
    /// Plain TCP: the last read found the kernel's receive buffer empty (it
    /// returned EAGAIN or less than it asked for). Until the event loop finds
    /// the socket readable again, another read would only return EAGAIN.
    pub(super) rx_drained: bool,
    /// The persistent session store (`persistence=DIR`), None: in memory only.
    pub(super) store: Option<Store>,
    /// When the grown buffers are given back (0: none is grown).
    pub(super) trim_at: u64,
}

pub(super) fn now() -> u64 {
    unsafe { mqtt_c_ticks_ms() }
}

pub(super) fn check_callback(cb: Obj) -> ApiResult<Obj> {
    // The C side has checked callability; None removes the callback.
    if cb.is_null() || is_none(cb) {
        Ok(none())
    } else {
        Ok(cb)
    }
}

pub(super) fn qos_of(o: Obj) -> ApiResult<QoS> {
    match int_value(o) {
        Some(q @ 0..=2) => QoS::try_from(q as u8).map_err(|_| ApiError::Type("qos must be 0, 1 or 2")),
        _ => Err(ApiError::Type("qos must be 0, 1 or 2")),
    }
}

/// Topic-name and topic-filter errors of the codec, as the contract wants
/// them: NUL is MqttError -7, everything else a TypeError.
pub(super) fn topic_error(e: codec::Error, what: &'static str) -> ApiError {
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
    pub unsafe fn init(this: *mut Client, url_obj: Obj, client_id: Obj, persistence: Obj, slot: i32) -> ApiResult<()> {
        let url_bytes = str_data(url_obj).ok_or(ApiError::Type("broker_url must be a str"))?;
        if str_data(client_id).is_none() {
            return Err(ApiError::Type("client_id must be a str"));
        }
        let url_str = core::str::from_utf8(url_bytes).map_err(|_| ApiError::Value("broker_url is not valid UTF-8"))?;
        let parsed = url::parse(url_str).map_err(|e| match e {
            url::UrlError::BadScheme => ApiError::Mqtt(rc::BAD_PROTOCOL),
            url::UrlError::Malformed(m) => ApiError::Value(m),
        })?;
        if parsed.scheme.is_websocket() && !super::websocket::SUPPORTED {
            return Err(ApiError::Mqtt(rc::BAD_PROTOCOL));
        }
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
                engine: Engine::with_inbound_ids(Config::default(), GcQueue::new(), GcQueue::new()),
                sock: NULL,
                raw: NULL,
                fd: -1,
                transport: Transport::None,
                write_blocked: false,
                fail_code: 0,
                #[cfg(feature = "websocket")]
                ws: super::websocket::WsState::new(),
                rng: 0,
                send: GcBuf::new(),
                send_off: 0,
                rx_big: ptr::null_mut(),
                rx_small: [0; RX_SMALL],
                rx_start: 0,
                rx_end: 0,
                rx_drained: false,
                store: None,
                trim_at: 0,
            },
        );
        if !persistence.is_null() && !is_none(persistence) {
            (*this).open_store(persistence)?;
        }
        Ok(())
    }

    pub fn deinit(&mut self) {
        self.close_transport();
        self.close_store();
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
        let stored = self.store.is_some() && qos != QoS::AtMostOnce;
        if stored && self.sync_changes(false).is_err() {
            return Err(ApiError::Mqtt(rc::PERSISTENCE_ERROR));
        }
        let mid = self
            .engine
            .publish(now(), Req { a: topic, b: payload }, qos, retain)
            .map_err(ApiError::Mqtt)?;
        if stored {
            self.store_publish(mid)?;
        }
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

    /// `pending()`: the mids of the unfinished publishes, in queue order.
    pub fn pending(&self) -> ApiResult<Obj> {
        let q = self.engine.queue();
        let n = crate::proto::engine::Queue::len(q);
        let count = (0..n)
            .filter(|&i| crate::proto::engine::Queue::get(q, i).is_some_and(|e| matches!(e.kind(), Kind::Publish { .. })))
            .count();
        let mut items: *mut Obj = core::ptr::null_mut();
        let list = unsafe { mqtt_c_new_list(count, &mut items) };
        if list.is_null() {
            return Err(ApiError::Memory);
        }
        let mut k = 0usize;
        for i in 0..n {
            if let Some(e) = crate::proto::engine::Queue::get(q, i) {
                if matches!(e.kind(), Kind::Publish { .. }) && k < count {
                    unsafe { *items.add(k) = new_small_int(e.mid() as isize) };
                    k += 1;
                }
            }
        }
        Ok(list)
    }

    pub fn disconnect(&mut self) -> ApiResult<()> {
        self.engine.disconnect(now()).map_err(ApiError::Mqtt)?;
        self.flush_now();
        Ok(())
    }
}

/// A `bytes` copy of a `bytearray` (other objects are immutable already).
pub(super) unsafe fn freeze(o: Obj) -> ApiResult<Obj> {
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
