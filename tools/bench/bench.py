#!/usr/bin/env python3
"""`make bench`: the firmware's `mqtt` module against umqtt.simple (same
firmware), paho-mqtt (CPython), Eclipse Paho C's asynchronous client (MQTTAsync)
and mosquitto_pub/libmosquitto (C), on a private mosquitto on loopback. Run through tools/bench/run.sh, which fetches umqtt.simple,
builds the firmware without the module (for the text size) and the libmosquitto
round-trip helper, then calls this driver.

Figures, per client and QoS: publish throughput (N messages, window 20, until
the peer subscriber has them all and, QoS 1/2, all are acknowledged; for the
module both buffered, the script publishing ahead into the buffer, and paced,
the next publish made from on_publish), the client's CPU per message, round-trip
latency (median, p99), heap bytes per publish() and per received message
(MicroPython clients), peak RSS, CPU of an idle connected client over 10 s, and
the module's text size. Measurements are interleaved (the order of the clients
rotates each round) and repeated; the table shows medians over the rounds.
"""
import argparse
import datetime
import json
import os
import platform
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MOSQUITTO = os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto")
MOSQ_PUB = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
MOSQ_SUB = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"
HOST = "127.0.0.1"
WINDOW = 20
LINE = b"x" * 32 + b"\n"     # 32-byte payload, the same for every client
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes

class Proc:
    """A child process; a thread reaps it with wait4 (end time and rusage) and
    another collects its stdout lines."""

    def __init__(self, cmd, env=None, stdin=None, stdout=subprocess.PIPE, name=None, sample_rss=False,
                 sample_cpu_with=None):
        self.name = name or os.path.basename(cmd[0])
        self.cmd = cmd
        self.err = tempfile.TemporaryFile()
        self.p = subprocess.Popen(cmd, env=env, stdin=stdin, stdout=stdout, stderr=self.err)
        self.lines = queue.Queue()
        self.exited = threading.Event()
        self.end_ns = None
        self.status = None
        self.rusage = None
        self.hwm_kib = None
        threading.Thread(target=self._reap, daemon=True).start()
        if sample_rss:
            threading.Thread(target=self._sample, daemon=True).start()
        self.cpu_samples = []   # (client's CPU, other's CPU), see _sample_cpu
        if sample_cpu_with:
            threading.Thread(target=self._sample_cpu, args=(sample_cpu_with,), daemon=True).start()
        if stdout == subprocess.PIPE:
            threading.Thread(target=self._read, daemon=True).start()

    def _reap(self):
        _, status, ru = os.wait4(self.p.pid, 0)
        self.end_ns = time.time_ns()
        self.status = status
        self.rusage = ru
        self.p.returncode = os.waitstatus_to_exitcode(status)
        self.exited.set()

    def _sample(self):
        # VmHWM, read until the process is gone (wait4's ru_maxrss would count
        # the driver's own memory: the child is vforked from it)
        path = "/proc/%d/status" % self.p.pid
        while not self.exited.is_set():
            try:
                with open(path) as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            v = int(line.split()[1])
                            if v:
                                self.hwm_kib = v
                            break
            except (FileNotFoundError, ProcessLookupError, ValueError):
                break
            self.exited.wait(0.01)

    def _sample_cpu(self, other):
        # Every 10 ms: the CPU the client's main thread and the process `other`
        # (the broker) last ran on (/proc/PID/stat field 39). Whether a round
        # trip crosses CPUs decides its latency on this machine (each hop is then
        # a wake-up of the other, idle, virtual CPU).
        def cpu(pid):
            with open("/proc/%d/stat" % pid) as f:
                return int(f.read().rsplit(")", 1)[1].split()[36])
        while not self.exited.wait(0.01):
            try:
                self.cpu_samples.append((cpu(self.p.pid), cpu(other)))
            except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
                break

    def same_cpu_share(self):
        """The share of samples with the client on the broker's CPU (None: no sample)."""
        if not self.cpu_samples:
            return None
        return sum(1 for a, b in self.cpu_samples if a == b) / len(self.cpu_samples)

    def _read(self):
        for line in self.p.stdout:
            self.lines.put(line.decode(errors="replace").rstrip("\n"))
        self.lines.put(None)

    def stderr_text(self):
        self.err.seek(0)
        return self.err.read().decode(errors="replace")[-2000:]

    def expect(self, prefix, timeout):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise RuntimeError("%s: no %r within %.0f s\n%s" % (self.name, prefix, timeout, self.stderr_text()))
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.exited.wait(5)
                raise RuntimeError("%s exited (%s) before %r\n%s" % (self.name, self.p.returncode, prefix, self.stderr_text()))
            if line.startswith(prefix):
                return line[len(prefix):].strip()

    def result(self, timeout):
        return json.loads(self.expect("RESULT", timeout))

    def wait(self, timeout):
        if not self.exited.wait(timeout):
            self.kill()
            raise RuntimeError("%s did not exit within %.0f s\n%s" % (self.name, timeout, self.stderr_text()))
        return self.p.returncode

    def maxrss_kib(self):
        return self.hwm_kib

    def kill(self, sig=signal.SIGKILL):
        if not self.exited.is_set():
            try:
                os.kill(self.p.pid, sig)
            except ProcessLookupError:
                pass
            self.exited.wait(5)


