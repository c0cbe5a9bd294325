"""Harness of the persistence suite (issue 16): the end-to-end harness of tests/e2e
(mosquitto `Broker`, the firmware runner, the paho `Peer`) through the reliability
suite's loader (tests/reliability/relharness.py), with a broker that keeps every queued
message for an absent persistent session.

tests/persistence is a package (__init__.py) so that this file is not imported under
the module name `conftest`, which tests/e2e uses for its own.
"""
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))

import relharness as rh  # noqa: E402
from relharness import e2e, assert_clean_stderr  # noqa: E402


@pytest.fixture
def broker(tmp_path):
    b = rh.Broker(tmp_path, name="broker", extra_conf=rh.BROKER_CONF)
    yield b
    b.kill()


@pytest.fixture
def make_peer(request):
    """make_peer(broker, client_id=None, clean_session=True) -> the e2e paho `Peer`."""
    peers = []

    def make(broker, client_id=None, clean_session=True):
        cid = client_id or "ppeer-%s-%d" % (re.sub(r"\W", "", request.node.name)[-30:], len(peers))
        p = e2e.Peer(broker, cid, clean_session)
        peers.append(p)
        return p

    yield make
    for p in peers:
        p.close()


@pytest.fixture
def peer(broker, make_peer):
    return make_peer(broker)


class CheckedRunner(e2e._Runner):
    """The e2e runner, plus a sanitizer check of every finished process's stderr."""

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
    """run_fw(script, vars={...}, timeout=20, env=None) -> (rc, stdout, stderr)."""
    def run(script, vars=None, timeout=20.0, env=None):
        rc, out, err = fw.run(script, vars, timeout, env)
        assert_clean_stderr(err)
        return rc, out, err
    return run


@pytest.fixture
def spawn_fw(fw):
    return fw.spawn
