"""Issue 4: publish, subscribe, unsubscribe and on_message against mosquitto, checked
byte-exactly from a paho-mqtt peer."""
import pytest
import re
import time

from conftest import ON_DEVICE

PRE = r'''
import mqtt
events = []
subacks = []
unsubacks = []
published = {}
got = []
def on_connect(rc, flags):
    events.append(rc)
    print('CONNECT', rc)
def on_subscribe(mid, granted):
    subacks.append((mid, granted))
    print('SUBACK', mid, granted)
def on_unsubscribe(mid):
    unsubacks.append(mid)
    print('UNSUBACK', mid)
def on_publish(mid, rc):
    published[mid] = rc
def on_message(topic, msg):
    got.append((topic, msg))
    print('MSG', type(topic).__name__, type(msg).__name__, repr(topic), repr(bytes(msg)))
def start(cid, opts={}):
    c = mqtt.MqttClient(URL, cid)
    c.on_subscribe(on_subscribe)
    c.on_unsubscribe(on_unsubscribe)
    c.on_publish(on_publish)
    c.on_message(on_message)
    c.connect(on_connect, opts)
    assert wait_until(lambda: events), 'no on_connect'
    assert events == [0], events
    return c
'''


def msgs_of(out):
    return [(m.group(1), m.group(2), eval(m.group(3)), eval(m.group(4)))
            for m in re.finditer(r"^MSG (\w+) (\w+) ('.*') (b['\"].*['\"])$", out, re.M)]


@pytest.mark.brokers
def test_publish_qos_byte_exact(run_fw, broker, peer):
    peer.subscribe("fw/#", 2)
    rc, out, err = run_fw(PRE + """
c = start('dev-pub')
ALL = bytes(range(256))
cases = [
    ('fw/q0/all', ALL, 0), ('fw/q1/all', ALL, 1), ('fw/q2/all', ALL, 2),
    ('fw/q0/empty', b'', 0), ('fw/q1/empty', b'', 1), ('fw/q2/empty', b'', 2),
    ('fw/q1/str', 'h\\u00e9llo \\u2603', 1), ('fw/q2/bytearray', bytearray(b'\\x00\\xff\\x00'), 2),
    ('fw/q0/text', 'plain', 0),
]
mids = [c.publish(t, m, q) for t, m, q in cases]
print('MIDS', mids)
ok = wait_until(lambda: len(published) == len(cases))
print('PUBLISHED', ok, sorted(published.items()))
c.disconnect()
""", vars={"URL": broker.url})
    assert rc == 0, out + err
    mids = eval(re.search(r"^MIDS (.*)$", out, re.M).group(1))
    assert all(isinstance(m, int) and m > 0 for m in mids), mids
    assert len(set(mids)) == len(mids), "mids not distinct: %r" % mids
    pub = eval(re.search(r"^PUBLISHED True (.*)$", out, re.M).group(1))
    assert pub == sorted((m, 0) for m in mids), "on_publish(mid, 0) for each publish: %r" % pub
    msgs = peer.wait_messages(9, 10, "fw/")
    got = {m[0]: (m[1], m[2], m[3]) for m in msgs}
    ALL = bytes(range(256))
    assert got == {
        "fw/q0/all": (ALL, 0, False), "fw/q1/all": (ALL, 1, False), "fw/q2/all": (ALL, 2, False),
        "fw/q0/empty": (b"", 0, False), "fw/q1/empty": (b"", 1, False), "fw/q2/empty": (b"", 2, False),
        "fw/q1/str": ("h\u00e9llo \u2603".encode(), 1, False),
        "fw/q2/bytearray": (b"\x00\xff\x00", 2, False),
        "fw/q0/text": (b"plain", 0, False),
    }
    assert len(msgs) == 9


@pytest.mark.brokers
def test_publish_retain(run_fw, broker, peer):
    rc, out, err = run_fw(PRE + """
c = start('dev-retain')
c.publish('ret/a', b'kept', 1, True)
c.publish('ret/b', b'not kept', 1, False)
c.publish('ret/c', b'also kept', 1, 1)
wait_until(lambda: len(published) == 3)
c.disconnect()
""", vars={"URL": broker.url})
    assert rc == 0, out + err
    peer.subscribe("ret/#", 1)
    msgs = peer.wait_messages(2, 5, "ret/")
    time.sleep(0.3)
    assert sorted((m[0], m[1], m[3]) for m in peer.messages("ret/")) == [
        ("ret/a", b"kept", True), ("ret/c", b"also kept", True)]


