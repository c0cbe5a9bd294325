# Benchmark client: umqtt.simple 1.3.4 (fetched by run.sh) on the same firmware.
# Run by tools/bench/bench.py as:
#   MICROPYPATH=build/bench/lib micropython mp_umqtt.py MODE HOST PORT TOPIC NODELAY [ARGS...]
# umqtt.simple is synchronous: QoS 1 publish() waits for its PUBACK (a window
# of 1), QoS 2 is not implemented (publish asserts).
import sys
import time
import gc
import json
from umqtt.simple import MQTTClient

MODE = sys.argv[1]
HOST = sys.argv[2]
PORT = int(sys.argv[3])
TOPIC = sys.argv[4]
NODELAY = int(sys.argv[5])
ARGS = [int(a) for a in sys.argv[6:]]

PAYLOAD = b"x" * 32
IPPROTO_TCP = 6
TCP_NODELAY = 1

st = {"k": 0}


def on_message(topic, msg):
    st["k"] += 1


def client(cid):
    c = MQTTClient(cid, HOST, PORT, keepalive=60)
    c.connect()
    if NODELAY:
        c.sock.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1)
    c.set_callback(on_message)
    return c


def finish(c, result):
    print("RESULT", json.dumps(result))
    c.disconnect()


def mode_tp():
    n, qos = ARGS
    c = client("bench-umqtt-tp")
    print("READY")
    pub = c.publish
    topic = TOPIC
    p = PAYLOAD
    t0 = time.time_ns()
    for i in range(n):
        pub(topic, p, False, qos)
    t1 = time.time_ns()
    finish(c, {"t0": t0, "t1": t1})


def mode_rtt():
    warm, n, qos = ARGS
    c = client("bench-umqtt-rtt")
    c.subscribe(TOPIC, qos)
    print("READY")
    samples = []
    tick = time.ticks_us
    for k in range(warm + n):
        want = st["k"] + 1
        t = tick()
        c.publish(TOPIC, PAYLOAD, False, qos)
        while st["k"] < want:
            c.wait_msg()
        if k >= warm:
            samples.append(time.ticks_diff(tick(), t))
    finish(c, {"rtt_us": samples})


def loop_baseline(m):
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    for i in range(m):
        pass
    b = gc.mem_alloc()
    gc.enable()
    return b - a


def mode_heap_pub():
    warm, m = ARGS
    c = client("bench-umqtt-heap")
    print("READY")
    res = {}
    base = loop_baseline(m)
    for qos in (0, 1):
        pub = c.publish
        topic = TOPIC
        p = PAYLOAD
        for i in range(warm):
            pub(topic, p, False, qos)
        gc.collect()
        gc.disable()
        a = gc.mem_alloc()
        for i in range(m):
            pub(topic, p, False, qos)
        b = gc.mem_alloc()
        gc.enable()
        res["q%d_call" % qos] = (b - a - base) / m
        res["q%d_total" % qos] = (b - a - base) / m
    finish(c, res)


def mode_heap_rx():
    warm, m, qos = ARGS
    c = client("bench-umqtt-rx")
    c.subscribe(TOPIC, qos)
    print("READY")
    while st["k"] < warm:
        c.wait_msg()
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    while st["k"] < warm + m:
        c.wait_msg()
    b = gc.mem_alloc()
    gc.enable()
    finish(c, {"rx": (b - a) / m})


def mode_idle():
    c = client("bench-umqtt-idle")
    print("READY")
    while True:
        c.wait_msg()   # blocks in read(): how an umqtt.simple app waits


{"tp": mode_tp, "rtt": mode_rtt, "heap_pub": mode_heap_pub, "heap_rx": mode_heap_rx,
 "idle": mode_idle}[MODE]()
