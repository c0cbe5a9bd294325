"""Helpers of the reliability suite, shared by conftest.py and the test modules (a module of
its own, not `conftest`: tests/e2e imports names from its own conftest by that name, and two
modules called `conftest` would clash when both suites run in one pytest)."""
import importlib.util
import os
import re
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _load_e2e():
    path = REPO / "tests" / "e2e" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_e2e_harness", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


e2e = sys.modules.get("_e2e_harness") or _load_e2e()
sys.modules["_e2e_harness"] = e2e
FIRMWARE = e2e.FIRMWARE
Broker = e2e.Broker
free_port = e2e.free_port
PRELUDE = e2e.PRELUDE

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer",
                     "SUMMARY: UndefinedBehaviorSanitizer")


def sanitizer_report(stderr):
    """The sanitizer report lines found in a firmware's stderr ("" if none)."""
    return "\n".join(l for l in stderr.splitlines() if any(m in l for m in SANITIZER_MARKERS))


def assert_clean_stderr(stderr, what="firmware"):
    rep = sanitizer_report(stderr)
    assert not rep, "%s: sanitizer report:\n%s\n--- full stderr ---\n%s" % (what, rep, stderr[-20000:])


BROKER_CONF = "\n".join([
    "max_queued_messages 0",   # unlimited: nothing may be dropped by the broker
    "max_queued_bytes 0",
    "autosave_interval 0",     # persistence written at shutdown (SIGTERM) only
])

# Schemes for which this harness has a server side (proxy and hostile broker speak plain
# MQTT over TCP). To add TLS: wrap the listening side of faultproxy.Proxy / hostile.Hostile
# with an ssl.SSLContext (both take `wrap=`), and list the scheme here.
SERVER_WRAPPERS = {"tcp": None, "mqtt": None}


def transports():
    return [t.strip() for t in os.environ.get("RELIABILITY_TRANSPORTS", "tcp").split(",") if t.strip()]


def url_for(transport, port):
    return "%s://127.0.0.1:%d" % (transport, port)


def parse_kv(out, key):
    """Values of lines `KEY <python literal>` in the firmware output."""
    return [eval(m.group(1)) for m in re.finditer(r"^%s (.*)$" % re.escape(key), out, re.M)]


def analyse(seqs_by_topic, expected_by_topic):
    """seqs_by_topic: topic -> [seq in arrival order]. Returns per-topic figures."""
    res = {}
    for topic, expected in expected_by_topic.items():
        seen = set()
        dups = 0
        order = 0
        last = -1
        for s in seqs_by_topic.get(topic, []):
            if s in seen:
                dups += 1
                continue
            seen.add(s)
            if s < last:
                order += 1
            last = s
        missing = sorted(set(expected) - seen)
        extra = sorted(seen - set(expected))
        res[topic] = {"expected": len(expected), "delivered": len(seen), "duplicates": dups,
                      "order_violations": order, "missing": len(missing),
                      "missing_first": missing[:20], "unexpected": extra[:20]}
    return res


class PacedPeerPublisher(threading.Thread):
    def __init__(self, client, n, seconds):
        super().__init__(daemon=True)
        self.c, self.n, self.seconds = client, n, seconds
        self.infos = []
        self.done = threading.Event()
        self.error = None

    def run(self):
        try:
            t0 = time.monotonic()
            for j in range(self.n):
                due = t0 + j * self.seconds / self.n
                d = due - time.monotonic()
                if d > 0:
                    time.sleep(d)
                q = j % 2 + 1
                info = self.c.publish("rel/down/q%d" % q, ("%08d" % j) + "y" * 24, q)
                self.infos.append(info)
        except Exception as e:  # pragma: no cover - reported by the test
            self.error = e
        self.done.set()


def make_paho(broker, client_id, clean_session):
    import paho.mqtt.client as paho
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session)
    c.max_inflight_messages_set(65000)
    c.max_queued_messages_set(0)
    c.reconnect_delay_set(1, 1)
    return c


class Collector:
    """A paho subscriber (persistent session) that records (topic, seq, qos) in order."""

    def __init__(self, broker, client_id, sub):
        self.lock = threading.Lock()
        self.msgs = []
        self.connects = 0
        self.sub = sub
        self.c = make_paho(broker, client_id, False)
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.connect(broker.host, broker.port, keepalive=10)
        self.c.loop_start()
        deadline = time.monotonic() + 10
        while self.connects == 0:
            assert time.monotonic() < deadline, "peer did not connect"
            time.sleep(0.02)

    def _on_connect(self, client, userdata, flags, rc, props):
        if not rc.is_failure:
            client.subscribe(self.sub, 2)
            with self.lock:
                self.connects += 1

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.msgs.append((msg.topic, int(msg.payload[:8]), msg.qos))

    def count(self):
        with self.lock:
            return len(self.msgs)

    def by_topic(self):
        out = {}
        with self.lock:
            for t, s, q in self.msgs:
                out.setdefault(t, []).append(s)
        return out

    def close(self):
        try:
            self.c.disconnect()
        except Exception:
            pass
        self.c.loop_stop()
