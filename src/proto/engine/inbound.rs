//! The inbound path: `handle_bytes` and the receive state machine ([`Rx`]), incoming
//! PUBLISH streamed into the binding's [`Inbox`], inbound QoS 1/2 acknowledgements and
//! the inbound QoS 2 id store, and the acknowledgements of the engine's own requests.

use super::*;
use crate::proto::codec::{check_first_byte, decode_body, Packet};

pub(super) enum Rx<M> {
    /// Between packets or inside a fixed header.
    Header,
    /// Accumulating the body of a small packet into `rx_buf`.
    Body { byte0: u8, rem: usize },
    /// Accumulating a PUBLISH variable header (topic, packet id) into `rx_buf`.
    PubHead { flags: u8, rem: usize },
    /// Streaming a PUBLISH payload into `msg` (None: a QoS 2 duplicate, skipped).
    PubPayload {
        msg: Option<M>,
        qos: QoS,
        retain: bool,
        dup: bool,
        pid: u16,
        pos: usize,
        len: usize,
    },
}

/// Owned form of a small incoming packet.
enum In {
    ConnAck { session_present: bool, code: u8 },
    PubAck(u16),
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    SubAck { pid: u16, codes: Vec<u8, MAX_SUBSCRIBE_FILTERS> },
    UnsubAck(u16),
    PingResp,
}

impl<H: Request, Q: Queue<Entry<H>>, M, P: Queue<u16>> Engine<H, Q, M, P> {
    fn receiving(&self) -> bool {
        matches!(
            self.state,
            ConnState::WaitConnack | ConnState::Connected | ConnState::Disconnecting
        )
    }

    /// Feeds received bytes (any split). Returns how many bytes were consumed: fewer than
    /// `data.len()` only when the event queue or the acknowledgement queue is full (the
    /// binding then drains `poll_event`/`poll_transmit` and feeds the rest again), or when a
    /// QoS 2 PUBLISH with a new packet id finds the inbound id store full: the engine then
    /// keeps its header and takes nothing more until the store has room
    /// ([`Engine::is_receive_blocked`]); other packets, a PUBREL included, are never held
    /// back by a full store, only by their place in the stream. A protocol
    /// violation drops the connection (`Connect { rc: -1, reason: Protocol }`,
    /// `Action::CloseTransport`, retry scheduled) and consumes everything. Bytes arriving
    /// while no connection is up are discarded (all consumed).
    pub fn handle_bytes<I: Inbox<Msg = M>>(&mut self, now: Instant, data: &[u8], inbox: &mut I) -> usize {
        let mut used = 0usize;
        while used < data.len() {
            if !self.receiving() {
                return data.len();
            }
            let rest = data.get(used..).unwrap_or(&[]);
            match self.rx_step(now, rest, inbox) {
                Ok(0) => break,
                Ok(n) => {
                    used += n;
                    self.last_recv = now;
                }
                Err(reason) => {
                    self.lose(now, reason, true);
                    return data.len();
                }
            }
        }
        used
    }

