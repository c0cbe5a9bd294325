//! Return codes of the `mqtt` module (`MqttError.errno`, negative `rc` values), numbered as
//! in the Eclipse Paho asynchronous C client and in `shared/API.md`.

use super::engine::LostReason;

pub const OK: i32 = 0;
pub const FAILURE: i32 = -1;
pub const PERSISTENCE_ERROR: i32 = -2;
pub const DISCONNECTED: i32 = -3;
pub const MAX_MESSAGES_INFLIGHT: i32 = -4;
pub const BAD_UTF8_STRING: i32 = -5;
pub const NULL_PARAMETER: i32 = -6;
pub const TOPICNAME_TRUNCATED: i32 = -7;
pub const BAD_STRUCTURE: i32 = -8;
pub const BAD_QOS: i32 = -9;
pub const NO_MORE_MSGIDS: i32 = -10;
pub const OPERATION_INCOMPLETE: i32 = -11;
pub const MAX_BUFFERED_MESSAGES: i32 = -12;
pub const SSL_NOT_SUPPORTED: i32 = -13;
pub const BAD_PROTOCOL: i32 = -14;
pub const BAD_MQTT_OPTION: i32 = -15;
pub const WRONG_MQTT_VERSION: i32 = -16;
pub const ZERO_LENGTH_WILL_TOPIC: i32 = -17;
pub const COMMAND_IGNORED: i32 = -18;
pub const MAX_BUFFERED_BOUND: i32 = -19;

// Additions of this module (below Paho's range): why a connection attempt
// failed or a connection was lost, so that `on_connect(rc)` and
// `ErrorDescription(rc)` say what happened. -1 stays the generic failure.
pub const DNS_FAILED: i32 = -20;
pub const CONNECT_FAILED: i32 = -21;
pub const CONNECTION_CLOSED: i32 = -22;
pub const CONNACK_TIMEOUT: i32 = -23;
pub const KEEPALIVE_TIMEOUT: i32 = -24;
pub const PROTOCOL_ERROR: i32 = -25;
pub const PACKET_TOO_LARGE: i32 = -26;
pub const OUT_OF_MEMORY: i32 = -27;
pub const TLS_HANDSHAKE_FAILED: i32 = -28;
pub const TLS_CERT_NOT_TRUSTED: i32 = -29;
pub const TLS_NAME_MISMATCH: i32 = -30;
pub const TLS_PEER_REJECTED: i32 = -31;
pub const TLS_NO_TRUST_STORE: i32 = -32;
pub const WEBSOCKET_FAILED: i32 = -33;
pub const TLS_CERT_EXPIRED: i32 = -34;
/// `on_publish` (and the engine's `Published`) for a request given up because the broker
/// closed the connection on it again and again (`Config::poison_retries` times in a row).
pub const MESSAGE_REFUSED: i32 = -35;

/// CONNACK return codes (positive `rc` of `on_connect`).
pub const CONNACK_UNACCEPTABLE_PROTOCOL_VERSION: i32 = 1;
pub const CONNACK_IDENTIFIER_REJECTED: i32 = 2;
pub const CONNACK_SERVER_UNAVAILABLE: i32 = 3;
pub const CONNACK_BAD_USERNAME_OR_PASSWORD: i32 = 4;
pub const CONNACK_NOT_AUTHORISED: i32 = 5;

/// Human-readable text for every code above and for the CONNACK codes 1..5;
/// "unknown error" for anything else. Never panics.
pub fn description(code: i32) -> &'static str {
    match code {
        OK => "no error",
        FAILURE => "generic error",
        PERSISTENCE_ERROR => "persistence error",
        DISCONNECTED => "the client is disconnected",
        MAX_MESSAGES_INFLIGHT => "the maximum number of in-flight messages has been reached",
        BAD_UTF8_STRING => "invalid UTF-8 string",
        NULL_PARAMETER => "invalid None value provided",
        TOPICNAME_TRUNCATED => "topic contains a NUL character",
        BAD_STRUCTURE => "bad structure (malformed argument)",
        BAD_QOS => "invalid QoS value",
        NO_MORE_MSGIDS => "no more message ids",
        OPERATION_INCOMPLETE => "operation discarded before completion",
        MAX_BUFFERED_MESSAGES => "no more messages can be buffered",
        SSL_NOT_SUPPORTED => "TLS is not supported by this build",
        BAD_PROTOCOL => "bad protocol (scheme) in URL",
        BAD_MQTT_OPTION => "bad MQTT option",
        WRONG_MQTT_VERSION => "wrong MQTT version",
        ZERO_LENGTH_WILL_TOPIC => "zero-length will topic",
        COMMAND_IGNORED => "connect or disconnect command ignored",
        MAX_BUFFERED_BOUND => "invalid bound on buffered messages",
        DNS_FAILED => "host name lookup failed",
        CONNECT_FAILED => "TCP connection failed (refused, unreachable or reset)",
        CONNECTION_CLOSED => "connection closed by the broker",
        CONNACK_TIMEOUT => "no CONNACK from the broker in time",
        KEEPALIVE_TIMEOUT => "keep-alive timeout: the broker stopped answering",
        PROTOCOL_ERROR => "protocol error: malformed or unexpected packet from the broker",
        PACKET_TOO_LARGE => "incoming packet larger than the client accepts",
        OUT_OF_MEMORY => "out of memory",
        TLS_HANDSHAKE_FAILED => "TLS handshake failed",
        TLS_CERT_NOT_TRUSTED => "TLS: the broker's certificate is not trusted (verification failed)",
        TLS_NAME_MISMATCH => "TLS: the broker's certificate does not match the host name",
        TLS_PEER_REJECTED => "TLS: the broker closed or rejected the handshake (client certificate missing or refused?)",
        TLS_NO_TRUST_STORE => "TLS: no trust_store given and no platform CA bundle",
        WEBSOCKET_FAILED => "WebSocket: upgrade refused or WebSocket protocol error",
        TLS_CERT_EXPIRED => "TLS: the broker's certificate has expired or is not yet valid",
        MESSAGE_REFUSED => "message given up: the broker closed the connection on it each time it was sent",
        CONNACK_UNACCEPTABLE_PROTOCOL_VERSION => "connection refused: unacceptable protocol version",
        CONNACK_IDENTIFIER_REJECTED => "connection refused: identifier rejected",
        CONNACK_SERVER_UNAVAILABLE => "connection refused: server unavailable",
        CONNACK_BAD_USERNAME_OR_PASSWORD => "connection refused: bad user name or password",
        CONNACK_NOT_AUTHORISED => "connection refused: not authorised",
        _ => "unknown error",
    }
}

