"""Fixtures shared by the reliability and persistence suites: the paho peers and the
firmware runner whose processes have their stderr checked for sanitizer reports.
Their conftest modules import them."""
import re

import pytest

from relharness import e2e, assert_clean_stderr


@pytest.fixture
def make_peer(request):
    """make_peer(broker, client_id=None, clean_session=True) -> the e2e paho `Peer`."""
    peers = []

    def make(broker, client_id=None, clean_session=True):
        cid = client_id or "peer-%s-%d" % (re.sub(r"\W", "", request.node.name)[-30:], len(peers))
        p = e2e.Peer(broker, cid, clean_session)
        peers.append(p)
        return p

    yield make
    for p in peers:
        p.close()


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
