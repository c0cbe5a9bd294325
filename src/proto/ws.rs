//! WebSocket (RFC 6455) client codec for MQTT over WebSocket: sans-IO, no allocation.
//!
//! - Opening handshake: [`encode_upgrade`] writes the HTTP/1.1 upgrade request (subprotocol
//!   `mqtt`); [`UpgradeParser`] checks the server's response, fed in pieces of any size.
//! - Sending: [`encode_binary`] (one masked binary frame), [`encode_pong`], [`encode_close`],
//!   or [`WsSink`], a [`Sink`] adapter that turns every packet the MQTT core writes into one
//!   masked binary frame.
//! - Receiving: [`FrameDecoder`] yields the binary payload as [`WsChunk::Data`] slices of the
//!   input (no copy, no buffering), however frames split MQTT packets and however the input
//!   is split, plus pings (to answer with a pong), pongs and close.
//!
//! This file holds the constants and [`WsError`]; the handshake (SHA-1, base64, the
//! upgrade request and response) is in `handshake`, the frames (masking, encoding,
//! [`WsSink`], [`FrameDecoder`]) in `frame`.
//!
//! Binding loop, after the handshake (`UpgradeParser::feed` returned `Some(n)`: the bytes
//! after `n` are already frame data):
//!
//! ```text
//! let mut pos = 0;
//! while pos < buf.len() {
//!     let (n, chunk) = dec.feed(&buf[pos..])?; // WsError: drop the connection
//!     pos += n;
//!     match chunk {
//!         None => {}
//!         Some(WsChunk::Data(d)) => {
//!             let k = engine.handle_bytes(now, d, inbox);
//!             if k < d.len() { // engine queues full: keep the rest for later
//!                 let r = d.len() - k;
//!                 dec.unconsume(r);
//!                 pos -= r;
//!                 break;
//!             }
//!         }
//!         Some(WsChunk::Ping(p)) => { encode_pong(sink, p, next_mask()); }
//!         Some(WsChunk::Pong) => {}
//!         Some(WsChunk::Close(code)) => { encode_close(sink, code, next_mask()); /* close */ }
//!     }
//! }
//! ```
//!
//! and for sending, wrap the send buffer: `engine.poll_transmit(now, &mut WsSink::new(buf,
//! next_mask))`.
//!
//! Choices:
//! - Text frames (opcode 1) are refused with [`WsError::BadOpcode`]: MQTT is binary only
//!   (MQTT 3.1.1 section 6).
//! - A response without `Sec-WebSocket-Protocol` is accepted (the server then did not
//!   confirm the subprotocol; mosquitto does send `mqtt`); one naming anything else than
//!   `mqtt` is refused. A non-empty `Sec-WebSocket-Extensions` is refused
//!   ([`WsError::BadUpgrade`]): we offer no extension.
//! - Masks: client frames must be masked with a fresh key per frame; the caller supplies
//!   the keys (RFC 6455 asks for an unpredictable source; a seeded PRNG is enough against
//!   the proxy-cache attacks masking exists for when the application data is not attacker
//!   controlled).
//!
//! Nothing here panics on any input; errors are [`WsError`] values, and a sink refusing
//! bytes is `false`.

use super::codec::Sink;

mod frame;
mod handshake;

pub use frame::{
    apply_mask, encode_binary, encode_close, encode_frame_header, encode_pong, FrameDecoder,
    WsChunk, WsSink,
};
pub use handshake::{
    accept_key, base64_encode, encode_upgrade, key_base64, sha1, Sha1, UpgradeParser,
};

/// Frame opcodes.
pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Close code reported when a close frame carries no code (never sent on the wire).
pub const CLOSE_NO_STATUS: u16 = 1005;
/// Largest upgrade response (status line, headers and the blank line).
pub const MAX_UPGRADE_RESPONSE: usize = 4096;
/// Longest header line of the response that the parser inspects (`Upgrade`,
/// `Connection`, `Sec-WebSocket-*`); longer lines of other headers are skipped.
pub const MAX_HEADER_LINE: usize = 128;
/// Largest control frame payload.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A handshake or framing error.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WsError {
    /// The upgrade response status is not 101.
    BadStatus(u16),
    /// `Sec-WebSocket-Accept` missing or wrong.
    BadAccept,
    /// `Upgrade: websocket` or the `Connection: upgrade` token missing, or an extension
    /// we did not offer.
    BadUpgrade,
    /// `Sec-WebSocket-Protocol` other than `mqtt`.
    BadProtocol,
    /// Upgrade response larger than [`MAX_UPGRADE_RESPONSE`], or an inspected header line
    /// longer than [`MAX_HEADER_LINE`].
    HeaderTooLarge,
    /// Not a well-formed HTTP response or frame.
    Malformed,
    /// Frame payload longer than the decoder's limit.
    FrameTooLarge,
    /// RSV1..3 set (no extension was negotiated).
    ReservedBits,
    /// Text frame or unknown opcode.
    BadOpcode,
    /// Control frame payload longer than 125 bytes.
    ControlTooLong,
    /// Control frame without FIN.
    FragmentedControl,
    /// Continuation frame without a started message.
    UnexpectedContinuation,
    /// New data frame while a fragmented message is unfinished.
    ExpectedContinuation,
    /// The server sent a masked frame.
    MaskedFromServer,
    /// The server closed the connection (close code, or 1005 if none).
    Closed(u16),
}

impl WsError {
    /// A short English description.
    pub fn text(&self) -> &'static str {
        match self {
            WsError::BadStatus(_) => "WebSocket upgrade refused (HTTP status is not 101)",
            WsError::BadAccept => "WebSocket upgrade: wrong or missing Sec-WebSocket-Accept",
            WsError::BadUpgrade => "WebSocket upgrade: missing Upgrade/Connection header or unexpected extension",
            WsError::BadProtocol => "WebSocket upgrade: server chose a subprotocol other than mqtt",
            WsError::HeaderTooLarge => "WebSocket upgrade response too large",
            WsError::Malformed => "malformed WebSocket upgrade response or frame",
            WsError::FrameTooLarge => "WebSocket frame too large",
            WsError::ReservedBits => "WebSocket frame with reserved bits set",
            WsError::BadOpcode => "WebSocket text frame or unknown opcode",
            WsError::ControlTooLong => "WebSocket control frame longer than 125 bytes",
            WsError::FragmentedControl => "fragmented WebSocket control frame",
            WsError::UnexpectedContinuation => "WebSocket continuation frame without a message",
            WsError::ExpectedContinuation => "WebSocket data frame inside a fragmented message",
            WsError::MaskedFromServer => "masked WebSocket frame from the server",
            WsError::Closed(_) => "WebSocket closed by the server",
        }
    }
}