def test_subscribe_tuple_list_wildcards(spawn_fw, broker, peer):
    p = spawn_fw(PRE + """
c = start('dev-sub')
m1 = c.subscribe(('s/one', 0))
m2 = c.subscribe([('s/+/x', 1), ('s/multi/#', 2), ('s/q0', 0), ('+/plus/+', 2)])
print('MIDS', m1, m2)
wait_until(lambda: len(subacks) == 2)
print('READY')
wait_until(lambda: len(got) >= 6)
time.sleep_ms(500)
print('TOTAL', len(got))
c.disconnect()
""", vars={"URL": broker.url})
    p.expect("^READY", 10)
    out = p.stdout
    m1, m2 = map(int, re.search(r"^MIDS (-?\d+) (-?\d+)$", out, re.M).groups())
    assert m1 > 0 and m2 > 0 and m1 != m2, out
    assert "SUBACK %d [0]" % m1 in out, out
    assert "SUBACK %d [1, 2, 0, 2]" % m2 in out, out
    sends = [("s/one", b"0"), ("s/a/x", b"1"), ("s/multi", b"2"), ("s/multi/deep/er", b"3"),
             ("s/q0", b"4"), ("x/plus/y", b"5"), ("s/none", b"no"), ("s/a/b/x", b"no"), ("s/onex", b"no")]
    for i, (t, m) in enumerate(sends):
        peer.publish(t, m, qos=i % 3)
    assert p.wait(15) == 0, p.stdout + p.stderr
    out = p.stdout
    got = msgs_of(out)
    assert all(g[0] == "str" and g[1] == "bytearray" for g in got), got
    assert sorted((g[2], g[3]) for g in got) == sorted(sends[:6]), out
    assert "TOTAL 6" in out


@pytest.mark.brokers
def test_on_message_each_qos_and_binary(spawn_fw, broker, peer):
    p = spawn_fw(PRE + """
c = start('dev-msg')
c.subscribe([('m/#', 2)])
wait_until(lambda: subacks)
print('READY')
wait_until(lambda: len(got) >= 6)
time.sleep_ms(300)
ok = all(type(t) is str and type(m) is bytearray for t, m in got)
print('TYPES', ok)
c.disconnect()
""", vars={"URL": broker.url})
    p.expect("^READY", 10)
    ALL = bytes(range(256))
    sends = [("m/q0", ALL, 0), ("m/q1", ALL, 1), ("m/q2", ALL, 2),
             ("m/empty", b"", 1), ("m/utf8/\u00e9t\u00e9", "\u2603".encode(), 2), ("m/nul", b"\x00", 0)]
    for t, m, q in sends:
        peer.publish(t, m, q)
    assert p.wait(15) == 0, p.stdout + p.stderr
    got = msgs_of(p.stdout)
    assert sorted((g[2], g[3]) for g in got) == sorted((t, m) for t, m, q in sends), p.stdout
    assert "TYPES True" in p.stdout


@pytest.mark.brokers
def test_unsubscribe(spawn_fw, broker, peer):
    p = spawn_fw(PRE + """
c = start('dev-unsub')
c.subscribe([('u/a', 1), ('u/b', 1), ('u/c/#', 1), ('u/d', 1)])
wait_until(lambda: subacks)
mu = [c.unsubscribe('u/a'), c.unsubscribe(['u/b', 'u/c/#']), c.unsubscribe([('u/zzz', 1)])]
print('UMIDS', mu)
wait_until(lambda: len(unsubacks) == 3)
print('READY')
wait_until(lambda: len(got) >= 1)
time.sleep_ms(700)
c.disconnect()
""", vars={"URL": broker.url})
    p.expect("^READY", 10)
    for t in ("u/a", "u/b", "u/c/x", "u/d"):
        peer.publish(t, t.encode(), 1)
    assert p.wait(15) == 0, p.stdout + p.stderr
    out = p.stdout
    mu = eval(re.search(r"^UMIDS (.*)$", out, re.M).group(1))
    assert all(m > 0 for m in mu), mu
    assert sorted(int(x) for x in re.findall(r"^UNSUBACK (\d+)$", out, re.M)) == sorted(mu)
    assert [(g[2], g[3]) for g in msgs_of(out)] == [("u/d", b"u/d")], out


