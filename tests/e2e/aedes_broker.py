"""aedes (Node.js) as a second broker for the end-to-end tests, with the interface of
conftest.Broker (mosquitto): port, url, host, start(), stop(), restart(), pause(),
resume(), kill(), log(), clients().

The broker is tests/brokers/aedes/server.js, pinned by its package-lock.json; `make test`
installs it with `npm ci` (and so does `ensure_installed()` when it is missing). Its
sessions, retained messages and in-flight QoS 1/2 state live in a LevelDB folder
(aedes-persistence-level) that survives stop()/start(), like mosquitto's persistence file.
"""
import json
import os
import re
import subprocess
import time
from pathlib import Path

AEDES_DIR = Path(__file__).resolve().parents[1] / "brokers" / "aedes"
NODE = os.environ.get("NODE", "node")
NPM = os.environ.get("NPM", "npm")


def ensure_installed():
    if not (AEDES_DIR / "node_modules" / "aedes" / "package.json").exists():
        subprocess.run([NPM, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=AEDES_DIR, check=True,
                       stdout=subprocess.DEVNULL)


from conftest import BrokerProcess, free_port  # noqa: E402 (conftest imports this module lazily)


class AedesBroker(BrokerProcess):
    """An aedes process on 127.0.0.1:<port>; survives stop()/restart() on the same port
    with its sessions."""

    kind = "aedes"

    def __init__(self, workdir, name="aedes"):
        ensure_installed()
        self.dir = Path(workdir) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.data = self.dir / "db"
        self.logfile = self.dir / "aedes.log"
        self.proc = None
        self._runs = 0
        self.start()

    def start(self, timeout=20.0):
        assert self.proc is None or self.proc.poll() is not None
        with open(self.logfile, "ab") as log:
            self.proc = subprocess.Popen(
                [NODE, str(AEDES_DIR / "server.js"), str(self.port), str(self.data)],
                stdout=log, stderr=subprocess.STDOUT, cwd=AEDES_DIR)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("aedes exited:\n%s" % self.log())
            if self.log().count("running on") > self._runs:
                self._runs += 1
                return
            time.sleep(0.02)
        raise RuntimeError("aedes did not start:\n%s" % self.log())

    def clients(self):
        """Client ids of the connections the broker accepted, in order."""
        return re.findall(r"^client connected: (\S+)$", self.log(), re.M)

    def published(self, client_id):
        """[(topic, payload bytes, qos)] of the messages `client_id` published, in the order
        aedes routed them (QoS 1 after its PUBACK, QoS 2 before its PUBREC); payloads up to
        64 bytes."""
        return [(t, json.loads(p).encode("latin-1"), int(q)) for q, t, p in re.findall(
            r"^published: %s (\d) (\S+) (\".*\")$" % re.escape(client_id), self.log(), re.M)]
