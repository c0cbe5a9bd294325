"""Issue 5: examples/azure_iot_hub.py against the local mosquitto playing the hub.

mosquitto's TLS listener (certificate for DNS:localhost) with a password file holding
exactly one device: user name "{hub}/{device}/?api-version=2021-04-12" and, as password,
the SAS token this test computes with Python's hmac for the same key and expiry (passed
to the example through IOTHUB_SAS_EXPIRY): the connection is accepted only if the
example's token is byte-exact. A paho client (`FakeHub`) answers the twin requests the
way IoT Hub does and records the device's messages."""
import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import quote_plus

import paho.mqtt.client as paho
import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "azure_iot_hub.py"
MOSQUITTO_PASSWD = os.environ.get("MOSQUITTO_PASSWD", "/usr/bin/mosquitto_passwd")
HUB = "testhub.azure-devices.net"
DEVICE = "dl7450-test-device"
USERNAME = "%s/%s/?api-version=2021-04-12" % (HUB, DEVICE)
HUB_USER, HUB_PASSWORD = "fake-hub-service", "hub-secret"
EVENTS_TOPIC = "devices/%s/messages/events/$.ct=application%%2Fjson&$.ce=utf-8" % DEVICE
C2D_TOPIC = ("devices/%s/messages/devicebound/%%24.mid=c2d-1&%%24.to=%%2Fdevices%%2F%s%%2Fmessages"
             "%%2Fdevicebound&color=deep%%20blue" % (DEVICE, DEVICE))
TWIN = {"desired": {"telemetryInterval": 30, "$version": 7},
        "reported": {"firmware": "old", "$version": 1}}
DESIRED_PATCH = {"telemetryInterval": 15, "$version": 8}


def sas_token(resource, key_b64, expiry):
    """The reference: Microsoft's generate_sas_token sample (quote_plus, hmac, base64)."""
    sr = quote_plus(resource)
    sig = base64.b64encode(hmac.new(base64.b64decode(key_b64), ("%s\n%d" % (sr, expiry)).encode(),
                                    hashlib.sha256).digest()).decode()
    return "SharedAccessSignature sr=%s&sig=%s&se=%d" % (sr, quote_plus(sig), expiry)


