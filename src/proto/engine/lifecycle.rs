//! The connection lifecycle: `connect`/`disconnect`, opening the transport
//! (`poll_action`), CONNECT and CONNACK, keep-alive and attempt timeouts, and what a
//! lost connection does (reconnect schedule, poison rule of [`crate::proto::backoff`]).

use super::*;

fn add_ms(t: Instant, ms: u64) -> Instant {
    t.saturating_add(ms)
}

impl<H: Request, Q: Queue<Entry<H>>, M, P: Queue<u16>> Engine<H, Q, M, P> {
    // ------------------------------------------------------------------------------------
    // Commands
    // ------------------------------------------------------------------------------------

    /// Starts the connection state machine (OpenTransport at the next `poll_action`).
    /// `Err(rc::COMMAND_IGNORED)` if already active.
    pub fn connect(&mut self, _now: Instant) -> Result<(), i32> {
        if self.state != ConnState::Idle {
            return Err(rc::COMMAND_IGNORED);
        }
        self.state = ConnState::NeedOpen;
        self.failures = 0;
        Ok(())
    }

    /// Graceful stop: DISCONNECT written (if connected), then CloseTransport, no retry.
    /// Everything queued stays and resumes on the next `connect()`.
    /// `Err(rc::DISCONNECTED)` if not active.
    pub fn disconnect(&mut self, _now: Instant) -> Result<(), i32> {
        match self.state {
            ConnState::Idle | ConnState::Disconnecting => Err(rc::DISCONNECTED),
            ConnState::Connected => {
                self.state = ConnState::Disconnecting;
                Ok(())
            }
            ConnState::Opening | ConnState::WaitConnack => {
                self.reset_connection();
                self.state = ConnState::Idle;
                self.close_pending = true;
                Ok(())
            }
            ConnState::NeedOpen | ConnState::WaitRetry => {
                self.state = ConnState::Idle;
                Ok(())
            }
        }
    }

    // ------------------------------------------------------------------------------------
    // Connection lifecycle
    // ------------------------------------------------------------------------------------

    pub(super) fn reset_connection(&mut self) {
        // A QoS 2 message cut off before its end was not delivered: its id is free again,
        // so the broker's re-send is delivered.
        if let Rx::PubPayload { msg: Some(_), qos: QoS::ExactlyOnce, pid, .. } = self.rx {
            self.qos2_release(pid);
        }
        self.rx_blocked = false;
        self.rx = Rx::Header;
        self.rx_hdr = FixedHeaderParser::new();
        self.rx_buf.clear();
        self.acks.clear();
        self.ping_wanted = false;
        self.ping_outstanding = false;
    }

    fn schedule_retry(&mut self, now: Instant) {
        let idx = self.failures.min(RETRY_SCHEDULE_MS.len() - 1);
        let delay = RETRY_SCHEDULE_MS.get(idx).copied().unwrap_or(60_000);
        self.retry_at = add_ms(now, delay);
        self.failures = self.failures.saturating_add(1);
        self.state = ConnState::WaitRetry;
    }

    /// The current attempt failed or the connection was lost.
    pub(super) fn lose(&mut self, now: Instant, reason: LostReason, close: bool) {
        match self.state {
            ConnState::Opening | ConnState::WaitConnack | ConnState::Connected => {
                let give_up = if self.state == ConnState::Connected {
                    self.connection_ended(now, reason)
                } else {
                    None
                };
                self.reset_connection();
                self.push_event(Event::Connect {
                    rc: rc::FAILURE,
                    session_present: false,
                    reason: Some(reason),
                });
                if let Some(i) = give_up {
                    self.give_up(i, rc::MESSAGE_REFUSED);
                }
                self.schedule_retry(now);
                self.close_pending = close;
            }
            ConnState::Disconnecting => {
                self.reset_connection();
                self.state = ConnState::Idle;
                self.close_pending = close;
            }
            ConnState::Idle | ConnState::NeedOpen | ConnState::WaitRetry => {}
        }
    }

