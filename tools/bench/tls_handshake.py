#!/usr/bin/env python3
"""TLS handshake time of a firmware against a local mosquitto (median of N).

    tools/bench/tls_handshake.py [FIRMWARE ...]     (default: build/micropython)

Makes a CA and a server certificate (RSA 2048, subjectAltName DNS:localhost and
IP:127.0.0.1) with openssl, starts mosquitto with a TLS listener on 127.0.0.1,
then, for each firmware, measures N times (TLS_BENCH_N, default 20):
  - handshake: the `tls` module's wrap_socket() with the handshake on connect
    (TCP connect excluded), to localhost;
  - connect: the `mqtt` module's connect() to on_connect(0) over mqtts://localhost
    (TCP, TLS, CONNECT/CONNACK), a fresh client each time.
Prints the median, minimum and maximum of each, in milliseconds, and the
firmware's mbedtls version. A measurement, not a test: it asserts nothing.
"""
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
N = int(os.environ.get("TLS_BENCH_N", "20"))

FW_SCRIPT = r"""
import socket, time, tls, mqtt
HOST, PORT, N = %r, %d, %d
CA = open(%r).read()
print('VERSION', tls.MBEDTLS_VERSION)
ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
ctx.verify_mode = tls.CERT_REQUIRED
ctx.load_verify_locations(CA)
addr = socket.getaddrinfo(HOST, PORT)[0][-1]
for i in range(N):
    s = socket.socket()
    s.setsockopt(6, 1, 1)   # IPPROTO_TCP, TCP_NODELAY (as the mqtt module's socket)
    s.connect(addr)
    t0 = time.ticks_us()
    ss = ctx.wrap_socket(s, server_hostname=HOST)
    t1 = time.ticks_us()
    ss.close()
    print('HANDSHAKE', time.ticks_diff(t1, t0))
state = []
for i in range(N):
    state.clear()
    c = mqtt.MqttClient('mqtts://%%s:%%d' %% (HOST, PORT), 'bench-tls-%%d' %% i)
    t0 = time.ticks_us()
    c.connect(lambda rc, f: state.append((rc, time.ticks_us())), {'trust_store': CA})
    while not state:
        time.sleep_ms(0)
    rc, t1 = state[0]
    c.disconnect()
    print('CONNECT', time.ticks_diff(t1, t0) if rc == 0 else 'rc=%%d' %% rc)
"""


def ossl(d, *args):
    subprocess.run(["openssl"] + list(args), cwd=d, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_pki(d):
    ossl(d, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
         "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=bench CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    ossl(d, "req", "-newkey", "rsa:2048", "-nodes", "-sha256", "-keyout", "server.key",
         "-out", "server.csr", "-subj", "/CN=localhost")
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    ossl(d, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-days", "2", "-sha256", "-extfile", "server.ext", "-out", "server.pem")
    for f in d.iterdir():
        f.chmod(0o644)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mosquitto(d, port):
    conf = d / "mosquitto.conf"
    conf.write_text("listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\n"
                    "allow_anonymous true\npersistence false\n"
                    % (port, d / "ca.pem", d / "server.pem", d / "server.key"))
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    p = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            return p
        except OSError:
            time.sleep(0.05)
    p.kill()
    sys.exit("tls_handshake: mosquitto did not start")


def stats(vals):
    ms = [v / 1000 for v in vals]
    return "median %.2f ms (min %.2f, max %.2f, n=%d)" % (statistics.median(ms), min(ms), max(ms), len(ms))


def main():
    firmwares = sys.argv[1:] or [str(TOP / "build" / "micropython")]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        d.chmod(0o755)   # mosquitto may run as another user
        make_pki(d)
        port = free_port()
        broker = start_mosquitto(d, port)
        try:
            script = d / "bench.py"
            script.write_text(FW_SCRIPT % ("localhost", port, N, str(d / "ca.pem")))
            for fw in firmwares:
                out = subprocess.run([fw, str(script)], capture_output=True, text=True, timeout=300)
                if out.returncode != 0:
                    print("%s: failed\n%s%s" % (fw, out.stdout, out.stderr))
                    continue
                lines = [l.split() for l in out.stdout.splitlines()]
                version = " ".join(next(l[1:] for l in lines if l[0] == "VERSION"))
                hs = [int(l[1]) for l in lines if l[0] == "HANDSHAKE"]
                conn = [l[1] for l in lines if l[0] == "CONNECT"]
                print("%s (%s)" % (fw, version))
                print("  tls handshake:      " + stats(hs))
                ok = [int(c) for c in conn if c.isdigit()]
                if len(ok) == len(conn):
                    print("  mqtts connect->rc0: " + stats(ok))
                else:
                    print("  mqtts connect: failures %r" % [c for c in conn if not c.isdigit()])
        finally:
            broker.kill()
            broker.wait()


if __name__ == "__main__":
    main()
