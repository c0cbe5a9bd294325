//! Shared helpers of the proto_* tests: PRNG, sink, request handle, queue, inbox, and an
//! in-test MQTT broker model built on the codec.
#![allow(dead_code)]

use std::collections::{HashSet, VecDeque};

use dl7450_mqtt::proto::codec::{self, Packet, Publish, StreamDecoder};
use dl7450_mqtt::proto::engine::Entry;
use dl7450_mqtt::proto::*;

/// xorshift64* PRNG.
#[derive(Clone)]
pub struct Rng(pub u64);
impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[derive(Default, Debug)]
pub struct VecSink(pub Vec<u8>);
impl Sink for VecSink {
    fn put(&mut self, bytes: &[u8]) -> bool {
        self.0.extend_from_slice(bytes);
        true
    }
}

/// A sink that refuses everything.
pub struct FullSink;
impl Sink for FullSink {
    fn put(&mut self, _: &[u8]) -> bool {
        false
    }
    fn reserve(&mut self, _: usize) -> bool {
        false
    }
}

#[derive(Clone, Debug, Default)]
pub struct Req {
    pub topic: Vec<u8>,
    pub payload: Vec<u8>,
    pub filters: Vec<(Vec<u8>, u8)>,
}
impl Req {
    pub fn publish(topic: &str, payload: &[u8]) -> Req {
        Req {
            topic: topic.as_bytes().to_vec(),
            payload: payload.to_vec(),
            filters: vec![],
        }
    }
    pub fn filters(f: &[(&str, u8)]) -> Req {
        Req {
            topic: vec![],
            payload: vec![],
            filters: f.iter().map(|(s, q)| (s.as_bytes().to_vec(), *q)).collect(),
        }
    }
}
impl Request for Req {
    fn topic(&self) -> &[u8] {
        &self.topic
    }
    fn payload(&self) -> &[u8] {
        &self.payload
    }
    fn filter_count(&self) -> usize {
        self.filters.len()
    }
    fn filter(&self, i: usize) -> Option<(&[u8], u8)> {
        self.filters.get(i).map(|(f, q)| (f.as_slice(), *q))
    }
}

pub struct VecQueue<T>(pub VecDeque<T>);
impl<T> Default for VecQueue<T> {
    fn default() -> Self {
        VecQueue(VecDeque::new())
    }
}
impl<T> Queue<T> for VecQueue<T> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn get(&self, i: usize) -> Option<&T> {
        self.0.get(i)
    }
    fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.0.get_mut(i)
    }
    fn push_back(&mut self, v: T) -> Result<(), T> {
        self.0.push_back(v);
        Ok(())
    }
    fn remove(&mut self, i: usize) -> Option<T> {
        self.0.remove(i)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub topic: String,
    pub payload: Vec<u8>,
}

#[derive(Default)]
pub struct TestInbox {
    pub fail: bool,
    pub begun: usize,
}
impl Inbox for TestInbox {
    type Msg = Msg;
    fn begin(&mut self, topic: &str, payload_len: usize) -> Option<Msg> {
        if self.fail {
            return None;
        }
        self.begun += 1;
        Some(Msg {
            topic: topic.to_string(),
            payload: vec![0; payload_len],
        })
    }
    fn payload_mut<'a>(&mut self, msg: &'a mut Msg) -> &'a mut [u8] {
        &mut msg.payload
    }
}

pub type TestEngine = Engine<Req, VecQueue<Entry<Req>>, Msg>;

pub fn engine(config: Config) -> TestEngine {
    Engine::new(config, VecQueue::default())
}

pub fn params(keep_alive_s: u16) -> ConnectParams<'static> {
    ConnectParams {
        client_id: "dl7450-test",
        clean_session: false,
        keep_alive_s,
        username: None,
        password: None,
        will: None,
    }
}

/// Owned copy of a packet, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pkt {
    Connect { client_id: String, clean: bool, keep_alive: u16 },
    ConnAck { sp: bool, code: u8 },
    Publish { dup: bool, qos: QoS, retain: bool, topic: String, pid: u16, payload: Vec<u8> },
    PubAck(u16),
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    Subscribe { pid: u16, filters: Vec<(String, u8)> },
    SubAck { pid: u16, codes: Vec<u8> },
    Unsubscribe { pid: u16, filters: Vec<String> },
    UnsubAck(u16),
    PingReq,
    PingResp,
    Disconnect,
}

