"""Issue 6, hostile broker: a scripted fake broker (hostile.py) sends what no sane broker
sends. Each case ends in a clean negative on_connect (or the documented behaviour), a
reconnect about 1 s later, no crash, and bounded memory (gc.mem_free() after gc.collect()
before and after, measured in the firmware and printed). Plus byte-exact checks of the
client's own retransmissions across drops.

Each case runs CYCLES client lifetimes (create, connect, hostile connection, reconnect to
a well-behaved connection, disconnect, drop the object); the heap is measured before the
first cycle, after the first and after the last.
"""
import re
import time

import pytest

import hostile as H
from relharness import parse_kv, url_for

FW = r'''
import mqtt, gc, time
ev = []
def on_connect(rc, flags):
    ev.append((rc, time.ticks_ms()))
    print('CONNECT', rc, flags['session_present'], repr(mqtt.ErrorDescription(rc)))
def on_message(t, m):
    print('MSG', repr(t), len(m))
def on_publish(mid, rc):
    print('PUB', mid, rc)
def on_subscribe(mid, g):
    print('SUB', mid, g)
def cycle(k):
    global c
    ev.clear()
    c = mqtt.MqttClient(URL, 'hostile-%d' % k)
    c.on_message(on_message)
    c.on_publish(on_publish)
    c.on_subscribe(on_subscribe)
    t0 = time.ticks_ms()
    c.connect(on_connect, OPTS)
    c.subscribe(('h/#', 1))
    exec(ACTION)
    ok = wait_until(lambda: len(ev) >= NEVENTS, WAIT_MS)
    time.sleep_ms(SETTLE_MS)
    rcs = [e[0] for e in ev]
    gaps = [time.ticks_diff(ev[0][1], t0)] + [time.ticks_diff(ev[i][1], ev[i - 1][1]) for i in range(1, len(ev))]
    print('CYCLE', (k, ok, rcs, gaps, c.is_connected()))
    try:
        c.disconnect()
    except mqtt.MqttError as e:
        print('DISCONNECT-ERRNO', e.errno)
    c = None
gc.collect()
m0 = gc.mem_free()
cycle(0)
gc.collect()
m1 = gc.mem_free()
for k in range(1, CYCLES):
    cycle(k)
gc.collect()
m2 = gc.mem_free()
print('MEM', (m0, m1, m2))
'''

# Bytes a broker must never send (after CONNACK unless said otherwise).
LONG_TOPIC = "h/" + "t" * 255   # 257 bytes: above the documented 256


def bad_after_connack(data):
    def h(conn):
        conn.expect(H.CONNECT)
        conn.send(H.connack(0) + data)
        conn.wait_closed(5)
    return h


def bad_before_connack(data):
    def h(conn):
        conn.expect(H.CONNECT)
        conn.send(data + H.connack(0))
        conn.wait_closed(5)
    return h


def suback_with(codes_fn):
    def h(conn):
        conn.expect(H.CONNECT)
        conn.send(H.connack(0))
        p = conn.expect(H.SUBSCRIBE)
        conn.send(H.suback(p.pid, codes_fn(p)))
        conn.wait_closed(5)
    return h


def too_large_publish(conn):
    conn.expect(H.CONNECT)
    rem = 1 << 20   # total 1 + 3 + 2^20 > 1 MiB
    conn.send(H.connack(0) + bytes([0x30]) + H.varint(rem) + b"\x00\x03h/x" + b"z" * 1000)
    conn.wait_closed(5)


