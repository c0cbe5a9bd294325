"""The heap stays flat under traffic: a client that has received and sent a
thousand messages holds no more memory than after the first hundred. On the
device (140 KiB heap) a leak of even a few bytes per message would end in
MemoryError within hours; on the host it would grow without bound."""
import re

N = 1000
WARMUP = 100

SCRIPT = r'''
import mqtt, gc
# Counters, not lists: the script itself must not grow with the traffic.
got = [0]
done = [0, 0]
subacks = []
c = mqtt.MqttClient(URL, 'dev-heap')
def on_message(t, m):
    got[0] += 1
def on_publish(mid, rc):
    done[0] += 1
    done[1] += rc == 0
c.on_message(on_message)
c.on_subscribe(lambda mid, g: subacks.append(g))
c.on_publish(on_publish)
c.connect(lambda rc, f: c.subscribe(('heap/in', 1)) if rc == 0 else print('CONNECT', rc), {'keep_alive': 30})
wait_until(lambda: subacks, 10000)
print('READY')
def settled(n):
    wait_until(lambda: got[0] >= n, 60000)
    time.sleep_ms(300)
    gc.collect()
    return gc.mem_free()
after_warmup = settled(WARMUP)
print('WARMUP', got[0], after_warmup)
for i in range(N - WARMUP):
    c.publish('heap/out', b'x' * 32, i % 3)
    if i % 20 == 19:
        wait_until(lambda: done[0] == i + 1, 10000)
wait_until(lambda: done[0] == N - WARMUP, 10000)
print('PUBLISHED', done[0], done[1])
after_all = settled(N)
print('END', got[0], after_all)
c.disconnect()
'''


def test_heap_flat_over_1000_messages(spawn_fw, broker, peer):
    p = spawn_fw(SCRIPT, vars={"URL": broker.url, "N": N, "WARMUP": WARMUP})
    p.expect("^READY", 15)
    for i in range(WARMUP):
        peer.publish("heap/in", b"%04d" % i + b"." * 60, 1)
    p.expect("^WARMUP", 30)
    for i in range(WARMUP, N):
        peer.publish("heap/in", b"%04d" % i + b"." * 60, 1)
    assert p.wait(120) == 0, p.stdout + p.stderr
    out = p.stdout
    warm = re.search(r"^WARMUP (\d+) (\d+)$", out, re.M)
    end = re.search(r"^END (\d+) (\d+)$", out, re.M)
    assert warm and end, out
    assert int(end.group(1)) == N, out
    assert "PUBLISHED %d %d" % (N - WARMUP, N - WARMUP) in out, out
    # 900 more messages in and 900 out: what was free after the first hundred
    # is still free, give or take one small block of the collector's slack.
    assert int(end.group(2)) >= int(warm.group(2)) - 512, out