pub fn own(p: &Packet<'_>) -> Pkt {
    match p {
        Packet::Connect(c) => Pkt::Connect {
            client_id: c.client_id.to_string(),
            clean: c.clean_session,
            keep_alive: c.keep_alive_s,
        },
        Packet::ConnAck { session_present, code } => Pkt::ConnAck { sp: *session_present, code: *code },
        Packet::Publish(p) => Pkt::Publish {
            dup: p.dup,
            qos: p.qos,
            retain: p.retain,
            topic: p.topic.to_string(),
            pid: p.pid,
            payload: p.payload.to_vec(),
        },
        Packet::PubAck(i) => Pkt::PubAck(*i),
        Packet::PubRec(i) => Pkt::PubRec(*i),
        Packet::PubRel(i) => Pkt::PubRel(*i),
        Packet::PubComp(i) => Pkt::PubComp(*i),
        Packet::Subscribe { pid, filters } => Pkt::Subscribe {
            pid: *pid,
            filters: filters.iter().map(|(f, q)| (f.to_string(), q)).collect(),
        },
        Packet::SubAck { pid, codes } => Pkt::SubAck { pid: *pid, codes: codes.to_vec() },
        Packet::Unsubscribe { pid, filters } => Pkt::Unsubscribe {
            pid: *pid,
            filters: filters.iter().map(|(f, _)| f.to_string()).collect(),
        },
        Packet::UnsubAck(i) => Pkt::UnsubAck(*i),
        Packet::PingReq => Pkt::PingReq,
        Packet::PingResp => Pkt::PingResp,
        Packet::Disconnect => Pkt::Disconnect,
    }
}

/// Decodes a whole byte stream into owned packets (panics on error: test code).
pub fn decode_all(mut b: &[u8]) -> Vec<Pkt> {
    let mut out = vec![];
    while !b.is_empty() {
        let (p, n) = codec::decode(b, usize::MAX).expect("decode").expect("complete");
        out.push(own(&p));
        b = &b[n..];
    }
    out
}

pub fn enc(p: &Packet<'_>) -> Vec<u8> {
    let mut s = VecSink::default();
    p.encode(&mut s).expect("encode");
    s.0
}

/// Broker → client message state (broker side of the client's inbound flow).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutState {
    Pending,
    Sent,
    RelSent,
}

#[derive(Clone, Debug)]
pub struct OutMsg {
    pub pid: u16,
    pub qos: QoS,
    pub topic: String,
    pub payload: Vec<u8>,
    pub state: OutState,
}

/// A broker with a persistent session for one client, speaking through the codec.
pub struct Broker {
    dec: Box<StreamDecoder<70_000>>,
    pub connected: bool,
    pub got_connect: bool,
    pub has_session: bool,
    /// Bytes for the client.
    pub out: Vec<u8>,
    /// Every packet received from the client, across connections.
    pub log: Vec<Pkt>,
    /// Application messages accepted from the client, in order (QoS 1 may repeat).
    pub delivered: Vec<(String, Vec<u8>, QoS)>,
    /// QoS 2 ids received and not yet released.
    pub qos2_ids: HashSet<u16>,
    /// Broker → client queue.
    pub outbound: VecDeque<OutMsg>,
    next_pid: u16,
    pub refuse: Option<u8>,
    /// Do not answer PINGREQ.
    pub mute: bool,
    /// Ignore everything (a SIGSTOPped broker: TCP up, nothing answered).
    pub silent: bool,
    /// Do not acknowledge client publishes.
    pub hold_acks: bool,
    pub graceful_disconnects: usize,
    /// Max QoS 1/2 publishes seen outstanding at once (unacked) in one connection.
    pub max_outstanding: usize,
    outstanding: HashSet<u16>,
    /// Close the connection on receiving a PUBLISH with this topic or a SUBSCRIBE with this
    /// filter (a broker that refuses a packet by closing: size limit, authorisation).
    pub close_on: Option<String>,
    /// Close the connection on receiving a PUBREL.
    pub close_on_pubrel: bool,
    /// Connections closed by `close_on` / `close_on_pubrel`.
    pub refusals: usize,
}

