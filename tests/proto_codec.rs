//! Codec: spec byte vectors for every packet (encode and decode), validation rules,
//! and seeded property tests (round trip, arbitrary bytes, arbitrary splits).

mod proto_support;
use proto_support::*;

use dl7450_mqtt::proto::codec::{self, Error, FixedHeaderParser, Packet, Publish, StreamDecoder};
use dl7450_mqtt::proto::{ConnectParams, QoS, Will};

fn check_vector(p: Packet<'_>, bytes: &[u8]) {
    assert_eq!(enc(&p), bytes, "encode {p:?}");
    let (d, n) = codec::decode(bytes, usize::MAX).unwrap().unwrap();
    assert_eq!(n, bytes.len());
    assert_eq!(d, p, "decode");
    // every strict prefix is incomplete
    for k in 0..bytes.len() {
        assert_eq!(codec::decode(&bytes[..k], usize::MAX).unwrap(), None, "prefix {k}");
    }
}

#[test]
fn vector_connect_minimal() {
    let p = Packet::Connect(ConnectParams {
        client_id: "a",
        clean_session: true,
        keep_alive_s: 60,
        username: None,
        password: None,
        will: None,
    });
    check_vector(p, &[0x10, 0x0D, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 1, b'a']);
}

#[test]
fn vector_connect_full() {
    let p = Packet::Connect(ConnectParams {
        client_id: "c",
        clean_session: false,
        keep_alive_s: 10,
        username: Some("u"),
        password: Some(b"p"),
        will: Some(Will { topic: "w", payload: b"x", qos: QoS::AtLeastOnce, retain: true }),
    });
    check_vector(
        p,
        &[
            0x10, 0x19, 0, 4, b'M', b'Q', b'T', b'T', 4, 0xEC, 0, 10, 0, 1, b'c', 0, 1, b'w', 0, 1, b'x', 0, 1,
            b'u', 0, 1, b'p',
        ],
    );
    // will QoS 2 without retain, empty client id, no credentials
    let p = Packet::Connect(ConnectParams {
        client_id: "",
        clean_session: true,
        keep_alive_s: 0,
        username: None,
        password: None,
        will: Some(Will { topic: "t", payload: b"", qos: QoS::ExactlyOnce, retain: false }),
    });
    check_vector(
        p,
        &[0x10, 0x11, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x16, 0, 0, 0, 0, 0, 1, b't', 0, 0],
    );
}

#[test]
fn vector_connack() {
    check_vector(Packet::ConnAck { session_present: true, code: 0 }, &[0x20, 2, 1, 0]);
    check_vector(Packet::ConnAck { session_present: false, code: 5 }, &[0x20, 2, 0, 5]);
}

#[test]
fn vector_publish() {
    let p = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "a/b",
        pid: 0,
        payload: b"hi",
    });
    check_vector(p, &[0x30, 7, 0, 3, b'a', b'/', b'b', b'h', b'i']);
    let p = Packet::Publish(Publish {
        dup: true,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: "a/b",
        pid: 10,
        payload: b"hi",
    });
    check_vector(p, &[0x3B, 9, 0, 3, b'a', b'/', b'b', 0, 10, b'h', b'i']);
    let p = Packet::Publish(Publish {
        dup: false,
        qos: QoS::ExactlyOnce,
        retain: false,
        topic: "x",
        pid: 0x1234,
        payload: b"",
    });
    check_vector(p, &[0x34, 5, 0, 1, b'x', 0x12, 0x34]);
    // two-byte remaining length: 2 + 1 + 200 = 203 = 0xCB 0x01
    let payload = vec![7u8; 200];
    let p = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "t",
        pid: 0,
        payload: &payload,
    });
    let mut expect = vec![0x30, 0xCB, 0x01, 0, 1, b't'];
    expect.extend_from_slice(&payload);
    check_vector(p, &expect);
}

#[test]
fn vector_acks() {
    check_vector(Packet::PubAck(1), &[0x40, 2, 0, 1]);
    check_vector(Packet::PubRec(0x0102), &[0x50, 2, 1, 2]);
    check_vector(Packet::PubRel(65535), &[0x62, 2, 0xFF, 0xFF]);
    check_vector(Packet::PubComp(7), &[0x70, 2, 0, 7]);
    check_vector(Packet::UnsubAck(2), &[0xB0, 2, 0, 2]);
}

