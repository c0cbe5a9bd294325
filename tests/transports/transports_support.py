"""Helpers shared by the transport tests (script snippets, expected cases)."""
import re


# --------------------------------------------------------------------------------------
# firmware script helpers

CONNECT_LOG = r'''
import mqtt
events = []
def on_connect(rc, flags):
    events.append((rc, time.ticks_ms()))
    print('CONNECT', rc, time.ticks_ms(), repr(mqtt.ErrorDescription(rc)))
'''


ATTEMPTS = CONNECT_LOG + r'''
c = mqtt.MqttClient(URL, CID)
c.connect(on_connect, OPTS)
wait_until(lambda: len(events) >= N_EVENTS, TIMEOUT_MS)
print('CONNECTED', c.is_connected())
c.disconnect()
'''


def attempts(run_fw, url, opts_src, cid, n, timeout_ms):
    """A client for `url` connects with the options `opts_src` (source) until its n-th
    on_connect or `timeout_ms`: (firmware stdout, [(rc, ticks_ms, description)]). A
    failed first attempt leaves the client unconnected."""
    script = ATTEMPTS.replace("OPTS", opts_src).replace("N_EVENTS", str(n)).replace("TIMEOUT_MS", str(timeout_ms))
    rc, out, err = run_fw(script, vars={"URL": url, "CID": cid}, timeout=20)
    assert rc == 0, out + err
    cs = connects(out)
    assert len(cs) >= n, "want %d on_connect calls: %r\n%s%s" % (n, cs, out, err)
    if cs[0][0] != 0:
        assert "CONNECTED False" in out, out
    return out, cs


def connects(out):
    """[(rc, ticks_ms, description)] from CONNECT_LOG lines."""
    return [(int(m.group(1)), int(m.group(2)), eval(m.group(3)))
            for m in re.finditer(r"^CONNECT (-?\d+) (\d+) ('.*'|\".*\")$", out, re.M)]


def opts_code(kind, pki, **extra):
    """Source of the connect() options dict a firmware script uses for a listener kind:
    the CA as a PEM str for TLS kinds, plus the client certificate and key for mtls."""
    parts = []
    if kind in ("tls", "mtls", "wss"):
        parts.append("'trust_store': open(%r).read()" % pki.path("ca.pem"))
    if kind == "mtls":
        parts.append("'key_store': open(%r).read()" % pki.path("client.pem"))
        parts.append("'private_key': open(%r).read()" % pki.path("client.key"))
    for k, v in extra.items():
        parts.append("%r: %s" % (k, v))
    return "{" + ", ".join(parts) + "}"


SMALL_CASES = """[
    ('self/q0', bytes(range(256)), 0),
    ('self/q1', bytes(range(255, -1, -1)), 1),
    ('self/q2', 'h\\u00e9llo \\u2603', 2),
    ('self/q1/empty', b'', 1),
    ('self/q2/bytearray', bytearray(b'\\x00\\xff' * 100), 2),
    ('out/q0', 'zero', 0),
    ('out/q1', b'\\x00one\\xff', 1),
    ('out/q2', bytearray(b'two\\r\\n'), 2),
]"""
SMALL_INBOUND = [("in/q0", bytes(range(256)), 0), ("in/q1", b"\x00peer\xff", 1), ("in/q2", b"", 2)]

BIG = 256 * 1024
BIG_CASES = """[
    ('self/big', bytes(range(256)) * (%d // 256), 1),
    ('out/big', bytes(i * 7 & 255 for i in range(256)) * (%d // 256), 2),
]""" % (BIG, BIG)
BIG_INBOUND = [("in/big", bytes(range(255, -1, -1)) * (BIG // 256), 1)]
