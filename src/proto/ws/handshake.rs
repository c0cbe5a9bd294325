//! The opening handshake: SHA-1 and base64 for the `Sec-WebSocket-Key` and
//! `Sec-WebSocket-Accept` pair, the HTTP/1.1 upgrade request ([`encode_upgrade`]) and
//! the incremental checker of the server's response ([`UpgradeParser`]).

use super::*;

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

// ---------------------------------------------------------------------------------------
// SHA-1 and base64

/// SHA-1 (FIPS 180-4), incremental. Only for the handshake's accept key.
#[derive(Clone)]
pub struct Sha1 {
    h: [u32; 5],
    block: [u8; 64],
    used: usize,
    len: u64,
}

impl Default for Sha1 {
    fn default() -> Self {
        Self::new()
    }
}

impl Sha1 {
    pub fn new() -> Self {
        Sha1 {
            h: [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0],
            block: [0; 64],
            used: 0,
            len: 0,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.len = self.len.wrapping_add(data.len() as u64);
        for &b in data {
            if let Some(slot) = self.block.get_mut(self.used) {
                *slot = b;
            }
            self.used += 1;
            if self.used == 64 {
                self.compress();
                self.used = 0;
            }
        }
    }

    pub fn finish(mut self) -> [u8; 20] {
        let bits = self.len.wrapping_mul(8);
        self.update(&[0x80]);
        while self.used != 56 {
            self.update(&[0]);
        }
        self.update(&bits.to_be_bytes());
        let mut out = [0u8; 20];
        for (o, h) in out.chunks_exact_mut(4).zip(self.h.iter()) {
            o.copy_from_slice(&h.to_be_bytes());
        }
        out
    }

    fn compress(&mut self) {
        let mut w = [0u32; 80];
        for (wi, c) in w.iter_mut().zip(self.block.chunks_exact(4)) {
            *wi = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = self.h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i / 20 {
                0 => ((b & c) | (!b & d), 0x5A82_7999),
                1 => (b ^ c ^ d, 0x6ED9_EBA1),
                2 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (h, v) in self.h.iter_mut().zip([a, b, c, d, e]) {
            *h = h.wrapping_add(v);
        }
    }
}

/// SHA-1 of `data`.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut s = Sha1::new();
    s.update(data);
    s.finish()
}

/// Standard base64 (RFC 4648, with padding) of `input` into `out`; returns the length
/// written, or None if `out` is too small.
pub fn base64_encode(input: &[u8], out: &mut [u8]) -> Option<usize> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let n = input.len().div_ceil(3).checked_mul(4)?;
    let out = out.get_mut(..n)?;
    for (src, dst) in input.chunks(3).zip(out.chunks_exact_mut(4)) {
        let b = [
            src.first().copied().unwrap_or(0),
            src.get(1).copied().unwrap_or(0),
            src.get(2).copied().unwrap_or(0),
        ];
        let v = u32::from_be_bytes([0, b[0], b[1], b[2]]);
        for (j, d) in dst.iter_mut().enumerate() {
            *d = if j <= src.len() {
                ALPHABET[((v >> (18 - 6 * j)) & 63) as usize]
            } else {
                b'='
            };
        }
    }
    Some(n)
}

/// `Sec-WebSocket-Key` value for a 16-byte nonce.
pub fn key_base64(key: &[u8; 16]) -> [u8; 24] {
    let mut out = [0u8; 24];
    let _ = base64_encode(key, &mut out);
    out
}

/// Expected `Sec-WebSocket-Accept` value for a 16-byte nonce:
/// base64(SHA-1(base64(key) + GUID)).
pub fn accept_key(key: &[u8; 16]) -> [u8; 28] {
    let mut s = Sha1::new();
    s.update(&key_base64(key));
    s.update(GUID);
    let mut out = [0u8; 28];
    let _ = base64_encode(&s.finish(), &mut out);
    out
}

// ---------------------------------------------------------------------------------------
// Opening handshake

fn bad_text(s: &[u8]) -> bool {
    s.iter().any(|&c| c <= b' ' || c == 0x7f)
}

/// Writes the HTTP/1.1 upgrade request. The `Host` header has `:port` unless
/// `default_port` (the URL gave no port or the scheme's default); an IPv6 literal `host`
/// (given without brackets, as [`crate::proto::url`] returns it) is bracketed. An empty
/// `path` is sent as `/`. `key` is a fresh random nonce; check the response with
/// [`UpgradeParser::new`]`(key)`. Returns false if the sink refuses the bytes, or if
/// `host` is empty or `host`/`path` contain spaces or control characters (nothing is
/// written then).
pub fn encode_upgrade<S: Sink + ?Sized>(
    sink: &mut S,
    host: &str,
    port: u16,
    default_port: bool,
    path: &str,
    key: &[u8; 16],
) -> bool {
    let (host, path) = (host.as_bytes(), path.as_bytes());
    if host.is_empty() || bad_text(host) || bad_text(path) {
        return false;
    }
    let v6 = host.contains(&b':') && host.first() != Some(&b'[');
    let path: &[u8] = if path.is_empty() { b"/" } else { path };
    let mut port_buf = [0u8; 6];
    let mut port_len = 0;
    if !default_port {
        let mut digits = [0u8; 5];
        let mut n = 0;
        let mut p = port;
        loop {
            digits[n] = b'0' + (p % 10) as u8;
            n += 1;
            p /= 10;
            if p == 0 || n == digits.len() {
                break;
            }
        }
        port_buf[0] = b':';
        for (dst, src) in port_buf[1..].iter_mut().zip(digits[..n].iter().rev()) {
            *dst = *src;
        }
        port_len = n + 1;
    }
    let key = key_base64(key);
    let parts: [&[u8]; 10] = [
        b"GET ",
        path,
        b" HTTP/1.1\r\nHost: ",
        if v6 { b"[" } else { b"" },
        host,
        if v6 { b"]" } else { b"" },
        port_buf.get(..port_len).unwrap_or(b""),
        b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ",
        &key,
        b"\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n",
    ];
    let total = parts.iter().fold(0usize, |t, p| t.saturating_add(p.len()));
    sink.reserve(total) && parts.iter().all(|p| p.is_empty() || sink.put(p))
}

/// Incremental checker of the server's upgrade response.
///
/// Keeps one header line (up to [`MAX_HEADER_LINE`] bytes) and a few flags, never the
/// whole response. Accepts CRLF or bare LF line ends; refuses obsolete line folding.
#[derive(Clone)]
pub struct UpgradeParser {
    accept: [u8; 28],
    line: [u8; MAX_HEADER_LINE],
    line_len: usize,
    line_over: bool,
    total: usize,
    status_seen: bool,
    got_upgrade: bool,
    got_connection: bool,
    got_accept: bool,
    result: Option<Result<(), WsError>>,
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

impl UpgradeParser {
    /// A parser expecting the accept key of `key` (the nonce given to [`encode_upgrade`]).
    pub fn new(key: &[u8; 16]) -> Self {
        UpgradeParser {
            accept: accept_key(key),
            line: [0; MAX_HEADER_LINE],
            line_len: 0,
            line_over: false,
            total: 0,
            status_seen: false,
            got_upgrade: false,
            got_connection: false,
            got_accept: false,
            result: None,
        }
    }

