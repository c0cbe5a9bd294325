//! Frames: masking and encoding the client's frames ([`encode_binary`],
//! [`encode_pong`], [`encode_close`], the [`WsSink`] adapter), and decoding the
//! server's ([`FrameDecoder`]).

use super::*;

// ---------------------------------------------------------------------------------------
// Sending

/// XORs `buf` with `mask`, `offset` being the position of `buf[0]` in the frame payload.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= mask[offset.wrapping_add(i) & 3];
    }
}

/// Puts `data` masked (without modifying it), `offset` as in [`apply_mask`].
fn put_masked<S: Sink + ?Sized>(sink: &mut S, data: &[u8], mask: [u8; 4], mut offset: usize) -> bool {
    let mut tmp = [0u8; 64];
    for chunk in data.chunks(tmp.len()) {
        let Some(t) = tmp.get_mut(..chunk.len()) else {
            return false;
        };
        t.copy_from_slice(chunk);
        apply_mask(t, mask, offset);
        if !sink.put(t) {
            return false;
        }
        offset = offset.wrapping_add(chunk.len());
    }
    true
}

/// Reserves a whole masked frame (header and `payload_len` bytes) and writes its header,
/// mask key included; the caller then puts exactly `payload_len` bytes masked with
/// `mask` (see [`apply_mask`]). False if the sink refuses (nothing written if `reserve`
/// refused) or `opcode` > 15.
pub fn encode_frame_header<S: Sink + ?Sized>(
    sink: &mut S,
    opcode: u8,
    fin: bool,
    payload_len: usize,
    mask: [u8; 4],
) -> bool {
    if opcode > 0x0f {
        return false;
    }
    let mut h = [0u8; 14];
    h[0] = if fin { 0x80 } else { 0 } | opcode;
    let n = if payload_len < 126 {
        h[1] = 0x80 | payload_len as u8;
        2
    } else if let Ok(l) = u16::try_from(payload_len) {
        h[1] = 0x80 | 126;
        h[2..4].copy_from_slice(&l.to_be_bytes());
        4
    } else {
        h[1] = 0x80 | 127;
        h[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        10
    };
    h[n..n + 4].copy_from_slice(&mask);
    let Some(total) = payload_len.checked_add(n + 4) else {
        return false;
    };
    sink.reserve(total) && sink.put(&h[..n + 4])
}

fn encode_whole<S: Sink + ?Sized>(sink: &mut S, opcode: u8, payload: &[u8], mask: [u8; 4]) -> bool {
    encode_frame_header(sink, opcode, true, payload.len(), mask) && put_masked(sink, payload, mask, 0)
}

/// Writes one final binary frame carrying `payload` (MQTT bytes), masked with `mask`.
pub fn encode_binary<S: Sink + ?Sized>(sink: &mut S, payload: &[u8], mask: [u8; 4]) -> bool {
    encode_whole(sink, OP_BINARY, payload, mask)
}

/// Writes a pong echoing a ping's payload; false if `payload` is longer than 125 bytes.
pub fn encode_pong<S: Sink + ?Sized>(sink: &mut S, payload: &[u8], mask: [u8; 4]) -> bool {
    payload.len() <= MAX_CONTROL_PAYLOAD && encode_whole(sink, OP_PONG, payload, mask)
}

/// Writes a close frame with `code` (1000 = normal); [`CLOSE_NO_STATUS`] (1005) sends a
/// close frame without a code (1005 must not appear on the wire), as does echoing a
/// [`WsChunk::Close`] that had none.
pub fn encode_close<S: Sink + ?Sized>(sink: &mut S, code: u16, mask: [u8; 4]) -> bool {
    let c = code.to_be_bytes();
    encode_whole(sink, OP_CLOSE, if code == CLOSE_NO_STATUS { &[] } else { &c }, mask)
}

/// A [`Sink`] adapter for the MQTT core: every packet (one `reserve` and the `put`s that
/// follow it) becomes one final binary frame, masked with a key from `next_mask`. Bytes
/// put without a `reserve` form a frame of their own.
pub struct WsSink<'s, S: Sink + ?Sized, M: FnMut() -> [u8; 4]> {
    inner: &'s mut S,
    next_mask: M,
    mask: [u8; 4],
    left: usize,
    offset: usize,
}

