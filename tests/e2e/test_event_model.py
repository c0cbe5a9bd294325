"""Issue 4: the event model. Callbacks run while the script sleeps or computes, after
the script has returned, and at the idle REPL; callback exceptions are printed and the
client goes on; a client with no Python reference is not collected while connected."""
import re
import signal
import time

import pytest

from conftest import ON_DEVICE


def test_script_returns_after_connect_keeps_receiving(spawn_fw, broker, peer):
    p = spawn_fw("""
import mqtt, sys
got = []
def on_connect(rc, flags):
    print('CONNECT', rc)
    if rc == 0:
        c.subscribe(('ret/#', 1))
def on_message(t, m):
    got.append(bytes(m))
    print('MSG', t, bytes(m))
    if len(got) == 3:
        c.disconnect()
        print('DISCONNECT CALLED')
c = mqtt.MqttClient(URL, 'dev-returns')
c.on_message(on_message)
c.on_subscribe(lambda mid, g: print('SUBACK', g))
sys.atexit(lambda: print('USER ATEXIT', len(got)))
c.connect(on_connect, {'keep_alive': 10})
print('SCRIPT END')
""", vars={"URL": broker.url})
    p.expect("^SCRIPT END", 10)
    p.expect(r"^SUBACK \[1\]", 10)
    time.sleep(1.0)
    assert p.proc.poll() is None, "the firmware exited while its client was connected:\n" + p.stdout + p.stderr
    for i in range(3):
        peer.publish("ret/x", b"m%d" % i, 1)
    assert p.wait(10) == 0, p.stderr
    out = p.stdout
    assert re.findall(r"^MSG ret/x (.*)$", out, re.M) == ["b'm0'", "b'm1'", "b'm2'"], out
    assert "DISCONNECT CALLED" in out
    # the script's own sys.atexit function still runs, once, at the real exit
    assert re.findall(r"^USER ATEXIT.*$", out, re.M) == ["USER ATEXIT 3"], out


ROUND_TRIP = """
import mqtt
log = []
def on_connect(rc, flags):
    log.append(('connect', rc, time.ticks_ms()))
    if rc == 0:
        c.subscribe(('em/%s' % MODE, 2))
def on_subscribe(mid, granted):
    log.append(('suback', granted, time.ticks_ms()))
    c.publish('em/%s' % MODE, b'ping', 2)
def on_message(t, m):
    log.append(('message', bytes(m), time.ticks_ms()))
c = mqtt.MqttClient(URL, 'dev-em-' + MODE)
c.on_subscribe(on_subscribe)
c.on_message(on_message)
c.connect(on_connect, {})
t0 = time.ticks_ms()
if MODE == 'sleep':
    time.sleep(2)
elif MODE == 'sleep_ms':
    time.sleep_ms(2000)
elif MODE == 'sleep_us':
    time.sleep_us(2000000)
elif MODE == 'asyncio':
    import asyncio
    async def idle():
        while time.ticks_diff(time.ticks_ms(), t0) < 2000:
            await asyncio.sleep_ms(10)
    asyncio.run(idle())
elif MODE == 'select':
    # a wait the module cannot see: the waker thread interrupts it
    import select
    select.poll().poll(2000)
else:
    x = 0
    while time.ticks_diff(time.ticks_ms(), t0) < 2000:
        x += 1
t1 = time.ticks_ms()
print('KINDS', [e[0] for e in log])
print('DURING', all(time.ticks_diff(e[2], t1) <= 0 for e in log))
c.disconnect()
"""


@pytest.mark.parametrize("mode", ["sleep", "sleep_ms", "sleep_us", "asyncio", "select", "compute"])
def test_progress_during_one_blocking_call(run_fw, broker, mode):
    """connect -> subscribe -> publish -> receive, all inside one sleep / busy loop."""
    if mode == "asyncio" and ON_DEVICE:
        pytest.skip("the device firmware has no asyncio (no frozen modules)")
    rc, out, err = run_fw(ROUND_TRIP, vars={"URL": broker.url, "MODE": mode})
    assert rc == 0, out + err
    assert "KINDS ['connect', 'suback', 'message']" in out, out + err
    assert "DURING True" in out


def test_callback_at_idle_repl(repl, broker, peer):
    r = repl()
    r.line("import mqtt, time")
    r.line("c = mqtt.MqttClient(%r, 'dev-repl')" % broker.url)
    r.line("c.on_message(lambda t, m: print('GOT' + ':', t, bytes(m)))")
    r.line("c.on_subscribe(lambda mid, g: print('SUB' + 'ACK:', g))")
    # the callbacks may come before the next prompt is printed, or at the idle prompt
    out = r.line("c.connect(lambda rc, f: print('CONN' + 'ECT:', rc), {'keep_alive': 30})")
    if "CONNECT: 0" not in out:
        r.expect(r"CONNECT: 0", 3)
    out = r.line("c.subscribe(('repl/#', 1))")
    if "SUBACK: [1]" not in out:
        r.expect(r"SUBACK: \[1\]", 3)
    time.sleep(0.3)
    t0 = time.monotonic()
    peer.publish("repl/x", b"hello", 1)
    r.expect(r"GOT: repl/x b'hello'", 5)
    took = time.monotonic() - t0
    assert took < 1.5, "callback showed at the idle REPL only after %.2f s (want: within a second)" % took
    # the REPL still works afterwards
    out = r.line("print(1 + 1)")
    assert re.search(r"^2\r?$", out, re.M), out
    r.line("c.disconnect()")


