"""Issue 6, fault injection: the firmware talks to mosquitto through faultproxy.Proxy,
which drops the connection at random points (mid-packet, between PUBREC and PUBREL, ...),
delays, splits writes into single bytes and leaves half-open connections; the broker is
restarted (SIGTERM, persistence on) several times. A paho-mqtt peer (persistent session,
connected to the broker directly) subscribes to the firmware's messages and publishes to
the firmware's subscription.

Checked: QoS 1 nothing lost (duplicates counted, allowed), QoS 2 nothing lost and nothing
duplicated, both directions; order per topic per QoS of the firmware's outgoing messages
(first deliveries in publish order; re-sent QoS 1 duplicates excepted).

FAULT_MESSAGES (default 10000) messages per direction; FAULT_SECONDS (default 80) is the
time over which they are paced; FAULT_DROPS (default 50) and FAULT_RESTARTS (default 3)
the minimum faults; FAULT_SEED the random seed (printed).
"""
import os
import random
import re
import threading
import time

import pytest

from relharness import Collector, PacedPeerPublisher, analyse, make_paho, parse_kv, url_for

N = int(os.environ.get("FAULT_MESSAGES", "10000"))
SECONDS = float(os.environ.get("FAULT_SECONDS", "80"))
MIN_DROPS = int(os.environ.get("FAULT_DROPS", "50"))
MIN_RESTARTS = int(os.environ.get("FAULT_RESTARTS", "3"))

# The firmware side: publishes N_UP sequence-numbered messages at RATE per second on
# rel/up/q1 and rel/up/q2, counts what arrives on rel/down/#, and reports.
FW_SCRIPT = r'''
import mqtt, gc, time
cnt = bytearray(N_DOWN)
st = {'rx': 0, 'uniq1': 0, 'uniq2': 0, 'dup1': 0, 'dup2': 0, 'order1': 0, 'order2': 0,
      'badqos': 0, 'acked': 0, 'pubfail': 0, 'stop': 0}
last = [-1, -1, -1]
connects = []
def on_connect(rc, flags):
    connects.append(rc)
    print('CONNECT', rc, flags['session_present'])
def on_message(topic, msg):
    if topic == 'rel/ctl':
        st['stop'] = 1
        return
    q = 2 if topic == 'rel/down/q2' else 1
    s = int(bytes(msg[:8]))
    if s % 2 + 1 != q:
        st['badqos'] += 1
    if cnt[s]:
        st['dup%d' % q] += 1
    else:
        st['uniq%d' % q] += 1
        if s < last[q]:
            st['order%d' % q] += 1
        last[q] = s
    if cnt[s] < 255:
        cnt[s] += 1
def on_publish(mid, rc):
    if rc == 0:
        st['acked'] += 1
    else:
        st['pubfail'] += 1
        print('PUBFAIL', mid, rc)
c = mqtt.MqttClient(URL, 'rel-fault-fw')
c.on_message(on_message)
c.on_publish(on_publish)
c.subscribe([('rel/down/#', 2), ('rel/ctl', 1)])
# poison_retries 0: the proxy's drops right after a client PUBLISH ('after_publish_c2s')
# can hit the same resent message three times in a row, which is exactly what a broker
# refusing that message looks like (tests/e2e/test_refused_messages.py tests that rule).
c.connect(on_connect, {'keep_alive': 2, 'max_inflight': 100, 'max_buffered': 1000, 'poison_retries': 0})
assert wait_until(lambda: 0 in connects, 20000), connects
print('READY')
PAD = 'x' * 24
t0 = time.ticks_ms()
i = 0
full = 0
while i < N_UP:
    due = (i * 1000) // RATE
    if time.ticks_diff(time.ticks_ms(), t0) < due:
        time.sleep_ms(5)
        continue
    q = 2 if i % 3 == 0 else 1
    try:
        c.publish('rel/up/q%d' % q, '%08d' % i + PAD, q)
        i += 1
    except mqtt.MqttError as e:
        if e.errno != -12:
            raise
        full += 1
        time.sleep_ms(5)
print('PUBLISHED_ALL', full)
def done():
    return st['stop'] and st['acked'] + st['pubfail'] == N_UP and st['uniq1'] + st['uniq2'] == N_DOWN
ok = wait_until(done, DRAIN_MS)
time.sleep_ms(2000)   # late duplicates
missing = [s for s in range(N_DOWN) if not cnt[s]]
print('FWDONE', ok)
print('CONNECTS', len(connects), connects.count(0))
print('RX', st)
print('MISSING', (missing[:50], len(missing)))
gc.collect()
print('HEAP', (gc.mem_alloc(), gc.mem_free()))
c.disconnect()
'''


