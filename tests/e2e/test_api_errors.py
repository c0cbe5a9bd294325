"""Issue 4: every TypeError / MqttError case of the contract (API.md) and of the
project's decisions where the contract is silent, plus the matching valid calls.

All cases run in one firmware process (fast); each case is its own pytest test.
A client for a port where nothing listens is used: argument checking must not depend
on the network, and a call that wrongly succeeds starts nothing harmful. Calls that
should succeed are listed too, so that a module raising for everything fails here.
"""
import re
import subprocess

import pytest

from conftest import FIRMWARE, firmware_command, free_port

# (id, Python expression evaluated in the firmware, expected outcome)
#   'ok'                 any return value
#   'ok:<repr>'          returns exactly this value
#   'mid'                returns an int > 0
#   'TypeError' / 'ValueError' / 'MqttError <n>'
CONNECT_CASES = [
    ("connect-no-options", "conn()", "ok:None"),
    ("connect-empty-options", "conn({})", "ok:None"),
    ("connect-all-valid-options", "conn({'keep_alive': 60, 'username': 'u', 'password': 'p', "
     "'will_topic': 'w/t', 'will_qos': 2, 'will_message': b'bye', 'will_retain': True, "
     "'max_inflight': 10, 'max_buffered': 50})", "ok:None"),
    ("connect-on_connect-none", "conn_cb(None, {})", "ok:None"),
    ("connect-options-none", "conn(None)", "ok:None"),
    ("connect-on_connect-not-callable", "conn_cb(5, {})", "TypeError"),
    ("connect-on_connect-str", "conn_cb('f', {})", "TypeError"),
    ("connect-options-not-dict", "conn([('keep_alive', 5)])", "TypeError"),
    ("connect-unknown-key", "conn({'keepalive': 5})", "TypeError"),
    ("connect-unknown-key-clean", "conn({'clean_session': True})", "TypeError"),
    ("connect-key-not-str", "conn({5: 1})", "TypeError"),
    ("keep_alive-none", "conn({'keep_alive': None})", "ok:None"),
    ("keep_alive-0", "conn({'keep_alive': 0})", "ok:None"),
    ("keep_alive-65535", "conn({'keep_alive': 65535})", "ok:None"),
    ("keep_alive-str", "conn({'keep_alive': '10'})", "TypeError"),
    ("keep_alive-float", "conn({'keep_alive': 1.5})", "TypeError"),
    ("keep_alive-negative", "conn({'keep_alive': -1})", "TypeError"),
    ("keep_alive-65536", "conn({'keep_alive': 65536})", "TypeError"),
    ("username-int", "conn({'username': 5})", "TypeError"),
    ("username-bytes", "conn({'username': b'u'})", "TypeError"),
    ("username-only", "conn({'username': 'u'})", "ok:None"),
    ("password-str", "conn({'username': 'u', 'password': 'p'})", "ok:None"),
    ("password-bytes", "conn({'username': 'u', 'password': b'\\x00\\xff'})", "ok:None"),
    ("password-bytearray", "conn({'username': 'u', 'password': bytearray(b'p')})", "ok:None"),
    ("password-int", "conn({'username': 'u', 'password': 5})", "TypeError"),
    ("password-without-username", "conn({'password': 'p'})", "TypeError"),
    ("will_qos-without-will_topic", "conn({'will_qos': 1})", "TypeError"),
    ("will_message-without-will_topic", "conn({'will_message': 'x'})", "TypeError"),
    ("will_retain-without-will_topic", "conn({'will_retain': True})", "TypeError"),
    ("will_topic-without-will_qos", "conn({'will_topic': 'w'})", "TypeError"),
    ("will_topic-empty", "conn({'will_topic': '', 'will_qos': 0})", "MqttError -17"),
    ("will_topic-int", "conn({'will_topic': 5, 'will_qos': 0})", "TypeError"),
    ("will_topic-plus", "conn({'will_topic': 'a/+', 'will_qos': 0})", "TypeError"),
    ("will_topic-hash", "conn({'will_topic': 'a/#', 'will_qos': 0})", "TypeError"),
    ("will_topic-nul", "conn({'will_topic': 'a\\x00b', 'will_qos': 0})", "MqttError -7"),
    ("will_retain-1", "conn({'will_topic': 'w', 'will_qos': 0, 'will_retain': 1})", "ok:None"),
    ("will_qos-3", "conn({'will_topic': 'w', 'will_qos': 3})", "TypeError"),
    ("will_qos-negative", "conn({'will_topic': 'w', 'will_qos': -1})", "TypeError"),
    ("will_qos-str", "conn({'will_topic': 'w', 'will_qos': '1'})", "TypeError"),
    ("will_message-none", "conn({'will_topic': 'w', 'will_qos': 0, 'will_message': None})", "ok:None"),
    ("will_message-str", "conn({'will_topic': 'w', 'will_qos': 1, 'will_message': 'x'})", "ok:None"),
    ("will_message-bytearray", "conn({'will_topic': 'w', 'will_qos': 1, 'will_message': bytearray(3)})", "ok:None"),
    ("will_message-int", "conn({'will_topic': 'w', 'will_qos': 0, 'will_message': 5})", "TypeError"),
    ("will_retain-str", "conn({'will_topic': 'w', 'will_qos': 0, 'will_retain': 'yes'})", "TypeError"),
    ("trust_store-with-tcp", "conn({'trust_store': 'PEM'})", "TypeError"),
    ("key_store-with-tcp", "conn({'key_store': b'PEM'})", "TypeError"),
    ("private_key-with-tcp", "conn({'private_key': bytearray(b'PEM')})", "TypeError"),
    ("max_inflight-1", "conn({'max_inflight': 1})", "ok:None"),
    ("max_inflight-65535", "conn({'max_inflight': 65535})", "ok:None"),
    ("max_inflight-0", "conn({'max_inflight': 0})", "TypeError"),
    ("max_inflight-65536", "conn({'max_inflight': 65536})", "TypeError"),
    ("max_inflight-str", "conn({'max_inflight': '5'})", "TypeError"),
    ("max_buffered-0", "conn({'max_buffered': 0})", "ok:None"),
    ("max_buffered-negative", "conn({'max_buffered': -1})", "MqttError -19"),
    ("max_buffered-str", "conn({'max_buffered': '5'})", "TypeError"),
    ("connect-twice-while-connecting", "conn_twice()", "MqttError -18"),
]

