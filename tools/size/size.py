#!/usr/bin/env python3
"""`make size`: the module's footprint, printed as a table and written to
build/size/results.md and build/size/results.json.

- text, data and bss of every firmware pair given with --pair
  NAME:WITH_MODULE:WITHOUT_MODULE (a pair whose files are missing is left
  out, so the device columns appear once the device build exists), and the
  difference, which is what the module costs;
- the Rust core's own object (--core-obj NAME:PATH, optional, repeatable), as
  much of it as a --gc-sections link keeps (tools/size/attribute.py);
- the heap per client (plain, TLS, WebSocket, and WebSocket over TLS) and per
  received message, measured by tools/size/heap.py on each firmware that can
  run here (--run NAME:FIRMWARE) against a private mosquitto on 127.0.0.1
  with certificates made for the run.
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import attribute  # noqa: E402


def section_sizes(path, size_tool):
    out = subprocess.run([size_tool, "-B", "-d", str(path)], capture_output=True, text=True, check=True).stdout
    line = out.strip().splitlines()[-1].split()
    return {"text": int(line[0]), "data": int(line[1]), "bss": int(line[2])}


def size_tool_for(path):
    head = Path(path).read_bytes()[:20]
    # ELF e_machine 0x28 = ARM
    if len(head) >= 20 and head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 0x28:
        return shutil.which("arm-none-eabi-size") or "size"
    return "size"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_pki(d):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2", "-keyout", "ca.key",
            "-out", "ca.pem", "-subj", "/CN=size CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-sha256", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=localhost", cwd=d)
    (Path(d) / "server.ext").write_text("basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost\n"
                                        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-sha256", "-extfile", "server.ext", "-out", "server.pem", cwd=d)
    for f in Path(d).iterdir():
        f.chmod(0o644)


class Broker:
    """mosquitto on 127.0.0.1 with plain, TLS, ws and wss listeners."""

    def __init__(self, d):
        self.ports = {k: free_port() for k in ("tcp", "tls", "ws", "wss")}
        tls = ["cafile %s/ca.pem" % d, "certfile %s/server.pem" % d, "keyfile %s/server.key" % d]
        conf = ["persistence false", "allow_anonymous true", "max_inflight_messages 65534",
                "max_queued_messages 100000", "log_dest file %s/mosquitto.log" % d,
                "listener %d 127.0.0.1" % self.ports["tcp"],
                "listener %d 127.0.0.1" % self.ports["tls"]] + tls + [
                "listener %d 127.0.0.1" % self.ports["ws"], "protocol websockets", "socket_domain ipv4",
                "listener %d 127.0.0.1" % self.ports["wss"], "protocol websockets", "socket_domain ipv4"] + tls
        if os.geteuid() == 0:
            conf.append("user root")
        (Path(d) / "mosquitto.conf").write_text("\n".join(conf) + "\n")
        self.proc = subprocess.Popen(["mosquitto", "-c", "%s/mosquitto.conf" % d],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.ports["wss"]), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def url(self, kind):
        scheme = {"tcp": "mqtt", "tls": "mqtts", "ws": "ws", "wss": "wss"}[kind]
        return "%s://localhost:%d" % (scheme, self.ports[kind])

    def stop(self):
        self.proc.terminate()
        self.proc.wait(5)


DEVICE_RUN = HERE.parent / "device-run"
GUEST_HOST = "10.0.2.100"


def run_heap(firmware, url, ca):
    if firmware.endswith(".elf"):
        # the device firmware under qemu: the broker's port forwarded to the guest
        port = url.rsplit(":", 1)[1]
        cmd = [sys.executable, str(DEVICE_RUN), "--firmware", firmware, "--timeout", "120",
               "--forward", port, str(HERE / "heap.py"), url.replace("localhost", GUEST_HOST), ca or "-"]
    else:
        cmd = [firmware, str(HERE / "heap.py"), url, ca or "-"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=150)
    for line in r.stdout.splitlines():
        if line.startswith("HEAP "):
            return json.loads(line[5:])
    raise RuntimeError("heap.py on %s (%s) failed:\n%s%s" % (firmware, url, r.stdout, r.stderr))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pair", action="append", default=[], help="NAME:WITH_MODULE:WITHOUT_MODULE")
    ap.add_argument("--core-obj", action="append", default=[], help="NAME:PATH of the Rust core's object")
    ap.add_argument("--run", action="append", default=[], help="NAME:FIRMWARE to measure the heap on")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res = {"firmware": {}, "core": {}, "heap": {}}

    for spec in a.pair:
        name, with_mod, without = spec.split(":")
        if not (Path(with_mod).is_file() and Path(without).is_file()):
            print("size: %s left out (%s or %s missing)" % (name, with_mod, without), file=sys.stderr)
            continue
        w = section_sizes(with_mod, size_tool_for(with_mod))
        wo = section_sizes(without, size_tool_for(without))
        res["firmware"][name] = {"with": w, "without": wo, "module": {k: w[k] - wo[k] for k in w}}
    for spec in a.core_obj:
        name, path = spec.split(":", 1)
        if Path(path).is_file():
            # what a --gc-sections link keeps of it (the firmware's own link may keep a
            # little less: inlined helpers shared with nothing else are exact, weak
            # memcpy & co. are replaced by the port's)
            text, data, bss = attribute.gc_linked(path)[:3]
            res["core"][name] = {"text": text, "data": data, "bss": bss}

    if a.run:
        d = tempfile.mkdtemp(prefix="mqtt-size-")
        try:
            make_pki(d)
            broker = Broker(d)
            try:
                for spec in a.run:
                    name, fw = spec.split(":", 1)
                    ca = "%s/ca.pem" % d
                    if fw.endswith(".elf"):
                        # the device firmware has neither TLS nor WebSocket
                        res["heap"][name] = {"plain": run_heap(fw, broker.url("tcp"), None)}
                        continue
                    res["heap"][name] = {
                        "plain": run_heap(fw, broker.url("tcp"), None),
                        "tls": run_heap(fw, broker.url("tls"), ca),
                        "ws": run_heap(fw, broker.url("ws"), None),
                        "wss": run_heap(fw, broker.url("wss"), ca),
                    }
            finally:
                broker.stop()
        finally:
            shutil.rmtree(d, ignore_errors=True)

    lines = ["| firmware | text | data | bss |", "|---|---|---|---|"]
    for name, f in res["firmware"].items():
        for label, key in (("with the module", "with"), ("without", "without"), ("**the module**", "module")):
            s = f[key]
            lines.append("| %s, %s | %d | %d | %d |" % (name, label, s["text"], s["data"], s["bss"]))
    for name, s in res["core"].items():
        lines.append("| %s, of which the Rust core | %d | %d | %d |" % (name, s["text"], s["data"], s["bss"]))
    lines.append("")
    if res["heap"]:
        names = list(res["heap"])
        lines.append("| heap, bytes (gc.mem_alloc) | " + " | ".join(names) + " |")
        lines.append("|---|" + "---|" * len(names))
        rows = [
            ("MqttClient object", "plain", "object"),
            ("connected idle client, mqtt://", "plain", "idle"),
            ("connected idle client, mqtts://", "tls", "idle"),
            ("connected idle client, ws://", "ws", "idle"),
            ("connected idle client, wss://", "wss", "idle"),
            ("  the same after one subscribe, mqtt://", "plain", "idle_sub"),
            ("per received message, mqtt:// (QoS 0, 32-byte payload)", "plain", "per_msg"),
            ("  of which topic str + payload bytearray", "plain", "ref_msg"),
            ("500 QoS 1 publishes queued while disconnected", "plain", "queued_burst"),
            ("  after they were delivered (vs. before)", "plain", "after_burst"),
        ]
        for label, kind, key in rows:
            vals = []
            for n in names:
                v = res["heap"][n].get(kind, {}).get(key)
                vals.append("%g" % v if v is not None else "")
            lines.append("| %s | %s |" % (label, " | ".join(vals)))
    text = "\n".join(lines) + "\n"
    print(text)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
