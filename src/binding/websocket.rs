//! The WebSocket transport of ws:// and wss:// (cargo feature `websocket`):
//! the HTTP upgrade, and MQTT packets in binary frames, through the sans-IO
//! codec in `proto::ws`. Its state lives in a GC block made when such a
//! transport opens, so clients on other transports carry none of it. Without
//! the feature these are stubs, and `MqttClient()` refuses the ws schemes.
use super::client::*;
use crate::proto::codec::ConnectParams;
#[cfg(feature = "websocket")]
use crate::proto::codec::Sink;
#[cfg(feature = "websocket")]
use crate::proto::{
    engine::LostReason,
    rc,
    ws::{self, FrameDecoder, UpgradeParser, WsChunk, WsSink},
};
#[cfg(feature = "websocket")]
use super::mem::{gc_box, gc_unbox};

/// Largest WebSocket frame accepted (the MQTT packet limit plus framing).
#[cfg(feature = "websocket")]
pub(super) const WS_MAX_FRAME: u64 = 1 << 21;

/// WebSocket state, in GC blocks of their own while a ws/wss transport is open:
/// the upgrade parser until the broker's 101, the frame decoder after it.
#[cfg(feature = "websocket")]
pub(super) struct WsState {
    pub(super) up: *mut UpgradeParser,
    pub(super) dec: *mut FrameDecoder,
}

#[cfg(feature = "websocket")]
impl WsState {
    pub(super) const fn new() -> Self {
        WsState { up: core::ptr::null_mut(), dec: core::ptr::null_mut() }
    }
}

/// Whether this firmware can open ws:// and wss:// URLs.
pub(super) const SUPPORTED: bool = cfg!(feature = "websocket");

