#!/usr/bin/env python3
"""The device firmware's figures under emulation: messages/s at QoS 0/1/2,
heap per client and per received message (tools/bench/device_bench.py on
the device, a private mosquitto on the host's loopback). `make bench-device`.

Prints a markdown table and writes build/bench/device.md."""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MOSQUITTO = os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))

LABELS = [
    ("tp_qos0_msgs_per_s", "throughput QoS 0, msg/s"),
    ("tp_qos1_msgs_per_s", "throughput QoS 1, msg/s"),
    ("tp_qos2_msgs_per_s", "throughput QoS 2, msg/s"),
    ("heap_client_bytes", "heap per MqttClient (constructed), bytes"),
    ("heap_client_connected_bytes", "heap per MqttClient (connected), bytes"),
    ("heap_per_rx_qos0_bytes", "heap per received message QoS 0, bytes"),
    ("heap_per_rx_qos1_bytes", "heap per received message QoS 1, bytes"),
    ("heap_per_rx_qos2_bytes", "heap per received message QoS 2, bytes"),
]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_broker(workdir):
    port = free_port()
    conf = os.path.join(workdir, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n"
                "max_queued_messages 100000\n" % port)
    proc = subprocess.Popen([MOSQUITTO, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("mosquitto did not start")


def one_round(port):
    cmd = [sys.executable, os.path.join(ROOT, "tools", "device-run"), "--timeout", "300",
           "--forward", str(port), os.path.join(ROOT, "tools", "bench", "device_bench.py"),
           "port=%d" % port]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("device bench failed (%d):\n%s%s" % (p.returncode, p.stdout, p.stderr))
    return {k: int(v) for k, v in re.findall(r"^RESULT (\S+) (-?\d+)", p.stdout, re.M)}


def main():
    workdir = tempfile.mkdtemp(prefix="bench-device-")
    proc, port = start_broker(workdir)
    rounds = []
    try:
        for r in range(ROUNDS):
            rounds.append(one_round(port))
            print("round %d: %s" % (r + 1, rounds[-1]), file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    lines = ["| figure (device firmware under qemu, %d rounds) | median | rounds |" % ROUNDS, "|---|---|---|"]
    for key, label in LABELS:
        vals = sorted(r[key] for r in rounds)
        lines.append("| %s | %d | %s |" % (label, vals[len(vals) // 2], ", ".join(str(r[key]) for r in rounds)))
    table = "\n".join(lines)
    print(table)
    os.makedirs(os.path.join(ROOT, "build", "bench"), exist_ok=True)
    with open(os.path.join(ROOT, "build", "bench", "device.md"), "w") as f:
        f.write(table + "\n")


if __name__ == "__main__":
    main()
