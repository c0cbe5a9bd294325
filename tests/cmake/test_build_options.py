"""Build options of the module: a firmware built with MQTT_WEBSOCKET=0 (make-based port)
refuses ws:// and wss:// URLs with MqttError -14 and still speaks MQTT over TCP."""
import os
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]
MICROPY_DIR = pathlib.Path(os.environ.get("MICROPY_DIR", ROOT / "micropython" / "src"))
BUILD = ROOT / "build" / "test-nows"   # kept between runs: make rebuilds what changed

SCRIPT = r'''
import mqtt
for u in ("ws://127.0.0.1:1883/mqtt", "WSS://localhost/", "ws://[::1]", "mqtt://127.0.0.1:1883", "mqtts://localhost"):
    try:
        mqtt.MqttClient(u, "x")
        print(u, "made")
    except mqtt.MqttError as e:
        print(u, "MqttError", e.errno)
'''


def test_firmware_without_websocket_refuses_ws_urls(tmp_path):
    r = subprocess.run(
        ["make", "-C", str(MICROPY_DIR / "ports" / "unix"),
         "VARIANT_DIR=%s" % (ROOT / "micropython" / "variants" / "dl7450"),
         "BUILD=%s" % BUILD, "USER_C_MODULES=%s" % (ROOT / "mpy_module"), "MQTT_WEBSOCKET=0",
         "-j%d" % (os.cpu_count() or 2)],
        capture_output=True, text=True, timeout=1200,
        env=dict(os.environ, MQTT_CARGO_TARGET_DIR=str(ROOT / "target" / "nows")))
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    script = tmp_path / "nows.py"
    script.write_text(SCRIPT)
    out = subprocess.run([str(BUILD / "micropython"), str(script)], capture_output=True, text=True,
                         timeout=30).stdout
    assert out.splitlines() == [
        "ws://127.0.0.1:1883/mqtt MqttError -14",
        "WSS://localhost/ MqttError -14",
        "ws://[::1] MqttError -14",
        "mqtt://127.0.0.1:1883 made",
        "mqtts://localhost made",
    ], out
