"""A scripted hostile MQTT broker speaking raw bytes (the one place a fake is right).

`Hostile(script)` listens on a loopback port; every accepted connection n (0, 1, ...) is
handed to `script(conn)` in its own thread. `conn` reads whole packets (`read()`,
`expect(type)`), sends raw bytes (`send()`), and records everything it received
(`conn.packets`: raw bytes of each packet, in order). `serve_normally(conn)` behaves like a
minimal well-behaved broker (CONNACK 0, SUBACK, PUBACK/PUBREC/PUBCOMP, PINGRESP) until the
client disconnects.
"""
import socket
import threading
import time

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14


def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def packet(byte0, body=b""):
    return bytes([byte0]) + varint(len(body)) + body


def connack(code=0, session_present=False):
    return bytes([0x20, 2, 1 if session_present else 0, code])


def ack(ptype, pid):
    return bytes([(ptype << 4) | (2 if ptype == PUBREL else 0), 2, pid >> 8, pid & 0xFF])


def publish(topic, payload=b"", qos=0, pid=None, dup=False, retain=False):
    if isinstance(topic, str):
        topic = topic.encode()
    if isinstance(payload, str):
        payload = payload.encode()
    body = len(topic).to_bytes(2, "big") + topic
    if qos:
        body += (pid or 1).to_bytes(2, "big")
    return packet(0x30 | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0), body + payload)


def suback(pid, codes):
    return packet(0x90, pid.to_bytes(2, "big") + bytes(codes))


class Packet:
    def __init__(self, raw, hdr_len):
        self.raw = raw
        self.byte0 = raw[0]
        self.type = raw[0] >> 4
        self.flags = raw[0] & 0x0F
        self.body = raw[hdr_len:]

    @property
    def pid(self):
        """Packet id of acks, SUBSCRIBE/UNSUBSCRIBE and QoS>0 PUBLISH."""
        if self.type == PUBLISH:
            tl = int.from_bytes(self.body[:2], "big")
            return int.from_bytes(self.body[2 + tl:4 + tl], "big") if self.flags & 0x06 else None
        return int.from_bytes(self.body[:2], "big")

    @property
    def topic(self):
        tl = int.from_bytes(self.body[:2], "big")
        return self.body[2:2 + tl].decode()

    def __repr__(self):
        return "<Packet %d flags %x %r>" % (self.type, self.flags, self.raw[:40])


class Conn:
    def __init__(self, hostile, sock, n):
        self.h = hostile
        self.sock = sock
        self.n = n
        self.t0 = time.monotonic()
        self.packets = []
        self.closed_by_peer = False
        self.buf = b""

    def _recv(self, timeout):
        self.sock.settimeout(max(0.001, timeout))
        try:
            d = self.sock.recv(65536)
        except socket.timeout:
            return None
        except OSError:
            d = b""
        if not d:
            self.closed_by_peer = True
            return b""
        self.buf += d
        return d

    def read_bytes(self, n, timeout=10.0):
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            d = self._recv(deadline - time.monotonic())
            if not d:
                return None
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read(self, timeout=10.0):
        """The next whole packet, or None (timeout or EOF)."""
        deadline = time.monotonic() + timeout
        while True:
            b = self.buf
            if len(b) >= 2:
                n, mult, i = 0, 1, 1
                while i < len(b) and i <= 4:
                    n += (b[i] & 0x7F) * mult
                    mult *= 128
                    i += 1
                    if not b[i - 1] & 0x80:
                        if len(b) >= i + n:
                            p = Packet(b[:i + n], i)
                            self.buf = b[i + n:]
                            self.packets.append(p)
                            return p
                        break
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            d = self._recv(left)
            if not d:
                if d == b"" or time.monotonic() >= deadline:
                    return None

    def expect(self, ptype, timeout=10.0, skip=(PINGREQ,)):
        deadline = time.monotonic() + timeout
        while True:
            p = self.read(deadline - time.monotonic())
            if p is None:
                raise AssertionError("conn %d: expected packet type %d, got EOF/timeout; received %r"
                                     % (self.n, ptype, self.packets))
            if p.type == ptype:
                return p
            if p.type == PINGREQ:
                self.send(bytes([0xD0, 0]))
            if p.type not in skip:
                raise AssertionError("conn %d: expected packet type %d, got %r" % (self.n, ptype, p))

    def send(self, data):
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def wait_closed(self, timeout=10.0):
        """Reads (and records) until the client closes; True if it did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.read(deadline - time.monotonic()) is None and self.closed_by_peer:
                return True
        return self.closed_by_peer

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def serve_normally(conn, session_present=False, handshake=True, timeout=30.0):
    """A minimal well-behaved broker until the client disconnects (or `timeout`);
    handshake=False: CONNECT/CONNACK already done."""
    if handshake:
        conn.expect(CONNECT)
        conn.send(connack(0, session_present))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = conn.read(deadline - time.monotonic())
        if p is None:
            return
        if p.type == SUBSCRIBE:
            # granted = requested qos of each filter
            b, i, codes = p.body, 2, []
            while i < len(b):
                tl = int.from_bytes(b[i:i + 2], "big")
                codes.append(b[i + 2 + tl])
                i += 3 + tl
            conn.send(suback(p.pid, codes))
        elif p.type == UNSUBSCRIBE:
            conn.send(ack(UNSUBACK, p.pid))
        elif p.type == PUBLISH:
            q = (p.flags >> 1) & 3
            if q == 1:
                conn.send(ack(PUBACK, p.pid))
            elif q == 2:
                conn.send(ack(PUBREC, p.pid))
        elif p.type == PUBREL:
            conn.send(ack(PUBCOMP, p.pid))
        elif p.type == PINGREQ:
            conn.send(bytes([0xD0, 0]))
        elif p.type == DISCONNECT:
            return


class Hostile:
    def __init__(self, script, wrap=None):
        self.script = script
        self.wrap = wrap
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.errors = []
        self.lock = threading.Lock()
        self._stop = False
        self.t = threading.Thread(target=self._serve, daemon=True)
        self.t.start()

    def url(self, scheme="tcp"):
        return "%s://127.0.0.1:%d" % (scheme, self.port)

    def _serve(self):
        n = 0
        while not self._stop:
            try:
                s, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if self.wrap is not None:
                s = self.wrap(s)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c = Conn(self, s, n)
            n += 1
            with self.lock:
                self.conns.append(c)
            threading.Thread(target=self._run, args=(c,), daemon=True).start()

    def _run(self, c):
        try:
            self.script(c)
        except Exception as e:
            import traceback
            with self.lock:
                self.errors.append("conn %d: %s" % (c.n, traceback.format_exc()))
        finally:
            if not getattr(c, "keep_open", False):
                c.close()

    def close(self):
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            for c in self.conns:
                c.close()
