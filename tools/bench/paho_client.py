# Benchmark client: paho-mqtt 2.x on CPython (the project's .venv).
# Run by tools/bench/bench.py as:  python paho_client.py MODE HOST PORT TOPIC [ARGS...]
import json
import sys
import threading
import time

import paho.mqtt.client as paho

MODE = sys.argv[1]
HOST = sys.argv[2]
PORT = int(sys.argv[3])
TOPIC = sys.argv[4]
ARGS = [int(a) for a in sys.argv[5:]]
PAYLOAD = b"x" * 32
WINDOW = 20


def client(cid):
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=True)
    c.max_inflight_messages_set(WINDOW)
    c.max_queued_messages_set(0)  # unbounded: publish() never refuses
    connected = threading.Event()
    c.on_connect = lambda cl, ud, flags, rc, props: connected.set()
    c.connect(HOST, PORT, keepalive=60)
    c.loop_start()
    if not connected.wait(10):
        sys.exit("paho: no CONNACK")
    return c


def finish(c, result):
    print("RESULT", json.dumps(result), flush=True)
    c.disconnect()
    c.loop_stop()


def mode_tp():
    n, qos = ARGS
    done = threading.Event()
    count = [0]

    def on_publish(cl, ud, mid, rc, props):
        count[0] += 1
        if count[0] == n:
            done.set()

    c = client("bench-paho-tp")
    c.on_publish = on_publish
    print("READY", flush=True)
    t0 = time.time_ns()
    pub = c.publish
    for _ in range(n):
        pub(TOPIC, PAYLOAD, qos)
    done.wait()
    t1 = time.time_ns()
    finish(c, {"t0": t0, "t1": t1})


def mode_rtt():
    warm, n, qos = ARGS
    samples = []
    st = {"k": 0, "t": 0}
    done = threading.Event()
    subscribed = threading.Event()

    def on_message(cl, ud, msg):
        now = time.perf_counter_ns()
        k = st["k"]
        if k >= warm:
            samples.append((now - st["t"]) / 1000)
        k += 1
        st["k"] = k
        if k < warm + n:
            st["t"] = time.perf_counter_ns()
            cl.publish(TOPIC, PAYLOAD, qos)
        else:
            done.set()

    c = client("bench-paho-rtt")
    c.on_message = on_message
    c.on_subscribe = lambda *a: subscribed.set()
    c.subscribe(TOPIC, qos)
    subscribed.wait(10)
    print("READY", flush=True)
    st["t"] = time.perf_counter_ns()
    c.publish(TOPIC, PAYLOAD, qos)
    done.wait()
    finish(c, {"rtt_us": samples})


def mode_idle():
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-paho-idle")
    c.on_connect = lambda cl, ud, flags, rc, props: print("READY", flush=True)
    c.connect(HOST, PORT, keepalive=60)
    c.loop_forever()


{"tp": mode_tp, "rtt": mode_rtt, "idle": mode_idle}[MODE]()
