//! Reconnect backoff across short-lived connections, and requests given up because the
//! broker closes the connection on them (src/proto/backoff.rs), in simulated time.

mod proto_support;
use proto_support::*;

use dl7450_mqtt::proto::*;

fn connect_ev(rc: i32, reason: Option<LostReason>) -> Ev {
    Event::Connect { rc, session_present: false, reason }
}

fn deltas(opens: &[u64]) -> Vec<u64> {
    opens.windows(2).map(|w| w[1] - w[0]).collect()
}

fn published(evs: &[Ev]) -> Vec<(u32, i32)> {
    evs.iter()
        .filter_map(|e| match e {
            Event::Published { mid, rc } => Some((*mid, *rc)),
            _ => None,
        })
        .collect()
}

/// Advances the simulation to `t`, handling every deadline on the way.
fn run_until(s: &mut Sim, t: u64) {
    while s.now < t {
        let step = t - s.now;
        s.advance(step);
    }
}

/// Runs until the next connection is up (at most `limit` ms).
fn until_connected(s: &mut Sim, limit: u64) {
    let end = s.now + limit;
    while !s.e.is_connected() && s.now < end {
        s.advance(end - s.now);
    }
    assert!(s.e.is_connected(), "connected by {end}");
}

#[test]
fn a_broker_that_accepts_then_drops_at_once_is_retried_on_the_backoff_schedule() {
    let mut s = Sim::new(Config::default(), 1, 0);
    s.e.connect(0).unwrap();
    s.settle();
    for _ in 0..9 {
        assert!(s.e.is_connected());
        s.drop_link();
        s.settle();
        until_connected(&mut s, 100_000);
    }
    assert_eq!(deltas(&s.opens), [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000]);
    let evs = s.take_events();
    assert_eq!(evs.len(), 19);
    for (i, ev) in evs.iter().enumerate() {
        match ev {
            Event::Connect { rc: 0, .. } => assert_eq!(i % 2, 0),
            Event::Connect { rc: -1, reason: Some(LostReason::Closed), .. } => assert_eq!(i % 2, 1),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn the_schedule_starts_again_after_a_connection_lived_min_keep_alive_10s() {
    // (keep-alive s, window ms)
    for (ka, window) in [(0u16, 10_000u64), (4, 4_000), (60, 10_000)] {
        for lived in [window - 1, window] {
            let mut s = Sim::new(Config::default(), 2, ka);
            s.e.connect(0).unwrap();
            s.settle();
            s.drop_link();
            s.settle();
            until_connected(&mut s, 100_000);
            assert_eq!(s.opens, [0, 1000]);
            let t = s.now + lived;
            run_until(&mut s, t);
            assert!(s.e.is_connected(), "keep-alive pings answered");
            s.drop_link();
            s.settle();
            until_connected(&mut s, 100_000);
            let expect = if lived >= window { 1000 } else { 2000 };
            assert_eq!(s.opens[2] - t, expect, "keep-alive {ka} s, connection up {lived} ms");
        }
    }
}

#[test]
fn the_schedule_starts_again_after_the_broker_acknowledged_a_request() {
    for acked in [false, true] {
        let mut s = Sim::new(Config::default(), 3, 0);
        s.e.connect(0).unwrap();
        s.settle();
        s.drop_link();
        s.settle();
        until_connected(&mut s, 100_000);
        s.b.hold_acks = !acked;
        s.e.publish(s.now, Req::publish("t", b"x"), QoS::AtLeastOnce, false).unwrap();
        s.settle();
        s.now += 100;
        s.drop_link();
        s.settle();
        let t = s.now;
        s.b.hold_acks = false;
        until_connected(&mut s, 100_000);
        assert_eq!(s.opens[2] - t, if acked { 1000 } else { 2000 }, "acknowledged: {acked}");
    }
}

/// The scenario of a broker with a packet size limit: a 20,000-byte message it closes the
/// connection on, then a small one.
#[test]
fn a_message_the_broker_closes_on_is_given_up_after_3_tries_and_the_next_flows() {
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let mut s = Sim::new(Config::default(), 4, 30);
        s.b.close_on = Some("big".into());
        s.e.connect(0).unwrap();
        s.settle();
        let big = s.e.publish(s.now, Req::publish("big", &[7; 20_000]), qos, false).unwrap();
        let small = s.e.publish(s.now, Req::publish("small", b"hello"), qos, false).unwrap();
        s.settle();
        run_until(&mut s, 60_000);
        // written three times (first send and two re-sends), each time closed on
        let sends: Vec<bool> = s
            .b
            .log
            .iter()
            .filter_map(|p| match p {
                Pkt::Publish { topic, dup, .. } if topic == "big" => Some(*dup),
                _ => None,
            })
            .collect();
        assert_eq!(sends, [false, true, true], "{qos:?}");
        assert_eq!(s.b.refusals, 3);
        // the attempts follow the backoff schedule: 1, 2, then 4 s after the give-up
        assert_eq!(s.opens, [0, 1000, 3000, 7000]);
        let evs = s.take_events();
        assert_eq!(published(&evs), [(big, rc::MESSAGE_REFUSED), (small, 0)]);
        let i = evs.iter().position(|e| matches!(e, Event::Published { .. })).unwrap();
        assert_eq!(evs[i - 1], connect_ev(-1, Some(LostReason::Closed)), "given up at the third loss");
        assert_eq!(evs.iter().filter(|e| matches!(e, Event::Connect { rc: -1, .. })).count(), 3);
        assert_eq!(s.b.delivered, vec![("small".to_string(), b"hello".to_vec(), qos)]);
        assert!(s.e.is_connected() && s.e.queue().is_empty());
        assert_eq!(s.e.inflight_count(), 0);
        assert!(rc::description(rc::MESSAGE_REFUSED).contains("broker closed the connection"));
    }
}

/// A broker that closes on a packet discards the acknowledgements it had not sent yet (a
/// reset): the messages written before the refused one look unacknowledged too. After a
/// loss that blamed a message the next connection writes one request at a time, so the
/// blame falls on the refused message alone.
#[test]
fn messages_before_the_refused_one_whose_acks_were_lost_are_not_given_up() {
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let mut s = Sim::new(Config::default(), 11, 30);
        s.random_splits = false;
        s.b.close_on = Some("big".into());
        s.e.connect(0).unwrap();
        s.settle();
        let before: Vec<u32> =
            (0..5u8).map(|i| s.e.publish(0, Req::publish("ok", &[i]), qos, false).unwrap()).collect();
        let big = s.e.publish(0, Req::publish("big", &[0; 1000]), qos, false).unwrap();
        let after = s.e.publish(0, Req::publish("ok", b"after"), qos, false).unwrap();
        s.settle();
        run_until(&mut s, 120_000);
        let done = published(&s.take_events());
        let mut expect: Vec<(u32, i32)> = before.iter().map(|m| (*m, 0)).collect();
        expect.push((big, rc::MESSAGE_REFUSED));
        expect.push((after, 0));
        let mut sorted = done.clone();
        sorted.sort();
        assert_eq!(sorted, expect, "{qos:?}: {done:?}");
        // the first loss blamed the first message (its acknowledgement was lost); from the
        // second connection on the big one is written alone, three times
        assert_eq!(s.b.refusals, 4, "{qos:?}");
        let all: Vec<Vec<u8>> = s.b.delivered.iter().map(|(_, p, _)| p.clone()).collect();
        let mut got: Vec<Vec<u8>> = vec![];
        for p in &all {
            if !got.contains(p) {
                got.push(p.clone());
            }
        }
        if qos == QoS::ExactlyOnce {
            assert_eq!(all, got, "QoS 2: once each");
        }
        let mut want: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i]).collect();
        want.push(b"after".to_vec());
        assert_eq!(got, want, "{qos:?}");
        assert!(s.e.is_connected() && s.e.queue().is_empty());
    }
}

