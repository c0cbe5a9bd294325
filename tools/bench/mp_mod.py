# Benchmark client: this firmware's built-in `mqtt` module.
# Run by tools/bench/bench.py as:  micropython mp_mod.py MODE HOST PORT TOPIC [ARGS...]
# Every mode prints "READY" once connected (and subscribed) and one
# "RESULT <json>" line at the end; times are time.time_ns() (CLOCK_REALTIME,
# comparable with the driver's) or time.ticks_us() differences.
import sys
import time
import gc
import json
import mqtt

MODE = sys.argv[1]
HOST = sys.argv[2]
PORT = int(sys.argv[3])
TOPIC = sys.argv[4]
ARGS = [int(a) for a in sys.argv[5:]]

PAYLOAD = b"x" * 32
WINDOW = 20        # max_inflight, the same window as every other client
BUFFERED = 1000    # max_buffered: how far the script may run ahead of the wire

state = {"conn": False, "done": 0, "subs": 0}


def on_connect(rc, flags):
    if rc == 0:
        state["conn"] = True
    else:
        print("on_connect rc", rc)


def on_publish(mid, rc):
    state["done"] += 1


def on_subscribe(mid, granted):
    state["subs"] += 1


def client(cid, buffered=BUFFERED):
    c = mqtt.MqttClient("mqtt://%s:%d" % (HOST, PORT), cid)
    c.on_publish(on_publish)
    c.on_subscribe(on_subscribe)
    c.connect(on_connect, {"keep_alive": 60, "max_inflight": WINDOW, "max_buffered": buffered})
    while not state["conn"]:
        time.sleep_ms(1)
    return c


def subscribe(c, qos):
    c.subscribe((TOPIC, qos))
    while state["subs"] == 0:
        time.sleep_ms(1)


def wait_done(n):
    while state["done"] < n:
        time.sleep_ms(1)


def finish(c, result):
    print("RESULT", json.dumps(result))
    c.disconnect()


def run_publish(c, n, qos):
    # Publish as fast as the buffer takes; when it is full (MqttError -12)
    # sleep a millisecond: the pump drains the buffer meanwhile (the client's
    # waker thread interrupts the sleep when the socket is ready).
    pub = c.publish
    topic = TOPIC
    p = PAYLOAD
    i = 0
    full = 0
    while i < n:
        try:
            pub(topic, p, qos)
            i += 1
        except mqtt.MqttError as e:
            if e.errno != -12:
                raise
            full += 1
            time.sleep_ms(1)
    return full


def mode_tp():
    # throughput: N messages at QoS q, window 20
    n, qos = ARGS
    c = client("bench-mod-tp")
    print("READY")
    t0 = time.time_ns()
    full = run_publish(c, n, qos)
    wait_done(n)
    t1 = time.time_ns()
    finish(c, {"t0": t0, "t1": t1, "full": full})


def mode_paced():
    # throughput, paced by the script: 20 publishes outstanding, the next one
    # published from on_publish (the pattern a Workshop script uses to pace
    # itself); the script only sleeps meanwhile
    n, qos = ARGS
    c = client("bench-mod-paced", buffered=0)
    st = {"sent": 0}
    pub = c.publish
    topic = TOPIC
    p = PAYLOAD

    def on_pub(mid, rc):
        state["done"] += 1
        if st["sent"] < n:
            st["sent"] += 1
            pub(topic, p, qos)

    c.on_publish(on_pub)
    print("READY")
    t0 = time.time_ns()
    for i in range(min(WINDOW, n)):
        st["sent"] += 1
        pub(topic, p, qos)
    while state["done"] < n:
        time.sleep_ms(5)
    t1 = time.time_ns()
    finish(c, {"t0": t0, "t1": t1})


