# Device benchmark script: runs ON the device firmware (tools/device-run),
# against a mosquitto on the host's loopback reached through --forward.
# Run by tools/bench/device.py as:
#   device-run --forward PORT device_bench.py port=PORT [n0=..] [n1=..] [n2=..]
# It prints one "RESULT key value" line per figure. Times are the board's
# emulated clock (qemu's virtual time follows the host's), so the figures say
# what the emulation delivers, not what a real Cortex-M3 would.
import gc
import sys
import time
import mqtt

ARGS = dict(a.split("=", 1) for a in sys.argv[1:])
URL = "mqtt://%s:%s" % (ARGS["host"], ARGS["port"])
N = [int(ARGS.get("n%d" % q, d)) for q, d in enumerate((20000, 5000, 3000))]
RX = 50
PAYLOAD = b"x" * 32

state = {"conn": 0, "done": 0, "subs": 0, "rx": 0}


def on_connect(rc, flags):
    if rc == 0:
        state["conn"] += 1
    else:
        print("on_connect rc", rc)


def on_publish(mid, rc):
    state["done"] += 1


def on_subscribe(mid, granted):
    state["subs"] += 1


def on_message(topic, msg):
    state["rx"] += 1


def wait(cond, ms=60000):
    t0 = time.ticks_ms()
    while not cond():
        if time.ticks_diff(time.ticks_ms(), t0) > ms:
            raise OSError("bench: timed out")
        time.sleep_ms(1)


def result(key, value):
    print("RESULT", key, value)


# Heap per client: what one MqttClient takes, before and after connecting.
gc.collect()
free0 = gc.mem_free()
c = mqtt.MqttClient(URL, "dev-bench")
gc.collect()
result("heap_client_bytes", free0 - gc.mem_free())
c.on_publish(on_publish)
c.on_subscribe(on_subscribe)
c.on_message(on_message)
c.connect(on_connect, {"keep_alive": 60, "max_inflight": 20, "max_buffered": 100})
wait(lambda: state["conn"])
gc.collect()
result("heap_client_connected_bytes", free0 - gc.mem_free())

# Throughput: N messages of 32 bytes to a topic nobody reads, from the first
# publish() until on_publish has reported every one (QoS 0: written; QoS 1:
# PUBACK; QoS 2: PUBCOMP). When the buffer is full the script sleeps 1 ms.
for qos in (0, 1, 2):
    n = N[qos]
    state["done"] = 0
    t0 = time.ticks_ms()
    i = 0
    while i < n:
        try:
            c.publish("bench/tp", PAYLOAD, qos)
            i += 1
        except mqtt.MqttError as e:
            if e.errno != -12:
                raise
            time.sleep_ms(1)
    wait(lambda: state["done"] >= n)
    ms = time.ticks_diff(time.ticks_ms(), t0)
    result("tp_qos%d_msgs_per_s" % qos, round(n * 1000 / max(ms, 1)))

# Heap per received message: the client receives its own messages; the
# collector is off while RX messages come in, and mem_alloc() counts what
# they took (publish() itself allocates nothing). Each round starts after a
# quiet 1.5 s, once the client has given back the buffers of the previous
# burst (it does so a second after one).
c.subscribe(("bench/rx", 0))
wait(lambda: state["subs"])
for qos in (0, 1, 2):
    state["rx"] = 0
    state["done"] = 0
    time.sleep_ms(1500)
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    for i in range(RX):
        c.publish("bench/rx", PAYLOAD, qos)
        wait(lambda: state["rx"] > i)
    b = gc.mem_alloc()
    gc.enable()
    result("heap_per_rx_qos%d_bytes" % qos, (b - a) // RX)

c.disconnect()