class Broker:
    def __init__(self, workdir, nodelay=False):
        s = socket.socket()
        s.bind((HOST, 0))
        self.port = s.getsockname()[1]
        s.close()
        conf = os.path.join(workdir, "mosquitto-%d.conf" % self.port)
        with open(conf, "w") as f:
            f.write("listener %d %s\n" % (self.port, HOST))
            f.write("allow_anonymous true\n")
            f.write("persistence false\n")
            # mosquitto 2.0.11 stalls messages queued behind a small window
            # (issue 4); 65534 avoids that and its restart duplicate.
            f.write("max_inflight_messages 65534\n")
            f.write("max_queued_messages 10000000\n")
            f.write("max_queued_bytes 0\n")
            f.write("log_type error\n")
            if nodelay:
                f.write("set_tcp_nodelay true\n")
        self.proc = Proc([MOSQUITTO, "-c", conf], stdout=subprocess.DEVNULL, name="mosquitto")
        for _ in range(100):
            try:
                socket.create_connection((HOST, self.port), 0.2).close()
                return
            except OSError:
                if self.proc.exited.is_set():
                    raise RuntimeError("mosquitto did not start:\n" + self.proc.stderr_text())
                time.sleep(0.05)
        raise RuntimeError("mosquitto does not accept connections")

    def stop(self):
        self.proc.kill(signal.SIGTERM)
        self.proc.kill()


# ---------------------------------------------------------------- clients

