"""Issue 4: connecting, refusals, the will, keep-alive, broker restarts and the
persistent session, against a real mosquitto (and a scripted broker for CONNACK 4)."""
import re
import signal
import time

import pytest

from conftest import AUTH_PASSWORD, AUTH_USER

CONNECT_LOG = r'''
import mqtt
events = []
def on_connect(rc, flags):
    events.append(rc)
    print('CONNECT', rc, repr(flags), time.ticks_ms())
'''


def connects(out):
    """[(rc, flags_repr, ticks_ms)] from CONNECT lines."""
    return [(int(m.group(1)), m.group(2), int(m.group(3)))
            for m in re.finditer(r"^CONNECT (-?\d+) (.*) (\d+)$", out, re.M)]


@pytest.mark.brokers
def test_connect_accepted(run_fw, broker):
    rc, out, err = run_fw(CONNECT_LOG + """
c = mqtt.MqttClient(URL, 'dev-accept')
print('BEFORE', c.is_connected())
r = c.connect(on_connect, {'keep_alive': 30})
print('RET', repr(r))
wait_until(lambda: events)
print('FLAGS', events and type(events[0]))
print('AFTER', c.is_connected())
c.disconnect()
wait_until(lambda: not c.is_connected(), 3000)
print('DISC', c.is_connected())
""", vars={"URL": broker.url})
    assert rc == 0, out + err
    assert "BEFORE False" in out
    assert "RET None" in out
    cs = connects(out)
    assert len(cs) == 1 and cs[0][0] == 0, out
    flags = eval(cs[0][1])
    assert isinstance(flags, dict) and "session_present" in flags, cs
    assert flags["session_present"] is False, "fresh client id, fresh broker: no session"
    assert "AFTER True" in out
    assert "DISC False" in out
    assert broker.clients() == ["dev-accept"]


def test_connect_without_options_argument(run_fw, broker):
    rc, out, err = run_fw(CONNECT_LOG + """
c = mqtt.MqttClient(URL, 'dev-noopts')
c.connect(on_connect)
wait_until(lambda: events)
c.disconnect()
""", vars={"URL": broker.url})
    assert rc == 0, out + err
    assert [x[0] for x in connects(out)] == [0], out


def test_connect_with_credentials_accepted(run_fw, auth_broker):
    rc, out, err = run_fw(CONNECT_LOG + """
c = mqtt.MqttClient(URL, 'dev-auth-ok')
c.connect(on_connect, {'username': USER, 'password': PASSWORD.encode()})
wait_until(lambda: events)
c.disconnect()
""", vars={"URL": auth_broker.url, "USER": AUTH_USER, "PASSWORD": AUTH_PASSWORD})
    assert rc == 0, out + err
    assert [x[0] for x in connects(out)] == [0], out


REFUSED_SCRIPT = CONNECT_LOG + """
c = mqtt.MqttClient(URL, 'dev-refused')
c.connect(on_connect, OPTS)
wait_until(lambda: events)
time.sleep(2.5)   # a retry would come after 1 s
print('CONNECTED', c.is_connected())
print('END', events)
"""


def test_refused_wrong_password_no_retry(run_fw, auth_broker):
    rc, out, err = run_fw(REFUSED_SCRIPT, vars={
        "URL": auth_broker.url, "OPTS": {"username": AUTH_USER, "password": "wrong"}})
    assert rc == 0, out + err
    assert [x[0] for x in connects(out)] == [5], "mosquitto 2.0.11 refuses a wrong password with 5:\n" + out
    assert "CONNECTED False" in out
    # The broker saw exactly one connection attempt from the device.
    assert auth_broker.log().count("New connection from") == 1, auth_broker.log()


def test_refused_anonymous_not_authorised(run_fw, auth_broker):
    rc, out, err = run_fw(REFUSED_SCRIPT, vars={"URL": auth_broker.url, "OPTS": {}})
    assert rc == 0, out + err
    assert [x[0] for x in connects(out)] == [5], out
    assert auth_broker.log().count("New connection from") == 1


