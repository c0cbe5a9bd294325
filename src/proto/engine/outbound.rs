//! The outbound path: PUBLISH, SUBSCRIBE and UNSUBSCRIBE requests (validation, packet
//! ids, mids, the window and buffer bounds), the request queue, and `poll_transmit`
//! (re-sends, acknowledgements, new requests within the in-flight window, PINGREQ).

use super::*;
use crate::proto::codec::FilterSource;

/// Adapter: a [`Request`] as a [`FilterSource`].
struct ReqFilters<'a, H>(&'a H);

impl<H: Request> FilterSource for ReqFilters<'_, H> {
    fn filter_count(&self) -> usize {
        self.0.filter_count()
    }
    fn filter(&self, i: usize) -> Option<(&[u8], u8)> {
        self.0.filter(i)
    }
}

impl<H: Request, Q: Queue<Entry<H>>, M, P: Queue<u16>> Engine<H, Q, M, P> {
    // ------------------------------------------------------------------------------------
    // Requests
    // ------------------------------------------------------------------------------------

    fn alloc_mid(&mut self) -> u32 {
        let m = self.next_mid;
        self.next_mid = if m == u32::MAX { 1 } else { m + 1 };
        m
    }

    /// Allocates a packet id: the next one after the last allocated that no queued entry
    /// holds. Until the counter first wraps, the next id is free by construction; after
    /// that, ids are searched in blocks of 256 with one pass over the queue per block
    /// (O(queue length) per allocation in practice, bounded by 256 passes).
    fn alloc_pid(&mut self) -> Result<u16, i32> {
        if self.pids_in_use >= 65_535 {
            return Err(rc::NO_MORE_MSGIDS);
        }
        if !self.pid_wrapped {
            let c = self.next_pid.max(1);
            self.set_next_pid(c);
            self.pids_in_use += 1;
            return Ok(c);
        }
        let mut base = u32::from(self.next_pid.max(1));
        let mut checked = 0u32;
        while checked < 65_535 {
            let block = 256u32.min(65_536 - base);
            let mut mask = [0u32; 8];
            for i in 0..self.queue.len() {
                if let Some(e) = self.queue.get(i) {
                    let p = u32::from(e.pid);
                    if p >= base && p < base + block {
                        let k = (p - base) as usize;
                        if let Some(w) = mask.get_mut(k / 32) {
                            *w |= 1 << (k % 32);
                        }
                    }
                }
            }
            for k in 0..block as usize {
                let used = mask.get(k / 32).is_some_and(|w| w & (1 << (k % 32)) != 0);
                if !used {
                    let c = u16::try_from(base + k as u32).map_err(|_| rc::NO_MORE_MSGIDS)?;
                    self.set_next_pid(c);
                    self.pids_in_use += 1;
                    return Ok(c);
                }
            }
            checked += block;
            base += block;
            if base > 65_535 {
                base = 1;
            }
        }
        Err(rc::NO_MORE_MSGIDS)
    }

    /// `c` was just allocated: the search continues after it.
    fn set_next_pid(&mut self, c: u16) {
        if c == 65_535 {
            self.next_pid = 1;
            self.pid_wrapped = true;
        } else {
            self.next_pid = c + 1;
        }
    }

    fn enqueue(&mut self, e: Entry<H>) -> Result<u32, i32> {
        let mid = e.mid;
        let pid = e.pid;
        match self.queue.push_back(e) {
            Ok(()) => {
                self.queued += 1;
                Ok(mid)
            }
            Err(_) => {
                if pid != 0 {
                    self.pids_in_use = self.pids_in_use.saturating_sub(1);
                }
                Err(rc::FAILURE)
            }
        }
    }