NEG_RECONNECT = [  # (id, handler of the bad connection, expected rcs of one cycle)
    ("connack_twice", bad_after_connack(H.connack(0)), [0, -1, 0]),
    ("connack_twice_later", bad_after_connack(b""), None),  # replaced below
    ("publish_before_connack", bad_before_connack(H.publish("h/x", b"1", 0)), [-1, 0]),
    ("publish_q1_before_connack", bad_before_connack(H.publish("h/x", b"1", 1, pid=3)), [-1, 0]),
    ("puback_before_connack", bad_before_connack(H.ack(H.PUBACK, 1)), [-1, 0]),
    ("suback_before_connack", bad_before_connack(H.suback(1, [0])), [-1, 0]),
    ("pingresp_before_connack", bad_before_connack(b"\xd0\x00"), [-1, 0]),
    ("pubrel_before_connack", bad_before_connack(H.ack(H.PUBREL, 1)), [-1, 0]),
    ("reserved_type_0", bad_after_connack(b"\x00\x00"), [0, -1, 0]),
    ("reserved_type_15", bad_after_connack(b"\xf0\x00"), [0, -1, 0]),
    ("reserved_type_0_before_connack", bad_before_connack(b"\x00\x00"), [-1, 0]),
    ("remaining_length_5_bytes", bad_after_connack(b"\x30\xff\xff\xff\xff\x01"), [0, -1, 0]),
    ("remaining_length_over_max", too_large_publish, [0, -1, 0]),
    ("topic_invalid_utf8", bad_after_connack(H.publish(b"h/\xff\xfe", b"x", 1, pid=5)), [0, -1, 0]),
    ("topic_overlong_utf8", bad_after_connack(H.publish(b"h/\xc0\xaf", b"x", 0)), [0, -1, 0]),
    ("topic_surrogate_utf8", bad_after_connack(H.publish(b"h/\xed\xa0\x80", b"x", 0)), [0, -1, 0]),
    ("topic_wildcard_plus", bad_after_connack(H.publish("h/+", b"x", 1, pid=5)), [0, -1, 0]),
    ("topic_wildcard_hash", bad_after_connack(H.publish("h/#", b"x", 2, pid=5)), [0, -1, 0]),
    ("topic_nul", bad_after_connack(H.publish(b"h/\x00x", b"x", 0)), [0, -1, 0]),
    ("topic_empty", bad_after_connack(H.publish(b"", b"x", 0)), [0, -1, 0]),
    ("topic_too_long", bad_after_connack(H.publish(LONG_TOPIC, b"x", 0)), [0, -1, 0]),
    ("topic_length_beyond_packet", bad_after_connack(H.packet(0x30, b"\x00\x09h/x")), [0, -1, 0]),
    ("publish_qos3", bad_after_connack(H.packet(0x36, b"\x00\x03h/x\x00\x01x")), [0, -1, 0]),
    ("publish_q1_pid0", bad_after_connack(H.publish("h/x", b"x", 1, pid=0) [:-3] + b"\x00\x00x"), [0, -1, 0]),
    ("pubrel_bad_flags", bad_after_connack(b"\x60\x02\x00\x01"), [0, -1, 0]),
    ("puback_bad_length", bad_after_connack(b"\x40\x03\x00\x01\x00"), [0, -1, 0]),
    ("connack_bad_length", bad_before_connack(b"\x20\x03\x00\x00\x00"), [-1, 0]),
    ("connack_unknown_code_6", lambda c: (c.expect(H.CONNECT), c.send(H.connack(6)), c.wait_closed(5)), [-1, 0]),
    ("suback_two_codes_for_one", suback_with(lambda p: [1, 1]), [0, -1, 0]),
    ("suback_no_codes", suback_with(lambda p: []), [0, -1, 0]),
    ("suback_reserved_code_3", suback_with(lambda p: [3]), [0, -1, 0]),
]
# the same, but the second CONNACK arrives in its own segment a little later
def _connack_later(conn):
    conn.expect(H.CONNECT)
    conn.send(H.connack(0))
    time.sleep(0.3)
    conn.send(H.connack(0))
    conn.wait_closed(5)
NEG_RECONNECT[1] = ("connack_twice_later", _connack_later, [0, -1, 0])
MULTI_CYCLE = {"connack_twice", "remaining_length_over_max", "topic_invalid_utf8", "suback_two_codes_for_one",
               "publish_before_connack"}


