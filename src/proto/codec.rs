//! MQTT 3.1.1 control packets: encoding into a [`Sink`], validation, and decoding
//! (from a complete buffer with [`decode`], or incrementally from a byte stream split
//! anywhere with [`StreamDecoder`] or the engine's own receive state machine, which
//! shares [`FixedHeaderParser`] and [`decode_body`] with them).
//!
//! Every violation of the 3.1.1 rules is an [`Error`] value; no function here panics on
//! any input.

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

// ---------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------

fn varint_len(len: usize) -> usize {
    match len {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Reserves and writes the fixed header for a packet with `rem` bytes after it.
fn put_header<S: Sink + ?Sized>(sink: &mut S, byte0: u8, rem: usize) -> Result<(), Error> {
    if rem > MAX_REMAINING_LENGTH {
        return Err(Error::TooLarge);
    }
    let total = 1 + varint_len(rem) + rem;
    if !sink.reserve(total) {
        return Err(Error::SinkFull);
    }
    let mut hdr = [0u8; 5];
    let mut n = 0usize;
    if let Some(b) = hdr.get_mut(0) {
        *b = byte0;
    }
    n += 1;
    let mut x = rem;
    loop {
        let mut b = (x % 128) as u8;
        x /= 128;
        if x > 0 {
            b |= 0x80;
        }
        if let Some(slot) = hdr.get_mut(n) {
            *slot = b;
        }
        n += 1;
        if x == 0 || n >= hdr.len() {
            break;
        }
    }
    put(sink, hdr.get(..n).unwrap_or(&[]))
}

fn put<S: Sink + ?Sized>(sink: &mut S, b: &[u8]) -> Result<(), Error> {
    if b.is_empty() || sink.put(b) {
        Ok(())
    } else {
        Err(Error::SinkFull)
    }
}

fn put_u16<S: Sink + ?Sized>(sink: &mut S, v: u16) -> Result<(), Error> {
    put(sink, &v.to_be_bytes())
}

/// Writes a length-prefixed field (the length has been checked ≤ 65535).
fn put_field<S: Sink + ?Sized>(sink: &mut S, b: &[u8]) -> Result<(), Error> {
    let len = u16::try_from(b.len()).map_err(|_| Error::StringTooLong)?;
    put_u16(sink, len)?;
    put(sink, b)
}

fn check_binary(b: &[u8]) -> Result<(), Error> {
    if b.len() > MAX_STRING_LEN {
        Err(Error::StringTooLong)
    } else {
        Ok(())
    }
}

/// Checks CONNECT parameters without encoding: strings, will topic, password rule.
pub fn validate_connect(p: &ConnectParams<'_>) -> Result<(), Error> {
    validate_utf8(p.client_id.as_bytes())?;
    if let Some(u) = p.username {
        validate_utf8(u.as_bytes())?;
    }
    if let Some(pw) = p.password {
        if p.username.is_none() {
            return Err(Error::BadConnectFlags);
        }
        check_binary(pw)?;
    }
    if let Some(w) = &p.will {
        validate_topic_name(w.topic.as_bytes())?;
        check_binary(w.payload)?;
    }
    Ok(())
}

fn connect_rem_len(p: &ConnectParams<'_>) -> usize {
    let mut n = 10 + 2 + p.client_id.len();
    if let Some(w) = &p.will {
        n += 2 + w.topic.len() + 2 + w.payload.len();
    }
    if let Some(u) = p.username {
        n += 2 + u.len();
    }
    if let Some(pw) = p.password {
        n += 2 + pw.len();
    }
    n
}

/// CONNECT.
pub fn encode_connect<S: Sink + ?Sized>(sink: &mut S, p: &ConnectParams<'_>) -> Result<(), Error> {
    validate_connect(p)?;
    let mut flags = 0u8;
    if p.clean_session {
        flags |= 0x02;
    }
    if let Some(w) = &p.will {
        flags |= 0x04 | ((w.qos as u8) << 3);
        if w.retain {
            flags |= 0x20;
        }
    }
    if p.password.is_some() {
        flags |= 0x40;
    }
    if p.username.is_some() {
        flags |= 0x80;
    }
    put_header(sink, CONNECT << 4, connect_rem_len(p))?;
    put(sink, &[0, 4, b'M', b'Q', b'T', b'T', 4, flags])?;
    put_u16(sink, p.keep_alive_s)?;
    put_field(sink, p.client_id.as_bytes())?;
    if let Some(w) = &p.will {
        put_field(sink, w.topic.as_bytes())?;
        put_field(sink, w.payload)?;
    }
    if let Some(u) = p.username {
        put_field(sink, u.as_bytes())?;
    }
    if let Some(pw) = p.password {
        put_field(sink, pw)?;
    }
    Ok(())
}

/// CONNACK.
pub fn encode_connack<S: Sink + ?Sized>(sink: &mut S, session_present: bool, code: u8) -> Result<(), Error> {
    put_header(sink, CONNACK << 4, 2)?;
    put(sink, &[u8::from(session_present), code])
}

/// Total encoded size of a PUBLISH (fixed header included), or `TooLarge`.
pub fn publish_len(qos: QoS, topic_len: usize, payload_len: usize) -> Result<usize, Error> {
    let rem = 2usize
        .checked_add(topic_len)
        .and_then(|n| n.checked_add(if qos == QoS::AtMostOnce { 0 } else { 2 }))
        .and_then(|n| n.checked_add(payload_len))
        .ok_or(Error::TooLarge)?;
    if rem > MAX_REMAINING_LENGTH {
        return Err(Error::TooLarge);
    }
    Ok(1 + varint_len(rem) + rem)
}

/// PUBLISH. The topic is validated; `pid` must be non-zero for QoS 1/2 (ignored for QoS 0).
#[allow(clippy::too_many_arguments)]
pub fn encode_publish<S: Sink + ?Sized>(
    sink: &mut S,
    dup: bool,
    qos: QoS,
    retain: bool,
    topic: &[u8],
    pid: u16,
    payload: &[u8],
) -> Result<(), Error> {
    validate_topic_name(topic)?;
    if qos != QoS::AtMostOnce && pid == 0 {
        return Err(Error::ZeroPacketId);
    }
    if qos == QoS::AtMostOnce && dup {
        return Err(Error::BadFlags);
    }
    publish_len(qos, topic.len(), payload.len())?;
    let rem_exact = 2 + topic.len() + if qos == QoS::AtMostOnce { 0 } else { 2 } + payload.len();
    let byte0 = (PUBLISH << 4) | (u8::from(dup) << 3) | ((qos as u8) << 1) | u8::from(retain);
    put_header(sink, byte0, rem_exact)?;
    put_field(sink, topic)?;
    if qos != QoS::AtMostOnce {
        put_u16(sink, pid)?;
    }
    put(sink, payload)
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP or UNSUBACK (`ptype` is the packet type number).
pub fn encode_ack<S: Sink + ?Sized>(sink: &mut S, ptype: u8, pid: u16) -> Result<(), Error> {
    let byte0 = match ptype {
        PUBACK | PUBREC | PUBCOMP | UNSUBACK => ptype << 4,
        PUBREL => (PUBREL << 4) | 0x02,
        _ => return Err(Error::BadPacketType),
    };
    if pid == 0 {
        return Err(Error::ZeroPacketId);
    }
    put_header(sink, byte0, 2)?;
    put_u16(sink, pid)
}

/// PINGREQ, PINGRESP or DISCONNECT.
pub fn encode_empty<S: Sink + ?Sized>(sink: &mut S, ptype: u8) -> Result<(), Error> {
    match ptype {
        PINGREQ | PINGRESP | DISCONNECT => put_header(sink, ptype << 4, 0),
        _ => Err(Error::BadPacketType),
    }
}

fn filters_rem_len<F: FilterSource + ?Sized>(src: &F, with_qos: bool) -> Result<usize, Error> {
    let n = src.filter_count();
    if n == 0 {
        return Err(Error::BadFilterCount);
    }
    let mut rem = 2usize;
    for i in 0..n {
        let (f, q) = src.filter(i).ok_or(Error::BadFilterCount)?;
        validate_topic_filter(f)?;
        if with_qos && q > 2 {
            return Err(Error::BadQos);
        }
        rem = rem
            .checked_add(2 + f.len() + usize::from(with_qos))
            .ok_or(Error::TooLarge)?;
    }
    Ok(rem)
}

fn encode_filters<S: Sink + ?Sized, F: FilterSource + ?Sized>(
    sink: &mut S,
    ptype: u8,
    pid: u16,
    src: &F,
) -> Result<(), Error> {
    let with_qos = ptype == SUBSCRIBE;
    if pid == 0 {
        return Err(Error::ZeroPacketId);
    }
    let rem = filters_rem_len(src, with_qos)?;
    put_header(sink, (ptype << 4) | 0x02, rem)?;
    put_u16(sink, pid)?;
    for i in 0..src.filter_count() {
        let (f, q) = src.filter(i).ok_or(Error::BadFilterCount)?;
        put_field(sink, f)?;
        if with_qos {
            put(sink, &[q])?;
        }
    }
    Ok(())
}

/// SUBSCRIBE: filters validated, QoS 0..2, at least one filter.
pub fn encode_subscribe<S: Sink + ?Sized, F: FilterSource + ?Sized>(sink: &mut S, pid: u16, src: &F) -> Result<(), Error> {
    encode_filters(sink, SUBSCRIBE, pid, src)
}

/// UNSUBSCRIBE: filters validated (the QoS of the source is ignored).
pub fn encode_unsubscribe<S: Sink + ?Sized, F: FilterSource + ?Sized>(sink: &mut S, pid: u16, src: &F) -> Result<(), Error> {
    encode_filters(sink, UNSUBSCRIBE, pid, src)
}

/// SUBACK: at least one code, each 0, 1, 2 or 0x80.
pub fn encode_suback<S: Sink + ?Sized>(sink: &mut S, pid: u16, codes: &[u8]) -> Result<(), Error> {
    if pid == 0 {
        return Err(Error::ZeroPacketId);
    }
    if codes.is_empty() {
        return Err(Error::BadFilterCount);
    }
    if codes.iter().any(|&c| !matches!(c, 0 | 1 | 2 | 0x80)) {
        return Err(Error::BadReturnCode);
    }
    put_header(sink, SUBACK << 4, 2 + codes.len())?;
    put_u16(sink, pid)?;
    put(sink, codes)
}

impl FilterSource for Filters<'_> {
    fn filter_count(&self) -> usize {
        self.len()
    }
    fn filter(&self, i: usize) -> Option<(&[u8], u8)> {
        self.iter().nth(i).map(|(f, q)| (f.as_bytes(), q))
    }
}

impl Packet<'_> {
    /// Encodes any packet.
    pub fn encode<S: Sink + ?Sized>(&self, sink: &mut S) -> Result<(), Error> {
        match self {
            Packet::Connect(p) => encode_connect(sink, p),
            Packet::ConnAck {
                session_present,
                code,
            } => encode_connack(sink, *session_present, *code),
            Packet::Publish(p) => encode_publish(
                sink,
                p.dup,
                p.qos,
                p.retain,
                p.topic.as_bytes(),
                p.pid,
                p.payload,
            ),
            Packet::PubAck(id) => encode_ack(sink, PUBACK, *id),
            Packet::PubRec(id) => encode_ack(sink, PUBREC, *id),
            Packet::PubRel(id) => encode_ack(sink, PUBREL, *id),
            Packet::PubComp(id) => encode_ack(sink, PUBCOMP, *id),
            Packet::Subscribe { pid, filters } => encode_subscribe(sink, *pid, filters),
            Packet::SubAck { pid, codes } => encode_suback(sink, *pid, codes),
            Packet::Unsubscribe { pid, filters } => encode_unsubscribe(sink, *pid, filters),
            Packet::UnsubAck(id) => encode_ack(sink, UNSUBACK, *id),
            Packet::PingReq => encode_empty(sink, PINGREQ),
            Packet::PingResp => encode_empty(sink, PINGRESP),
            Packet::Disconnect => encode_empty(sink, DISCONNECT),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------

/// Bounds-checked reader over a packet body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if n > self.buf.len() {
            return Err(Error::BadLength);
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, Error> {
        let b = self.take(1)?;
        b.first().copied().ok_or(Error::BadLength)
    }
    fn u16(&mut self) -> Result<u16, Error> {
        let b = self.take(2)?;
        match b {
            [h, l] => Ok(u16::from_be_bytes([*h, *l])),
            _ => Err(Error::BadLength),
        }
    }
    fn binary(&mut self) -> Result<&'a [u8], Error> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
    fn string(&mut self) -> Result<&'a str, Error> {
        let b = self.binary()?;
        validate_utf8(b)
    }
    fn pid(&mut self) -> Result<u16, Error> {
        let id = self.u16()?;
        if id == 0 {
            Err(Error::ZeroPacketId)
        } else {
            Ok(id)
        }
    }
    fn rest(&mut self) -> &'a [u8] {
        let r = self.buf;
        self.buf = &[];
        r
    }
    fn end(&self) -> Result<(), Error> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Error::BadLength)
        }
    }
}

