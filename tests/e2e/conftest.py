"""End-to-end harness for the `mqtt` module of the DL-7450 host firmware.

Pieces (all torn down at the end of each test):
- `broker` / `auth_broker`: a real mosquitto on a free loopback port, configured in
  tmp_path (persistence on, `max_inflight_messages 65534`: see issue 4). A test marked
  `@pytest.mark.brokers` runs once per broker of MQTT_BROKERS (default
  "mosquitto,aedes"): `broker` is then also aedes (aedes_broker.py), and
  `broker.kind` says which;
- `run_fw(script, ...)`: runs a script on the firmware to completion;
  `spawn_fw(script, ...)`: starts it and lets the test follow its output line by line;
- `peer`: a paho-mqtt client that publishes to / subscribes from the firmware;
- `fake_broker`: a scripted raw-socket broker, only for what mosquitto cannot do;
- `repl`: the firmware's REPL driven through a pseudo-terminal.

With MQTT_TARGET=device, scripts run on the device firmware under qemu
(tools/device-run) instead of the host firmware, and tests that need what the
device firmware does not have (a network, a REPL on a terminal, the host's
command line) are skipped: `make test` runs the device-capable files that way.

Firmware scripts get a small prelude (see PRELUDE) with the variables a test passes
(`URL`, ...) and a `wait_until(cond, ms)` helper; they print lines the tests parse.
"""
import os
import pty
import queue
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = os.environ.get("MQTT_FIRMWARE") or str(REPO / "build" / "micropython")
MOSQUITTO = os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto")
MOSQUITTO_PASSWD = os.environ.get("MOSQUITTO_PASSWD", "/usr/bin/mosquitto_passwd")


TARGET = os.environ.get("MQTT_TARGET", "host")
DEVICE_RUN = REPO / "tools" / "device-run"
DEVICE_FIRMWARE = os.environ.get("MQTT_DEVICE_FIRMWARE") or str(REPO / "build" / "device" / "firmware.elf")
ON_DEVICE = TARGET == "device"
# Fixtures the device firmware cannot serve: a REPL on a terminal.
HOST_ONLY_FIXTURES = {"repl"}
# Where the device reaches the host's forwarded loopback ports
# (tools/device-run --forward).
DEVICE_GUEST_HOST = "10.0.2.100"
LOOPBACK_ADDR = re.compile(r"127\.0\.0\.1:(\d+)")


def device_vars(vars):
    """The script variables as the device sees them, and the ports to forward.

    Every "127.0.0.1:PORT" in a string variable (the brokers' URLs) becomes
    the guest address of the forwarded port, so that the same script runs on
    both firmwares."""
    ports = []
    out = {}
    for k, v in (vars or {}).items():
        if isinstance(v, str):
            ports += [int(p) for p in LOOPBACK_ADDR.findall(v)]
            v = LOOPBACK_ADDR.sub(DEVICE_GUEST_HOST + r":\1", v)
        out[k] = v
    return out, sorted(set(ports))


def firmware_command(script_path, forward=()):
    """The command that runs a script file on the firmware under test; on the
    device, `forward` lists the host's loopback ports the guest may reach."""
    if ON_DEVICE:
        cmd = [sys.executable, str(DEVICE_RUN), "--firmware", DEVICE_FIRMWARE, "--timeout", "300"]
        for port in forward:
            cmd += ["--forward", str(port)]
        return cmd + [str(script_path)]
    return [FIRMWARE, str(script_path)]


def pytest_report_header(config):
    return "firmware: %s" % (DEVICE_FIRMWARE + " (device, qemu)" if ON_DEVICE else FIRMWARE)


def pytest_configure(config):
    config.addinivalue_line("markers", "host_only: needs the host firmware (command line, files, threads)")
    config.addinivalue_line("markers", "brokers: runs once per broker of MQTT_BROKERS (mosquitto, aedes)")


def pytest_collection_modifyitems(config, items):
    if not ON_DEVICE:
        return
    skip = pytest.mark.skip(reason="needs a network, a terminal REPL or the host's command line")
    for item in items:
        if item.get_closest_marker("host_only") or HOST_ONLY_FIXTURES & set(item.fixturenames):
            item.add_marker(skip)