@pytest.mark.parametrize("code", [1, 2, 3, 4])
def test_refused_by_scripted_broker(run_fw, fake_broker, code):
    fb = fake_broker(connack=bytes([0x20, 0x02, 0x00, code]))
    rc, out, err = run_fw(REFUSED_SCRIPT, vars={
        "URL": fb.url, "OPTS": {"username": "u", "password": "bad"}})
    assert rc == 0, out + err
    cs = connects(out)
    assert [x[0] for x in cs] == [code], out
    assert eval(cs[0][1]) == {"session_present": False}, cs
    assert "CONNECTED False" in out
    assert len(fb.connections) == 1, "retried after a refusal: %d connections" % len(fb.connections)
    pkt = fb.connections[0][1]
    assert pkt and pkt[0] == 0x10, "first packet is not CONNECT: %r" % pkt
    # MQTT 3.1.1 CONNECT: protocol name MQTT, level 4, clean session flag off (persistent).
    assert b"\x00\x04MQTT\x04" in pkt[:12], pkt
    flags = pkt[pkt.index(b"MQTT") + 5]
    assert flags & 0x02 == 0, "clean session must be off (contract: persistent session)"
    assert flags & 0xC0 == 0xC0, "username and password flags"
    assert b"dev-refused" in pkt


def test_refused_process_exits_after_script(spawn_fw, fake_broker):
    """After a refusal the client is neither connected nor reconnecting: a script that
    returns right after connect() must not keep the firmware alive."""
    fb = fake_broker(connack=b"\x20\x02\x00\x04")
    p = spawn_fw(CONNECT_LOG + """
c = mqtt.MqttClient(URL, 'dev-refused-exit')
c.connect(on_connect, {})
""", vars={"URL": fb.url})
    p.expect(r"^CONNECT 4 ", 10)
    assert p.wait(5) == 0
    assert len(fb.connections) == 1


def test_connect_while_connected_is_18(run_fw, broker):
    rc, out, err = run_fw(CONNECT_LOG + """
c = mqtt.MqttClient(URL, 'dev-twice')
c.connect(on_connect, {})
try:
    c.connect(on_connect, {})
    print('SECOND-CONNECTING ok')
except mqtt.MqttError as e:
    print('SECOND-CONNECTING', e.errno)
wait_until(lambda: events)
try:
    c.connect(on_connect, {})
    print('SECOND-CONNECTED ok')
except mqtt.MqttError as e:
    print('SECOND-CONNECTED', e.errno)
time.sleep_ms(300)
print('STILL', c.is_connected(), events)
c.disconnect()
""", vars={"URL": broker.url})
    assert rc == 0, out + err
    assert "SECOND-CONNECTING -18" in out
    assert "SECOND-CONNECTED -18" in out
    assert "STILL True [0]" in out


def test_reconnect_after_disconnect(run_fw, broker):
    """disconnect() then connect() again on the same object works; the session is kept."""
    rc, out, err = run_fw(CONNECT_LOG + """
c = mqtt.MqttClient(URL, 'dev-again')
c.connect(on_connect, {})
wait_until(lambda: len(events) == 1)
c.disconnect()
wait_until(lambda: not c.is_connected(), 3000)
time.sleep_ms(200)
c.connect(on_connect, {})
wait_until(lambda: len(events) == 2)
print('CONN', c.is_connected())
c.disconnect()
""", vars={"URL": broker.url})
    assert rc == 0, out + err
    cs = connects(out)
    assert [x[0] for x in cs] == [0, 0], out
    assert eval(cs[1][1])["session_present"] is True, "second connect must find the persistent session"
    assert "CONN True" in out


def test_connect_failure_then_retry_schedule(spawn_fw, broker):
    """Nothing listens: on_connect(<0) for each attempt, retries after about 1 s, 2 s...
    and the first attempt after the broker comes up succeeds."""
    broker.stop()
    p = spawn_fw(CONNECT_LOG + """
c = mqtt.MqttClient(URL, 'dev-retry')
c.connect(on_connect, {})
wait_until(lambda: 0 in events, 20000)
c.disconnect()
""", vars={"URL": broker.url})
    t1, m1 = p.expect(r"^CONNECT (-\d+) ", 5)
    t2, m2 = p.expect(r"^CONNECT (-\d+) ", 5)
    t3, m3 = p.expect(r"^CONNECT (-\d+) ", 6)
    broker.start()
    p.expect(r"^CONNECT 0 ", 10)
    assert p.wait(10) == 0
    d1, d2 = t2 - t1, t3 - t2
    assert 0.6 < d1 < 2.0, "first retry after %.2f s, contract: 1 s" % d1
    assert 1.4 < d2 < 3.5, "second retry after %.2f s, contract: 2 s" % d2


# --------------------------------------------------------------------------------------
# will