class Bench:
    def __init__(self, a, broker, tmp):
        self.a = a
        self.port = broker.port
        self.lport = broker.port
        self.tmp = tmp
        self.seq = 0
        self.mp_env = dict(os.environ)
        self.mp_env["MICROPYPATH"] = a.umqtt_lib

    def topic(self, what):
        self.seq += 1
        return "bench/%s/%d" % (what, self.seq)

    # command lines of the clients' scripts
    def cmd(self, client, mode, topic, args, port=None):
        args = [str(x) for x in args]
        base = [HOST, str(port or self.port), topic]
        if client == "mod":
            return [self.a.firmware, os.path.join(HERE, "mp_mod.py"), mode] + base + args, None
        if client == "mod-persist":
            store = os.path.join(self.tmp, "store-%d" % self.seq)
            env = dict(os.environ, BENCH_PERSISTENCE=store)
            return [self.a.firmware, os.path.join(HERE, "mp_mod.py"), mode] + base + args, env
        if client == "mod-paced":
            return [self.a.firmware, os.path.join(HERE, "mp_mod.py"), "paced"] + base + args, None
        if client == "paho-c":
            return [self.a.paho_async, mode] + base + args, None
        if client in ("umqtt", "umqtt-nagle"):
            nodelay = "0" if client == "umqtt-nagle" else "1"
            return ([self.a.firmware, os.path.join(HERE, "mp_umqtt.py"), mode] + base + [nodelay] + args,
                    self.mp_env)
        if client == "paho":
            return [self.a.python, os.path.join(HERE, "paho_client.py"), mode] + base + args, None
        raise ValueError(client)

    def feed(self, proc, n):
        """Write n payload lines to a mosquitto_pub -l process, then EOF."""
        def w():
            try:
                chunk = LINE * 4096
                left = n
                while left > 0:
                    k = min(left, 4096)
                    proc.p.stdin.write(chunk if k == 4096 else LINE * k)
                    left -= k
                proc.p.stdin.close()
            except BrokenPipeError:
                pass
        t = threading.Thread(target=w, daemon=True)
        t.start()
        return t

    def mosq_pub_l(self, topic, qos, sample_rss=False):
        return Proc([MOSQ_PUB, "-h", HOST, "-p", str(self.port), "-q", str(qos), "-M", str(WINDOW),
                     "-l", "-t", topic], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                    name="mosquitto_pub", sample_rss=sample_rss)

    def throughput(self, client, qos, n):
        """messages/s from the first publish until the peer subscriber has all
        n and (QoS 1/2) the client has all acknowledgements."""
        topic = self.topic("tp")
        ready = topic + "/ready"
        subprocess.run([MOSQ_PUB, "-h", HOST, "-p", str(self.port), "-r", "-t", ready, "-m", "ready"], check=True)
        out = os.path.join(self.tmp, "sub.out")
        with open(out, "wb") as f:
            sub = Proc([MOSQ_SUB, "-h", HOST, "-p", str(self.port), "-q", str(qos), "-C", str(n + 1),
                        "-t", ready, "-t", topic], stdout=f, name="mosquitto_sub")
        deadline = time.monotonic() + 10
        while os.path.getsize(out) == 0:      # the retained "ready" arrives after SUBACK
            if time.monotonic() > deadline or sub.exited.is_set():
                sub.kill()
                raise RuntimeError("subscriber not ready\n" + sub.stderr_text())
            time.sleep(0.002)
        timeout = 30 + n / 500
        extra = {}
        try:
            if client == "mosq":
                pub = self.mosq_pub_l(topic, qos, sample_rss=True)
                time.sleep(0.4)           # connected and waiting on stdin by now
                t0 = time.time_ns()
                self.feed(pub, n)
                t1 = 0                    # its acks are not observable: the subscriber's end counts
            else:
                cmd, env = self.cmd(client, "tp", topic, [n, qos])
                pub = Proc(cmd, env=env, name=client, sample_rss=True)
                r = pub.result(timeout)
                t0, t1 = r["t0"], r["t1"]
                extra = {k: v for k, v in r.items() if k not in ("t0", "t1")}
            sub.wait(timeout)
            pub.wait(timeout)
        finally:
            sub.kill()
        if sub.p.returncode != 0:
            raise RuntimeError("subscriber failed: " + sub.stderr_text())
        end = max(sub.end_ns, t1)
        rate = n / ((end - t0) / 1e9)
        ru = pub.rusage
        cpu_us = (ru.ru_utime + ru.ru_stime) * 1e6 / n if ru else None
        return {"rate": rate, "rss_kib": pub.maxrss_kib(), "cpu_us": cpu_us, **extra}

    def latency(self, client, qos, warm, n, port, broker_pid=None):
        topic = self.topic("rtt")
        if client == "mosq":
            cmd, env = [self.a.mosq_rtt, HOST, str(port), topic, str(warm), str(n), str(qos)], None
        else:
            cmd, env = self.cmd(client, "rtt", topic, [warm, n, qos], port)
        p = Proc(cmd, env=env, name=client, sample_cpu_with=broker_pid)
        r = p.result(60 + n * 0.1)
        p.wait(10)
        return r["rtt_us"], p.same_cpu_share()

    def heap_pub(self, client, warm, m):
        topic = self.topic("heap")
        cmd, env = self.cmd(client, "heap_pub", topic, [warm, m])
        p = Proc(cmd, env=env, name=client)
        r = p.result(120)
        p.wait(10)
        return r

    def heap_rx(self, client, qos, warm, m):
        topic = self.topic("rx")
        cmd, env = self.cmd(client, "heap_rx", topic, [warm, m, qos])
        p = Proc(cmd, env=env, name=client)
        p.expect("READY", 20)
        pub = self.mosq_pub_l(topic, qos)
        self.feed(pub, warm + m)
        r = p.result(60)
        pub.wait(10)
        p.wait(10)
        return r

    def idle(self, seconds):
        procs = {}
        for client in ("mod", "umqtt", "paho"):
            cmd, env = self.cmd(client, "idle", self.topic("idle"), [])
            procs[client] = Proc(cmd, env=env, name=client)
        # the module again, the script sleeping in time.sleep_ms(5000)
        cmd, env = self.cmd("mod", "idle_sleep", self.topic("idle"), [])
        procs["mod-sleep"] = Proc(cmd, env=env, name="mod-sleep")
        procs["mosq"] = self.mosq_pub_l(self.topic("idle"), 1)   # -l: connected, waiting on stdin
        for c in ("mod", "mod-sleep", "umqtt", "paho"):
            procs[c].expect("READY", 20)
        time.sleep(0.5)
        before = {c: cpu_sample(p.p.pid) for c, p in procs.items()}
        time.sleep(seconds)
        after = {c: cpu_sample(p.p.pid) for c, p in procs.items()}
        res = {}
        for c, p in procs.items():
            b, e = before[c], after[c]
            res[c] = {"ticks": e["ticks"] - b["ticks"], "cpu_ms": (e["ns"] - b["ns"]) / 1e6,
                      "wakeups": e["ctxt"] - b["ctxt"], "rss_kib": e["rss"], "threads": e["threads"]}
            if p.exited.is_set():
                res[c]["error"] = "exited during the idle window"
        for p in procs.values():
            p.kill(signal.SIGTERM)
            p.kill()
        return res