impl Default for Broker {
    fn default() -> Self {
        Broker {
            dec: Box::new(StreamDecoder::new(70_000)),
            connected: false,
            got_connect: false,
            has_session: false,
            out: vec![],
            log: vec![],
            delivered: vec![],
            qos2_ids: HashSet::new(),
            outbound: VecDeque::new(),
            next_pid: 1,
            refuse: None,
            mute: false,
            silent: false,
            hold_acks: false,
            graceful_disconnects: 0,
            max_outstanding: 0,
            outstanding: HashSet::new(),
            close_on: None,
            close_on_pubrel: false,
            refusals: 0,
        }
    }
}

impl Broker {
    pub fn accept(&mut self) {
        self.connected = true;
        self.got_connect = false;
        self.dec.reset();
        self.out.clear();
        self.outstanding.clear();
    }
    pub fn close(&mut self) {
        self.connected = false;
        self.got_connect = false;
        self.dec.reset();
        self.out.clear();
    }
    /// Queue a message for the client.
    pub fn queue_to_client(&mut self, topic: &str, payload: &[u8], qos: QoS) {
        let pid = if qos == QoS::AtMostOnce {
            0
        } else {
            let p = self.next_pid;
            self.next_pid = if p == 65535 { 1 } else { p + 1 };
            p
        };
        self.outbound.push_back(OutMsg {
            pid,
            qos,
            topic: topic.to_string(),
            payload: payload.to_vec(),
            state: OutState::Pending,
        });
        self.flush_outbound(false);
    }
    fn flush_outbound(&mut self, resend: bool) {
        if !(self.connected && self.got_connect) {
            return;
        }
        let mut out = std::mem::take(&mut self.out);
        let mut sink = VecSink(std::mem::take(&mut out));
        self.outbound.retain_mut(|m| {
            match m.state {
                OutState::Pending => {
                    Packet::Publish(Publish {
                        dup: false,
                        qos: m.qos,
                        retain: false,
                        topic: &m.topic,
                        pid: m.pid,
                        payload: &m.payload,
                    })
                    .encode(&mut sink)
                    .unwrap();
                    if m.qos == QoS::AtMostOnce {
                        return false;
                    }
                    m.state = OutState::Sent;
                }
                OutState::Sent if resend => {
                    Packet::Publish(Publish {
                        dup: true,
                        qos: m.qos,
                        retain: false,
                        topic: &m.topic,
                        pid: m.pid,
                        payload: &m.payload,
                    })
                    .encode(&mut sink)
                    .unwrap();
                }
                OutState::RelSent if resend => {
                    Packet::PubRel(m.pid).encode(&mut sink).unwrap();
                }
                _ => {}
            }
            true
        });
        self.out = sink.0;
    }

    fn reply(&mut self, p: Packet<'_>) {
        let mut sink = VecSink(std::mem::take(&mut self.out));
        p.encode(&mut sink).unwrap();
        self.out = sink.0;
    }

    /// Feeds bytes from the client. Panics on a protocol error (test failure).
    pub fn receive(&mut self, mut data: &[u8]) {
        while !data.is_empty() && self.connected {
            let (n, res) = self.dec.feed(data);
            data = &data[n..];
            let pkt = match res {
                Ok(Some(p)) => own(&p),
                Ok(None) => continue,
                Err(e) => panic!("broker: bad packet from client: {e:?}"),
            };
            self.handle(pkt);
        }
    }