PUBLISH_CASES = [
    ("publish-bytes", "pub('a/b', b'x', 0)", "mid"),
    ("publish-str", "pub('a/b', 'x', 1)", "mid"),
    ("publish-bytearray", "pub('a/b', bytearray(b'x'), 2)", "mid"),
    ("publish-empty-message", "pub('a/b', b'', 1)", "mid"),
    ("publish-qos-constants", "pub('a/b', b'', mqtt.QOS2)", "mid"),
    ("publish-retain-true", "pub('a/b', b'x', 1, True)", "mid"),
    ("publish-retain-0", "pub('a/b', b'x', 1, 0)", "mid"),
    ("publish-retain-1", "pub('a/b', b'x', 1, 1)", "mid"),
    ("publish-retain-keyword", "pub_kw('a/b', b'x', 1)", "mid"),
    ("publish-topic-int", "pub(5, b'x', 0)", "TypeError"),
    ("publish-topic-bytes", "pub(b'a/b', b'x', 0)", "TypeError"),
    ("publish-topic-none", "pub(None, b'x', 0)", "TypeError"),
    ("publish-topic-empty", "pub('', b'x', 0)", "TypeError"),
    ("publish-topic-plus", "pub('a/+', b'x', 0)", "TypeError"),
    ("publish-topic-hash", "pub('a/#', b'x', 0)", "TypeError"),
    ("publish-topic-plus-inside", "pub('a+b', b'x', 0)", "TypeError"),
    ("publish-topic-nul", "pub('a\\x00b', b'x', 0)", "MqttError -7"),
    ("publish-message-int", "pub('a/b', 5, 0)", "TypeError"),
    ("publish-message-none", "pub('a/b', None, 0)", "TypeError"),
    ("publish-message-list", "pub('a/b', [1, 2], 0)", "TypeError"),
    ("publish-qos-3", "pub('a/b', b'x', 3)", "TypeError"),
    ("publish-qos-negative", "pub('a/b', b'x', -1)", "TypeError"),
    ("publish-qos-str", "pub('a/b', b'x', '1')", "TypeError"),
    ("publish-qos-none", "pub('a/b', b'x', None)", "TypeError"),
    ("publish-qos-missing", "pub('a/b', b'x')", "TypeError"),
    ("publish-retain-str", "pub('a/b', b'x', 0, 'yes')", "TypeError"),
    ("publish-retain-2", "pub('a/b', b'x', 0, 2)", "TypeError"),
]

