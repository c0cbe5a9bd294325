//! The sans-IO session engine: connection state machine, reconnect schedule, keep-alive,
//! QoS 1/2 flows, in-flight window and buffer. See the module documentation of
//! [`crate::proto`] for the design and the rules.
//!
//! This file holds the engine's types, its state, its construction and accessors, and the
//! event queue. The code is split by concern:
//! - `lifecycle`: `connect`/`disconnect`, `poll_action`, transport up/down, CONNACK,
//!   keep-alive and attempt timeouts, a lost connection (reconnect schedule, poison rule);
//! - `outbound`: `publish`/`subscribe`/`unsubscribe`, packet ids, the request queue, the
//!   in-flight window and buffer, `poll_transmit`;
//! - `inbound`: `handle_bytes` and the receive state machine, incoming PUBLISH, inbound
//!   QoS 1/2 and the QoS 2 id store, the acknowledgements of the engine's requests;
//! - `persist`: the change queue for a persistent store, and restoring a session.

use heapless::{Deque, Vec};

use super::backoff::{self, PoisonWatch};
use super::codec::{self, Error, FixedHeaderParser};
pub use super::codec::{ConnectParams, QoS, Sink, Will};
use super::rc;
use super::store::Change;

mod inbound;
mod lifecycle;
mod outbound;
mod persist;

use inbound::Rx;

/// Capacity of the queue of state changes for a persistent store.
pub const CHANGE_CAPACITY: usize = 8;

/// Monotonic milliseconds, supplied by the caller.
pub type Instant = u64;

/// Most topic filters in one SUBSCRIBE (more is `rc::BAD_STRUCTURE` at `subscribe()`).
pub const MAX_SUBSCRIBE_FILTERS: usize = 16;
/// Longest topic of an incoming PUBLISH the engine accepts (bytes); a longer one drops the
/// connection with [`LostReason::PacketTooLarge`].
pub const MAX_INCOMING_TOPIC_LEN: usize = 256;
/// Capacity of the engine's event queue.
pub const EVENT_CAPACITY: usize = 16;
/// Capacity of the queue of acknowledgements waiting to be written.
pub const ACK_CAPACITY: usize = 16;
/// The reconnect delays in milliseconds; after the last one, every 60 s.
pub const RETRY_SCHEDULE_MS: [u64; 7] = [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000];

const RX_BUF: usize = MAX_INCOMING_TOPIC_LEN + 4;

/// Capacity of the default inbound QoS 2 id table ([`InboundIds`]).
pub const INBOUND_QOS2_IDS: usize = 32;
/// The default store of inbound QoS 2 packet ids: an inline table of
/// [`INBOUND_QOS2_IDS`] ids. A binding with an allocator passes its own growable
/// [`Queue`] instead (see [`Engine::with_inbound_ids`]).
pub type InboundIds = Vec<u16, INBOUND_QOS2_IDS>;

/// An outbound request's data, owned by the binding. The core never copies a payload except
/// into the [`Sink`] when it encodes the packet.
pub trait Request {
    /// PUBLISH topic name.
    fn topic(&self) -> &[u8];
    /// PUBLISH payload.
    fn payload(&self) -> &[u8];
    /// SUBSCRIBE/UNSUBSCRIBE filter count.
    fn filter_count(&self) -> usize;
    /// (filter, requested qos); the qos is ignored for UNSUBSCRIBE.
    fn filter(&self, i: usize) -> Option<(&[u8], u8)>;
}

/// Storage for the engine's request queue, provided by the binding (no allocator here).
/// Order-preserving; `push_back` gives the value back when memory is exhausted.
pub trait Queue<T> {
    fn len(&self) -> usize;
    fn get(&self, i: usize) -> Option<&T>;
    fn get_mut(&mut self, i: usize) -> Option<&mut T>;
    fn push_back(&mut self, v: T) -> Result<(), T>;
    /// Removes element `i`, shifting later elements forward (order kept).
    fn remove(&mut self, i: usize) -> Option<T>;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T, const N: usize> Queue<T> for Vec<T, N> {
    fn len(&self) -> usize {
        self.as_slice().len()
    }
    fn get(&self, i: usize) -> Option<&T> {
        self.as_slice().get(i)
    }
    fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.as_mut_slice().get_mut(i)
    }
    fn push_back(&mut self, v: T) -> Result<(), T> {
        self.push(v)
    }
    fn remove(&mut self, i: usize) -> Option<T> {
        if i < self.as_slice().len() {
            Some(Vec::remove(self, i))
        } else {
            None
        }
    }
}

/// What an [`Entry`] asks for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Publish { qos: QoS, retain: bool },
    Subscribe,
    Unsubscribe,
}