class FakeHub:
    """Answers $iothub/twin/GET/?$rid=N with the twin on $iothub/twin/res/200/?$rid=N (after
    sending the device a cloud-to-device message and a desired-properties patch), and
    $iothub/twin/PATCH/properties/reported/?$rid=N with $iothub/twin/res/204/?$rid=N&$version=2;
    records every message from the device in `got` (topic, payload)."""

    def __init__(self, broker):
        self.got = []
        self.cond = threading.Condition()
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="fake-iothub")
        self.c.username_pw_set(HUB_USER, HUB_PASSWORD)
        self.ready = threading.Event()
        self.c.on_connect = lambda *a: self.c.subscribe(
            [("$iothub/twin/GET/#", 1), ("$iothub/twin/PATCH/properties/reported/#", 1),
             ("devices/+/messages/events/#", 1)])
        self.c.on_subscribe = lambda *a: self.ready.set()
        self.c.on_message = self._on_message
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()
        assert self.ready.wait(10), "fake hub did not subscribe"

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.got.append((msg.topic, bytes(msg.payload)))
            self.cond.notify_all()
        m = re.match(r"^\$iothub/twin/GET/\?\$rid=(\d+)$", msg.topic)
        if m:
            self.c.publish(C2D_TOPIC, b"hello device", 1)
            self.c.publish("$iothub/twin/PATCH/properties/desired/?$version=8", json.dumps(DESIRED_PATCH), 1)
            self.c.publish("$iothub/twin/res/200/?$rid=%s" % m.group(1), json.dumps(TWIN), 1)
        m = re.match(r"^\$iothub/twin/PATCH/properties/reported/\?\$rid=(\d+)$", msg.topic)
        if m:
            self.c.publish("$iothub/twin/res/204/?$rid=%s&$version=2" % m.group(1), b"", 1)

    def wait_for(self, n, timeout=10.0):
        """Wait until `n` messages arrived (the device's PUBACKs come from the broker, so
        the last events may reach the hub a little after the device is done)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.got) < n and time.monotonic() < deadline:
                self.cond.wait(0.1)
        return list(self.got)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def hub_setup(tmp_path, make_tbroker):
    """(broker, key, expiry, token): a broker whose password file accepts DEVICE with the
    SAS token of `key` and `expiry` only, and the fake hub's service user."""
    key = base64.b64encode(os.urandom(32)).decode()
    expiry = int(time.time()) + 3600
    pw = tmp_path / "passwd"
    token = sas_token("%s/devices/%s" % (HUB, DEVICE), key, expiry)
    subprocess.run([MOSQUITTO_PASSWD, "-b", "-c", str(pw), USERNAME, token], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    subprocess.run([MOSQUITTO_PASSWD, "-b", str(pw), HUB_USER, HUB_PASSWORD], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return make_tbroker("hub_broker", password_file=pw), key, expiry, token


@pytest.fixture
def run_example(run_fw_file):
    return lambda env, timeout=20: run_fw_file(EXAMPLE, env, timeout)


def example_env(broker, pki, key, expiry, scheme="mqtts"):
    env = {"IOTHUB_HOST": HUB, "IOTHUB_DEVICE_ID": DEVICE, "IOTHUB_DEVICE_KEY": key,
           "IOTHUB_SAS_EXPIRY": str(expiry), "IOTHUB_EVENTS": "3"}
    if scheme == "mqtts":
        env["IOTHUB_URL"] = "mqtts://localhost:%d" % broker.ports["tls"]
        env["IOTHUB_TRUST_STORE"] = pki.path("ca.pem")
    else:
        env["IOTHUB_URL"] = "tcp://localhost:%d" % broker.port
    return env


@pytest.mark.parametrize("scheme", ["mqtts", "tcp"])
def test_example_against_local_hub(hub_setup, pki, run_example, scheme):
    broker, key, expiry, token = hub_setup
    hub = FakeHub(broker)
    try:
        rc, out, err = run_example(example_env(broker, pki, key, expiry, scheme))
        hub.wait_for(5)   # GET, PATCH, 3 events
    finally:
        hub.close()
    assert rc == 0, out + err
    assert "Traceback" not in out + err, out + err
    # accepted with the password file's token, under the IoT Hub user name and client id
    assert re.search(r"New client connected from \S+ as %s \(.*u'%s'\)" % (re.escape(DEVICE), re.escape(USERNAME)),
                     broker.log()), broker.log()[-3000:]
    assert "connected to " in out and USERNAME in out, out
    # twin: GET with $rid 1, answered 200; desired properties and a C2D message seen
    topics = [t for t, _ in hub.got]
    assert topics[0] == "$iothub/twin/GET/?$rid=1", topics
    assert hub.got[0][1] == b"", hub.got[0]
    assert re.search(r"twin: 200 \(rid 1\) desired (.*) reported", out), out
    desired = json.loads(re.search(r"twin: 200 \(rid 1\) desired (.*) reported", out).group(1))
    assert desired == TWIN["desired"], desired
    assert "desired properties, version 8: " in out, out
    m = re.search(r"cloud-to-device message b'hello device' properties (.*)$", out, re.M)
    assert m, out
    assert json.loads(m.group(1)) == {"$.mid": "c2d-1", "$.to": "/devices/%s/messages/devicebound" % DEVICE,
                                      "color": "deep blue"}, m.group(1)
    # reported properties: PATCH with $rid 2, acknowledged 204 version 2
    assert topics[1] == "$iothub/twin/PATCH/properties/reported/?$rid=2", topics
    reported = json.loads(hub.got[1][1])
    assert set(reported) >= {"firmware", "telemetryInterval"}, reported
    # the patch (version 8) came before the GET answer (version 7): the newer one wins
    assert reported["telemetryInterval"] == 15, reported
    assert "desired properties version 7 ignored (have 8)" in out, out
    assert "twin: 204 (rid 2) reported properties accepted, version 2" in out, out
    # three device-to-cloud events, JSON, with the property bag in the topic
    events = [json.loads(p) for t, p in hub.got if t.startswith("devices/")]
    assert topics[2:] == [EVENTS_TOPIC] * 3, topics
    assert [e["seq"] for e in events] == [1, 2, 3] and all(e["deviceId"] == DEVICE for e in events), events
    assert len(re.findall(r"event \d acknowledged", out)) == 3, out
    assert "done: 3 events acknowledged; disconnecting" in out, out


def test_wrong_key_refused(hub_setup, pki, run_example):
    """A token signed with another key: the broker refuses (CONNACK 5 from mosquitto for a
    bad password), the example says so and exits (no retry after a refusal)."""
    broker, key, expiry, token = hub_setup
    other = base64.b64encode(os.urandom(32)).decode()
    rc, out, err = run_example(example_env(broker, pki, other, expiry))
    assert rc == 0, out + err
    assert re.search(r"connection refused: rc [45], ", out), out
    assert "check IOTHUB_DEVICE_ID, IOTHUB_DEVICE_KEY" in out, out


def test_sas_token_and_hmac(run_fw):
    """The example's HMAC-SHA256 on RFC 4231 vectors (short key, key > 64 bytes) and its
    SAS tokens against the Python reference, for several keys, resources and expiries."""
    cases = [("Jefe", None, b"what do ya want for nothing?"),
             (None, b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First"),
             (None, b"\x0b" * 20, b"Hi There"),
             (None, b"k" * 64, b"exactly one block"), (None, b"", b"")]
    vectors = [((k.encode() if k else kb), m) for k, kb, m in cases]
    toks = [("%s/devices/%s" % (HUB, DEVICE), base64.b64encode(os.urandom(32)).decode(), 1700000000 + i * 12345)
            for i in range(5)]
    toks.append(("weird hub.example/devices/dev+1=é", base64.b64encode(os.urandom(64)).decode(), 4102444800))
    rc, out, err = run_fw(r'''
import sys
sys.path.insert(0, EXAMPLES)
import azure_iot_hub as a
import binascii
for k, m in VECTORS:
    print('HMAC', binascii.hexlify(a.hmac_sha256(k, m)).decode())
for r, k, e in TOKENS:
    print('TOKEN', a.sas_token(r, k, e))
''', vars={"EXAMPLES": str(EXAMPLE.parent), "VECTORS": vectors, "TOKENS": toks})
    assert rc == 0, out + err
    got = re.findall(r"^HMAC (\w+)$", out, re.M)
    assert got == [hmac.new(k, m, hashlib.sha256).hexdigest() for k, m in vectors], out
    # RFC 4231 test cases 2 and 6, as published
    assert got[0] == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert got[1] == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    assert re.findall(r"^TOKEN (.*)$", out, re.M) == [sas_token(*t) for t in toks], out
