//! Fuzz harness shared by the cargo-fuzz targets (`fuzz_targets/*.rs`) and by the
//! `tests/proto_fuzz_seeds.rs` regression test, which replays every file of `fuzz/seeds/**`.
//! Only the crate's public API and std are used. Panics here are findings, except the
//! explicit invariant assertions, which are findings too.
#![allow(dead_code)]

use std::collections::VecDeque;

use dl7450_mqtt::proto::codec::{self, StreamDecoder};
use dl7450_mqtt::proto::engine::Entry;
use dl7450_mqtt::proto::*;

struct Split(u64);
impl Split {
    fn next(&mut self, max: usize) -> usize {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        1 + (x % max.max(1) as u64) as usize
    }
}

fn seed(data: &[u8]) -> (u64, &[u8]) {
    match data.split_first() {
        Some((b, rest)) => (u64::from(*b).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1, rest),
        None => (1, data),
    }
}

#[derive(Default)]
struct VecSink(Vec<u8>);
impl Sink for VecSink {
    fn put(&mut self, b: &[u8]) -> bool {
        self.0.extend_from_slice(b);
        true
    }
}

/// Decoder: `decode` over the buffer, a `StreamDecoder` over arbitrary splits (same
/// results), and re-encoding of every decoded packet.
pub fn decoder(data: &[u8]) {
    let (s, data) = seed(data);
    let mut whole: Vec<Vec<u8>> = vec![];
    let mut rest = data;
    let mut whole_err = None;
    loop {
        match codec::decode(rest, 4096) {
            Ok(Some((p, n))) => {
                assert!(n > 0 && n <= rest.len());
                let mut sink = VecSink::default();
                p.encode(&mut sink).expect("a decoded packet re-encodes");
                let (p2, _) = codec::decode(&sink.0, usize::MAX).expect("re-decodes").expect("complete");
                assert_eq!(p, p2);
                whole.push(sink.0);
                rest = &rest[n..];
            }
            Ok(None) => break,
            Err(e) => {
                whole_err = Some(e);
                break;
            }
        }
    }
    let mut split = Split(s);
    let mut d: Box<StreamDecoder<4096>> = Box::new(StreamDecoder::new(4096));
    let mut streamed: Vec<Vec<u8>> = vec![];
    let mut stream_err = None;
    let mut pos = 0;
    'outer: while pos < data.len() {
        let end = (pos + split.next(64)).min(data.len());
        let mut chunk = &data[pos..end];
        pos = end;
        while !chunk.is_empty() {
            let (n, res) = d.feed(chunk);
            chunk = &chunk[n..];
            match res {
                Ok(Some(p)) => {
                    let mut sink = VecSink::default();
                    p.encode(&mut sink).expect("re-encode");
                    streamed.push(sink.0);
                }
                Ok(None) => {}
                Err(e) => {
                    stream_err = Some(e);
                    break 'outer;
                }
            }
        }
    }
    assert_eq!(whole, streamed, "split points change the packets");
    assert_eq!(whole_err, stream_err, "split points change the error");
}

#[derive(Clone, Default)]
struct Req {
    topic: Vec<u8>,
    payload: Vec<u8>,
    filters: Vec<(Vec<u8>, u8)>,
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

struct Q<T>(VecDeque<T>);
impl<T> Queue<T> for Q<T> {
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
        if self.0.len() >= 64 {
            return Err(v);
        }
        self.0.push_back(v);
        Ok(())
    }
    fn remove(&mut self, i: usize) -> Option<T> {
        self.0.remove(i)
    }
}

struct In {
    begun: usize,
}
impl Inbox for In {
    type Msg = Vec<u8>;
    fn begin(&mut self, topic: &str, len: usize) -> Option<Vec<u8>> {
        assert!(codec::validate_topic_name(topic.as_bytes()).is_ok());
        self.begun += 1;
        if len > 100_000 {
            return None;
        }
        Some(vec![0; len])
    }
    fn payload_mut<'a>(&mut self, m: &'a mut Vec<u8>) -> &'a mut [u8] {
        m
    }
}

