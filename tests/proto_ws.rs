//! WebSocket codec: SHA-1/base64 vectors, the upgrade request and response parser, frame
//! encoding, the streaming frame decoder (every error case, split invariance, random
//! input never panics).
#![cfg(feature = "websocket")]

use dl7450_mqtt::proto::codec::Sink;
use dl7450_mqtt::proto::ws::*;

/// xorshift64* PRNG.
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// Cuts `data` into random pieces (empty pieces included).
    fn split<'a>(&mut self, data: &'a [u8]) -> Vec<&'a [u8]> {
        let mut out = vec![];
        let mut pos = 0;
        while pos < data.len() {
            let n = match self.below(4) {
                0 => 0,
                1 => 1,
                2 => self.below(8),
                _ => self.below(300),
            }
            .min(data.len() - pos);
            out.push(&data[pos..pos + n]);
            pos += n;
        }
        out
    }
}

/// A sink recording what was reserved and put.
#[derive(Default)]
struct Rec {
    out: Vec<u8>,
    reserved: Vec<usize>,
    limit: Option<usize>,
}
impl Sink for Rec {
    fn put(&mut self, bytes: &[u8]) -> bool {
        if self.limit.is_some_and(|l| self.out.len() + bytes.len() > l) {
            return false;
        }
        self.out.extend_from_slice(bytes);
        true
    }
    fn reserve(&mut self, len: usize) -> bool {
        self.reserved.push(len);
        self.limit.is_none_or(|l| self.out.len() + len <= l)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ----------------------------------------------------------------------------- SHA-1, base64

#[test]
fn sha1_known_vectors() {
    assert_eq!(hex(&sha1(b"abc")), "a9993e364706816aba3e25717850c26c9cd0d89d");
    assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    assert_eq!(
        hex(&sha1(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
        "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
    );
    assert_eq!(
        hex(&sha1(b"The quick brown fox jumps over the lazy dog")),
        "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12"
    );
    // one million 'a', fed in uneven pieces
    let mut s = Sha1::new();
    let a = [b'a'; 997];
    let mut left = 1_000_000usize;
    while left > 0 {
        let n = left.min(a.len());
        s.update(&a[..n]);
        left -= n;
    }
    assert_eq!(hex(&s.finish()), "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
    // lengths around the padding boundary: incremental equals one-shot
    for len in 50..140 {
        let data: Vec<u8> = (0..len as u8).collect();
        let mut s = Sha1::new();
        for c in data.chunks(7) {
            s.update(c);
        }
        assert_eq!(s.finish(), sha1(&data), "len {len}");
    }
}

#[test]
fn base64_known_vectors() {
    let cases: [(&[u8], &str); 7] = [
        (b"", ""),
        (b"f", "Zg=="),
        (b"fo", "Zm8="),
        (b"foo", "Zm9v"),
        (b"foob", "Zm9vYg=="),
        (b"fooba", "Zm9vYmE="),
        (b"foobar", "Zm9vYmFy"),
    ];
    for (input, want) in cases {
        let mut out = [0u8; 16];
        let n = base64_encode(input, &mut out).unwrap();
        assert_eq!(&out[..n], want.as_bytes());
        // exactly-sized output works, one byte less does not
        let mut exact = vec![0u8; want.len()];
        assert_eq!(base64_encode(input, &mut exact), Some(want.len()));
        if !want.is_empty() {
            let mut short = vec![0u8; want.len() - 1];
            assert_eq!(base64_encode(input, &mut short), None);
        }
    }
    let mut out = [0u8; 4];
    assert_eq!(base64_encode(&[0xfb, 0xff, 0xbf], &mut out), Some(4));
    assert_eq!(&out, b"+/+/");
}

#[test]
fn accept_key_rfc6455_example() {
    let key = b"the sample nonce";
    assert_eq!(&key_base64(key), b"dGhlIHNhbXBsZSBub25jZQ==");
    assert_eq!(&accept_key(key), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

// ----------------------------------------------------------------------------- upgrade request

const KEY: &[u8; 16] = b"the sample nonce";

fn upgrade(host: &str, port: u16, default_port: bool, path: &str) -> Option<String> {
    let mut s = Rec::default();
    if encode_upgrade(&mut s, host, port, default_port, path, KEY) {
        assert_eq!(s.reserved, vec![s.out.len()], "one reserve of the exact length");
        Some(String::from_utf8(s.out).unwrap())
    } else {
        assert!(s.out.is_empty());
        None
    }
}

fn request(host_header: &str, path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: mqtt\r\n\r\n"
    )
}

#[test]
fn upgrade_request_bytes() {
    assert_eq!(
        upgrade("broker.local", 8080, false, "/mqtt").unwrap(),
        request("broker.local:8080", "/mqtt")
    );
    assert_eq!(
        upgrade("broker.local", 80, true, "/mqtt").unwrap(),
        request("broker.local", "/mqtt")
    );
    assert_eq!(
        upgrade("10.0.0.1", 0, false, "/a/b?x=1").unwrap(),
        request("10.0.0.1:0", "/a/b?x=1")
    );
    assert_eq!(upgrade("h", 65535, false, "").unwrap(), request("h:65535", "/"));
    assert_eq!(
        upgrade("::1", 9001, false, "/mqtt").unwrap(),
        request("[::1]:9001", "/mqtt")
    );
    assert_eq!(
        upgrade("fe80::1", 443, true, "/mqtt").unwrap(),
        request("[fe80::1]", "/mqtt")
    );
    assert_eq!(upgrade("[::1]", 9001, false, "/").unwrap(), request("[::1]:9001", "/"));
}

#[test]
fn upgrade_request_refusals() {
    assert_eq!(upgrade("", 80, true, "/"), None);
    assert_eq!(upgrade("a b", 80, true, "/"), None);
    assert_eq!(upgrade("a", 80, true, "/x\r\nEvil: 1"), None);
    assert_eq!(upgrade("a\n", 80, true, "/"), None);
    assert_eq!(upgrade("a", 80, true, "/ x"), None);
    // a full sink refuses at reserve: nothing written
    let mut s = Rec {
        limit: Some(10),
        ..Rec::default()
    };
    assert!(!encode_upgrade(&mut s, "host", 1, false, "/mqtt", KEY));
    assert!(s.out.is_empty());
}

// ----------------------------------------------------------------------------- upgrade response

const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

fn response(lines: &[&str]) -> Vec<u8> {
    let mut s = String::new();
    for l in lines {
        s.push_str(l);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

fn good_lines() -> Vec<String> {
    vec![
        "HTTP/1.1 101 Switching Protocols".into(),
        "Upgrade: websocket".into(),
        "Connection: Upgrade".into(),
        format!("Sec-WebSocket-Accept: {ACCEPT}"),
        "Sec-WebSocket-Protocol: mqtt".into(),
    ]
}

fn parse_all(bytes: &[u8]) -> Result<Option<usize>, WsError> {
    UpgradeParser::new(KEY).feed(bytes)
}

fn parse_lines(lines: &[String]) -> Result<Option<usize>, WsError> {
    let refs: Vec<&str> = lines.iter().map(|s| s.as_str()).collect();
    parse_all(&response(&refs))
}

#[test]
fn response_good() {
    let r = response(&good_lines().iter().map(|s| s.as_str()).collect::<Vec<_>>());
    assert_eq!(parse_all(&r), Ok(Some(r.len())));
    // extra bytes after the header block are left unconsumed
    let mut with_frame = r.clone();
    with_frame.extend_from_slice(&[0x82, 0x02, 0xd0, 0x00]);
    let mut p = UpgradeParser::new(KEY);
    assert_eq!(p.feed(&with_frame), Ok(Some(r.len())));
    assert_eq!(&with_frame[r.len()..], &[0x82, 0x02, 0xd0, 0x00]);
    // once complete, further input is not consumed
    assert_eq!(p.feed(b"xyz"), Ok(Some(0)));
    // every prefix is incomplete
    for k in 0..r.len() {
        assert_eq!(parse_all(&r[..k]), Ok(None), "prefix {k}");
    }
}

#[test]
fn response_variants_accepted() {
    let mosquitto = response(&[
        "HTTP/1.1 101 Switching Protocols",
        "upgrade: WebSocket",
        "connection: keep-alive, upgrade",
        &format!("sec-websocket-accept:{ACCEPT}  "),
        "Sec-WebSocket-Protocol: mqtt",
        "Sec-WebSocket-Extensions: ",
        "Server: some very long server header value that is longer than the line buffer of the parser, \
         which only keeps 128 bytes of a line, and it does not matter because nobody inspects it",
        "X-Very-Long-Name-Xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx: 1",
    ]);
    assert_eq!(parse_all(&mosquitto), Ok(Some(mosquitto.len())));
    // no subprotocol header: accepted
    let mut l = good_lines();
    l.pop();
    assert!(matches!(parse_lines(&l), Ok(Some(_))));
    // the token in a second Connection header
    let mut l = good_lines();
    l[2] = "Connection: keep-alive".into();
    l.push("Connection: Upgrade".into());
    assert!(matches!(parse_lines(&l), Ok(Some(_))));
    // bare LF line ends, HTTP/1.0, status without reason
    let lf = format!("HTTP/1.0 101\nUpgrade: websocket\nConnection: upgrade\nSec-WebSocket-Accept: {ACCEPT}\n\nrest");
    assert_eq!(parse_all(lf.as_bytes()), Ok(Some(lf.len() - 4)));
}

#[test]
fn response_split_at_every_boundary() {
    let mut r = response(&good_lines().iter().map(|s| s.as_str()).collect::<Vec<_>>());
    let header_len = r.len();
    r.extend_from_slice(b"\x82\x00tail");
    for k in 0..=r.len() {
        let mut p = UpgradeParser::new(KEY);
        let (a, b) = r.split_at(k);
        let got = match p.feed(a).unwrap() {
            Some(n) => {
                assert_eq!(p.feed(b), Ok(Some(0)));
                n
            }
            None => k + p.feed(b).unwrap().expect("complete"),
        };
        assert_eq!(got, header_len, "split {k}");
    }
    // byte by byte
    let mut p = UpgradeParser::new(KEY);
    for (i, b) in r.iter().enumerate() {
        match p.feed(std::slice::from_ref(b)).unwrap() {
            None => assert!(i + 1 < header_len),
            Some(n) => {
                assert_eq!((i + 1, n), (header_len, 1));
                break;
            }
        }
    }
}

#[test]
fn response_errors() {
    let with = |i: usize, line: &str| {
        let mut l = good_lines();
        l[i] = line.into();
        parse_lines(&l)
    };
    let without = |i: usize| {
        let mut l = good_lines();
        l.remove(i);
        parse_lines(&l)
    };
    assert_eq!(with(0, "HTTP/1.1 200 OK"), Err(WsError::BadStatus(200)));
    assert_eq!(with(0, "HTTP/1.1 404 Not Found"), Err(WsError::BadStatus(404)));
    assert_eq!(with(0, "HTTP/1.1 999"), Err(WsError::BadStatus(999)));
    // the status is refused as soon as the status line is complete
    assert_eq!(parse_all(b"HTTP/1.1 400 Bad Request\r\n"), Err(WsError::BadStatus(400)));
    assert_eq!(with(0, "HTTP/2 101"), Err(WsError::Malformed));
    assert_eq!(with(0, "HTTP/1.1 10 x"), Err(WsError::Malformed));
    assert_eq!(with(0, "HTTP/1.1 1011"), Err(WsError::Malformed));
    assert_eq!(with(0, "SSH-2.0-OpenSSH"), Err(WsError::Malformed));
    assert_eq!(with(0, ""), Err(WsError::Malformed));
    assert_eq!(
        with(3, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo"),
        Err(WsError::BadAccept)
    );
    assert_eq!(
        with(3, "Sec-WebSocket-Accept: S3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        Err(WsError::BadAccept)
    );
    assert_eq!(without(3), Err(WsError::BadAccept));
    assert_eq!(without(1), Err(WsError::BadUpgrade));
    assert_eq!(with(1, "Upgrade: h2c"), Err(WsError::BadUpgrade));
    assert_eq!(without(2), Err(WsError::BadUpgrade));
    assert_eq!(with(2, "Connection: keep-alive, upgraded"), Err(WsError::BadUpgrade));
    assert_eq!(with(4, "Sec-WebSocket-Protocol: mqttv3.1"), Err(WsError::BadProtocol));
    assert_eq!(with(4, "Sec-WebSocket-Protocol: MQTT"), Err(WsError::BadProtocol));
    assert_eq!(
        with(4, "Sec-WebSocket-Extensions: permessage-deflate"),
        Err(WsError::BadUpgrade)
    );
    assert_eq!(with(4, "no colon here"), Err(WsError::Malformed));
    assert_eq!(with(4, " folded: continuation"), Err(WsError::Malformed));
    // an inspected header longer than the line buffer
    let long = format!("Connection: {}upgrade", "x, ".repeat(50));
    assert_eq!(with(2, &long), Err(WsError::HeaderTooLarge));
    // the whole response over 4 KiB
    let mut l = good_lines();
    for i in 0..60 {
        l.insert(1, format!("X-Filler-{i}: {}", "y".repeat(60)));
    }
    assert_eq!(parse_lines(&l), Err(WsError::HeaderTooLarge));
    let endless = vec![b'a'; 5000];
    let mut p = UpgradeParser::new(KEY);
    assert_eq!(p.feed(b"HTTP/1.1 101 OK\r\nX: "), Ok(None));
    assert_eq!(p.feed(&endless), Err(WsError::HeaderTooLarge));
    // errors are final
    assert_eq!(p.feed(b"\r\n\r\n"), Err(WsError::HeaderTooLarge));
    // a response for another key
    let r = response(&good_lines().iter().map(|s| s.as_str()).collect::<Vec<_>>());
    assert_eq!(
        UpgradeParser::new(b"another nonce!!!").feed(&r),
        Err(WsError::BadAccept)
    );
}

#[test]
fn response_random_bytes_never_panic() {
    let mut rng = Rng::new(11);
    let good = response(&good_lines().iter().map(|s| s.as_str()).collect::<Vec<_>>());
    for _ in 0..3000 {
        let mut data = if rng.below(2) == 0 {
            let n = rng.below(600);
            rng.bytes(n)
        } else {
            // mutate a good response
            let mut g = good.clone();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(g.len());
                g[i] = rng.next() as u8;
            }
            g
        };
        data.extend_from_slice(b"\r\n\r\n");
        let mut p = UpgradeParser::new(KEY);
        let mut fed = 0;
        for piece in rng.split(&data) {
            match p.feed(piece) {
                Ok(None) => fed += piece.len(),
                Ok(Some(n)) => {
                    assert!(n <= piece.len());
                    assert!(fed + n <= data.len());
                    break;
                }
                Err(_) => break,
            }
        }
    }
}

// ----------------------------------------------------------------------------- frame encoding

/// Parses one client frame: (fin, opcode, unmasked payload, frame length).
fn client_frame(b: &[u8]) -> (bool, u8, Vec<u8>, usize) {
    assert_eq!(b[0] & 0x70, 0);
    assert_eq!(b[1] & 0x80, 0x80, "client frames are masked");
    let (len, mut pos) = match b[1] & 0x7f {
        126 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
        127 => (u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize, 10),
        n => (n as usize, 2),
    };
    let mask = &b[pos..pos + 4];
    pos += 4;
    let payload = b[pos..pos + len]
        .iter()
        .enumerate()
        .map(|(i, x)| x ^ mask[i % 4])
        .collect();
    (b[0] & 0x80 != 0, b[0] & 0x0f, payload, pos + len)
}

const M: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

#[test]
fn encode_binary_exact_bytes() {
    // RFC 6455 5.7: masked "Hello"
    let mut s = Rec::default();
    assert!(encode_binary(&mut s, b"Hello", M));
    assert_eq!(
        s.out,
        [0x82, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
    );
    assert_eq!(s.reserved, vec![11]);
    // empty payload
    let mut s = Rec::default();
    assert!(encode_binary(&mut s, b"", M));
    assert_eq!(s.out, [0x82, 0x80, 0x37, 0xfa, 0x21, 0x3d]);
    // length forms: 125 (7-bit), 126 and 65535 (16-bit), 65536 (64-bit)
    for (len, hdr) in [
        (125usize, vec![0x82, 0x80 | 125]),
        (126, vec![0x82, 0xfe, 0x00, 0x7e]),
        (65535, vec![0x82, 0xfe, 0xff, 0xff]),
        (65536, vec![0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0]),
    ] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let mut s = Rec::default();
        assert!(encode_binary(&mut s, &payload, M));
        assert_eq!(&s.out[..hdr.len()], &hdr[..], "len {len}");
        assert_eq!(&s.out[hdr.len()..hdr.len() + 4], &M);
        assert_eq!(client_frame(&s.out), (true, 2, payload, s.out.len()));
        assert_eq!(s.reserved, vec![s.out.len()]);
    }
    // a refusing sink
    let mut s = Rec {
        limit: Some(8),
        ..Rec::default()
    };
    assert!(!encode_binary(&mut s, b"Hello", M));
    assert!(s.out.is_empty());
}

#[test]
fn encode_control_frames() {
    let mut s = Rec::default();
    assert!(encode_pong(&mut s, b"Hello", M));
    assert_eq!(
        s.out,
        [0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
    );
    let mut s = Rec::default();
    assert!(encode_pong(&mut s, &[9; 125], M));
    assert_eq!(client_frame(&s.out), (true, 0xa, vec![9; 125], 131));
    let mut s = Rec::default();
    assert!(!encode_pong(&mut s, &[9; 126], M));
    assert!(s.out.is_empty());
    let mut s = Rec::default();
    assert!(encode_close(&mut s, 1000, [0; 4]));
    assert_eq!(s.out, [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]);
    let mut s = Rec::default();
    assert!(encode_close(&mut s, 1005, M));
    assert_eq!(s.out, [0x88, 0x80, 0x37, 0xfa, 0x21, 0x3d]);
    // header + caller-masked payload, not final
    let mut s = Rec::default();
    assert!(encode_frame_header(&mut s, OP_BINARY, false, 3, [1, 2, 3, 4]));
    let mut p = *b"abc";
    apply_mask(&mut p, [1, 2, 3, 4], 0);
    assert!(s.put(&p));
    assert_eq!(s.reserved, vec![9]);
    assert_eq!(client_frame(&s.out), (false, 2, b"abc".to_vec(), 9));
    assert!(!encode_frame_header(&mut Rec::default(), 16, true, 0, M));
    // apply_mask with an offset continues the mask phase
    let mut whole = *b"0123456789";
    apply_mask(&mut whole, M, 0);
    let mut parts = *b"0123456789";
    let (a, b) = parts.split_at_mut(3);
    apply_mask(a, M, 0);
    apply_mask(b, M, 3);
    assert_eq!(whole, parts);
}

#[test]
fn ws_sink_frames_each_packet() {
    let mut inner = Rec::default();
    let mut k = 0u8;
    {
        let mut ws = WsSink::new(&mut inner, || {
            k += 1;
            [k, k, k, k]
        });
        // a PUBLISH written as reserve + several puts, then a PINGREQ
        assert!(ws.reserve(12));
        assert!(ws.put(&[0x30, 10, 0, 3]));
        assert!(ws.put(b"a/b"));
        assert!(ws.put(b"hello"));
        assert!(ws.reserve(2));
        assert!(ws.put(&[0xc0, 0]));
        // bytes without a reserve form their own frame
        assert!(ws.put(&[0xe0, 0]));
        // a put longer than announced is refused
        assert!(ws.reserve(1));
        assert!(!ws.put(&[1, 2]));
    }
    let out = &inner.out;
    let (f1, n1) = {
        let f = client_frame(out);
        ((f.0, f.1, f.2), f.3)
    };
    assert_eq!(f1, (true, 2, b"\x30\x0a\x00\x03a/bhello".to_vec()));
    assert_eq!(&out[2..6], &[1, 1, 1, 1]);
    let f2 = client_frame(&out[n1..]);
    assert_eq!((f2.0, f2.1, &f2.2[..]), (true, 2, &[0xc0, 0][..]));
    assert_eq!(&out[n1 + 2..n1 + 6], &[2, 2, 2, 2]);
    let f3 = client_frame(&out[n1 + f2.3..]);
    assert_eq!((f3.0, f3.1, &f3.2[..]), (true, 2, &[0xe0, 0][..]));
    assert_eq!(inner.reserved, vec![18, 8, 8, 7]);
}

// ----------------------------------------------------------------------------- frame decoding

#[derive(Debug, PartialEq, Eq, Clone)]
enum Ev {
    Data(Vec<u8>),
    Ping(Vec<u8>),
    Pong,
    Close(u16),
}

/// Feeds the pieces in order, merging adjacent data; stops at the first error.
fn run(dec: &mut FrameDecoder, pieces: &[&[u8]]) -> (Vec<Ev>, Option<WsError>) {
    let mut evs: Vec<Ev> = vec![];
    for p in pieces {
        let mut pos = 0;
        loop {
            let rest = &p[pos..];
            let (n, ev) = match dec.feed(rest) {
                Err(e) => return (evs, Some(e)),
                Ok((n, c)) => {
                    assert!(n <= rest.len());
                    let ev = match c {
                        None => {
                            assert_eq!(n, rest.len(), "None means all consumed");
                            None
                        }
                        Some(WsChunk::Data(d)) => {
                            assert!(!d.is_empty());
                            Some(Ev::Data(d.to_vec()))
                        }
                        Some(WsChunk::Ping(d)) => Some(Ev::Ping(d.to_vec())),
                        Some(WsChunk::Pong) => Some(Ev::Pong),
                        Some(WsChunk::Close(c)) => Some(Ev::Close(c)),
                    };
                    if ev.is_some() {
                        assert!(n > 0, "progress");
                    }
                    (n, ev)
                }
            };
            pos += n;
            match ev {
                None => break,
                Some(Ev::Data(d)) => match evs.last_mut() {
                    Some(Ev::Data(prev)) => prev.extend_from_slice(&d),
                    _ => evs.push(Ev::Data(d)),
                },
                Some(e) => evs.push(e),
            }
        }
    }
    (evs, None)
}

fn run_all(bytes: &[u8]) -> (Vec<Ev>, Option<WsError>) {
    run(&mut FrameDecoder::new(u64::MAX), &[bytes])
}

/// A server frame (unmasked) with the shortest length encoding.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![if fin { 0x80 } else { 0 } | opcode];
    let n = payload.len();
    if n < 126 {
        v.push(n as u8);
    } else if n <= 0xffff {
        v.push(126);
        v.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        v.push(127);
        v.extend_from_slice(&(n as u64).to_be_bytes());
    }
    v.extend_from_slice(payload);
    v
}

fn cat(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

const PUBLISH: &[u8] = b"\x30\x0a\x00\x03a/bhello";
const PINGRESP: &[u8] = &[0xd0, 0x00];
const SUBACK: &[u8] = &[0x90, 0x03, 0x00, 0x01, 0x01];

#[test]
fn decode_single_frame() {
    assert_eq!(
        run_all(&frame(true, 2, PUBLISH)),
        (vec![Ev::Data(PUBLISH.to_vec())], None)
    );
    // chunk slices point into the input, without copy
    let f = frame(true, 2, PUBLISH);
    let mut dec = FrameDecoder::new(u64::MAX);
    match dec.feed(&f) {
        Ok((n, Some(WsChunk::Data(d)))) => {
            assert_eq!(n, f.len());
            assert_eq!(d.as_ptr(), f[2..].as_ptr());
            assert_eq!(d, PUBLISH);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(dec.feed(&[]), Ok((0, None)));
}

#[test]
fn decode_packets_split_across_frames() {
    let stream = [PUBLISH, SUBACK, PINGRESP].concat();
    // cut the MQTT stream at 3, 7 and 13 (inside the packets), one message per piece
    let frames = cat(&[
        frame(true, 2, &stream[..3]),
        frame(true, 2, &stream[3..7]),
        frame(true, 2, &stream[7..13]),
        frame(true, 2, &stream[13..]),
    ]);
    assert_eq!(run_all(&frames), (vec![Ev::Data(stream.clone())], None));
    // exact chunks, one per frame
    let mut dec = FrameDecoder::new(u64::MAX);
    let mut pos = 0;
    let mut chunks = vec![];
    while pos < frames.len() {
        let (n, c) = dec.feed(&frames[pos..]).unwrap();
        match c {
            Some(WsChunk::Data(d)) => chunks.push(d.to_vec()),
            other => panic!("{other:?}"),
        }
        pos += n;
    }
    assert_eq!(
        chunks,
        vec![
            stream[..3].to_vec(),
            stream[3..7].to_vec(),
            stream[7..13].to_vec(),
            stream[13..].to_vec()
        ]
    );
}

#[test]
fn decode_several_packets_in_one_frame() {
    let stream = [PUBLISH, SUBACK, PINGRESP, PUBLISH].concat();
    let f = frame(true, 2, &stream);
    assert_eq!(run_all(&f), (vec![Ev::Data(stream.clone())], None));
    // and a frame following in the same input
    let two = cat(&[f, frame(true, 2, PINGRESP)]);
    let mut dec = FrameDecoder::new(u64::MAX);
    let (n, c) = dec.feed(&two).unwrap();
    assert_eq!((n, c), (2 + stream.len(), Some(WsChunk::Data(&stream[..]))));
    assert_eq!(dec.feed(&two[n..]), Ok((4, Some(WsChunk::Data(PINGRESP)))));
}

#[test]
fn decode_fragmented_message_with_ping_between() {
    let bytes = cat(&[
        frame(false, 2, &PUBLISH[..4]),
        frame(true, 9, b"are you there"),
        frame(false, 0, &PUBLISH[4..]),
        frame(false, 0, b""),
        frame(true, 0xA, b""),
        frame(true, 0, PINGRESP),
        frame(true, 2, SUBACK),
        frame(true, 8, &[0x03, 0xe8, b'b', b'y', b'e']),
    ]);
    let (evs, err) = run_all(&bytes);
    assert_eq!(
        evs,
        vec![
            Ev::Data(PUBLISH[..4].to_vec()),
            Ev::Ping(b"are you there".to_vec()),
            Ev::Data(PUBLISH[4..].to_vec()),
            Ev::Pong,
            Ev::Data([PINGRESP, SUBACK].concat()),
            Ev::Close(1000),
        ]
    );
    assert_eq!(err, Some(WsError::Closed(1000)));
    // the ping payload answered with a pong
    let mut dec = FrameDecoder::new(u64::MAX);
    let (n, _) = dec.feed(&bytes).unwrap();
    let mut out = Rec::default();
    match dec.feed(&bytes[n..]) {
        Ok((_, Some(WsChunk::Ping(p)))) => assert!(encode_pong(&mut out, p, M)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        client_frame(&out.out),
        (true, 0xA, b"are you there".to_vec(), out.out.len())
    );
}

#[test]
fn decode_control_frames() {
    assert_eq!(run_all(&frame(true, 9, b"")), (vec![Ev::Ping(vec![])], None));
    assert_eq!(
        run_all(&frame(true, 9, &[7; 125])),
        (vec![Ev::Ping(vec![7; 125])], None)
    );
    assert_eq!(run_all(&frame(true, 10, b"xyz")), (vec![Ev::Pong], None));
    assert_eq!(
        run_all(&frame(true, 8, b"")),
        (vec![Ev::Close(1005)], Some(WsError::Closed(1005)))
    );
    assert_eq!(
        run_all(&frame(true, 8, &[0x03, 0xf1])),
        (vec![Ev::Close(1009)], Some(WsError::Closed(1009)))
    );
    // after close, everything is refused
    let mut dec = FrameDecoder::new(u64::MAX);
    assert_eq!(
        dec.feed(&frame(true, 8, &[0x03, 0xe8])),
        Ok((4, Some(WsChunk::Close(1000))))
    );
    assert_eq!(dec.feed(&frame(true, 2, b"x")), Err(WsError::Closed(1000)));
    assert_eq!(dec.feed(&[]), Err(WsError::Closed(1000)));
}

#[test]
fn decode_16_and_64_bit_lengths() {
    for len in [126usize, 1000, 65535, 65536, 300_000] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let f = frame(true, 2, &payload);
        assert_eq!(f.len() - len, if len <= 65535 { 4 } else { 10 });
        assert_eq!(run_all(&f), (vec![Ev::Data(payload.clone())], None), "len {len}");
        let mut rng = Rng::new(len as u64);
        let pieces = rng.split(&f);
        assert_eq!(
            run(&mut FrameDecoder::new(u64::MAX), &pieces),
            (vec![Ev::Data(payload)], None)
        );
    }
    // non-minimal length encodings are accepted
    let mut f = vec![0x82, 126, 0, 3];
    f.extend_from_slice(b"abc");
    f.extend_from_slice(&[0x82, 127, 0, 0, 0, 0, 0, 0, 0, 2, b'd', b'e']);
    assert_eq!(run_all(&f), (vec![Ev::Data(b"abcde".to_vec())], None));
}

#[test]
fn decode_limit() {
    let ok = frame(true, 2, &[1; 1000]);
    assert_eq!(
        run(&mut FrameDecoder::new(1000), &[&ok]),
        (vec![Ev::Data(vec![1; 1000])], None)
    );
    let big = frame(true, 2, &[1; 1001]);
    assert_eq!(
        run(&mut FrameDecoder::new(1000), &[&big]),
        (vec![], Some(WsError::FrameTooLarge))
    );
    let huge = [0x82, 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    assert_eq!(
        run(&mut FrameDecoder::new(1 << 40), &[&huge]),
        (vec![], Some(WsError::FrameTooLarge))
    );
    // the limit is per frame: a long message in small frames passes
    let frames = cat(&[frame(false, 2, &[1; 800]), frame(true, 0, &[2; 800])]);
    let (evs, err) = run(&mut FrameDecoder::new(1000), &[&frames]);
    assert_eq!(err, None);
    assert_eq!(evs, vec![Ev::Data([vec![1; 800], vec![2; 800]].concat())]);
}

#[test]
fn decode_errors() {
    let cases: Vec<(Vec<u8>, Vec<Ev>, WsError)> = vec![
        (vec![0xc2, 0x00], vec![], WsError::ReservedBits),
        (vec![0xa2, 0x00], vec![], WsError::ReservedBits),
        (vec![0x92, 0x00], vec![], WsError::ReservedBits),
        (frame(true, 1, b"text"), vec![], WsError::BadOpcode),
        (frame(true, 3, b""), vec![], WsError::BadOpcode),
        (frame(true, 7, b""), vec![], WsError::BadOpcode),
        (frame(true, 0xB, b""), vec![], WsError::BadOpcode),
        (frame(true, 0xF, b""), vec![], WsError::BadOpcode),
        (frame(true, 9, &[0; 126]), vec![], WsError::ControlTooLong),
        (
            vec![0x88, 127, 0, 0, 0, 0, 0, 0, 0, 2, 3, 232],
            vec![],
            WsError::ControlTooLong,
        ),
        (frame(false, 9, b""), vec![], WsError::FragmentedControl),
        (frame(false, 8, &[3, 232]), vec![], WsError::FragmentedControl),
        (frame(true, 0, b"x"), vec![], WsError::UnexpectedContinuation),
        (
            cat(&[frame(true, 2, b"a"), frame(true, 0, b"b")]),
            vec![Ev::Data(b"a".to_vec())],
            WsError::UnexpectedContinuation,
        ),
        (
            cat(&[frame(false, 2, b"a"), frame(true, 2, b"b")]),
            vec![Ev::Data(b"a".to_vec())],
            WsError::ExpectedContinuation,
        ),
        (vec![0x82, 0x81, 1, 2, 3, 4, 5], vec![], WsError::MaskedFromServer),
        (vec![0x89, 0x80, 1, 2, 3, 4], vec![], WsError::MaskedFromServer),
        (vec![0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1], vec![], WsError::Malformed),
        (frame(true, 8, &[3]), vec![], WsError::Malformed),
        (
            cat(&[
                frame(true, 2, PINGRESP),
                frame(true, 8, &[0x0f, 0xa0, b'x']),
                frame(true, 2, b"more"),
            ]),
            vec![Ev::Data(PINGRESP.to_vec()), Ev::Close(4000)],
            WsError::Closed(4000),
        ),
    ];
    for (bytes, evs, err) in cases {
        let mut dec = FrameDecoder::new(u64::MAX);
        assert_eq!(run(&mut dec, &[&bytes]), (evs.clone(), Some(err)), "{bytes:02x?}");
        // errors are final
        assert_eq!(dec.feed(&frame(true, 2, b"ok")), Err(err));
        // and independent of how the input is split
        for k in 0..=bytes.len() {
            let (a, b) = bytes.split_at(k);
            assert_eq!(
                run(&mut FrameDecoder::new(u64::MAX), &[a, b]),
                (evs.clone(), Some(err)),
                "split {k}"
            );
        }
    }
    for e in [
        WsError::BadStatus(1),
        WsError::Closed(1000),
        WsError::ExpectedContinuation,
        WsError::Malformed,
    ] {
        assert!(!e.text().is_empty());
    }
}

/// A random valid frame stream and the events it must produce.
fn random_stream(rng: &mut Rng) -> (Vec<u8>, Vec<Ev>) {
    let mut bytes = vec![];
    let mut evs: Vec<Ev> = vec![];
    let push = |evs: &mut Vec<Ev>, e: Ev| match (evs.last_mut(), e) {
        (_, Ev::Data(d)) if d.is_empty() => {}
        (Some(Ev::Data(prev)), Ev::Data(d)) => prev.extend_from_slice(&d),
        (_, e) => evs.push(e),
    };
    for _ in 0..1 + rng.below(6) {
        // one message in 1..4 fragments, controls in between
        let nfrag = 1 + rng.below(4);
        for f in 0..nfrag {
            let len = match rng.below(10) {
                0 => 0,
                1 => 126 + rng.below(400),
                _ => rng.below(40),
            };
            let payload = rng.bytes(len);
            bytes.extend(frame(f + 1 == nfrag, if f == 0 { 2 } else { 0 }, &payload));
            push(&mut evs, Ev::Data(payload));
            if rng.below(3) == 0 {
                let n = rng.below(126);
                let p = rng.bytes(n);
                if rng.below(2) == 0 {
                    bytes.extend(frame(true, 9, &p));
                    push(&mut evs, Ev::Ping(p));
                } else {
                    bytes.extend(frame(true, 10, &p));
                    push(&mut evs, Ev::Pong);
                }
            }
        }
    }
    if rng.below(2) == 0 {
        let code = rng.next() as u16;
        bytes.extend(frame(true, 8, &code.to_be_bytes()));
        push(&mut evs, Ev::Close(code));
    }
    (bytes, evs)
}

#[test]
fn decode_any_split_gives_same_result() {
    let mut rng = Rng::new(42);
    for _ in 0..300 {
        let (bytes, want) = random_stream(&mut rng);
        let want_err = match want.last() {
            Some(Ev::Close(c)) => Some(WsError::Closed(*c)),
            _ => None,
        };
        assert_eq!(run_all(&bytes), (want.clone(), want_err));
        for _ in 0..5 {
            let pieces = rng.split(&bytes);
            assert_eq!(run(&mut FrameDecoder::new(u64::MAX), &pieces), (want.clone(), want_err));
        }
    }
    // every split point of one stream with every frame kind
    let bytes = cat(&[
        frame(false, 2, &PUBLISH[..5]),
        frame(true, 9, b"p"),
        frame(true, 0, &PUBLISH[5..]),
        frame(true, 2, &[7; 300]),
        frame(true, 10, b""),
        frame(true, 2, SUBACK),
    ]);
    let (want, err) = run_all(&bytes);
    assert_eq!(err, None);
    assert_eq!(
        want,
        vec![
            Ev::Data(PUBLISH[..5].to_vec()),
            Ev::Ping(b"p".to_vec()),
            Ev::Data([&PUBLISH[5..], &[7; 300][..]].concat()),
            Ev::Pong,
            Ev::Data(SUBACK.to_vec())
        ]
    );
    for k in 0..=bytes.len() {
        for j in k..=bytes.len().min(k + 12) {
            let pieces = [&bytes[..k], &bytes[k..j], &bytes[j..]];
            assert_eq!(
                run(&mut FrameDecoder::new(u64::MAX), &pieces),
                (want.clone(), None),
                "split {k} {j}"
            );
        }
    }
}

#[test]
fn decode_random_bytes_never_panic() {
    let mut rng = Rng::new(7);
    for i in 0..20_000 {
        let n = rng.below(200);
        let mut data = rng.bytes(n);
        // bias towards plausible headers so deeper states are reached
        if i % 2 == 0 && !data.is_empty() {
            data[0] = [0x82, 0x02, 0x80, 0x00, 0x89, 0x8a, 0x88][rng.below(7)];
            if data.len() > 1 {
                data[1] &= if rng.below(2) == 0 { 0x7f } else { 0x0f };
            }
        }
        let max = [0, 10, 1000, u64::MAX][rng.below(4)];
        let pieces = rng.split(&data);
        let mut dec = FrameDecoder::new(max);
        let (_, err) = run(&mut dec, &pieces);
        if let Some(e) = err {
            assert_eq!(dec.feed(b"\x82\x00"), Err(e));
        }
    }
}

#[test]
fn state_sizes() {
    // fixed-size state, small enough for a microcontroller (sizes on a 64-bit host)
    let (d, p) = (
        std::mem::size_of::<FrameDecoder>(),
        std::mem::size_of::<UpgradeParser>(),
    );
    assert!(d <= 200 && p <= 200, "FrameDecoder {d}, UpgradeParser {p}");
}

#[test]
fn decode_unconsume() {
    let bytes = cat(&[
        frame(true, 2, b"abcdef"),
        frame(true, 9, b"p"),
        frame(false, 2, b"gh"),
        frame(true, 0, b"ij"),
    ]);
    let mut dec = FrameDecoder::new(u64::MAX);
    let mut pos = 0;
    let mut got: Vec<Ev> = vec![];
    let mut gave_back = false;
    while pos < bytes.len() {
        let (n, c) = dec.feed(&bytes[pos..]).unwrap();
        pos += n;
        match c {
            // take only the first byte of every chunk the first time it is seen
            Some(WsChunk::Data(d)) if d.len() > 1 && !gave_back => {
                got.push(Ev::Data(d[..1].to_vec()));
                let r = d.len() - 1;
                assert!(dec.unconsume(r));
                pos -= r;
                gave_back = true;
            }
            Some(WsChunk::Data(d)) => {
                got.push(Ev::Data(d.to_vec()));
                gave_back = false;
            }
            Some(WsChunk::Ping(p)) => {
                got.push(Ev::Ping(p.to_vec()));
                assert!(!dec.unconsume(1), "only after Data");
                assert!(dec.unconsume(0));
            }
            other => panic!("{other:?}"),
        }
    }
    let data = |s: &[u8]| Ev::Data(s.to_vec());
    assert_eq!(
        got,
        vec![
            data(b"a"),
            data(b"bcdef"),
            Ev::Ping(b"p".to_vec()),
            data(b"g"),
            data(b"h"),
            data(b"i"),
            data(b"j")
        ]
    );
    // more than the chunk, or twice the whole chunk: refused
    let f = frame(true, 2, b"xyz");
    let mut dec = FrameDecoder::new(u64::MAX);
    assert_eq!(dec.feed(&f[..4]), Ok((4, Some(WsChunk::Data(b"xy")))));
    assert!(!dec.unconsume(3));
    assert!(dec.unconsume(1));
    assert!(dec.unconsume(1));
    assert!(!dec.unconsume(1));
    assert_eq!(dec.feed(&f[2..]), Ok((3, Some(WsChunk::Data(b"xyz")))));
    assert_eq!(dec.feed(b"\x82\x00"), Ok((2, None)));
}