    fn handle(&mut self, pkt: Pkt) {
        if self.silent {
            return;
        }
        self.log.push(pkt.clone());
        if !self.got_connect {
            match pkt {
                Pkt::Connect { clean, .. } => {
                    self.got_connect = true;
                    if let Some(code) = self.refuse {
                        self.reply(Packet::ConnAck { session_present: false, code });
                        return;
                    }
                    if clean {
                        self.has_session = false;
                        self.qos2_ids.clear();
                        self.outbound.clear();
                    }
                    let sp = self.has_session;
                    self.has_session = true;
                    self.reply(Packet::ConnAck { session_present: sp, code: 0 });
                    self.flush_outbound(true);
                }
                other => panic!("broker: {other:?} before CONNECT"),
            }
            return;
        }
        if self.refuses(&pkt) {
            self.refusals += 1;
            self.close();
            return;
        }
        match pkt {
            Pkt::Connect { .. } => panic!("broker: second CONNECT"),
            Pkt::Publish { qos, topic, pid, payload, .. } => match qos {
                QoS::AtMostOnce => self.delivered.push((topic, payload, qos)),
                QoS::AtLeastOnce => {
                    self.delivered.push((topic, payload, qos));
                    self.track(pid, true);
                    if !self.hold_acks {
                        self.reply(Packet::PubAck(pid));
                        self.track(pid, false);
                    }
                }
                QoS::ExactlyOnce => {
                    if self.qos2_ids.insert(pid) {
                        self.delivered.push((topic, payload, qos));
                    }
                    self.track(pid, true);
                    if !self.hold_acks {
                        self.reply(Packet::PubRec(pid));
                    }
                }
            },
            Pkt::PubRel(pid) => {
                self.qos2_ids.remove(&pid);
                self.track(pid, false);
                self.reply(Packet::PubComp(pid));
            }
            Pkt::Subscribe { pid, filters } => {
                let codes: Vec<u8> =
                    filters.iter().map(|(f, q)| if f.starts_with("deny") { 0x80 } else { *q }).collect();
                self.reply(Packet::SubAck { pid, codes: &codes });
            }
            Pkt::Unsubscribe { pid, .. } => self.reply(Packet::UnsubAck(pid)),
            Pkt::PingReq => {
                if !self.mute {
                    self.reply(Packet::PingResp)
                }
            }
            Pkt::Disconnect => {
                self.graceful_disconnects += 1;
                self.close();
            }
            Pkt::PubAck(pid) => {
                if let Some(i) = self.outbound.iter().position(|m| m.pid == pid && m.qos == QoS::AtLeastOnce) {
                    self.outbound.remove(i);
                }
            }
            Pkt::PubRec(pid) => {
                if let Some(m) = self.outbound.iter_mut().find(|m| m.pid == pid && m.qos == QoS::ExactlyOnce) {
                    m.state = OutState::RelSent;
                }
                self.reply(Packet::PubRel(pid));
            }
            Pkt::PubComp(pid) => {
                if let Some(i) = self.outbound.iter().position(|m| m.pid == pid && m.state == OutState::RelSent) {
                    self.outbound.remove(i);
                }
            }
            other => panic!("broker: unexpected {other:?}"),
        }
    }

    fn refuses(&self, pkt: &Pkt) -> bool {
        let on = self.close_on.as_deref();
        match pkt {
            Pkt::Publish { topic, .. } => on == Some(topic.as_str()),
            Pkt::Subscribe { filters, .. } => filters.iter().any(|(f, _)| on == Some(f.as_str())),
            Pkt::PubRel(_) => self.close_on_pubrel,
            _ => false,
        }
    }

    fn track(&mut self, pid: u16, add: bool) {
        if add {
            self.outstanding.insert(pid);
            self.max_outstanding = self.max_outstanding.max(self.outstanding.len());
        } else {
            self.outstanding.remove(&pid);
        }
    }

    /// Acknowledge everything held (hold_acks mode).
    pub fn release_acks(&mut self) {
        let ids: Vec<u16> = self.outstanding.iter().copied().collect();
        let mut ids = ids;
        ids.sort();
        for pid in ids {
            if self.qos2_ids.contains(&pid) {
                self.reply(Packet::PubRec(pid));
            } else {
                self.reply(Packet::PubAck(pid));
                self.outstanding.remove(&pid);
            }
        }
    }
}

/// Event log entry without the message type's payload ownership issues.
pub type Ev = Event<Msg>;

/// A simulated network between one engine and the broker model.
pub struct Sim {
    pub now: u64,
    pub e: TestEngine,
    pub b: Broker,
    pub inbox: TestInbox,
    pub rng: Rng,
    pub params: ConnectParams<'static>,
    pub broker_reachable: bool,
    pub transport_up: bool,
    pub to_client: Vec<u8>,
    pub events: Vec<Ev>,
    pub event_times: Vec<u64>,
    pub opens: Vec<u64>,
    pub closes: usize,
    /// Split deliveries randomly.
    pub random_splits: bool,
    /// Chance (num, den) per delivery that the link drops after a random prefix.
    pub drop_chance: (u64, u64),
    /// Drop the link during the next delivery (either direction), once.
    pub cut_once: bool,
    pub drops: usize,
}

