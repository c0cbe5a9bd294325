"""Issue 5: MQTT over TLS (`mqtts://`, `ssl://`) against mosquitto listeners with server
authentication and with mutual TLS, using certificates made by conftest.py."""
import os
import re

import pytest

from transports_support import (ATTEMPTS, BIG_CASES, BIG_INBOUND, CONNECT_LOG, SMALL_CASES, SMALL_INBOUND,
                                attempts, connects, opts_code)

# --------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("kind", ["tls", "mtls"])
def test_round_trip_qos_012(round_trip, tbroker, pki, kind):
    round_trip(tbroker, tbroker.url(kind), opts_code(kind, pki), SMALL_CASES, SMALL_INBOUND,
               cid="dev-%s-rt" % kind)


@pytest.mark.parametrize("kind", ["tls", "mtls"])
def test_round_trip_256k(round_trip, tbroker, pki, kind):
    round_trip(tbroker, tbroker.url(kind), opts_code(kind, pki), BIG_CASES, BIG_INBOUND,
               timeout=30, cid="dev-%s-big" % kind)


def test_ssl_scheme_is_tls(round_trip, tbroker, pki):
    """`ssl://` is the same transport as `mqtts://`."""
    url = tbroker.url("tls").replace("mqtts://", "ssl://")
    round_trip(tbroker, url, opts_code("tls", pki), SMALL_CASES, (), cid="dev-ssl-rt")


# --------------------------------------------------------------------------------------
# trust store forms

CONNECT_ONCE = CONNECT_LOG + r'''
c = mqtt.MqttClient(URL, CID)
c.connect(on_connect, OPTS)
wait_until(lambda: events, 10000)
print('TYPE', TYPE_OF)
c.disconnect()
'''


def connect_once(run_fw, url, opts_src, type_of="None", cid="dev-once"):
    script = CONNECT_ONCE.replace("OPTS", opts_src).replace("TYPE_OF", type_of)
    rc, out, err = run_fw(script, vars={"URL": url, "CID": cid}, timeout=20)
    assert rc == 0, out + err
    return out


@pytest.mark.parametrize("form, src, typ", [
    ("pem-str", "open(CA_PEM).read()", "str"),
    ("pem-bytes", "open(CA_PEM, 'rb').read()", "bytes"),
    ("pem-bytearray", "bytearray(open(CA_PEM, 'rb').read())", "bytearray"),
    ("der-bytes", "open(CA_DER, 'rb').read()", "bytes"),
    ("der-bytearray", "bytearray(open(CA_DER, 'rb').read())", "bytearray"),
])
def test_trust_store_forms_accepted(run_fw, tbroker, pki, form, src, typ):
    src = src.replace("CA_PEM", repr(pki.path("ca.pem"))).replace("CA_DER", repr(pki.path("ca.der")))
    out = connect_once(run_fw, tbroker.url("tls"), "{'trust_store': %s}" % src,
                       "type(%s).__name__" % src, cid="dev-ts-" + form)
    assert "TYPE %s" % typ in out, out
    assert [c[0] for c in connects(out)] == [0], out


def test_trust_store_with_several_certificates(run_fw, tbroker, pki):
    """A PEM bundle holding another CA first, then ours: the broker is trusted."""
    src = "open(%r).read() + open(%r).read()" % (pki.path("other_ca.pem"), pki.path("ca.pem"))
    out = connect_once(run_fw, tbroker.url("tls"), "{'trust_store': %s}" % src, cid="dev-ts-bundle")
    assert [c[0] for c in connects(out)] == [0], out


def test_key_store_with_key_inside(run_fw, tbroker, pki):
    """Mutual TLS with the certificate and its key in `key_store`, no `private_key`."""
    src = "{'trust_store': open(%r).read(), 'key_store': open(%r, 'rb').read()}" % (
        pki.path("ca.pem"), pki.path("client_bundle.pem"))
    out = connect_once(run_fw, tbroker.url("mtls"), src, cid="dev-ks-bundle")
    assert [c[0] for c in connects(out)] == [0], out
    assert re.search(r"New client connected from .* as dev-ks-bundle", tbroker.log()), tbroker.log()[-2000:]


def test_client_key_as_bytearray(run_fw, tbroker, pki):
    src = "{'trust_store': open(%r).read(), 'key_store': bytearray(open(%r, 'rb').read()), " \
          "'private_key': bytearray(open(%r, 'rb').read())}" % (
              pki.path("ca.pem"), pki.path("client.pem"), pki.path("client.key"))
    out = connect_once(run_fw, tbroker.url("mtls"), src, cid="dev-ks-ba")
    assert [c[0] for c in connects(out)] == [0], out