/// Protocol state of an [`Entry`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum EntryState {
    /// Never written yet (buffered, or waiting for `poll_transmit`).
    Queued,
    /// PUBLISH (QoS 1/2), SUBSCRIBE or UNSUBSCRIBE written, awaiting PUBACK/PUBREC/SUBACK/UNSUBACK.
    Sent,
    /// QoS 2: PUBREC received; PUBREL written or to be written, awaiting PUBCOMP.
    Released,
}

/// One queued request with its protocol state. The binding only stores it in its [`Queue`]
/// (and may read the handle, e.g. to mark it for its garbage collector).
#[derive(Debug)]
pub struct Entry<H> {
    handle: H,
    kind: Kind,
    mid: u32,
    pid: u16,
    /// Publish only: holds an in-flight slot (QoS 1/2) or is written at once (QoS 0),
    /// i.e. is not counted as buffered.
    slot: bool,
    state: EntryState,
    /// Connection generation in which the entry's last packet was written (0: none).
    gen: u32,
    /// Write order of that packet within its connection, and when it was written (the low
    /// 32 bits of the `Instant`: only differences below the short-lived window are used).
    seq: u32,
    sent_at: u32,
}

impl<H> Entry<H> {
    pub fn handle(&self) -> &H {
        &self.handle
    }
    pub fn handle_mut(&mut self) -> &mut H {
        &mut self.handle
    }
    pub fn kind(&self) -> Kind {
        self.kind
    }
    pub fn mid(&self) -> u32 {
        self.mid
    }
    /// Packet identifier (0 for QoS 0).
    pub fn packet_id(&self) -> u16 {
        self.pid
    }
    pub fn state(&self) -> EntryState {
        self.state
    }
    fn is_qos_publish(&self) -> bool {
        matches!(self.kind, Kind::Publish { qos, .. } if qos != QoS::AtMostOnce)
    }
}

/// The destination of incoming PUBLISH payloads, allocated by the binding at the announced size.
pub trait Inbox {
    type Msg;
    /// A new (non-duplicate) PUBLISH: topic validated, payload length known. `None` when it
    /// cannot allocate: the connection is then dropped (rc -1, `OutOfMemory`), nothing is
    /// acknowledged and the broker re-sends.
    fn begin(&mut self, topic: &str, payload_len: usize) -> Option<Self::Msg>;
    /// Where the payload bytes go; its length must be the `payload_len` given to `begin`
    /// (a shorter slice is treated as out of memory).
    fn payload_mut<'a>(&mut self, msg: &'a mut Self::Msg) -> &'a mut [u8];
}

/// Engine configuration.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Config {
    /// QoS 1/2 messages on the wire awaiting acknowledgement, 1..=65535 (0 is taken as 1).
    pub max_inflight: u16,
    /// Messages waiting in the buffer (0 allowed).
    pub max_buffered: usize,
    /// Largest incoming packet (fixed header + remaining length); larger drops the connection.
    pub max_incoming_packet: usize,
    /// Time from `Action::OpenTransport` to CONNACK (covers DNS, TCP, TLS, WebSocket and CONNACK).
    pub connack_timeout_ms: u32,
    /// Longest wait for PINGRESP; the effective bound is min(this, keep_alive / 2) so that a
    /// dead connection is found within 1.5 × keep-alive.
    pub ping_timeout_ms: u32,
    /// Losses in a row blamed on the same request before it is given up (see
    /// [`super::backoff`]); 0 = never give up.
    pub poison_retries: u8,
    /// Largest outbound PUBLISH packet (fixed header included) `publish` accepts; a larger
    /// one is refused with `rc::BAD_STRUCTURE`. None: only MQTT's own limit.
    pub max_packet_size: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_inflight: 20,
            max_buffered: 100,
            max_incoming_packet: 1 << 20,
            connack_timeout_ms: 10_000,
            ping_timeout_ms: 10_000,
            poison_retries: 3,
            max_packet_size: None,
        }
    }
}

/// Why an attempt failed or a connection was lost (with `Event::Connect { rc: -1 }`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LostReason {
    /// The peer closed the connection.
    Closed,
    /// Socket error (or TCP connect failure).
    Io,
    /// Host name lookup failed.
    Dns,
    /// TLS handshake or record failure.
    Tls,
    /// No CONNACK within `connack_timeout_ms` of opening the transport.
    Timeout,
    /// No PINGRESP in time.
    KeepAlive,
    /// Malformed or unexpected packet.
    Protocol,
    /// Incoming packet above `max_incoming_packet`, or topic above `MAX_INCOMING_TOPIC_LEN`.
    PacketTooLarge,
    /// The sink or the inbox could not allocate.
    OutOfMemory,
    /// CONNACK refusal (the event's rc is the CONNACK code 1..5; no retry).
    Refused,
}