#[test]
fn poison_retries_is_the_number_of_tries_and_0_never_gives_up() {
    let mut s = Sim::new(Config { poison_retries: 1, ..Config::default() }, 5, 0);
    s.b.close_on = Some("big".into());
    s.e.connect(0).unwrap();
    s.settle();
    let big = s.e.publish(0, Req::publish("big", b"x"), QoS::AtLeastOnce, false).unwrap();
    s.settle();
    run_until(&mut s, 30_000);
    assert_eq!(s.b.refusals, 1);
    assert_eq!(published(&s.take_events()), [(big, rc::MESSAGE_REFUSED)]);
    assert_eq!(s.opens, [0, 1000]);

    let mut s = Sim::new(Config { poison_retries: 0, ..Config::default() }, 5, 0);
    s.b.close_on = Some("big".into());
    s.e.connect(0).unwrap();
    s.settle();
    s.e.publish(0, Req::publish("big", b"x"), QoS::AtLeastOnce, false).unwrap();
    s.settle();
    run_until(&mut s, 600_000);
    assert!(published(&s.take_events()).is_empty(), "never given up");
    assert_eq!(s.e.queue().len(), 1);
    // still retried, on the backoff schedule
    assert_eq!(
        deltas(&s.opens)[..9],
        [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000]
    );
    assert_eq!(s.b.refusals, s.opens.len());
}

