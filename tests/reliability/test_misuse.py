"""Issue 6, misuse: every argument of every method with wrong types, None, huge values,
non-UTF-8 and embedded NUL strings; callbacks that raise or call back into the client;
methods on a client that was never connected or was disconnected. Always the documented
exception or behaviour (docs/mqtt.Client.rst, docs/mqtt.MqttError.rst; API.md decides where
they differ).

The argument checks run inside the firmware: `chk(name, fn, want)` prints `GOOD name` or
`BAD name want=... got=...`; the test fails on any BAD line and lists them all.
"""
import re

import pytest

from relharness import parse_kv

CHK = r'''
import mqtt, gc
def outcome(fn):
    try:
        r = fn()
        return ('ret', r)
    except mqtt.MqttError as e:
        return ('MqttError', e.errno)
    except Exception as e:
        return (type(e).__name__, str(e)[:60])
def matches(want, got):
    if isinstance(want, tuple) and want and want[0] == 'any-of':
        return any(matches(w, got) for w in want[1:])
    if want == 'ok':
        return got[0] == 'ret'
    if want == 'mid':
        return got[0] == 'ret' and isinstance(got[1], int) and got[1] > 0
    if isinstance(want, int):
        return got == ('MqttError', want)
    if isinstance(want, tuple) and want[0] == 'ret':
        return got == want
    if want == 'noncrash':
        return True
    return got[0] == want
def chk(name, fn, want):
    got = outcome(fn)
    if matches(want, got):
        print('GOOD', name, repr(got)[:80])
    else:
        print('BAD', name, 'want=%r got=%r' % (want, got))
'''


def run_checks(run_fw, script, vars=None, timeout=30):
    rc, out, err = run_fw(CHK + script, vars=vars or {}, timeout=timeout)
    good = re.findall(r"^GOOD .*$", out, re.M)
    bad = re.findall(r"^BAD .*$", out, re.M)
    print("\n%d checks, %d bad" % (len(good) + len(bad), len(bad)))
    for l in bad:
        print("  " + l)
    assert rc == 0, "firmware exit %r\n%s\n%s" % (rc, out[-3000:], err[-3000:])
    assert "Traceback" not in err, err
    assert good, out
    assert not bad, "\n".join(bad)
    return out


def test_constructor_arguments(run_fw):
    run_checks(run_fw, r'''
C = mqtt.MqttClient
U = 'tcp://127.0.0.1:1883'
chk('url None', lambda: C(None, 'x'), 'TypeError')
chk('url int', lambda: C(1883, 'x'), 'TypeError')
chk('url bytes', lambda: C(b'tcp://127.0.0.1', 'x'), 'TypeError')
chk('url bytearray', lambda: C(bytearray(b'tcp://127.0.0.1'), 'x'), 'TypeError')
chk('url list', lambda: C(['tcp://h'], 'x'), 'TypeError')
chk('missing client_id', lambda: C(U), 'TypeError')
chk('no args', lambda: C(), 'TypeError')
chk('client_id None', lambda: C(U, None), 'TypeError')
chk('client_id int', lambda: C(U, 7), 'TypeError')
chk('client_id bytes', lambda: C(U, b'dev'), 'TypeError')
chk('client_id bytes non-utf8', lambda: C(U, b'\xff\xfe'), 'TypeError')
chk('extra positional', lambda: C(U, 'x', 1), 'TypeError')
chk('scheme http', lambda: C('http://h', 'x'), -14)
chk('no scheme', lambda: C('localhost:1883', 'x'), -14)
chk('empty url', lambda: C('', 'x'), -14)
chk('no host', lambda: C('tcp://', 'x'), 'ValueError')
chk('no host with port', lambda: C('tcp://:1883', 'x'), 'ValueError')
chk('port 0', lambda: C('tcp://h:0', 'x'), 'ValueError')
chk('port 65536', lambda: C('tcp://h:65536', 'x'), 'ValueError')
chk('port -1', lambda: C('tcp://h:-1', 'x'), 'ValueError')
chk('port huge', lambda: C('tcp://h:99999999999999999999999999', 'x'), 'ValueError')
chk('port letters', lambda: C('tcp://h:abc', 'x'), 'ValueError')
chk('port empty', lambda: C('tcp://h:', 'x'), 'ValueError')
chk('userinfo', lambda: C('tcp://u:p@h', 'x'), 'ValueError')
chk('path with tcp', lambda: C('tcp://h/x', 'x'), 'ValueError')
chk('ipv6 unclosed', lambda: C('tcp://[::1', 'x'), 'ValueError')
chk('lone slash ok', lambda: C('tcp://h/', 'x'), 'ok')
chk('scheme case', lambda: C('TCP://h', 'x'), 'ok')
chk('ipv6 ok', lambda: C('mqtt://[::1]:1883', 'x'), 'ok')
chk('ws path ok', lambda: C('ws://h/p', 'x'), 'ok')
chk('ssl ok', lambda: C('ssl://h', 'x'), 'ok')
chk('client_id NUL accepted at construction', lambda: C(U, 'a\x00b'), 'ok')
chk('client_id 100k accepted at construction', lambda: C(U, 'i' * 100000), 'ok')
chk('client_id empty accepted at construction', lambda: C(U, ''), 'ok')
# not documented: must simply not crash (printed)
chk('url 100k host (undocumented)', lambda: C('tcp://' + 'a' * 100000, 'x'), 'noncrash')
chk('url NUL in host (undocumented)', lambda: C('tcp://h\x00x:1883', 'x'), 'noncrash')
chk('url non-ascii host (undocumented)', lambda: C('tcp://h\u00e9\u2603', 'x'), 'noncrash')
gc.collect()
# at most 32 clients at the same time; one more is MqttError -1; freed clients free their slot
L = []
got = None
try:
    for i in range(40):
        L.append(C(U, 'n%d' % i))
except mqtt.MqttError as e:
    got = e.errno
chk('33rd client', lambda: (got, len(L) <= 32), ('ret', (-1, True)))
L = None
gc.collect()
chk('client after freeing', lambda: C(U, 'again'), 'ok')
c = C(U, 'r')
chk('repr', lambda: 'disconnected' in repr(c) and 'tcp://127.0.0.1:1883' in repr(c), ('ret', True))
chk('Client alias', lambda: mqtt.Client is mqtt.MqttClient, ('ret', True))
''')


