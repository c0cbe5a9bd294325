"""Issue 6, soak: one client for SOAK_SECONDS (default 60; `make soak` runs 600) at a steady
rate (SOAK_RATE messages/s in each direction, default 100, mixed QoS 0/1/2) through the
fault proxy, with a drop of the connection every SOAK_FAULT_EVERY seconds (default 8).
The firmware prints its heap (gc.mem_alloc() after gc.collect()) every 3 s; the heap must
not grow: the first and last thirds of the samples are compared (minimum: the baseline,
and mean) with a tolerance, after a warm-up (two faults) during which the client's queues
grow once to their working size. QoS 1/2 messages must all arrive, QoS 2 exactly once.
"""
import os
import random
import threading
import time

from relharness import parse_kv, url_for
from relharness import Collector, analyse, make_paho

SECONDS = float(os.environ.get("SOAK_SECONDS", "60"))
RATE = int(os.environ.get("SOAK_RATE", "100"))
FAULT_EVERY = float(os.environ.get("SOAK_FAULT_EVERY", "8"))
# tolerances of the heap comparison, bytes
TOL_MIN = int(os.environ.get("SOAK_HEAP_TOL_MIN", "4096"))
TOL_MEAN = int(os.environ.get("SOAK_HEAP_TOL_MEAN", "16384"))

FW = r'''
import mqtt, gc, time
cnt = bytearray(N_DOWN)
st = {'uniq': 0, 'dup1': 0, 'dup2': 0, 'acked': 0, 'fail': 0, 'connects': 0, 'lost': 0}
def on_connect(rc, flags):
    if rc == 0:
        st['connects'] += 1
    else:
        st['lost'] += 1
def on_message(topic, msg):
    s = int(bytes(msg[:8]))
    if cnt[s]:
        st['dup%s' % topic[-1]] += 1
    else:
        st['uniq'] += 1
    cnt[s] = 1
def on_publish(mid, rc):
    if rc == 0:
        st['acked'] += 1
    else:
        st['fail'] += 1
c = mqtt.MqttClient(URL, 'soak-fw')
c.on_message(on_message)
c.on_publish(on_publish)
c.subscribe(('soak/down/#', 2))
c.connect(on_connect, {'keep_alive': 5, 'max_inflight': 50, 'max_buffered': 2000})
assert wait_until(lambda: st['connects'], 10000)
print('READY')
t0 = time.ticks_ms()
next_heap = 0
i = 0
full = 0
while True:
    now = time.ticks_diff(time.ticks_ms(), t0)
    if now >= next_heap:
        gc.collect()
        print('HEAP', (now, gc.mem_alloc(), gc.mem_free()))
        next_heap += 3000
    if i >= N_UP:
        if now >= SECONDS * 1000:
            break
        time.sleep_ms(50)
        continue
    if now < (i * 1000) // RATE:
        time.sleep_ms(5)
        continue
    q = i % 3
    try:
        c.publish('soak/up/q%d' % q, '%08d' % i + 'p' * 40, q)
        i += 1
    except mqtt.MqttError as e:
        if e.errno != -12:
            raise
        full += 1
        time.sleep_ms(10)
n_ack = N_UP - (N_UP + 2) // 3
ok = wait_until(lambda: st['acked'] >= n_ack and st['uniq'] >= N_DOWN, 30000)
time.sleep_ms(1000)
gc.collect()
print('HEAP', (time.ticks_diff(time.ticks_ms(), t0), gc.mem_alloc(), gc.mem_free()))
print('SOAKDONE', (ok, st, full))
c.disconnect()
'''