@pytest.mark.brokers
def test_inbound_qos2_exactly_once(spawn_fw, broker, peer):
    n = 200
    p = spawn_fw(PRE + """
c = start('dev-q2in')
counts = {}
def on_msg(t, m):
    k = bytes(m)
    counts[k] = counts.get(k, 0) + 1
c.on_message(on_msg)
c.subscribe(('q2in/t', 2))
wait_until(lambda: subacks)
print('READY')
wait_until(lambda: len(counts) >= N, 20000)
time.sleep(1)
print('DISTINCT', len(counts))
print('DUPS', sorted(k for k, v in counts.items() if v != 1))
print('MISSING', [i for i in range(N) if (b'%d' % i) not in counts])
c.disconnect()
""", vars={"URL": broker.url, "N": n})
    p.expect("^READY", 10)
    # aedes 1.2 now and then forwards none of one of many QoS 2 messages a publisher has in
    # flight at once to a persistent-session subscriber (seen with a paho subscriber as
    # well, never with one message in flight): against aedes the peer sends them one
    # after the other. The firmware still receives them as fast as aedes forwards them.
    burst = broker.kind != "aedes"
    for i in range(n):
        peer.publish("q2in/t", b"%d" % i, 2, wait=not burst)
    assert p.wait(30) == 0, p.stdout + p.stderr
    out = p.stdout
    assert "DISTINCT %d" % n in out, out
    assert "DUPS []" in out, out
    assert "MISSING []" in out, out