/// Something for the application.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<M> {
    /// rc 0 accepted; 1..5 CONNACK refusal (permanent, `reason` = Refused); <0 failed attempt
    /// or lost connection (a retry is scheduled; `reason` says why). An invalid
    /// `ConnectParams` gives its argument error code (e.g. -5, -8, -15), no retry.
    Connect {
        rc: i32,
        session_present: bool,
        reason: Option<LostReason>,
    },
    /// An incoming message (payload already in `msg`). `pid` is its packet id (0 at
    /// QoS 0): a persistent store records an inbound QoS 2 delivery by it.
    Message {
        msg: M,
        qos: QoS,
        retain: bool,
        dup: bool,
        pid: u16,
    },
    /// A publish is done: rc 0 (QoS 0 written, QoS 1 PUBACK, QoS 2 PUBCOMP) or < 0 when its
    /// request became invalid before it could be encoded.
    Published { mid: u32, rc: i32 },
    /// SUBACK: one code per filter, 0x80 for a refused filter.
    Subscribed {
        mid: u32,
        granted: Vec<u8, MAX_SUBSCRIBE_FILTERS>,
    },
    /// UNSUBACK.
    Unsubscribed { mid: u32 },
}

/// What the binding must do with the transport.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Action {
    Idle,
    /// Start a transport (DNS + TCP (+TLS/WS)); then call `handle_transport_up` or
    /// `handle_transport_down`.
    OpenTransport,
    /// Close the transport; the engine already counts the connection as gone (do not call
    /// `handle_transport_down` for it; if you do, it is ignored).
    CloseTransport,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ConnState {
    /// Not active.
    Idle,
    /// `connect()` called: OpenTransport at the next `poll_action`.
    NeedOpen,
    /// Waiting for the retry time.
    WaitRetry,
    /// OpenTransport issued, transport not up yet.
    Opening,
    /// CONNECT written, waiting for CONNACK.
    WaitConnack,
    Connected,
    /// `disconnect()` while connected: DISCONNECT to be written, then close.
    Disconnecting,
}

/// The session engine. `H` is the binding's request handle, `Q` its queue storage, `M` the
/// binding's incoming-message type (`Inbox::Msg`), `P` the store of inbound QoS 2 packet ids.
pub struct Engine<H, Q, M, P = InboundIds> {
    config: Config,
    queue: Q,
    state: ConnState,
    close_pending: bool,
    /// Consecutive failures since the last success: index into `RETRY_SCHEDULE_MS`.
    failures: usize,
    retry_at: Instant,
    /// Attempt deadline (Opening/WaitConnack).
    deadline: Instant,
    /// Connection generation, incremented at every transport up (never 0).
    gen: u32,
    keep_alive_ms: u64,
    last_sent: Instant,
    last_recv: Instant,
    ping_wanted: bool,
    ping_outstanding: bool,
    ping_deadline: Instant,
    next_mid: u32,
    next_pid: u16,
    pid_wrapped: bool,
    pids_in_use: usize,
    inflight: usize,
    buffered: usize,
    queued: usize,
    /// Lower bounds: no entry before these indexes needs a re-send / is still Queued.
    resend_from: usize,
    unsent_from: usize,
    /// Every entry that was written (state other than `Queued`) lies before this index,
    /// so the search for a resend stops here instead of walking the buffered messages.
    sent_end: usize,
    acks: Deque<(u8, u16), ACK_CAPACITY>,
    events: Deque<Event<M>, EVENT_CAPACITY>,
    rx: Rx<M>,
    rx_hdr: FixedHeaderParser,
    rx_buf: Vec<u8, RX_BUF>,
    /// Inbound QoS 2 packet ids received (PUBLISH) and not yet released (PUBREL): only
    /// those, so its size follows the messages actually between PUBLISH and PUBREL.
    inbound_qos2: P,
    /// A new QoS 2 PUBLISH waits in `rx_buf` for room in `inbound_qos2`.
    rx_blocked: bool,
    /// Whether state changes are queued for a persistent store (`set_persistence`).
    persist: bool,
    changes: Deque<Change, CHANGE_CAPACITY>,
    /// A change found the queue full: the store must be rewritten from the engine's state.
    changes_dropped: bool,
    /// When the current connection got its CONNACK.
    connected_at: Instant,
    /// The broker acknowledged one of the queue's requests on the current connection.
    acked_any: bool,
    /// Write order on the current connection: last number given, highest acknowledged,
    /// and that of the outstanding PINGREQ.
    tx_seq: u32,
    acked_seq: u32,
    ping_seq: u32,
    /// Number of the last request written on the current connection that expects an
    /// acknowledgement.
    req_seq: u32,
    /// The current connection writes one request at a time (the last loss blamed one).
    one_at_a_time: bool,
    poison: PoisonWatch,
    _h: core::marker::PhantomData<fn() -> H>,
}