def test_connect_arguments(run_fw):
    run_checks(run_fw, r'''
C = mqtt.MqttClient
U = 'tcp://127.0.0.1:1'
cc = C(U, 'cc')
cb = lambda rc, flags: None
def con(opts):
    return lambda: cc.connect(cb, opts)
chk('on_connect int', lambda: cc.connect(1), 'TypeError')
chk('on_connect str', lambda: cc.connect('f', {}), 'TypeError')
chk('no on_connect', lambda: cc.connect(), 'TypeError')
chk('options list', lambda: cc.connect(cb, []), 'TypeError')
chk('options int', lambda: cc.connect(cb, 1), 'TypeError')
chk('options str', lambda: cc.connect(cb, 'keep_alive'), 'TypeError')
chk('options tuple', lambda: cc.connect(cb, (('keep_alive', 1),)), 'TypeError')
chk('unknown key', con({'bogus': 1}), 'TypeError')
chk('int key', con({1: 2}), 'TypeError')
chk('bytes key', con({b'keep_alive': 1}), 'TypeError')
chk('key with NUL', con({'keep_alive\x00': 1}), 'TypeError')
for v in (-1, 65536, 2**40, 2**100, '60', 1.5, [], b'1'):
    chk('keep_alive %r' % (v,), con({'keep_alive': v}), 'TypeError')
for v in (1, b'u', bytearray(b'u'), None, ['u']):
    chk('username %r' % (v,), con({'username': v}), 'TypeError')
chk('password alone', con({'password': 'p'}), 'TypeError')
for v in (1, None, ['p'], 1.5):
    chk('password %r' % (v,), con({'username': 'u', 'password': v}), 'TypeError')
chk('will_topic alone', con({'will_topic': 'w'}), 'TypeError')
chk('will_qos alone', con({'will_qos': 1}), 'TypeError')
chk('will_message alone', con({'will_message': 'm'}), 'TypeError')
chk('will_retain alone', con({'will_retain': True}), 'TypeError')
chk('will_topic empty', con({'will_topic': '', 'will_qos': 0}), -17)
chk('will_topic NUL', con({'will_topic': 'a\x00b', 'will_qos': 0}), -7)
for t in ('a/+', '#', 'a/#', '+'):
    chk('will_topic wildcard %r' % t, con({'will_topic': t, 'will_qos': 0}), 'TypeError')
for t in (b'w', 1, None, bytearray(b'w')):
    chk('will_topic %r' % (t,), con({'will_topic': t, 'will_qos': 0}), 'TypeError')
for q in (3, -1, '1', None, 1.0, 2**70):
    chk('will_qos %r' % (q,), con({'will_topic': 'w', 'will_qos': q}), 'TypeError')
for m in (1, 1.5, ['m'], {}):
    chk('will_message %r' % (m,), con({'will_topic': 'w', 'will_qos': 0, 'will_message': m}), 'TypeError')
for r in ('yes', 2, [], 1.5):
    chk('will_retain %r' % (r,), con({'will_topic': 'w', 'will_qos': 0, 'will_retain': r}), 'TypeError')
for k in ('trust_store', 'key_store', 'private_key'):
    chk('%s with tcp' % k, con({k: 'PEM'}), 'TypeError')
for v in (0, 65536, -1, '1', None, 2**70):
    chk('max_inflight %r' % (v,), con({'max_inflight': v}), 'TypeError')
chk('max_buffered -1', con({'max_buffered': -1}), -19)
chk('max_buffered -2**70', con({'max_buffered': -2**70}), ('any-of', -19, 'TypeError', 'OverflowError'))
for v in ('1', None, 1.5):
    chk('max_buffered %r' % (v,), con({'max_buffered': v}), 'TypeError')
# huge but well-typed: accepted, or refused as out of range; never a crash or MemoryError
chk('max_buffered 2**31', con({'max_buffered': 2**31}), ('any-of', 'ok', 'TypeError', 'OverflowError'))
try:
    cc.disconnect()
except mqtt.MqttError:
    pass
chk('max_buffered 2**70', con({'max_buffered': 2**70}), ('any-of', 'ok', 'TypeError', 'OverflowError'))
try:
    cc.disconnect()
except mqtt.MqttError:
    pass
# TLS / WebSocket: -13 while not implemented (the docs); once implemented, connect starts
for s in ('ssl', 'mqtts', 'ws', 'wss'):
    t = C('%s://127.0.0.1:1' % s, 't-' + s)
    chk('trust_store int on %s' % s, lambda: t.connect(cb, {'trust_store': 1}), ('any-of', 'TypeError', -13))
    if s == 'ws':
        chk('trust_store on %s (no TLS)' % s, lambda: t.connect(cb, {'trust_store': 'PEM'}), ('any-of', 'TypeError', -13))
    else:
        chk('trust_store None on %s' % s, lambda: t.connect(cb, {'trust_store': None}), ('any-of', 'TypeError', -13))
    r = outcome(lambda: t.connect(cb, {}))
    print('NOTE connect %s: %r' % (s, r))
    chk('connect %s' % s, lambda: r, ('any-of', ('ret', ('ret', None)), ('ret', ('MqttError', -13))))
    chk('disconnect after connect %s' % s, lambda: t.disconnect(), ('ret', None) if r[0] == 'ret' else -3)
# nothing was started by the failed calls: disconnect says "not connected"
chk('disconnect after failed connects', lambda: cc.disconnect(), -3)
chk('connect None callback, None options', lambda: cc.connect(None, None), ('ret', None))
chk('connect twice', lambda: cc.connect(cb, {}), -18)
chk('is_connected while connecting', lambda: cc.is_connected(), ('ret', False))
chk('repr while connecting', lambda: 'connecting' in repr(cc) or 'disconnected' in repr(cc), ('ret', True))
chk('disconnect while connecting', lambda: cc.disconnect(), ('ret', None))
chk('disconnect again', lambda: cc.disconnect(), -3)
chk('disconnect extra arg', lambda: cc.disconnect(1), 'TypeError')
chk('is_connected extra arg', lambda: cc.is_connected(1), 'TypeError')
''')