    /// Feeds received bytes. `Ok(None)`: all of `data` consumed, response incomplete.
    /// `Ok(Some(n))`: the response is complete and valid after `n` bytes of `data`; the
    /// rest of `data` is the start of the frame stream (later calls return `Ok(Some(0))`).
    /// An error is final (later calls return it again).
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<usize>, WsError> {
        match self.result {
            Some(Ok(())) => return Ok(Some(0)),
            Some(Err(e)) => return Err(e),
            None => {}
        }
        for (i, &b) in data.iter().enumerate() {
            self.total += 1;
            let step = if self.total > MAX_UPGRADE_RESPONSE {
                Err(WsError::HeaderTooLarge)
            } else if b == b'\n' {
                self.end_line()
            } else {
                match self.line.get_mut(self.line_len) {
                    Some(slot) => {
                        *slot = b;
                        self.line_len += 1;
                    }
                    None => self.line_over = true,
                }
                Ok(false)
            };
            match step {
                Ok(false) => {}
                Ok(true) => {
                    self.result = Some(Ok(()));
                    return Ok(Some(i + 1));
                }
                Err(e) => {
                    self.result = Some(Err(e));
                    return Err(e);
                }
            }
        }
        Ok(None)
    }

    /// Handles a complete line; Ok(true) when the response is complete.
    fn end_line(&mut self) -> Result<bool, WsError> {
        let len = self.line_len;
        let over = self.line_over;
        self.line_len = 0;
        self.line_over = false;
        let mut line = self.line.get(..len).unwrap_or(&[]);
        if !over {
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
        }
        if !self.status_seen {
            self.status_seen = true;
            return Self::status(line).map(|_| false);
        }
        if line.is_empty() && !over {
            return if !self.got_upgrade || !self.got_connection {
                Err(WsError::BadUpgrade)
            } else if !self.got_accept {
                Err(WsError::BadAccept)
            } else {
                Ok(true)
            };
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            return Err(WsError::Malformed);
        }
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            // A name longer than the line buffer: not one we inspect.
            return if over { Ok(false) } else { Err(WsError::Malformed) };
        };
        let name = line.get(..colon).unwrap_or(&[]);
        let value = trim_ows(line.get(colon + 1..).unwrap_or(&[]));
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        let inspected = [
            "upgrade",
            "connection",
            "sec-websocket-accept",
            "sec-websocket-protocol",
            "sec-websocket-extensions",
        ];
        if !inspected.iter().any(|n| is(n)) {
            return Ok(false);
        }
        if over {
            return Err(WsError::HeaderTooLarge);
        }
        if is("upgrade") {
            if !value.eq_ignore_ascii_case(b"websocket") {
                return Err(WsError::BadUpgrade);
            }
            self.got_upgrade = true;
        } else if is("connection") {
            if value
                .split(|&c| c == b',')
                .any(|t| trim_ows(t).eq_ignore_ascii_case(b"upgrade"))
            {
                self.got_connection = true;
            }
        } else if is("sec-websocket-accept") {
            if value != self.accept {
                return Err(WsError::BadAccept);
            }
            self.got_accept = true;
        } else if is("sec-websocket-protocol") {
            if value != b"mqtt" {
                return Err(WsError::BadProtocol);
            }
        } else if !value.is_empty() {
            // sec-websocket-extensions
            return Err(WsError::BadUpgrade);
        }
        Ok(false)
    }

    /// Checks `HTTP/1.x SP 3DIGIT [SP reason]`.
    fn status(line: &[u8]) -> Result<(), WsError> {
        let Some(rest) = line.strip_prefix(b"HTTP/1.") else {
            return Err(WsError::Malformed);
        };
        let code = match rest {
            [_, b' ', d @ (b'0'..=b'9'), e @ (b'0'..=b'9'), f @ (b'0'..=b'9'), tail @ ..]
                if matches!(tail.first(), None | Some(b' ')) =>
            {
                [*d, *e, *f].iter().fold(0u16, |v, c| v * 10 + u16::from(c - b'0'))
            }
            _ => return Err(WsError::Malformed),
        };
        if code == 101 {
            Ok(())
        } else {
            Err(WsError::BadStatus(code))
        }
    }
}