/// Checks the first byte of a packet: a known type with the reserved flag bits right
/// (PUBREL, SUBSCRIBE, UNSUBSCRIBE 0b0010; PUBLISH: QoS not 3, no DUP with QoS 0; others 0).
pub fn check_first_byte(byte0: u8) -> Result<(), Error> {
    let ptype = byte0 >> 4;
    let flags = byte0 & 0x0F;
    match ptype {
        PUBLISH => {
            let qos = (flags >> 1) & 3;
            if qos == 3 {
                return Err(Error::BadQos);
            }
            if qos == 0 && flags & 0x08 != 0 {
                return Err(Error::BadFlags);
            }
            Ok(())
        }
        PUBREL | SUBSCRIBE | UNSUBSCRIBE => {
            if flags == 0x02 {
                Ok(())
            } else {
                Err(Error::BadFlags)
            }
        }
        CONNECT | CONNACK | PUBACK | PUBREC | PUBCOMP | SUBACK | UNSUBACK | PINGREQ | PINGRESP
        | DISCONNECT => {
            if flags == 0 {
                Ok(())
            } else {
                Err(Error::BadFlags)
            }
        }
        _ => Err(Error::BadPacketType),
    }
}

/// Incremental parser of the fixed header (first byte and remaining length), one byte
/// at a time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FixedHeaderParser {
    byte0: Option<u8>,
    len: u32,
    count: u8,
}

