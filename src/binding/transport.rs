//! The transport under the engine: the TCP socket through the firmware's
//! `socket` module, TLS over it through the `tls` module, and the WebSocket
//! upgrade and framing of the sans-IO core; reading into the engine and
//! writing what it has to send.
use super::client::*;
use super::ffi::*;
use super::mem::{gc_bytes, gc_free_bytes};
use super::obj::*;
use crate::proto::codec::{ConnectParams, QoS, Sink, Will};
use crate::proto::engine::{Action, LostReason};
use crate::proto::rc;
use core::ptr;

/// Whether the firmware runs on an operating system, whose event loop (the unix
/// back-end) reports socket readiness and whose TCP takes quick-ACK requests. On
/// bare metal (`target_os = "none"`) the back-end answers "maybe readable" and
/// lwIP acknowledges on its own, so that code is left out of the device build.
const OS_EVENT_LOOP: bool = !cfg!(target_os = "none");

impl Client {
    pub(super) fn host(&self) -> &str {
        unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(self.host.0, self.host.1)) }
    }

    /// A WebSocket masking key (xorshift32 seeded from the platform's RNG:
    /// masking needs unpredictability towards intermediaries, not secrecy).
    #[cfg(feature = "websocket")]
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
        self.send.trim();
        self.engine.queue_mut().trim();
        self.engine.inbound_ids_mut().trim();
        self.send_off = 0;
        self.rx_start = 0;
        self.rx_end = 0;
        self.rx_drained = false;
        unsafe { gc_free_bytes(&mut self.rx_big) };
        self.ws_close();
    }

    /// The receive buffer in use.
    #[cfg(feature = "websocket")]
    pub(super) fn rx(&self) -> &[u8] {
        if self.rx_big.is_null() {
            &self.rx_small
        } else {
            unsafe { core::slice::from_raw_parts(self.rx_big, RX_SIZE) }
        }
    }

    fn rx_mut(&mut self) -> &mut [u8] {
        if self.rx_big.is_null() {
            &mut self.rx_small
        } else {
            unsafe { core::slice::from_raw_parts_mut(self.rx_big, RX_SIZE) }
        }
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
            self.lost(now, LostReason::Tls, rc::tls_failure(text));
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
            self.ws_open(now);
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
            if !self.ws_transport_up(now, &params) {
                self.engine.handle_transport_up(now, &params, &mut self.send as &mut dyn Sink);
            }
        }
    }

    /// Feeds MQTT bytes to the engine; returns how many it took.
    pub(super) fn feed_mqtt(&mut self, now: u64, data_start: usize, data_end: usize) -> usize {
        let rx: &[u8] = if self.rx_big.is_null() {
            &self.rx_small
        } else {
            unsafe { core::slice::from_raw_parts(self.rx_big, RX_SIZE) }
        };
        match rx.get(data_start..data_end) {
            Some(d) => self.engine.handle_bytes(now, d, &mut Alloc),
            None => 0,
        }
    }

    /// Processes what is in `rx`; false when it must wait (events to deliver first).
    pub(super) fn process_rx(&mut self, now: u64) -> bool {
        while self.rx_start < self.rx_end {
            match self.transport {
                Transport::WsUpgrade => {
                    if let Some(r) = self.ws_upgrade_rx(now) {
                        return r;
                    }
                }
                Transport::Up if self.scheme.is_websocket() => {
                    if let Some(r) = self.ws_rx(now) {
                        return r;
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

    /// Whether the event loop polls the descriptor the bytes come from, so
    /// that an empty kernel buffer stays empty until it reports readiness. Not
    /// so for TLS (the stream may hold decrypted bytes that poll() cannot see)
    /// nor for a stream without a descriptor (one written in Python).
    fn readiness_is_polled(&self) -> bool {
        OS_EVENT_LOOP && self.fd >= 0 && !self.scheme.is_tls()
    }

    /// Whether a read may find something.
    fn may_have_input(&mut self) -> bool {
        if !OS_EVENT_LOOP {
            return true;
        }
        // Asked at every read, so that a readiness found before this read does
        // not cause another one later.
        let readable = unsafe { mqtt_c_take_readable(self.slot) };
        readable || !self.rx_drained
    }

    /// Reads what the socket has (within a budget); false when nothing came.
    pub(super) fn read_some(&mut self, now: u64) -> bool {
        let mut progress = false;
        let mut total = 0usize;
        let mut full = false;
        while matches!(self.transport, Transport::Up | Transport::WsUpgrade) && total < READ_BUDGET {
            if self.rx_start == self.rx_end {
                self.rx_start = 0;
                self.rx_end = 0;
                // The last read filled its buffer: more is likely waiting, read it in
                // bigger pieces (or keep the small buffer when the heap is short).
                if full && self.rx_big.is_null() {
                    self.rx_big = unsafe { gc_bytes(RX_SIZE) };
                }
                if !self.may_have_input() {
                    break;
                }
                let buf = self.rx_mut();
                let (p, cap) = (buf.as_mut_ptr(), buf.len());
                let mut err: i32 = 0;
                let n = unsafe { mqtt_c_sock_read(self.sock, p, cap, &mut err) };
                if n < 0 {
                    if err as u32 != MQTT_EAGAIN as u32 {
                        self.stream_failed(now, err);
                        return true;
                    }
                    self.rx_drained = self.readiness_is_polled();
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
                full = self.rx_end == cap;
                self.rx_drained = !full && self.readiness_is_polled();
                total += n as usize;
                progress = true;
            }
            if !self.process_rx(now) {
                break; // events must be delivered first
            }
        }
        if OS_EVENT_LOOP && total > 0 && self.fd >= 0 {
            unsafe { mqtt_c_sock_quickack(self.fd) };
        }
        if self.rx_start == self.rx_end && !self.rx_big.is_null() {
            // nothing left to process: the big buffer is not needed until the next burst
            self.rx_start = 0;
            self.rx_end = 0;
            unsafe { gc_free_bytes(&mut self.rx_big) };
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
                    if !self.ws_transmit(now) {
                        while self.send.len() < WRITE_BATCH && self.engine.poll_transmit(now, &mut self.send as &mut dyn Sink) {}
                    }
                }
                if self.send.len() == 0 {
                    break;
                }
            }
            // The store first: what the engine encoded may depend on state changes
            // that must be in the store before the packet leaves.
            if self.store.is_some() && self.sync_changes(true).is_err() {
                self.lost(now, LostReason::Io, rc::PERSISTENCE_ERROR);
                return true;
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
                        self.rx_drained = false;
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
        // Inside the pump (a callback's publish) the pump's next round writes
        // it, together with whatever the other callbacks of this round queue.
        if unsafe { !mqtt_c_pump_running() } {
            let t = now();
            self.flush(t);
        }
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
            if self.store.is_some() {
                // With a store, what a read produced is delivered by the pump
                // before the acknowledgements go out (in the next round).
                progress |= self.flush(now);
                progress |= self.read_some(now);
            } else {
                // Acknowledgements leave at once, before the callbacks run: a
                // broker with Nagle's algorithm on (mosquitto's default) holds
                // its next packet until the client's TCP acknowledges the last
                // one, which an early write does without a delayed ACK.
                progress |= self.read_some(now);
                progress |= self.flush(now);
            }
        }
        progress
    }

    /// Gives back what a burst made the request queue, the inbound QoS 2 ids and
    /// the send buffer grow to, once they have stayed oversized for
    /// `TRIM_DELAY_MS` (a steady flow keeps its blocks instead of allocating them
    /// again and again). Returns when to look again (0: nothing to trim).
    pub(super) fn trim_buffers(&mut self, now: u64) -> u64 {
        if self.send_off >= self.send.len() {
            self.send.clear();
            self.send_off = 0;
        }
        let oversized = self.send.oversized()
            || self.engine.queue().oversized()
            || self.engine.inbound_ids_mut().oversized();
        if !oversized {
            self.trim_at = 0;
        } else if self.trim_at == 0 {
            self.trim_at = now.saturating_add(TRIM_DELAY_MS);
        } else if now >= self.trim_at {
            self.send.trim();
            self.engine.queue_mut().trim();
            self.engine.inbound_ids_mut().trim();
            self.trim_at = 0;
        }
        self.trim_at
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