@pytest.fixture
def collector_factory():
    made = []

    def make(*a):
        c = Collector(*a)
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()


def test_10k_messages_through_drops_and_restarts(broker, make_proxy, spawn_fw, transport, transport_wrap,
                                                  collector_factory):
    seed = int(os.environ.get("FAULT_SEED", str(int(time.time()))))
    rng = random.Random(seed)
    print("\nfault run: %d messages per direction, paced over %.0fs, seed %d" % (N, SECONDS, seed))
    proxy = make_proxy(broker.port, wrap=transport_wrap, seed=seed)
    peer = collector_factory(broker, "rel-fault-peer", "rel/up/#")
    # the peer that publishes to the firmware (its own persistent session)
    pub = make_paho(broker, "rel-fault-peer-pub", False)
    pub.connect(broker.host, broker.port, keepalive=10)
    pub.loop_start()
    try:
        _run_fault_scenario(broker, proxy, spawn_fw, transport, rng, peer, pub)
    finally:
        pub.disconnect()
        pub.loop_stop()


def _run_fault_scenario(broker, proxy, spawn_fw, transport, rng, peer, pub):
    t_start = time.monotonic()
    p = spawn_fw(FW_SCRIPT, vars={"URL": url_for(transport, proxy.port), "N_UP": N, "N_DOWN": N,
                                  "RATE": max(1, int(N / SECONDS)), "DRAIN_MS": 90000})
    p.expect(r"^READY$", 30)
    publisher = PacedPeerPublisher(pub, N, SECONDS)
    publisher.start()

    restarts = 0
    halfopens = 0
    modes = 0
    kinds = ["now", "now_rst", "mid_c2s", "mid_s2c", "after_pubrec", "before_pubrel", "after_pubrel",
             "before_pubcomp", "after_publish_c2s", "after_publish_s2c", "before_puback_c2s"]
    fw_published = lambda: any(l == "PUBLISHED_ALL" or l.startswith("PUBLISHED_ALL ") for _, l in p.lines)
    last_restart_at = 0
    while True:
        drops = sum(v for k, v in proxy.drops.items())
        if (publisher.done.is_set() and fw_published() and drops >= MIN_DROPS + halfopens
                and restarts >= MIN_RESTARTS):
            break
        if p.proc.poll() is not None:
            break
        assert time.monotonic() - t_start < SECONDS + 240, "fault loop did not finish"
        # wait for a connection to be up for a random while
        t_wait = time.monotonic()
        while not proxy.active() and time.monotonic() - t_wait < 20:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.3, 0.9))
        r = rng.random()
        elapsed = time.monotonic() - t_start
        if restarts < MIN_RESTARTS and elapsed > (restarts + 1) * SECONDS / (MIN_RESTARTS + 1) \
                and drops - last_restart_at >= 5:
            broker.stop()
            time.sleep(rng.uniform(0.2, 1.5))
            broker.start()
            restarts += 1
            last_restart_at = drops
            continue
        if r < 0.04 and halfopens < 3:
            if proxy.halfopen():
                halfopens += 1
            continue
        if r < 0.12:
            # a while of single-byte writes or delays, then a drop in the middle of it
            if rng.random() < 0.5:
                proxy.bytewise = True
            else:
                proxy.delay = rng.choice([0.005, 0.02, 0.05])
            modes += 1
            time.sleep(rng.uniform(0.5, 1.5))
            proxy.drop_all(rst=rng.random() < 0.5, kind="now_in_slow_mode")
            proxy.bytewise = False
            proxy.delay = 0.0
            continue
        kind = rng.choice(kinds)
        if kind in ("now", "now_rst"):
            proxy.drop_all(rst=kind == "now_rst", kind=kind)
        else:
            proxy.arm(kind)
            if not proxy.fired.wait(2.0):
                proxy.disarm()
                if not proxy.fired.is_set():
                    proxy.drop_all(kind="now_fallback")
    fault_seconds = time.monotonic() - t_start
    # stop faults; tell the firmware to finish
    assert publisher.error is None, publisher.error
    info = pub.publish("rel/ctl", "stop", 1)
    p.expect(r"^FWDONE", 120)
    rc = p.wait(30)
    out = p.stdout
    # the peer: all up messages (QoS 1 and 2), then a little more for late duplicates
    n_q2 = len([i for i in range(N) if i % 3 == 0])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        bt = peer.by_topic()
        if len(set(bt.get("rel/up/q1", []))) + len(set(bt.get("rel/up/q2", []))) >= N:
            break
        time.sleep(0.2)
    time.sleep(2)
    total_seconds = time.monotonic() - t_start

    up = analyse(peer.by_topic(), {"rel/up/q1": [i for i in range(N) if i % 3 != 0],
                                    "rel/up/q2": [i for i in range(N) if i % 3 == 0]})
    rx = parse_kv(out, "RX")[0]
    missing = parse_kv(out, "MISSING")
    connects = re.search(r"^CONNECTS (\d+) (\d+)$", out, re.M)
    pub_incomplete = sum(1 for i in publisher.infos if not getattr(i, "_published", False))
    print("faults: %d drops %r, %d broker restarts, %d half-open, %d slow/bytewise windows, "
          "%d proxy connections (%d refused while the broker was down), %.0fs of faults"
          % (proxy.total_drops(), dict(sorted(proxy.drops.items())), restarts, halfopens, modes,
             proxy.accepted, proxy.refused, fault_seconds))
    print("firmware connects: %s (on_connect calls, of which rc 0)" % (connects.groups() if connects else None,))
    for t, r in up.items():
        print("firmware -> peer %s: %r" % (t, r))
    print("peer -> firmware: %r (peer publishes not completed: %d)" % (rx, pub_incomplete))
    print("firmware missing: %r" % (missing,))
    print("fault run total %.0fs, packets through the proxy: %r" % (total_seconds, {
        "%s %s" % (d, t): n for (d, t), n in sorted(proxy.packets.items())}))
    print("firmware heap at the end: %r" % parse_kv(out, "HEAP"))

    assert rc == 0, "firmware exit %r\n%s\n%s" % (rc, out[-5000:], p.stderr[-5000:])
    assert "FWDONE True" in out, out[-5000:]
    assert "PUBFAIL" not in out
    assert proxy.total_drops() >= MIN_DROPS and restarts >= MIN_RESTARTS
    # firmware -> peer
    assert up["rel/up/q1"]["missing"] == 0, up["rel/up/q1"]
    assert up["rel/up/q2"]["missing"] == 0, up["rel/up/q2"]
    assert up["rel/up/q2"]["duplicates"] == 0, up["rel/up/q2"]
    assert up["rel/up/q1"]["order_violations"] == 0, up["rel/up/q1"]
    assert up["rel/up/q2"]["order_violations"] == 0, up["rel/up/q2"]
    # peer -> firmware
    assert rx["uniq1"] + rx["uniq2"] == N, rx
    assert rx["dup2"] == 0, rx
    assert rx["badqos"] == 0, rx