# --------------------------------------------------------------------------------------
# refusals: a clear negative code, then retried (~1 s later) with the same code

def refused_twice(run_fw, url, opts_src, cid):
    out, cs = attempts(run_fw, url, opts_src, cid, 2, 6000)
    assert cs[0][0] != 0, out
    gap = (cs[1][1] - cs[0][1]) / 1000
    assert 0.5 <= gap <= 3.0, "retry %.2f s after the failure, contract: after 1 s" % gap
    assert cs[0][0] == cs[1][0], "the retry failed differently: %r" % cs
    return cs[0][0], cs[0][2]


def test_wrong_ca_not_trusted(run_fw, tbroker, pki):
    code, text = refused_twice(run_fw, tbroker.url("tls"),
                               "{'trust_store': open(%r).read()}" % pki.path("other_ca.pem"),
                               "dev-wrong-ca")
    assert code == -29, (code, text)
    assert re.search(r"not trusted|verif", text, re.I), text
    assert not re.search(r"New client connected .* as dev-wrong-ca", tbroker.log())


def test_host_name_mismatch(run_fw, tbroker, pki):
    """127.0.0.1 against a certificate for DNS:localhost."""
    code, text = refused_twice(run_fw, tbroker.url("tls", host="127.0.0.1"), opts_code("tls", pki),
                               "dev-name")
    assert code == -30, (code, text)
    assert re.search(r"host name", text, re.I), text


def test_missing_client_certificate(run_fw, tbroker, pki):
    code, text = refused_twice(run_fw, tbroker.url("mtls"), opts_code("tls", pki), "dev-no-cert")
    assert code == -31, (code, text)
    assert re.search(r"client certificate", text, re.I), text


def test_client_certificate_from_other_ca(run_fw, tbroker, pki):
    src = "{'trust_store': open(%r).read(), 'key_store': open(%r).read(), 'private_key': open(%r).read()}" % (
        pki.path("ca.pem"), pki.path("other_client.pem"), pki.path("other_client.key"))
    code, text = refused_twice(run_fw, tbroker.url("mtls"), src, "dev-other-cert")
    assert code == -31, (code, text)
    assert re.search(r"client certificate", text, re.I), text


def test_private_key_not_matching_certificate(run_fw, tbroker, pki):
    """A key that does not belong to the certificate is not caught by the tls module when
    loading (mbedtls does not pair-check); the broker refuses the handshake: -31."""
    src = "{'trust_store': open(%r).read(), 'key_store': open(%r).read(), 'private_key': open(%r).read()}" % (
        pki.path("ca.pem"), pki.path("client.pem"), pki.path("other_client.key"))
    code, text = refused_twice(run_fw, tbroker.url("mtls"), src, "dev-key-mismatch")
    assert code == -31, (code, text)


def test_no_trust_store_uses_platform_bundle(run_fw, tbroker, pki):
    """Without trust_store the broker is verified against the platform CA bundle (which
    does not hold the test CA: not trusted), never accepted unverified; -32 on a port
    without a bundle."""
    bundle = os.path.exists("/etc/ssl/certs/ca-certificates.crt")
    code, text = refused_twice(run_fw, tbroker.url("tls"), "{}", "dev-no-ts")
    assert code == (-29 if bundle else -32), (code, text)


def test_plain_tcp_to_tls_listener_is_not_accepted(run_fw, tbroker):
    """Sanity: a tcp:// client on the TLS port does not get through (negative code)."""
    rc, out, err = run_fw(ATTEMPTS.replace("OPTS", "{}").replace("N_EVENTS", "2").replace("TIMEOUT_MS", "6000"),
                          vars={"URL": "tcp://localhost:%d" % tbroker.ports["tls"], "CID": "dev-plain-on-tls"},
                          timeout=20)
    cs = connects(out)
    assert cs and all(c[0] < 0 for c in cs), out + err


# --------------------------------------------------------------------------------------
# option errors at connect()