_PORTS_GIVEN = set()


def free_port():
    """A free loopback port, never one this process handed out before: the
    kernel may offer a port it just gave and that is not bound yet again (a
    broker's second listener would then fail on the first one's port)."""
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port not in _PORTS_GIVEN:
            _PORTS_GIVEN.add(port)
            return port


# --------------------------------------------------------------------------------------
# mosquitto


class BrokerProcess:
    """Process control shared by the brokers the tests start (mosquitto here,
    aedes in aedes_broker.py): `proc` is the running broker, `logfile` its log,
    `port` its plain MQTT listener on 127.0.0.1."""

    @property
    def url(self):
        return "tcp://127.0.0.1:%d" % self.port

    @property
    def host(self):
        return "127.0.0.1"

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        if self.proc is None or self.proc.poll() is not None:
            return
        if sig == signal.SIGTERM or sig == signal.SIGKILL:
            self.resume()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def restart(self):
        self.stop()
        self.start()

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()

    def log(self):
        try:
            return self.logfile.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class Broker(BrokerProcess):
    """A mosquitto process on 127.0.0.1:<port>; survives stop()/restart() on the same port."""

    kind = "mosquitto"

    def __init__(self, workdir, name="broker", password_file=None, extra_conf=""):
        self.dir = Path(workdir) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.conf = self.dir / "mosquitto.conf"
        self.logfile = self.dir / "mosquitto.log"
        lines = [
            "listener %d 127.0.0.1" % self.port,
            "persistence true",
            "persistence_location %s/" % self.dir,
            "max_inflight_messages 65534",
            # QoS 0 messages for an offline persistent peer are kept, so that the
            # peer's short absence during a broker restart does not lose them.
            "queue_qos0_messages true",
            "max_queued_messages 10000",
            "log_dest file %s" % self.logfile,
            "log_type all",
            "connection_messages true",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # otherwise it drops to `mosquitto` and cannot write tmp_path
        if password_file:
            lines += ["allow_anonymous false", "password_file %s" % password_file]
        else:
            lines.append("allow_anonymous true")
        if extra_conf:
            lines.append(extra_conf)
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc = None
        self.start()

    def start(self, timeout=10.0):
        assert self.proc is None or self.proc.poll() is not None
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "stderr.txt", "ab"),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mosquitto exited: %s" % (self.dir / "stderr.txt").read_text())
            # Wait for "running" in the log rather than probing the port (a probe is a client).
            if self.logfile.exists() and self.log().count("running") > self._runs:
                self._runs += 1
                return
            time.sleep(0.02)
        raise RuntimeError("mosquitto did not start")

    _runs = 0

    def clients(self):
        """Client ids of the connections the broker accepted, in order."""
        return re.findall(r"New client connected from \S+ as (\S+) ", self.log())


BROKER_KINDS = [k for k in os.environ.get("MQTT_BROKERS", "mosquitto,aedes").split(",") if k]


def pytest_generate_tests(metafunc):
    if "broker" in metafunc.fixturenames and metafunc.definition.get_closest_marker("brokers"):
        metafunc.parametrize("broker", BROKER_KINDS, indirect=True)


@pytest.fixture
def broker(request, tmp_path):
    kind = getattr(request, "param", "mosquitto")
    if kind == "aedes":
        from aedes_broker import AedesBroker   # (this file is also loaded as a plain module)
        b = AedesBroker(tmp_path)
    else:
        b = Broker(tmp_path)
    yield b
    b.kill()


AUTH_USER = "device"
AUTH_PASSWORD = "s3cret"


