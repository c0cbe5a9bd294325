//! Persistent session store: record format, CRC, replay up to the last complete record
//! (torn and corrupt logs), and the engine's change queue and restore API.

mod proto_support;
use proto_support::*;

use dl7450_mqtt::proto::codec::{Packet, Publish as PubPkt};
use dl7450_mqtt::proto::engine::EntryState;
#[cfg(feature = "persistence")]
use dl7450_mqtt::proto::engine::CHANGE_CAPACITY;
use dl7450_mqtt::proto::store::{
    self, Change, DecodeError, InDoubt, Publish, Record, Replayed, Restore, StoreError, IN_DOUBT_MAX,
};
use dl7450_mqtt::proto::*;

/// Owned copy of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rec {
    Pub { mid: u32, pid: u16, qos: QoS, retain: bool, state: EntryState, topic: Vec<u8>, payload: Vec<u8> },
    State(u32, EntryState),
    Done(u32),
    Delivering(u16),
    Held(u16),
    Released(u16),
    Cleared,
}

#[derive(Default)]
struct Collect(Vec<Rec>);

impl Restore for Collect {
    fn apply(&mut self, r: &Record<'_>) -> Result<(), i32> {
        self.0.push(match *r {
            Record::Publish(p) => Rec::Pub {
                mid: p.mid,
                pid: p.pid,
                qos: p.qos,
                retain: p.retain,
                state: p.state,
                topic: p.topic.to_vec(),
                payload: p.payload.to_vec(),
            },
            Record::State { mid, state } => Rec::State(mid, state),
            Record::Done { mid } => Rec::Done(mid),
            Record::InboundDelivering { pid } => Rec::Delivering(pid),
            Record::InboundHeld { pid } => Rec::Held(pid),
            Record::InboundReleased { pid } => Rec::Released(pid),
            Record::InboundCleared => Rec::Cleared,
            Record::Header { .. } => panic!("header replayed"),
        });
        Ok(())
    }
}