    /// Queues a PUBLISH. Validates the topic (-5 bad UTF-8, -7 NUL, -8 empty/wildcard/too
    /// long, -8 packet too large for MQTT or above `Config::max_packet_size`); applies the
    /// window and buffer bounds (-12 buffer full, -4 window full with `max_buffered == 0`);
    /// -10 when no packet id is free; -1 when the queue storage is full. Returns the mid.
    pub fn publish(&mut self, _now: Instant, h: H, qos: QoS, retain: bool) -> Result<u32, i32> {
        codec::validate_topic_name(h.topic()).map_err(|e| e.rc())?;
        let len = codec::publish_len(qos, h.topic().len(), h.payload().len()).map_err(|e| e.rc())?;
        if self.config.max_packet_size.is_some_and(|max| len > max) {
            return Err(rc::BAD_STRUCTURE);
        }
        // While disconnected every message waits in the buffer (API.md): only
        // a connected client puts a QoS 1/2 message straight into the window.
        let slot = self.state == ConnState::Connected
            && if qos == QoS::AtMostOnce {
                self.queued == 0
            } else {
                self.buffered == 0 && self.inflight < usize::from(self.config.max_inflight)
            };
        if !slot && self.buffered >= self.config.max_buffered {
            // -4 only where a window exists to be full: connected, no buffer.
            return Err(if self.config.max_buffered == 0 && qos != QoS::AtMostOnce && self.state == ConnState::Connected {
                rc::MAX_MESSAGES_INFLIGHT
            } else {
                rc::MAX_BUFFERED_MESSAGES
            });
        }
        let pid = if qos == QoS::AtMostOnce { 0 } else { self.alloc_pid()? };
        let mid = self.alloc_mid();
        let e = Entry {
            handle: h,
            kind: Kind::Publish { qos, retain },
            mid,
            pid,
            slot,
            state: EntryState::Queued,
            gen: 0,
            seq: 0,
            sent_at: 0,
        };
        self.enqueue(e)?;
        if slot {
            if qos != QoS::AtMostOnce {
                self.inflight += 1;
            }
        } else {
            self.buffered += 1;
        }
        Ok(mid)
    }

    fn check_filters(h: &H, with_qos: bool) -> Result<(), i32> {
        let n = h.filter_count();
        if n == 0 || (with_qos && n > MAX_SUBSCRIBE_FILTERS) {
            return Err(rc::BAD_STRUCTURE);
        }
        let mut size = 2usize;
        for i in 0..n {
            let (f, q) = h.filter(i).ok_or(rc::BAD_STRUCTURE)?;
            codec::validate_topic_filter(f).map_err(|e| e.rc())?;
            if with_qos && q > 2 {
                return Err(rc::BAD_QOS);
            }
            size = size.saturating_add(3 + f.len());
        }
        if size > codec::MAX_REMAINING_LENGTH {
            return Err(rc::BAD_STRUCTURE);
        }
        Ok(())
    }

    fn queue_request(&mut self, h: H, kind: Kind) -> Result<u32, i32> {
        Self::check_filters(&h, kind == Kind::Subscribe)?;
        let pid = self.alloc_pid()?;
        let mid = self.alloc_mid();
        self.enqueue(Entry {
            handle: h,
            kind,
            mid,
            pid,
            slot: false,
            state: EntryState::Queued,
            gen: 0,
            seq: 0,
            sent_at: 0,
        })
    }

    /// Queues a SUBSCRIBE (1..=16 filters, each valid, qos 0..2: else -8 / -5 / -7 / -9).
    /// Not bounded by `max_buffered`; sent in order with the publishes.
    pub fn subscribe(&mut self, _now: Instant, h: H) -> Result<u32, i32> {
        self.queue_request(h, Kind::Subscribe)
    }

    /// Queues an UNSUBSCRIBE (at least one valid filter).
    pub fn unsubscribe(&mut self, _now: Instant, h: H) -> Result<u32, i32> {
        self.queue_request(h, Kind::Unsubscribe)
    }

    // ------------------------------------------------------------------------------------
    // Transmit
    // ------------------------------------------------------------------------------------

    fn needs_resend(&self, e: &Entry<H>) -> bool {
        matches!(e.state, EntryState::Sent | EntryState::Released) && e.gen != self.gen
    }

    fn find_resend(&mut self) -> Option<usize> {
        let mut i = self.resend_from;
        while i < self.sent_end {
            match self.queue.get(i) {
                Some(e) if self.needs_resend(e) => {
                    self.resend_from = i;
                    return Some(i);
                }
                Some(_) => i += 1,
                None => break,
            }
        }
        self.resend_from = i;
        None
    }

    fn find_unsent(&mut self) -> Option<usize> {
        let mut i = self.unsent_from;
        while let Some(e) = self.queue.get(i) {
            if e.state == EntryState::Queued {
                self.unsent_from = i;
                return Some(i);
            }
            i += 1;
        }
        self.unsent_from = i;
        None
    }

