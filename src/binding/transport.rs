//! The transport under the engine: the TCP socket through the firmware's
//! `socket` module, TLS over it through the `tls` module, and the WebSocket
//! upgrade and framing of the sans-IO core; reading into the engine and
//! writing what it has to send.
use super::client::*;
use super::ffi::*;
use super::obj::*;
use crate::proto::codec::{ConnectParams, QoS, Will};
use crate::proto::engine::{Action, LostReason};
use crate::proto::rc;
use crate::proto::ws::{self, FrameDecoder, UpgradeParser, WsChunk, WsSink};
use core::ptr;

impl Client {
    pub(super) fn host(&self) -> &str {
        unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(self.host.0, self.host.1)) }
    }

    /// A WebSocket masking key (xorshift32 seeded from the platform's RNG:
    /// masking needs unpredictability towards intermediaries, not secrecy).
    pub(super) fn next_mask(rng: &mut u32) -> [u8; 4] {
        let mut x = *rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *rng = x;
        x.to_le_bytes()
    }

    pub(super) fn close_transport(&mut self) {
        if !self.sock.is_null() {
            unsafe { mqtt_c_sock_close(self.sock) };
        }
        if !self.raw.is_null() && self.raw != self.sock {
            unsafe { mqtt_c_sock_close(self.raw) };
        }
        self.sock = NULL;
        self.raw = NULL;
        self.fd = -1;
        self.transport = Transport::None;
        self.write_blocked = false;
        self.send.clear();
        self.send_off = 0;
        self.rx_start = 0;
        self.rx_end = 0;
    }

    /// The transport failed: `code` (0: derive it from `reason`) is what
    /// on_connect reports.
    pub(super) fn lost(&mut self, now: u64, reason: LostReason, code: i32) {
        self.close_transport();
        self.fail_code = code;
        self.engine.handle_transport_down(now, reason);
    }

    /// A stream error: an errno, or a raised exception (TLS) whose text says what failed.
    pub(super) fn stream_failed(&mut self, now: u64, err: i32) {
        let handshaking = self.scheme.is_tls() && !self.engine.is_connected();
        if err == MQTT_ERR_RAISED && handshaking {
            let mut len = 0usize;
            let p = unsafe { mqtt_c_last_error(&mut len) };
            let text = unsafe { core::slice::from_raw_parts(p as *const u8, len) };
            self.lost(now, LostReason::Tls, classify_tls_error(text));
        } else if handshaking {
            // a reset during the TLS handshake: the broker refused it
            self.lost(now, LostReason::Tls, rc::TLS_PEER_REJECTED);
        } else {
            self.lost(now, LostReason::Io, 0);
        }
    }

    pub(super) fn open_transport(&mut self, now: u64) {
        self.close_transport();
        let mut sock = NULL;
        let mut fd: i32 = -1;
        let mut what: *const core::ffi::c_char = ptr::null();
        let r = unsafe {
            mqtt_c_sock_open(self.host.0 as *const _, self.host.1, self.port, &mut sock, &mut fd, &mut what)
        };
        if r != 0 || sock.is_null() {
            if r < 0 {
                self.lost(now, LostReason::Dns, rc::DNS_FAILED);
            } else {
                self.lost(now, LostReason::Io, rc::CONNECT_FAILED);
            }
            return;
        }
        self.sock = sock;
        self.raw = sock;
        self.fd = fd;
        self.transport = Transport::Connecting;
    }

    /// TCP is up: TLS over it, then the WebSocket upgrade or MQTT's CONNECT.
    pub(super) fn tcp_up(&mut self, now: u64) {
        if self.scheme.is_tls() {
            let host = self.host();
            let t = unsafe { mqtt_c_tls_wrap(self.tls_ctx, self.raw, host.as_ptr() as *const _, host.len()) };
            if t.is_null() {
                self.stream_failed(now, MQTT_ERR_RAISED);
                return;
            }
            self.sock = t;
        }
        if self.scheme.is_websocket() {
            for chunk in self.ws_key.chunks_mut(4) {
                let m = Self::next_mask(&mut self.rng);
                chunk.copy_from_slice(&m);
            }
            self.ws_up = UpgradeParser::new(&self.ws_key);
            self.ws_dec = FrameDecoder::new(WS_MAX_FRAME);
            let default_port = self.port == self.scheme.default_port();
            let (host, path) = (self.host, self.path);
            let host = unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(host.0, host.1)) };
            let path = unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(path.0, path.1)) };
            if !ws::encode_upgrade(&mut self.send, host, self.port, default_port, path, &self.ws_key) {
                self.lost(now, LostReason::OutOfMemory, 0);
                return;
            }
            self.transport = Transport::WsUpgrade;
        } else {
            self.transport = Transport::Up;
            self.connect_params_up(now);
        }
    }

    pub(super) fn connect_params_up(&mut self, now: u64) {
        unsafe {
            let id = core::str::from_utf8_unchecked(str_data(self.client_id).unwrap_or(&[]));
            let user = if self.opts.username.is_null() {
                None
            } else {
                Some(core::str::from_utf8_unchecked(str_data(self.opts.username).unwrap_or(&[])))
            };
            let pass = if self.opts.password.is_null() {
                None
            } else {
                buffer_data(self.opts.password).map(|(d, _)| d)
            };
            let will = if self.opts.will_topic.is_null() {
                None
            } else {
                Some(Will {
                    topic: core::str::from_utf8_unchecked(str_data(self.opts.will_topic).unwrap_or(&[])),
                    payload: if self.opts.will_message.is_null() {
                        &[]
                    } else {
                        buffer_data(self.opts.will_message).map(|(d, _)| d).unwrap_or(&[])
                    },
                    qos: QoS::try_from(self.opts.will_qos).unwrap_or(QoS::AtMostOnce),
                    retain: self.opts.will_retain,
                })
            };
            let params = ConnectParams {
                client_id: id,
                clean_session: false,
                keep_alive_s: self.opts.keep_alive,
                username: user,
                password: pass,
                will,
            };
            if self.scheme.is_websocket() {
                let rng = &mut self.rng;
                let mut sink = WsSink::new(&mut self.send, || Self::next_mask(rng));
                self.engine.handle_transport_up(now, &params, &mut sink);
            } else {
                self.engine.handle_transport_up(now, &params, &mut self.send);
            }
        }
    }

    /// Feeds MQTT bytes to the engine; returns how many it took.
    pub(super) fn feed_mqtt(&mut self, now: u64, data_start: usize, data_end: usize) -> usize {
        match self.rx.get(data_start..data_end) {
            Some(d) => self.engine.handle_bytes(now, d, &mut Alloc),
            None => 0,
        }
    }

    /// Processes what is in `rx`; false when it must wait (events to deliver first).
    pub(super) fn process_rx(&mut self, now: u64) -> bool {
        while self.rx_start < self.rx_end {
            match self.transport {
                Transport::WsUpgrade => {
                    let data = self.rx.get(self.rx_start..self.rx_end).unwrap_or(&[]);
                    match self.ws_up.feed(data) {
                        Ok(Some(n)) => {
                            self.rx_start += n;
                            self.transport = Transport::Up;
                            self.connect_params_up(now);
                        }
                        Ok(None) => self.rx_start = self.rx_end,
                        Err(_) => {
                            self.lost(now, LostReason::Protocol, rc::WEBSOCKET_FAILED);
                            return true;
                        }
                    }
                }
                Transport::Up if self.scheme.is_websocket() => {
                    let data = self.rx.get(self.rx_start..self.rx_end).unwrap_or(&[]);
                    let (n, chunk) = match self.ws_dec.feed(data) {
                        Ok(r) => r,
                        Err(e) => {
                            let code = if matches!(e, ws::WsError::Closed(_)) { rc::CONNECTION_CLOSED } else { rc::WEBSOCKET_FAILED };
                            self.lost(now, LostReason::Protocol, code);
                            return true;
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
                                self.ws_dec.unconsume(dlen - used);
                                self.rx_start = end - (dlen - used);
                                return false;
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
                            return true;
                        }
                    }
                }
                Transport::Up => {
                    let used = self.feed_mqtt(now, self.rx_start, self.rx_end);
                    self.rx_start += used;
                    if used == 0 {
                        return false;
                    }
                }
                _ => return true,
            }
        }
        true
    }

    /// Reads what the socket has (within a budget); false when nothing came.
    pub(super) fn read_some(&mut self, now: u64) -> bool {
        let mut progress = false;
        let mut total = 0usize;
        while matches!(self.transport, Transport::Up | Transport::WsUpgrade) && total < READ_BUDGET {
            if self.rx_start == self.rx_end {
                self.rx_start = 0;
                self.rx_end = 0;
                let mut err: i32 = 0;
                let n = unsafe { mqtt_c_sock_read(self.sock, self.rx.as_mut_ptr(), RX_SIZE, &mut err) };
                if n < 0 {
                    if err as u32 != MQTT_EAGAIN as u32 {
                        self.stream_failed(now, err);
                        return true;
                    }
                    break;
                }
                if n == 0 {
                    let code = if self.scheme.is_tls() && !self.engine.is_connected() {
                        rc::TLS_PEER_REJECTED
                    } else {
                        rc::CONNECTION_CLOSED
                    };
                    self.lost(now, LostReason::Closed, code);
                    return true;
                }
                self.rx_end = n as usize;
                total += n as usize;
                progress = true;
            }
            if !self.process_rx(now) {
                break; // events must be delivered first
            }
        }
        progress
    }

    /// Writes what the engine has to send; false when nothing moved.
    pub(super) fn flush(&mut self, now: u64) -> bool {
        let mut progress = false;
        while matches!(self.transport, Transport::Up | Transport::WsUpgrade) {
            if self.send_off >= self.send.len() {
                self.send.clear();
                self.send_off = 0;
                if self.transport == Transport::Up {
                    if self.scheme.is_websocket() {
                        // one WebSocket frame per MQTT packet
                        while self.send.len() < WRITE_BATCH {
                            let rng = &mut self.rng;
                            let mut sink = WsSink::new(&mut self.send, || Self::next_mask(rng));
                            if !self.engine.poll_transmit(now, &mut sink) {
                                break;
                            }
                        }
                    } else {
                        while self.send.len() < WRITE_BATCH && self.engine.poll_transmit(now, &mut self.send) {}
                    }
                }
                if self.send.len() == 0 {
                    break;
                }
            }
            let data = self.send.get(self.send_off..).unwrap_or(&[]);
            let mut err: i32 = 0;
            let n = unsafe { mqtt_c_sock_write(self.sock, data.as_ptr(), data.len(), &mut err) };
            if n < 0 {
                if err as u32 != MQTT_EAGAIN as u32 {
                    // A broker that closes on a packet may have acknowledged earlier ones
                    // first: take in what the socket still holds before the connection
                    // counts as lost (read_some reports the loss if it meets it).
                    if self.transport == Transport::Up {
                        self.read_some(now);
                    }
                    if matches!(self.transport, Transport::Up | Transport::WsUpgrade) {
                        self.stream_failed(now, err);
                    }
                    return true;
                }
                // Plain TCP: the socket is full. TLS: the socket may be writable
                // while the handshake waits for the peer: then wait for input.
                let f = unsafe { mqtt_c_sock_poll(self.raw, MQTT_STREAM_POLL_WR as usize) };
                self.write_blocked = f & (MQTT_STREAM_POLL_WR as usize) == 0;
                break;
            }
            self.write_blocked = false;
            self.send_off += n as usize;
            progress = true;
        }
        progress
    }

    /// From an API call: send what can go now, and let the pump deliver events.
    pub(super) fn flush_now(&mut self) {
        let t = now();
        self.flush(t);
        unsafe { mqtt_c_request_pump() };
    }

    /// One round of I/O and timers; true when something happened.
    pub(super) fn drive(&mut self, now: u64) -> bool {
        let mut progress = false;
        self.engine.handle_timeout(now);
        match self.engine.poll_action(now) {
            Action::OpenTransport => {
                self.open_transport(now);
                progress = true;
            }
            Action::CloseTransport => {
                self.flush(now);
                self.close_transport();
                progress = true;
            }
            Action::Idle => {}
        }
        if self.transport == Transport::Connecting {
            let f = unsafe { mqtt_c_sock_poll(self.raw, (MQTT_STREAM_POLL_WR | MQTT_STREAM_POLL_RD) as usize) };
            if f & ((MQTT_STREAM_POLL_ERR | MQTT_STREAM_POLL_HUP) as usize) != 0 {
                self.lost(now, LostReason::Io, rc::CONNECT_FAILED);
                return true;
            }
            if f & (MQTT_STREAM_POLL_WR as usize) != 0 {
                self.tcp_up(now);
                progress = true;
            }
        }
        if matches!(self.transport, Transport::Up | Transport::WsUpgrade) {
            progress |= self.read_some(now);
            progress |= self.flush(now);
        }
        progress
    }

    pub(super) fn want_write(&self) -> bool {
        self.transport == Transport::Connecting || (self.send_off < self.send.len() && self.write_blocked)
    }

    /// The code on_connect reports for a failure the engine announced with rc -1.
    pub(super) fn failure_code(&mut self, reason: Option<LostReason>) -> i32 {
        let code = core::mem::replace(&mut self.fail_code, 0);
        if code != 0 {
            return code;
        }
        match reason {
            Some(r) => rc::lost_reason_code(r),
            None => rc::FAILURE,
        }
    }
}

/// Which TLS failure the tls module's exception text describes.
fn classify_tls_error(text: &[u8]) -> i32 {
    let has = |needle: &[u8]| text.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle));
    if has(b"Common Name") || has(b"CN") && has(b"match") || has(b"hostname") {
        rc::TLS_NAME_MISMATCH
    } else if has(b"not correctly signed")
        || has(b"trusted")
        || has(b"VERIFY_FAILED")
        || has(b"verif")
        || has(b"expired")
        || has(b"revoked")
    {
        rc::TLS_CERT_NOT_TRUSTED
    } else if has(b"alert") || text.starts_with(b"OSError: ") {
        // a fatal alert, or the broker closing or resetting the handshake
        rc::TLS_PEER_REJECTED
    } else {
        rc::TLS_HANDSHAKE_FAILED
    }
}