#[test]
fn a_subscription_the_broker_closes_on_gets_0x80_and_the_next_one_is_made() {
    let mut s = Sim::new(Config::default(), 6, 0);
    s.b.close_on = Some("forbidden/#".into());
    s.e.connect(0).unwrap();
    s.settle();
    let bad = s.e.subscribe(0, Req::filters(&[("ok/1", 1), ("forbidden/#", 1)])).unwrap();
    let good = s.e.subscribe(0, Req::filters(&[("ok/2", 2)])).unwrap();
    s.settle();
    run_until(&mut s, 60_000);
    assert_eq!(s.b.refusals, 3);
    let subs: Vec<(u32, Vec<u8>)> = s
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Subscribed { mid, granted } => Some((mid, granted.to_vec())),
            _ => None,
        })
        .collect();
    assert_eq!(subs, [(bad, vec![0x80, 0x80]), (good, vec![2])]);
    assert!(s.e.queue().is_empty());
}

#[test]
fn a_qos2_message_after_pubrec_is_never_given_up() {
    let mut s = Sim::new(Config::default(), 7, 0);
    s.b.close_on_pubrel = true;
    s.e.connect(0).unwrap();
    s.settle();
    let m1 = s.e.publish(0, Req::publish("a", b"1"), QoS::ExactlyOnce, false).unwrap();
    let m2 = s.e.publish(0, Req::publish("b", b"2"), QoS::AtLeastOnce, false).unwrap();
    s.settle();
    run_until(&mut s, 600_000);
    assert!(s.b.refusals >= 10, "{}", s.b.refusals);
    // neither the PUBREL nor the message written after it is blamed
    assert!(published(&s.take_events()).is_empty());
    assert_eq!(s.e.queue().len(), 2);
    s.b.close_on_pubrel = false;
    run_until(&mut s, 700_000);
    let done = published(&s.take_events());
    assert_eq!(done, [(m1, 0), (m2, 0)]);
    let payloads: Vec<&[u8]> = s.b.delivered.iter().map(|(_, p, _)| p.as_slice()).collect();
    assert_eq!(payloads[0], b"1");
    assert_eq!(s.b.delivered.iter().filter(|(t, _, _)| t == "a").count(), 1, "QoS 2 once");
}

/// An engine connected by hand at `now`; returns the packets it writes first.
fn reconnect(e: &mut TestEngine, inbox: &mut TestInbox, now: u64) -> Vec<Pkt> {
    loop {
        match e.poll_action(now) {
            Action::OpenTransport => break,
            Action::CloseTransport => continue,
            Action::Idle => panic!("no open at {now}: next {:?}", e.poll_timeout()),
        }
    }
    let mut s = VecSink::default();
    e.handle_transport_up(now, &params(0), &mut s);
    assert_eq!(e.handle_bytes(now, &[0x20, 2, 1, 0], inbox), 4);
    let mut s = VecSink::default();
    while e.poll_transmit(now, &mut s) {}
    decode_all(&s.0)
}