def test_publish_subscribe_arguments(run_fw):
    run_checks(run_fw, r'''
C = mqtt.MqttClient
p = C('tcp://127.0.0.1:1', 'p')     # never connected: everything is buffered
pub = lambda *a: (lambda: p.publish(*a))
for t in (None, 1, b't', bytearray(b't'), ['t'], b'\xff\xfe'):
    chk('topic %r' % (t,), pub(t, 'm', 0), 'TypeError')
for t in ('', 'a/+', '+', '#', 'a/#', 'a/+/b', 'a+b', 'a#'):
    chk('topic %r' % t, pub(t, 'm', 0), 'TypeError')
chk('topic NUL', pub('a\x00b', 'm', 0), -7)
chk('topic only NUL', pub('\x00', 'm', 1), -7)
for m in (None, 1, 1.5, ['m'], {}, memoryview(b'm'), (1,)):
    chk('message %r' % (m,), pub('t', m, 0), 'TypeError')
for q in (-1, 3, '1', None, 1.0, 2**70, b'\x01'):
    chk('qos %r' % (q,), pub('t', 'm', q), 'TypeError')
for r in ('x', 2, None, [], -1):
    chk('retain %r' % (r,), pub('t', 'm', 0, r), 'TypeError')
chk('missing qos', lambda: p.publish('t', 'm'), 'TypeError')
chk('missing message', lambda: p.publish('t'), 'TypeError')
chk('too many args', lambda: p.publish('t', 'm', 0, False, 1), 'TypeError')
# non-UTF-8: MicroPython cannot make such a str (decode checks); bytes where str is expected
try:
    s = b'a\xff'.decode('utf-8')
    print('NOTE non-utf8 str could be created')
    chk('non-utf8 str topic', pub(s, 'm', 0), ('any-of', -5, 'TypeError'))
except UnicodeError:
    print('NOTE non-utf8 str cannot be created (UnicodeError)')
# every valid form returns a fresh positive mid
mids = []
for args in (('t', 'm', 0), ('t', b'', 1), ('t', bytearray(b'\x00\xff'), 2), ('t', 'm', 0, True),
             ('t', 'm', 1, 0), ('t', 'm', 2, 1), ('t/\u00e9\u2603', 'h\u00e9', 1), ('t', 'a\x00b', 0)):
    chk('valid %r' % (args,), pub(*args), 'mid')
    mids.append(p.publish(*args))
chk('mids distinct', lambda: len(set(mids)) == len(mids), ('ret', True))
# undocumented: a topic too long to encode (> 65535 bytes) must be refused somehow, not crash
chk('topic 70000 bytes (undocumented)', pub('t' * 70000, 'm', 1), ('any-of', 'TypeError', 'ValueError', -8))
chk('payload 300 KiB', pub('t', b'x' * 300000, 1), 'mid')
# the buffer: default max_buffered 100 (16 + 1 used above)
n = 0
err = None
try:
    for i in range(200):
        p.publish('t', 'm', 0)
        n += 1
except mqtt.MqttError as e:
    err = e.errno
chk('buffer full', lambda: (err, n + 17), ('ret', (-12, 100)))
chk('publish after buffer full', pub('t', 'm', 1), -12)

s = C('tcp://127.0.0.1:1', 's')
sub = lambda a: (lambda: s.subscribe(a))
uns = lambda a: (lambda: s.unsubscribe(a))
for a in (None, 'a', 1, ('a',), ('a', 1, 2), [('a', 1), 'b'], [], (('a', 1), ('b', 1)), [['a', 1]],
          ('', 1), ('a+', 1), ('a/#/b', 1), ('a#', 1), ('+a', 1), ('#/a', 1), ('a', 3), ('a', -1), ('a', '1'),
          ('a', None), (b'a', 1), (None, 1), ('a', 2**70), [('a', 1), ('b', 3)]):
    chk('subscribe %r' % (a,), sub(a), 'TypeError')
chk('subscribe 17 filters', sub([('f%d' % i, 1) for i in range(17)]), ('ret', -8))
chk('subscribe NUL', sub(('a\x00', 1)), ('ret', -7))
chk('subscribe 1000 filters', sub([('f%d' % i, 1) for i in range(1000)]), ('ret', -8))
for a in (('a/+/b', 1), ('#', 0), ('+', 2), [('a', 0), ('b', 1)], ('a/+/#', 1), [('f%d' % i, 1) for i in range(16)],
          ('\u00e9/+', 1), ('a//b', 0), ('/', 0)):
    chk('subscribe %r' % (a,), sub(a), 'mid')
for a in (None, 1, b'a', '', [], 'a+', ['a', ''], ['a', 1], ('a',), ('', 1)):
    chk('unsubscribe %r' % (a,), uns(a), 'TypeError')
chk('unsubscribe NUL', uns('a\x00'), ('ret', -7))
# the docs: unsubscribe "errors as for subscribe" (-8 above 16 filters); not stated for sure
r = outcome(uns(['f%d' % i for i in range(17)]))
print('NOTE unsubscribe 17 filters: %r' % (r,))
chk('unsubscribe 17', lambda: r, ('any-of', ('ret', ('ret', -8)), 'ok'))
for a in ('a', ['a', 'b'], ('a', 1), [('a', 1)], '#', 'a/+'):
    chk('unsubscribe %r' % (a,), uns(a), 'mid')
for name in ('on_message', 'on_publish', 'on_subscribe', 'on_unsubscribe'):
    m = getattr(s, name)
    for v in (1, 'f', [], b'f'):
        chk('%s(%r)' % (name, v), lambda: m(v), 'TypeError')
    chk('%s()' % name, lambda: m(), 'TypeError')
    chk('%s(None)' % name, lambda: m(None), ('ret', None))
    chk('%s(lambda)' % name, lambda: m(lambda *a: None), ('ret', None))
    chk('%s(bound method)' % name, lambda: m(p.is_connected), ('ret', None))
    chk('%s(two args)' % name, lambda: m(None, None), 'TypeError')
chk('disconnect never connected', lambda: s.disconnect(), -3)
chk('is_connected never connected', lambda: s.is_connected(), ('ret', False))

E = mqtt.ErrorDescription
for v in ('x', None, 1.5, b'1', [], (1,)):
    chk('ErrorDescription(%r)' % (v,), lambda: E(v), 'TypeError')
for v in (2**100, -2**100, 1000, -1000, 6, -36, 2**31, -2**31 - 1):
    chk('ErrorDescription(%r)' % v, lambda: E(v), ('ret', 'unknown error'))
for v in list(range(0, -36, -1)) + [1, 2, 3, 4, 5]:
    chk('ErrorDescription(%d) known' % v, lambda: isinstance(E(v), str) and E(v) != 'unknown error', ('ret', True))
chk('ErrorDescription()', lambda: E(), 'TypeError')
try:
    C('http://h', 'x')
except mqtt.MqttError as e:
    chk('MqttError fields', lambda: (e.errno, e.args[0], e.args[1] == E(-14), isinstance(e, Exception)),
        ('ret', (-14, -14, True, True)))
''')


