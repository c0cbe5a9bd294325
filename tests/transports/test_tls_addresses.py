"""TLS to a broker named by a host name or by an IPv4 or IPv6 address: which certificate
name is checked, SNI for names only, and failure codes that say what failed, the same
over a name and over an address (certificates and listeners: conftest.py `pki`,
`abroker`, `sni_server`)."""
import re

import pytest

from conftest import HAVE_IPV6
from transports_support import CONNECT_LOG, connects

NO_IPV6 = pytest.mark.skipif(not HAVE_IPV6, reason="no IPv6 on loopback (::1)")
HOSTS = [pytest.param("127.0.0.1", id="ipv4"), pytest.param("[::1]", id="ipv6", marks=NO_IPV6),
         pytest.param("localhost", id="name")]
ADDRESSES = [h for h in HOSTS if h.id != "name"]

FIRST_ATTEMPT = CONNECT_LOG + r'''
c = mqtt.MqttClient(URL, CID)
c.connect(on_connect, OPTS)
wait_until(lambda: events, 10000)
print('CONNECTED', c.is_connected())
c.disconnect()
'''


def first_attempt(run_fw, url, opts, cid):
    """(rc, ErrorDescription(rc)) of the first on_connect of a client for `url`."""
    rc, out, err = run_fw(FIRST_ATTEMPT.replace("OPTS", opts), vars={"URL": url, "CID": cid}, timeout=20)
    assert rc == 0, out + err
    cs = connects(out)
    assert cs, "no on_connect\n" + out + err
    if cs[0][0] != 0:
        assert "CONNECTED False" in out, out
    return cs[0][0], cs[0][2]


def trust(pki, ca="ca"):
    return "'trust_store': open(%r).read()" % pki.path(ca + ".pem")


def client_cert(pki, name="client"):
    return "'key_store': open(%r).read(), 'private_key': open(%r).read()" % (
        pki.path(name + ".pem"), pki.path(name + ".key"))


def cid_for(prefix, host):
    return "%s-%s" % (prefix, {"127.0.0.1": "v4", "[::1]": "v6", "localhost": "name"}[host])


def assert_connected_from(broker, host, cid):
    """The broker saw the client `cid` arrive over the address family of `host`."""
    src = "::1" if host == "[::1]" else "127.0.0.1"
    pat = r"New client connected from %s:\d+ as %s" % (re.escape(src), re.escape(cid))
    assert re.search(pat, broker.log()), broker.log()[-2000:]


# --------------------------------------------------------------------------------------
# accepted: the address is one of the certificate's iPAddress subjectAltNames, the name
# one of its DNS names


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("kind", ["tls", "mtls", "wss"])
def test_connects(run_fw, abroker, pki, kind, host):
    opts = "{%s%s}" % (trust(pki), ", " + client_cert(pki) if kind == "mtls" else "")
    cid = cid_for("dev-ok-" + kind, host)
    code, text = first_attempt(run_fw, abroker.url(kind, host), opts, cid)
    assert code == 0, (code, text)
    assert_connected_from(abroker, host, cid)


@pytest.mark.parametrize("host", ADDRESSES)
def test_dns_name_only_certificate_reached_by_address(run_fw, abroker, pki, host):
    """A certificate naming DNS:localhost only does not cover 127.0.0.1 or ::1."""
    code, text = first_attempt(run_fw, abroker.url("tls", host, cert="dns"), "{%s}" % trust(pki),
                               cid_for("dev-dns-cert", host))
    assert code == -30, (code, text)
    assert re.search(r"does not match the host name", text), text


def test_dns_name_only_certificate_reached_by_name(run_fw, abroker, pki):
    code, text = first_attempt(run_fw, abroker.url("tls", "localhost", cert="dns"), "{%s}" % trust(pki),
                               "dev-dns-cert-name")
    assert code == 0, (code, text)


# --------------------------------------------------------------------------------------
# failures say what failed, over an address and over a name alike


@pytest.mark.parametrize("host", HOSTS)
def test_untrusted_chain(run_fw, abroker, pki, host):
    code, text = first_attempt(run_fw, abroker.url("tls", host), "{%s}" % trust(pki, "other_ca"),
                               cid_for("dev-untrusted", host))
    assert code == -29, (code, text)
    assert re.search(r"not trusted", text), text


@pytest.mark.parametrize("host", ADDRESSES)
def test_untrusted_chain_with_another_name(run_fw, abroker, pki, host):
    """Untrusted and not for this address: not trusted (-29), not a mismatch."""
    code, text = first_attempt(run_fw, abroker.url("tls", host, cert="dns"), "{%s}" % trust(pki, "other_ca"),
                               cid_for("dev-untrusted-dns", host))
    assert code == -29, (code, text)


@pytest.mark.parametrize("host", HOSTS)
def test_expired_certificate(run_fw, abroker, pki, host):
    code, text = first_attempt(run_fw, abroker.url("tls", host, cert="expired"), "{%s}" % trust(pki),
                               cid_for("dev-expired", host))
    assert code == -34, (code, text)
    assert re.search(r"expired", text), text


@pytest.mark.parametrize("host", HOSTS)
def test_expired_and_untrusted(run_fw, abroker, pki, host):
    code, text = first_attempt(run_fw, abroker.url("tls", host, cert="expired"),
                               "{%s}" % trust(pki, "other_ca"), cid_for("dev-expired-untrusted", host))
    assert code == -29, (code, text)


@pytest.mark.parametrize("host", HOSTS)
def test_mutual_tls_without_client_certificate(run_fw, abroker, pki, host):
    code, text = first_attempt(run_fw, abroker.url("mtls", host), "{%s}" % trust(pki),
                               cid_for("dev-mtls-none", host))
    assert code == -31, (code, text)
    assert re.search(r"client certificate", text), text


@pytest.mark.parametrize("host", HOSTS)
def test_mutual_tls_with_refused_client_certificate(run_fw, abroker, pki, host):
    """A client certificate from a CA the broker does not trust."""
    code, text = first_attempt(run_fw, abroker.url("mtls", host),
                               "{%s, %s}" % (trust(pki), client_cert(pki, "other_client")),
                               cid_for("dev-mtls-other", host))
    assert code == -31, (code, text)
    assert re.search(r"client certificate", text), text


# --------------------------------------------------------------------------------------
# SNI (RFC 6066): the host name, never an address. A broker cannot report what it
# received, so a TLS server of the test records it.

SNI = [pytest.param("127.0.0.1", 4, None, id="ipv4"),
       pytest.param("[::1]", 6, None, id="ipv6", marks=NO_IPV6),
       pytest.param("localhost", 4, "localhost", id="name")]


@pytest.mark.parametrize("host, family, want", SNI)
def test_sni(run_fw, sni_server, pki, host, family, want):
    srv = sni_server(family)
    code, text = first_attempt(run_fw, "mqtts://%s:%d" % (host, srv.port), "{%s}" % trust(pki),
                               cid_for("dev-sni", host))
    assert code == 0, (code, text)   # handshake and verification of the server's name or address
    assert srv.names == [want], srv.names
