"""Harness of the persistence suite (issue 16): the end-to-end harness of tests/e2e
(mosquitto `Broker`, the firmware runner, the paho `Peer`) through the reliability
suite's loader (tests/reliability/relharness.py), with a broker that keeps every queued
message for an absent persistent session.

tests/persistence is a package (__init__.py) so that this file is not imported under
the module name `conftest`, which tests/e2e uses for its own.
"""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))

import relharness as rh  # noqa: E402
from relfixtures import fw, make_peer, run_fw, spawn_fw  # noqa: E402,F401


@pytest.fixture
def broker(tmp_path):
    b = rh.Broker(tmp_path, name="broker", extra_conf=rh.BROKER_CONF)
    yield b
    b.kill()


@pytest.fixture
def peer(broker, make_peer):
    return make_peer(broker)