impl<'s, S: Sink + ?Sized, M: FnMut() -> [u8; 4]> WsSink<'s, S, M> {
    pub fn new(inner: &'s mut S, next_mask: M) -> Self {
        WsSink {
            inner,
            next_mask,
            mask: [0; 4],
            left: 0,
            offset: 0,
        }
    }
}

impl<S: Sink + ?Sized, M: FnMut() -> [u8; 4]> Sink for WsSink<'_, S, M> {
    fn reserve(&mut self, len: usize) -> bool {
        if self.left != 0 {
            return false; // previous packet unfinished
        }
        let mask = (self.next_mask)();
        if !encode_frame_header(self.inner, OP_BINARY, true, len, mask) {
            return false;
        }
        self.mask = mask;
        self.left = len;
        self.offset = 0;
        true
    }

    fn put(&mut self, bytes: &[u8]) -> bool {
        if self.left == 0 {
            return bytes.is_empty() || encode_binary(self.inner, bytes, (self.next_mask)());
        }
        if bytes.len() > self.left || !put_masked(self.inner, bytes, self.mask, self.offset) {
            return false;
        }
        self.left -= bytes.len();
        self.offset += bytes.len();
        true
    }
}

// ---------------------------------------------------------------------------------------
// Receiving

/// What [`FrameDecoder::feed`] yields.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WsChunk<'a> {
    /// Binary message payload: MQTT bytes for the MQTT decoder, in order.
    Data(&'a [u8]),
    /// A ping: answer with [`encode_pong`] carrying these bytes.
    Ping(&'a [u8]),
    /// A pong (to our ping, if any); nothing to do.
    Pong,
    /// The server closes, with this code (1005 if none): answer with [`encode_close`] and
    /// close the transport. Later calls to `feed` return [`WsError::Closed`].
    Close(u16),
}

/// Streaming decoder of server frames, fixed size (under 200 bytes), payloads not
/// buffered except control frames (at most 125 bytes).
#[derive(Clone)]
pub struct FrameDecoder {
    max_payload: u64,
    hdr: [u8; 10],
    hdr_have: usize,
    hdr_need: usize,
    in_payload: bool,
    opcode: u8,
    left: u64,
    in_message: bool,
    ctrl: [u8; MAX_CONTROL_PAYLOAD],
    ctrl_len: usize,
    /// Length of the last `Data` chunk still eligible for [`FrameDecoder::unconsume`].
    last_data: usize,
    failed: Option<WsError>,
}

impl FrameDecoder {
    /// A decoder refusing frames whose payload is longer than `max_payload` bytes
    /// ([`WsError::FrameTooLarge`]); `u64::MAX` for no limit (payloads are streamed, so
    /// the limit is a policy, not a memory need).
    pub fn new(max_payload: u64) -> Self {
        FrameDecoder {
            max_payload,
            hdr: [0; 10],
            hdr_have: 0,
            hdr_need: 2,
            in_payload: false,
            opcode: 0,
            left: 0,
            in_message: false,
            ctrl: [0; MAX_CONTROL_PAYLOAD],
            ctrl_len: 0,
            last_data: 0,
            failed: None,
        }
    }

    /// Feeds received bytes; returns how many were consumed and at most one chunk.
    /// `(n, None)` means all of `data` was consumed (`n == data.len()`); with a chunk,
    /// call again with `data[n..]` (n ≥ 1 whenever `data` is not empty). An error is
    /// final: later calls return it again.
    pub fn feed<'a>(&'a mut self, data: &'a [u8]) -> Result<(usize, Option<WsChunk<'a>>), WsError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        self.last_data = 0;
        let mut pos = 0;
        loop {
            if !self.in_payload {
                while self.hdr_have < self.hdr_need {
                    let Some(&b) = data.get(pos) else {
                        return Ok((pos, None));
                    };
                    pos += 1;
                    if let Some(slot) = self.hdr.get_mut(self.hdr_have) {
                        *slot = b;
                    }
                    self.hdr_have += 1;
                    if self.hdr_have == 2 {
                        self.hdr_need = self.check_start().map_err(|e| self.fail(e))?;
                    }
                }
                self.start_payload().map_err(|e| self.fail(e))?;
            }
            let avail = data.len() - pos;
            let take = usize::try_from(self.left).map_or(avail, |l| l.min(avail));
            let Some(chunk) = data.get(pos..pos + take) else {
                return Err(self.fail(WsError::Malformed));
            };
            pos += take;
            self.left -= take as u64;
            if self.opcode & 0x8 == 0 {
                if self.left == 0 {
                    self.in_payload = false;
                }
                if !chunk.is_empty() {
                    self.last_data = chunk.len();
                    return Ok((pos, Some(WsChunk::Data(chunk))));
                }
                if avail == 0 {
                    return Ok((pos, None));
                }
                continue;
            }
            // control frame: collect the payload (at most 125 bytes, checked in the header)
            let end = self.ctrl_len + take;
            if let Some(dst) = self.ctrl.get_mut(self.ctrl_len..end) {
                dst.copy_from_slice(chunk);
            }
            self.ctrl_len = end;
            if self.left > 0 {
                return Ok((pos, None));
            }
            self.in_payload = false;
            let chunk = match (self.opcode, self.ctrl_len) {
                (OP_PING, n) => WsChunk::Ping(self.ctrl.get(..n).unwrap_or(&[])),
                (OP_PONG, _) => WsChunk::Pong,
                (_, 0) => WsChunk::Close(CLOSE_NO_STATUS),
                (_, 1) => return Err(self.fail(WsError::Malformed)),
                _ => WsChunk::Close(u16::from_be_bytes([self.ctrl[0], self.ctrl[1]])),
            };
            if let WsChunk::Close(code) = chunk {
                self.failed = Some(WsError::Closed(code));
            }
            return Ok((pos, Some(chunk)));
        }
    }

    /// Gives back the last `n` bytes of the `Data` chunk just returned (the MQTT core
    /// took only part of it): the caller's position moves back by `n` (a `Data` chunk
    /// always ends at the consumed position) and the next `feed`, from there, yields
    /// them again. False (nothing done) if the last call did not return a `Data` chunk
    /// of at least `n` bytes (counting bytes already given back).
    pub fn unconsume(&mut self, n: usize) -> bool {
        if n > self.last_data {
            return false;
        }
        if n == 0 {
            return true;
        }
        self.last_data -= n;
        self.left += n as u64;
        self.in_payload = true;
        true
    }

    fn fail(&mut self, e: WsError) -> WsError {
        self.failed = Some(e);
        e
    }

    /// Checks the first two header bytes; returns the header length.
    fn check_start(&mut self) -> Result<usize, WsError> {
        let (b0, b1) = (self.hdr[0], self.hdr[1]);
        let (fin, opcode, len7) = (b0 & 0x80 != 0, b0 & 0x0f, b1 & 0x7f);
        if b0 & 0x70 != 0 {
            return Err(WsError::ReservedBits);
        }
        match opcode {
            OP_CONTINUATION if !self.in_message => return Err(WsError::UnexpectedContinuation),
            OP_BINARY if self.in_message => return Err(WsError::ExpectedContinuation),
            OP_CONTINUATION | OP_BINARY => self.in_message = !fin,
            OP_CLOSE | OP_PING | OP_PONG if !fin => return Err(WsError::FragmentedControl),
            OP_CLOSE | OP_PING | OP_PONG if usize::from(len7) > MAX_CONTROL_PAYLOAD => {
                return Err(WsError::ControlTooLong)
            }
            OP_CLOSE | OP_PING | OP_PONG => {}
            _ => return Err(WsError::BadOpcode),
        }
        if b1 & 0x80 != 0 {
            return Err(WsError::MaskedFromServer);
        }
        self.opcode = opcode;
        Ok(match len7 {
            126 => 4,
            127 => 10,
            _ => 2,
        })
    }

    /// The header is complete: set up the payload.
    fn start_payload(&mut self) -> Result<(), WsError> {
        let h = self.hdr;
        let len = match self.hdr_need {
            4 => u64::from(u16::from_be_bytes([h[2], h[3]])),
            10 => u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
            _ => u64::from(h[1] & 0x7f),
        };
        if len >> 63 != 0 {
            return Err(WsError::Malformed);
        }
        if len > self.max_payload {
            return Err(WsError::FrameTooLarge);
        }
        self.hdr_have = 0;
        self.hdr_need = 2;
        self.in_payload = true;
        self.left = len;
        self.ctrl_len = 0;
        Ok(())
    }
}
