"""A fault-injecting TCP proxy for MQTT, loopback only (threads).

    client (firmware) --> Proxy(listen 127.0.0.1:port) --> upstream (mosquitto)

Each accepted connection opens a connection to the upstream port (refused when the
broker is down: the client's connection is then closed at once) and two pump threads.
The pumps parse the MQTT fixed headers going through (type, remaining length) so that
faults can be placed on packet boundaries or strictly inside a packet.

Faults:
- `drop_all(rst)`: close every connection now (FIN, or RST with rst=True);
- `arm(kind)`: a one-shot drop at the next place that fits `kind` (see KINDS);
- `halfopen()`: the current connections swallow everything in both directions and stay
  open (the client must notice by keep-alive);
- `delay` (seconds before each forwarded chunk) and `bytewise` (forward one byte per
  write, TCP_NODELAY) as attributes, for all connections, changeable at any time.

`wrap` (optional) wraps the accepted socket (e.g. an ssl.SSLContext.wrap_socket with
server_side=True) for transports other than plain TCP.
"""
import random
import socket
import threading
import time

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14
NAMES = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL",
         7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
         12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT"}

# kind: (direction, how). how: "mid" = cut strictly inside a packet; ("after", type) =
# forward through the end of a packet of that type then drop; ("before", type) = forward
# up to the start of a packet of that type (which is lost) then drop.
KINDS = {
    "mid_c2s": ("c2s", "mid"),
    "mid_s2c": ("s2c", "mid"),
    "after_pubrec": ("s2c", ("after", PUBREC)),     # client got PUBREC; its PUBREL is lost
    "before_pubrel": ("c2s", ("before", PUBREL)),   # client sent PUBREL; broker never sees it
    "after_pubrel": ("c2s", ("after", PUBREL)),     # broker got PUBREL; PUBCOMP probably lost
    "before_pubcomp": ("s2c", ("before", PUBCOMP)), # PUBCOMP lost
    "after_publish_c2s": ("c2s", ("after", PUBLISH)),  # PUBACK/PUBREC probably lost
    "after_publish_s2c": ("s2c", ("after", PUBLISH)),  # client's ack probably lost
    "before_puback_c2s": ("c2s", ("before", PUBACK)),  # client's PUBACK of an incoming msg lost
}


class Framer:
    """Incremental MQTT fixed-header parser over one direction of a stream."""

    def __init__(self):
        self.state = "hdr"
        self.byte0 = 0
        self.mult = 1
        self.rem = 0
        self.nlen = 0
        self.left = 0
        self.start = 0      # index (in the current chunk) where the current packet started; -1: earlier
        self.bad = False

    def feed(self, data):
        """Returns [(start, end, type)] for packets that end in `data` (start -1: began in an
        earlier chunk) and the open packet's (start, type) or None."""
        done = []
        i, n = 0, len(data)
        while i < n:
            if self.state == "hdr":
                self.byte0 = data[i]
                self.start = i
                self.mult, self.rem, self.nlen = 1, 0, 0
                self.state = "len"
                i += 1
            elif self.state == "len":
                b = data[i]
                i += 1
                self.rem += (b & 0x7F) * self.mult
                self.mult *= 128
                self.nlen += 1
                if not b & 0x80 or self.nlen >= 4:
                    if b & 0x80:
                        self.bad = True
                    self.left = self.rem
                    if self.left == 0:
                        done.append((self.start, i, self.byte0 >> 4))
                        self.state = "hdr"
                    else:
                        self.state = "body"
            else:
                take = min(self.left, n - i)
                i += take
                self.left -= take
                if self.left == 0:
                    done.append((self.start, i, self.byte0 >> 4))
                    self.state = "hdr"
        opened = None if self.state == "hdr" else (self.start, self.byte0 >> 4)
        # the next chunk sees packets started here as "earlier"
        self.start = -1
        return done, opened


