//! MQTT 3.1.1 control packets: encoding into a [`Sink`], validation, and decoding
//! (from a complete buffer with [`decode()`], or incrementally from a byte stream split
//! anywhere with [`StreamDecoder`] or the engine's own receive state machine, which
//! shares [`FixedHeaderParser`] and [`decode_body`] with them).
//!
//! Every violation of the 3.1.1 rules is an [`Error`] value; no function here panics on
//! any input.
//!
//! This file holds the packet model (types, packet type numbers, [`Error`]) and the
//! validation of strings, topic names and topic filters; encoding is in `encode`,
//! decoding in `decode`.

mod decode;
mod encode;

pub use decode::{check_first_byte, decode, decode_body, FixedHeaderParser, StreamDecoder};
pub use encode::{
    encode_ack, encode_connack, encode_connect, encode_empty, encode_publish, encode_suback,
    encode_subscribe, encode_unsubscribe, publish_len, validate_connect,
};
use decode::Reader;
pub(crate) use encode::varint_len;

/// Quality of service.
#[derive(Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord, Hash)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl TryFrom<u8> for QoS {
    type Error = Error;
    fn try_from(v: u8) -> Result<QoS, Error> {
        match v {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            2 => Ok(QoS::ExactlyOnce),
            _ => Err(Error::BadQos),
        }
    }
}

/// Destination of encoded bytes (the binding's send buffer).
///
/// Every packet is written as `reserve(total)` followed by one or more `put`s that
/// together are exactly `total` bytes. `reserve` returning false means the packet cannot
/// be accepted (out of memory) and nothing of it has been written. A binding should make
/// `put` succeed after a successful `reserve`; if a `put` still fails, the stream is
/// corrupt and the engine drops the connection (reason `OutOfMemory`), keeping the
/// message for the next connection.
pub trait Sink {
    /// Appends bytes; false = out of memory.
    fn put(&mut self, bytes: &[u8]) -> bool;
    /// Announces a packet of `len` bytes; false = out of memory. Default: true.
    fn reserve(&mut self, len: usize) -> bool {
        let _ = len;
        true
    }
}

impl<S: Sink + ?Sized> Sink for &mut S {
    fn put(&mut self, bytes: &[u8]) -> bool {
        (**self).put(bytes)
    }
    fn reserve(&mut self, len: usize) -> bool {
        (**self).reserve(len)
    }
}

impl<const N: usize> Sink for heapless::Vec<u8, N> {
    fn put(&mut self, bytes: &[u8]) -> bool {
        self.extend_from_slice(bytes).is_ok()
    }
    fn reserve(&mut self, len: usize) -> bool {
        self.capacity().saturating_sub(self.len()) >= len
    }
}

/// A codec error: malformed packet, invalid argument, or sink failure.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Error {
    /// Not well-formed UTF-8.
    BadUtf8,
    /// A string contains U+0000.
    NulChar,
    /// A string is longer than 65535 bytes.
    StringTooLong,
    /// Empty topic name or topic filter.
    EmptyTopic,
    /// A topic name contains `+` or `#`.
    Wildcard,
    /// A topic filter uses `+` or `#` wrongly.
    BadFilter,
    /// Remaining length longer than 4 bytes.
    BadRemainingLength,
    /// Reserved fixed-header flag bits are wrong.
    BadFlags,
    /// Packet type 0 or 15.
    BadPacketType,
    /// QoS 3 (or a reserved bit set in a requested QoS byte).
    BadQos,
    /// The fields do not match the remaining length (truncated or trailing bytes).
    BadLength,
    /// Packet identifier 0 where one is required.
    ZeroPacketId,
    /// CONNECT protocol name is not "MQTT".
    BadProtocolName,
    /// CONNECT protocol level is not 4 (the level is given).
    BadProtocolLevel(u8),
    /// Inconsistent CONNECT flags (reserved bit, will flags, password without user name).
    BadConnectFlags,
    /// Reserved bits in CONNACK flags, or a SUBACK return code not in {0, 1, 2, 0x80}.
    BadReturnCode,
    /// SUBSCRIBE/UNSUBSCRIBE without filters, or more than the engine supports.
    BadFilterCount,
    /// Packet larger than the configured maximum (or than the MQTT limit when encoding).
    TooLarge,
    /// The sink refused the bytes (out of memory).
    SinkFull,
}

impl Error {
    /// The module error code for an invalid application argument
    /// (-5 bad UTF-8, -7 NUL in a string, -9 bad QoS, -15 bad option, -8 otherwise).
    pub fn rc(&self) -> i32 {
        use super::rc;
        match self {
            Error::BadUtf8 => rc::BAD_UTF8_STRING,
            Error::NulChar => rc::TOPICNAME_TRUNCATED,
            Error::BadQos => rc::BAD_QOS,
            Error::BadConnectFlags => rc::BAD_MQTT_OPTION,
            Error::BadProtocolLevel(_) => rc::WRONG_MQTT_VERSION,
            Error::SinkFull => rc::FAILURE,
            _ => rc::BAD_STRUCTURE,
        }
    }
}

/// Largest remaining length MQTT can express (4 bytes).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;
/// Largest string (and binary field) length.
pub const MAX_STRING_LEN: usize = 65_535;