    fn rx_step<I: Inbox<Msg = M>>(&mut self, now: Instant, data: &[u8], inbox: &mut I) -> Result<usize, LostReason> {
        match self.rx {
            Rx::Header => {
                if self.rx_hdr.is_empty()
                    && (self.events_free() < 2
                        || self.acks.len() >= ACK_CAPACITY
                        || self.changes_free() < 2
                        || self.inbound_unsaved())
                {
                    return Ok(0);
                }
                let mut n = 0usize;
                for &b in data {
                    n += 1;
                    match self.rx_hdr.push(b) {
                        Err(_) => return Err(LostReason::Protocol),
                        Ok(None) => {}
                        Ok(Some((byte0, rem))) => {
                            self.start_packet(now, byte0, rem, inbox)?;
                            return Ok(n);
                        }
                    }
                }
                Ok(n)
            }
            Rx::Body { byte0, rem } => {
                let want = rem.saturating_sub(self.rx_buf.len());
                let n = want.min(data.len());
                self.rx_buf
                    .extend_from_slice(data.get(..n).unwrap_or(&[]))
                    .map_err(|_| LostReason::Protocol)?;
                if self.rx_buf.len() >= rem {
                    self.rx = Rx::Header;
                    self.small_packet(now, byte0)?;
                }
                Ok(n)
            }
            Rx::PubHead { flags, rem } => {
                let qos = QoS::try_from((flags >> 1) & 3).map_err(|_| LostReason::Protocol)?;
                let mut used = 0usize;
                loop {
                    let need = match self.rx_buf.as_slice() {
                        [h, l, ..] => {
                            2 + usize::from(u16::from_be_bytes([*h, *l]))
                                + if qos == QoS::AtMostOnce { 0 } else { 2 }
                        }
                        _ => 2,
                    };
                    if need > rem {
                        return Err(LostReason::Protocol);
                    }
                    let pid_len = if qos == QoS::AtMostOnce { 0 } else { 2 };
                    if need.saturating_sub(2 + pid_len) > MAX_INCOMING_TOPIC_LEN || need > self.rx_buf.capacity() {
                        return Err(LostReason::PacketTooLarge);
                    }
                    let have = self.rx_buf.len();
                    if have >= need {
                        self.publish_header(flags, qos, rem, inbox)?;
                        if used == 0 && !self.rx_blocked {
                            // a held PUBLISH goes on: its payload follows in `data`
                            return self.rx_step(now, data, inbox);
                        }
                        return Ok(used);
                    }
                    let avail = data.get(used..).unwrap_or(&[]);
                    if avail.is_empty() {
                        return Ok(used);
                    }
                    let n = (need - have).min(avail.len());
                    self.rx_buf
                        .extend_from_slice(avail.get(..n).unwrap_or(&[]))
                        .map_err(|_| LostReason::PacketTooLarge)?;
                    used += n;
                }
            }
            Rx::PubPayload { .. } => {
                let mut n = 0usize;
                let mut complete = false;
                if let Rx::PubPayload { msg, pos, len, .. } = &mut self.rx {
                    let want = len.saturating_sub(*pos);
                    n = want.min(data.len());
                    if let Some(m) = msg.as_mut() {
                        let end = pos.checked_add(n).ok_or(LostReason::OutOfMemory)?;
                        let dst = inbox
                            .payload_mut(m)
                            .get_mut(*pos..end)
                            .ok_or(LostReason::OutOfMemory)?;
                        let src = data.get(..n).ok_or(LostReason::Protocol)?;
                        dst.copy_from_slice(src);
                    }
                    *pos += n;
                    complete = *pos >= *len;
                }
                if complete {
                    self.finish_publish();
                }
                Ok(n)
            }
        }
    }

    fn start_packet<I: Inbox<Msg = M>>(&mut self, now: Instant, byte0: u8, rem: usize, inbox: &mut I) -> Result<(), LostReason> {
        check_first_byte(byte0).map_err(|_| LostReason::Protocol)?;
        let total = rem.saturating_add(5.min(1 + codec::varint_len(rem)));
        if total > self.config.max_incoming_packet {
            return Err(LostReason::PacketTooLarge);
        }
        self.rx_buf.clear();
        match byte0 >> 4 {
            codec::PUBLISH => {
                if self.state == ConnState::WaitConnack {
                    return Err(LostReason::Protocol);
                }
                self.rx = Rx::PubHead { flags: byte0 & 0x0F, rem };
                let _ = inbox;
                Ok(())
            }
            codec::CONNACK
            | codec::PUBACK
            | codec::PUBREC
            | codec::PUBREL
            | codec::PUBCOMP
            | codec::SUBACK
            | codec::UNSUBACK
            | codec::PINGRESP => {
                if rem > self.rx_buf.capacity() {
                    return Err(LostReason::Protocol);
                }
                if rem == 0 {
                    self.small_packet(now, byte0)
                } else {
                    self.rx = Rx::Body { byte0, rem };
                    Ok(())
                }
            }
            _ => Err(LostReason::Protocol),
        }
    }