fn encode(records: &[Record<'_>]) -> (Vec<u8>, Vec<usize>) {
    let mut s = VecSink::default();
    let mut ends = vec![];
    for r in records {
        assert!(store::encode(&mut s, r));
        assert_eq!(s.0.len() - ends.last().copied().unwrap_or(0), store::encoded_len(r));
        ends.push(s.0.len());
    }
    (s.0, ends)
}

fn sample<'a>() -> Vec<Record<'a>> {
    vec![
        Record::Header { next_mid: 7, client_id: b"dev-1" },
        Record::Publish(Publish {
            mid: 7,
            pid: 1,
            qos: QoS::AtLeastOnce,
            retain: false,
            state: EntryState::Queued,
            topic: b"a/b",
            payload: b"hello",
        }),
        Record::Publish(Publish {
            mid: 8,
            pid: 2,
            qos: QoS::ExactlyOnce,
            retain: true,
            state: EntryState::Queued,
            topic: b"a/c",
            payload: b"",
        }),
        Record::State { mid: 7, state: EntryState::Sent },
        Record::State { mid: 8, state: EntryState::Released },
        Record::InboundDelivering { pid: 40000 },
        Record::InboundHeld { pid: 40000 },
        Record::Done { mid: 7 },
        Record::InboundReleased { pid: 40000 },
        Record::InboundHeld { pid: 9 },
        Record::InboundCleared,
    ]
}

fn replay(log: &[u8], id: &[u8]) -> Result<(Replayed, Vec<Rec>), StoreError> {
    let mut c = Collect::default();
    let r = store::replay(log, id, &mut c)?;
    Ok((r, c.0))
}

#[test]
fn crc32_is_the_ieee_one() {
    assert_eq!(store::crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(store::crc32(b""), 0);
}

#[test]
fn every_record_round_trips() {
    let recs = sample();
    let (log, _) = encode(&recs);
    let mut pos = 0;
    for r in &recs {
        let (d, n) = store::decode(&log[pos..]).unwrap();
        assert_eq!(&d, r);
        pos += n;
    }
    assert_eq!(store::decode(&log[pos..]), Err(DecodeError::End));
}

#[test]
fn replay_applies_every_record_in_order() {
    let (log, _) = encode(&sample());
    let (r, recs) = replay(&log, b"dev-1").unwrap();
    assert_eq!(r, Replayed { valid_len: log.len(), records: 10, next_mid: 7, dropped: false });
    assert_eq!(recs.len(), 10);
    assert!(matches!(recs[0], Rec::Pub { mid: 7, pid: 1, qos: QoS::AtLeastOnce, retain: false, .. }));
    assert!(matches!(recs[1], Rec::Pub { mid: 8, pid: 2, qos: QoS::ExactlyOnce, retain: true, .. }));
    assert_eq!(recs[2..], [
        Rec::State(7, EntryState::Sent),
        Rec::State(8, EntryState::Released),
        Rec::Delivering(40000),
        Rec::Held(40000),
        Rec::Done(7),
        Rec::Released(40000),
        Rec::Held(9),
        Rec::Cleared,
    ]);
}

#[test]
fn a_torn_log_is_replayed_up_to_its_last_complete_record_at_every_cut() {
    let recs = sample();
    let (log, ends) = encode(&recs);
    for cut in 0..log.len() {
        let (r, got) = replay(&log[..cut], b"dev-1").unwrap();
        // complete records before the cut, never part of the torn one
        let complete = ends.iter().filter(|&&e| e <= cut).count();
        assert_eq!(got.len(), complete.saturating_sub(1), "cut {cut}");
        assert_eq!(r.dropped, !ends.contains(&cut) && cut > 0, "cut {cut}");
        if complete > 0 {
            assert_eq!(r.valid_len, ends[complete - 1], "cut {cut}");
        }
    }
}

#[test]
fn a_corrupt_record_stops_the_replay_at_every_byte() {
    let recs = sample();
    let (log, ends) = encode(&recs);
    for i in ends[0]..log.len() {
        let mut bad = log.clone();
        bad[i] ^= 0x20;
        let (r, got) = replay(&bad, b"dev-1").unwrap();
        let rec = ends.iter().position(|&e| e > i).unwrap();
        assert_eq!(got.len(), rec - 1, "byte {i}");
        assert_eq!(r.valid_len, ends[rec - 1]);
        assert!(r.dropped);
    }
}

#[test]
fn random_garbage_after_a_log_is_dropped_without_panic() {
    let (log, _) = encode(&sample());
    let mut rng = Rng::new(16);
    for _ in 0..2000 {
        let mut l = log.clone();
        let extra = rng.below(64) as usize;
        l.extend(rng.bytes(extra));
        let (r, got) = replay(&l, b"dev-1").unwrap();
        assert_eq!(got.len(), 10);
        assert_eq!(r.dropped, extra > 0);
        let n = rng.below(200) as usize;
        let garbage = rng.bytes(n);
        let _ = replay(&garbage, b"dev-1");
    }
}

#[test]
fn a_log_of_another_client_or_format_is_refused() {
    let (log, _) = encode(&sample());
    assert_eq!(replay(&log, b"dev-2").err(), Some(StoreError::OtherClient));
    assert_eq!(replay(&log, b"dev-").err(), Some(StoreError::OtherClient));
    // another version: the CRC is right, the version is not
    let mut s = VecSink::default();
    store::encode(&mut s, &Record::Header { next_mid: 1, client_id: b"dev-1" });
    let mut v2 = s.0.clone();
    v2[9] = 2;
    let n = v2.len();
    let crc = store::crc32(&v2[..n - 4]);
    v2[n - 4..].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(replay(&v2, b"dev-1").err(), Some(StoreError::Format));
    // not a header first
    let (other, _) = encode(&[Record::Done { mid: 1 }]);
    assert_eq!(replay(&other, b"dev-1").err(), Some(StoreError::Format));
    // empty: an empty store
    assert_eq!(replay(&[], b"dev-1").unwrap(), (Replayed::default(), vec![]));
}

/// The in-doubt set after replaying `records`.
fn in_doubt_after(records: &[Record<'_>]) -> Vec<u16> {
    let mut d = InDoubt::default();
    for r in records {
        d.apply(r);
    }
    d.ids().to_vec()
}

#[test]
fn a_delivery_without_its_end_is_in_doubt() {
    use Record::*;
    // ended by its I: not in doubt; cut before its I: in doubt
    assert_eq!(in_doubt_after(&[InboundDelivering { pid: 5 }, InboundHeld { pid: 5 }]), Vec::<u16>::new());
    assert_eq!(in_doubt_after(&[InboundDelivering { pid: 5 }]), vec![5]);
    // a second cut while another id is delivered keeps the first one in doubt
    let two = [InboundDelivering { pid: 5 }, InboundDelivering { pid: 6 }, InboundHeld { pid: 6 }];
    assert_eq!(in_doubt_after(&two), vec![5]);
    // PUBREL or a broker without the session ends it too
    assert_eq!(in_doubt_after(&[InboundDelivering { pid: 5 }, InboundReleased { pid: 5 }]), Vec::<u16>::new());
    assert_eq!(
        in_doubt_after(&[InboundDelivering { pid: 5 }, InboundDelivering { pid: 7 }, InboundCleared]),
        Vec::<u16>::new()
    );
}

#[test]
fn the_in_doubt_set_is_bounded_and_forgets_the_oldest() {
    let mut d = InDoubt::default();
    for pid in 1..=(IN_DOUBT_MAX as u16 + 2) {
        d.begin(pid);
        d.begin(pid);
    }
    assert_eq!(d.ids(), (3..=IN_DOUBT_MAX as u16 + 2).collect::<Vec<_>>().as_slice());
    assert!(d.end(5));
    assert!(!d.end(5));
    assert!(!d.contains(5) && d.contains(6));
    assert_eq!(d.ids().len(), IN_DOUBT_MAX - 1);
}

#[test]
fn compaction_rule_bounds_the_log() {
    assert!(!store::needs_compaction(100, 100));
    assert!(!store::needs_compaction(store::COMPACT_SLACK, 0));
    assert!(store::needs_compaction(store::COMPACT_SLACK + 1, 0));
    assert!(!store::needs_compaction(2 * 5000 + store::COMPACT_SLACK, 5000));
    assert!(store::needs_compaction(2 * 5000 + store::COMPACT_SLACK + 1, 5000));
}

// ---------------------------------------------------------------------------------------
// The engine's side

fn connect_with(e: &mut TestEngine, sp: bool) -> Vec<Pkt> {
    let mut inbox = TestInbox::default();
    e.connect(0).unwrap();
    assert_eq!(e.poll_action(0), Action::OpenTransport);
    let mut s = VecSink::default();
    e.handle_transport_up(0, &params(0), &mut s);
    assert_eq!(e.handle_bytes(0, &[0x20, 2, u8::from(sp), 0], &mut inbox), 4);
    assert!(e.is_connected());
    assert!(matches!(e.poll_event(), Some(Event::Connect { rc: 0, .. })));
    let mut out = VecSink::default();
    while e.poll_transmit(0, &mut out) {}
    decode_all(&out.0)
}

fn changes(e: &mut TestEngine) -> Vec<Change> {
    std::iter::from_fn(|| e.poll_change()).collect()
}

fn feed(e: &mut TestEngine, bytes: &[u8]) -> usize {
    e.handle_bytes(0, bytes, &mut TestInbox::default())
}

fn transmit(e: &mut TestEngine) -> Vec<Pkt> {
    let mut s = VecSink::default();
    while e.poll_transmit(0, &mut s) {}
    decode_all(&s.0)
}

#[test]
fn no_change_is_queued_without_persistence() {
    let mut e = engine(Config::default());
    assert!(!e.persistence());
    e.publish(0, Req::publish("t", b"x"), QoS::ExactlyOnce, false).unwrap();
    connect_with(&mut e, false);
    feed(&mut e, &[0x50, 2, 0, 1]);
    transmit(&mut e);
    feed(&mut e, &[0x70, 2, 0, 1]);
    assert_eq!(changes(&mut e), vec![]);
}

// The engine queues changes only when built with persistence.
#[cfg(feature = "persistence")]
#[test]
fn outbound_changes_follow_the_qos_flows() {
    let mut e = engine(Config::default());
    e.set_persistence(true);
    let m1 = e.publish(0, Req::publish("t", b"1"), QoS::AtLeastOnce, false).unwrap();
    let m2 = e.publish(0, Req::publish("t", b"2"), QoS::ExactlyOnce, false).unwrap();
    let _m0 = e.publish(0, Req::publish("t", b"0"), QoS::AtMostOnce, false).unwrap();
    assert_eq!(changes(&mut e), vec![]);
    connect_with(&mut e, false);
    assert_eq!(changes(&mut e), vec![Change::Sent { mid: m1 }, Change::Sent { mid: m2 }]);
    feed(&mut e, &[0x40, 2, 0, 1]); // PUBACK 1
    feed(&mut e, &[0x50, 2, 0, 2]); // PUBREC 2
    assert_eq!(changes(&mut e), vec![Change::Done { mid: m1 }, Change::Released { mid: m2 }]);
    assert_eq!(transmit(&mut e), vec![Pkt::PubRel(2)]);
    feed(&mut e, &[0x70, 2, 0, 2]); // PUBCOMP 2
    assert_eq!(changes(&mut e), vec![Change::Done { mid: m2 }]);
    assert!(Change::Released { mid: 1 }.needs_sync() && !Change::Sent { mid: 1 }.needs_sync());
}

// The engine queues changes only when built with persistence.
#[cfg(feature = "persistence")]
#[test]
fn inbound_qos2_changes_and_one_message_at_a_time_until_it_is_delivered() {
    let mut e = engine(Config::default());
    e.set_persistence(true);
    e.restore_inbound_qos2(3, true).unwrap();
    // a broker without our session holds no QoS 2 id of ours any more
    connect_with(&mut e, false);
    assert_eq!(changes(&mut e), vec![Change::InboundCleared]);
    assert!(!e.inbound_qos2_holds(3));
    let mut two = enc(&Packet::Publish(PubPkt { dup: false, qos: QoS::ExactlyOnce, retain: false, topic: "a", pid: 5, payload: b"x" }));
    let first = two.len();
    two.extend(enc(&Packet::Publish(PubPkt { dup: false, qos: QoS::ExactlyOnce, retain: false, topic: "a", pid: 6, payload: b"y" })));
    // the second PUBLISH waits until the first one's id is taken and its message polled
    assert_eq!(feed(&mut e, &two), first);
    assert_eq!(e.undelivered_qos2(), Some(5));
    assert_eq!(changes(&mut e), vec![Change::InboundHeld { pid: 5 }]);
    assert_eq!(feed(&mut e, &two[first..]), 0);
    assert!(matches!(e.poll_event(), Some(Event::Message { pid: 5, .. })));
    assert_eq!(e.undelivered_qos2(), None);
    assert_eq!(feed(&mut e, &two[first..]), two.len() - first);
    assert!(matches!(e.poll_event(), Some(Event::Message { pid: 6, .. })));
    assert_eq!(changes(&mut e), vec![Change::InboundHeld { pid: 6 }]);
    feed(&mut e, &[0x62, 2, 0, 5]); // PUBREL 5
    feed(&mut e, &[0x62, 2, 0, 77]); // PUBREL for an id not held: nothing to store
    assert_eq!(changes(&mut e), vec![Change::InboundReleased { pid: 5 }]);
}

// The engine queues changes only when built with persistence.
#[cfg(feature = "persistence")]
#[test]
fn a_full_change_queue_holds_back_new_publishes_until_drained() {
    let mut e = engine(Config { max_inflight: 1000, ..Config::default() });
    e.set_persistence(true);
    connect_with(&mut e, true);
    for i in 0..(CHANGE_CAPACITY + 3) {
        e.publish(0, Req::publish("t", &[i as u8]), QoS::AtLeastOnce, false).unwrap();
    }
    assert_eq!(transmit(&mut e).len(), CHANGE_CAPACITY);
    assert_eq!(changes(&mut e).len(), CHANGE_CAPACITY);
    assert_eq!(transmit(&mut e).len(), 3);
}

#[test]
fn restored_publishes_resend_with_dup_and_their_ids_then_new_ones_follow() {
    let mut e = engine(Config::default());
    e.set_persistence(true);
    e.restore_publish(Req::publish("t/q", b"queued"), QoS::AtLeastOnce, false, 11, 300, EntryState::Queued).unwrap();
    e.restore_publish(Req::publish("t/s", b"sent"), QoS::ExactlyOnce, true, 12, 301, EntryState::Queued).unwrap();
    e.restore_publish(Req::publish("t/r", b"rel"), QoS::ExactlyOnce, false, 13, 302, EntryState::Sent).unwrap();
    e.restore_publish(Req::publish("t/d", b"done"), QoS::AtLeastOnce, false, 14, 303, EntryState::Queued).unwrap();
    e.restore_state(12, EntryState::Sent).unwrap();
    e.restore_state(13, EntryState::Released).unwrap();
    e.restore_done(14).unwrap();
    e.restore_inbound_qos2(9, true).unwrap();
    e.restore_next_mid(20);
    e.restore_finish();
    assert_eq!(e.restore_publish(Req::publish("t", b""), QoS::AtMostOnce, false, 30, 1, EntryState::Queued), Err(-8));
    assert_eq!(e.restore_publish(Req::publish("t", b""), QoS::AtLeastOnce, false, 30, 300, EntryState::Queued), Err(-8));
    assert_eq!(e.inflight_count(), 2);
    assert_eq!(e.buffered_count(), 1);
    let m = e.publish(0, Req::publish("t/new", b"n"), QoS::AtLeastOnce, false).unwrap();
    assert_eq!(m, 20);
    let out = connect_with(&mut e, true);
    let pub_ = |dup, qos, retain, topic: &str, pid, payload: &[u8]| Pkt::Publish {
        dup,
        qos,
        retain,
        topic: topic.into(),
        pid,
        payload: payload.to_vec(),
    };
    assert_eq!(out, vec![
        pub_(true, QoS::ExactlyOnce, true, "t/s", 301, b"sent"),
        Pkt::PubRel(302),
        pub_(false, QoS::AtLeastOnce, false, "t/q", 300, b"queued"),
        pub_(false, QoS::AtLeastOnce, false, "t/new", 304, b"n"),
    ]);
    assert_eq!(e.restore_done(11), Err(-18), "restore only before the first connection");
    // a redelivered inbound QoS 2 message with a restored id: PUBREC, no delivery
    feed(&mut e, &enc(&Packet::Publish(PubPkt { dup: true, qos: QoS::ExactlyOnce, retain: false, topic: "a", pid: 9, payload: b"x" })));
    assert_eq!(std::iter::from_fn(|| e.poll_event()).count(), 0);
    assert_eq!(transmit(&mut e), vec![Pkt::PubRec(9)]);
    // completions carry the restored mids
    feed(&mut e, &[0x40, 2, 1, 44]); // PUBACK 300
    feed(&mut e, &[0x70, 2, 1, 46]); // PUBCOMP 302
    let evs: Vec<_> = std::iter::from_fn(|| e.poll_event()).collect();
    assert_eq!(evs, vec![Event::Published { mid: 11, rc: 0 }, Event::Published { mid: 13, rc: 0 }]);
}

#[test]
fn cancel_takes_back_only_an_unsent_publish() {
    let mut e = engine(Config::default());
    let m = e.publish(0, Req::publish("t", b"x"), QoS::AtLeastOnce, false).unwrap();
    assert!(e.cancel_queued(m));
    assert_eq!(e.buffered_count(), 0);
    assert!(!e.cancel_queued(m));
    let m2 = e.publish(0, Req::publish("t", b"y"), QoS::AtLeastOnce, false).unwrap();
    connect_with(&mut e, true);
    assert!(!e.cancel_queued(m2), "already on the wire");
    let mut held = vec![];
    e.for_each_inbound_qos2(|p| held.push(p));
    assert!(held.is_empty());
}