ENCODE_FW = r'''
import mqtt, time
def attempt(name, cid, opts):
    ev = []
    c = mqtt.MqttClient(URL, cid)
    c.connect(lambda rc, flags: ev.append(rc), opts)
    wait_until(lambda: ev, 5000)
    time.sleep_ms(1500)   # a retry would come after 1 s
    try:
        c.disconnect()
        d = 'disconnected'
    except mqtt.MqttError as e:
        d = e.errno
    print('ATTEMPT', (name, ev, c.is_connected(), d))
attempt('cid NUL', 'a\x00b', {})
attempt('cid 70000', 'i' * 70000, {})
attempt('username NUL', 'dev-u', {'username': 'u\x00v'})
attempt('username 70000', 'dev-u2', {'username': 'u' * 70000})
attempt('password 70000', 'dev-p', {'username': 'u', 'password': b'p' * 70000})
attempt('will_message 70000', 'dev-w', {'will_topic': 'w', 'will_qos': 1, 'will_message': b'w' * 70000})
attempt('empty cid', '', {})
'''


def test_connect_parameters_that_cannot_be_encoded(run_fw, broker):
    """Documented: a client id or user name with NUL -> on_connect(-7), longer than 65535
    bytes -> on_connect(-8), no retry; an empty id -> CONNACK 2 from mosquitto (persistent
    session), no retry. A 70000-byte password or will message is binary data with a 2-byte
    length too: the same -8 is expected (the docs say "a connect string")."""
    rc, out, err = run_fw(ENCODE_FW, vars={"URL": broker.url}, timeout=40)
    got = {a[0]: a[1:] for a in parse_kv(out, "ATTEMPT")}
    print(got)
    want = {
        "cid NUL": ([-7], False, -3),
        "cid 70000": ([-8], False, -3),
        "username NUL": ([-7], False, -3),
        "username 70000": ([-8], False, -3),
        "password 70000": ([-8], False, -3),
        "will_message 70000": ([-8], False, -3),
        "empty cid": ([2], False, -3),
    }
    bad = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
    assert rc == 0, out + err
    assert not bad, "got, wanted: %r" % bad


