"""Harness of the TLS and WebSocket transport tests (issue 5).

Reuses the end-to-end harness (tests/e2e/conftest.py: mosquitto `Broker`, the firmware
runner, the paho `Peer`, the PRELUDE), loaded as a plain module so that its fixtures are
not registered twice, and adds:

- `pki` (session): a PKI made with `openssl` in a session tmp dir: a CA, a server
  certificate for DNS:localhost, one for DNS:localhost plus the addresses 127.0.0.1
  and ::1 (iPAddress subjectAltNames), an expired one for the same names, a client
  certificate, an "other" CA with a client certificate of its own, DER versions, a
  cert+key bundle;
- `tbroker`: one mosquitto with five listeners on 127.0.0.1: plain MQTT (for the paho
  peer), TLS, TLS with `require_certificate true` (mutual TLS), WebSocket and WebSocket
  over TLS; `tbroker.url(kind)` gives the firmware's URL for a listener;
- `abroker` (module): one mosquitto with TLS, mutual TLS and wss listeners on
  127.0.0.1 and on ::1 (where the machine has IPv6 on loopback) for the server
  certificate with addresses, the one with a DNS name only and the expired one;
  `abroker.url(kind, host, cert)`;
- `sni_server`: a TLS server (python's ssl) that records the SNI of each ClientHello;
- `ws_server`: a tiny scripted WebSocket server (records the HTTP upgrade request,
  answers 101 with the right Sec-WebSocket-Accept then a CONNACK, or refuses the upgrade);
- `fw`/`run_fw`/`spawn_fw`/`make_peer`: the e2e fixtures.
"""
import base64
import hashlib
import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from transports_support import CONNECT_LOG  # noqa: E402


def _load_e2e():
    path = REPO / "tests" / "e2e" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_e2e_harness_transports", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


e2e = _load_e2e()
FIRMWARE = e2e.FIRMWARE
PRELUDE = e2e.PRELUDE
free_port = e2e.free_port
Peer = e2e.Peer
MOSQUITTO_PASSWD = e2e.MOSQUITTO_PASSWD
OPENSSL = os.environ.get("OPENSSL", "openssl")

# tests/e2e/test_connect.py does `from conftest import AUTH_PASSWORD, AUTH_USER`; when
# pytest runs tests/e2e together with this folder, `conftest` in sys.modules may be this
# file (the last conftest loaded), so the names are provided here too.
AUTH_USER = e2e.AUTH_USER
AUTH_PASSWORD = e2e.AUTH_PASSWORD

# the fixtures of the e2e harness, registered for this folder
fw = e2e.fw
run_fw = e2e.run_fw
spawn_fw = e2e.spawn_fw
make_peer = e2e.make_peer


def pytest_report_header(config):
    return "transports: firmware %s" % FIRMWARE


# --------------------------------------------------------------------------------------
# PKI


class Pki:
    """Paths and contents of the test certificates (all in `dir`)."""

    def __init__(self, d):
        self.dir = Path(d)

    def path(self, name):
        return str(self.dir / name)

    def text(self, name):
        return (self.dir / name).read_text()

    def data(self, name):
        return (self.dir / name).read_bytes()


def _ossl(*args, cwd):
    subprocess.run([OPENSSL] + list(args), cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _make_ca(d, name, cn):
    _ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "30",
          "-keyout", name + ".key", "-out", name + ".pem", "-subj", "/CN=" + cn,
          "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def _make_leaf(d, name, cn, ca, ext, validity=None):
    """A key and a certificate signed by `ca`, valid for 30 days from now, or for
    `validity` ((notBefore, notAfter) as YYYYMMDDHHMMSSZ, through `openssl ca`)."""
    _ossl("req", "-newkey", "rsa:2048", "-nodes", "-sha256", "-keyout", name + ".key",
          "-out", name + ".csr", "-subj", "/CN=" + cn, cwd=d)
    (Path(d) / (name + ".ext")).write_text(ext)
    if validity is None:
        _ossl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
              "-CAcreateserial", "-days", "30", "-sha256", "-extfile", name + ".ext",
              "-out", name + ".pem", cwd=d)
        return
    # `openssl x509` of OpenSSL 3.0 cannot set dates in the past; `openssl ca` can
    (Path(d) / "ca.cnf").write_text(
        "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\n"
        "serial = serial\ndefault_md = sha256\npolicy = p\nunique_subject = no\n"
        "[p]\ncommonName = supplied\n")
    (Path(d) / "index.txt").write_text("")
    (Path(d) / "serial").write_text("1000\n")
    _ossl("ca", "-batch", "-config", "ca.cnf", "-cert", ca + ".pem", "-keyfile", ca + ".key",
          "-in", name + ".csr", "-out", name + ".pem", "-startdate", validity[0],
          "-enddate", validity[1], "-extfile", name + ".ext", "-notext", cwd=d)


