# A scripted MQTT 3.1.1 broker that runs inside the firmware, behind a
# `socket` module of its own (put in sys.modules before the client connects).
# MicroPython source, prepended to firmware scripts by tests that need a
# peer without a network: the device firmware has no network stack.
#
# Its sockets are io.IOBase streams, so the mqtt module drives them like real
# non-blocking sockets (readinto/write/ioctl poll). The broker answers as soon
# as the client has written a whole packet. NET holds what it saw and the
# knobs a test turns (refuse connections, drop the connection).
import io
import sys


class _Net:
    def __init__(self):
        self.conn = None        # the connected FakeSocket
        self.refuse = False     # connect() fails with ECONNREFUSED
        self.connects = 0
        self.subs = {}          # filter -> granted QoS
        self.seen = []          # packet names received, in order
        self.published = []     # (topic, payload, qos) received from the client
        self.pings = 0
        self.next_id = 1
        self.qos2_in = set()    # ids of QoS 2 PUBLISHes awaiting PUBREL

    def drop(self):
        """The broker closes the connection (the client sees end of stream)."""
        if self.conn is not None:
            self.conn.peer_closed = True
            self.conn = None


NET = _Net()


def _u16(b, i):
    return (b[i] << 8) | b[i + 1]


def _str(s):
    return bytes([len(s) >> 8, len(s) & 255]) + s


def _packet(first, body):
    n = len(body)
    out = bytearray([first])
    while True:
        d = n & 127
        n >>= 7
        out.append(d | (128 if n else 0))
        if not n:
            break
    return bytes(out) + body


def _matches(filt, topic):
    f = filt.split("/")
    t = topic.split("/")
    for i, part in enumerate(f):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(f) == len(t)


class FakeSocket(io.IOBase):
    def __init__(self):
        self.rx = bytearray()   # from the client, not parsed yet
        self.tx = bytearray()   # to the client
        self.closed = False
        self.peer_closed = False

    def setsockopt(self, *args):
        pass

    def setblocking(self, flag):
        pass

    def connect(self, addr):
        if NET.refuse:
            raise OSError(111)
        NET.connects += 1
        NET.conn = self

    def write(self, buf):
        if self.closed or self.peer_closed:
            raise OSError(104)
        self.rx += buf
        _serve(self)
        return len(buf)

    def readinto(self, buf):
        if not self.tx:
            return 0 if self.peer_closed else None
        n = min(len(buf), len(self.tx))
        buf[:n] = self.tx[:n]
        self.tx = self.tx[n:]
        return n

    def ioctl(self, req, arg):
        if req == 3:  # MP_STREAM_POLL
            ready = 0
            if arg & 1 and (self.tx or self.peer_closed):
                ready |= 1
            if arg & 4:
                ready |= 4
            return ready
        if req == 4:  # MP_STREAM_CLOSE
            self.closed = True
            if NET.conn is self:
                NET.conn = None
            return 0
        return -22  # EINVAL: no file descriptor


def _send(s, first, body):
    s.tx += _packet(first, body)


def _deliver(topic, payload, qos):
    s = NET.conn
    if s is None:
        return
    for filt, granted in NET.subs.items():
        if _matches(filt, topic):
            q = min(qos, granted)
            head = _str(topic.encode())
            if q:
                pid = NET.next_id
                NET.next_id = NET.next_id % 65535 + 1
                head += bytes([pid >> 8, pid & 255])
            _send(s, 0x30 | (q << 1), head + payload)
            return


def _handle(s, first, body):
    kind = first >> 4
    if kind == 1:
        NET.seen.append("CONNECT")
        _send(s, 0x20, b"\x00\x00")
    elif kind == 3:
        qos = (first >> 1) & 3
        tlen = _u16(body, 0)
        topic = bytes(body[2:2 + tlen]).decode()
        i = 2 + tlen
        pid = None
        if qos:
            pid = _u16(body, i)
            i += 2
        payload = bytes(body[i:])
        NET.seen.append("PUBLISH")
        dup = qos == 2 and pid in NET.qos2_in
        if qos == 1:
            _send(s, 0x40, body[2 + tlen:4 + tlen])
        elif qos == 2:
            NET.qos2_in.add(pid)
            _send(s, 0x50, body[2 + tlen:4 + tlen])
        if not dup:
            NET.published.append((topic, payload, qos))
            _deliver(topic, payload, qos)
    elif kind == 4 or kind == 7:
        NET.seen.append("PUBACK" if kind == 4 else "PUBCOMP")
    elif kind == 5:
        NET.seen.append("PUBREC")
        _send(s, 0x62, body[:2])
    elif kind == 6:
        NET.seen.append("PUBREL")
        NET.qos2_in.discard(_u16(body, 0))
        _send(s, 0x70, body[:2])
    elif kind == 8:
        NET.seen.append("SUBSCRIBE")
        i = 2
        granted = bytearray()
        while i < len(body):
            flen = _u16(body, i)
            filt = bytes(body[i + 2:i + 2 + flen]).decode()
            qos = body[i + 2 + flen]
            NET.subs[filt] = qos
            granted.append(qos)
            i += 3 + flen
        _send(s, 0x90, body[:2] + granted)
    elif kind == 10:
        NET.seen.append("UNSUBSCRIBE")
        i = 2
        while i < len(body):
            flen = _u16(body, i)
            NET.subs.pop(bytes(body[i + 2:i + 2 + flen]).decode(), None)
            i += 2 + flen
        _send(s, 0xB0, body[:2])
    elif kind == 12:
        NET.seen.append("PINGREQ")
        NET.pings += 1
        _send(s, 0xD0, b"")
    elif kind == 14:
        NET.seen.append("DISCONNECT")
        s.peer_closed = True


def _serve(s):
    while len(s.rx) >= 2:
        n = 0
        shift = 0
        i = 1
        while True:
            if i >= len(s.rx):
                return
            b = s.rx[i]
            n |= (b & 127) << shift
            shift += 7
            i += 1
            if not b & 128:
                break
        if len(s.rx) < i + n:
            return
        first = s.rx[0]
        body = s.rx[i:i + n]
        s.rx = s.rx[i + n:]
        _handle(s, first, body)


class _SocketModule:
    AF_INET = 2
    SOCK_STREAM = 1
    IPPROTO_TCP = 6
    TCP_NODELAY = 1

    @staticmethod
    def getaddrinfo(host, port, *args):
        return [(2, 1, 0, "", (host, port))]

    @staticmethod
    def socket(*args):
        return FakeSocket()


sys.modules["socket"] = _SocketModule