# ---------------------------------------------------------------------------------------
# callbacks that raise or call back into the client

CB_FW = r'''
import mqtt, gc, time
log = []
st = {'msgs': 0, 'echo': 0, 'subs': 0, 'connects': []}
def on_connect(rc, flags):
    st['connects'].append(rc)
    if MODE == 'raise_on_connect':
        raise ValueError('boom in on_connect')
    if MODE == 'connect_from_on_connect':
        try:
            c.connect(on_connect, {})
            print('NESTED-CONNECT returned')
        except mqtt.MqttError as e:
            print('NESTED-CONNECT', e.errno)
    if MODE == 'disconnect_from_on_connect':
        c.disconnect()
        print('DISCONNECTED-IN-CALLBACK', c.is_connected())
def on_message(topic, msg):
    st['msgs'] += 1
    gc.collect()
    if MODE == 'drop_reference':
        print('GOT', topic, bytes(msg))
    if MODE == 'raise_on_message':
        raise RuntimeError('boom in on_message')
    if MODE == 'echo':
        c.publish('cb/out', msg, 1)
        st['echo'] += 1
    if MODE == 'remove_on_message':
        c.on_message(None)
    if MODE == 'unsubscribe_from_on_message':
        print('UNSUB', c.unsubscribe('cb/in'))
def on_subscribe(mid, granted):
    st['subs'] += 1
    if MODE == 'chain_subscribe' and st['subs'] < 5:
        print('CHAIN', c.subscribe(('cb/chain/%d' % st['subs'], 1)))
    if MODE == 'raise_on_subscribe':
        raise KeyError('boom in on_subscribe')
def on_publish(mid, rc):
    if MODE == 'raise_on_publish':
        raise OSError(5)
c = mqtt.MqttClient(URL, 'cb-' + MODE)
c.on_message(on_message if MODE != 'wrong_arity' else (lambda: None))
c.on_subscribe(on_subscribe)
c.on_publish(on_publish)
c.connect(on_connect, {})
c.subscribe(('cb/in', 1))
if MODE == 'disconnect_from_on_connect':
    wait_until(lambda: st['connects'], 5000)
    time.sleep_ms(500)
    print('RESULT', (st['connects'], c.is_connected()))
    try:
        c.disconnect()
    except mqtt.MqttError as e:
        print('DISCONNECT-AGAIN', e.errno)
    raise SystemExit
wait_until(lambda: st['subs'] >= 1 and st['connects'] == [0], 5000)
if MODE == 'drop_reference':
    c = None
    gc.collect()
    print('READY')
else:
    print('READY')
    if MODE == 'wrong_arity':
        time.sleep_ms(2000)
        c.on_message(on_message)
        print('FIXED')
        wait_until(lambda: st['msgs'] >= 1, 8000)
    else:
        wait_until(lambda: st['msgs'] >= EXPECT_MSGS and (MODE != 'chain_subscribe' or st['subs'] >= 5), 8000)
    time.sleep_ms(500)
    print('RESULT', (st['connects'], c.is_connected(), st['msgs'], st['echo'], st['subs']))
    c.publish('cb/after', 'still works', 1)
    time.sleep_ms(500)
    c.disconnect()
'''