def neg(rcs):
    """API.md: a failed attempt or lost connection is `rc < 0` (the docs say -1; the module is
    gaining detailed codes): compare the sign, print the codes."""
    return [r if r >= 0 else -1 for r in rcs]


def check_descriptions(out):
    """Every code on_connect gives must be one ErrorDescription knows."""
    bad = re.findall(r"^CONNECT (-?\d+) \w+ 'unknown error'$", out, re.M)
    assert not bad, "on_connect codes without a description: %r" % bad


def run_case(run_fw, hostile, transport, wrap, handlers, expect, cycles=1, opts=None, action="",
             wait_ms=8000, settle_ms=300, timeout=60):
    """Runs the firmware cycles against a hostile broker whose connection n is served by
    handlers[n % len(handlers)]; returns (out, cycles [(k, ok, rcs, gaps, connected)], mem)."""
    hb = hostile(lambda conn: handlers[conn.n % len(handlers)](conn), wrap=wrap)
    rc, out, err = run_fw(FW, vars={"URL": url_for(transport, hb.port), "OPTS": opts or {},
                                    "ACTION": action, "NEVENTS": len(expect), "WAIT_MS": wait_ms,
                                    "SETTLE_MS": settle_ms, "CYCLES": cycles}, timeout=timeout)
    cyc = parse_kv(out, "CYCLE")
    mem = parse_kv(out, "MEM")
    print("\n  cycles %r\n  heap free before/after first/after last: %r" % (cyc, mem))
    assert rc == 0, "firmware exit %r (crash?)\n%s\n%s" % (rc, out, err)
    assert "Traceback" not in out + err, out + err
    assert not hb.errors, "hostile broker script: %s\nfirmware:\n%s" % ("\n".join(hb.errors), out)
    assert len(cyc) == cycles, out
    for k, ok, rcs, gaps, connected in cyc:
        assert neg(rcs) == expect, "cycle %d: on_connect rcs %r, expected %r\n%s" % (k, rcs, expect, out)
    check_descriptions(out)
    m0, m1, m2 = mem[0]
    # bounded memory: one client lifetime leaves at most a little behind (interned names,
    # module state), and further lifetimes nothing more
    assert m0 - m1 <= 2048, "heap: %d bytes not returned after one client lifetime" % (m0 - m1)
    assert m1 - m2 <= 512, "heap: %d bytes lost in %d more cycles" % (m1 - m2, cycles - 1)
    return out, cyc, hb


@pytest.mark.parametrize("case", NEG_RECONNECT, ids=[c[0] for c in NEG_RECONNECT])
def test_hostile_packet_gives_negative_on_connect_and_reconnect(case, run_fw, hostile, transport, transport_wrap):
    name, bad, expect = case
    # a few cases run several client lifetimes, to show the heap is steady
    cycles = 3 if name in MULTI_CYCLE else 1
    out, cyc, hb = run_case(run_fw, hostile, transport, transport_wrap, [bad, H.serve_normally], expect,
                            cycles=cycles)
    for k, ok, rcs, gaps, connected in cyc:
        # the reconnect follows the negative on_connect after ~1 s (the first retry delay)
        i = neg(rcs).index(-1)
        assert 800 <= gaps[i + 1] <= 2500, "cycle %d: reconnect after %d ms (gaps %r)" % (k, gaps[i + 1], gaps)
        assert connected, "cycle %d: not connected at the end" % k
    # nothing from the hostile packets reached on_message; the subscription was answered
    assert "MSG" not in out, out
    assert "SUB" in out