impl Sim {
    pub fn new(config: Config, seed: u64, keep_alive_s: u16) -> Sim {
        Sim {
            now: 0,
            e: engine(config),
            b: Broker::default(),
            inbox: TestInbox::default(),
            rng: Rng::new(seed),
            params: params(keep_alive_s),
            broker_reachable: true,
            transport_up: false,
            to_client: vec![],
            events: vec![],
            event_times: vec![],
            opens: vec![],
            closes: 0,
            random_splits: true,
            drop_chance: (0, 1),
            cut_once: false,
            drops: 0,
        }
    }

    /// Runs everything that can happen at the current time (no time advance).
    pub fn settle(&mut self) {
        for _ in 0..100_000 {
            let mut progress = false;
            match self.e.poll_action(self.now) {
                Action::OpenTransport => {
                    progress = true;
                    self.opens.push(self.now);
                    if self.broker_reachable {
                        self.transport_up = true;
                        self.b.accept();
                        let mut s = VecSink::default();
                        self.e.handle_transport_up(self.now, &self.params, &mut s);
                        self.b.receive(&s.0);
                    } else {
                        self.e.handle_transport_down(self.now, LostReason::Io);
                    }
                }
                Action::CloseTransport => {
                    progress = true;
                    self.closes += 1;
                    self.transport_up = false;
                    self.b.close();
                    self.to_client.clear();
                }
                Action::Idle => {}
            }
            if self.transport_up {
                let mut s = VecSink::default();
                while self.e.poll_transmit(self.now, &mut s) {
                    progress = true;
                }
                if !s.0.is_empty() {
                    progress = true;
                    if self.b.connected {
                        if self.take_cut() {
                            let n = self.rng.below(s.0.len() as u64) as usize;
                            self.b.receive(&s.0[..n]);
                            self.drops += 1;
                            self.drop_link();
                            continue;
                        }
                        self.b.receive(&s.0);
                    }
                }
                if self.b.connected {
                    let out = std::mem::take(&mut self.b.out);
                    self.to_client.extend_from_slice(&out);
                } else if self.transport_up && !self.b.connected {
                    // broker closed (after DISCONNECT): the client sees the close
                    self.transport_up = false;
                    self.to_client.clear();
                    self.e.handle_transport_down(self.now, LostReason::Closed);
                    progress = true;
                }
                if !self.to_client.is_empty() && self.transport_up {
                    let n = if self.random_splits {
                        1 + self.rng.below(self.to_client.len() as u64) as usize
                    } else {
                        self.to_client.len()
                    };
                    if self.take_cut() {
                        let chunk: Vec<u8> = self.to_client[..n - 1].to_vec();
                        self.e.handle_bytes(self.now, &chunk, &mut self.inbox);
                        self.drops += 1;
                        self.drop_link();
                        continue;
                    }
                    let chunk: Vec<u8> = self.to_client[..n].to_vec();
                    let used = self.e.handle_bytes(self.now, &chunk, &mut self.inbox);
                    if used > 0 {
                        progress = true;
                    }
                    self.to_client.drain(..used.min(self.to_client.len()));
                }
            }
            while let Some(ev) = self.e.poll_event() {
                progress = true;
                self.events.push(ev);
                self.event_times.push(self.now);
            }
            if !progress {
                return;
            }
        }
        panic!("sim does not settle");
    }

    /// Whether the link drops during the current delivery.
    fn take_cut(&mut self) -> bool {
        if self.cut_once {
            self.cut_once = false;
            return true;
        }
        self.rng.chance(self.drop_chance.0, self.drop_chance.1)
    }

    /// Advances time to the next engine deadline (at most `max_step` ms) and handles it.
    pub fn advance(&mut self, max_step: u64) {
        let target = match self.e.poll_timeout() {
            Some(t) if t <= self.now + max_step => t.max(self.now),
            _ => self.now + max_step,
        };
        self.now = target;
        self.e.handle_timeout(self.now);
        self.settle();
    }

    /// The connection drops (both directions lose what is in transit).
    pub fn drop_link(&mut self) {
        if self.transport_up {
            self.transport_up = false;
            self.b.close();
            self.to_client.clear();
            self.e.handle_transport_down(self.now, LostReason::Closed);
        }
    }

    pub fn take_events(&mut self) -> Vec<Ev> {
        self.event_times.clear();
        std::mem::take(&mut self.events)
    }
}