impl FixedHeaderParser {
    pub const fn new() -> Self {
        FixedHeaderParser {
            byte0: None,
            len: 0,
            count: 0,
        }
    }
    /// True when no byte of a header has been seen.
    pub fn is_empty(&self) -> bool {
        self.byte0.is_none()
    }
    /// Feeds one byte; returns `(first byte, remaining length)` once the header is complete
    /// (the parser is then reset). The first byte is checked with [`check_first_byte`].
    pub fn push(&mut self, b: u8) -> Result<Option<(u8, usize)>, Error> {
        match self.byte0 {
            None => {
                check_first_byte(b)?;
                self.byte0 = Some(b);
                self.len = 0;
                self.count = 0;
                Ok(None)
            }
            Some(byte0) => {
                if self.count >= 4 {
                    return Err(Error::BadRemainingLength);
                }
                self.len |= u32::from(b & 0x7F) << (7 * u32::from(self.count));
                self.count += 1;
                if b & 0x80 != 0 {
                    if self.count >= 4 {
                        return Err(Error::BadRemainingLength);
                    }
                    Ok(None)
                } else {
                    let len = self.len as usize;
                    *self = FixedHeaderParser::new();
                    Ok(Some((byte0, len)))
                }
            }
        }
    }
}

/// Decodes the body of a packet whose first byte is `byte0` (already checked or not) and
/// whose remaining length is `body.len()`.
pub fn decode_body(byte0: u8, body: &[u8]) -> Result<Packet<'_>, Error> {
    check_first_byte(byte0)?;
    let flags = byte0 & 0x0F;
    let mut r = Reader::new(body);
    let p = match byte0 >> 4 {
        CONNECT => {
            let name = r.binary()?;
            if name != b"MQTT" {
                return Err(Error::BadProtocolName);
            }
            let level = r.u8()?;
            if level != 4 {
                return Err(Error::BadProtocolLevel(level));
            }
            let cf = r.u8()?;
            let keep_alive_s = r.u16()?;
            if cf & 0x01 != 0 {
                return Err(Error::BadConnectFlags);
            }
            let will_flag = cf & 0x04 != 0;
            let will_qos = (cf >> 3) & 3;
            let will_retain = cf & 0x20 != 0;
            if !will_flag && (will_qos != 0 || will_retain) {
                return Err(Error::BadConnectFlags);
            }
            if cf & 0x40 != 0 && cf & 0x80 == 0 {
                return Err(Error::BadConnectFlags);
            }
            let client_id = r.string()?;
            let will = if will_flag {
                let qos = QoS::try_from(will_qos)?;
                let topic = r.string()?;
                validate_topic_name(topic.as_bytes())?;
                let payload = r.binary()?;
                Some(Will {
                    topic,
                    payload,
                    qos,
                    retain: will_retain,
                })
            } else {
                None
            };
            let username = if cf & 0x80 != 0 { Some(r.string()?) } else { None };
            let password = if cf & 0x40 != 0 { Some(r.binary()?) } else { None };
            r.end()?;
            Packet::Connect(ConnectParams {
                client_id,
                clean_session: cf & 0x02 != 0,
                keep_alive_s,
                username,
                password,
                will,
            })
        }
        CONNACK => {
            let af = r.u8()?;
            let code = r.u8()?;
            r.end()?;
            if af & 0xFE != 0 {
                return Err(Error::BadReturnCode);
            }
            Packet::ConnAck {
                session_present: af & 1 != 0,
                code,
            }
        }
        PUBLISH => {
            let qos = QoS::try_from((flags >> 1) & 3)?;
            let topic = r.string()?;
            validate_topic_name(topic.as_bytes())?;
            let pid = if qos == QoS::AtMostOnce { 0 } else { r.pid()? };
            Packet::Publish(Publish {
                dup: flags & 0x08 != 0,
                qos,
                retain: flags & 0x01 != 0,
                topic,
                pid,
                payload: r.rest(),
            })
        }
        t @ (PUBACK | PUBREC | PUBREL | PUBCOMP | UNSUBACK) => {
            let id = r.pid()?;
            r.end()?;
            match t {
                PUBACK => Packet::PubAck(id),
                PUBREC => Packet::PubRec(id),
                PUBREL => Packet::PubRel(id),
                PUBCOMP => Packet::PubComp(id),
                _ => Packet::UnsubAck(id),
            }
        }
        t @ (SUBSCRIBE | UNSUBSCRIBE) => {
            let pid = r.pid()?;
            let raw = r.rest();
            let with_qos = t == SUBSCRIBE;
            let mut fr = Reader::new(raw);
            if fr.is_empty() {
                return Err(Error::BadFilterCount);
            }
            while !fr.is_empty() {
                let f = fr.binary()?;
                validate_topic_filter(f)?;
                if with_qos {
                    let q = fr.u8()?;
                    if q > 2 {
                        return Err(Error::BadQos);
                    }
                }
            }
            let filters = Filters { raw, with_qos };
            if with_qos {
                Packet::Subscribe { pid, filters }
            } else {
                Packet::Unsubscribe { pid, filters }
            }
        }
        SUBACK => {
            let pid = r.pid()?;
            let codes = r.rest();
            if codes.is_empty() {
                return Err(Error::BadFilterCount);
            }
            if codes.iter().any(|&c| !matches!(c, 0 | 1 | 2 | 0x80)) {
                return Err(Error::BadReturnCode);
            }
            Packet::SubAck { pid, codes }
        }
        PINGREQ => {
            r.end()?;
            Packet::PingReq
        }
        PINGRESP => {
            r.end()?;
            Packet::PingResp
        }
        DISCONNECT => {
            r.end()?;
            Packet::Disconnect
        }
        _ => return Err(Error::BadPacketType),
    };
    Ok(p)
}