    /// Removes entry `i`, keeping counters and scan hints right.
    pub(super) fn remove_entry(&mut self, i: usize) -> Option<Entry<H>> {
        let e = self.queue.remove(i)?;
        if self.resend_from > i {
            self.resend_from -= 1;
        }
        if self.sent_end > i {
            self.sent_end -= 1;
        }
        if self.unsent_from > i {
            self.unsent_from -= 1;
        }
        if e.pid != 0 {
            self.pids_in_use = self.pids_in_use.saturating_sub(1);
        }
        if e.state == EntryState::Queued {
            self.queued = self.queued.saturating_sub(1);
        }
        if let Kind::Publish { qos, .. } = e.kind {
            if !e.slot {
                self.buffered = self.buffered.saturating_sub(1);
            } else if qos != QoS::AtMostOnce {
                self.inflight = self.inflight.saturating_sub(1);
            }
        }
        Some(e)
    }

    fn encode_entry<S: Sink + ?Sized>(e: &Entry<H>, sink: &mut S, dup: bool) -> Result<(), Error> {
        match (e.kind, e.state) {
            (_, EntryState::Released) => codec::encode_ack(sink, codec::PUBREL, e.pid),
            (Kind::Publish { qos, retain }, _) => codec::encode_publish(
                sink,
                dup && qos != QoS::AtMostOnce,
                qos,
                retain,
                e.handle.topic(),
                e.pid,
                e.handle.payload(),
            ),
            (Kind::Subscribe, _) => codec::encode_subscribe(sink, e.pid, &ReqFilters(&e.handle)),
            (Kind::Unsubscribe, _) => codec::encode_unsubscribe(sink, e.pid, &ReqFilters(&e.handle)),
        }
    }

    /// A request can no longer be encoded (its data became invalid): complete it with an error.
    fn fail_entry(&mut self, i: usize, err: Error) {
        self.give_up(i, err.rc());
    }

    /// Removes request `i` unfinished: a publish completes with `code`, a subscribe with
    /// 0x80 for every filter, an unsubscribe with its (only) event.
    pub(super) fn give_up(&mut self, i: usize, code: i32) {
        if let Some(e) = self.remove_entry(i) {
            if e.is_qos_publish() {
                self.note(Change::Done { mid: e.mid });
            }
            let ev = match e.kind {
                Kind::Publish { .. } => Event::Published { mid: e.mid, rc: code },
                Kind::Subscribe => {
                    let mut granted = Vec::new();
                    for _ in 0..e.handle.filter_count().clamp(1, MAX_SUBSCRIBE_FILTERS) {
                        let _ = granted.push(0x80);
                    }
                    Event::Subscribed { mid: e.mid, granted }
                }
                Kind::Unsubscribe => Event::Unsubscribed { mid: e.mid },
            };
            self.push_event(ev);
        }
    }