pub const CONNECT: u8 = 1;
pub const CONNACK: u8 = 2;
pub const PUBLISH: u8 = 3;
pub const PUBACK: u8 = 4;
pub const PUBREC: u8 = 5;
pub const PUBREL: u8 = 6;
pub const PUBCOMP: u8 = 7;
pub const SUBSCRIBE: u8 = 8;
pub const SUBACK: u8 = 9;
pub const UNSUBSCRIBE: u8 = 10;
pub const UNSUBACK: u8 = 11;
pub const PINGREQ: u8 = 12;
pub const PINGRESP: u8 = 13;
pub const DISCONNECT: u8 = 14;

// ---------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------

/// An MQTT UTF-8 string: well-formed, no U+0000, at most 65535 bytes.
pub fn validate_utf8(bytes: &[u8]) -> Result<&str, Error> {
    if bytes.len() > MAX_STRING_LEN {
        return Err(Error::StringTooLong);
    }
    let s = core::str::from_utf8(bytes).map_err(|_| Error::BadUtf8)?;
    if bytes.contains(&0) {
        return Err(Error::NulChar);
    }
    Ok(s)
}

/// A topic name (PUBLISH): a non-empty MQTT string without `+` or `#`.
pub fn validate_topic_name(bytes: &[u8]) -> Result<(), Error> {
    if bytes.is_empty() {
        return Err(Error::EmptyTopic);
    }
    // The common case in one pass: ASCII without NUL or wildcards is valid.
    if bytes.len() <= MAX_STRING_LEN && bytes.iter().all(|&c| c != 0 && c < 0x80 && c != b'+' && c != b'#') {
        return Ok(());
    }
    validate_utf8(bytes)?;
    if bytes.iter().any(|&c| c == b'+' || c == b'#') {
        return Err(Error::Wildcard);
    }
    Ok(())
}

/// A topic filter (SUBSCRIBE/UNSUBSCRIBE): a non-empty MQTT string where `+` occupies a
/// whole level and `#` a whole level that is the last one.
pub fn validate_topic_filter(bytes: &[u8]) -> Result<(), Error> {
    if bytes.is_empty() {
        return Err(Error::EmptyTopic);
    }
    validate_utf8(bytes)?;
    let mut levels = bytes.split(|&c| c == b'/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        if level.contains(&b'+') && level != b"+" {
            return Err(Error::BadFilter);
        }
        if level.contains(&b'#') && (level != b"#" || !is_last) {
            return Err(Error::BadFilter);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Packet model
// ---------------------------------------------------------------------------------------

/// Will message of a CONNECT.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Will<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
    pub qos: QoS,
    pub retain: bool,
}

/// CONNECT contents (protocol "MQTT", level 4 is implied).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ConnectParams<'a> {
    pub client_id: &'a str,
    /// The module uses false (persistent session).
    pub clean_session: bool,
    pub keep_alive_s: u16,
    pub username: Option<&'a str>,
    /// Only together with a user name (3.1.1 rule).
    pub password: Option<&'a [u8]>,
    pub will: Option<Will<'a>>,
}

/// A PUBLISH packet. `pid` is 0 for QoS 0.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Publish<'a> {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    pub topic: &'a str,
    pub pid: u16,
    pub payload: &'a [u8],
}

/// The validated, still encoded filter list of a decoded SUBSCRIBE (`with_qos`) or
/// UNSUBSCRIBE.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Filters<'a> {
    raw: &'a [u8],
    with_qos: bool,
}

impl<'a> Filters<'a> {
    /// (filter, requested QoS); the QoS is 0 for UNSUBSCRIBE.
    pub fn iter(&self) -> FilterIter<'a> {
        FilterIter {
            r: Reader::new(self.raw),
            with_qos: self.with_qos,
        }
    }
    /// Number of filters.
    pub fn len(&self) -> usize {
        self.iter().count()
    }
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
}

/// Iterator over [`Filters`].
pub struct FilterIter<'a> {
    r: Reader<'a>,
    with_qos: bool,
}

impl<'a> Iterator for FilterIter<'a> {
    type Item = (&'a str, u8);
    fn next(&mut self) -> Option<(&'a str, u8)> {
        if self.r.is_empty() {
            return None;
        }
        let f = self.r.string().ok()?;
        let q = if self.with_qos { self.r.u8().ok()? } else { 0 };
        Some((f, q))
    }
}

/// A source of (filter, qos) pairs to encode a SUBSCRIBE or UNSUBSCRIBE.
pub trait FilterSource {
    fn filter_count(&self) -> usize;
    fn filter(&self, i: usize) -> Option<(&[u8], u8)>;
}

impl FilterSource for [(&[u8], u8)] {
    fn filter_count(&self) -> usize {
        self.len()
    }
    fn filter(&self, i: usize) -> Option<(&[u8], u8)> {
        self.get(i).map(|&(f, q)| (f, q))
    }
}

impl FilterSource for [(&str, u8)] {
    fn filter_count(&self) -> usize {
        self.len()
    }
    fn filter(&self, i: usize) -> Option<(&[u8], u8)> {
        self.get(i).map(|&(f, q)| (f.as_bytes(), q))
    }
}

/// Any MQTT 3.1.1 control packet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Packet<'a> {
    Connect(ConnectParams<'a>),
    ConnAck { session_present: bool, code: u8 },
    Publish(Publish<'a>),
    PubAck(u16),
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    Subscribe { pid: u16, filters: Filters<'a> },
    SubAck { pid: u16, codes: &'a [u8] },
    Unsubscribe { pid: u16, filters: Filters<'a> },
    UnsubAck(u16),
    PingReq,
    PingResp,
    Disconnect,
}
