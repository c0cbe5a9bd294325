//! Broker URL parsing: `scheme://host[:port][/path]`.
//!
//! Decisions (see also `shared/API.md`):
//! - The scheme is case-insensitive and must be one of `tcp`, `mqtt` (port 1883), `ssl`,
//!   `mqtts` (8883, TLS), `ws` (80), `wss` (443, TLS). A URL without `://` (for example
//!   `localhost:1883`) or with any other scheme is [`UrlError::BadScheme`] (rc -14), as in Paho.
//! - The host is a name (letters, digits, `-`, `.`, `_`), an IPv4 address, or an IPv6
//!   address in brackets (`[::1]`, returned without the brackets). An unbracketed host
//!   containing `:` twice is malformed. No host is malformed.
//! - The port is 1..=65535 in decimal (at most 5 digits); `:` followed by nothing, `0`,
//!   anything above 65535 or a non-digit is malformed.
//! - User info (`user@host`) is malformed: credentials go in the connect options.
//! - The path is kept only for `ws`/`wss` (default `/mqtt`, otherwise everything from the
//!   first `/`, query included). For the TCP schemes only an empty path or a lone `/` is
//!   accepted; anything else is malformed (there is no use for it, and silently dropping it
//!   would hide a mistake).

/// A broker URL scheme.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scheme {
    Tcp,
    Mqtt,
    Ssl,
    Mqtts,
    Ws,
    Wss,
}

impl Scheme {
    /// `ssl`, `mqtts` and `wss` use TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, Scheme::Ssl | Scheme::Mqtts | Scheme::Wss)
    }
    /// `ws` and `wss` carry MQTT over WebSocket.
    pub fn is_websocket(&self) -> bool {
        matches!(self, Scheme::Ws | Scheme::Wss)
    }
    /// 1883, 8883, 80 or 443.
    pub fn default_port(&self) -> u16 {
        match self {
            Scheme::Tcp | Scheme::Mqtt => 1883,
            Scheme::Ssl | Scheme::Mqtts => 8883,
            Scheme::Ws => 80,
            Scheme::Wss => 443,
        }
    }
    fn from_name(name: &str) -> Option<Scheme> {
        const NAMES: [(&str, Scheme); 6] = [
            ("tcp", Scheme::Tcp),
            ("mqtt", Scheme::Mqtt),
            ("ssl", Scheme::Ssl),
            ("mqtts", Scheme::Mqtts),
            ("ws", Scheme::Ws),
            ("wss", Scheme::Wss),
        ];
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, s)| *s)
    }
}

/// A parsed broker URL, borrowing from the input.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BrokerUrl<'a> {
    pub scheme: Scheme,
    /// Host name or address; an IPv6 address without its brackets.
    pub host: &'a str,
    pub port: u16,
    /// `/mqtt` by default for ws/wss; always "" for the TCP schemes.
    pub path: &'a str,
}

/// Why a URL was rejected.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum UrlError {
    /// Missing or unknown scheme: `MqttError` -14 (`rc::BAD_PROTOCOL`).
    BadScheme,
    /// Anything else: `ValueError` with this text.
    Malformed(&'static str),
}

impl UrlError {
    /// The module's error code for a bad scheme (-14); `None` for a malformed URL (ValueError).
    pub fn rc(&self) -> Option<i32> {
        match self {
            UrlError::BadScheme => Some(super::rc::BAD_PROTOCOL),
            UrlError::Malformed(_) => None,
        }
    }
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_'
}

fn is_ipv6_char(c: u8) -> bool {
    c.is_ascii_hexdigit() || c == b':' || c == b'.'
}

fn parse_port(s: &str) -> Result<u16, UrlError> {
    if s.is_empty() {
        return Err(UrlError::Malformed("empty port"));
    }
    if s.len() > 5 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err(UrlError::Malformed("port must be a number in 1..65535"));
    }
    let mut v: u32 = 0;
    for c in s.bytes() {
        v = v * 10 + u32::from(c - b'0');
    }
    if v == 0 || v > 65535 {
        return Err(UrlError::Malformed("port must be a number in 1..65535"));
    }
    u16::try_from(v).map_err(|_| UrlError::Malformed("port must be a number in 1..65535"))
}

/// Where byte `b` first occurs in `s` (a byte loop: `str`'s char searchers
/// cost flash on a microcontroller).
fn pos(s: &str, b: u8) -> Option<usize> {
    s.bytes().position(|c| c == b)
}

/// Parses `scheme://host[:port][/path]`.
pub fn parse(url: &str) -> Result<BrokerUrl<'_>, UrlError> {
    // a byte search: `str::find` with a `&str` pattern pulls in the two-way searcher
    let sep = url.as_bytes().windows(3).position(|w| w == b"://").ok_or(UrlError::BadScheme)?;
    let scheme_name = url.get(..sep).ok_or(UrlError::BadScheme)?;
    let scheme = Scheme::from_name(scheme_name).ok_or(UrlError::BadScheme)?;
    let rest = url.get(sep + 3..).ok_or(UrlError::Malformed("no host"))?;
    let (authority, path) = match pos(rest, b'/') {
        Some(i) => (
            rest.get(..i).ok_or(UrlError::Malformed("bad URL"))?,
            rest.get(i..).ok_or(UrlError::Malformed("bad URL"))?,
        ),
        None => (rest, ""),
    };
    if pos(authority, b'@').is_some() {
        return Err(UrlError::Malformed("user info in URL is not supported"));
    }
    let (host, port_str) = if let Some(inner) = authority.strip_prefix('[') {
        let close = pos(inner, b']').ok_or(UrlError::Malformed("unterminated IPv6 address"))?;
        let host = inner.get(..close).ok_or(UrlError::Malformed("bad IPv6 address"))?;
        let after = inner.get(close + 1..).ok_or(UrlError::Malformed("bad IPv6 address"))?;
        if host.is_empty() || pos(host, b':').is_none() || !host.bytes().all(is_ipv6_char) {
            return Err(UrlError::Malformed("bad IPv6 address"));
        }
        let port = if after.is_empty() {
            None
        } else if let Some(p) = after.strip_prefix(':') {
            Some(p)
        } else {
            return Err(UrlError::Malformed("unexpected text after IPv6 address"));
        };
        (host, port)
    } else {
        let (host, port) = match pos(authority, b':') {
            Some(i) => (authority.get(..i).unwrap_or(""), authority.get(i + 1..)),
            None => (authority, None),
        };
        if port.is_some_and(|p| pos(p, b':').is_some()) {
            return Err(UrlError::Malformed("IPv6 address must be in brackets"));
        }
        if !host.is_empty() && !host.bytes().all(is_name_char) {
            return Err(UrlError::Malformed("invalid character in host"));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(UrlError::Malformed("no host"));
    }
    let port = match port_str {
        Some(p) => parse_port(p)?,
        None => scheme.default_port(),
    };
    if path.bytes().any(|c| c <= b' ' || c == 0x7f) {
        return Err(UrlError::Malformed("invalid character in path"));
    }
    let path = if scheme.is_websocket() {
        if path.is_empty() {
            "/mqtt"
        } else {
            path
        }
    } else if path.is_empty() || path == "/" {
        ""
    } else {
        return Err(UrlError::Malformed("a path is only allowed for ws:// and wss://"));
    };
    Ok(BrokerUrl {
        scheme,
        host,
        port,
        path,
    })
}