class Link:
    def __init__(self, proxy, client, upstream, n):
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.n = n
        self.blackhole = False
        self.closed = False
        self.lock = threading.Lock()
        self.alive = 2
        self.t = [threading.Thread(target=self._pump, args=(client, upstream, "c2s"), daemon=True),
                  threading.Thread(target=self._pump, args=(upstream, client, "s2c"), daemon=True)]

    def start(self):
        for t in self.t:
            t.start()

    def drop(self, rst=False):
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for s in (self.client, self.upstream):
            try:
                if rst:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _finish(self):
        with self.lock:
            self.alive -= 1
            last = self.alive == 0
        if last:
            self.drop()
            for s in (self.client, self.upstream):
                try:
                    s.close()
                except OSError:
                    pass
            self.proxy._gone(self)

    def _send(self, dst, data):
        if not data:
            return
        if self.proxy.delay:
            time.sleep(self.proxy.delay)
        if self.proxy.bytewise:
            for k in range(len(data)):
                dst.sendall(data[k:k + 1])
        else:
            dst.sendall(data)

    def _pump(self, src, dst, direction):
        fr = Framer()
        p = self.proxy
        try:
            while not self.closed:
                try:
                    data = src.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    break
                done, opened = fr.feed(data)
                with p.lock:
                    for _, _, t in done:
                        key = (direction, t)
                        p.packets[key] = p.packets.get(key, 0) + 1
                if self.blackhole:
                    p.swallowed += len(data)
                    continue
                cut = p._claim(direction, data, done, opened)
                if cut is not None:
                    k, kind = cut
                    self._send(dst, data[:k])
                    with p.lock:
                        p.drops[kind] = p.drops.get(kind, 0) + 1
                        p.log.append((time.monotonic(), kind, self.n))
                    self.drop(rst=p.rng.random() < 0.5)
                    break
                self._send(dst, data)
        except OSError:
            pass
        finally:
            self._finish()


class Proxy:
    def __init__(self, upstream_port, upstream_host="127.0.0.1", wrap=None, seed=None):
        self.upstream = (upstream_host, upstream_port)
        self.wrap = wrap
        self.rng = random.Random(seed)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.links = []
        self.delay = 0.0
        self.bytewise = False
        self.armed = None
        self.fired = threading.Event()
        self.drops = {}          # kind -> count (includes "now", "halfopen")
        self.packets = {}        # (direction, type) -> count
        self.log = []            # (time, kind, link number)
        self.accepted = 0
        self.refused = 0         # upstream not reachable (broker down)
        self.swallowed = 0
        self._stop = False
        self.t = threading.Thread(target=self._serve, daemon=True)
        self.t.start()

    def url(self, scheme="tcp"):
        return "%s://127.0.0.1:%d" % (scheme, self.port)

    # ---- control

    def arm(self, kind):
        """One-shot drop at the next place matching `kind` (a KINDS key)."""
        assert kind in KINDS, kind
        with self.lock:
            self.armed = kind
            self.fired.clear()

    def disarm(self):
        with self.lock:
            self.armed = None

    def drop_all(self, rst=False, kind="now"):
        with self.lock:
            links = list(self.links)
            if links:
                self.drops[kind] = self.drops.get(kind, 0) + 1
                self.log.append((time.monotonic(), kind, links[-1].n))
        for l in links:
            l.drop(rst)
        return len(links)

    def halfopen(self):
        """Current connections stop forwarding (both directions) but stay open."""
        with self.lock:
            links = list(self.links)
            if links:
                self.drops["halfopen"] = self.drops.get("halfopen", 0) + 1
                self.log.append((time.monotonic(), "halfopen", links[-1].n))
        for l in links:
            l.blackhole = True
        return len(links)

    def active(self):
        with self.lock:
            return [l for l in self.links if not l.closed and not l.blackhole]

    def total_drops(self):
        with self.lock:
            return sum(self.drops.values())

    def close(self):
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            links = list(self.links)
        for l in links:
            l.drop()

    # ---- internals

    def _claim(self, direction, data, done, opened):
        kind = self.armed
        if kind is None:
            return None
        want_dir, how = KINDS[kind]
        if want_dir != direction:
            return None
        k = None
        if how == "mid":
            bounds = {0, len(data)}
            for s, e, _ in done:
                bounds.add(e)
                if s >= 0:
                    bounds.add(s)
            if opened is not None and opened[0] >= 0:
                bounds.add(opened[0])
            inside = [i for i in range(1, len(data)) if i not in bounds]
            if len(inside) > 4096:
                inside = self.rng.sample(inside, 64)
            if inside:
                k = self.rng.choice(inside)
        else:
            where, t = how
            for s, e, pt in done:
                if pt == t and (where == "after" or s >= 0):
                    k = e if where == "after" else s
                    break
            else:
                if where == "before" and opened is not None and opened[1] == t and opened[0] >= 0:
                    k = opened[0]
        if k is None:
            return None
        with self.lock:
            if self.armed != kind:
                return None
            self.armed = None
        self.fired.set()
        return k, kind

    def _gone(self, link):
        with self.lock:
            if link in self.links:
                self.links.remove(link)

    def _serve(self):
        n = 0
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if self.wrap is not None:
                try:
                    c = self.wrap(c)
                except OSError:
                    c.close()
                    continue
            try:
                u = socket.create_connection(self.upstream, timeout=2)
            except OSError:
                self.refused += 1
                c.close()
                continue
            for s in (c, u):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(0.2)
            n += 1
            self.accepted += 1
            l = Link(self, c, u, n)
            with self.lock:
                self.links.append(l)
            l.start()
