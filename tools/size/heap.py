# Heap per client, measured on the firmware itself (run by tools/size/size.py):
#   micropython heap.py URL [CA_PEM_PATH] [subscribe_topic publish_host port]
# Prints one "HEAP <json>" line. Every figure is a gc.mem_alloc() difference
# after gc.collect(), so it counts the GC blocks that stay referenced:
#   object    the MqttClient object right after construction
#   idle      one connected idle client (nothing queued, quiet for 1.5 s: the
#             buffers a connection set-up grew are given back after 1 s) minus the heap before
#             it was made: the object, its socket(s) and TLS/WebSocket state,
#             its buffers (the options and callbacks are made beforehand)
#   idle_sub  the same after a subscribe() was acknowledged
#   per_msg   heap allocated per received message (collector off, N QoS 0
#             messages to the client's own subscription); ref_msg what the
#             topic str and payload bytearray alone cost in the same firmware
#   queued_burst / after_burst  heap with 500 QoS 1 publishes buffered while
#             disconnected, and after they were all delivered (request queue
#             grows and shrinks back)
import gc
import sys
import time
import json
import mqtt

URL = sys.argv[1]
CA = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] != "-" else None
N_MSG = 200

st = {"rc": None, "subs": 0, "msgs": [], "pubs": 0}


def on_connect(rc, flags):
    st["rc"] = rc


def on_subscribe(mid, granted):
    st["subs"] += 1


def on_message(topic, payload):
    st["msgs"].append((topic, payload))


def on_count(topic, payload):
    st["count"] += 1


def on_publish(mid, rc):
    st["pubs"] += 1


def wait(cond, ms=10000):
    t0 = time.ticks_ms()
    while not cond():
        if time.ticks_diff(time.ticks_ms(), t0) > ms:
            raise OSError("timeout")
        time.sleep_ms(2)


def used():
    gc.collect()
    gc.collect()
    return gc.mem_alloc()


opts = {"keep_alive": 60, "max_buffered": 1000}
if CA:
    with open(CA) as f:
        opts["trust_store"] = f.read()
cid = "size-%d" % (time.ticks_ms() & 0xFFFF)
topic = "size/" + cid
res = {}
# warm-up: the first client loads what any later one shares (qstrs, the tls
# and socket modules' state, the waker thread)
w = mqtt.MqttClient(URL, cid + "w")
w.connect(on_connect, opts)
wait(lambda: st["rc"] is not None)
w.disconnect()
wait(lambda: not w.is_connected())
time.sleep_ms(100)
w = None
st["rc"] = None

base = used()
c = mqtt.MqttClient(URL, cid)
res["object"] = used() - base
c.on_subscribe(on_subscribe)
c.on_message(on_message)
c.on_publish(on_publish)
base_cb = used()
c.connect(on_connect, opts)
wait(lambda: st["rc"] is not None)
time.sleep_ms(1500)  # idle: quiet for longer than the buffers' trim delay
res["rc"] = st["rc"]
res["idle"] = used() - base_cb + res["object"]
c.subscribe((topic, 1))
wait(lambda: st["subs"] == 1)
time.sleep_ms(1500)
res["idle_sub"] = used() - base_cb + res["object"]

# per received message: the client publishes to its own subscription; with the
# collector off, everything allocated while N messages come in, per message
# (the callback itself allocates nothing)
st["count"] = 0
c.on_message(on_count)
payload = b"m" * 32
gc.collect()
gc.disable()
m0 = gc.mem_alloc()
sent = 0
while sent < N_MSG:
    try:
        c.publish(topic, payload, 0)
        sent += 1
    except mqtt.MqttError:
        time.sleep_ms(1)
while st["count"] < N_MSG:
    time.sleep_ms(1)
res["per_msg"] = (gc.mem_alloc() - m0) / N_MSG
# the floor: what a topic str and a payload bytearray of that size cost
tb = topic.encode()
m0 = gc.mem_alloc()
for _ in range(N_MSG):
    str(tb, "utf-8")
    bytearray(payload)
res["ref_msg"] = (gc.mem_alloc() - m0) / N_MSG
gc.enable()

# a burst of queued publishes, then everything delivered; the first burst
# makes what lives as long as the client (e.g. the queue's first block)
btopic = topic + "/burst"


def burst():
    c.disconnect()
    wait(lambda: not c.is_connected())
    time.sleep_ms(50)
    before = st["pubs"]
    for i in range(500):
        c.publish(btopic, payload, 1)
    peak = used()
    c.connect(on_connect, opts)
    wait(lambda: st["pubs"] >= before + 500, 20000)
    time.sleep_ms(1500)  # grown blocks are given back after a quiet second
    return peak


burst()
level = used()
res["queued_burst"] = burst() - level
res["after_burst"] = used() - level
c.disconnect()
wait(lambda: not c.is_connected())
print("HEAP " + json.dumps(res))
