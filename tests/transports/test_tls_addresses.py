"""TLS to a broker named by a host name or by an IPv4 or IPv6 address: which certificate
name is checked, SNI for names only, and failure codes that say what failed, the same
over a name and over an address (certificates and listeners: conftest.py `pki`,
`abroker`, `sni_server`)."""
import re

import pytest

from conftest import HAVE_IPV6
from transports_support import attempts

NO_IPV6 = pytest.mark.skipif(not HAVE_IPV6, reason="no IPv6 on loopback (::1)")
HOSTS = [pytest.param("127.0.0.1", id="ipv4"), pytest.param("[::1]", id="ipv6", marks=NO_IPV6),
         pytest.param("localhost", id="name")]


def first_attempt(run_fw, url, opts, cid):
    """(rc, ErrorDescription(rc)) of the first on_connect of a client for `url`."""
    out, cs = attempts(run_fw, url, opts, cid, 1, 10000)
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


@pytest.mark.parametrize("cert", ["dns", "cn_only"])
def test_name_in_dns_san_or_in_cn_without_sans(run_fw, abroker, pki, cert):
    code, text = first_attempt(run_fw, abroker.url("tls", "localhost", cert=cert), "{%s}" % trust(pki),
                               "dev-name-" + cert)
    assert code == 0, (code, text)


# --------------------------------------------------------------------------------------
# failures say what failed, over an address and over a name alike: (case, listener kind,
# server certificate, trust store CA, client certificate, rc, what ErrorDescription says,
# for addresses only)

FAILURES = [
    ("untrusted", "tls", "ip", "other_ca", None, -29, r"not trusted", False),
    # untrusted and not for this address either: not trusted, not a mismatch
    ("untrusted-other-name", "tls", "dns", "other_ca", None, -29, r"not trusted", True),
    # a certificate naming DNS:localhost only does not cover 127.0.0.1 or ::1
    ("dns-name-only", "tls", "dns", "ca", None, -30, r"does not match the host name", True),
    # a Common Name equal to the host name does not count next to subjectAltNames
    ("cn-beside-other-san", "tls", "other_san", "ca", None, -30, r"does not match the host name", False),
    ("expired", "tls", "expired", "ca", None, -34, r"expired", False),
    ("expired-untrusted", "tls", "expired", "other_ca", None, -29, r"not trusted", False),
    ("mtls-no-client-cert", "mtls", "ip", "ca", None, -31, r"client certificate", False),
    # a client certificate from a CA the broker does not trust
    ("mtls-refused-client-cert", "mtls", "ip", "ca", "other_client", -31, r"client certificate", False),
]


def failure_cases():
    for case, kind, cert, ca, client, want, says, addresses_only in FAILURES:
        for host in HOSTS:
            if addresses_only and host.values[0] == "localhost":
                continue
            yield pytest.param(case, host.values[0], kind, cert, ca, client, want, says,
                               id="%s-%s" % (case, host.id), marks=host.marks)


@pytest.mark.parametrize("case, host, kind, cert, ca, client, want, says", failure_cases())
def test_failure_says_what_failed(run_fw, abroker, pki, case, host, kind, cert, ca, client, want, says):
    opts = "{%s%s}" % (trust(pki, ca), ", " + client_cert(pki, client) if client else "")
    code, text = first_attempt(run_fw, abroker.url(kind, host, cert=cert), opts, cid_for("dev-" + case, host))
    assert code == want, (code, text)
    assert re.search(says, text), text


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