fn drain(e: &mut TestEngine) -> Vec<Ev> {
    std::iter::from_fn(|| e.poll_event()).collect()
}

fn puback(pid: u16) -> [u8; 4] {
    [0x40, 2, (pid >> 8) as u8, pid as u8]
}

/// Each connection: the old message A is re-sent, a new one is written after it, and the
/// broker closes. `ack_later` acknowledges the new one first (so the broker read past A).
fn losses_after_resend(ack_later: bool, loss_delay: u64, reason: LostReason) -> Vec<(u32, i32)> {
    let mut e = engine(Config::default());
    let mut inbox = TestInbox::default();
    let mut evs = vec![];
    e.connect(0).unwrap();
    let mut now = 0;
    reconnect(&mut e, &mut inbox, now);
    let a = e.publish(now, Req::publish("a", b"A"), QoS::AtLeastOnce, false).unwrap();
    for i in 0..6u8 {
        let mut s = VecSink::default();
        e.publish(now, Req::publish("n", &[i]), QoS::AtLeastOnce, false).unwrap();
        while e.poll_transmit(now, &mut s) {}
        let pkts = decode_all(&s.0);
        if ack_later {
            let Some(Pkt::Publish { pid, .. }) = pkts.iter().rev().find(|p| matches!(p, Pkt::Publish { .. })) else {
                panic!("{pkts:?}")
            };
            e.handle_bytes(now, &puback(*pid), &mut inbox);
        }
        now += loss_delay;
        e.handle_transport_down(now, reason);
        evs.extend(drain(&mut e));
        now = e.poll_timeout().unwrap();
        let pkts = reconnect(&mut e, &mut inbox, now);
        let resent_a = pkts.iter().any(|p| matches!(p, Pkt::Publish { topic, .. } if topic == "a"));
        let given_up = evs.iter().any(|ev| *ev == Event::Published { mid: a, rc: rc::MESSAGE_REFUSED });
        assert_eq!(resent_a, !given_up);
    }
    evs.extend(drain(&mut e));
    published(&evs).into_iter().filter(|(mid, _)| *mid == a).collect()
}

#[test]
fn only_a_quick_close_with_nothing_acknowledged_after_the_message_blames_it() {
    let a = 1;
    let refused = vec![(a, rc::MESSAGE_REFUSED)];
    // the broker closes at once, nothing after A acknowledged: given up
    assert_eq!(losses_after_resend(false, 5, LostReason::Closed), refused);
    assert_eq!(losses_after_resend(false, 9_999, LostReason::Io), refused);
    // the broker acknowledged a later message: it read past A
    assert!(losses_after_resend(true, 5, LostReason::Closed).is_empty());
    // the loss came 10 s (keep-alive off) after A was written
    assert!(losses_after_resend(false, 10_000, LostReason::Closed).is_empty());
    // losses the client found itself (keep-alive, protocol error, memory) blame nothing
    for reason in [LostReason::KeepAlive, LostReason::Protocol, LostReason::OutOfMemory] {
        assert!(losses_after_resend(false, 5, reason).is_empty(), "{reason:?}");
    }
}

#[test]
fn a_pingresp_to_a_ping_written_after_the_message_clears_it() {
    for answered in [false, true] {
        // one loss is enough to give a message up, to see whether this one blames it
        let mut e = engine(Config { poison_retries: 1, ..Config::default() });
        let mut inbox = TestInbox::default();
        e.connect(0).unwrap();
        assert_eq!(e.poll_action(0), Action::OpenTransport);
        e.handle_transport_up(0, &params(10), &mut VecSink::default());
        e.handle_bytes(0, &[0x20, 2, 0, 0], &mut inbox);
        let a = e.publish(9_000, Req::publish("a", b"A"), QoS::AtLeastOnce, false).unwrap();
        let mut s = VecSink::default();
        while e.poll_transmit(9_000, &mut s) {}
        // nothing received for 10 s: PINGREQ, written after A
        e.handle_timeout(10_000);
        let mut s = VecSink::default();
        while e.poll_transmit(10_000, &mut s) {}
        assert_eq!(decode_all(&s.0), [Pkt::PingReq]);
        if answered {
            e.handle_bytes(10_100, &[0xD0, 0], &mut inbox);
        }
        e.handle_transport_down(10_500, LostReason::Closed);
        let given_up = published(&drain(&mut e)) == [(a, rc::MESSAGE_REFUSED)];
        assert_eq!(given_up, !answered, "PINGRESP received: {answered}");
    }
}