@pytest.fixture
def auth_broker(tmp_path):
    """mosquitto that only accepts AUTH_USER / AUTH_PASSWORD."""
    pw = tmp_path / "passwd"
    subprocess.run([MOSQUITTO_PASSWD, "-b", "-c", str(pw), AUTH_USER, AUTH_PASSWORD], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    b = Broker(tmp_path, name="auth_broker", password_file=pw)
    yield b
    b.kill()


# --------------------------------------------------------------------------------------
# the firmware

PRELUDE = r'''
import time
def wait_until(cond, ms=10000):
    t0 = time.ticks_ms()
    while not cond():
        if time.ticks_diff(time.ticks_ms(), t0) > ms:
            return False
        time.sleep_ms(10)
    return True
'''


def _script_text(script, vars):
    head = "".join("%s = %r\n" % (k, v) for k, v in (vars or {}).items())
    return head + PRELUDE + "\n" + script


class FwProc:
    """A running firmware process whose stdout lines are collected by a thread."""

    def __init__(self, args, env=None):
        self.started = time.monotonic()
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env, start_new_session=True)
        self.lines = []           # (monotonic time, text)
        self._q = queue.Queue()
        self._err = []
        self._t = threading.Thread(target=self._reader, daemon=True)
        self._t.start()
        self._te = threading.Thread(target=self._err_reader, daemon=True)
        self._te.start()
        self._seen = 0

    def _reader(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            item = (time.monotonic(), line)
            self.lines.append(item)
            self._q.put(item)
        self._q.put(None)

    def _err_reader(self):
        for raw in self.proc.stderr:
            self._err.append(raw.decode("utf-8", "replace"))

    @property
    def stdout(self):
        return "\n".join(l for _, l in self.lines)

    @property
    def stderr(self):
        return "".join(self._err)

    def expect(self, pattern, timeout=10.0):
        """Wait for the next stdout line matching `pattern`; returns (time, match)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                item = self._q.get(timeout=left)
            except queue.Empty:
                break
            if item is None:
                self._q.put(None)
                break
            m = rx.search(item[1])
            if m:
                return item[0], m
        raise AssertionError("firmware did not print /%s/ within %.1fs (exit %r)\nstdout:\n%s\nstderr:\n%s"
                             % (pattern, timeout, self.proc.poll(), self.stdout, self.stderr))

    def wait(self, timeout=10.0):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("firmware still running after %.1fs\nstdout:\n%s\nstderr:\n%s"
                                 % (timeout, self.stdout, self.stderr))
        self._t.join(2)
        self._te.join(2)
        return rc

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            if sig == signal.SIGKILL:
                self.proc.wait()


class _Runner:
    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.n = 0
        self.procs = []

    def _write(self, script, vars):
        self.n += 1
        path = self.tmp_path / ("fw_script_%d.py" % self.n)
        path.write_text(_script_text(script, vars))
        return path

    def _env(self, env):
        e = dict(os.environ)
        e.pop("MICROPYPATH", None)
        if env:
            e.update(env)
        return e

    def spawn(self, script, vars=None, env=None):
        forward = ()
        if ON_DEVICE:
            vars, forward = device_vars(vars)
        path = self._write(script, vars)
        p = FwProc(firmware_command(path, forward), env=self._env(env))
        self.procs.append(p)
        return p

    def run(self, script, vars=None, timeout=20.0, env=None):
        """Run a script to completion: (returncode, stdout, stderr). A timeout fails the test."""
        p = self.spawn(script, vars, env)
        try:
            rc = p.wait(timeout)
        except AssertionError:
            p.kill()
            raise
        return rc, p.stdout + ("\n" if p.lines else ""), p.stderr

    def cleanup(self):
        for p in self.procs:
            p.kill()


@pytest.fixture
def fw(tmp_path):
    r = _Runner(tmp_path)
    yield r
    r.cleanup()


@pytest.fixture
def run_fw(fw):
    """run_fw(script_text, vars={...}, timeout=20, env=None) -> (returncode, stdout, stderr)"""
    return fw.run


@pytest.fixture
def spawn_fw(fw):
    """spawn_fw(script_text, vars={...}) -> FwProc (expect(), wait(), kill(), lines)"""
    return fw.spawn


# --------------------------------------------------------------------------------------
# the peer client (paho-mqtt 2.x)


class Peer:
    def __init__(self, broker, client_id=None, clean_session=True):
        import paho.mqtt.client as paho
        self.paho = paho
        self.client_id = client_id or "peer-%d" % os.getpid()
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             clean_session=clean_session)
        self.c.max_inflight_messages_set(1000)
        self.c.reconnect_delay_set(1, 1)
        self.msgs = []        # paho MQTTMessage copies: (topic, payload, qos, retain, time)
        self.cond = threading.Condition()
        self.connects = 0
        self.subs = []
        self._subacks = {}
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        self.c.connect(broker.host, broker.port, keepalive=30)
        self.c.loop_start()
        self.wait_for(lambda: self.connects > 0, 10, "peer connect")

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        with self.cond:
            if not reason_code.is_failure:
                self.connects += 1
            self.cond.notify_all()

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.msgs.append((msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain), time.monotonic()))
            self.cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self.cond:
            self._subacks[mid] = [rc.value for rc in reason_codes]
            self.cond.notify_all()

    def wait_for(self, pred, timeout, what="condition"):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("peer: timeout waiting for %s (got %d messages: %r)"
                                         % (what, len(self.msgs), [m[:2] for m in self.msgs][:20]))
                self.cond.wait(min(left, 0.1))

    def subscribe(self, topic_filter, qos=2):
        rc, mid = self.c.subscribe(topic_filter, qos)
        assert rc == 0
        self.wait_for(lambda: mid in self._subacks, 10, "SUBACK")
        return self._subacks[mid]

    def publish(self, topic, payload, qos=0, retain=False, wait=True):
        info = self.c.publish(topic, payload, qos, retain)
        if wait:
            info.wait_for_publish(10)
            assert info.is_published(), "peer publish of %r did not complete" % topic
        return info

    def messages(self, topic_prefix=""):
        with self.cond:
            return [m for m in self.msgs if m[0].startswith(topic_prefix)]

    def wait_messages(self, n, timeout=10.0, topic_prefix=""):
        self.wait_for(lambda: len([m for m in self.msgs if m[0].startswith(topic_prefix)]) >= n,
                      timeout, "%d messages on %r" % (n, topic_prefix))
        return self.messages(topic_prefix)

    def close(self):
        try:
            self.c.disconnect()
        except Exception:
            pass
        self.c.loop_stop()


@pytest.fixture
def make_peer(request):
    peers = []

    def make(broker, client_id=None, clean_session=True):
        cid = client_id or "peer-%s-%d" % (re.sub(r"\W", "", request.node.name)[-30:], len(peers))
        p = Peer(broker, cid, clean_session)
        peers.append(p)
        return p

    yield make
    for p in peers:
        p.close()


@pytest.fixture
def peer(broker, make_peer):
    return make_peer(broker)


# --------------------------------------------------------------------------------------
# scripted fake broker (raw bytes), for what mosquitto cannot produce


class LoopbackServer:
    """A listening socket on a free loopback port and an accept loop in a daemon
    thread that hands each connection to `self._handle(conn)`: one at a time, or
    each in its own thread when `threaded`. close() ends the loop and every
    connection. The scripted servers of the test suites build on it."""

    threaded = False

    def __init__(self, backlog=16):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self._stop = False
        self._conns = []

    def start(self):
        self.t = threading.Thread(target=self._serve, daemon=True)
        self.t.start()

    def _serve(self):
        self.sock.settimeout(0.1)
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self._conns.append(c)
            if self.threaded:
                threading.Thread(target=self._handle, args=(c,), daemon=True).start()
            else:
                self._handle(c)

    def _handle(self, c):
        raise NotImplementedError

    def close(self):
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass
        for c in self._conns:
            try:
                c.close()
            except OSError:
                pass


class FakeBroker(LoopbackServer):
    """Accepts connections on a loopback port; for each CONNECT it answers `connack`
    (raw bytes, default: refused with code 4) and closes (close_after) or keeps the
    connection, recording every packet and answering with respond(packet) if given
    (bytes to send, None, or FakeBroker.CLOSE to close the connection at once)."""

    CLOSE = object()

    def __init__(self, connack=b"\x20\x02\x00\x04", close_after=True, respond=None):
        super().__init__(backlog=16)
        self.connack = connack
        self.close_after = close_after
        self.respond = respond    # close_after=False: respond(packet) -> bytes to send or None
        self.connections = []     # (monotonic time, first packet bytes)
        self.packets = []         # later packets (close_after=False)
        self.start()

    @property
    def url(self):
        return "tcp://127.0.0.1:%d" % self.port

    def _read_packet(self, c):
        hdr = c.recv(1)
        if not hdr:
            return None
        mult, length = 1, 0
        raw = hdr
        while True:
            b = c.recv(1)
            if not b:
                return None
            raw += b
            length += (b[0] & 0x7F) * mult
            mult *= 128
            if not b[0] & 0x80:
                break
        body = b""
        while len(body) < length:
            chunk = c.recv(length - len(body))
            if not chunk:
                return None
            body += chunk
        return raw + body

    def _handle(self, c):
        c.settimeout(5)
        try:
            pkt = self._read_packet(c)
        except OSError:
            pkt = None
        with self.lock:
            self.connections.append((time.monotonic(), pkt))
        if pkt and pkt[0] >> 4 == 1 and self.connack is not None:
            try:
                c.sendall(self.connack)
            except OSError:
                pass
        if self.close_after:
            try:
                time.sleep(0.05)
                c.close()
            except OSError:
                pass
            return
        # keep the connection: record every packet, answer with respond()
        c.settimeout(0.1)
        while not self._stop:
            try:
                pkt = self._read_packet(c)
            except socket.timeout:
                continue
            except OSError:
                break
            if pkt is None:
                break
            with self.lock:
                self.packets.append(pkt)
            if self.respond:
                answer = self.respond(pkt)
                if answer is self.CLOSE:
                    c.close()
                    break
                if answer:
                    try:
                        c.sendall(answer)
                    except OSError:
                        break


@pytest.fixture
def fake_broker():
    made = []

    def make(**kw):
        fb = FakeBroker(**kw)
        made.append(fb)
        return fb

    yield make
    for fb in made:
        fb.close()


# --------------------------------------------------------------------------------------
# the REPL through a pseudo-terminal


class Repl:
    PROMPT = ">>> "

    def __init__(self, env=None):
        self.master, slave = os.openpty()
        e = dict(os.environ)
        e.pop("MICROPYPATH", None)
        e["TERM"] = "dumb"
        if env:
            e.update(env)
        self.proc = subprocess.Popen([FIRMWARE], stdin=slave, stdout=slave, stderr=slave,
                                     env=e, start_new_session=True, close_fds=True)
        os.close(slave)
        self.buf = ""
        self.pos = 0   # everything before pos has been consumed by expect()
        self.expect(re.escape(self.PROMPT), 10)

    def _read(self, timeout):
        r, _, _ = select.select([self.master], [], [], timeout)
        if not r:
            return False
        try:
            data = os.read(self.master, 65536)
        except OSError:
            return False
        if not data:
            return False
        self.buf += data.decode("utf-8", "replace")
        return True

    def expect(self, pattern, timeout=5.0):
        """Wait until `pattern` appears in output after the last match; returns the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.buf, self.pos)
            if m:
                self.pos = m.end()
                return m
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                if time.monotonic() >= deadline or self.proc.poll() is not None:
                    raise AssertionError("REPL: /%s/ not seen within %.1fs; output:\n%s"
                                         % (pattern, timeout, self.buf))

    def send(self, text):
        os.write(self.master, text.encode())

    def line(self, text, timeout=5.0):
        """Type one line and wait for the next prompt; returns the output in between."""
        self.send(text + "\r")
        start = self.pos
        self.expect(r"\r\n" + re.escape(self.PROMPT), timeout)
        out = self.buf[start:self.pos]
        return out

    def close(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        try:
            os.close(self.master)
        except OSError:
            pass


@pytest.fixture
def repl():
    made = []

    def make(**kw):
        r = Repl(**kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()
