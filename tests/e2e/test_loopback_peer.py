"""The event model against a broker inside the firmware (mpy_loopback_broker.py):
no network needed, so these run on the host firmware and, with
MQTT_TARGET=device, on the device firmware under qemu, where the port's event
hook and idle wait drive the client (no threads, no signals).

Callbacks while the script sleeps and while it computes, after the script
returns, keep-alive from the deadlines alone, reconnecting after the broker
drops the connection, mqtt.poll(), exceptions in callbacks, sys.exit() from a
callback, and a client no variable refers to."""
import re
from pathlib import Path

import pytest

LOOPBACK = (Path(__file__).parent / "mpy_loopback_broker.py").read_text()


@pytest.fixture
def run_lb(run_fw):
    """Runs a script after the loopback broker's code; returns (rc, stdout)."""
    def run(script, timeout=60.0):
        rc, out, err = run_fw(LOOPBACK + "\n" + script, timeout=timeout)
        return rc, out + err
    return run


def lines(out, prefix):
    return [l for l in out.splitlines() if l.startswith(prefix)]


def test_qos_0_1_2_round_trips(run_lb):
    rc, out = run_lb("""
import mqtt
c = mqtt.MqttClient("mqtt://loopback", "dev-rt")
got = []
done = []
def on_connect(rc, flags):
    print("CONNECT", rc, flags["session_present"])
    if rc == 0:
        c.subscribe([("rt/#", mqtt.QOS2)])
def on_subscribe(mid, granted):
    print("SUBACK", granted)
    for q in (0, 1, 2):
        c.publish("rt/%d" % q, b"payload %d" % q, q)
def on_message(topic, msg):
    print("MSG", topic, bytes(msg), type(msg).__name__)
    got.append(topic)
def on_publish(mid, rc):
    print("PUB", mid, rc)
    done.append(mid)
    if len(done) == 3:
        c.disconnect()
c.on_subscribe(on_subscribe)
c.on_message(on_message)
c.on_publish(on_publish)
c.connect(on_connect)
""")
    assert rc == 0, out
    assert lines(out, "CONNECT") == ["CONNECT 0 False"]
    assert lines(out, "SUBACK") == ["SUBACK [2]"]
    assert sorted(lines(out, "MSG")) == [
        "MSG rt/0 b'payload 0' bytearray",
        "MSG rt/1 b'payload 1' bytearray",
        "MSG rt/2 b'payload 2' bytearray",
    ]
    pubs = lines(out, "PUB")
    assert len(pubs) == 3 and all(p.endswith(" 0") for p in pubs), out


def test_callbacks_run_while_the_script_sleeps_and_computes(run_lb):
    rc, out = run_lb("""
import mqtt, time
phase = "start"
c = mqtt.MqttClient("mqtt://loopback", "dev-phase")
def on_connect(rc, flags):
    print("CONNECT", rc, phase)
    c.subscribe(("ph/#", 1))
def on_subscribe(mid, granted):
    print("SUBACK", phase)
def on_message(topic, msg):
    print("MSG", bytes(msg).decode(), phase)
c.on_subscribe(on_subscribe)
c.on_message(on_message)
c.connect(on_connect)
phase = "sleeping"
time.sleep_ms(1000)
c.publish("ph/x", "while computing", 1)
phase = "computing"
t0 = time.ticks_ms()
n = 0
while time.ticks_diff(time.ticks_ms(), t0) < 1000:
    n += 1
phase = "done"
c.disconnect()
""")
    assert rc == 0, out
    assert "CONNECT 0 sleeping" in out, out
    assert "SUBACK sleeping" in out, out
    assert "MSG while computing computing" in out, out


def test_keep_alive_from_deadlines_alone(run_lb):
    """keep_alive 1: PINGREQs go out while the script computes and while it
    sleeps, with no traffic to wake the client."""
    rc, out = run_lb("""
import mqtt, time
c = mqtt.MqttClient("mqtt://loopback", "dev-ka")
c.connect(lambda rc, flags: print("CONNECT", rc), {"keep_alive": 1})
time.sleep_ms(200)
t0 = time.ticks_ms()
while time.ticks_diff(time.ticks_ms(), t0) < 3500:
    pass
print("PINGS computing", NET.pings)
before = NET.pings
time.sleep_ms(3500)
print("PINGS sleeping", NET.pings - before)
c.disconnect()
""")
    assert rc == 0, out
    computing = int(re.search(r"PINGS computing (\d+)", out).group(1))
    sleeping = int(re.search(r"PINGS sleeping (\d+)", out).group(1))
    # one PINGREQ per idle second, 3 possible in each phase: some in both
    # (loose: the emulated CPU may be slow on a shared machine)
    assert computing >= 1 and sleeping >= 1, out


def test_firmware_runs_the_client_after_the_script_returns(run_lb):
    rc, out = run_lb("""
import mqtt
c = mqtt.MqttClient("mqtt://loopback", "dev-after")
count = [0]
def on_connect(rc, flags):
    print("CONNECT", rc)
    c.subscribe(("after/#", 1))
def on_subscribe(mid, granted):
    c.publish("after/1", "one", 1)
def on_message(topic, msg):
    count[0] += 1
    print("MSG", count[0])
    if count[0] < 3:
        c.publish("after/1", "again", 1)
    else:
        c.disconnect()
        print("DISCONNECTED")
c.on_subscribe(on_subscribe)
c.on_message(on_message)
c.connect(on_connect)
print("SCRIPT RETURNS")
""")
    assert rc == 0, out
    order = [l for l in out.splitlines() if l.split()[0] in ("SCRIPT", "CONNECT", "MSG", "DISCONNECTED")]
    assert order == ["SCRIPT RETURNS", "CONNECT 0", "MSG 1", "MSG 2", "MSG 3", "DISCONNECTED"], out