@pytest.mark.parametrize("mode", [
    "raise_on_connect", "raise_on_message", "raise_on_subscribe", "raise_on_publish", "echo",
    "connect_from_on_connect", "disconnect_from_on_connect", "chain_subscribe", "remove_on_message",
    "unsubscribe_from_on_message", "wrong_arity", "drop_reference"])
def test_callbacks(mode, spawn_fw, broker, make_peer):
    peer = make_peer(broker)
    peer.subscribe("cb/#", 1)
    n = 5
    p = spawn_fw(CB_FW, vars={"URL": broker.url, "MODE": mode, "EXPECT_MSGS": n})
    if mode == "disconnect_from_on_connect":
        rc = p.wait(15)
        out, err = p.stdout, p.stderr
        print(out, err)
        assert rc == 0, out + err
        assert "DISCONNECTED-IN-CALLBACK False" in out
        assert parse_kv(out, "RESULT") == [([0], False)], out
        assert "DISCONNECT-AGAIN -3" in out
        return
    p.expect(r"^READY$", 15)
    for i in range(n):
        peer.publish("cb/in", "m%d" % i, 1)
    if mode == "wrong_arity":
        # the callback fails for these; after it is fixed, one more message arrives
        p.expect(r"^FIXED$", 10)
        peer.publish("cb/in", "fixed", 1)
    if mode == "drop_reference":
        # the client object is unreferenced but connected: it must stay alive and keep delivering
        peer.publish("cb/in", "x", 1)
        p.expect(r"^GOT cb/in b'x'$", 10)
        assert p.proc.poll() is None, "firmware exited: the unreferenced connected client was freed?\n" + p.stdout
        p.kill()
        return
    rc = p.wait(30)
    out, err = p.stdout, p.stderr
    print(out, err)
    assert rc == 0, out + err
    res = parse_kv(out, "RESULT")
    assert res, out + err
    connects, connected, msgs, echo, subs = res[0]
    assert connects == [0] and connected, res
    assert peer.wait_messages(1, 5, "cb/after"), "client stopped working after the callbacks"
    if mode.startswith("raise_"):
        assert "mqtt: exception in callback" in out + err, out + err
        assert "boom" in out + err or "OSError" in out + err
    if mode in ("raise_on_message", "echo"):
        assert msgs == n, res  # each message once: the failure of a callback does not cause redelivery
    if mode == "echo":
        got = peer.wait_messages(n, 10, "cb/out")
        assert sorted(m[1] for m in got) == [b"m%d" % i for i in range(n)]
    if mode == "connect_from_on_connect":
        assert "NESTED-CONNECT -18" in out, out
    if mode == "chain_subscribe":
        assert subs == 5 and len(re.findall(r"^CHAIN \d+$", out, re.M)) == 4, out
    if mode == "remove_on_message":
        assert msgs == 1, res
    if mode == "unsubscribe_from_on_message":
        assert re.search(r"^UNSUB \d+$", out, re.M), out
    if mode == "wrong_arity":
        assert "mqtt: exception in callback" in out + err and "TypeError" in out + err, out + err
        assert msgs >= 1


