//! Encoding: every packet into a [`Sink`] (the `encode_*` functions and
//! [`Packet::encode`]), with the checks encoding makes: CONNECT parameters
//! ([`validate_connect`]), topic names and filters, packet ids, QoS values, and the
//! MQTT size limits ([`publish_len`]).

use super::*;

/// Bytes of the remaining-length field for `len`.
pub(crate) fn varint_len(len: usize) -> usize {
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
