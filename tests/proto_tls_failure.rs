//! Which code a failed TLS handshake gets, from the text of the `tls` module's
//! exception: reports of mbedtls 3.6 (the firmware's) and of 2.28 (a port on
//! an older mbedtls), one failure and several at once.
use dl7450_mqtt::proto::rc::{self, tls_failure};

const NOT_SIGNED: &str = "The certificate is not correctly signed by the trusted CA";
const CN: &str = "The certificate Common Name (CN) does not match with the expected CN";
const EXPIRED: &str = "The certificate validity has expired";
const FUTURE: &str = "The certificate validity starts in the future";

/// The text the firmware records for `ValueError(report)`, one line per flag.
fn report(lines: &[&str]) -> String {
    let mut s = String::from("ValueError: ");
    for l in lines {
        s.push('\n');
        s.push_str(l);
        s.push('\n');
    }
    s
}

fn code(text: &str) -> i32 {
    tls_failure(text.as_bytes())
}

#[test]
fn one_failure_each() {
    assert_eq!(code(&report(&[NOT_SIGNED])), rc::TLS_CERT_NOT_TRUSTED);
    assert_eq!(code(&report(&[CN])), rc::TLS_NAME_MISMATCH);
    assert_eq!(code(&report(&[EXPIRED])), rc::TLS_CERT_EXPIRED);
    assert_eq!(code(&report(&[FUTURE])), rc::TLS_CERT_EXPIRED);
    assert_eq!(code(&report(&["The certificate has been revoked (is on a CRL)"])), rc::TLS_CERT_NOT_TRUSTED);
    assert_eq!(code(&report(&["Usage does not match the extendedKeyUsage extension"])), rc::TLS_CERT_NOT_TRUSTED);
    assert_eq!(
        code(&report(&["The certificate is signed with an unacceptable key (eg bad curve, RSA too short)."])),
        rc::TLS_CERT_NOT_TRUSTED
    );
}

#[test]
fn mismatch_only_when_it_is_the_only_failure() {
    // an untrusted chain decides, whatever else the report says
    assert_eq!(code(&report(&[CN, NOT_SIGNED])), rc::TLS_CERT_NOT_TRUSTED);
    assert_eq!(code(&report(&[EXPIRED, NOT_SIGNED])), rc::TLS_CERT_NOT_TRUSTED);
    assert_eq!(code(&report(&[EXPIRED, CN, NOT_SIGNED])), rc::TLS_CERT_NOT_TRUSTED);
    // a trusted chain out of its validity period: expired, even for another name
    assert_eq!(code(&report(&[EXPIRED, CN])), rc::TLS_CERT_EXPIRED);
}

#[test]
fn whole_report_fits_the_firmware_buffer() {
    // the longest report of the flags above, as the firmware records it
    let text = report(&[EXPIRED, CN, NOT_SIGNED]);
    assert!(text.len() <= 12 + 256, "{}", text.len());
}

#[test]
fn mbedtls_error_names_short_and_long() {
    // MicroPython's short error names (mbedtls compiled in) and mbedtls's own strerror
    for t in [
        "OSError: (-30592, 'MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE')",
        "OSError: (-30592, 'SSL - A fatal alert message was received from our peer')",
        "OSError: [Errno 104] ECONNRESET",
        "OSError: (-29312, 'MBEDTLS_ERR_SSL_CONN_EOF')",
    ] {
        assert_eq!(code(t), rc::TLS_PEER_REJECTED, "{t}");
    }
    for t in [
        "OSError: (-9984, 'MBEDTLS_ERR_X509_CERT_VERIFY_FAILED')",
        "OSError: (-9984, 'X509 - Certificate verification failed, e.g. CRL, CA or signature check failed')",
    ] {
        assert_eq!(code(t), rc::TLS_CERT_NOT_TRUSTED, "{t}");
    }
}

#[test]
fn anything_else_is_a_handshake_failure() {
    assert_eq!(code("ValueError: invalid cert"), rc::TLS_HANDSHAKE_FAILED);
    assert_eq!(code(""), rc::TLS_HANDSHAKE_FAILED);
    assert_eq!(code("\u{0}\u{ff}"), rc::TLS_HANDSHAKE_FAILED);
}
