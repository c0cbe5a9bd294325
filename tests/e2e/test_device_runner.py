"""tools/device-run, the runner of the device firmware under qemu: exit
statuses, sys.argv, --timeout, and that killing the runner stops the guest at
once (tests of the will and of persistence rely on it). Only with
MQTT_TARGET=device."""
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import DEVICE_FIRMWARE, DEVICE_RUN, ON_DEVICE

pytestmark = pytest.mark.skipif(not ON_DEVICE, reason="the device runner (MQTT_TARGET=device)")


def device_run(tmp_path, script, *args, timeout=None):
    path = tmp_path / "script.py"
    path.write_text(script)
    cmd = [sys.executable, str(DEVICE_RUN), "--firmware", DEVICE_FIRMWARE]
    if timeout is not None:
        cmd += ["--timeout", str(timeout)]
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
