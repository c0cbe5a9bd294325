//! The persistent session store: the record format of the append-only log in which a
//! client keeps its unfinished QoS 1/2 publishes and the inbound QoS 2 packet ids, the
//! replay that rebuilds that state after a restart, and the compaction rule. No I/O here:
//! the binding writes the encoded records to a file and hands the file's bytes to
//! [`replay`].
//!
//! ## Log format
//!
//! A log is a sequence of records, each framed as
//!
//! ```text
//! len: u32 LE | kind: u8 | body: len - 1 bytes | crc: u32 LE
//! ```
//!
//! where `crc` is the CRC-32 (IEEE 802.3) of the length, kind and body bytes. The first
//! record is a header (`H`: magic `DLMQ`, version, next mid, client id). Then, in the
//! order the changes happened:
//!
//! | kind | body | meaning |
//! | --- | --- | --- |
//! | `P` | mid u32, pid u16, flags u8, topic len u16, topic, payload | a QoS 1/2 publish accepted (flags: qos, retain, state) |
//! | `S` | mid u32, state u8 | the publish was written (1) or got its PUBREC (2) |
//! | `D` | mid u32 | the publish is complete (or failed): it leaves the store |
//! | `B` | pid u16 | `on_message` begins for an inbound QoS 2 PUBLISH (durable before the call) |
//! | `I` | pid u16 | an inbound QoS 2 PUBLISH was delivered: held until PUBREL |
//! | `R` | pid u16 | PUBREL for an inbound QoS 2 id |
//! | `C` | - | every inbound QoS 2 id is released (the broker had no session) |
//!
//! Replay stops at the first record that is incomplete, too long, or fails its CRC: a
//! record torn by a power cut is dropped, never applied half, and nothing after it is
//! read. The binding then compacts (rewrites the live state into a fresh log), so the torn
//! tail is gone before anything is appended.
//!
//! A `B` that no `I`, `R` or `C` for its id follows marks a message *in doubt*: a power
//! cut came while its `on_message` ran, or right after, so the application may have seen
//! it. The broker sends it again (it never got PUBREC) and the binding tells the
//! application that this delivery may be a repeat ([`InDoubt`]).

use super::codec::{QoS, Sink};
use super::engine::EntryState;

/// The first bytes of a log's header record.
pub const MAGIC: [u8; 4] = *b"DLMQ";
/// Format version in the header.
pub const VERSION: u8 = 1;
/// Framing bytes around a record's body (length, kind, CRC).
pub const FRAME_OVERHEAD: usize = 4 + 1 + 4;
/// Longest record body accepted by [`decode`] (a PUBLISH of the largest size MQTT allows
/// plus its fields).
pub const MAX_BODY: usize = 268_435_455 + 16;
/// A log is compacted once it holds this many bytes more than twice its live state.
pub const COMPACT_SLACK: usize = 16 * 1024;

const K_HEADER: u8 = b'H';
const K_PUBLISH: u8 = b'P';
const K_STATE: u8 = b'S';
const K_DONE: u8 = b'D';
const K_IN_DELIVERING: u8 = b'B';
const K_IN_HELD: u8 = b'I';
const K_IN_RELEASED: u8 = b'R';
const K_IN_CLEARED: u8 = b'C';

/// A change of a session's state that a persistent store records. The engine queues one
/// per change when persistence is on ([`crate::proto::Engine::poll_change`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Change {
    /// A QoS 1/2 PUBLISH was written for the first time.
    Sent { mid: u32 },
    /// PUBREC received for a QoS 2 publish: PUBREL is due (store before it is sent).
    Released { mid: u32 },
    /// A QoS 1/2 publish is complete (PUBACK, PUBCOMP) or failed: it leaves the store.
    Done { mid: u32 },
    /// An inbound QoS 2 PUBLISH was accepted and its id is held. A store records it as
    /// delivered once the application has had the message, durably before PUBREC leaves.
    InboundHeld { pid: u16 },
    /// PUBREL for an inbound QoS 2 id (store before PUBCOMP is sent).
    InboundReleased { pid: u16 },
    /// Every inbound QoS 2 id was released (CONNACK without a session).
    InboundCleared,
}