WILL_SCRIPT = CONNECT_LOG + """
c = mqtt.MqttClient(URL, 'dev-will')
c.connect(on_connect, {'will_topic': 'will/dev', 'will_qos': 1,
                       'will_message': WILL, 'will_retain': RETAIN, 'keep_alive': 60})
wait_until(lambda: events)
print('READY')
if DISCONNECT:
    c.disconnect()
    print('DISCONNECTED')
else:
    while True:
        time.sleep(1)
"""


@pytest.mark.brokers
def test_will_published_when_killed(spawn_fw, broker, peer):
    peer.subscribe("will/#", 2)
    p = spawn_fw(WILL_SCRIPT, vars={"URL": broker.url, "WILL": b"\x00gone\xff",
                                    "RETAIN": False, "DISCONNECT": False})
    p.expect("^READY", 10)
    time.sleep(0.3)
    assert peer.messages("will/") == [], "will published while the device is alive"
    p.kill(signal.SIGKILL)
    msgs = peer.wait_messages(1, 5, "will/")
    assert [(m[0], m[1], m[2]) for m in msgs] == [("will/dev", b"\x00gone\xff", 1)]


def test_will_retained(spawn_fw, broker, make_peer):
    p = spawn_fw(WILL_SCRIPT, vars={"URL": broker.url, "WILL": "offline",
                                    "RETAIN": True, "DISCONNECT": False})
    p.expect("^READY", 10)
    p.kill(signal.SIGKILL)
    time.sleep(0.5)
    late = make_peer(broker)     # subscribes after the will was published
    late.subscribe("will/dev", 1)
    msgs = late.wait_messages(1, 5, "will/")
    assert msgs[0][1] == b"offline" and msgs[0][3] is True, msgs


def test_no_will_after_disconnect(spawn_fw, broker, peer):
    peer.subscribe("will/#", 2)
    p = spawn_fw(WILL_SCRIPT, vars={"URL": broker.url, "WILL": "gone",
                                    "RETAIN": False, "DISCONNECT": True})
    p.expect("^DISCONNECTED", 10)
    assert p.wait(10) == 0, "the firmware must exit after the last disconnect()"
    time.sleep(1.5)
    assert peer.messages("will/") == [], "will published after a graceful disconnect()"


# --------------------------------------------------------------------------------------
# keep-alive


def test_keep_alive_detects_stopped_broker(spawn_fw, broker):
    ka = 4
    p = spawn_fw(CONNECT_LOG + """
c = mqtt.MqttClient(URL, 'dev-ka')
c.connect(on_connect, {'keep_alive': KA})
wait_until(lambda: events)
print('READY')
wait_until(lambda: len(events) >= 2 and events[-1] == 0, 60000)
c.disconnect()
""", vars={"URL": broker.url, "KA": ka})
    p.expect("^READY", 10)
    time.sleep(0.2)
    broker.pause()
    t_stop = time.monotonic()
    try:
        t_lost, m = p.expect(r"^CONNECT (-?\d+) ", 1.5 * ka + 4)
    finally:
        broker.resume()
    assert int(m.group(1)) < 0, "expected a negative on_connect, got %s" % m.group(1)
    took = t_lost - t_stop
    print("keep-alive %d s: loss detected %.2f s after the broker stopped" % (ka, took))
    assert took <= 1.5 * ka + 1.2, "keep-alive detected the stopped broker after %.1f s (keep_alive %d)" % (took, ka)
    # the broker is back: the client reconnects by itself
    p.expect(r"^CONNECT 0 ", 15)
    assert p.wait(10) == 0


def test_keep_alive_keeps_quiet_connection(run_fw, broker):
    """A healthy idle connection with a short keep-alive is not dropped (PINGREQ/PINGRESP)."""
    rc, out, err = run_fw(CONNECT_LOG + """
c = mqtt.MqttClient(URL, 'dev-ka-quiet')
c.connect(on_connect, {'keep_alive': 1})
wait_until(lambda: events)
time.sleep(3.5)
print('STILL', c.is_connected(), events)
c.disconnect()
""", vars={"URL": broker.url})
    assert rc == 0, out + err
    assert "STILL True [0]" in out
    assert "PINGREQ" in broker.log() and "dev-ka-quiet" in broker.log()


# --------------------------------------------------------------------------------------
# broker restart: QoS 1/2 not lost, QoS 2 not duplicated