def test_connack_refused_is_permanent(run_fw, hostile, transport, transport_wrap):
    def refuse(conn):
        conn.expect(H.CONNECT)
        conn.send(H.connack(5))
        conn.wait_closed(5)
    out, cyc, hb = run_case(run_fw, hostile, transport, transport_wrap, [refuse], [5], settle_ms=2500)
    for k, ok, rcs, gaps, connected in cyc:
        assert rcs == [5] and not connected
    assert len(hb.conns) == len(cyc), "a refusal is permanent: one connection per cycle, got %d" % len(hb.conns)
    assert out.count("DISCONNECT-ERRNO -3") == len(cyc), "disconnect() after a refusal raises -3\n" + out


def test_unknown_packet_ids_are_harmless(run_fw, hostile, transport, transport_wrap):
    """PUBACK/PUBREC/PUBREL/PUBCOMP for ids the client never used: the connection stays up;
    PUBREL is answered with PUBCOMP (MQTT-4.3.3) and an unknown PUBREC with PUBREL (the
    engine's rule, src/proto/engine/inbound.rs); the session keeps working."""
    def h(conn):
        conn.expect(H.CONNECT)
        conn.send(H.connack(0) + H.ack(H.PUBACK, 0x1234) + H.ack(H.PUBREC, 0x2345)
                  + H.ack(H.PUBREL, 0x3456) + H.ack(H.PUBCOMP, 0x4567))
        H.serve_normally(conn, handshake=False)
    out, cyc, hb = run_case(run_fw, hostile, transport, transport_wrap, [h], [0],
                            action="c.publish('h/q1', 'a', 1); c.publish('h/q2', 'b', 2)", settle_ms=1500)
    for k, ok, rcs, gaps, connected in cyc:
        assert rcs == [0] and connected
    assert len(re.findall(r"^PUB \d+ 0$", out, re.M)) == 2 * len(cyc), out
    for conn in hb.conns:
        raws = [p.raw for p in conn.packets]
        assert H.ack(H.PUBCOMP, 0x3456) in raws, "no PUBCOMP for the unknown PUBREL: %r" % conn.packets
        assert H.ack(H.PUBREL, 0x2345) in raws, "no PUBREL for the unknown PUBREC: %r" % conn.packets


def test_broker_that_never_answers(run_fw, hostile, transport, transport_wrap):
    """No CONNACK: on_connect(-1) after the documented 10 s, then a retry ~1 s later."""
    def silent(conn):
        conn.expect(H.CONNECT)
        conn.wait_closed(20)
    out, cyc, hb = run_case(run_fw, hostile, transport, transport_wrap, [silent, H.serve_normally], [-1, 0],
                            cycles=1, wait_ms=20000, timeout=60)
    k, ok, rcs, gaps, connected = cyc[0]
    assert 9500 <= gaps[0] <= 12000, "CONNACK timeout after %d ms, documented 10 s" % gaps[0]
    assert 800 <= gaps[1] <= 2500, gaps
    assert hb.conns[0].closed_by_peer, "the client must close the unanswered connection"


def test_broker_that_closes_after_every_byte(run_fw, hostile, transport, transport_wrap):
    """Connection 0 closes after one byte of CONNECT, connection 1 after one byte of CONNACK;
    the client retries after 1 s, then 2 s, and connects the third time."""
    def one_byte_in(conn):
        conn.read_bytes(1, 10)
    def one_byte_out(conn):
        conn.expect(H.CONNECT)
        conn.send(b"\x20")
    out, cyc, hb = run_case(run_fw, hostile, transport, transport_wrap,
                            [one_byte_in, one_byte_out, H.serve_normally], [-1, -1, 0], wait_ms=10000)
    for k, ok, rcs, gaps, connected in cyc:
        assert 800 <= gaps[1] <= 2500 and 1800 <= gaps[2] <= 3500, "retry delays %r, expected ~1 s then ~2 s" % gaps