impl Change {
    /// Whether the change must be durable before the packet that follows it leaves
    /// (PUBREL, PUBREC/delivery, PUBCOMP). `Sent` and `Done` only save work after a
    /// restart: losing one re-sends a message (QoS 1 at least once; QoS 2 is re-sent with
    /// the same id, which the broker still holds).
    pub fn needs_sync(&self) -> bool {
        !matches!(self, Change::Sent { .. } | Change::Done { .. })
    }
}

/// One decoded record; slices borrow the log's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Record<'a> {
    Header { next_mid: u32, client_id: &'a [u8] },
    Publish(Publish<'a>),
    State { mid: u32, state: EntryState },
    Done { mid: u32 },
    InboundDelivering { pid: u16 },
    InboundHeld { pid: u16 },
    InboundReleased { pid: u16 },
    InboundCleared,
}

/// A stored QoS 1/2 publish.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Publish<'a> {
    pub mid: u32,
    pub pid: u16,
    pub qos: QoS,
    pub retain: bool,
    pub state: EntryState,
    pub topic: &'a [u8],
    pub payload: &'a [u8],
}

impl<'a> From<Change> for Record<'a> {
    fn from(c: Change) -> Self {
        match c {
            Change::Sent { mid } => Record::State { mid, state: EntryState::Sent },
            Change::Released { mid } => Record::State { mid, state: EntryState::Released },
            Change::Done { mid } => Record::Done { mid },
            Change::InboundHeld { pid } => Record::InboundHeld { pid },
            Change::InboundReleased { pid } => Record::InboundReleased { pid },
            Change::InboundCleared => Record::InboundCleared,
        }
    }
}

/// Why a log cannot be used.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StoreError {
    /// The log belongs to another client id.
    OtherClient,
    /// The log is not in this format (magic or version).
    Format,
    /// The restore target refused a record (an error code of the engine).
    Restore(i32),
}

// ---------------------------------------------------------------------------------------
// CRC-32
// ---------------------------------------------------------------------------------------

const CRC_TABLE: [u32; 16] = {
    let mut t = [0u32; 16];
    let mut i = 0;
    while i < 16 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 4 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// Running CRC-32 (IEEE 802.3, reflected, as zlib's `crc32`).
#[derive(Clone, Copy)]
pub struct Crc32(u32);

impl Crc32 {
    pub const fn new() -> Self {
        Crc32(0xFFFF_FFFF)
    }
    pub fn update(&mut self, data: &[u8]) {
        let mut c = self.0;
        for &b in data {
            c ^= u32::from(b);
            c = CRC_TABLE[(c & 15) as usize] ^ (c >> 4);
            c = CRC_TABLE[(c & 15) as usize] ^ (c >> 4);
        }
        self.0 = c;
    }
    pub fn finish(self) -> u32 {
        !self.0
    }
}

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

/// CRC-32 of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(data);
    c.finish()
}

// ---------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------

fn state_code(s: EntryState) -> u8 {
    match s {
        EntryState::Queued => 0,
        EntryState::Sent => 1,
        EntryState::Released => 2,
    }
}

fn state_from(c: u8) -> Option<EntryState> {
    match c {
        0 => Some(EntryState::Queued),
        1 => Some(EntryState::Sent),
        2 => Some(EntryState::Released),
        _ => None,
    }
}

/// A sink that also computes the CRC of what goes through it.
struct CrcSink<'s, S: Sink + ?Sized> {
    sink: &'s mut S,
    crc: Crc32,
    ok: bool,
}