/// Decodes one packet from the start of `buf`: `Ok(None)` when more bytes are needed,
/// `Ok(Some((packet, bytes used)))`, or an error (including `TooLarge` when the whole
/// packet would exceed `max_packet` bytes, detected as soon as the header is known).
pub fn decode(buf: &[u8], max_packet: usize) -> Result<Option<(Packet<'_>, usize)>, Error> {
    let mut hp = FixedHeaderParser::new();
    let mut hdr = None;
    let mut used = 0usize;
    for &b in buf {
        used += 1;
        if let Some(h) = hp.push(b)? {
            hdr = Some(h);
            break;
        }
    }
    let (byte0, rem) = match hdr {
        Some(h) => h,
        None => return Ok(None),
    };
    let total = used.checked_add(rem).ok_or(Error::TooLarge)?;
    if total > max_packet {
        return Err(Error::TooLarge);
    }
    let body = match buf.get(used..total) {
        Some(b) => b,
        None => return Ok(None),
    };
    decode_body(byte0, body).map(|p| Some((p, total)))
}

/// A streaming decoder with an internal buffer of `N` bytes (packets up to `N` bytes in
/// total; larger ones are `TooLarge`). Feed any split of the stream; each call consumes
/// bytes up to the end of at most one packet.
pub struct StreamDecoder<const N: usize> {
    buf: heapless::Vec<u8, N>,
    hp: FixedHeaderParser,
    /// (first byte, remaining length) once the header is complete.
    hdr: Option<(u8, usize)>,
    done: bool,
    failed: bool,
    max_packet: usize,
}