def test_incoming_publish_of_exactly_max_size_is_accepted(run_fw, hostile, transport, transport_wrap):
    """Boundary of the 1 MiB incoming limit: a PUBLISH whose whole packet is exactly 1 MiB is
    delivered; one byte more drops the connection (remaining_length_over_max above)."""
    total = 1 << 20
    topic = b"h/big"
    rem = total - 1 - 3
    payload_len = rem - 2 - len(topic)

    def h(conn):
        conn.expect(H.CONNECT)
        pkt = H.publish(topic, b"p" * payload_len, 0)
        assert len(pkt) == total
        conn.send(H.connack(0) + pkt)
        H.serve_normally(conn, handshake=False)

    def h_over(conn):
        conn.expect(H.CONNECT)
        pkt = H.publish(topic, b"p" * (payload_len + 1), 0)
        conn.send(H.connack(0) + pkt)
        conn.wait_closed(5)
    out, cyc, hb = run_case(run_fw, hostile, transport, transport_wrap, [h], [0], cycles=1, settle_ms=2000)
    assert "MSG 'h/big' %d" % payload_len in out, out
    out, cyc, hb = run_case(run_fw, hostile, transport, transport_wrap, [h_over, H.serve_normally], [0, -1, 0],
                            cycles=1)
    assert "MSG" not in out


# ---------------------------------------------------------------------------------------
# byte-exact retransmissions

RETX_FW = r'''
import mqtt, time
ev = []
done = {}
def on_connect(rc, flags):
    ev.append(rc)
    print('CONNECT', rc, flags['session_present'])
def on_publish(mid, rc):
    done[mid] = done.get(mid, 0) + 1
    print('PUB', mid, rc)
def on_message(t, m):
    print('MSG', repr(t), bytes(m))
c = mqtt.MqttClient(URL, 'retx')
c.on_publish(on_publish)
c.on_message(on_message)
c.connect(on_connect, {})
m1 = c.publish('r/1', 'one', 1)
m2 = c.publish('r/2', 'two', 2)
print('MIDS', (m1, m2))
ok = wait_until(lambda: len(done) == 2 and len(ev) >= NEVENTS, 20000)
time.sleep_ms(1000)
print('RESULT', (ok, ev, done))
c.disconnect()
'''


def test_retransmission_dup_and_pubrel_byte_exact(run_fw, hostile, transport, transport_wrap):
    """conn 0: the client publishes QoS 1 and QoS 2; the broker drops without acks.
    conn 1: the same PUBLISH packets again, byte for byte, except the DUP flag, same ids
    (one at a time after such a loss); QoS 1 acked, QoS 2 gets PUBREC, the client sends
    PUBREL; drop before PUBCOMP.
    conn 2: the client re-sends PUBREL (same id), not the PUBLISH; PUBCOMP completes it."""
    seen = {}

    def conn0(conn):
        p = conn.expect(H.CONNECT)
        assert p.body[7] & 0x02 == 0, "clean session must be off"
        conn.send(H.connack(0))
        seen["a"] = conn.expect(H.PUBLISH)
        seen["b"] = conn.expect(H.PUBLISH)
        time.sleep(0.2)

    def conn1(conn):
        conn.expect(H.CONNECT)
        conn.send(H.connack(0, session_present=True))
        # conn 0 ended right after the QoS 1 message with nothing acknowledged: this
        # connection sends one request at a time (docs/mqtt.rst, "Messages the broker
        # closes the connection on")
        a2 = conn.expect(H.PUBLISH)
        conn.send(H.ack(H.PUBACK, a2.pid))
        b2 = conn.expect(H.PUBLISH)
        seen["a2"], seen["b2"] = a2, b2
        conn.send(H.ack(H.PUBREC, b2.pid))
        seen["rel1"] = conn.expect(H.PUBREL)
        time.sleep(0.2)

    def conn2(conn):
        conn.expect(H.CONNECT)
        conn.send(H.connack(0, session_present=True))
        seen["rel2"] = conn.expect(H.PUBREL)
        # nothing else may come (the QoS 1 message was acked, the QoS 2 one released)
        extra = conn.read(0.7)
        seen["extra"] = extra
        conn.send(H.ack(H.PUBCOMP, seen["rel2"].pid))
        H.serve_normally(conn, handshake=False)

    handlers = [conn0, conn1, conn2]
    hb = hostile(lambda conn: handlers[min(conn.n, 2)](conn), wrap=transport_wrap)
    rc, out, err = run_fw(RETX_FW, vars={"URL": url_for(transport, hb.port), "NEVENTS": 5}, timeout=40)
    print(out)
    assert not hb.errors, "\n".join(hb.errors) + "\n" + out
    a, b, a2, b2 = seen["a"], seen["b"], seen["a2"], seen["b2"]
    print("conn0:", a.raw, b.raw)
    print("conn1:", a2.raw, b2.raw, seen["rel1"].raw)
    print("conn2:", seen["rel2"].raw, seen["extra"])
    assert a.byte0 == 0x32 and b.byte0 == 0x34, (a, b)
    assert a2.raw == bytes([a.byte0 | 0x08]) + a.raw[1:], "QoS 1 re-send: %r vs %r" % (a2.raw, a.raw)
    assert b2.raw == bytes([b.byte0 | 0x08]) + b.raw[1:], "QoS 2 re-send: %r vs %r" % (b2.raw, b.raw)
    assert seen["rel1"].raw == H.ack(H.PUBREL, b.pid)
    assert seen["rel2"].raw == H.ack(H.PUBREL, b.pid), "PUBREL re-sent after the second drop"
    assert seen["extra"] is None or seen["extra"].type == H.PINGREQ, seen["extra"]
    res = parse_kv(out, "RESULT")[0]
    mids = parse_kv(out, "MIDS")[0]
    assert res[0] and neg(res[1]) == [0, -1, 0, -1, 0], res
    assert res[2] == {mids[0]: 1, mids[1]: 1}, "on_publish exactly once per message: %r" % (res,)
    assert rc == 0