impl<S: Sink + ?Sized> CrcSink<'_, S> {
    fn put(&mut self, b: &[u8]) {
        self.crc.update(b);
        self.ok = self.ok && self.sink.put(b);
    }
}

/// The encoded size of a record.
pub fn encoded_len(r: &Record<'_>) -> usize {
    FRAME_OVERHEAD + body_len(r)
}

fn body_len(r: &Record<'_>) -> usize {
    match r {
        Record::Header { client_id, .. } => 4 + 1 + 4 + client_id.len(),
        Record::Publish(p) => 4 + 2 + 1 + 2 + p.topic.len() + p.payload.len(),
        Record::State { .. } => 5,
        Record::Done { .. } => 4,
        Record::InboundDelivering { .. } | Record::InboundHeld { .. } | Record::InboundReleased { .. } => 2,
        Record::InboundCleared => 0,
    }
}

/// Appends the framed record to `sink`; false when the sink is out of memory or a field
/// does not fit the format (a topic above 65535 bytes).
pub fn encode<S: Sink + ?Sized>(sink: &mut S, r: &Record<'_>) -> bool {
    let body = body_len(r);
    let len = match u32::try_from(body + 1) {
        Ok(l) => l,
        Err(_) => return false,
    };
    if !sink.reserve(FRAME_OVERHEAD + body) {
        return false;
    }
    let mut s = CrcSink { sink, crc: Crc32::new(), ok: true };
    s.put(&len.to_le_bytes());
    match r {
        Record::Header { next_mid, client_id } => {
            s.put(&[K_HEADER]);
            s.put(&MAGIC);
            s.put(&[VERSION]);
            s.put(&next_mid.to_le_bytes());
            s.put(client_id);
        }
        Record::Publish(p) => {
            let tlen = match u16::try_from(p.topic.len()) {
                Ok(t) => t,
                Err(_) => return false,
            };
            let flags = (p.qos as u8) | (u8::from(p.retain) << 2) | (state_code(p.state) << 3);
            s.put(&[K_PUBLISH]);
            s.put(&p.mid.to_le_bytes());
            s.put(&p.pid.to_le_bytes());
            s.put(&[flags]);
            s.put(&tlen.to_le_bytes());
            s.put(p.topic);
            s.put(p.payload);
        }
        Record::State { mid, state } => {
            s.put(&[K_STATE]);
            s.put(&mid.to_le_bytes());
            s.put(&[state_code(*state)]);
        }
        Record::Done { mid } => {
            s.put(&[K_DONE]);
            s.put(&mid.to_le_bytes());
        }
        Record::InboundDelivering { pid } => {
            s.put(&[K_IN_DELIVERING]);
            s.put(&pid.to_le_bytes());
        }
        Record::InboundHeld { pid } => {
            s.put(&[K_IN_HELD]);
            s.put(&pid.to_le_bytes());
        }
        Record::InboundReleased { pid } => {
            s.put(&[K_IN_RELEASED]);
            s.put(&pid.to_le_bytes());
        }
        Record::InboundCleared => s.put(&[K_IN_CLEARED]),
    }
    let crc = s.crc.finish();
    let ok = s.ok;
    ok && sink.put(&crc.to_le_bytes())
}

// ---------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------

/// Why no record could be read at a position.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DecodeError {
    /// Nothing left.
    End,
    /// The bytes end inside a record (a torn write).
    Truncated,
    /// Bad length, CRC, kind or field: the record and everything after it are unusable.
    Corrupt,
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes([*b.get(i)?, *b.get(i + 1)?, *b.get(i + 2)?, *b.get(i + 3)?]))
}