def test_callback_exceptions_are_printed_and_client_goes_on(spawn_fw, broker, peer):
    p = spawn_fw("""
import mqtt
n = []
def on_connect(rc, flags):
    print('CONNECT', rc)
    c.subscribe(('ex/#', 1))
    raise ValueError('boom-connect')
def on_subscribe(mid, g):
    print('SUBACK', g)
    raise RuntimeError('boom-suback')
def on_message(t, m):
    n.append(bytes(m))
    print('MSG', bytes(m))
    if len(n) == 1:
        raise KeyError('boom-message')
    if len(n) == 3:
        c.publish('ex/own', b'x', 1)
def on_publish(mid, rc):
    print('PUBLISHED', rc)
    1 / 0
c = mqtt.MqttClient(URL, 'dev-exc')
c.on_message(on_message)
c.on_subscribe(on_subscribe)
c.on_publish(on_publish)
c.connect(on_connect, {})
wait_until(lambda: len(n) >= 4)
time.sleep_ms(200)
print('ALIVE', c.is_connected(), len(n))
c.disconnect()
""", vars={"URL": broker.url})
    p.expect(r"^SUBACK \[1\]", 10)
    for i in range(3):
        peer.publish("ex/peer", b"p%d" % i, 1)
    assert p.wait(15) == 0, p.stdout + p.stderr
    out, err = p.stdout, p.stderr
    both = out + err
    assert "ALIVE True 4" in out, both
    for word, exc in (("boom-connect", "ValueError"), ("boom-suback", "RuntimeError"),
                      ("boom-message", "KeyError"), ("divide", "ZeroDivisionError")):
        assert word in both and exc in both, "exception %s not printed:\n%s" % (exc, both)
    assert both.count("Traceback") >= 4


def test_unreferenced_client_survives_gc(spawn_fw, broker, peer):
    n = 40
    p = spawn_fw("""
import mqtt, gc
count = [0]
state = {}
def make():
    c = mqtt.MqttClient(URL, 'dev-gc')
    def on_connect(rc, flags):
        print('CONNECT', rc)
        if rc == 0:
            c.subscribe(('gc/in', 1))
    def on_message(t, m):
        count[0] += 1
        if count[0] == N:
            state['sent'] = c.publish('gc/back', b'done', 1)
    def on_publish(mid, rc):
        if mid == state.get('sent'):
            c.disconnect()
            state['disc'] = True
    c.on_message(on_message)
    c.on_publish(on_publish)
    c.on_subscribe(lambda mid, g: print('READY', g))
    c.connect(on_connect, {'keep_alive': 10})
make()   # no reference to the client is kept anywhere but in the module
t0 = time.ticks_ms()
while time.ticks_diff(time.ticks_ms(), t0) < 10000 and count[0] == 0:
    time.sleep_ms(5)
junk = None
for i in range(1000):
    junk = [bytearray(200) for _ in range(20)]
    gc.collect()
print('COLLECTED', count[0])
wait_until(lambda: 'disc' in state, 15000)
print('COUNT', count[0], 'DISC', 'disc' in state)
""", vars={"URL": broker.url, "N": n})
    p.expect(r"^READY \[1\]", 10)
    peer.subscribe("gc/back", 1)
    for i in range(n):
        peer.publish("gc/in", b"%d" % i, 1, wait=False)
        time.sleep(0.03)
    assert p.wait(30) == 0, p.stdout + p.stderr
    out = p.stdout
    m = re.search(r"^COLLECTED (\d+)$", out, re.M)
    assert m, out + p.stderr
    assert "COUNT %d DISC True" % n in out, out + p.stderr
    assert [x[1] for x in peer.wait_messages(1, 5, "gc/back")] == [b"done"]


@pytest.mark.host_only  # SIGINT to the host process; the device's Ctrl-C comes over its UART
def test_ctrl_c_keeps_active_client_then_second_ends(spawn_fw, broker, peer):
    """Documented: Ctrl-C (SIGINT) raises KeyboardInterrupt in the sleeping script; the
    firmware keeps running (and receiving) while the client is active; a second Ctrl-C
    ends it."""
    p = spawn_fw("""
import mqtt
def on_connect(rc, flags):
    print('CONNECT', rc)
    c.subscribe(('int/#', 1))
c = mqtt.MqttClient(URL, 'dev-sigint')
c.on_message(lambda t, m: print('MSG', t, bytes(m)))
c.on_subscribe(lambda mid, g: print('SUBACK', g))
c.connect(on_connect, {})
try:
    time.sleep(30)
except KeyboardInterrupt:
    print('INTERRUPTED')
    raise
""", vars={"URL": broker.url})
    p.expect(r"^SUBACK \[1\]", 10)
    p.proc.send_signal(signal.SIGINT)
    p.expect("^INTERRUPTED", 5)
    time.sleep(0.5)
    assert p.proc.poll() is None, "the firmware ended at the first Ctrl-C while a client was active"
    peer.publish("int/x", b"still here", 1)
    p.expect(r"^MSG int/x b'still here'", 5)
    p.proc.send_signal(signal.SIGINT)
    p.wait(5)
    assert "KeyboardInterrupt" in p.stdout + p.stderr