@pytest.mark.brokers
def test_broker_restart_no_loss(spawn_fw, broker, make_peer):
    peer = make_peer(broker, client_id="peer-restart", clean_session=False)
    peer.subscribe("rs/#", 2)
    n = 120
    p = spawn_fw(CONNECT_LOG + """
c = mqtt.MqttClient(URL, 'dev-restart')
done = {}
def on_publish(mid, rc):
    done[mid] = rc
c.on_publish(on_publish)
c.connect(on_connect, {'keep_alive': 5, 'max_buffered': 1000})
wait_until(lambda: events)
mids = []
for i in range(N):
    q = 1 + (i % 2)
    mids.append(c.publish('rs/q%d' % q, 'm%d' % i, q))
    print('I', i)
    time.sleep_ms(25)
ok = wait_until(lambda: len(done) == N, 20000)
print('DONE', ok, len(done), sorted(set(done.values())), sorted(done) == sorted(mids))
c.disconnect()
""", vars={"URL": broker.url, "N": n})
    p.expect(r"^CONNECT 0 ", 10)
    p.expect(r"^I 30$", 10)
    t_stop = time.monotonic()
    broker.stop()
    t_stopped = time.monotonic()
    broker.start()
    p.expect(r"^DONE", 40)
    assert p.wait(10) == 0
    out = p.stdout
    assert "DONE True %d [0] True" % n in out, out
    cs = connects(out)
    rcs = [x[0] for x in cs]
    assert rcs[0] == 0 and rcs[-1] == 0, rcs
    assert any(r < 0 for r in rcs), "no negative on_connect when the broker went away: %r" % rcs
    neg = [x for x in cs if x[0] < 0][0]
    back = [x for x in cs if x[0] == 0 and x[2] > neg[2]][0]
    gap = (back[2] - neg[2]) / 1000
    assert 0.5 <= gap <= 4.0, "reconnected %.2f s after the loss, contract: retry after 1 s" % gap
    lost1_allowed = set()
    if broker.kind == "aedes":
        # aedes 1.2 now and then drops a message that arrives while a persistent
        # subscriber's session is being restored after the restart (it acknowledged the
        # message to the firmware; the peer, back a moment later, never gets it): what
        # the firmware delivered is read from the messages aedes took, not from the peer.
        # (Every message is acknowledged by now, and aedes logs it by its acknowledgement.)
        time.sleep(0.5)
        msgs = broker.published("dev-restart")
        # aedes writes a QoS 1 PUBACK before it routes the message (lib/handlers/
        # publish.js): one that arrives while it shuts down is acknowledged and dropped.
        lost1_allowed = {"m%d" % int(l[2:]) for t, l in p.lines
                         if l.startswith("I ") and t_stop - 0.3 <= t <= t_stopped}
    else:
        msgs = peer.wait_messages(n, 15, "rs/")
        time.sleep(0.5)
        msgs = peer.messages("rs/")
    got1 = [m[1].decode() for m in msgs if m[0] == "rs/q1"]
    got2 = [m[1].decode() for m in msgs if m[0] == "rs/q2"]
    want1 = ["m%d" % i for i in range(n) if i % 2 == 0]
    want2 = ["m%d" % i for i in range(n) if i % 2 == 1]
    assert set(want1) - set(got1) - lost1_allowed == set(), "QoS 1 messages lost"
    assert set(want2) - set(got2) == set(), "QoS 2 messages lost"
    dup2 = sorted({x for x in got2 if got2.count(x) > 1})
    assert dup2 == [], "QoS 2 messages duplicated: %r" % dup2


def test_publish_before_connect_and_while_broker_down(spawn_fw, broker, make_peer):
    peer = make_peer(broker, client_id="peer-down", clean_session=False)
    peer.subscribe("buf/#", 2)
    broker.stop()
    p = spawn_fw(CONNECT_LOG + """
c = mqtt.MqttClient(URL, 'dev-buffer')
done = {}
c.on_publish(lambda mid, rc: done.__setitem__(mid, rc))
mids = [c.publish('buf/pre%d' % i, 'pre%d' % i, i % 3) for i in range(6)]
print('MIDS', mids)
c.connect(on_connect, {})
wait_until(lambda: events, 5000)
mids += [c.publish('buf/down%d' % i, 'down%d' % i, i % 3) for i in range(6)]
print('QUEUED')
ok = wait_until(lambda: len(done) == 12, 20000)
print('DONE', ok, sorted(done) == sorted(mids), sorted(set(done.values())))
c.disconnect()
""", vars={"URL": broker.url})
    p.expect(r"^CONNECT -\d+ ", 5)
    p.expect(r"^QUEUED", 5)
    broker.start()
    p.expect(r"^DONE", 20)
    assert p.wait(10) == 0
    out = p.stdout
    mids = eval(re.search(r"^MIDS (.*)$", out, re.M).group(1))
    assert all(isinstance(m, int) and m > 0 for m in mids) and len(set(mids)) == 6, mids
    assert "DONE True True [0]" in out, out
    msgs = peer.wait_messages(12, 15, "buf/")
    time.sleep(0.3)
    want = ["pre%d" % i for i in range(6)] + ["down%d" % i for i in range(6)]
    # Order on the wire, as the broker received it (the broker itself forwards QoS 2
    # only after PUBREL, so the peer sees order per QoS level only).
    wire = re.findall(r"Received PUBLISH from dev-buffer \(d0, q\d, r0, m\d+, 'buf/(\w+)'", broker.log())
    assert wire == want, "sent in the order %r" % wire
    got = [m[1].decode() for m in peer.messages("buf/")]
    for q in range(3):
        assert [x for x in got if int(x[-1]) % 3 == q] == [x for x in want if int(x[-1]) % 3 == q], got