def test_soak(broker, make_proxy, spawn_fw):
    seed = int(time.time())
    rng = random.Random(seed)
    n = int(SECONDS * RATE)
    print("\nsoak: %.0fs at %d msg/s each way (%d messages each way), a fault every %.0fs, seed %d"
          % (SECONDS, RATE, n, FAULT_EVERY, seed))
    proxy = make_proxy(broker.port, seed=seed)
    peer = Collector(broker, "soak-peer", "soak/up/#")
    pub = make_paho(broker, "soak-peer-pub", False)
    pub.connect(broker.host, broker.port, keepalive=10)
    pub.loop_start()
    try:
        p = spawn_fw(FW, vars={"URL": url_for("tcp", proxy.port), "N_UP": n, "N_DOWN": n,
                               "RATE": RATE, "SECONDS": SECONDS})
        p.expect(r"^READY$", 20)
        stop = threading.Event()

        def publisher():
            t0 = time.monotonic()
            for j in range(n):
                d = t0 + j / RATE - time.monotonic()
                if d > 0:
                    time.sleep(d)
                q = 1 + j % 2
                pub.publish("soak/down/q%d" % q, "%08d" % j + "d" * 40, q)
        th = threading.Thread(target=publisher, daemon=True)
        th.start()
        kinds = ["now", "mid_c2s", "mid_s2c", "after_pubrec", "before_pubrel", "after_publish_c2s"]
        t0 = time.monotonic()
        while time.monotonic() - t0 < SECONDS - FAULT_EVERY / 2:
            time.sleep(FAULT_EVERY)
            k = rng.choice(kinds)
            if k == "now":
                proxy.drop_all()
            else:
                proxy.arm(k)
                if not proxy.fired.wait(2):
                    proxy.disarm()
                    if not proxy.fired.is_set():
                        proxy.drop_all(kind="now_fallback")
        th.join(SECONDS + 30)
        p.expect(r"^SOAKDONE", SECONDS + 60)
        rc = p.wait(20)
        out = p.stdout
        deadline = time.monotonic() + 30
        want = {"soak/up/q1": [i for i in range(n) if i % 3 == 1], "soak/up/q2": [i for i in range(n) if i % 3 == 2]}
        while time.monotonic() < deadline:
            a = analyse(peer.by_topic(), want)
            if all(r["missing"] == 0 for r in a.values()):
                break
            time.sleep(0.2)
        up = analyse(peer.by_topic(), dict(want, **{"soak/up/q0": [i for i in range(n) if i % 3 == 0]}))
    finally:
        peer.close()
        pub.disconnect()
        pub.loop_stop()

    heap = parse_kv(out, "HEAP")
    done = parse_kv(out, "SOAKDONE")
    print("faults: %r" % dict(proxy.drops))
    print("heap over time (ms, mem_alloc, mem_free after gc.collect()):")
    for h in heap:
        print("  %6d ms  alloc %7d  free %7d" % h)
    # warm-up: until the client has been through a couple of reconnects, its queues and
    # buffers grow to their working size once (retained capacity, not a leak)
    warmup_ms = min(2 * FAULT_EVERY + 4, SECONDS / 3) * 1000
    samples = [h[1] for h in heap[:-1] if h[0] >= warmup_ms]   # the last one is after the drain
    k = max(1, len(samples) // 3)
    first, last = samples[:k], samples[-k:]
    fig = {"warmup_ms": int(warmup_ms), "samples": len(samples), "first_third_min": min(first), "first_third_mean": sum(first) // len(first),
           "last_third_min": min(last), "last_third_mean": sum(last) // len(last),
           "after_drain": heap[-1][1]}
    print("heap figures: %r" % fig)
    print("firmware: %r" % (done,))
    for t, r in up.items():
        print("firmware -> peer %s: %r" % (t, r))
    assert rc == 0, out[-3000:] + p.stderr[-3000:]
    ok, st, full = done[0]
    assert ok and st["fail"] == 0 and st["dup2"] == 0, done
    assert up["soak/up/q1"]["missing"] == 0 and up["soak/up/q2"]["missing"] == 0, up
    assert up["soak/up/q2"]["duplicates"] == 0, up
    assert proxy.total_drops() >= max(1, int(SECONDS / FAULT_EVERY) - 2), proxy.drops
    assert fig["last_third_min"] - fig["first_third_min"] <= TOL_MIN, "heap baseline grew: %r" % fig
    assert fig["last_third_mean"] - fig["first_third_mean"] <= TOL_MEAN, "heap mean grew: %r" % fig