    /// An established connection ended: applies the backoff and poison rules of
    /// [`crate::proto::backoff`]. Returns the index of the request to give up, if any.
    fn connection_ended(&mut self, now: Instant, reason: LostReason) -> Option<usize> {
        let up = now.saturating_sub(self.connected_at);
        if backoff::restarts_schedule(up, self.keep_alive_ms, self.acked_any) {
            self.failures = 0;
        }
        let by_broker = matches!(reason, LostReason::Closed | LostReason::Io);
        let blamed = if by_broker { self.blamed_entry(now) } else { None };
        let mid = blamed.and_then(|i| self.queue.get(i)).map(|e| e.mid);
        // Room for this loss's Connect event and the completion; without it the request
        // stays (its count does not go down) and is given up at the next such loss.
        if self.poison.loss(mid, self.config.poison_retries) && self.events_free() >= 2 {
            self.poison.clear();
            return blamed;
        }
        None
    }

    /// The request a loss blames (see [`crate::proto::backoff`]): the oldest packet written on
    /// this connection and still unacknowledged, if it is a PUBLISH, SUBSCRIBE or
    /// UNSUBSCRIBE, nothing written after it was acknowledged, and it was written less than
    /// the short-lived window ago.
    fn blamed_entry(&self, now: Instant) -> Option<usize> {
        let mut oldest: Option<(usize, u32)> = None;
        for i in 0..self.queue.len() {
            if let Some(e) = self.queue.get(i) {
                let written = e.gen == self.gen && matches!(e.state, EntryState::Sent | EntryState::Released);
                if written && oldest.is_none_or(|(_, seq)| e.seq < seq) {
                    oldest = Some((i, e.seq));
                }
            }
        }
        let (i, seq) = oldest?;
        let e = self.queue.get(i)?;
        let age = u64::from((now as u32).wrapping_sub(e.sent_at));
        let recent = age < backoff::short_lived_ms(self.keep_alive_ms);
        (e.state == EntryState::Sent && self.acked_seq < seq && recent).then_some(i)
    }

    /// The broker acknowledged entry `i` (PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK).
    pub(super) fn note_ack(&mut self, i: usize) {
        if let Some(e) = self.queue.get(i) {
            if e.gen == self.gen {
                self.acked_seq = self.acked_seq.max(e.seq);
            }
            self.acked_any = true;
            if self.poison.suspect() == Some(e.mid) {
                // the broker took it: it was not what the connection was closed on
                self.poison.clear();
            }
        }
    }

    /// Whether a request that expects an acknowledgement may be written now: always, except
    /// on a connection that writes one at a time while one is outstanding.
    pub(super) fn may_write_request(&self) -> bool {
        !self.one_at_a_time || self.req_seq <= self.acked_seq
    }

    /// Numbers a packet written now on this connection.
    pub(super) fn next_seq(&mut self) -> u32 {
        self.tx_seq = self.tx_seq.saturating_add(1);
        self.tx_seq
    }

    /// Tells the binding when to open or close the transport.
    pub fn poll_action(&mut self, now: Instant) -> Action {
        if self.close_pending {
            self.close_pending = false;
            return Action::CloseTransport;
        }
        let open = match self.state {
            ConnState::NeedOpen => true,
            ConnState::WaitRetry => now >= self.retry_at,
            _ => false,
        };
        if open {
            self.state = ConnState::Opening;
            self.deadline = add_ms(now, u64::from(self.config.connack_timeout_ms));
            Action::OpenTransport
        } else {
            Action::Idle
        }
    }