    /// Writes at most one whole packet to `sink`; false when there is nothing to send (or
    /// the sink failed: the connection is then dropped with `OutOfMemory`).
    ///
    /// Order: (CONNECT is written by `handle_transport_up`), then re-sent PUBLISH (DUP) and
    /// PUBREL in original order, then acknowledgements of incoming messages, then queued
    /// requests in order within the in-flight window, then PINGREQ. After `disconnect()`:
    /// acknowledgements, then DISCONNECT.
    pub fn poll_transmit<S: Sink + ?Sized>(&mut self, now: Instant, sink: &mut S) -> bool {
        match self.state {
            ConnState::Connected => {}
            ConnState::Disconnecting => {
                if self.write_ack(now, sink) {
                    return true;
                }
                let ok = codec::encode_empty(sink, codec::DISCONNECT).is_ok();
                self.reset_connection();
                self.state = ConnState::Idle;
                self.close_pending = true;
                return ok;
            }
            _ => return false,
        }
        // 1. Re-sends from a previous connection, and PUBRELs.
        let may_write = self.may_write_request();
        if let Some(i) = if may_write { self.find_resend() } else { None } {
            let res = match self.queue.get(i) {
                Some(e) => Self::encode_entry(e, sink, true),
                None => return false,
            };
            return match res {
                Ok(()) => {
                    let (gen, seq) = (self.gen, self.next_seq());
                    self.req_seq = seq;
                    if let Some(e) = self.queue.get_mut(i) {
                        e.gen = gen;
                        e.seq = seq;
                        e.sent_at = now as u32;
                    }
                    self.last_sent = now;
                    true
                }
                Err(Error::SinkFull) => {
                    self.lose(now, LostReason::OutOfMemory, true);
                    false
                }
                Err(err) => {
                    self.fail_entry(i, err);
                    true
                }
            };
        }
        // 2. Acknowledgements.
        if self.write_ack(now, sink) {
            return true;
        }
        if self.state != ConnState::Connected {
            return false;
        }
        // 3. New requests, in order. Room for a completion event plus one inbound packet's
        // event plus a lifecycle event is kept.
        if self.events_free() >= 3 && may_write && self.changes_free() >= 1 {
            if let Some(i) = self.find_unsent() {
                let (is_pub, qos, slot) = match self.queue.get(i) {
                    Some(e) => match e.kind {
                        Kind::Publish { qos, .. } => (true, qos, e.slot),
                        _ => (false, QoS::AtMostOnce, true),
                    },
                    None => return false,
                };
                let window_ok = !is_pub
                    || qos == QoS::AtMostOnce
                    || slot
                    || self.inflight < usize::from(self.config.max_inflight);
                if window_ok {
                    let res = match self.queue.get(i) {
                        Some(e) => Self::encode_entry(e, sink, false),
                        None => return false,
                    };
                    match res {
                        Ok(()) => {
                            self.last_sent = now;
                            self.queued = self.queued.saturating_sub(1);
                            if is_pub && qos == QoS::AtMostOnce {
                                if let Some(e) = self.queue.remove(i) {
                                    if !e.slot {
                                        self.buffered = self.buffered.saturating_sub(1);
                                    }
                                    if self.resend_from > i {
                                        self.resend_from -= 1;
                                    }
                                    if self.sent_end > i {
                                        self.sent_end -= 1;
                                    }
                                    self.push_event(Event::Published {
                                        mid: e.mid,
                                        rc: rc::OK,
                                    });
                                }
                            } else {
                                let (gen, seq) = (self.gen, self.next_seq());
                                self.req_seq = seq;
                                let mut took_slot = false;
                                let mut sent_mid = None;
                                self.sent_end = self.sent_end.max(i + 1);
                                if let Some(e) = self.queue.get_mut(i) {
                                    e.state = EntryState::Sent;
                                    e.gen = gen;
                                    e.seq = seq;
                                    e.sent_at = now as u32;
                                    if is_pub && !e.slot {
                                        e.slot = true;
                                        took_slot = true;
                                    }
                                    if is_pub {
                                        sent_mid = Some(e.mid);
                                    }
                                }
                                if let Some(mid) = sent_mid {
                                    self.note(Change::Sent { mid });
                                }
                                if took_slot {
                                    self.buffered = self.buffered.saturating_sub(1);
                                    self.inflight += 1;
                                }
                            }
                            return true;
                        }
                        Err(Error::SinkFull) => {
                            self.lose(now, LostReason::OutOfMemory, true);
                            return false;
                        }
                        Err(err) => {
                            self.fail_entry(i, err);
                            return true;
                        }
                    }
                }
            }
        }
        // 4. Keep-alive.
        if self.ping_wanted {
            return match codec::encode_empty(sink, codec::PINGREQ) {
                Ok(()) => {
                    self.ping_wanted = false;
                    self.ping_seq = self.next_seq();
                    self.last_sent = now;
                    true
                }
                Err(_) => {
                    self.lose(now, LostReason::OutOfMemory, true);
                    false
                }
            };
        }
        false
    }

    fn write_ack<S: Sink + ?Sized>(&mut self, now: Instant, sink: &mut S) -> bool {
        let (t, id) = match self.acks.front() {
            Some(a) => *a,
            None => return false,
        };
        match codec::encode_ack(sink, t, id) {
            Ok(()) => {
                self.acks.pop_front();
                self.last_sent = now;
                true
            }
            Err(Error::SinkFull) => {
                self.lose(now, LostReason::OutOfMemory, true);
                false
            }
            Err(_) => {
                self.acks.pop_front();
                true
            }
        }
    }
}