def mode_rtt():
    # round trip: publish to a topic this client subscribes to, one at a time;
    # the next message is published from on_message (event driven).
    warm, n, qos = ARGS
    c = client("bench-mod-rtt")
    subscribe(c, qos)
    samples = []
    st = {"k": 0, "t": 0}
    tick = time.ticks_us
    diff = time.ticks_diff

    def on_message(topic, msg):
        now = tick()
        k = st["k"]
        if k >= warm:
            samples.append(diff(now, st["t"]))
        k += 1
        st["k"] = k
        if k < warm + n:
            st["t"] = tick()
            c.publish(TOPIC, PAYLOAD, qos)

    c.on_message(on_message)
    print("READY")
    st["t"] = tick()
    c.publish(TOPIC, PAYLOAD, qos)
    while st["k"] < warm + n:
        time.sleep_ms(5)
    finish(c, {"rtt_us": samples})


def alloc_floor(topic_b, m):
    # what a received message must cost at least: a new str topic and a new
    # bytearray payload, made the same way the firmware makes them
    keep = [None] * (2 * m)
    base = loop_baseline(m)
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    for i in range(m):
        keep[2 * i] = str(topic_b, "utf-8")
        keep[2 * i + 1] = bytearray(PAYLOAD)
    b = gc.mem_alloc()
    gc.enable()
    return (b - a - base) / m


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
    # heap bytes per publish() of a bytes payload, gc disabled, after warm-up
    warm, m = ARGS
    c = client("bench-mod-heap", buffered=m + 1)
    print("READY")
    res = {}
    base = loop_baseline(m)
    for qos in (0, 1, 2):
        pub = c.publish
        topic = TOPIC
        p = PAYLOAD
        target = state["done"] + warm
        for i in range(warm):
            pub(topic, p, qos)
        wait_done(target)
        # three measured batches: the buffer queue grows to its high-water
        # mark once; the last batch is the steady state
        calls, totals = [], []
        for k in range(3):
            gc.collect()
            gc.disable()
            target = state["done"] + m
            a = gc.mem_alloc()
            for i in range(m):
                pub(topic, p, qos)
            b = gc.mem_alloc()
            wait_done(target)
            d = gc.mem_alloc()
            gc.enable()
            calls.append((b - a - base) / m)
            totals.append((d - a - base) / m)
        res["q%d_call" % qos] = calls[-1]
        res["q%d_total" % qos] = totals[-1]
        res["q%d_batches" % qos] = calls
    finish(c, res)


def mode_heap_rx():
    # heap bytes per received message: the driver publishes warm+m messages
    # at QoS q to TOPIC after READY
    warm, m, qos = ARGS
    c = client("bench-mod-rx")
    st = {"k": 0, "a": 0, "b": 0}

    def on_message(topic, msg):
        k = st["k"] + 1
        st["k"] = k
        if k == warm:
            gc.collect()
            gc.disable()
            st["a"] = gc.mem_alloc()
        elif k == warm + m:
            st["b"] = gc.mem_alloc()
            gc.enable()

    c.on_message(on_message)
    subscribe(c, qos)
    floor = alloc_floor(TOPIC.encode(), 1000)
    print("READY")
    while st["k"] < warm + m:
        time.sleep_ms(5)
    finish(c, {"rx": (st["b"] - st["a"]) / m, "floor": floor})


def mode_idle():
    # connect, say so, and return: the firmware stays alive while connected
    c = mqtt.MqttClient("mqtt://%s:%d" % (HOST, PORT), "bench-mod-idle")

    def on_conn(rc, flags):
        print("READY" if rc == 0 else "on_connect rc %d" % rc)

    c.connect(on_conn, {"keep_alive": 60})


def mode_idle_sleep():
    # connected, and the script sleeping in time.sleep_ms(5000)
    c = mqtt.MqttClient("mqtt://%s:%d" % (HOST, PORT), "bench-mod-idle-sleep")

    def on_conn(rc, flags):
        print("READY" if rc == 0 else "on_connect rc %d" % rc)

    c.connect(on_conn, {"keep_alive": 60})
    while True:
        time.sleep_ms(5000)


{"tp": mode_tp, "paced": mode_paced, "rtt": mode_rtt, "heap_pub": mode_heap_pub, "heap_rx": mode_heap_rx,
 "idle": mode_idle, "idle_sleep": mode_idle_sleep}[MODE]()
