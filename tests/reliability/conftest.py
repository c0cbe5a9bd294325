"""Harness of the reliability and security suite (issue 6).

Reuses the end-to-end harness (tests/e2e/conftest.py: mosquitto `Broker`, the firmware
runner `_Runner`/`FwProc`, the `PRELUDE`, the paho `Peer`), loaded as a plain module by
relharness.py so that its fixtures are not registered twice, and adds:

- `broker`: mosquitto with persistence and `max_inflight_messages 65534`, unlimited queues
  (the peer and the firmware must not lose QoS 1/2 messages while they are away);
- `fw` / `run_fw` / `spawn_fw`: the firmware runner; every firmware process started by a
  test has its stderr checked for sanitizer reports at teardown ("ERROR: AddressSanitizer",
  "runtime error:"), whichever build MQTT_FIRMWARE points at;
- `make_proxy`: the fault-injecting proxy (faultproxy.py) in front of a broker;
- `hostile`: the scripted hostile broker (hostile.py);
- `transport`: the transport (URL scheme) the fault and hostile tests run over, a
  parameter: RELIABILITY_TRANSPORTS (comma separated, default "tcp"). Schemes whose server
  side this harness cannot provide yet (ssl, mqtts, ws, wss) are skipped when the firmware
  refuses them with MqttError -13, and fail (asking for a server side) once it does not.

tests/reliability is a package (__init__.py) so that this file is not imported under the
module name `conftest`, which tests/e2e uses for its own.
"""
import sys

import pytest

from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))

import relharness as rh  # noqa: E402
from relharness import transports, url_for  # noqa: E402
from relfixtures import fw, make_peer, run_fw, spawn_fw  # noqa: E402,F401


def pytest_report_header(config):
    return "reliability: firmware %s, transports %s" % (rh.FIRMWARE, ",".join(transports()))


# --------------------------------------------------------------------------------------
# brokers and peers


@pytest.fixture
def make_broker(tmp_path):
    made = []

    def make(name="broker"):
        b = rh.Broker(tmp_path, name=name, extra_conf=rh.BROKER_CONF)
        made.append(b)
        return b

    yield make
    for b in made:
        b.kill()


@pytest.fixture
def broker(make_broker):
    return make_broker()


# --------------------------------------------------------------------------------------
# transports


def pytest_generate_tests(metafunc):
    if "transport" in metafunc.fixturenames:
        metafunc.parametrize("transport", transports())


@pytest.fixture
def transport_wrap(transport, run_fw):
    """The server-side socket wrapper for `transport`; skips transports this harness cannot
    serve yet, after checking that the firmware refuses them as documented (-13)."""
    if transport in rh.SERVER_WRAPPERS:
        return rh.SERVER_WRAPPERS[transport]
    rc, out, err = run_fw("""
import mqtt
c = mqtt.MqttClient(URL, 'probe')
try:
    c.connect(None, {})
    print('CONNECT-STARTED')
    c.disconnect()
except mqtt.MqttError as e:
    print('ERRNO', e.errno)
""", vars={"URL": "%s://127.0.0.1:1" % transport})
    if "ERRNO -13" in out:
        pytest.skip("%s: not implemented in this firmware build (connect raises -13)" % transport)
    pytest.fail("transport %s is implemented by the firmware now: give the harness a server "
                "side for it in relharness.SERVER_WRAPPERS (output: %r)" % (transport, out))


# --------------------------------------------------------------------------------------
# proxy and hostile broker


@pytest.fixture
def make_proxy():
    import faultproxy
    made = []

    def make(upstream_port, **kw):
        p = faultproxy.Proxy(upstream_port, **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


@pytest.fixture
def hostile():
    import hostile as h
    made = []

    def make(script, **kw):
        hb = h.Hostile(script, **kw)
        made.append(hb)
        return hb

    yield make
    for hb in made:
        hb.close()