/// Cuts like the fault-injection suite's: a random while (0.3 to 0.9 s) after each
/// connection is up, the link dies at a random byte of the next transfer, while messages
/// flow both ways. Nothing is given up, nothing lost, QoS 2 once.
#[test]
fn random_cuts_never_give_a_message_up() {
    let mut s = Sim::new(Config { max_inflight: 100, max_buffered: 1000, ..Config::default() }, 99, 2);
    s.e.connect(0).unwrap();
    s.settle();
    let mut cut_at: Option<u64> = None;
    let (mut up, mut down) = (0u32, 0u32);
    let mut mids = vec![];
    let mut cuts = 0;
    while cuts < 1000 {
        for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
            if let Ok(mid) = s.e.publish(s.now, Req::publish("up", &up.to_be_bytes()), qos, false) {
                mids.push(mid);
                up += 1;
            }
        }
        s.b.queue_to_client("down", &down.to_be_bytes(), QoS::ExactlyOnce);
        down += 1;
        if s.e.is_connected() {
            let t = *cut_at.get_or_insert_with(|| s.now + 300 + s.rng.below(601));
            if s.now >= t {
                s.cut_once = true;
                let before = s.drops;
                s.settle();
                if s.drops > before {
                    cuts += 1;
                    cut_at = None;
                }
            }
        } else {
            cut_at = None;
        }
        s.settle();
        s.advance(50);
    }
    s.cut_once = false;
    let end = s.now + 600_000;
    run_until(&mut s, end);
    let evs = s.take_events();
    let done = published(&evs);
    assert!(done.iter().all(|(_, rc)| *rc == 0), "nothing given up");
    assert_eq!(done.len(), mids.len());
    let mut seen = std::collections::HashSet::new();
    let q2: Vec<&[u8]> = s
        .b
        .delivered
        .iter()
        .filter(|(_, _, q)| *q == QoS::ExactlyOnce)
        .map(|(_, p, _)| p.as_slice())
        .collect();
    assert_eq!(q2.len(), mids.len() / 2, "QoS 2 up: each once");
    for (_, p, _) in &s.b.delivered {
        seen.insert(p.clone());
    }
    assert_eq!(seen.len() as u32, up, "nothing lost up");
    let got: Vec<Vec<u8>> = evs
        .iter()
        .filter_map(|e| match e {
            Event::Message { msg, .. } => Some(msg.payload.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(got, (0..down).map(|i| i.to_be_bytes().to_vec()).collect::<Vec<_>>(), "down: once, in order");
    println!("random cuts: {cuts} cuts, {up} up, {down} down, {} connections", s.opens.len());
}

#[test]
fn max_packet_size_refuses_a_larger_publish_at_once() {
    let mut e = engine(Config { max_packet_size: Some(100), ..Config::default() });
    // QoS 1, topic "t": 1 + 1 + (2 + 1 + 2 + payload) bytes
    assert!(e.publish(0, Req::publish("t", &[0; 93]), QoS::AtLeastOnce, false).is_ok());
    assert_eq!(e.publish(0, Req::publish("t", &[0; 94]), QoS::AtLeastOnce, false), Err(rc::BAD_STRUCTURE));
    // QoS 0 has no packet id: two bytes more payload fit
    assert!(e.publish(0, Req::publish("t", &[0; 95]), QoS::AtMostOnce, false).is_ok());
    assert_eq!(e.publish(0, Req::publish("t", &[0; 96]), QoS::AtMostOnce, false), Err(rc::BAD_STRUCTURE));
    assert_eq!(e.queue().len(), 2, "refused messages are not queued");
    let mut e = engine(Config::default());
    assert!(e.publish(0, Req::publish("t", &[0; 100_000]), QoS::AtLeastOnce, false).is_ok());
}