SUBSCRIBE_CASES = [
    ("subscribe-tuple", "sub(('a/b', 1))", "int"),
    ("subscribe-list", "sub([('a/b', 0), ('c/+/d', 1), ('e/#', 2), ('#', 0), ('+', 1)])", "int"),
    ("subscribe-str", "sub('a/b')", "TypeError"),
    ("subscribe-none", "sub(None)", "TypeError"),
    ("subscribe-1-tuple", "sub(('a/b',))", "TypeError"),
    ("subscribe-3-tuple", "sub(('a/b', 0, 1))", "TypeError"),
    ("subscribe-filter-int", "sub((5, 0))", "TypeError"),
    ("subscribe-filter-empty", "sub(('', 0))", "TypeError"),
    ("subscribe-hash-not-last", "sub(('a/#/b', 0))", "TypeError"),
    ("subscribe-hash-in-level", "sub(('a/b#', 0))", "TypeError"),
    ("subscribe-plus-in-level", "sub(('a/b+/c', 0))", "TypeError"),
    ("subscribe-qos-3", "sub(('a/b', 3))", "TypeError"),
    ("subscribe-qos-negative", "sub(('a/b', -1))", "TypeError"),
    ("subscribe-qos-str", "sub(('a/b', '1'))", "TypeError"),
    ("subscribe-list-with-str", "sub([('a/b', 0), 'c'])", "TypeError"),
    ("subscribe-list-bad-filter", "sub([('a/b', 0), ('c/#/d', 0)])", "TypeError"),
    ("subscribe-filter-nul", "sub(('a\\x00b', 0))", "ok:-7"),
    ("subscribe-empty-list", "sub([])", "TypeError"),
    ("subscribe-16-filters", "sub([('f/%d' % i, 0) for i in range(16)])", "int"),
    ("subscribe-17-filters", "sub([('f/%d' % i, 0) for i in range(17)])", "ok:-8"),
    ("disconnect-never-connected", "client().disconnect()", "MqttError -3"),
    ("disconnect-twice", "disc_twice()", "MqttError -3"),
    ("unsubscribe-str", "unsub('a/b')", "int"),
    ("unsubscribe-list", "unsub(['a/b', 'c/+/d', 'e/#'])", "int"),
    ("unsubscribe-tuples", "unsub([('a/b', 1), ('c/#', 0)])", "int"),
    ("unsubscribe-int", "unsub(5)", "TypeError"),
    ("unsubscribe-empty", "unsub('')", "TypeError"),
    ("unsubscribe-list-with-int", "unsub(['a/b', 5])", "TypeError"),
    ("unsubscribe-bad-filter", "unsub('a/#/b')", "TypeError"),
]

CALLBACK_CASES = []
for _name in ("on_message", "on_subscribe", "on_publish", "on_unsubscribe"):
    CALLBACK_CASES += [
        ("%s-int" % _name, "cb(%r, 5)" % _name, "TypeError"),
        ("%s-str" % _name, "cb(%r, 'print')" % _name, "TypeError"),
        ("%s-lambda" % _name, "cb(%r, lambda *a: None)" % _name, "ok"),
        ("%s-builtin" % _name, "cb(%r, print)" % _name, "ok"),
        ("%s-bound-method" % _name, "cb(%r, Callable().method)" % _name, "ok"),
        ("%s-callable-object" % _name, "cb(%r, Callable())" % _name, "ok"),
        ("%s-none" % _name, "cb(%r, None)" % _name, "ok"),
    ]

ALL_CASES = CONNECT_CASES + PUBLISH_CASES + SUBSCRIBE_CASES + CALLBACK_CASES