def test_big_payload_round_trip(spawn_fw, broker, peer):
    peer.subscribe("big/out", 2)
    # The device's heap is 140 KiB: 16 KiB payloads there (four copies live
    # at once), 256 KiB on the host.
    size = 16 * 1024 if ON_DEVICE else 256 * 1024
    p = spawn_fw((PRE + """
c = start('dev-big')
c.subscribe([('big/echo', 1), ('big/in', 1)])
wait_until(lambda: subacks)
BIG = bytes(range(256)) * (SIZE // 256)
BIG2 = bytes(range(255, -1, -1)) * (SIZE // 256)
mids = [c.publish('big/echo', BIG, 1), c.publish('big/out', BIG, 2)]
print('READY')
wait_until(lambda: len(got) >= 2 and len(published) >= 2, 15000)
for t, m in got:
    print('GOT', t, len(m), m == (BIG if t == 'big/echo' else BIG2), type(m).__name__)
print('PUB', sorted(published.items()) == sorted((m, 0) for m in mids))
c.disconnect()
""").replace("print('MSG'", "pass  # print('MSG'"), vars={"URL": broker.url, "SIZE": size})
    p.expect("^READY", 15)
    big = bytes(range(256)) * (size // 256)
    peer.publish("big/in", bytes(range(255, -1, -1)) * (size // 256), 1)
    assert p.wait(30) == 0, p.stdout[-2000:] + p.stderr
    out = p.stdout
    assert "GOT big/echo %d True bytearray" % size in out, out
    assert "GOT big/in %d True bytearray" % size in out, out
    assert "PUB True" in out
    msgs = peer.wait_messages(1, 10, "big/out")
    assert msgs[0][1] == big and msgs[0][2] == 2


def test_callback_none_removes(spawn_fw, broker, peer):
    p = spawn_fw(PRE + """
c = start('dev-none')
c.subscribe(('n/#', 1))
wait_until(lambda: subacks)
c.on_message(None)
c.on_publish(None)
mid = c.publish('n/self', b'x', 1)
print('READY')
time.sleep(1.2)
print('AFTER', len(got), len(published))
c.disconnect()
""", vars={"URL": broker.url})
    p.expect("^READY", 10)
    peer.publish("n/peer", b"y", 1)
    assert p.wait(10) == 0, p.stdout + p.stderr
    assert "AFTER 0 0" in p.stdout, p.stdout
    assert "Traceback" not in p.stdout + p.stderr


def test_inflight_window_bound(spawn_fw, fake_broker):
    """max_inflight 2 against a broker that accepts the connection but never acknowledges:
    exactly 2 QoS 1 PUBLISHes go on the wire, the rest wait in the buffer."""
    fb = fake_broker(connack=b"\x20\x02\x00\x00", close_after=False)
    p = spawn_fw(PRE + """
c = start('dev-win', {'max_inflight': 2})
mids = [c.publish('win/t', b'%d' % i, 1) for i in range(8)]
print('PUBLISHED', len(mids))
time.sleep(1.5)
print('DONE', len(published))
c.disconnect()
""", vars={"URL": fb.url})
    p.expect("^DONE", 10)
    p.wait(10)
    assert "DONE 0" in p.stdout, p.stdout + p.stderr
    pubs = [pkt for pkt in fb.packets if pkt[0] >> 4 == 3]
    assert len(pubs) == 2, "%d QoS 1 PUBLISH packets on the wire with max_inflight 2 and no PUBACK" % len(pubs)
    assert all((pkt[0] >> 1) & 3 == 1 for pkt in pubs)


def test_window_full_without_buffer_raises_4(spawn_fw, broker):
    """max_buffered 0, max_inflight 2, connected, broker not answering: the 3rd QoS 1
    publish raises MqttError -4."""
    p = spawn_fw(PRE + """
c = start('dev-win4', {'max_inflight': 2, 'max_buffered': 0})
print('READY')
wait_until(lambda: False, 500)
res = []
for i in range(3):
    try:
        res.append(c.publish('w4/t', b'x', 1) > 0)
    except mqtt.MqttError as e:
        res.append(e.errno)
print('RES', res)
c.disconnect()
""", vars={"URL": broker.url})
    p.expect("^READY", 10)
    broker.pause()
    try:
        p.expect("^RES", 5)
    finally:
        broker.resume()
    p.wait(10)
    assert "RES [True, True, -4]" in p.stdout, p.stdout + p.stderr


def test_granted_128_for_refused_filter(spawn_fw, fake_broker):
    """mosquitto 2.0.11 grants ACL-denied filters, so a scripted broker answers the
    SUBSCRIBE with [1, 0x80, 2]: on_subscribe gets [1, 128, 2]."""
    def respond(pkt):
        if pkt[0] == 0x82:                       # SUBSCRIBE: answer SUBACK with its packet id
            i = 1
            while pkt[i] & 0x80:
                i += 1
            pid = pkt[i + 1:i + 3]
            return b"\x90\x05" + pid + b"\x01\x80\x02"
        return None
    fb = fake_broker(connack=b"\x20\x02\x00\x00", close_after=False, respond=respond)
    p = spawn_fw(PRE + """
c = start('dev-128')
mid = c.subscribe([('a/b', 1), ('denied/#', 2), ('c/+', 2)])
print('MID', mid)
wait_until(lambda: subacks, 5000)
c.disconnect()
""", vars={"URL": fb.url})
    assert p.wait(15) == 0, p.stdout + p.stderr
    mid = int(re.search(r"^MID (\d+)$", p.stdout, re.M).group(1))
    assert "SUBACK %d [1, 128, 2]" % mid in p.stdout, p.stdout


def test_subscribe_and_publish_before_connect(spawn_fw, broker, peer):
    """Subscriptions and messages requested before connect() are sent, in order, once
    the connection is up."""
    peer.subscribe("early/out", 1)
    p = spawn_fw(PRE + """
c = mqtt.MqttClient(URL, 'dev-early')
c.on_subscribe(on_subscribe)
c.on_message(on_message)
c.on_publish(on_publish)
ms = c.subscribe(('early/in', 1))
mp = c.publish('early/out', b'before', 1)
print('MIDS', ms, mp)
c.connect(on_connect, {})
wait_until(lambda: subacks)
print('READY')
wait_until(lambda: got)
c.disconnect()
""", vars={"URL": broker.url})
    p.expect("^READY", 10)
    peer.publish("early/in", b"hi", 1)
    assert p.wait(10) == 0, p.stdout + p.stderr
    ms, mp = map(int, re.search(r"^MIDS (-?\d+) (-?\d+)$", p.stdout, re.M).groups())
    assert ms > 0 and mp > 0 and ms != mp
    assert "SUBACK %d [1]" % ms in p.stdout
    assert ("str", "bytearray", "early/in", b"hi") in msgs_of(p.stdout), p.stdout
    assert [m[1] for m in peer.wait_messages(1, 5, "early/")] == [b"before"]