# --------------------------------------------------------------------------------------
# persistent session


@pytest.mark.brokers
def test_persistent_session_receives_missed_messages(run_fw, broker, peer):
    rc, out, err = run_fw(CONNECT_LOG + """
c = mqtt.MqttClient(URL, 'dev-persist')
subs = []
c.on_subscribe(lambda mid, g: subs.append(g))
c.connect(on_connect, {})
wait_until(lambda: events)
c.subscribe(('ps/in', 1))
wait_until(lambda: subs)
print('SUBACK', subs)
c.disconnect()
""", vars={"URL": broker.url})
    assert rc == 0, out + err
    assert "SUBACK [[1]]" in out
    for i in range(5):
        peer.publish("ps/in", b"away%d" % i, qos=1)
    rc, out, err = run_fw(CONNECT_LOG + """
c = mqtt.MqttClient(URL, 'dev-persist')
got = []
def on_message(t, m):
    got.append(bytes(m))
    print('MSG', t, bytes(m))
c.on_message(on_message)
c.connect(on_connect, {})
wait_until(lambda: len(got) >= 5, 8000)
time.sleep_ms(300)
c.disconnect()
""", vars={"URL": broker.url})
    assert rc == 0, out + err
    cs = connects(out)
    assert cs and cs[0][0] == 0 and eval(cs[0][1])["session_present"] is True, out
    assert re.findall(r"^MSG ps/in (.*)$", out, re.M) == ["b'away%d'" % i for i in range(5)], out


def test_unfinished_messages_resume_after_disconnect(spawn_fw, broker, make_peer):
    """Messages buffered while the broker is down stay in the client across disconnect()
    and are sent, in order, on the next connect()."""
    peer = make_peer(broker, client_id="peer-resume", clean_session=False)
    peer.subscribe("res/#", 2)
    p = spawn_fw(CONNECT_LOG + """
c = mqtt.MqttClient(URL, 'dev-resume')
done = {}
c.on_publish(lambda mid, rc: done.__setitem__(mid, rc))
c.connect(on_connect, {})
wait_until(lambda: events)
print('READY')
wait_until(lambda: len(events) >= 2, 10000)
mids = [c.publish('res/t', 'r%d' % i, 1 + i % 2) for i in range(4)]
time.sleep_ms(200)
c.disconnect()
print('DISCONNECTED', len(done))
wait_until(lambda: False, 1500)
c.connect(on_connect, {})
ok = wait_until(lambda: len(done) == 4, 10000)
print('DONE', ok, sorted(done.items()) == sorted((m, 0) for m in mids))
c.disconnect()
""", vars={"URL": broker.url})
    p.expect("^READY", 10)
    broker.stop()
    p.expect(r"^DISCONNECTED 0", 10)
    broker.start()
    p.expect(r"^DONE", 15)
    assert p.wait(10) == 0
    assert "DONE True True" in p.stdout, p.stdout
    msgs = peer.wait_messages(4, 10, "res/")
    assert sorted(m[1] for m in msgs) == [b"r0", b"r1", b"r2", b"r3"], msgs


def test_unencodable_client_id_no_retry(run_fw, broker):
    """Documented: a client id with a NUL character is reported through on_connect with a
    negative code (-7) and no retry."""
    rc, out, err = run_fw(CONNECT_LOG + """
c = mqtt.MqttClient(URL, 'dev\\x00nul')
c.connect(on_connect, {})
wait_until(lambda: events, 5000)
time.sleep(1.8)
print('END', events, c.is_connected())
""", vars={"URL": broker.url})
    assert rc == 0, out + err
    assert "END [-7] False" in out, out