#[cfg(feature = "websocket")]
impl Client {
    /// TCP (and TLS) is up: send the HTTP upgrade request.
    pub(super) fn ws_open(&mut self, now: u64) {
        let mut key = [0u8; 16];
        for chunk in key.chunks_mut(4) {
            let m = Self::next_mask(&mut self.rng);
            chunk.copy_from_slice(&m);
        }
        self.ws.up = unsafe { gc_box(UpgradeParser::new(&key)) };
        if self.ws.up.is_null() {
            self.lost(now, LostReason::OutOfMemory, 0);
            return;
        }
        let default_port = self.port == self.scheme.default_port();
        let (host, path) = (self.host, self.path);
        let host = unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(host.0, host.1)) };
        let path = unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(path.0, path.1)) };
        if !ws::encode_upgrade(&mut self.send, host, self.port, default_port, path, &key) {
            self.lost(now, LostReason::OutOfMemory, 0);
            return;
        }
        self.transport = Transport::WsUpgrade;
    }

    pub(super) fn ws_close(&mut self) {
        unsafe {
            gc_unbox(&mut self.ws.up);
            gc_unbox(&mut self.ws.dec);
        }
    }

    /// CONNECT in a frame (false: not a WebSocket transport).
    pub(super) fn ws_transport_up(&mut self, now: u64, params: &ConnectParams<'_>) -> bool {
        if !self.scheme.is_websocket() {
            return false;
        }
        let rng = &mut self.rng;
        let mut sink = WsSink::new(&mut self.send, || Self::next_mask(rng));
        self.engine.handle_transport_up(now, params, &mut sink as &mut dyn Sink);
        true
    }

    /// What the engine has to send, one frame per MQTT packet (false: not a
    /// WebSocket transport).
    pub(super) fn ws_transmit(&mut self, now: u64) -> bool {
        if !self.scheme.is_websocket() {
            return false;
        }
        while self.send.len() < WRITE_BATCH {
            let rng = &mut self.rng;
            let mut sink = WsSink::new(&mut self.send, || Self::next_mask(rng));
            if !self.engine.poll_transmit(now, &mut sink as &mut dyn Sink) {
                break;
            }
        }
        true
    }

    /// The rest of `rx` as a slice that does not borrow `self` (the receive
    /// buffer is not touched while it is used).
    fn rx_rest<'a>(&self) -> &'a [u8] {
        let rx: *const [u8] = self.rx();
        unsafe { (&*rx).get(self.rx_start..self.rx_end).unwrap_or(&[]) }
    }

    /// The upgrade response; `Some(r)`: `process_rx` returns r.
    pub(super) fn ws_upgrade_rx(&mut self, now: u64) -> Option<bool> {
        let data = self.rx_rest();
        let fed = match unsafe { self.ws.up.as_mut() } {
            Some(up) => up.feed(data),
            None => Err(ws::WsError::Closed(0)),
        };
        match fed {
            Ok(Some(n)) => {
                self.rx_start += n;
                unsafe {
                    gc_unbox(&mut self.ws.up);
                    self.ws.dec = gc_box(FrameDecoder::new(WS_MAX_FRAME));
                }
                if self.ws.dec.is_null() {
                    self.lost(now, LostReason::OutOfMemory, 0);
                    return Some(true);
                }
                self.transport = Transport::Up;
                self.connect_params_up(now);
            }
            Ok(None) => self.rx_start = self.rx_end,
            Err(_) => {
                self.lost(now, LostReason::Protocol, rc::WEBSOCKET_FAILED);
                return Some(true);
            }
        }
        None
    }

    /// Frames: data to the engine, ping answered, close ends the connection;
    /// `Some(r)`: `process_rx` returns r.
    pub(super) fn ws_rx(&mut self, now: u64) -> Option<bool> {
        let data = self.rx_rest();
        // the frame decoder is its own GC block, apart from `self`
        let fed = match unsafe { self.ws.dec.as_mut() } {
            Some(dec) => dec.feed(data),
            None => Err(ws::WsError::Closed(0)),
        };
        let (n, chunk) = match fed {
            Ok(r) => r,
            Err(e) => {
                let code = if matches!(e, ws::WsError::Closed(_)) { rc::CONNECTION_CLOSED } else { rc::WEBSOCKET_FAILED };
                self.lost(now, LostReason::Protocol, code);
                return Some(true);
            }
        };
        match chunk {
            None => self.rx_start += n,
            Some(WsChunk::Data(d)) => {
                let dlen = d.len();
                let start = self.rx_start + n - dlen;
                let end = self.rx_start + n;
                let used = self.feed_mqtt(now, start, end);
                if used < dlen {
                    if let Some(dec) = unsafe { self.ws.dec.as_mut() } {
                        dec.unconsume(dlen - used);
                    }
                    self.rx_start = end - (dlen - used);
                    return Some(false);
                }
                self.rx_start = end;
            }
            Some(WsChunk::Ping(p)) => {
                let mut buf = [0u8; ws::MAX_CONTROL_PAYLOAD];
                let len = p.len().min(buf.len());
                buf[..len].copy_from_slice(&p[..len]);
                self.rx_start += n;
                let mask = Self::next_mask(&mut self.rng);
                ws::encode_pong(&mut self.send, &buf[..len], mask);
            }
            Some(WsChunk::Pong) => self.rx_start += n,
            Some(WsChunk::Close(_)) => {
                self.rx_start += n;
                let mask = Self::next_mask(&mut self.rng);
                ws::encode_close(&mut self.send, ws::CLOSE_NO_STATUS, mask);
                self.flush(now);
                self.lost(now, LostReason::Closed, rc::CONNECTION_CLOSED);
                return Some(true);
            }
        }
        None
    }
}

/// Without WebSocket support no client has a ws/wss URL (`MqttClient()`
/// refuses them), so none of these is reached with one.
#[cfg(not(feature = "websocket"))]
impl Client {
    pub(super) fn ws_open(&mut self, now: u64) {
        self.transport = Transport::Up;
        self.connect_params_up(now);
    }
    pub(super) fn ws_close(&mut self) {}
    pub(super) fn ws_transport_up(&mut self, _now: u64, _params: &ConnectParams<'_>) -> bool {
        false
    }
    pub(super) fn ws_transmit(&mut self, _now: u64) -> bool {
        false
    }
    pub(super) fn ws_upgrade_rx(&mut self, _now: u64) -> Option<bool> {
        Some(true)
    }
    pub(super) fn ws_rx(&mut self, _now: u64) -> Option<bool> {
        None
    }
}