    /// The variable header of a PUBLISH is in `rx_buf`: start its payload, or stay in
    /// `Rx::PubHead` (blocked) when a new QoS 2 id finds no room in the id store.
    fn publish_header<I: Inbox<Msg = M>>(&mut self, flags: u8, qos: QoS, rem: usize, inbox: &mut I) -> Result<(), LostReason> {
        let buf = self.rx_buf.as_slice();
        let tlen = match buf {
            [h, l, ..] => usize::from(u16::from_be_bytes([*h, *l])),
            _ => return Err(LostReason::Protocol),
        };
        let topic_bytes = buf.get(2..2 + tlen).ok_or(LostReason::Protocol)?;
        codec::validate_topic_name(topic_bytes).map_err(|_| LostReason::Protocol)?;
        let topic = core::str::from_utf8(topic_bytes).map_err(|_| LostReason::Protocol)?;
        let pid = if qos == QoS::AtMostOnce {
            0
        } else {
            match buf.get(2 + tlen..2 + tlen + 2) {
                Some([h, l]) => u16::from_be_bytes([*h, *l]),
                _ => return Err(LostReason::Protocol),
            }
        };
        if qos != QoS::AtMostOnce && pid == 0 {
            return Err(LostReason::Protocol);
        }
        let head = 2 + tlen + if qos == QoS::AtMostOnce { 0 } else { 2 };
        let len = rem.checked_sub(head).ok_or(LostReason::Protocol)?;
        let duplicate = qos == QoS::ExactlyOnce && self.qos2_seen(pid);
        if qos == QoS::ExactlyOnce && !duplicate {
            // The id is held from now on; a message that does not arrive whole releases
            // it again (`reset_connection`, or below when the inbox cannot allocate).
            if self.inbound_qos2.push_back(pid).is_err() {
                self.rx_blocked = true;
                return Ok(());
            }
        }
        self.rx_blocked = false;
        let msg = if duplicate {
            None
        } else {
            match inbox.begin(topic, len) {
                Some(m) => Some(m),
                None => {
                    if qos == QoS::ExactlyOnce {
                        self.qos2_release(pid);
                    }
                    return Err(LostReason::OutOfMemory);
                }
            }
        };
        self.rx = Rx::PubPayload {
            msg,
            qos,
            retain: flags & 0x01 != 0,
            dup: flags & 0x08 != 0,
            pid,
            pos: 0,
            len,
        };
        if len == 0 {
            self.finish_publish();
        }
        Ok(())
    }

    fn finish_publish(&mut self) {
        let rx = core::mem::replace(&mut self.rx, Rx::Header);
        if let Rx::PubPayload {
            msg,
            qos,
            retain,
            dup,
            pid,
            ..
        } = rx
        {
            if let Some(msg) = msg {
                if qos == QoS::ExactlyOnce {
                    self.note(Change::InboundHeld { pid });
                }
                self.push_event(Event::Message {
                    msg,
                    qos,
                    retain,
                    dup,
                    pid,
                });
            }
            match qos {
                QoS::AtMostOnce => {}
                QoS::AtLeastOnce => self.push_ack(codec::PUBACK, pid),
                QoS::ExactlyOnce => self.push_ack(codec::PUBREC, pid),
            }
        }
    }

    fn push_ack(&mut self, t: u8, id: u16) {
        // Room is checked before a packet is accepted; if it were full, dropping the ack is
        // safe (the broker re-sends the packet that asked for it).
        let _ = self.acks.push_back((t, id));
    }

    fn qos2_find(&self, pid: u16) -> Option<usize> {
        (0..self.inbound_qos2.len()).find(|&i| self.inbound_qos2.get(i) == Some(&pid))
    }

    pub(super) fn qos2_seen(&self, pid: u16) -> bool {
        self.qos2_find(pid).is_some()
    }

    pub(super) fn qos2_release(&mut self, pid: u16) {
        if let Some(i) = self.qos2_find(pid) {
            self.inbound_qos2.remove(i);
        }
    }

    pub(super) fn qos2_clear(&mut self) {
        while let Some(last) = self.inbound_qos2.len().checked_sub(1) {
            self.inbound_qos2.remove(last);
        }
    }

    /// Inbound QoS 2 ids received and not yet released by PUBREL.
    pub fn inbound_qos2_held(&self) -> usize {
        self.inbound_qos2.len()
    }

    /// The store of inbound QoS 2 ids (e.g. for the binding to trim its storage).
    pub fn inbound_ids_mut(&mut self) -> &mut P {
        &mut self.inbound_qos2
    }

    /// A new QoS 2 PUBLISH waits for room in the inbound id store: `handle_bytes` takes
    /// nothing more until a call finds room (the store could grow). The PUBRELs that would
    /// free ids come after that PUBLISH in the stream, so with a store that cannot grow
    /// the wait ends with the connection (keep-alive), and the session resumes.
    pub fn is_receive_blocked(&self) -> bool {
        self.rx_blocked
    }

    pub(super) fn find_entry(&self, pid: u16, pred: impl Fn(&Entry<H>) -> bool) -> Option<usize> {
        (0..self.queue.len()).find(|&i| self.queue.get(i).is_some_and(|e| e.pid == pid && pred(e)))
    }