CONNECT_RAISES = r"""
import mqtt
calls = {}
clients = []
for i, (url, opts) in enumerate(CASES):
    c = mqtt.MqttClient(url, 'dev-raise-%d' % i)
    clients.append(c)
    calls[i] = []
    try:
        c.connect(lambda rc, f, i=i: calls[i].append(rc), eval(opts))
        print('RESULT', i, 'none')
    except Exception as e:
        print('RESULT', i, type(e).__name__, repr(e))
time.sleep_ms(500)
for i, c in enumerate(clients):
    print('CALLS', i, calls[i], c.is_connected())
for c in clients:
    try:
        c.disconnect()
    except mqtt.MqttError:
        pass
"""


def connect_raises(run_fw, cases):
    """cases: [(label, url, opts source)] -> {label: (result, calls)}; one firmware run."""
    rc, out, err = run_fw(CONNECT_RAISES, vars={"CASES": [(u, o) for _, u, o in cases]}, timeout=15)
    assert rc == 0, out + err
    res = dict(re.findall(r"^RESULT (\d+) (.*)$", out, re.M))
    calls = dict(re.findall(r"^CALLS (\d+) (.*)$", out, re.M))
    return {label: (res.get(str(i)), calls.get(str(i))) for i, (label, _, _) in enumerate(cases)}


def assert_all_raise(results, exc):
    bad = {k: v for k, v in results.items() if not (v[0] or "").startswith(exc)}
    assert not bad, "connect() should raise %s: %r" % (exc, bad)
    tried = {k: v for k, v in results.items() if v[1] != "[] False"}
    assert not tried, "connection attempted after connect() raised: %r" % tried


def test_invalid_trust_store_raises_at_connect(run_fw, tbroker, pki):
    """Unusable certificate data is reported at once by connect() (ValueError from the
    tls module), not as an endless series of failed attempts."""
    ca = pki.path("ca.pem")
    cases = [
        ("garbage-str", "'not a certificate'"),
        ("garbage-bytes", "b'\\x30\\x82\\x01\\x00garbage'"),
        ("truncated-pem", "open(%r).read()[:300]" % ca),
        ("empty", "''"),
        ("garbage-bytearray", "bytearray(b'-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----\\n')"),
    ]
    assert_all_raise(connect_raises(run_fw, [(l, tbroker.url("tls"), "{'trust_store': %s}" % s)
                                             for l, s in cases]), "ValueError")


def test_invalid_client_credentials_raise_at_connect(run_fw, tbroker, pki):
    ca, cert, key = pki.path("ca.pem"), pki.path("client.pem"), pki.path("client.key")
    cases = [
        ("garbage-key_store", "{'trust_store': open(%r).read(), 'key_store': 'not a cert', "
                              "'private_key': open(%r).read()}" % (ca, key)),
        ("garbage-private_key", "{'trust_store': open(%r).read(), 'key_store': open(%r).read(), "
                                "'private_key': b'junk'}" % (ca, cert)),
        ("cert-without-any-key", "{'trust_store': open(%r).read(), 'key_store': open(%r).read()}" % (ca, cert)),
    ]
    assert_all_raise(connect_raises(run_fw, [(l, tbroker.url("mtls"), s) for l, s in cases]), "ValueError")


def test_tls_options_type_errors(run_fw, pki):
    """TLS options with tcp/mqtt/ws URLs; private_key without key_store; wrong types."""
    ca, cert, key = pki.path("ca.pem"), pki.path("client.pem"), pki.path("client.key")
    cases = []
    for scheme in ("tcp", "mqtt", "ws"):
        url = "%s://localhost:1" % scheme
        cases += [
            (scheme + "-trust_store", url, "{'trust_store': open(%r).read()}" % ca),
            (scheme + "-key_store", url, "{'key_store': open(%r).read()}" % cert),
            (scheme + "-private_key", url, "{'key_store': open(%r).read(), 'private_key': open(%r).read()}" % (cert, key)),
        ]
    tls = "mqtts://localhost:1"
    cases += [
        ("private_key-without-key_store", tls, "{'trust_store': open(%r).read(), 'private_key': open(%r).read()}" % (ca, key)),
        ("trust_store-int", tls, "{'trust_store': 42}"),
        ("trust_store-None", tls, "{'trust_store': None}"),
        ("key_store-list", tls, "{'key_store': ['x']}"),
        ("private_key-float", tls, "{'key_store': open(%r).read(), 'private_key': 3.5}" % cert),
        ("wss-private_key-without-key_store", "wss://localhost:1", "{'private_key': open(%r).read()}" % key),
    ]
    assert_all_raise(connect_raises(run_fw, cases), "TypeError")