/// Engine: connected (CONNACK), with a subscribe and QoS 0/1/2 publishes pending, fed
/// `data` split arbitrarily; after a protocol error it reconnects and goes on with the
/// rest. Checks that nothing panics and that the basic invariants hold.
pub fn engine(data: &[u8]) {
    let (s, data) = seed(data);
    let mut split = Split(s);
    let cfg = Config { max_inflight: 4, max_buffered: 8, max_incoming_packet: 8192, ..Config::default() };
    let mut e: Engine<Req, Q<Entry<Req>>, Vec<u8>> = Engine::new(cfg, Q(VecDeque::new()));
    let mut inbox = In { begun: 0 };
    let params = ConnectParams {
        client_id: "fuzz",
        clean_session: false,
        keep_alive_s: 5,
        username: Some("u"),
        password: Some(b"p"),
        will: None,
    };
    let mut now = 0u64;
    e.connect(now).expect("connect");
    let sub = Req { filters: vec![(b"a/#".to_vec(), 2), (b"+/b".to_vec(), 1)], ..Req::default() };
    e.subscribe(now, sub).expect("subscribe");
    for q in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce, QoS::ExactlyOnce] {
        let r = Req { topic: b"t/x".to_vec(), payload: b"hello".to_vec(), ..Req::default() };
        e.publish(now, r, q, false).expect("publish");
    }
    let mut up = false;
    let mut pos = 0;
    let mut rounds = 0;
    while pos < data.len() && rounds < 100_000 {
        rounds += 1;
        // transport management
        loop {
            match e.poll_action(now) {
                Action::OpenTransport => {
                    let mut sink = VecSink::default();
                    e.handle_transport_up(now, &params, &mut sink);
                    up = true;
                    let used = e.handle_bytes(now, &[0x20, 2, 1, 0], &mut inbox);
                    assert_eq!(used, 4);
                }
                Action::CloseTransport => up = false,
                Action::Idle => break,
            }
        }
        if !up {
            // wait for the retry
            if let Some(t) = e.poll_timeout() {
                now = now.max(t);
            }
            e.handle_timeout(now);
            continue;
        }
        let end = (pos + split.next(32)).min(data.len());
        let used = e.handle_bytes(now, &data[pos..end], &mut inbox);
        assert!(used <= end - pos);
        pos += used;
        let mut n_events = 0;
        while let Some(ev) = e.poll_event() {
            n_events += 1;
            match ev {
                Event::Connect { rc, .. } => assert!(rc == -1 || rc == 0 || (1..=5).contains(&rc)),
                Event::Published { mid, .. } | Event::Unsubscribed { mid } => assert!(mid > 0),
                Event::Subscribed { mid, granted } => assert!(mid > 0 && granted.len() == 2),
                Event::Message { .. } => {}
            }
        }
        let mut sink = VecSink::default();
        let mut packets = 0;
        while e.poll_transmit(now, &mut sink) {
            packets += 1;
            assert!(packets < 10_000);
        }
        // everything the engine writes is a valid packet
        let mut rest = &sink.0[..];
        while !rest.is_empty() {
            let (_, n) = codec::decode(rest, usize::MAX).expect("engine output decodes").expect("whole packets");
            rest = &rest[n..];
        }
        if used == 0 && n_events == 0 && packets == 0 && end > pos {
            // nothing can progress: only a dropped connection, or a new QoS 2 PUBLISH
            // waiting for room in a full inbound id store, explains that
            assert!(!e.is_connected() || pos >= data.len() || e.is_receive_blocked(), "engine stalled");
            if e.is_receive_blocked() {
                // what the binding sees then: no PUBREL can pass the held PUBLISH, and the
                // keep-alive ends the connection
                e.handle_transport_down(now, LostReason::KeepAlive);
            }
        }
        now += split.next(3000) as u64;
        e.handle_timeout(now);
        assert!(e.is_active());
    }
}

/// One run of the WebSocket frame decoder over `data` fed in pieces of the
/// sizes `split` gives; with `give_back`, part of every Data chunk is handed
/// back with `unconsume` (as the binding does when the engine is full) and
/// read again. Returns the payload bytes, ping payloads and the final result.
fn ws_run(data: &[u8], split: &mut Split, give_back: bool) -> (Vec<u8>, Vec<Vec<u8>>, Result<(), ws::WsError>) {
    let mut dec = ws::FrameDecoder::new(1 << 16);
    let (mut payload, mut pings) = (Vec::new(), Vec::new());
    let mut pos = 0usize;
    let mut end = 0usize;
    let mut guard = 0usize;
    while pos < data.len() {
        guard += 1;
        assert!(guard < 10 * data.len() + 100, "ws decoder makes no progress");
        if end <= pos {
            end = (pos + split.next(64)).min(data.len());
        }
        let (n, chunk) = match dec.feed(&data[pos..end]) {
            Ok(r) => r,
            Err(e) => return (payload, pings, Err(e)),
        };
        assert!(n <= end - pos, "consumed more than given");
        match chunk {
            Some(ws::WsChunk::Data(d)) => {
                let keep = if give_back && d.len() > 1 { d.len() / 2 } else { d.len() };
                payload.extend_from_slice(&d[..keep]);
                let back = d.len() - keep;
                pos += n;
                if back > 0 {
                    assert!(dec.unconsume(back), "unconsume of a Data chunk's tail");
                    pos -= back;
                }
            }
            Some(ws::WsChunk::Ping(p)) => {
                pings.push(p.to_vec());
                pos += n;
            }
            Some(_) => pos += n,
            None => {
                assert_eq!(n, end - pos, "no chunk means all of the input was consumed");
                pos += n;
            }
        }
    }
    (payload, pings, Ok(()))
}

/// WebSocket: the upgrade-response parser and the frame decoder over arbitrary
/// bytes. Any split of the input, and giving back part of each Data chunk,
/// yields the same payload bytes, pings and result.
pub fn ws(data: &[u8]) {
    let (s, rest) = seed(data);
    // upgrade response parser: whole vs split
    let key = [7u8; 16];
    let mut whole = ws::UpgradeParser::new(&key);
    let r_whole = whole.feed(rest);
    let mut parts = ws::UpgradeParser::new(&key);
    let mut split = Split(s);
    let mut at = 0usize;
    let mut r_parts: Result<Option<usize>, ws::WsError> = Ok(None);
    while at < rest.len() {
        let end = (at + split.next(32)).min(rest.len());
        r_parts = parts.feed(&rest[at..end]);
        match r_parts {
            Ok(Some(n)) => {
                r_parts = Ok(Some(at + n));
                break;
            }
            Ok(None) => at = end,
            Err(_) => break,
        }
    }
    match (r_whole, r_parts) {
        (Ok(Some(a)), Ok(Some(b))) => assert_eq!(a, b, "upgrade: same end of header block"),
        (Err(a), Err(b)) => assert_eq!(a, b, "upgrade: same error"),
        (Ok(None), Ok(None)) => {}
        (a, b) => panic!("upgrade parser depends on the split: {a:?} vs {b:?}"),
    }
    // frames: three ways of feeding the same bytes
    let a = ws_run(rest, &mut Split(1), false);
    let b = ws_run(rest, &mut Split(s), false);
    let c = ws_run(rest, &mut Split(s ^ 0x55), true);
    assert_eq!(a, b, "frame decoding depends on the split");
    assert_eq!(a, c, "frame decoding depends on unconsume");
}