impl<H: Request, Q: Queue<Entry<H>>, M> Engine<H, Q, M, InboundIds> {
    /// A new, idle engine using `queue` (which may already hold entries of a previous engine:
    /// not supported, pass an empty queue) and the inline inbound QoS 2 table.
    pub fn new(config: Config, queue: Q) -> Self {
        Self::with_inbound_ids(config, queue, Vec::new())
    }
}

impl<H: Request, Q: Queue<Entry<H>>, M, P: Queue<u16>> Engine<H, Q, M, P> {
    /// A new, idle engine with `ids` (empty) as the store of inbound QoS 2 packet ids. When
    /// `ids.push_back` fails, a new QoS 2 PUBLISH waits (see [`Engine::handle_bytes`]).
    pub fn with_inbound_ids(mut config: Config, queue: Q, ids: P) -> Self {
        if config.max_inflight == 0 {
            config.max_inflight = 1;
        }
        Engine {
            config,
            queue,
            state: ConnState::Idle,
            close_pending: false,
            failures: 0,
            retry_at: 0,
            deadline: 0,
            gen: 0,
            keep_alive_ms: 0,
            last_sent: 0,
            last_recv: 0,
            ping_wanted: false,
            ping_outstanding: false,
            ping_deadline: 0,
            next_mid: 1,
            next_pid: 1,
            pid_wrapped: false,
            pids_in_use: 0,
            inflight: 0,
            buffered: 0,
            queued: 0,
            resend_from: 0,
            unsent_from: 0,
            sent_end: 0,
            acks: Deque::new(),
            events: Deque::new(),
            rx: Rx::Header,
            rx_hdr: FixedHeaderParser::new(),
            rx_buf: Vec::new(),
            inbound_qos2: ids,
            rx_blocked: false,
            persist: false,
            changes: Deque::new(),
            changes_dropped: false,
            connected_at: 0,
            acked_any: false,
            tx_seq: 0,
            acked_seq: 0,
            ping_seq: 0,
            req_seq: 0,
            one_at_a_time: false,
            poison: PoisonWatch::new(),
            _h: core::marker::PhantomData,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }
    /// Replaces the configuration (the binding applies `connect()` options). The bounds
    /// apply to what is queued from now on; messages already queued stay.
    pub fn set_config(&mut self, mut config: Config) {
        if config.max_inflight == 0 {
            config.max_inflight = 1;
        }
        self.config = config;
    }
    pub fn queue(&self) -> &Q {
        &self.queue
    }
    pub fn queue_mut(&mut self) -> &mut Q {
        &mut self.queue
    }
    /// QoS 1/2 publishes holding an in-flight slot.
    pub fn inflight_count(&self) -> usize {
        self.inflight
    }
    /// Publishes waiting in the buffer.
    pub fn buffered_count(&self) -> usize {
        self.buffered
    }
    pub fn is_connected(&self) -> bool {
        self.state == ConnState::Connected
    }
    /// Connected, connecting, waiting to retry, disconnecting, or a close still to be done.
    pub fn is_active(&self) -> bool {
        self.state != ConnState::Idle || self.close_pending
    }

    // ------------------------------------------------------------------------------------
    // Events
    // ------------------------------------------------------------------------------------

    fn events_free(&self) -> usize {
        EVENT_CAPACITY - self.events.len()
    }

    fn push_event(&mut self, ev: Event<M>) {
        if let Err(ev) = self.events.push_back(ev) {
            // Only lifecycle events can meet a full queue (all others are admitted with room
            // to spare): coalesce with a trailing Connect event.
            if matches!(self.events.back(), Some(Event::Connect { .. })) {
                if let Some(last) = self.events.back_mut() {
                    *last = ev;
                }
            }
        }
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<Event<M>> {
        self.events.pop_front()
    }
}

/// Checks connection parameters the way `handle_transport_up` will (so the binding can
/// reject them in `connect()`): `Err(rc)` with -5 bad UTF-8, -7 NUL, -8 bad will topic or
/// field too long, -15 password without user name, -17 empty will topic.
pub fn validate_connect_params(p: &ConnectParams<'_>) -> Result<(), i32> {
    if let Some(w) = &p.will {
        if w.topic.is_empty() {
            return Err(rc::ZERO_LENGTH_WILL_TOPIC);
        }
    }
    codec::validate_connect(p).map_err(|e| e.rc())
}