SERVER_EXT = ("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
              "extendedKeyUsage=serverAuth\nsubjectAltName=")


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    _make_ca(d, "ca", "DL-7450 test CA")
    _make_ca(d, "other_ca", "Some other CA")
    _make_leaf(d, "server", "localhost", "ca", SERVER_EXT + "DNS:localhost\n")
    # a LAN broker's certificate: its name and its addresses
    _make_leaf(d, "server_ip", "localhost", "ca", SERVER_EXT + "DNS:localhost,IP:127.0.0.1,IP:::1\n")
    _make_leaf(d, "server_expired", "localhost", "ca", SERVER_EXT + "DNS:localhost,IP:127.0.0.1,IP:::1\n",
               validity=("20200101000000Z", "20200201000000Z"))
    # the Common Name counts only without subjectAltNames
    _make_leaf(d, "server_cn_only", "localhost", "ca", SERVER_EXT.rsplit("\n", 1)[0] + "\n")
    _make_leaf(d, "server_other_san", "localhost", "ca", SERVER_EXT + "DNS:broker.invalid\n")
    _make_leaf(d, "client", "dl7450-client", "ca",
               "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
               "extendedKeyUsage=clientAuth\n")
    _make_leaf(d, "other_client", "dl7450-client", "other_ca",
               "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
               "extendedKeyUsage=clientAuth\n")
    _ossl("x509", "-in", "ca.pem", "-outform", "DER", "-out", "ca.der", cwd=d)
    # a client certificate chain with the key inside (key_store alone)
    (d / "client_bundle.pem").write_text((d / "client.pem").read_text() + (d / "client.key").read_text())
    for f in d.iterdir():
        f.chmod(0o644)   # mosquitto may run as another user
    return Pki(d)


# --------------------------------------------------------------------------------------
# mosquitto with plain, TLS, mutual TLS, ws and wss listeners

KINDS = ("tls", "mtls", "ws", "wss")


class TransportBroker(e2e.Broker):
    """mosquitto with a plain listener (`port`, the peer's) and one listener per
    transport; `ports[kind]`, `url(kind)`. Survives stop()/restart() on the same ports."""

    def __init__(self, workdir, pki, name="tbroker", password_file=None):
        self.ports = {k: free_port() for k in KINDS}
        tls = ["cafile %s" % pki.path("ca.pem"), "certfile %s" % pki.path("server.pem"),
               "keyfile %s" % pki.path("server.key")]
        conf = []
        conf += ["listener %d 127.0.0.1" % self.ports["tls"]] + tls
        conf += ["listener %d 127.0.0.1" % self.ports["mtls"]] + tls + [
            "require_certificate true", "use_identity_as_username false"]
        conf += ["listener %d 127.0.0.1" % self.ports["ws"], "protocol websockets",
                 "socket_domain ipv4"]
        conf += ["listener %d 127.0.0.1" % self.ports["wss"], "protocol websockets",
                 "socket_domain ipv4"] + tls
        super().__init__(workdir, name=name, password_file=password_file,
                         extra_conf="\n".join(conf))

    def url(self, kind, host="localhost", path=""):
        scheme = {"tls": "mqtts", "mtls": "mqtts", "ws": "ws", "wss": "wss", "tcp": "tcp"}[kind]
        port = self.port if kind == "tcp" else self.ports[kind]
        return "%s://%s:%d%s" % (scheme, host, port, path)


def _loopback6():
    """True where ::1 can be bound (IPv6 on loopback)."""
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


HAVE_IPV6 = _loopback6()


def free_port6():
    """A free port on ::1, distinct from every port handed out before (see e2e.free_port)."""
    while True:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
            port = s.getsockname()[1]
        if port not in e2e._PORTS_GIVEN:
            e2e._PORTS_GIVEN.add(port)
            return port