    /// The transport asked for by `Action::OpenTransport` is up: CONNECT is written to
    /// `sink` at once. Ignored (or answered with CloseTransport if the engine no longer
    /// wants a connection) in any other state.
    pub fn handle_transport_up<S: Sink + ?Sized>(&mut self, now: Instant, params: &ConnectParams<'_>, sink: &mut S) {
        if self.state != ConnState::Opening {
            if self.state == ConnState::Idle || self.state == ConnState::WaitRetry {
                self.close_pending = true;
            }
            return;
        }
        self.reset_connection();
        self.gen = self.gen.wrapping_add(1);
        if self.gen == 0 {
            self.gen = 1;
        }
        self.tx_seq = 0;
        self.acked_seq = 0;
        self.ping_seq = 0;
        self.req_seq = 0;
        self.acked_any = false;
        self.one_at_a_time = self.poison.suspect().is_some();
        self.keep_alive_ms = u64::from(params.keep_alive_s) * 1000;
        self.state = ConnState::WaitConnack;
        match codec::encode_connect(sink, params) {
            Ok(()) => {
                self.last_sent = now;
                self.last_recv = now;
            }
            Err(Error::SinkFull) => self.lose(now, LostReason::OutOfMemory, true),
            Err(e) => {
                // Invalid parameters: retrying cannot help.
                self.reset_connection();
                self.push_event(Event::Connect {
                    rc: e.rc(),
                    session_present: false,
                    reason: None,
                });
                self.state = ConnState::Idle;
                self.close_pending = true;
            }
        }
    }

    /// The transport failed or closed (DNS, TCP, TLS, peer close...). For a pending attempt
    /// or an established connection: `Connect { rc: -1, reason }` and a retry. Ignored when
    /// the engine has already counted the connection as gone.
    pub fn handle_transport_down(&mut self, now: Instant, reason: LostReason) {
        self.lose(now, reason, false);
    }

    // ------------------------------------------------------------------------------------
    // Timers
    // ------------------------------------------------------------------------------------

    fn ping_timeout_ms(&self) -> u64 {
        u64::from(self.config.ping_timeout_ms).min(self.keep_alive_ms / 2).max(1)
    }

    /// Next deadline (retry, attempt timeout, keep-alive ping, ping timeout), or None.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            ConnState::WaitRetry => Some(self.retry_at),
            ConnState::Opening | ConnState::WaitConnack => Some(self.deadline),
            ConnState::Connected => {
                if self.ping_outstanding {
                    Some(self.ping_deadline)
                } else if self.keep_alive_ms > 0 {
                    Some(add_ms(self.last_sent.min(self.last_recv), self.keep_alive_ms))
                } else {
                    None
                }
            }
            ConnState::Idle | ConnState::NeedOpen | ConnState::Disconnecting => None,
        }
    }

    /// Processes expired deadlines.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            ConnState::Opening | ConnState::WaitConnack if now >= self.deadline => {
                self.lose(now, LostReason::Timeout, true);
            }
            ConnState::Connected => {
                if self.ping_outstanding {
                    if now >= self.ping_deadline {
                        self.lose(now, LostReason::KeepAlive, true);
                    }
                } else if self.keep_alive_ms > 0
                    && now >= add_ms(self.last_sent.min(self.last_recv), self.keep_alive_ms)
                {
                    self.ping_wanted = true;
                    self.ping_outstanding = true;
                    self.ping_deadline = add_ms(now, self.ping_timeout_ms());
                }
            }
            _ => {}
        }
    }

    // ------------------------------------------------------------------------------------
    // CONNACK
    // ------------------------------------------------------------------------------------

    pub(super) fn connack(&mut self, now: Instant, session_present: bool, code: u8) -> Result<(), LostReason> {
        match code {
            0 => {
                // `failures` is kept: the schedule starts again only after this connection
                // proves itself (see `connection_ended`).
                self.state = ConnState::Connected;
                self.connected_at = now;
                self.last_sent = now;
                self.last_recv = now;
                self.ping_wanted = false;
                self.ping_outstanding = false;
                self.resend_from = 0;
                if !session_present {
                    // The broker has no session: its QoS 2 ids are not pending any more.
                    if self.persistence() && !self.inbound_qos2.is_empty() {
                        self.note(Change::InboundCleared);
                    }
                    self.qos2_clear();
                }
                self.push_event(Event::Connect {
                    rc: rc::OK,
                    session_present,
                    reason: None,
                });
                Ok(())
            }
            1..=5 => {
                self.reset_connection();
                self.push_event(Event::Connect {
                    rc: i32::from(code),
                    session_present: false,
                    reason: Some(LostReason::Refused),
                });
                self.state = ConnState::Idle;
                self.close_pending = true;
                Ok(())
            }
            _ => Err(LostReason::Protocol),
        }
    }
}
