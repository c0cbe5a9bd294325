"""tools/device-run, the runner of the device firmware under qemu: exit
statuses, sys.argv, --timeout, that killing the runner stops the guest at
once (tests of the will and of persistence rely on it), and --forward: the
guest reaches the forwarded loopback ports and nothing else. Only with
MQTT_TARGET=device."""
import os
import signal
import socket
import threading
import subprocess
import sys
import time

import pytest

from conftest import DEVICE_FIRMWARE, DEVICE_GUEST_HOST, DEVICE_RUN, ON_DEVICE

pytestmark = pytest.mark.skipif(not ON_DEVICE, reason="the device runner (MQTT_TARGET=device)")


def device_run(tmp_path, script, *args, timeout=None, forward=()):
    path = tmp_path / "script.py"
    path.write_text(script)
    cmd = [sys.executable, str(DEVICE_RUN), "--firmware", DEVICE_FIRMWARE]
    if timeout is not None:
        cmd += ["--timeout", str(timeout)]
    for port in forward:
        cmd += ["--forward", str(port)]
    p = subprocess.run(cmd + [str(path)] + list(args), capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def test_exit_status_and_argv(tmp_path):
    rc, out, _ = device_run(tmp_path, "import sys\nprint('ARGV', sys.argv[1:])\n", "host=10.0.2.100", "n=3")
    assert rc == 0, out
    assert "ARGV ['host=10.0.2.100', 'n=3']" in out


def test_uncaught_exception_is_status_1(tmp_path):
    rc, out, _ = device_run(tmp_path, "raise ValueError(5)\n")
    assert rc == 1
    assert "ValueError: 5" in out


def test_sys_exit_code(tmp_path):
    rc, out, _ = device_run(tmp_path, "import sys\nprint('bye')\nsys.exit(42)\n")
    assert rc == 42 and "bye" in out


def test_timeout_stops_a_hung_script(tmp_path):
    t0 = time.monotonic()
    rc, out, err = device_run(tmp_path, "import time\nprint('up')\nwhile True:\n    time.sleep(1)\n", timeout=2)
    assert rc == 124, (out, err)
    assert "up" in out
    assert time.monotonic() - t0 < 60


def qemu_running(marker):
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout
    return out.strip() != ""


def test_sigkill_of_the_runner_stops_the_guest_at_once(tmp_path):
    path = tmp_path / ("forever_%d.py" % os.getpid())
    path.write_text("import time\nprint('up')\nwhile True:\n    time.sleep(1)\n")
    p = subprocess.Popen([sys.executable, str(DEVICE_RUN), "--firmware", DEVICE_FIRMWARE, str(path)],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "up"
        assert qemu_running(path.name)
        p.send_signal(signal.SIGKILL)
        p.wait()
        deadline = time.monotonic() + 5
        while qemu_running(path.name) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not qemu_running(path.name), "qemu outlived its runner"
    finally:
        subprocess.run(["pkill", "-9", "-f", path.name])


class EchoServer:
    """A TCP server on 127.0.0.1 that answers each line with "echo:" + line."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            with c:
                data = b""
                while not data.endswith(b"\n"):
                    chunk = c.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                c.sendall(b"echo:" + data)

    def close(self):
        self.sock.close()


SOCKET_CLIENT = r"""
import socket, sys
args = dict(a.split('=', 1) for a in sys.argv[1:])
def talk(host, port, line):
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect(socket.getaddrinfo(host, port)[0][-1])
        s.send(line)
        data = b''
        while not data.endswith(b'\n'):
            chunk = s.recv(100)
            if not chunk:
                break
            data += chunk
        return data
    except OSError as e:
        return 'OSError'
    finally:
        s.close()
"""


def test_forward_reaches_the_loopback_port_with_host_in_argv(tmp_path):
    srv = EchoServer()
    try:
        rc, out, err = device_run(tmp_path, SOCKET_CLIENT + r"""
print('HOST', args['host'])
for i in range(3):
    print('GOT', talk(args['host'], int(args['port']), b'line%d\n' % i))
""", "port=%d" % srv.port, forward=[srv.port], timeout=60)
    finally:
        srv.close()
    assert rc == 0, out + err
    assert "HOST %s" % DEVICE_GUEST_HOST in out
    assert [l for l in out.splitlines() if l.startswith("GOT")] == [
        "GOT b'echo:line%d\\n'" % i for i in range(3)], out
    assert srv.accepted == 3


def test_guest_reaches_nothing_but_the_forwarded_ports(tmp_path):
    """A listening loopback port that is not forwarded, the same port through the
    gateway (the host's side of qemu's user network), and the forwarded port on
    another guest-side address all stay unreachable."""
    fwd, other = EchoServer(), EchoServer()
    try:
        rc, out, err = device_run(tmp_path, SOCKET_CLIENT + r"""
fwd, other = int(args['fwd']), int(args['other'])
print('OTHER', talk(args['host'], other, b'x\n'))
print('GATEWAY', talk('10.0.2.2', fwd, b'x\n'))
print('ELSEWHERE', talk('10.0.2.101', fwd, b'x\n'))
print('FWD', talk(args['host'], fwd, b'x\n'))
""", "fwd=%d" % fwd.port, "other=%d" % other.port, forward=[fwd.port], timeout=90)
    finally:
        fwd.close()
        other.close()
    assert rc == 0, out + err
    assert "OTHER OSError" in out, out
    assert "GATEWAY OSError" in out, out
    assert "ELSEWHERE OSError" in out, out
    assert "FWD b'echo:x\\n'" in out, out
    assert other.accepted == 0 and fwd.accepted == 1