def test_failed_attempts_retry_on_the_schedule_until_disconnect(run_lb):
    """The broker refuses TCP: on_connect(-21) after 0, 1, 2 s (then 4 s ...);
    the third failure disconnects and the firmware ends."""
    rc, out = run_lb("""
import mqtt, time
NET.refuse = True
c = mqtt.MqttClient("mqtt://loopback", "dev-retry")
t0 = time.ticks_ms()
fails = []
def on_connect(rc, flags):
    fails.append(time.ticks_diff(time.ticks_ms(), t0))
    print("CONNECT", rc, mqtt.ErrorDescription(rc))
    if len(fails) == 3:
        print("AT", fails)
        c.disconnect()
c.connect(on_connect)
""")
    assert rc == 0, out
    assert len(lines(out, "CONNECT -21")) == 3, out
    at = [int(x) for x in re.search(r"AT \[(.*)\]", out).group(1).split(",")]
    gaps = [b - a for a, b in zip(at, at[1:])]
    # 1 s then 2 s between attempts (loose: emulation and shared machines)
    assert 800 <= gaps[0] <= 1800 and 1800 <= gaps[1] <= 3200, at


def test_reconnect_after_the_broker_drops_and_queued_messages_follow(run_lb):
    rc, out = run_lb("""
import mqtt, time
c = mqtt.MqttClient("mqtt://loopback", "dev-drop")
state = {"n": 0}
def on_connect(rc, flags):
    state["n"] += 1
    print("CONNECT", rc)
def on_publish(mid, rc):
    print("PUB", mid, rc)
c.on_publish(on_publish)
c.connect(on_connect)
time.sleep_ms(300)
NET.drop()
time.sleep_ms(100)
mids = [c.publish("drop/q1", "during outage", 1), c.publish("drop/q2", "during outage", 2)]
print("CONNECTED NOW", c.is_connected())
time.sleep_ms(2500)
print("PUBLISHED", [(t, q) for t, p, q in NET.published])
print("MIDS", mids)
c.disconnect()
""")
    assert rc == 0, out
    connects = lines(out, "CONNECT ")
    # lost: the broker closed (-22), or the first write after it failed (-21)
    assert connects[0] == "CONNECT 0" and connects[1] in ("CONNECT -21", "CONNECT -22"), out
    assert connects[2] == "CONNECT 0", out
    assert "CONNECTED NOW False" in out
    assert "PUBLISHED [('drop/q1', 1), ('drop/q2', 2)]" in out, out
    mids = re.search(r"MIDS \[(\d+), (\d+)\]", out).groups()
    for m in mids:
        assert "PUB %s 0" % m in out, out


def test_mqtt_poll_drives_the_client(run_lb):
    rc, out = run_lb("""
import mqtt
c = mqtt.MqttClient("mqtt://loopback", "dev-poll")
c.connect(lambda rc, flags: print("CONNECT", rc))
n = 0
while not c.is_connected() and n < 100000:
    assert mqtt.poll() is None
    n += 1
print("CONNECTED", c.is_connected())
c.disconnect()
""")
    assert rc == 0, out
    assert "CONNECT 0" in out and "CONNECTED True" in out, out


def test_exception_in_a_callback_is_printed_and_the_client_goes_on(run_lb):
    rc, out = run_lb("""
import mqtt, time
c = mqtt.MqttClient("mqtt://loopback", "dev-exc")
n = [0]
def on_connect(rc, flags):
    c.subscribe(("exc/#", 0))
def on_subscribe(mid, granted):
    c.publish("exc/a", "1", 0)
def on_message(topic, msg):
    n[0] += 1
    if n[0] == 1:
        c.publish("exc/a", "2", 0)
        raise ValueError("callback failed")
    print("SECOND MESSAGE")
    c.disconnect()
c.on_subscribe(on_subscribe)
c.on_message(on_message)
c.connect(on_connect)
""")
    assert rc == 0, out
    assert "ValueError: callback failed" in out, out
    assert "SECOND MESSAGE" in out, out


def test_sys_exit_in_a_callback_ends_the_firmware_with_its_code(run_lb):
    rc, out = run_lb("""
import mqtt, sys
c = mqtt.MqttClient("mqtt://loopback", "dev-exit")
def on_connect(rc, flags):
    print("CONNECT", rc)
    sys.exit(3)
c.connect(on_connect)
print("SCRIPT RETURNS")
""")
    assert rc == 3, out
    assert "CONNECT 0" in out


def test_a_client_no_variable_refers_to_keeps_running(run_lb):
    rc, out = run_lb("""
import mqtt, gc, time
def start():
    c = mqtt.MqttClient("mqtt://loopback", "dev-gc")
    def on_connect(rc, flags):
        print("CONNECT", rc)
        c.subscribe(("gc/#", 1))
    def on_subscribe(mid, granted):
        c.publish("gc/x", bytes(2000), 1)
    def on_message(topic, msg):
        print("MSG", len(msg))
        c.disconnect()
    c.on_subscribe(on_subscribe)
    c.on_message(on_message)
    c.connect(on_connect)
start()
for i in range(5):
    junk = [bytearray(100) for j in range(50)]
    gc.collect()
    time.sleep_ms(50)
""")
    assert rc == 0, out
    assert "CONNECT 0" in out and "MSG 2000" in out, out