class AddressBroker(e2e.Broker):
    """mosquitto with a listener for each (cert, kind, family): cert "ip" (DNS:localhost,
    IP:127.0.0.1, IP:::1), "dns" (DNS:localhost only), "expired" (like "ip", expired),
    "cn_only" (CN=localhost, no subjectAltName) or "other_san" (CN=localhost,
    DNS:broker.invalid);
    kind "tls", "mtls" (require_certificate) or "wss"; family 4 (127.0.0.1) or 6 (::1,
    only with HAVE_IPV6). `url(kind, host, cert)` picks the family from the host
    (localhost: the firmware prefers IPv4)."""

    LISTENERS = [("ip", "tls"), ("ip", "mtls"), ("ip", "wss"), ("dns", "tls"), ("expired", "tls"),
                 ("cn_only", "tls"), ("other_san", "tls")]

    def __init__(self, workdir, pki, name="abroker"):
        self.ports = {}
        conf = []
        for family in (4, 6) if HAVE_IPV6 else (4,):
            for cert, kind in self.LISTENERS:
                port = free_port() if family == 4 else free_port6()
                self.ports[cert, kind, family] = port
                server = {"dns": "server"}.get(cert, "server_" + cert)
                conf += ["listener %d %s" % (port, "127.0.0.1" if family == 4 else "::1"),
                         "cafile %s" % pki.path("ca.pem"), "certfile %s" % pki.path(server + ".pem"),
                         "keyfile %s" % pki.path(server + ".key")]
                if kind == "mtls":
                    conf += ["require_certificate true", "use_identity_as_username false"]
                if kind == "wss":
                    conf += ["protocol websockets", "socket_domain ipv%d" % family]
        super().__init__(workdir, name=name, extra_conf="\n".join(conf))

    def url(self, kind, host, cert="ip"):
        family = 6 if host.startswith("[") else 4
        scheme = "wss" if kind == "wss" else "mqtts"
        return "%s://%s:%d" % (scheme, host, self.ports[cert, kind, family])


@pytest.fixture(scope="module")
def abroker(tmp_path_factory, pki):
    b = AddressBroker(tmp_path_factory.mktemp("abroker"), pki)
    yield b
    b.kill()


class SniServer(e2e.LoopbackServer):
    """A TLS server (python's ssl, the "ip" server certificate) on 127.0.0.1 or ::1
    that records the SNI of each ClientHello (`names`: None for a ClientHello without
    the extension), completes the handshake and answers the first bytes (the CONNECT)
    with an accepting CONNACK."""

    threaded = True

    def __init__(self, pki, family=4):
        import ssl
        super().__init__(backlog=8)
        if family == 6:
            self.sock.close()
            self.sock = socket.socket(socket.AF_INET6)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind(("::1", 0))
            self.sock.listen(8)
            self.port = self.sock.getsockname()[1]
        self.names = []
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(pki.path("server_ip.pem"), pki.path("server_ip.key"))
        self.ctx.sni_callback = self._sni
        self.start()

    def _sni(self, sslobj, name, ctx):
        with self.lock:
            self.names.append(name)

    def _handle(self, c):
        c.settimeout(5)
        try:
            s = self.ctx.wrap_socket(c, server_side=True)
            if s.recv(2):
                s.sendall(b"\x20\x02\x00\x00")
            time.sleep(0.5)
            s.close()
        except OSError:
            return


@pytest.fixture
def sni_server(pki):
    made = []

    def make(family=4):
        s = SniServer(pki, family)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


@pytest.fixture
def make_tbroker(tmp_path, pki):
    """make_tbroker(name="tbroker", password_file=None) -> TransportBroker"""
    made = []

    def make(name="tbroker", password_file=None):
        b = TransportBroker(tmp_path, pki, name=name, password_file=password_file)
        made.append(b)
        return b

    yield make
    for b in made:
        b.kill()


@pytest.fixture
def tbroker(make_tbroker):
    return make_tbroker()


