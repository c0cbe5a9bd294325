//! URL parsing and return-code texts.

use dl7450_mqtt::proto::rc;
use dl7450_mqtt::proto::url::{parse, BrokerUrl, Scheme, UrlError};
use dl7450_mqtt::proto::LostReason;

fn ok(u: &str) -> BrokerUrl<'_> {
    parse(u).unwrap_or_else(|e| panic!("{u}: {e:?}"))
}

#[test]
fn schemes_and_default_ports() {
    let cases = [
        ("tcp://h", Scheme::Tcp, 1883, false, false, ""),
        ("mqtt://h", Scheme::Mqtt, 1883, false, false, ""),
        ("ssl://h", Scheme::Ssl, 8883, true, false, ""),
        ("mqtts://h", Scheme::Mqtts, 8883, true, false, ""),
        ("ws://h", Scheme::Ws, 80, false, true, "/mqtt"),
        ("wss://h", Scheme::Wss, 443, true, true, "/mqtt"),
        ("TCP://h", Scheme::Tcp, 1883, false, false, ""),
        ("WsS://h", Scheme::Wss, 443, true, true, "/mqtt"),
    ];
    for (u, s, port, tls, ws, path) in cases {
        let b = ok(u);
        assert_eq!((b.scheme, b.host, b.port, b.path), (s, "h", port, path), "{u}");
        assert_eq!(b.scheme.is_tls(), tls);
        assert_eq!(b.scheme.is_websocket(), ws);
    }
}

#[test]
fn hosts_ports_paths() {
    assert_eq!(ok("tcp://broker.example.com:1884"), BrokerUrl { scheme: Scheme::Tcp, host: "broker.example.com", port: 1884, path: "" });
    assert_eq!(ok("mqtt://192.168.1.10:65535").port, 65535);
    assert_eq!(ok("mqtt://192.168.1.10:1").port, 1);
    assert_eq!(ok("tcp://h/").path, "");
    let v6 = ok("tcp://[::1]:1883");
    assert_eq!((v6.host, v6.port), ("::1", 1883));
    assert_eq!(ok("wss://[2001:db8::1]").host, "2001:db8::1");
    assert_eq!(ok("wss://[2001:db8::1]").port, 443);
    assert_eq!(ok("ws://h:8080/ws/path?x=1").path, "/ws/path?x=1");
    assert_eq!(ok("ws://h/").path, "/");
    assert_eq!(ok("my_host-1://x".replace("my_host-1", "tcp").as_str()).host, "x");
}

#[test]
fn bad_scheme_is_rc_minus_14() {
    for u in ["localhost:1883", "http://h", "://h", "tcpx://h", "h", "", "mqtt:/h"] {
        assert_eq!(parse(u), Err(UrlError::BadScheme), "{u}");
    }
    assert_eq!(UrlError::BadScheme.rc(), Some(-14));
    assert_eq!(UrlError::Malformed("x").rc(), None);
}

#[test]
fn malformed_urls() {
    for u in [
        "tcp://",
        "tcp://:1883",
        "tcp://h:",
        "tcp://h:0",
        "tcp://h:65536",
        "tcp://h:99999",
        "tcp://h:123456",
        "tcp://h:12a",
        "tcp://h:-1",
        "tcp://user@h",
        "tcp://user:pw@h:1883",
        "tcp://::1",
        "tcp://[::1",
        "tcp://[]:1883",
        "tcp://[::1]x",
        "tcp://[::1]:",
        "tcp://[zz::1]",
        "tcp://h/path",
        "mqtts://h:8883/x",
        "tcp://h o",
        "ws://h/a b",
        "ws://",
    ] {
        assert!(matches!(parse(u), Err(UrlError::Malformed(_))), "{u}: {:?}", parse(u));
    }
}

#[test]
fn descriptions() {
    let codes = [
        0, -1, -2, -3, -4, -5, -6, -7, -8, -9, -10, -11, -12, -13, -14, -15, -16, -17, -18, -19, -20, -21, -22, -23, -24, -25,
        -26, -27, -28, -29, -30, -31, -32, -33, -34, -35, 1, 2, 3, 4, 5,
    ];
    let mut seen = std::collections::HashSet::new();
    for c in codes {
        let d = rc::description(c);
        assert_ne!(d, "unknown error", "{c}");
        assert!(seen.insert(d), "distinct text for {c}");
    }
    assert_eq!(rc::description(6), "unknown error");
    assert_eq!(rc::description(-36), "unknown error");
    assert_eq!(rc::description(i32::MIN), "unknown error");
    assert_eq!(rc::description(-12), "no more messages can be buffered");
    assert_eq!(rc::description(5), "connection refused: not authorised");
    assert_eq!(rc::description(1), "connection refused: unacceptable protocol version");
    assert_eq!((rc::NO_MORE_MSGIDS, rc::MAX_BUFFERED_MESSAGES, rc::COMMAND_IGNORED, rc::MAX_BUFFERED_BOUND), (-10, -12, -18, -19));
    for r in [
        LostReason::Closed,
        LostReason::Io,
        LostReason::Dns,
        LostReason::Tls,
        LostReason::Timeout,
        LostReason::KeepAlive,
        LostReason::Protocol,
        LostReason::PacketTooLarge,
        LostReason::OutOfMemory,
        LostReason::Refused,
    ] {
        assert!(!rc::lost_reason_text(r).is_empty());
        let code = rc::lost_reason_code(r);
        assert!(code < 0, "{r:?}");
        assert_ne!(rc::description(code), "unknown error", "{r:?}");
    }
    // every transport failure has its own code, so on_connect says what happened
    assert_eq!(rc::lost_reason_code(LostReason::Dns), rc::DNS_FAILED);
    assert_eq!(rc::lost_reason_code(LostReason::KeepAlive), -24);
}
