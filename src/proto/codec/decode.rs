//! Decoding: the bounds-checked [`Reader`] of a packet body, the fixed header
//! ([`check_first_byte`], [`FixedHeaderParser`]), [`decode_body`], and the two
//! front ends, [`decode()`] over a complete buffer and [`StreamDecoder`] over a
//! stream split anywhere.

use super::*;

/// Bounds-checked reader over a packet body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    pub(super) fn is_empty(&self) -> bool {
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
    pub(super) fn u8(&mut self) -> Result<u8, Error> {
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
    pub(super) fn string(&mut self) -> Result<&'a str, Error> {
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