@pytest.fixture
def run_fw_file():
    """run_fw_file(path, env={...}, timeout=20) -> (returncode, stdout, stderr): runs a
    script file as it is (no prelude) on the firmware."""
    procs = []

    def run(path, env=None, timeout=20.0):
        e = dict(os.environ)
        e.pop("MICROPYPATH", None)
        e.update(env or {})
        p = e2e.FwProc([FIRMWARE, str(path)], env=e)
        procs.append(p)
        try:
            rc = p.wait(timeout)
        except AssertionError:
            p.kill()
            raise
        return rc, p.stdout, p.stderr

    yield run
    for p in procs:
        p.kill()


@pytest.fixture
def peer(tbroker, make_peer):
    return make_peer(tbroker)


# --------------------------------------------------------------------------------------
# a scripted WebSocket server

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_accept(key):
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


def ws_frame(payload, opcode=2):
    """A server frame (unmasked)."""
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 127]) + n.to_bytes(8, "big")
    return head + payload


def _recv_exact(c, n):
    buf = b""
    while len(buf) < n:
        chunk = c.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def ws_read_frame(c):
    """(fin, opcode, masked, payload) of a client frame, None at EOF."""
    h = _recv_exact(c, 2)
    if h is None:
        return None
    fin, opcode, masked, n = h[0] >> 7, h[0] & 15, h[1] >> 7, h[1] & 127
    if n == 126:
        n = int.from_bytes(_recv_exact(c, 2), "big")
    elif n == 127:
        n = int.from_bytes(_recv_exact(c, 8), "big")
    mask = _recv_exact(c, 4) if masked else b"\0\0\0\0"
    data = _recv_exact(c, n) if n else b""
    if data is None:
        return None
    return fin, opcode, masked, bytes(b ^ mask[i % 4] for i, b in enumerate(data))


class WsServer(e2e.LoopbackServer):
    """Accepts connections on a loopback port and records each HTTP upgrade request
    (`requests`: (monotonic time, request line, {header: value})). mode "accept": answers
    101 with the right Sec-WebSocket-Accept and `mqtt` subprotocol, then a CONNACK
    (accepted) in a binary frame for the first frame received, recorded in `frames`;
    mode "refuse": answers `refusal` (an HTTP 404) and closes. bad_accept: the 101 carries
    a Sec-WebSocket-Accept computed from another key."""

    threaded = True

    def __init__(self, mode="accept",
                 refusal=b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                 bad_accept=False):
        super().__init__(backlog=8)
        self.mode = mode
        self.bad_accept = bad_accept   # answer 101 with a wrong Sec-WebSocket-Accept
        self.refusal = refusal
        self.requests = []
        self.frames = []
        self.start()

    def url(self, path=""):
        return "ws://localhost:%d%s" % (self.port, path)

    def _handle(self, c):
        c.settimeout(5)
        try:
            req = b""
            while b"\r\n\r\n" not in req:
                chunk = c.recv(4096)
                if not chunk:
                    return
                req += chunk
            lines = req.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
            headers = {}
            for l in lines[1:]:
                k, _, v = l.partition(":")
                headers[k.strip().lower()] = v.strip()
            with self.lock:
                self.requests.append((time.monotonic(), lines[0], headers))
            if self.mode != "accept":
                c.sendall(self.refusal)
                time.sleep(0.05)
                c.close()
                return
            c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                       "Sec-WebSocket-Protocol: mqtt\r\n\r\n"
                       % ws_accept(headers.get("sec-websocket-key", "") + ("x" if self.bad_accept else ""))
                       ).encode())
            answered = False
            while not self._stop:
                try:
                    f = ws_read_frame(c)
                except socket.timeout:
                    continue
                if f is None:
                    return
                with self.lock:
                    self.frames.append(f)
                if not answered and f[1] == 2:
                    answered = True
                    c.sendall(ws_frame(b"\x20\x02\x00\x00"))   # CONNACK, accepted
                elif f[1] == 8:
                    c.sendall(ws_frame(f[3][:2], 8))
                    return
        except OSError:
            return


