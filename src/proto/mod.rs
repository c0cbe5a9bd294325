//! # `proto`: the sans-IO MQTT 3.1.1 client core
//!
//! No socket, no clock, no allocator: the binding feeds bytes, transport events, commands
//! and the current time (monotonic milliseconds, [`Instant`]), and polls for bytes to send,
//! events, transport actions and the next deadline (quinn-proto style).
//!
//! - [`rc`]: the module's return codes (`shared/API.md`), [`rc::description`],
//!   [`rc::lost_reason_text`].
//! - [`url`]: `scheme://host[:port][/path]` parsing (rules in the module docs).
//! - [`codec`]: every MQTT 3.1.1 packet, encode into a [`Sink`] and decode (whole buffer,
//!   streaming), validation ([`validate_topic_name`], [`validate_topic_filter`]).
//! - [`engine`]: the session engine [`Engine`].
//! - [`store`]: the persistent session store: log records (length, kind, CRC-32), replay
//!   up to the last complete record, compaction rule; [`store::Change`] is what the engine
//!   reports for it.
//! - [`backoff`]: when a lost connection restarts the reconnect schedule, and when a
//!   request the broker closes the connection on is given up.
//!
//! ## Deviations from the API brief (for the binding author)
//!
//! 1. **`Engine<H, Q, M, P>`** has a third parameter `M`, the binding's incoming-message type
//!    (`Inbox::Msg`); events are `Event<M>` and are read with `poll_event()`. The impl only
//!    requires `H: Request` (no `Clone`). The fourth, `P: Queue<u16>`, stores the inbound
//!    QoS 2 packet ids (default [`engine::InboundIds`], an inline table of 32;
//!    `Engine::with_inbound_ids` takes a growable one).
//! 2. **`handle_bytes<I: Inbox<Msg = M>>(&mut self, now, data, inbox) -> usize`** returns
//!    the number of bytes consumed. It consumes less than `data.len()` only when the
//!    engine's event queue (16) or acknowledgement queue (16) is full: drain `poll_event()`
//!    and `poll_transmit()`, then feed the unconsumed rest again; or when a QoS 2 PUBLISH
//!    with a new id finds the id store full (`is_receive_blocked()`): feed the rest again
//!    once the store may have room. On a protocol violation it
//!    consumes everything (the rest belongs to a dead connection). Bytes arriving while no
//!    connection is up are discarded (reported consumed).
//! 3. **`handle_transport_up(now, params, sink)`** takes the sink and writes CONNECT at once
//!    (the engine cannot keep the borrowed `ConnectParams`, and has no buffer for a will
//!    payload). Invalid params give `Event::Connect { rc: <arg error>, reason: None }` and
//!    stop (no retry); check them first with [`validate_connect_params`] in `connect()`.
//! 4. **`Sink::reserve(len) -> bool`** (default `true`) is called before each packet with
//!    its full size so a packet is never half-written. `reserve` or `put` returning false
//!    is *out of memory*: the connection is dropped (`Connect { rc: -1, reason:
//!    OutOfMemory }`, `Action::CloseTransport`, retry scheduled), nothing is lost (the
//!    message stays queued and is re-sent, with DUP, on the next connection). So call
//!    `poll_transmit` only when the send buffer may grow; it is not a back-pressure signal.
//! 5. `poll_transmit` order: re-sent PUBLISH (DUP, same id) / PUBREL in original order,
//!    then acknowledgements of incoming messages (PUBACK/PUBREC/PUBCOMP, and PUBREL for an
//!    unknown PUBREC), then new requests in order within the window, then PINGREQ. Acks go
//!    before new requests so a stream of publishes never delays the broker's flow.
//!    After `disconnect()`: pending acks, then DISCONNECT, then `Action::CloseTransport`.
//! 6. `disconnect()` when not active returns `Err(rc::DISCONNECTED)` (-3); `connect()` when
//!    active returns `Err(rc::COMMAND_IGNORED)` (-18).
//! 7. `Queue` is implemented for `heapless::Vec<T, N>` (heapless 0.8's `Deque` has no
//!    `remove(i)`); `Queue::is_empty` has a default.
//! 8. `LostReason` = `Closed, Io, Dns, Tls, Timeout (no CONNACK in time), KeepAlive (no
//!    PINGRESP), Protocol, PacketTooLarge, OutOfMemory, Refused`.
//! 9. Additions: `Engine::set_config()` (added by the binding side), `inflight_count()`,
//!    `buffered_count()`, `Entry` accessors
//!    (`handle()`, `handle_mut()`, `kind()`, `mid()`, `packet_id()`, `state()`),
//!    [`validate_connect_params`], `with_inbound_ids()`, `is_receive_blocked()`,
//!    `inbound_qos2_held()`, `inbound_ids_mut()`, constants `MAX_SUBSCRIBE_FILTERS` (16),
//!    `MAX_INCOMING_TOPIC_LEN` (256), `EVENT_CAPACITY`, `ACK_CAPACITY`, `RETRY_SCHEDULE_MS`.
//!    `QoS`, `ConnectParams`, `Will` and `Sink` are defined in `codec` and re-exported here
//!    and from `engine`.
//!
//! ## Using the engine (binding loop)
//!
//! After every command, transport event, received chunk or expired deadline: loop on
//! `poll_action(now)` (open/close the transport), `poll_transmit(now, sink)` until false,
//! `poll_event()` until `None`; then sleep until `poll_timeout()` (call `handle_timeout(now)`
//! when it passes) or until the socket is readable. `Action::CloseTransport` means the
//! engine already counts the connection as gone: just close the socket (a later
//! `handle_transport_down` for it is ignored). `is_active()` is true while connected,
//! connecting, waiting to retry, disconnecting, or a close is still to be done.
//!
//! ## Design choices
//!
//! - **Connection states**: Idle → (`connect`) NeedOpen → (`poll_action`: OpenTransport)
//!   Opening → (`handle_transport_up`, CONNECT written) WaitConnack → (CONNACK 0)
//!   Connected. A failure at any point (transport down, timeout, protocol error, out of
//!   memory) gives `Event::Connect { rc: -1, reason }` and WaitRetry.
//! - **Attempt timeout**: `Config::connack_timeout_ms` (default 10 s) runs from
//!   `Action::OpenTransport` to CONNACK, so it also bounds DNS, TCP, TLS and WebSocket
//!   set-up; on expiry: failed attempt (`Timeout`), `Action::CloseTransport`, retry.
//! - **Reconnect schedule**: 1, 2, 4, 8, 16, 32 s after consecutive failures, then every
//!   60 s. A CONNACK does not reset it: the loss of a connection counts as one more failure
//!   unless the connection stayed up min(keep-alive, 10 s) or the broker acknowledged one
//!   of the queue's requests on it; then the next attempt is 1 s after the loss
//!   ([`backoff`]). A request the broker keeps closing the connection on is given up after
//!   `Config::poison_retries` losses in a row (`Published { rc: rc::MESSAGE_REFUSED }`,
//!   `Subscribed` all 0x80, `Unsubscribed`; rules in [`backoff`]). A CONNACK
//!   refusal 1..5 gives `Event::Connect { rc: code, reason: Some(Refused) }`, closes, and
//!   stops (Idle). A reserved CONNACK code (≥ 6) is a protocol error (retried).
//!   `disconnect()` stops it. `connect()` from Idle opens at once.
//! - **Keep-alive** (`keep_alive_s` of the ConnectParams, 0 = off): a PINGREQ is due when
//!   nothing was *sent* or nothing was *received* for the interval (so a half-open link is
//!   found while the client keeps publishing). The PINGRESP must arrive within
//!   min(`ping_timeout_ms` (default 10 s), keep_alive / 2), else the connection is lost
//!   (`KeepAlive`): a frozen broker is detected within 1.5 × keep-alive of its last packet.
//! - **Packet ids** are allocated when a request is accepted (`publish` QoS 1/2,
//!   `subscribe`, `unsubscribe`), 1..65535 in increasing order with wrap-around, skipping
//!   ids still held by a queued entry; when all 65535 are held: `-10`. Until the counter
//!   first wraps no search is needed; after, a search costs one pass over the queue per
//!   256 ids (typically one pass). No bitset is spent on outbound ids. (So the id of a
//!   request given up is not reused before the counter wraps.)
//! - **mid**: a positive u32 counter shared by publish/subscribe/unsubscribe (wraps to 1).
//! - **`Config::max_packet_size`**: `publish` refuses a PUBLISH packet above it with -8.
//! - **Window and buffer** (API.md): a QoS 1/2 publish takes an in-flight slot when one is
//!   free and nothing is buffered ahead of it (connected or not); otherwise it is buffered.
//!   A QoS 0 publish is written at once (not buffered) only when connected with no other
//!   request waiting to be written; otherwise it is buffered. A buffered publish that finds
//!   `max_buffered` reached fails with -12; with `max_buffered == 0` a QoS 1/2 publish that
//!   finds the window full fails with -4 (and a QoS 0 that cannot be written at once fails
//!   with -12: there is no buffer). Buffered messages move into the window in order as
//!   slots free. SUBSCRIBE/UNSUBSCRIBE are queued in the same order but count against
//!   neither bound (only against the binding's `Queue` capacity: -1 when `push_back`
//!   fails); a window-blocked publish also holds back later requests (strict order).
//! - **Completion**: QoS 0 `Published { rc: 0 }` when encoded into the sink (it can still
//!   be lost with the connection: at most once); QoS 1 on PUBACK; QoS 2 on PUBCOMP. If a
//!   request's data became invalid before it is encoded, it completes with the argument
//!   error (`Published { rc: -8 ... }`, `Subscribed` all 0x80, `Unsubscribed`).
//! - **Session (clean session off)**: everything unfinished stays in the queue across
//!   losses and `disconnect()`. After CONNACK, entries written on an earlier connection are
//!   re-sent first, in queue order: PUBLISH with DUP and the same id, PUBREL for PUBREC'd
//!   QoS 2, and SUBSCRIBE/UNSUBSCRIBE still unacknowledged (same id). Then new requests.
//! - **Inbound QoS 2**: the id store `P` holds exactly the ids between PUBLISH and PUBREL
//!   (2 bytes each, searched linearly: it holds what the broker has in flight, typically a
//!   few dozen at most); a PUBLISH with a held id is acknowledged (PUBREC) but not
//!   delivered again. An id is stored when the PUBLISH's variable header is in, and
//!   released again if the message is cut off before its end (it was not delivered, so
//!   the broker's re-send must be). When `P::push_back` fails (the store is full), the
//!   engine keeps that PUBLISH's header and takes no more bytes until a later
//!   `handle_bytes` finds room: TCP back-pressure, nothing dropped or failed. Only a new
//!   QoS 2 PUBLISH waits; a PUBREL, a re-sent held id or any other packet ahead of it is
//!   read. Note that the broker's PUBRELs for the held ids come after the waiting PUBLISH
//!   in the stream, so with a store that cannot grow the wait ends only when the
//!   connection does (keep-alive) and the session resumes: size a fixed store to at
//!   least the broker's in-flight window (mosquitto's `max_inflight_messages`: 20 by
//!   default), or give a growable one (the binding's grows on the GC heap). A CONNACK
//!   with session-present 0 clears the store (the broker forgot its side). PUBREL for an
//!   unknown id is answered with PUBCOMP. Unknown PUBACK/PUBCOMP/SUBACK/UNSUBACK are
//!   ignored; an unknown PUBREC is answered with PUBREL (clears the broker's state). A
//!   SUBACK whose code count differs from the request's filter count is a protocol error.
//! - **Inbound messages** stream straight into the binding's buffer: once topic and packet
//!   id are in, `Inbox::begin(topic, payload_len)` allocates, payload bytes are copied as
//!   they arrive, and the `Event::Message` is queued when complete. PUBACK/PUBREC are
//!   queued only then. `begin` returning None drops the connection (`OutOfMemory`) with
//!   nothing acknowledged. Incoming topics are held in a 260-byte buffer: a topic longer
//!   than `MAX_INCOMING_TOPIC_LEN` (256) or a packet above `max_incoming_packet` drops the
//!   connection (`PacketTooLarge`); note a broker with a persistent session will offer such
//!   a message again on every reconnect.
//! - **Protocol errors** (malformed packet, reserved flags, bad UTF-8, wildcard in a topic,
//!   packet a client never receives, anything before CONNACK, a second CONNACK): the
//!   connection is lost (`Protocol`), `Action::CloseTransport`, retry scheduled.
//! - **Memory**: `Engine` holds the 260-byte topic buffer, 16 events and 16 pending acks,
//!   plus its id store `P` and queue `Q`: about 1.2 KiB on x86-64 with the binding's
//!   2-word `M` and growable `P` and `Q` (measured by `make size`), plus the binding's
//!   queue storage (one `Entry<H>` per request, with its send time for the poison rule).
//! - **Persistence** (`set_persistence(true)`, off by default): every change of a QoS 1/2
//!   publish (sent, PUBREC received, complete) and of the inbound QoS 2 ids (held,
//!   released, cleared) is queued as a [`store::Change`] for `poll_change()`; the engine
//!   holds back input and new requests while that queue is nearly full, and reads nothing
//!   after an inbound QoS 2 PUBLISH until its change is taken (the binding delivers the
//!   message, then stores the id). `restore_*` put a replayed session back before the first
//!   connection (`engine/persist.rs`). With persistence off nothing is queued; the queue
//!   (`CHANGE_CAPACITY`, 8 changes) is part of the engine either way.
//! - Nothing here panics: all network and caller data is read with `get()`, checked
//!   arithmetic and error values.

pub mod backoff;
pub mod codec;
pub mod engine;
pub mod rc;
pub mod store;
pub mod url;
// WebSocket framing (cargo feature `websocket`, on by default).
#[cfg(feature = "websocket")]
pub mod ws;

pub use codec::{validate_topic_filter, validate_topic_name, ConnectParams, QoS, Sink, Will};
pub use engine::{
    validate_connect_params, Action, Config, Engine, Entry, EntryState, Event, Inbox, Instant, Kind,
    LostReason, Queue, Request,
};
pub use rc::{description, lost_reason_text};