DISC_FW = r'''
import mqtt, time
ev = []
pubs = {}
c = mqtt.MqttClient(URL, 'disc-reuse')
c.on_publish(lambda mid, rc: pubs.__setitem__(mid, rc))
c.connect(lambda rc, f: ev.append(rc), {})
wait_until(lambda: ev, 5000)
c.disconnect()
time.sleep_ms(200)
print('STATE', (c.is_connected(), 'disconnected' in repr(c)))
def tryit(f):
    try:
        return ('ret', f())
    except mqtt.MqttError as e:
        return ('MqttError', e.errno)
    except Exception as e:
        return (type(e).__name__,)
m1 = tryit(lambda: c.publish('disc/q1', 'while-disconnected', 1))
m2 = tryit(lambda: c.publish('disc/q0', 'q0-while-disconnected', 0))
s1 = tryit(lambda: c.subscribe(('disc/x', 1)))
d2 = tryit(lambda: c.disconnect())
print('OFFLINE', (m1, m2, s1, d2))
c.connect(lambda rc, f: ev.append(rc), {})
ok = wait_until(lambda: len(pubs) == 2, 5000)
print('RESUMED', (ok, ev, sorted(pubs.values())))
c.disconnect()
'''


def test_methods_on_a_disconnected_client(run_fw, broker, make_peer):
    """After disconnect(): publish and subscribe are buffered (mids), disconnect raises -3,
    is_connected is False; connect() again works and the buffered messages go out."""
    peer = make_peer(broker)
    peer.subscribe("disc/#", 1)
    rc, out, err = run_fw(DISC_FW, vars={"URL": broker.url})
    print(out)
    assert rc == 0, out + err
    assert parse_kv(out, "STATE") == [(False, True)]
    m1, m2, s1, d2 = parse_kv(out, "OFFLINE")[0]
    assert m1[0] == "ret" and m1[1] > 0 and m2[0] == "ret" and m2[1] > 0 and s1[0] == "ret" and s1[1] > 0, (m1, m2, s1)
    assert d2 == ("MqttError", -3)
    ok, ev, rcs = parse_kv(out, "RESUMED")[0]
    assert ok and ev == [0, 0] and rcs == [0, 0]
    got = peer.wait_messages(2, 5, "disc/")
    assert sorted(m[1] for m in got) == [b"q0-while-disconnected", b"while-disconnected"]