@pytest.fixture
def ws_server():
    made = []

    def make(**kw):
        s = WsServer(**kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


ROUND_TRIP = CONNECT_LOG + r"""
import hashlib, binascii
got = []
subacks = []
published = {}
def on_message(t, m):
    got.append(t)
    print('MSG', repr(t), len(m), binascii.hexlify(hashlib.sha256(m).digest()).decode(), type(m).__name__)
c = mqtt.MqttClient(URL, CID)
c.on_message(on_message)
c.on_subscribe(lambda mid, g: subacks.append(g))
c.on_publish(lambda mid, rc: published.__setitem__(mid, rc))
c.connect(on_connect, OPTS)
assert wait_until(lambda: events, 10000), 'no on_connect'
c.subscribe([(PREFIX + '/self/#', 2), (PREFIX + '/in/#', 2)])
assert wait_until(lambda: subacks, 10000), 'no SUBACK'
print('SUBACK', subacks[0])
mids = [c.publish(PREFIX + '/' + t, m, q) for t, m, q in eval(CASES)]
print('READY')
ok = wait_until(lambda: len(got) >= N_RECV and len(published) >= len(mids), TIMEOUT)
time.sleep_ms(300)
print('DONE', ok, len(got), sorted(set(published.values())), sorted(published) == sorted(mids))
print('EVENTS', [e[0] for e in events])
c.disconnect()
"""


def _sha(b):
    return hashlib.sha256(b).hexdigest()


def _as_bytes(m):
    return m.encode() if isinstance(m, str) else bytes(m)


@pytest.fixture
def round_trip(spawn_fw, make_peer):
    """round_trip(broker, url, opts_src, cases_src, inbound, timeout_s): the firmware
    connects to `url`, subscribes to PREFIX/self/# and PREFIX/in/#, publishes `cases`
    ((suffix, message, qos) as firmware source), a paho peer on the plain listener
    publishes `inbound` ((suffix, bytes, qos)) to it. Checks rc 0, every message the
    firmware receives (its own on self/..., the peer's on in/...) byte-exact (SHA-256
    computed on the device), once each, and every firmware message seen by the peer
    byte-exact with its QoS."""
    def run(broker, url, opts_src, cases_src, inbound=(), timeout=20, cid="dev-rt"):
        import re
        prefix = "rt/" + cid
        cases = eval(cases_src)
        peer = make_peer(broker)
        peer.subscribe(prefix + "/#", 2)
        n_recv = len([c for c in cases if c[0].startswith("self/")]) + len(inbound)
        script = ROUND_TRIP.replace("c.connect(on_connect, OPTS)", "c.connect(on_connect, %s)" % opts_src)
        p = spawn_fw(script, vars={"URL": url, "CID": cid, "PREFIX": prefix, "CASES": cases_src,
                                   "N_RECV": n_recv, "TIMEOUT": int(timeout * 1000)})
        p.expect(r"^READY", 15)
        for suffix, m, q in inbound:
            peer.publish(prefix + "/" + suffix, m, q, wait=False)
        assert p.wait(timeout + 10) == 0, p.stdout[-3000:] + p.stderr
        out = p.stdout
        ev = eval(re.search(r"^EVENTS (.*)$", out, re.M).group(1))
        assert ev == [0], "on_connect codes %r (want [0])\n%s" % (ev, out[-3000:])
        assert re.search(r"^DONE True .* \[0\] True$", out, re.M), out[-3000:]
        got = [(eval(m.group(1)), int(m.group(2)), m.group(3), m.group(4))
               for m in re.finditer(r"^MSG ('[^']*') (\d+) (\w+) (\w+)$", out, re.M)]
        want = [(prefix + "/" + t, len(_as_bytes(m)), _sha(_as_bytes(m)), "bytearray")
                for t, m, q in cases if t.startswith("self/")]
        want += [(prefix + "/" + t, len(m), _sha(m), "bytearray") for t, m, q in inbound]
        assert sorted(got) == sorted(want), "firmware received (topic, len, sha256, type):\n%r\nwant\n%r" % (got, want)
        msgs = peer.wait_messages(len(cases), 15, prefix + "/")
        time.sleep(0.2)
        msgs = [m for m in peer.messages(prefix + "/") if "/in/" not in m[0]]
        seen = sorted((m[0], _sha(m[1]), len(m[1]), m[2]) for m in msgs)
        sent = sorted((prefix + "/" + t, _sha(_as_bytes(m)), len(_as_bytes(m)), q) for t, m, q in cases)
        assert seen == sent, "peer saw (topic, sha256, len, qos):\n%r\nwant\n%r" % (seen, sent)
        return out
    return run