    fn small_packet(&mut self, now: Instant, byte0: u8) -> Result<(), LostReason> {
        let inp = match decode_body(byte0, self.rx_buf.as_slice()) {
            Ok(Packet::ConnAck {
                session_present,
                code,
            }) => In::ConnAck {
                session_present,
                code,
            },
            Ok(Packet::PubAck(id)) => In::PubAck(id),
            Ok(Packet::PubRec(id)) => In::PubRec(id),
            Ok(Packet::PubRel(id)) => In::PubRel(id),
            Ok(Packet::PubComp(id)) => In::PubComp(id),
            Ok(Packet::SubAck { pid, codes }) => In::SubAck {
                pid,
                codes: Vec::from_slice(codes).map_err(|_| LostReason::Protocol)?,
            },
            Ok(Packet::UnsubAck(id)) => In::UnsubAck(id),
            Ok(Packet::PingResp) => In::PingResp,
            _ => return Err(LostReason::Protocol),
        };
        self.rx_buf.clear();
        if self.state == ConnState::WaitConnack {
            return match inp {
                In::ConnAck {
                    session_present,
                    code,
                } => self.connack(now, session_present, code),
                _ => Err(LostReason::Protocol),
            };
        }
        match inp {
            In::ConnAck { .. } => return Err(LostReason::Protocol),
            In::PubAck(id) => {
                if let Some(i) = self.find_entry(id, |e| {
                    e.kind
                        == Kind::Publish {
                            qos: QoS::AtLeastOnce,
                            retain: false,
                        }
                        || e.kind
                            == Kind::Publish {
                                qos: QoS::AtLeastOnce,
                                retain: true,
                            }
                }) {
                    self.note_ack(i);
                    self.complete(i, EntryState::Sent);
                }
            }
            In::PubRec(id) => {
                let found = self.find_entry(id, |e| {
                    matches!(e.kind, Kind::Publish { qos: QoS::ExactlyOnce, .. })
                        && e.state != EntryState::Queued
                });
                match found {
                    Some(i) => {
                        self.note_ack(i);
                        let mut released = None;
                        if let Some(e) = self.queue.get_mut(i) {
                            e.state = EntryState::Released;
                            e.gen = 0;
                            released = Some(e.mid);
                        }
                        if let Some(mid) = released {
                            self.note(Change::Released { mid });
                        }
                        self.resend_from = self.resend_from.min(i);
                    }
                    None => self.push_ack(codec::PUBREL, id),
                }
            }
            In::PubRel(id) => {
                if self.persistence() && self.qos2_seen(id) {
                    self.note(Change::InboundReleased { pid: id });
                }
                self.qos2_release(id);
                self.push_ack(codec::PUBCOMP, id);
            }
            In::PubComp(id) => {
                if let Some(i) = self.find_entry(id, |e| e.state == EntryState::Released) {
                    self.note_ack(i);
                    self.complete(i, EntryState::Released);
                }
            }
            In::SubAck { pid, codes } => {
                if let Some(i) = self.find_entry(pid, |e| e.kind == Kind::Subscribe && e.state == EntryState::Sent) {
                    let n = self.queue.get(i).map_or(0, |e| e.handle.filter_count());
                    if n != codes.len() {
                        return Err(LostReason::Protocol);
                    }
                    self.note_ack(i);
                    if let Some(e) = self.remove_entry(i) {
                        self.push_event(Event::Subscribed {
                            mid: e.mid,
                            granted: codes,
                        });
                    }
                }
            }
            In::UnsubAck(id) => {
                if let Some(i) = self.find_entry(id, |e| e.kind == Kind::Unsubscribe && e.state == EntryState::Sent) {
                    self.note_ack(i);
                    if let Some(e) = self.remove_entry(i) {
                        self.push_event(Event::Unsubscribed { mid: e.mid });
                    }
                }
            }
            In::PingResp => {
                self.acked_seq = self.acked_seq.max(self.ping_seq);
                self.ping_outstanding = false;
                self.ping_wanted = false;
            }
        }
        Ok(())
    }

    /// A QoS 1/2 publish got its final acknowledgement.
    fn complete(&mut self, i: usize, expect: EntryState) {
        let ok = self.queue.get(i).is_some_and(|e| e.state == expect && e.is_qos_publish());
        if !ok {
            return;
        }
        if let Some(e) = self.remove_entry(i) {
            self.note(Change::Done { mid: e.mid });
            self.push_event(Event::Published {
                mid: e.mid,
                rc: rc::OK,
            });
        }
    }
}
