"""Issue 5: MQTT over WebSocket (`ws://`, `wss://`) against mosquitto's websockets
listeners, and against a scripted WebSocket server (conftest.WsServer) for the HTTP
upgrade itself: mosquitto 2.0.11 accepts any request path, so the path the client uses is
checked on the scripted server. (Frame-level cases, fragmentation and packets spanning
frames, are unit tests of the core: tests/proto_ws.rs.)"""
import base64
import re
import time

import pytest

from transports_support import BIG_CASES, CONNECT_LOG, SMALL_CASES, SMALL_INBOUND, connects, opts_code


# --------------------------------------------------------------------------------------
# round trips through mosquitto


@pytest.mark.parametrize("kind", ["ws", "wss"])
def test_round_trip_qos_012(round_trip, tbroker, pki, kind):
    round_trip(tbroker, tbroker.url(kind), opts_code(kind, pki), SMALL_CASES, SMALL_INBOUND,
               cid="dev-%s-rt" % kind)


@pytest.mark.parametrize("kind", ["ws", "wss"])
def test_round_trip_256k(round_trip, tbroker, pki, kind):
    """256 KiB to the broker and back (the firmware's own subscription), and 256 KiB seen
    by the peer. No second inbound 256 KiB message from the peer here: mosquitto 2.0.11's
    websockets listener sends 256 KiB in ~6 s (the same for a paho websockets client), so
    one downstream big message is what the time budget affords; the inbound direction is
    the same code as the self round trip."""
    round_trip(tbroker, tbroker.url(kind), opts_code(kind, pki), BIG_CASES, (),
               timeout=30, cid="dev-%s-big" % kind)


# --------------------------------------------------------------------------------------
# the HTTP upgrade (scripted server)

ONE_CONNECT = CONNECT_LOG + r'''
c = mqtt.MqttClient(URL, CID)
c.connect(on_connect, {})
wait_until(lambda: len(events) >= NEVENTS, 6000)
print('CONNECTED', c.is_connected())
c.disconnect()
'''


def run_one(run_fw, url, cid, nevents=1):
    rc, out, err = run_fw(ONE_CONNECT, vars={"URL": url, "CID": cid, "NEVENTS": nevents}, timeout=20)
    assert rc == 0, out + err
    return out


@pytest.mark.parametrize("path, want", [
    ("", "/mqtt"),
    ("/custom/deep/path", "/custom/deep/path"),
    ("/mqtt-over-ws", "/mqtt-over-ws"),
])
def test_url_path_and_upgrade_request(run_fw, ws_server, path, want):
    srv = ws_server()
    out = run_one(run_fw, srv.url(path), "dev-ws-path")
    assert [c[0] for c in connects(out)] == [0], out
    assert len(srv.requests) == 1, srv.requests
    _, line, h = srv.requests[0]
    assert line == "GET %s HTTP/1.1" % want, line
    assert h.get("upgrade", "").lower() == "websocket", h
    assert "upgrade" in h.get("connection", "").lower(), h
    assert h.get("sec-websocket-version") == "13", h
    assert [p.strip() for p in h.get("sec-websocket-protocol", "").split(",")] == ["mqtt"], h
    assert h.get("host") in ("localhost:%d" % srv.port, "localhost"), h
    assert len(base64.b64decode(h.get("sec-websocket-key", ""))) == 16, h
    # the MQTT CONNECT travels in masked binary frames
    fin, opcode, masked, data = srv.frames[0]
    assert opcode == 2 and masked == 1, srv.frames[0][:3]
    assert data[0] == 0x10 and b"MQTT" in data and b"dev-ws-path" in data, data


def test_each_connection_uses_a_fresh_key(run_fw, ws_server):
    """Two connections (connect, disconnect, connect) send different Sec-WebSocket-Keys."""
    srv = ws_server()
    rc, out, err = run_fw(CONNECT_LOG + r'''
c = mqtt.MqttClient(URL, 'dev-ws-keys')
c.connect(on_connect, {})
wait_until(lambda: events, 5000)
c.disconnect()
time.sleep_ms(200)
c.connect(on_connect, {})
wait_until(lambda: len(events) >= 2, 5000)
c.disconnect()
''', vars={"URL": srv.url()}, timeout=20)
    assert [c[0] for c in connects(out)] == [0, 0], out + err
    keys = [r[2].get("sec-websocket-key") for r in srv.requests]
    assert len(keys) == 2 and keys[0] != keys[1], keys


@pytest.mark.parametrize("what", ["404", "bad-accept"])
def test_refused_upgrade_33_and_retry(run_fw, ws_server, what):
    srv = ws_server(mode="refuse") if what == "404" else ws_server(bad_accept=True)
    out = run_one(run_fw, srv.url(), "dev-ws-refused", nevents=2)
    cs = connects(out)
    assert [c[0] for c in cs][:2] == [-33, -33], out
    assert re.search(r"websocket", cs[0][2], re.I), cs[0]
    gap = (cs[1][1] - cs[0][1]) / 1000
    assert 0.5 <= gap <= 3.0, "retry %.2f s after the failure, contract: after 1 s" % gap
    assert "CONNECTED False" in out, out
    assert len(srv.requests) >= 2, srv.requests
    # the client fails the WebSocket connection (RFC 6455 4.1): not a single frame is sent
    assert srv.frames == [], srv.frames


def test_wss_wrong_ca_not_trusted(run_fw, tbroker, pki):
    rc, out, err = run_fw(CONNECT_LOG + r'''
c = mqtt.MqttClient(URL, 'dev-wss-ca')
c.connect(on_connect, {'trust_store': open(CA).read()})
wait_until(lambda: events, 5000)
c.disconnect()
''', vars={"URL": tbroker.url("wss"), "CA": pki.path("other_ca.pem")}, timeout=20)
    assert [c[0] for c in connects(out)] == [-29], out + err