/// The code `on_connect` reports for a failed attempt or a lost connection.
pub fn lost_reason_code(reason: LostReason) -> i32 {
    match reason {
        LostReason::Closed => CONNECTION_CLOSED,
        LostReason::Io => CONNECT_FAILED,
        LostReason::Dns => DNS_FAILED,
        LostReason::Tls => TLS_HANDSHAKE_FAILED,
        LostReason::Timeout => CONNACK_TIMEOUT,
        LostReason::KeepAlive => KEEPALIVE_TIMEOUT,
        LostReason::Protocol => PROTOCOL_ERROR,
        LostReason::PacketTooLarge => PACKET_TOO_LARGE,
        LostReason::OutOfMemory => OUT_OF_MEMORY,
        LostReason::Refused => FAILURE,
    }
}

/// Explains why a connection attempt failed or an established connection was lost
/// (the `reason` of an `Event::Connect` with `rc == -1`).
pub fn lost_reason_text(reason: LostReason) -> &'static str {
    match reason {
        LostReason::Closed => "connection closed by the broker",
        LostReason::Io => "network error",
        LostReason::Dns => "host name lookup failed",
        LostReason::Tls => "TLS failure",
        LostReason::Timeout => "connection attempt timed out (no CONNACK)",
        LostReason::KeepAlive => "keep-alive timeout (no PINGRESP)",
        LostReason::Protocol => "protocol error (malformed or unexpected packet)",
        LostReason::PacketTooLarge => "incoming packet too large",
        LostReason::OutOfMemory => "out of memory",
        LostReason::Refused => "connection refused by the broker",
    }
}

/// The code for a failed TLS handshake, from the text of the exception the
/// firmware's `tls` module raised. With mbedtls that is the certificate
/// verification report (one line per failed check, the words of mbedtls's
/// `x509_crt_verify_info`, the same in 2.x and 3.x) or the name of an mbedtls
/// error (short as `MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE` or long as
/// "SSL - A fatal alert message was received from our peer").
///
/// A report may list several failures; the most fundamental one decides: a
/// chain that is not trusted says nothing about its validity dates or names,
/// and a certificate out of its validity period is refused whatever it names.
/// So [`TLS_NAME_MISMATCH`] only when the name or address is the only failure.
pub fn tls_failure(text: &[u8]) -> i32 {
    let has = |needle: &[u8]| text.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle));
    let any = |needles: &[&[u8]]| needles.iter().any(|n| has(n));
    if any(&[
        b"not correctly signed",   // BADCERT_NOT_TRUSTED
        b"not trusted",
        b"revoked",                // BADCERT_REVOKED
        b"certificate was missing", // BADCERT_MISSING
        b"unacceptable",           // BADCERT_BAD_MD, _BAD_PK, _BAD_KEY
        b"keyUsage",               // BADCERT_KEY_USAGE, _EXT_KEY_USAGE
        b"CERT_VERIFY_FAILED",     // verification failed, no report
        b"Certificate verification failed",
    ]) {
        TLS_CERT_NOT_TRUSTED
    } else if any(&[b"expired", b"in the future"]) {
        // BADCERT_EXPIRED, BADCERT_FUTURE
        TLS_CERT_EXPIRED
    } else if any(&[b"Common Name", b"CN_MISMATCH", b"expected CN"]) {
        // BADCERT_CN_MISMATCH: neither a DNS name nor an address of the certificate
        TLS_NAME_MISMATCH
    } else if any(&[b"alert", b"OSError: "]) {
        // a fatal alert from the broker, or the broker closing or resetting the handshake
        TLS_PEER_REJECTED
    } else {
        TLS_HANDSHAKE_FAILED
    }
}
