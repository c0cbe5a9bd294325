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
import re
import sys

import pytest

from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))

import relharness as rh  # noqa: E402
from relharness import e2e, assert_clean_stderr, transports, url_for  # noqa: E402


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


@pytest.fixture
def make_peer(request):
    """make_peer(broker, client_id=None, clean_session=True) -> the e2e paho `Peer`."""
    peers = []

    def make(broker, client_id=None, clean_session=True):
        cid = client_id or "rpeer-%s-%d" % (re.sub(r"\W", "", request.node.name)[-30:], len(peers))
        p = e2e.Peer(broker, cid, clean_session)
        peers.append(p)
        return p

    yield make
    for p in peers:
        p.close()


# --------------------------------------------------------------------------------------
# the firmware


class CheckedRunner(e2e._Runner):
    """The e2e runner, plus a sanitizer check of every process's stderr."""

    def check(self):
        for p in self.procs:
            if p.proc.poll() is None:
                continue
            p._te.join(2)
            assert_clean_stderr(p.stderr, "firmware %s" % p.proc.args)


@pytest.fixture
def fw(tmp_path):
    r = CheckedRunner(tmp_path)
    yield r
    r.cleanup()
    r.check()


@pytest.fixture
def run_fw(fw):
    """run_fw(script, vars={...}, timeout=20, env=None) -> (rc, stdout, stderr); the stderr
    is checked for sanitizer reports here too, at once."""
    def run(script, vars=None, timeout=20.0, env=None):
        rc, out, err = fw.run(script, vars, timeout, env)
        assert_clean_stderr(err)
        return rc, out, err
    return run


@pytest.fixture
def spawn_fw(fw):
    return fw.spawn



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