def test_ws_to_plain_mqtt_listener_fails(run_fw, tbroker):
    """ws:// to a listener that speaks plain MQTT: no upgrade, a negative code."""
    out = run_one(run_fw, "ws://localhost:%d" % tbroker.port, "dev-ws-plain")
    cs = connects(out)
    assert cs and cs[0][0] < 0, out


# --------------------------------------------------------------------------------------
# reconnect and offline queue over wss


def wss_opts(pki, extra=""):
    return "{'trust_store': open(%r).read()%s}" % (pki.path("ca.pem"), extra)


def test_wss_publish_while_broker_down_delivered_in_order(spawn_fw, tbroker, pki, make_peer):
    peer = make_peer(tbroker, client_id="peer-wss-down", clean_session=False)
    peer.subscribe("wdown/#", 2)
    p = spawn_fw(CONNECT_LOG + r'''
c = mqtt.MqttClient(URL, 'dev-wss-down')
done = {}
c.on_publish(lambda mid, rc: done.__setitem__(mid, rc))
c.connect(on_connect, OPTS)
wait_until(lambda: events, 5000)
mids = [c.publish('wdown/up%d' % i, 'up%d' % i, i % 3) for i in range(3)]
wait_until(lambda: len(done) == 3, 5000)
print('UP')
wait_until(lambda: len(events) >= 2, 10000)
mids += [c.publish('wdown/down%d' % i, 'down%d' % i, i % 3) for i in range(N)]
print('QUEUED', c.is_connected())
ok = wait_until(lambda: len(done) == N + 3, 25000)
print('DONE', ok, sorted(done) == sorted(mids), sorted(set(done.values())))
c.disconnect()
'''.replace("OPTS", wss_opts(pki)), vars={"URL": tbroker.url("wss"), "N": 30})
    p.expect(r"^CONNECT 0 ", 10)
    p.expect(r"^UP", 10)
    tbroker.stop()
    p.expect(r"^CONNECT -\d+ ", 10)
    p.expect(r"^QUEUED False", 5)
    time.sleep(0.5)
    tbroker.start()
    p.expect(r"^DONE", 30)
    assert p.wait(10) == 0
    out = p.stdout
    assert "DONE True True [0]" in out, out
    rcs = [c[0] for c in connects(out)]
    assert rcs[0] == 0 and rcs[-1] == 0 and any(r < 0 for r in rcs[1:-1]), rcs
    want = ["down%d" % i for i in range(30)]
    # the order on the wire after the reconnection, as the broker received it
    wire = re.findall(r"Received PUBLISH from dev-wss-down \(d0, q\d, r0, m\d+, 'wdown/(down\d+)'", tbroker.log())
    assert wire == want, "sent in the order %r" % wire
    msgs = peer.wait_messages(33, 15, "wdown/")
    time.sleep(0.3)
    got = [m[1].decode() for m in peer.messages("wdown/") if m[1].startswith(b"down")]
    for q in range(3):
        assert [x for x in got if int(x[4:]) % 3 == q] == [x for x in want if int(x[4:]) % 3 == q], got


def test_wss_broker_restart_no_loss(spawn_fw, tbroker, pki, make_peer):
    peer = make_peer(tbroker, client_id="peer-wss-restart", clean_session=False)
    peer.subscribe("wrs/#", 2)
    n = 120
    p = spawn_fw(CONNECT_LOG + r'''
c = mqtt.MqttClient(URL, 'dev-wss-restart')
done = {}
c.on_publish(lambda mid, rc: done.__setitem__(mid, rc))
c.connect(on_connect, OPTS)
wait_until(lambda: events)
mids = []
for i in range(N):
    q = 1 + (i % 2)
    mids.append(c.publish('wrs/q%d' % q, 'm%d' % i, q))
    print('I', i)
    time.sleep_ms(20)
ok = wait_until(lambda: len(done) == N, 25000)
print('DONE', ok, len(done), sorted(set(done.values())), sorted(done) == sorted(mids))
c.disconnect()
'''.replace("OPTS", wss_opts(pki, ", 'keep_alive': 5, 'max_buffered': 1000")),
        vars={"URL": tbroker.url("wss"), "N": n})
    p.expect(r"^CONNECT 0 ", 10)
    p.expect(r"^I 30$", 10)
    tbroker.restart()
    p.expect(r"^DONE", 40)
    assert p.wait(10) == 0
    out = p.stdout
    assert "DONE True %d [0] True" % n in out, out
    cs = connects(out)
    rcs = [x[0] for x in cs]
    assert rcs[0] == 0 and rcs[-1] == 0 and any(r < 0 for r in rcs), rcs
    neg = [x for x in cs if x[0] < 0][0]
    back = [x for x in cs if x[0] == 0 and x[1] > neg[1]][0]
    gap = (back[1] - neg[1]) / 1000
    assert 0.5 <= gap <= 4.0, "reconnected %.2f s after the loss, contract: retry after 1 s" % gap
    peer.wait_messages(n, 15, "wrs/")
    time.sleep(0.5)
    msgs = peer.messages("wrs/")
    got1 = [m[1].decode() for m in msgs if m[0] == "wrs/q1"]
    got2 = [m[1].decode() for m in msgs if m[0] == "wrs/q2"]
    assert set("m%d" % i for i in range(0, n, 2)) - set(got1) == set(), "QoS 1 messages lost"
    assert set("m%d" % i for i in range(1, n, 2)) - set(got2) == set(), "QoS 2 messages lost"
    dup2 = sorted({x for x in got2 if got2.count(x) > 1})
    assert dup2 == [], "QoS 2 messages duplicated: %r" % dup2