#[test]
fn vector_subscribe_suback() {
    let mut s = VecSink::default();
    let filters: &[(&str, u8)] = &[("a/#", 1), ("+/b", 2)];
    codec::encode_subscribe(&mut s, 1, filters).unwrap();
    let bytes = [0x82, 0x0E, 0, 1, 0, 3, b'a', b'/', b'#', 1, 0, 3, b'+', b'/', b'b', 2];
    assert_eq!(s.0, bytes);
    let (p, _) = codec::decode(&bytes, usize::MAX).unwrap().unwrap();
    assert_eq!(own(&p), Pkt::Subscribe { pid: 1, filters: vec![("a/#".into(), 1), ("+/b".into(), 2)] });
    assert_eq!(enc(&p), bytes, "re-encode of a decoded SUBSCRIBE");
    check_vector(Packet::SubAck { pid: 1, codes: &[1, 0x80] }, &[0x90, 4, 0, 1, 1, 0x80]);
}

#[test]
fn vector_unsubscribe() {
    let mut s = VecSink::default();
    let filters: &[(&str, u8)] = &[("a/#", 0)];
    codec::encode_unsubscribe(&mut s, 2, filters).unwrap();
    let bytes = [0xA2, 7, 0, 2, 0, 3, b'a', b'/', b'#'];
    assert_eq!(s.0, bytes);
    let (p, _) = codec::decode(&bytes, usize::MAX).unwrap().unwrap();
    assert_eq!(own(&p), Pkt::Unsubscribe { pid: 2, filters: vec!["a/#".into()] });
    assert_eq!(enc(&p), bytes);
}

#[test]
fn vector_empty_packets() {
    check_vector(Packet::PingReq, &[0xC0, 0]);
    check_vector(Packet::PingResp, &[0xD0, 0]);
    check_vector(Packet::Disconnect, &[0xE0, 0]);
}