/// Decodes the record at the start of `buf`: the record and its encoded length.
pub fn decode(buf: &[u8]) -> Result<(Record<'_>, usize), DecodeError> {
    if buf.is_empty() {
        return Err(DecodeError::End);
    }
    let len = u32_at(buf, 0).ok_or(DecodeError::Truncated)? as usize;
    if len == 0 || len > MAX_BODY + 1 {
        return Err(DecodeError::Corrupt);
    }
    let total = len.checked_add(8).ok_or(DecodeError::Corrupt)?;
    if buf.len() < total {
        return Err(DecodeError::Truncated);
    }
    let framed = buf.get(..4 + len).ok_or(DecodeError::Truncated)?;
    let crc = u32_at(buf, 4 + len).ok_or(DecodeError::Truncated)?;
    if crc32(framed) != crc {
        return Err(DecodeError::Corrupt);
    }
    let kind = *framed.get(4).ok_or(DecodeError::Corrupt)?;
    let body = framed.get(5..).ok_or(DecodeError::Corrupt)?;
    let rec = decode_body(kind, body).ok_or(DecodeError::Corrupt)?;
    Ok((rec, total))
}

fn decode_body(kind: u8, b: &[u8]) -> Option<Record<'_>> {
    let exact = |n: usize| if b.len() == n { Some(()) } else { None };
    Some(match kind {
        K_HEADER => {
            if b.get(..4)? != MAGIC {
                return None;
            }
            Record::Header {
                next_mid: u32_at(b, 5)?,
                client_id: b.get(9..)?,
            }
        }
        K_PUBLISH => {
            let flags = *b.get(6)?;
            let tlen = usize::from(u16_at(b, 7)?);
            let qos = QoS::try_from(flags & 3).ok()?;
            if qos == QoS::AtMostOnce || flags & 0xE0 != 0 {
                return None;
            }
            let pid = u16_at(b, 4)?;
            if pid == 0 {
                return None;
            }
            Record::Publish(Publish {
                mid: u32_at(b, 0)?,
                pid,
                qos,
                retain: flags & 4 != 0,
                state: state_from((flags >> 3) & 3)?,
                topic: b.get(9..9 + tlen)?,
                payload: b.get(9 + tlen..)?,
            })
        }
        K_STATE => {
            exact(5)?;
            Record::State { mid: u32_at(b, 0)?, state: state_from(*b.get(4)?)? }
        }
        K_DONE => {
            exact(4)?;
            Record::Done { mid: u32_at(b, 0)? }
        }
        K_IN_DELIVERING => {
            exact(2)?;
            Record::InboundDelivering { pid: u16_at(b, 0)? }
        }
        K_IN_HELD => {
            exact(2)?;
            Record::InboundHeld { pid: u16_at(b, 0)? }
        }
        K_IN_RELEASED => {
            exact(2)?;
            Record::InboundReleased { pid: u16_at(b, 0)? }
        }
        K_IN_CLEARED => {
            exact(0)?;
            Record::InboundCleared
        }
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------
// Replay
// ---------------------------------------------------------------------------------------

/// Where replayed records go (the binding forwards them to the engine's `restore_*`).
pub trait Restore {
    /// Every record after the header, in log order. An error stops the replay.
    fn apply(&mut self, r: &Record<'_>) -> Result<(), i32>;
}

/// What a replay found.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Replayed {
    /// Bytes of complete, valid records (the rest of the log was dropped).
    pub valid_len: usize,
    /// Records applied (the header not counted).
    pub records: usize,
    /// The header's next mid (0 for an empty log).
    pub next_mid: u32,
    /// Whether bytes after `valid_len` were dropped (a torn or corrupt record).
    pub dropped: bool,
}

/// Reads a whole log and applies its records to `target`, up to the last complete one.
/// An empty log (or one whose header itself is torn) is an empty store. A header of
/// another client id or of another format is an error, and nothing is applied.
pub fn replay<R: Restore>(log: &[u8], client_id: &[u8], target: &mut R) -> Result<Replayed, StoreError> {
    let mut out = Replayed::default();
    let (next_mid, mut pos) = match decode(log) {
        Ok((Record::Header { next_mid, client_id: id }, n)) => {
            if log.get(9) != Some(&VERSION) {
                return Err(StoreError::Format);
            }
            if id != client_id {
                return Err(StoreError::OtherClient);
            }
            (next_mid, n)
        }
        Ok(_) => return Err(StoreError::Format),
        Err(DecodeError::End) => return Ok(out),
        Err(DecodeError::Truncated) => {
            out.dropped = true;
            return Ok(out);
        }
        Err(DecodeError::Corrupt) => {
            // A header that does not check out: either torn in place, or not our file.
            if log.get(4..9).is_some_and(|k| k.first() == Some(&K_HEADER) && k.get(1..) != Some(&MAGIC[..]))
            {
                return Err(StoreError::Format);
            }
            out.dropped = true;
            return Ok(out);
        }
    };
    out.next_mid = next_mid;
    loop {
        let rest = log.get(pos..).unwrap_or(&[]);
        match decode(rest) {
            Ok((Record::Header { .. }, _)) => {
                out.dropped = true;
                break;
            }
            Ok((rec, n)) => {
                target.apply(&rec).map_err(StoreError::Restore)?;
                out.records += 1;
                pos += n;
            }
            Err(DecodeError::End) => break,
            Err(_) => {
                out.dropped = true;
                break;
            }
        }
    }
    out.valid_len = pos;
    Ok(out)
}

/// Whether a log of `log_len` bytes whose live state took `live_len` bytes when it was
/// last compacted should be compacted now: each compaction rewrites the live state once,
/// and a log stays below about three times its live state plus [`COMPACT_SLACK`].
pub fn needs_compaction(log_len: usize, live_len: usize) -> bool {
    log_len > live_len.saturating_mul(2).saturating_add(COMPACT_SLACK)
}

// ---------------------------------------------------------------------------------------
// Deliveries in doubt
// ---------------------------------------------------------------------------------------

/// How many inbound QoS 2 deliveries in doubt are remembered.
pub const IN_DOUBT_MAX: usize = 8;

/// The inbound QoS 2 packet ids whose delivery began before a restart and whose end was
/// never recorded: `on_message` may already have run for them, fully or in part. Each
/// power cut adds at most the one message being delivered, and the broker's redelivery
/// of that id (it never got PUBREC) ends it, so a few slots are plenty; past
/// [`IN_DOUBT_MAX`] the oldest is forgotten.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct InDoubt {
    ids: [u16; IN_DOUBT_MAX],
    len: usize,
}

impl InDoubt {
    /// A `B` record: the delivery of `pid` began.
    pub fn begin(&mut self, pid: u16) {
        if self.contains(pid) {
            return;
        }
        if self.len == IN_DOUBT_MAX {
            self.ids.copy_within(1.., 0);
            self.len -= 1;
        }
        if let Some(slot) = self.ids.get_mut(self.len) {
            *slot = pid;
            self.len += 1;
        }
    }

    /// The delivery of `pid` ended (its `I`, `R`): true when it was in doubt.
    pub fn end(&mut self, pid: u16) -> bool {
        match self.ids().iter().position(|&x| x == pid) {
            Some(i) => {
                self.ids.copy_within(i + 1..self.len, i);
                self.len -= 1;
                true
            }
            None => false,
        }
    }

    /// The broker has no session (a `C`): nothing will be redelivered.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    pub fn contains(&self, pid: u16) -> bool {
        self.ids().contains(&pid)
    }

    /// The ids in doubt, oldest first.
    pub fn ids(&self) -> &[u16] {
        self.ids.get(..self.len).unwrap_or(&[])
    }

    /// Follows a replayed record.
    pub fn apply(&mut self, r: &Record<'_>) {
        match *r {
            Record::InboundDelivering { pid } => self.begin(pid),
            Record::InboundHeld { pid } | Record::InboundReleased { pid } => {
                self.end(pid);
            }
            Record::InboundCleared => self.clear(),
            _ => {}
        }
    }
}