impl<const N: usize> Default for StreamDecoder<N> {
    fn default() -> Self {
        Self::new(N)
    }
}

impl<const N: usize> StreamDecoder<N> {
    /// `max_packet` is further limited to `N`.
    pub fn new(max_packet: usize) -> Self {
        StreamDecoder {
            buf: heapless::Vec::new(),
            hp: FixedHeaderParser::new(),
            hdr: None,
            done: false,
            failed: false,
            max_packet: max_packet.min(N),
        }
    }

    /// Forgets any partial packet (and a previous error).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.hp = FixedHeaderParser::new();
        self.hdr = None;
        self.done = false;
        self.failed = false;
    }

    /// Consumes bytes of `data` until one packet is complete or `data` is exhausted.
    /// Returns the number of bytes consumed and `Ok(Some(packet))` when a packet ended.
    /// After an error the decoder stays failed (returns the error again) until `reset`.
    pub fn feed<'s>(&'s mut self, data: &[u8]) -> (usize, Result<Option<Packet<'s>>, Error>) {
        if self.failed {
            return (0, Err(Error::BadLength));
        }
        if self.done {
            self.buf.clear();
            self.hdr = None;
            self.done = false;
        }
        let mut used = 0usize;
        while self.hdr.is_none() {
            let b = match data.get(used) {
                Some(b) => *b,
                None => return (used, Ok(None)),
            };
            used += 1;
            match self.hp.push(b) {
                Ok(Some((byte0, rem))) => {
                    let total = self.buf.len() + 1 + rem;
                    if total > self.max_packet {
                        self.failed = true;
                        return (used, Err(Error::TooLarge));
                    }
                    self.buf.clear();
                    self.hdr = Some((byte0, rem));
                }
                Ok(None) => {
                    if self.buf.push(b).is_err() {
                        self.failed = true;
                        return (used, Err(Error::TooLarge));
                    }
                }
                Err(e) => {
                    self.failed = true;
                    return (used, Err(e));
                }
            }
        }
        let (byte0, rem) = match self.hdr {
            Some(h) => h,
            None => return (used, Ok(None)),
        };
        let want = rem.saturating_sub(self.buf.len());
        let avail = data.get(used..).unwrap_or(&[]);
        let n = want.min(avail.len());
        if self.buf.extend_from_slice(avail.get(..n).unwrap_or(&[])).is_err() {
            self.failed = true;
            return (used + n, Err(Error::TooLarge));
        }
        used += n;
        if self.buf.len() < rem {
            return (used, Ok(None));
        }
        self.done = true;
        match decode_body(byte0, &self.buf) {
            Ok(p) => (used, Ok(Some(p))),
            Err(e) => {
                self.failed = true;
                (used, Err(e))
            }
        }
    }
}