def cpu_sample(pid):
    """user+sys ticks (/proc/pid/stat), on-CPU ns and context switches summed over
    the threads (/proc/pid/task/*/schedstat, status), resident set."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    ns = ctxt = threads = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                ns += int(f.read().split()[0])
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        ctxt += int(line.split()[1])
            threads += 1
        except FileNotFoundError:
            pass
    rss = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return {"ticks": ticks, "ns": ns, "ctxt": ctxt, "rss": rss, "threads": threads}


def text_size(path):
    out = subprocess.run(["size", path], capture_output=True, text=True, check=True).stdout
    return int(out.splitlines()[1].split()[0])


def pct(xs, p):
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(p / 100 * len(xs) + 0.5)) - 1))
    return xs[k]


# ---------------------------------------------------------------- report

NAMES = {"mod": "mqtt module", "mod-paced": "mqtt module (paced)",
         "mod-persist": "mqtt module, persistence on", "umqtt": "umqtt.simple",
         "umqtt-nagle": "umqtt.simple (no NODELAY)", "paho": "paho-mqtt", "paho-c": "Paho C MQTTAsync",
         "mosq": "mosquitto_pub"}


def fmt_rate(v):
    return "%.1fk/s" % (v / 1000) if v >= 1000 else "%.0f/s" % v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--firmware", required=True)
    ap.add_argument("--nomod", required=True, help="the same firmware built without the module")
    ap.add_argument("--core-obj", required=True)
    ap.add_argument("--umqtt-lib", required=True)
    ap.add_argument("--mosq-rtt", required=True)
    ap.add_argument("--paho-async", required=True)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", 3)))
    ap.add_argument("--out", required=True, help="directory for results.json and results.md")
    a = ap.parse_args()
    a.mosq_rtt = os.path.abspath(a.mosq_rtt)
    a.paho_async = os.path.abspath(a.paho_async)

    N = {0: int(os.environ.get("BENCH_N0", 60000)), 1: int(os.environ.get("BENCH_N1", 20000)),
         2: int(os.environ.get("BENCH_N2", 12000))}
    N_NAGLE = 40            # umqtt.simple QoS 1 without TCP_NODELAY: ~44 ms per message
    RTT_WARM, RTT_N = 50, 1000
    # Paho C sets no TCP_NODELAY: its QoS 1/2 turns wait for delayed ACKs too
    SLOW_RTT = {("umqtt-nagle", 1): (2, 10), ("paho", 2): (2, 30), ("paho-c", 1): (2, 30), ("paho-c", 2): (2, 30)}
    HEAP_WARM, HEAP_M = 1000, 1000
    IDLE_S = 10

    t_start = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="mqtt-bench-")
    broker = Broker(tmp)
    # Round trips are measured on a second broker with set_tcp_nodelay: with
    # mosquitto's default (Nagle on its sockets) some clients' request/response
    # turns wait ~44 ms for a delayed ACK, which measures the broker, not the
    # client. A short sample on the default broker is reported as well.
    lbroker = Broker(tmp, nodelay=True)
    log("bench: mosquitto on %s:%d (and %d with set_tcp_nodelay for round trips), %d rounds, N = %s"
        % (HOST, broker.port, lbroker.port, a.rounds, N))
    b = Bench(a, broker, tmp)
    tp = {}     # (client, qos) -> [rates]
    cpu_msg = {}  # (client, qos) -> [CPU µs per message]
    rss = {}    # client -> [KiB]
    rtt = {}    # (client, qos) -> [samples]
    rtt_med = {}  # (client, qos) -> [per-round medians]
    rtt_nagle = {}  # (client, qos) -> samples on the default broker
    rtt_same_cpu = {}  # (client, qos) -> [per round: share of CPU samples on the broker's CPU]
    tp_clients = {0: ["mod", "mod-paced", "umqtt", "paho", "paho-c", "mosq"],
                  1: ["mod", "mod-paced", "mod-persist", "umqtt", "umqtt-nagle", "paho", "paho-c", "mosq"],
                  2: ["mod", "mod-paced", "mod-persist", "paho", "paho-c", "mosq"]}
    written = {}  # (client, qos) -> [bytes written per message]
    rtt_clients = {0: ["mod", "umqtt", "paho", "paho-c", "mosq"],
                   1: ["mod", "umqtt", "umqtt-nagle", "paho", "paho-c", "mosq"],
                   2: ["mod", "paho", "paho-c", "mosq"]}
    try:
        for r in range(a.rounds):
            for qos in (0, 1, 2):
                cl = tp_clients[qos]
                cl = cl[r % len(cl):] + cl[:r % len(cl)]
                for c in cl:
                    n = N_NAGLE if c == "umqtt-nagle" else N[qos]
                    res = b.throughput(c, qos, n)
                    tp.setdefault((c, qos), []).append(res["rate"])
                    if res.get("written", -1) >= 0:
                        written.setdefault((c, qos), []).append(res["written"] / n)
                    if res["cpu_us"] is not None:
                        cpu_msg.setdefault((c, qos), []).append(res["cpu_us"])
                    rss.setdefault(c, []).append(res["rss_kib"])
                    log("round %d  QoS %d  %-26s %10.0f msg/s  (peak RSS %d KiB)"
                        % (r + 1, qos, NAMES[c], res["rate"], res["rss_kib"]))
            for qos in (0, 1, 2):
                cl = rtt_clients[qos]
                cl = cl[r % len(cl):] + cl[:r % len(cl)]
                for c in cl:
                    # clients whose turns wait for delayed ACKs (~44 ms): fewer samples
                    warm, n = SLOW_RTT.get((c, qos), (RTT_WARM, RTT_N))
                    s, same = b.latency(c, qos, warm, n, lbroker.port, lbroker.proc.p.pid)
                    rtt.setdefault((c, qos), []).extend(s)
                    rtt_med.setdefault((c, qos), []).append(statistics.median(s))
                    if same is not None:
                        rtt_same_cpu.setdefault((c, qos), []).append(same)
                    log("round %d  QoS %d  %-26s RTT median %8.1f us  p99 %8.1f us  on the broker's CPU: %s"
                        % (r + 1, qos, NAMES[c], statistics.median(s), pct(s, 99),
                           "-" if same is None else "%.0f %%" % (100 * same)))
                    if r == 0 and c != "umqtt-nagle":
                        s, _ = b.latency(c, qos, 2, 20, broker.port)
                        rtt_nagle[(c, qos)] = s
                        log("round %d  QoS %d  %-26s RTT median %8.1f us on the default broker"
                            % (r + 1, qos, NAMES[c], statistics.median(s)))
        heap = {"mod": b.heap_pub("mod", HEAP_WARM, HEAP_M), "umqtt": b.heap_pub("umqtt", HEAP_WARM, HEAP_M)}
        heap_rx = {}
        for qos in (0, 1, 2):
            heap_rx[("mod", qos)] = b.heap_rx("mod", qos, 200, HEAP_M)
            if qos < 2:
                heap_rx[("umqtt", qos)] = b.heap_rx("umqtt", qos, 200, HEAP_M)
        log("heap per publish: %s" % heap)
        log("heap per received message: %s" % {"%s q%d" % k: v for k, v in heap_rx.items()})
        idle = b.idle(IDLE_S)
        log("idle %d s: %s" % (IDLE_S, idle))
    finally:
        broker.stop()
        lbroker.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    sizes = {"firmware": text_size(a.firmware), "nomod": text_size(a.nomod), "core": text_size(a.core_obj)}
    sizes["module"] = sizes["firmware"] - sizes["nomod"]
    elapsed = time.monotonic() - t_start

    # ---- the table
    med = lambda xs: statistics.median(xs)
    rows = []
    cols = ["mod", "umqtt", "paho", "paho-c", "mosq"]

    def paired(per_round, c, ref_key):
        # the median of the per-round ratios: each round runs the clients
        # back to back, so a ratio within a round cancels the machine's drift
        xs, ys = per_round.get(c), per_round.get(ref_key)
        if not xs or not ys or len(xs) != len(ys):
            return None
        return med([x / y for x, y in zip(xs, ys)])

    def row(label, vals, ref_key, fmt, ratio=True, per_round=None):
        cells = []
        ref = vals.get(ref_key)
        for c in cols:
            v = vals.get(c)
            q = paired(per_round, c, ref_key) if per_round else None
            if v is None:
                cells.append("n/a")
            elif ratio and q is not None:
                cells.append("%s (%.3g×)" % (fmt(v), q))
            elif ratio and ref:
                cells.append("%s (%.3g×)" % (fmt(v), v / ref))
            else:
                cells.append(fmt(v))
        rows.append([label] + cells)

    for qos in (0, 1, 2):
        vals = {c: med(tp[(c, qos)]) for c in cols if (c, qos) in tp}
        row("throughput QoS %d, msg/s" % qos, vals, "mosq", fmt_rate,
            per_round={c: tp[(c, qos)] for c in cols if (c, qos) in tp})
    for qos in (0, 1, 2):
        if ("mod-paced", qos) in tp:
            ratio = paired({c: tp[(c, qos)] for c in ("mod-paced", "mosq")}, "mod-paced", "mosq")
            rows.append(["  paced (next publish from on_publish), QoS %d" % qos,
                         "%s (%.3g×)" % (fmt_rate(med(tp[("mod-paced", qos)])), ratio), "", "", "", ""])
    for qos in (0, 1, 2):
        vals = {c: med(cpu_msg[(c, qos)]) for c in cols if (c, qos) in cpu_msg}
        row("client CPU per message QoS %d, µs" % qos, vals, "mosq", lambda v: "%.1f" % v)
        if ("mod-paced", qos) in cpu_msg:
            rows.append(["  paced, QoS %d" % qos, "%.1f" % med(cpu_msg[("mod-paced", qos)]), "", "", "", ""])
    for qos in (1, 2):
        if ("mod-persist", qos) in tp:
            q = paired({c: tp[(c, qos)] for c in ("mod", "mod-persist")}, "mod-persist", "mod")
            rows.append(["  persistence on, QoS %d: msg/s (× off); store bytes/msg" % qos,
                         "%s (%.3g×); %.0f B" % (fmt_rate(med(tp[("mod-persist", qos)])), q,
                                                 med(written[("mod-persist", qos)]) - med(written[("mod", qos)])),
                         "", "", "", ""])
    if (("umqtt-nagle", 1)) in tp:
        rows.append(["  umqtt.simple QoS 1 without TCP_NODELAY", "", fmt_rate(med(tp[("umqtt-nagle", 1)])), "", "", ""])
    for qos in (0, 1, 2):
        vals = {c: med(rtt_med[(c, qos)]) for c in cols if (c, qos) in rtt_med}
        row("round trip QoS %d, median µs" % qos, vals, "mosq", lambda v: "%.0f" % v,
            per_round={c: rtt_med[(c, qos)] for c in cols if (c, qos) in rtt_med})
        vals = {c: pct(rtt[(c, qos)], 99) for c in cols if (c, qos) in rtt}
        row("round trip QoS %d, p99 µs" % qos, vals, "mosq", lambda v: "%.0f" % v)
        vals = {c: rtt_same_cpu[(c, qos)] for c in cols if (c, qos) in rtt_same_cpu}
        rows.append(["  client on the broker's CPU, share of samples per round"]
                     + [", ".join("%.0f %%" % (100 * x) for x in vals[c]) if c in vals else "" for c in cols])
    for qos in (0, 1, 2):
        vals = {c: med(rtt_nagle[(c, qos)]) for c in cols if (c, qos) in rtt_nagle}
        row("  QoS %d median µs, broker without set_tcp_nodelay" % qos, vals, "mosq", lambda v: "%.0f" % v)
    if ("umqtt-nagle", 1) in rtt_med:
        rows.append(["  umqtt.simple QoS 1 RTT without TCP_NODELAY, µs", "",
                     "%.0f" % med(rtt_med[("umqtt-nagle", 1)]), "", "", ""])
    for qos in (0, 1, 2):
        vals = {c: heap[c].get("q%d_call" % qos) for c in ("mod", "umqtt")}
        row("heap per publish() QoS %d, bytes" % qos, vals, None, lambda v: "%.1f" % v, ratio=False)
    for qos in (0, 1, 2):
        row("  incl. pump + on_publish, QoS %d" % qos, {"mod": heap["mod"]["q%d_total" % qos]}, None,
            lambda v: "%.1f" % v, ratio=False)
    floor = heap_rx[("mod", 0)]["floor"]
    for qos in (0, 1, 2):
        vals = {c: heap_rx[(c, qos)]["rx"] for c in ("mod", "umqtt") if (c, qos) in heap_rx}
        row("heap per received msg QoS %d, bytes" % qos, vals, None, lambda v: "%.1f" % v, ratio=False)
    rows.append(["  (a new topic str + payload bytearray: %.0f bytes)" % floor, "", "", "", "", ""])
    vals = {c: max(rss[c]) for c in cols if c in rss}
    row("peak RSS in throughput runs, KiB", vals, "mosq", lambda v: "%d" % v)
    vals = {c: idle[c]["rss_kib"] for c in cols if c in idle}
    row("RSS idle connected, KiB", vals, "mosq", lambda v: "%d" % v)
    vals = {c: idle[c]["ticks"] * 1000 / CLK_TCK for c in cols if c in idle}
    row("idle 10 s CPU (user+sys), ms", vals, None, lambda v: "%.0f" % v, ratio=False)
    vals = {c: idle[c]["cpu_ms"] for c in cols if c in idle}
    row("idle 10 s on-CPU (schedstat), ms", vals, None, lambda v: "%.2f" % v, ratio=False)
    vals = {c: idle[c]["wakeups"] for c in cols if c in idle}
    row("idle 10 s context switches", vals, None, lambda v: "%d" % v, ratio=False)
    ms = idle["mod-sleep"]
    rows.append(["  script in time.sleep_ms(5000): on-CPU ms, switches",
                 "%.2f, %d" % (ms["cpu_ms"], ms["wakeups"]), "", "", "", ""])
    rows.append(["text added to the firmware, bytes", "%d" % sizes["module"], "", "", "", ""])
    rows.append(["  of which Rust core (mqtt_core.o)", "%d" % sizes["core"], "", "", "", ""])

    header = ["figure", "mqtt module", "umqtt.simple", "paho-mqtt", "Paho C MQTTAsync",
              "mosquitto_pub / libmosquitto"]
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        md.append("| " + " | ".join(r) + " |")

    # ---- targets
    targets = []
    for mode, key in (("buffered", "mod"), ("paced", "mod-paced")):
        for qos in (0, 1, 2):
            ratio = paired({c: tp[(c, qos)] for c in (key, "mosq")}, key, "mosq")
            targets.append(("%s throughput QoS %d ≥ 1.0 × mosquitto_pub" % (mode, qos), ratio >= 1.0,
                            "%.2f× (rounds: %s)" % (ratio, ", ".join("%.2f" % (x / y) for x, y in
                                                       zip(tp[(key, qos)], tp[("mosq", qos)])))))
    for qos in (0, 1, 2):
        ratio = paired({c: rtt_med[(c, qos)] for c in ("mod", "mosq")}, "mod", "mosq")
        targets.append(("median round trip QoS %d ≤ libmosquitto's" % qos, ratio <= 1.0,
                        "%.2f× (rounds: %s)" % (ratio, ", ".join("%.2f" % (x / y) for x, y in
                                                   zip(rtt_med[("mod", qos)], rtt_med[("mosq", qos)])))))
        p_mod, p_mosq = pct(rtt[("mod", qos)], 99), pct(rtt[("mosq", qos)], 99)
        targets.append(("p99 round trip QoS %d ≤ 1.5 × libmosquitto's" % qos, p_mod <= 1.5 * p_mosq,
                        "%.0f µs against %.0f µs (%.2f×)" % (p_mod, p_mosq, p_mod / p_mosq)))
    v = med(cpu_msg[("mod", 1)])
    targets.append(("client CPU per QoS 1 message ≤ 20 µs", v <= 20,
                    "%.1f µs buffered, %.1f µs paced (mosquitto_pub %.1f µs)"
                    % (v, med(cpu_msg[("mod-paced", 1)]), med(cpu_msg[("mosq", 1)]))))
    ms = idle["mod-sleep"]
    per5 = ms["cpu_ms"] * 5 / IDLE_S
    targets.append(("connected client in time.sleep_ms, CPU per 5 s < 10 ms", per5 < 10,
                    "%.2f ms per 5 s (%.2f ms, %d context switches in %d s)"
                    % (per5, ms["cpu_ms"], ms["wakeups"], IDLE_S)))
    for qos in (0, 1, 2):
        v = heap["mod"]["q%d_call" % qos]
        targets.append(("0 heap bytes per publish() QoS %d" % qos, v < 0.5,
                        "%.1f B (3 batches of %d: %s)" % (v, HEAP_M, ", ".join(
                            "%.1f" % x for x in heap["mod"]["q%d_batches" % qos]))))
    for qos in (0, 1, 2):
        v = heap_rx[("mod", qos)]["rx"]
        targets.append(("per received message QoS %d ≤ topic str + bytearray" % qos, v <= floor + 0.5,
                        "%.1f B (floor %.0f B)" % (v, floor)))
    ti = idle["mod"]
    targets.append(("idle connected client: no measurable CPU", ti["ticks"] == 0 and ti["cpu_ms"] < 5,
                    "%d ticks, %.2f ms on CPU, %d wakeups in %d s" % (ti["ticks"], ti["cpu_ms"], ti["wakeups"], IDLE_S)))
    targets.append(("module text ≤ 64 KiB", sizes["module"] <= 65536,
                    "%d B (%.1f KiB)" % (sizes["module"], sizes["module"] / 1024)))
    md.append("")
    md.append("| target | result | met |")
    md.append("|---|---|---|")
    for name, ok, val in targets:
        md.append("| %s | %s | %s |" % (name, val, "met" if ok else "**not met**"))

    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    meta = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(), "rounds": a.rounds,
            "n": N, "payload_bytes": len(LINE) - 1, "window": WINDOW, "elapsed_s": round(elapsed, 1)}
    md.insert(0, "Machine: %d CPUs, %s, Linux %s; %s; %d rounds (medians; a ratio is the median of "
              "the per-round ratios), N = %d/%d/%d messages (QoS 0/1/2), 32-byte payload, window 20.\n"
              % (meta["nproc"], cpu, meta["kernel"], meta["date"], a.rounds, N[0], N[1], N[2]))
    text = "\n".join(md)
    print()
    print(text)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump({"meta": meta, "throughput": {"%s/%d" % k: v for k, v in tp.items()},
                   "rtt_median_us": {"%s/%d" % k: v for k, v in rtt_med.items()},
                   "rtt_p99_us": {"%s/%d" % k: pct(v, 99) for k, v in rtt.items()},
                   "rtt_default_broker_us": {"%s/%d" % k: v for k, v in rtt_nagle.items()},
                   "rtt_same_cpu_share": {"%s/%d" % k: v for k, v in rtt_same_cpu.items()},
                   "heap_pub": heap, "heap_rx": {"%s/%d" % k: v for k, v in heap_rx.items()},
                   "written_per_msg": {"%s/%d" % k: v for k, v in written.items()},
                   "cpu_us_per_msg": {"%s/%d" % k: v for k, v in cpu_msg.items()},
                   "rss_kib": rss, "idle": idle, "sizes": sizes}, f, indent=1)
    print("\nbench: %.0f s; results in %s/results.md" % (elapsed, a.out))


if __name__ == "__main__":
    main()