#[test]
fn remaining_length_boundaries() {
    let cases: &[(usize, &[u8])] = &[
        (0, &[0x00]),
        (127, &[0x7F]),
        (128, &[0x80, 0x01]),
        (16_383, &[0xFF, 0x7F]),
        (16_384, &[0x80, 0x80, 0x01]),
        (2_097_151, &[0xFF, 0xFF, 0x7F]),
        (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
        (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
    ];
    for &(len, bytes) in cases {
        let mut hp = FixedHeaderParser::new();
        assert_eq!(hp.push(0x30).unwrap(), None);
        let mut got = None;
        for (i, &b) in bytes.iter().enumerate() {
            let r = hp.push(b).unwrap();
            if i + 1 < bytes.len() {
                assert_eq!(r, None);
            } else {
                got = r;
            }
        }
        assert_eq!(got, Some((0x30, len)), "len {len}");
        // encoder produces the same header
        if (3..100_000).contains(&len) {
            let payload = vec![0u8; len - 3];
            let p = Packet::Publish(Publish { dup: false, qos: QoS::AtMostOnce, retain: false, topic: "t", pid: 0, payload: &payload });
            let e = enc(&p);
            assert_eq!(&e[1..1 + bytes.len()], bytes);
        }
    }
    // a fifth length byte is an error
    let mut hp = FixedHeaderParser::new();
    hp.push(0x30).unwrap();
    for _ in 0..3 {
        assert_eq!(hp.push(0xFF).unwrap(), None);
    }
    assert_eq!(hp.push(0xFF), Err(Error::BadRemainingLength));
    assert_eq!(codec::decode(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], usize::MAX), Err(Error::BadRemainingLength));
}

fn dec_err(bytes: &[u8]) -> Error {
    codec::decode(bytes, usize::MAX).expect_err("must be rejected")
}

#[test]
fn malformed_packets_are_errors() {
    assert_eq!(dec_err(&[0x41, 2, 0, 1]), Error::BadFlags); // PUBACK flags
    assert_eq!(dec_err(&[0x60, 2, 0, 1]), Error::BadFlags); // PUBREL needs 0010
    assert_eq!(dec_err(&[0x80, 6, 0, 1, 0, 1, b'a', 0]), Error::BadFlags); // SUBSCRIBE needs 0010
    assert_eq!(dec_err(&[0xA0, 5, 0, 1, 0, 1, b'a']), Error::BadFlags); // UNSUBSCRIBE
    assert_eq!(dec_err(&[0xC1, 0]), Error::BadFlags);
    assert_eq!(dec_err(&[0x22, 2, 0, 0]), Error::BadFlags);
    assert_eq!(dec_err(&[0x36, 5, 0, 1, b'x', 0, 1]), Error::BadQos); // PUBLISH QoS 3
    assert_eq!(dec_err(&[0x38, 3, 0, 1, b'x']), Error::BadFlags); // DUP with QoS 0
    assert_eq!(dec_err(&[0x00, 0]), Error::BadPacketType);
    assert_eq!(dec_err(&[0xF0, 0]), Error::BadPacketType);
    assert_eq!(dec_err(&[0x30, 5, 0, 3, b'a', b'/', b'+']), Error::Wildcard);
    assert_eq!(dec_err(&[0x30, 3, 0, 1, b'#']), Error::Wildcard);
    assert_eq!(dec_err(&[0x30, 4, 0, 2, b'a', 0]), Error::NulChar);
    assert_eq!(dec_err(&[0x30, 4, 0, 2, 0xC3, 0x28]), Error::BadUtf8);
    assert_eq!(dec_err(&[0x30, 5, 0, 3, 0xED, 0xA0, 0x80]), Error::BadUtf8); // surrogate
    assert_eq!(dec_err(&[0x30, 4, 0, 2, 0xC0, 0x80]), Error::BadUtf8); // overlong NUL
    assert_eq!(dec_err(&[0x30, 2, 0, 0]), Error::EmptyTopic);
    assert_eq!(dec_err(&[0x30, 3, 0, 5, b'a']), Error::BadLength); // topic longer than packet
    assert_eq!(dec_err(&[0x32, 3, 0, 1, b'a']), Error::BadLength); // missing packet id
    assert_eq!(dec_err(&[0x32, 5, 0, 1, b'a', 0, 0]), Error::ZeroPacketId);
    assert_eq!(dec_err(&[0x40, 2, 0, 0]), Error::ZeroPacketId);
    assert_eq!(dec_err(&[0x40, 3, 0, 1, 0]), Error::BadLength);
    assert_eq!(dec_err(&[0x40, 1, 0]), Error::BadLength);
    assert_eq!(dec_err(&[0xD0, 1, 0]), Error::BadLength);
    assert_eq!(dec_err(&[0x20, 2, 2, 0]), Error::BadReturnCode); // CONNACK reserved flag
    assert_eq!(dec_err(&[0x20, 3, 0, 0, 0]), Error::BadLength);
    assert_eq!(dec_err(&[0x90, 3, 0, 1, 3]), Error::BadReturnCode); // SUBACK code 3
    assert_eq!(dec_err(&[0x90, 2, 0, 1]), Error::BadFilterCount);
    assert_eq!(dec_err(&[0x82, 2, 0, 1]), Error::BadFilterCount); // no filters
    assert_eq!(dec_err(&[0x82, 7, 0, 1, 0, 2, b'a', b'#', 0]), Error::BadFilter);
    assert_eq!(dec_err(&[0x82, 9, 0, 1, 0, 4, b'#', b'/', b'a', b'b', 0]), Error::BadFilter);
    assert_eq!(dec_err(&[0x82, 7, 0, 1, 0, 2, b'a', b'+', 0]), Error::BadFilter);
    assert_eq!(dec_err(&[0x82, 6, 0, 1, 0, 1, b'a', 3]), Error::BadQos);
    assert_eq!(dec_err(&[0x82, 6, 0, 1, 0, 1, b'a', 0x41]), Error::BadQos); // reserved bits
    assert_eq!(dec_err(&[0x82, 5, 0, 1, 0, 1, b'a']), Error::BadLength); // missing qos byte
    assert_eq!(dec_err(&[0xA2, 2, 0, 1]), Error::BadFilterCount);
    // CONNECT
    let mut c = vec![0x10, 0x0D, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 1, b'a'];
    c[4] = b'X';
    assert_eq!(dec_err(&c), Error::BadProtocolName);
    c[4] = b'M';
    c[8] = 3;
    assert_eq!(dec_err(&c), Error::BadProtocolLevel(3));
    c[8] = 4;
    c[9] = 0x03; // reserved bit
    assert_eq!(dec_err(&c), Error::BadConnectFlags);
    c[9] = 0x42; // password without user name
    assert_eq!(dec_err(&c), Error::BadConnectFlags);
    c[9] = 0x0A; // will QoS without will flag
    assert_eq!(dec_err(&c), Error::BadConnectFlags);
    c[9] = 0x1E; // will QoS 3
    assert_eq!(dec_err(&c), Error::BadQos);
    // max packet size
    let p = [0x30, 7, 0, 3, b'a', b'/', b'b', b'h', b'i'];
    assert_eq!(codec::decode(&p, 8), Err(Error::TooLarge));
    assert!(codec::decode(&p, 9).unwrap().is_some());
    // too large is detected from the header alone
    assert_eq!(codec::decode(&[0x30, 0xFF, 0x7F], 1000), Err(Error::TooLarge));
}

#[test]
fn validation_helpers() {
    use codec::{validate_topic_filter as f, validate_topic_name as n};
    assert!(n(b"a").is_ok());
    assert!(n(b"a/b/c").is_ok());
    assert!(n(b"/").is_ok());
    assert!(n("é/日本".as_bytes()).is_ok());
    assert_eq!(n(b""), Err(Error::EmptyTopic));
    assert_eq!(n(b"a/+"), Err(Error::Wildcard));
    assert_eq!(n(b"#"), Err(Error::Wildcard));
    assert_eq!(n(b"a\0b"), Err(Error::NulChar));
    assert_eq!(n(&[0xFF]), Err(Error::BadUtf8));
    assert_eq!(n(&vec![b'a'; 65_536]), Err(Error::StringTooLong));
    assert!(n(&vec![b'a'; 65_535]).is_ok());
    // the ASCII scan and the full check agree, whatever comes first
    assert_eq!(n(b"a+\0"), Err(Error::NulChar));
    assert_eq!(n("é/+".as_bytes()), Err(Error::Wildcard));
    assert_eq!(n("é\0".as_bytes()), Err(Error::NulChar));
    assert_eq!(n(b"a/b/c/d/e/f/\x80"), Err(Error::BadUtf8));
    assert_eq!(n(&[b'#'; 65_536]), Err(Error::StringTooLong));
    for ok in ["#", "+", "a/#", "+/+/#", "a/+/b", "/", "//", "+/", "/#", "sport/tennis/+"] {
        assert!(f(ok.as_bytes()).is_ok(), "{ok}");
    }
    for bad in ["a#", "a/#/b", "#/", "a+", "+a/b", "a/b+", "##", "++"] {
        assert_eq!(f(bad.as_bytes()), Err(Error::BadFilter), "{bad}");
    }
    assert_eq!(f(b""), Err(Error::EmptyTopic));
    assert_eq!(f(b"a\0"), Err(Error::NulChar));
    // rc mapping used by the binding
    assert_eq!(Error::BadUtf8.rc(), -5);
    assert_eq!(Error::NulChar.rc(), -7);
    assert_eq!(Error::Wildcard.rc(), -8);
    assert_eq!(Error::BadQos.rc(), -9);
}

#[test]
fn encoder_rejects_invalid_arguments() {
    let mut s = VecSink::default();
    assert_eq!(codec::encode_publish(&mut s, false, QoS::AtLeastOnce, false, b"a", 0, b""), Err(Error::ZeroPacketId));
    assert_eq!(codec::encode_publish(&mut s, false, QoS::AtMostOnce, false, b"a/#", 0, b""), Err(Error::Wildcard));
    assert_eq!(codec::encode_publish(&mut s, true, QoS::AtMostOnce, false, b"a", 0, b""), Err(Error::BadFlags));
    let none: &[(&str, u8)] = &[];
    assert_eq!(codec::encode_subscribe(&mut s, 1, none), Err(Error::BadFilterCount));
    let bad: &[(&str, u8)] = &[("a", 3)];
    assert_eq!(codec::encode_subscribe(&mut s, 1, bad), Err(Error::BadQos));
    assert_eq!(codec::encode_suback(&mut s, 1, &[5]), Err(Error::BadReturnCode));
    let pw_only = ConnectParams { client_id: "a", clean_session: true, keep_alive_s: 0, username: None, password: Some(b"x"), will: None };
    assert_eq!(codec::encode_connect(&mut s, &pw_only), Err(Error::BadConnectFlags));
    assert!(s.0.is_empty(), "nothing written for rejected packets");
    // a sink that refuses: SinkFull, nothing panics
    assert_eq!(Packet::PingReq.encode(&mut FullSink), Err(Error::SinkFull));
    // heapless sink: reserve checks capacity up front
    let mut hv: heapless::Vec<u8, 4> = heapless::Vec::new();
    assert_eq!(codec::encode_ack(&mut hv, codec::PUBACK, 1), Ok(()));
    assert_eq!(codec::encode_ack(&mut hv, codec::PUBACK, 1), Err(Error::SinkFull));
    assert_eq!(hv.len(), 4);
}

// ------------------------------------------------------------------------------------
// Property tests
// ------------------------------------------------------------------------------------

const CHARS: &[&str] = &["a", "b", "z", "0", "_", "-", " ", "é", "日", "😀", "ß", "\u{7f}"];

fn rand_str(r: &mut Rng, max: usize) -> String {
    let n = r.below(max as u64 + 1) as usize;
    (0..n).map(|_| CHARS[r.below(CHARS.len() as u64) as usize]).collect()
}

fn rand_topic(r: &mut Rng) -> String {
    let levels = 1 + r.below(4);
    let mut t = String::new();
    for i in 0..levels {
        if i > 0 {
            t.push('/');
        }
        t.push_str(&rand_str(r, 5));
    }
    if t.is_empty() {
        t.push('t');
    }
    t
}

fn rand_filter(r: &mut Rng) -> String {
    let levels = 1 + r.below(4);
    let mut t = String::new();
    for i in 0..levels {
        if i > 0 {
            t.push('/');
        }
        match r.below(5) {
            0 => t.push('+'),
            1 if i + 1 == levels => t.push('#'),
            _ => t.push_str(&rand_str(r, 4)),
        }
    }
    if t.is_empty() {
        t.push('f');
    }
    t
}

fn qos(r: &mut Rng) -> QoS {
    QoS::try_from(r.below(3) as u8).unwrap()
}

fn pid(r: &mut Rng) -> u16 {
    1 + r.below(65_535) as u16
}

/// Encodes a random valid packet.
fn rand_packet_bytes(r: &mut Rng) -> Vec<u8> {
    let mut s = VecSink::default();
    match r.below(14) {
        0 => {
            let cid = rand_str(r, 10);
            let user = rand_str(r, 6);
            let k = r.below(6) as usize;
            let pw = r.bytes(k);
            let wt = rand_topic(r);
            let k = r.below(20) as usize;
            let wp = r.bytes(k);
            let has_user = r.chance(1, 2);
            let p = ConnectParams {
                client_id: &cid,
                clean_session: r.chance(1, 2),
                keep_alive_s: r.below(65_536) as u16,
                username: if has_user { Some(&user) } else { None },
                password: if has_user && r.chance(1, 2) { Some(&pw) } else { None },
                will: if r.chance(1, 2) { Some(Will { topic: &wt, payload: &wp, qos: qos(r), retain: r.chance(1, 2) }) } else { None },
            };
            codec::encode_connect(&mut s, &p).unwrap();
        }
        1 => codec::encode_connack(&mut s, r.chance(1, 2), r.below(6) as u8).unwrap(),
        2 => {
            let q = qos(r);
            let topic = rand_topic(r);
            let len = if r.chance(1, 10) { 200 + r.below(20_000) as usize } else { r.below(40) as usize };
            let payload = r.bytes(len);
            let p = if q == QoS::AtMostOnce { 0 } else { pid(r) };
            let dup = q != QoS::AtMostOnce && r.chance(1, 2);
            codec::encode_publish(&mut s, dup, q, r.chance(1, 2), topic.as_bytes(), p, &payload).unwrap();
        }
        t @ 3..=7 => {
            let ty = [codec::PUBACK, codec::PUBREC, codec::PUBREL, codec::PUBCOMP, codec::UNSUBACK][(t - 3) as usize];
            codec::encode_ack(&mut s, ty, pid(r)).unwrap();
        }
        8 | 9 => {
            let n = 1 + r.below(5) as usize;
            let fs: Vec<(String, u8)> = (0..n).map(|_| (rand_filter(r), r.below(3) as u8)).collect();
            let refs: Vec<(&str, u8)> = fs.iter().map(|(f, q)| (f.as_str(), *q)).collect();
            if r.chance(1, 2) {
                codec::encode_subscribe(&mut s, pid(r), refs.as_slice()).unwrap();
            } else {
                codec::encode_unsubscribe(&mut s, pid(r), refs.as_slice()).unwrap();
            }
        }
        10 => {
            let n = 1 + r.below(16) as usize;
            let codes: Vec<u8> = (0..n).map(|_| [0, 1, 2, 0x80][r.below(4) as usize]).collect();
            codec::encode_suback(&mut s, pid(r), &codes).unwrap();
        }
        11 => codec::encode_empty(&mut s, codec::PINGREQ).unwrap(),
        12 => codec::encode_empty(&mut s, codec::PINGRESP).unwrap(),
        _ => codec::encode_empty(&mut s, codec::DISCONNECT).unwrap(),
    }
    s.0
}

#[test]
fn prop_round_trip() {
    let mut r = Rng::new(1);
    for _ in 0..5_000 {
        let bytes = rand_packet_bytes(&mut r);
        let (p, n) = codec::decode(&bytes, usize::MAX).unwrap().unwrap();
        assert_eq!(n, bytes.len());
        // re-encoding the decoded packet gives the same bytes
        assert_eq!(enc(&p), bytes);
        let e2 = enc(&p);
        let (p2, _) = codec::decode(&e2, usize::MAX).unwrap().unwrap();
        assert_eq!(p, p2);
    }
}

#[test]
fn prop_arbitrary_bytes_never_panic() {
    let mut r = Rng::new(2);
    let mut ok = 0;
    let mut errs = 0;
    for i in 0..30_000 {
        let len = r.below(64) as usize;
        let mut b = r.bytes(len);
        // bias towards plausible headers
        if i % 2 == 0 && !b.is_empty() {
            b[0] = (b[0] & 0xF0) | [0, 2][(b[0] & 1) as usize];
            if b.len() > 1 {
                b[1] = (b.len() - 2).min(127) as u8;
            }
        }
        match codec::decode(&b, 1 << 20) {
            Ok(Some(_)) => ok += 1,
            Ok(None) => {}
            Err(_) => errs += 1,
        }
        let mut d = StreamDecoder::<256>::new(256);
        let mut rest = &b[..];
        while !rest.is_empty() {
            let (n, res) = d.feed(rest);
            rest = &rest[n..];
            if res.is_err() {
                break;
            }
            if n == 0 {
                break;
            }
        }
    }
    assert!(ok > 20 && errs > 1000, "the generator reaches both outcomes: ok {ok} errs {errs}");
}

#[test]
fn prop_mutated_packets_never_panic_and_stay_consistent() {
    let mut r = Rng::new(3);
    for _ in 0..10_000 {
        let mut b = rand_packet_bytes(&mut r);
        let flips = 1 + r.below(3);
        for _ in 0..flips {
            let i = r.below(b.len() as u64) as usize;
            b[i] ^= 1 << r.below(8);
        }
        if let Ok(Some((p, _))) = codec::decode(&b, usize::MAX) {
            // whatever decodes re-encodes and decodes to the same packet
            let e = enc(&p);
            let (p2, _) = codec::decode(&e, usize::MAX).unwrap().unwrap();
            assert_eq!(p, p2);
        }
    }
}

#[test]
fn prop_split_points_give_same_packets() {
    let mut r = Rng::new(4);
    for _ in 0..300 {
        let n = 1 + r.below(20);
        let mut stream = vec![];
        for _ in 0..n {
            stream.extend(rand_packet_bytes(&mut r));
        }
        let expect = decode_all(&stream);
        assert_eq!(expect.len() as u64, n);
        let mut d: Box<StreamDecoder<30_000>> = Box::new(StreamDecoder::new(30_000));
        let mut got = vec![];
        let mut pos = 0;
        while pos < stream.len() {
            let lim = if r.chance(1, 3) { 3 } else { 500 };
            let chunk = 1 + r.below(lim) as usize;
            let end = (pos + chunk).min(stream.len());
            let mut piece = &stream[pos..end];
            while !piece.is_empty() {
                let (k, res) = d.feed(piece);
                piece = &piece[k..];
                if let Some(p) = res.unwrap() {
                    got.push(own(&p));
                }
            }
            pos = end;
        }
        assert_eq!(got, expect);
    }
}