RUNNER = r'''
import mqtt, gc
URL = 'tcp://127.0.0.1:%d'
n = [0]
def client():
    n[0] += 1
    gc.collect()   # the firmware has a fixed number of client slots; free the old ones
    return mqtt.MqttClient(URL, 'dev-args-%%d' %% n[0])
def cleanup(c):
    try:
        c.disconnect()
    except Exception:
        pass
def on_connect(rc, flags):
    pass
def conn_cb(cb, *opts):
    c = client()
    try:
        return c.connect(cb, *opts)
    finally:
        cleanup(c)
def conn(*opts):
    return conn_cb(on_connect, *opts)
def conn_twice():
    c = client()
    c.connect(on_connect, {})
    try:
        return c.connect(on_connect, {})
    finally:
        cleanup(c)
pc = client()
def pub(*a):
    return pc.publish(*a)
def pub_kw(t, m, q):
    return pc.publish(t, m, q, retain=True)
def disc_twice():
    c = client()
    c.connect(on_connect, {})
    c.disconnect()
    return c.disconnect()
def sub(t):
    return pc.subscribe(t)
def unsub(t):
    return pc.unsubscribe(t)
class Callable:
    def __call__(self, *a):
        pass
    def method(self, *a):
        pass
def cb(name, f):
    return getattr(client(), name)(f)
def outcome(f):
    try:
        r = f()
    except mqtt.MqttError as e:
        return 'MqttError %%d' %% e.errno
    except TypeError:
        return 'TypeError'
    except ValueError:
        return 'ValueError'
    except Exception as e:
        return 'other %%s %%s' %% (type(e).__name__, e)
    return 'ret %%r' %% (r,)
'''


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    lines = [RUNNER % free_port()]
    for cid, expr, _ in ALL_CASES:
        lines.append("print('CASE', %r, outcome(lambda: %s))" % (cid, expr))
    lines.append("print('ALL DONE')")
    path = tmp_path_factory.mktemp("args") / "args.py"
    path.write_text("\n".join(lines) + "\n")
    p = subprocess.run(firmware_command(path), capture_output=True, text=True, timeout=30)
    res = {}
    for line in p.stdout.splitlines():
        m = re.match(r"CASE (\S+) (.*)$", line)
        if m:
            res[m.group(1)] = m.group(2)
    return res, p


def check(outcome, expected):
    if expected == "ok":
        return outcome.startswith("ret ")
    if expected.startswith("ok:"):
        return outcome == "ret " + expected[3:]
    if expected == "mid":
        m = re.match(r"ret (-?\d+)$", outcome)
        return bool(m) and int(m.group(1)) > 0
    if expected == "int":
        return bool(re.match(r"ret -?\d+$", outcome))
    return outcome == expected


def test_runner_completed(results):
    res, p = results
    assert "ALL DONE" in p.stdout, p.stdout[-3000:] + p.stderr
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("cid,expr,expected", ALL_CASES, ids=[c[0] for c in ALL_CASES])
def test_argument_case(results, cid, expr, expected):
    res, p = results
    assert cid in res, "case did not run:\n%s\n%s" % (p.stdout[-2000:], p.stderr)
    assert check(res[cid], expected), "%s -> %s, expected %s" % (expr, res[cid], expected)


def test_mids_distinct_and_positive(run_fw):
    rc, out, err = run_fw("""
import mqtt
c = mqtt.MqttClient(URL, 'dev-mids')
mids = [c.publish('t/%d' % i, b'', i % 3) for i in range(30)]
print('OK', all(type(m) is int and m > 0 for m in mids), len(set(mids)))
""", vars={"URL": "tcp://127.0.0.1:%d" % free_port()})
    assert rc == 0, out + err
    assert "OK True 30" in out


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_max_buffered_full_raises_12(run_fw, qos):
    """Disconnected client (nothing listens) with max_buffered 5: its messages wait in the
    buffer (API.md: "When disconnected ... the message waits in the client's buffer"),
    so the 6th publish finds it full and raises MqttError -12."""
    rc, out, err = run_fw("""
import mqtt
c = mqtt.MqttClient(URL, 'dev-buf12')
ev = []
c.connect(lambda rc, f: ev.append(rc), {'max_buffered': 5})
wait_until(lambda: ev, 5000)
res = []
for i in range(7):
    try:
        res.append(c.publish('t', b'x', QOS) > 0)
    except mqtt.MqttError as e:
        res.append(e.errno)
print('RES', res)
c.disconnect()
""", vars={"URL": "tcp://127.0.0.1:%d" % free_port(), "QOS": qos})
    assert rc == 0, out + err
    assert "RES [True, True, True, True, True, -12, -12]" in out, out