def test_incoming_qos2_redelivery_is_not_duplicated(run_fw, hostile, transport, transport_wrap):
    """The broker sends a QoS 2 PUBLISH, gets PUBREC, drops; after the reconnect (session
    present) it re-sends the PUBLISH with DUP: the client answers PUBREC again but does not
    deliver it twice; PUBREL -> PUBCOMP."""
    seen = {}

    def conn0(conn):
        conn.expect(H.CONNECT)
        conn.send(H.connack(0) + H.publish("r/in", b"once", 2, pid=77))
        seen["rec0"] = conn.expect(H.PUBREC, skip=(H.PINGREQ, H.PUBLISH, H.SUBSCRIBE))

    def conn1(conn):
        conn.expect(H.CONNECT)
        conn.send(H.connack(0, True) + H.publish("r/in", b"once", 2, pid=77, dup=True))
        seen["rec1"] = conn.expect(H.PUBREC, skip=(H.PINGREQ, H.PUBLISH, H.SUBSCRIBE))
        conn.send(H.ack(H.PUBREL, 77))
        seen["comp"] = conn.expect(H.PUBCOMP, skip=(H.PINGREQ, H.PUBLISH, H.SUBSCRIBE))
        H.serve_normally(conn, handshake=False)

    handlers = [conn0, conn1]
    hb = hostile(lambda conn: handlers[min(conn.n, 1)](conn), wrap=transport_wrap)
    rc, out, err = run_fw(RETX_FW.replace("m1 = c.publish('r/1', 'one', 1)\nm2 = c.publish('r/2', 'two', 2)",
                                          "m1 = m2 = 0\ndone = {1: 1, 2: 1}"),
                          vars={"URL": url_for(transport, hb.port), "NEVENTS": 3}, timeout=40)
    print(out)
    assert not hb.errors, "\n".join(hb.errors) + "\n" + out
    assert seen["rec0"].raw == seen["rec1"].raw == H.ack(H.PUBREC, 77)
    assert seen["comp"].raw == H.ack(H.PUBCOMP, 77)
    assert out.count("MSG 'r/in' b'once'") == 1, out
    assert rc == 0
