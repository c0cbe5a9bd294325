"""The persistence option: restore after a restart, torn and corrupt stores, a store of
another client id, unusable directories, failed writes, the store's bound, and the cost of
persistence off on the per-message path."""
import re
import resource
import signal
import struct
import subprocess
import time
import zlib

import pytest

from relharness import e2e, parse_kv

# Publishes while no connection was ever made; the process then ends (no client active).
OFFLINE = r'''
import mqtt
c = mqtt.MqttClient('mqtt://127.0.0.1:1', ID, persistence=DIR)
print('RESTORED', c.pending())
mids = [c.publish('store/t', 'm%d' % i, 1 + i % 2) for i in range(N)]
c.publish('store/q0', 'zero', 0)
print('MIDS', mids)
print('PENDING', c.pending())
'''

# Restores, connects, and reports every on_publish until nothing is pending.
DRAIN = r'''
import mqtt
done = []
c = mqtt.MqttClient(URL, ID, persistence=DIR)
print('RESTORED', c.pending())
c.on_publish(lambda mid, rc: done.append((mid, rc)))
c.connect(lambda rc, flags: None, {})
ok = wait_until(lambda: not c.pending(), 15000)
print('ONPUBLISH', sorted(done))
print('PENDING', c.pending())
c.disconnect()
'''

# Restores dev-store's store and prints what is pending.
RESTORE = "import mqtt\nprint('RESTORED', mqtt.MqttClient('mqtt://127.0.0.1:1', 'dev-store', persistence=DIR).pending())"

# Makes a client on a store that must be refused, and prints the error.
OPEN_ERR = r'''
import mqtt
try:
    mqtt.MqttClient('mqtt://127.0.0.1:1', ID, persistence=DIR)
    print('NO ERROR')
except mqtt.MqttError as e:
    print('ERR', e.args)
'''


def one(out, key):
    vals = parse_kv(out, key)
    assert vals, "no %s line in:\n%s" % (key, out)
    return vals[-1]


def offline(run_fw, store, n=5, cid="dev-store"):
    rc, out, err = run_fw(OFFLINE, {"ID": cid, "DIR": str(store), "N": n})
    assert rc == 0, out + err
    return out


def test_restored_messages_keep_their_mids_and_reach_the_peer_once(run_fw, broker, peer, tmp_path):
    store = tmp_path / "s"
    out = offline(run_fw, store)
    assert one(out, "MIDS") == [1, 2, 3, 4, 5]
    assert one(out, "PENDING") == [1, 2, 3, 4, 5, 6]   # the QoS 0 message too, in memory
    peer.subscribe("store/#", 2)
    rc, out, err = run_fw(DRAIN, {"URL": broker.url, "ID": "dev-store", "DIR": str(store)})
    assert rc == 0, out + err
    # QoS 0 is not stored: only the QoS 1/2 messages came back, with their mids
    assert one(out, "RESTORED") == [1, 2, 3, 4, 5]
    assert one(out, "ONPUBLISH") == [(m, 0) for m in [1, 2, 3, 4, 5]]
    assert one(out, "PENDING") == []
    got = sorted(m[1] for m in peer.wait_messages(5, 10, "store/"))
    assert got == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    # complete messages left the store; new mids continue after the restored ones
    out = offline(run_fw, store, n=1)
    assert one(out, "RESTORED") == []
    assert one(out, "MIDS") == [6]


def test_a_torn_last_record_is_dropped_and_the_rest_restored(run_fw, broker, peer, tmp_path):
    store = tmp_path / "s"
    offline(run_fw, store)
    log = store / "mqtt.log"
    data = log.read_bytes()
    for cut in (1, 5, 12):           # inside the last record: CRC, body, length
        log.write_bytes(data[:-cut])
        rc, out, err = run_fw(RESTORE, {"DIR": str(store)})
        assert rc == 0, out + err
        assert one(out, "RESTORED") == [1, 2, 3, 4], cut
    # the store was rewritten without the torn record; the rest is delivered
    assert len(log.read_bytes()) < len(data)
    peer.subscribe("store/#", 2)
    rc, out, err = run_fw(DRAIN, {"URL": broker.url, "ID": "dev-store", "DIR": str(store)})
    assert one(out, "ONPUBLISH") == [(m, 0) for m in [1, 2, 3, 4]]
    assert sorted(m[1] for m in peer.wait_messages(4, 10, "store/")) == [b"m0", b"m1", b"m2", b"m3"]


def test_a_corrupt_record_ends_the_replay_there(run_fw, tmp_path):
    store = tmp_path / "s"
    offline(run_fw, store)
    log = store / "mqtt.log"
    data = bytearray(log.read_bytes())
    # the third publish record's payload byte ('m2'): a bit flipped in place
    i = data.index(b"m2")
    data[i + 1] ^= 0x01
    log.write_bytes(bytes(data))
    rc, out, err = run_fw(RESTORE, {"DIR": str(store)})
    assert rc == 0, out + err
    assert one(out, "RESTORED") == [1, 2]
    # garbage that is not a store at all: an error, and the file is left alone
    log.write_bytes(b"\x0e\x00\x00\x00H" + b"NOTASTORE" * 3)
    rc, out, err = run_fw(OPEN_ERR, {"ID": "dev-store", "DIR": str(store)})
    assert one(out, "ERR") == (-2, "persistence error")
    assert log.read_bytes().startswith(b"\x0e\x00\x00\x00HNOTASTORE")


def test_a_store_of_another_client_id_is_an_error_and_stays_intact(run_fw, tmp_path):
    store = tmp_path / "s"
    offline(run_fw, store, cid="dev-a")
    before = (store / "mqtt.log").read_bytes()
    rc, out, err = run_fw(OPEN_ERR, {"ID": "dev-b", "DIR": str(store)})
    assert one(out, "ERR") == (-2, "persistence error")
    assert (store / "mqtt.log").read_bytes() == before
    out = offline(run_fw, store, n=0, cid="dev-a")
    assert one(out, "RESTORED") == [1, 2, 3, 4, 5]


def test_unusable_directories(run_fw, tmp_path):
    afile = tmp_path / "a-file"
    afile.write_text("x")
    rc, out, err = run_fw(r'''
import mqtt
for d in (FILE, MISSING_PARENT, ''):
    try:
        mqtt.MqttClient('mqtt://127.0.0.1:1', 'dev-x', persistence=d)
        print('NO ERROR', d)
    except mqtt.MqttError as e:
        print('ERR', e.errno)
for bad in (123, b'/tmp'):
    try:
        mqtt.MqttClient('mqtt://127.0.0.1:1', 'dev-x', persistence=bad)
        print('NO ERROR', bad)
    except TypeError:
        print('TYPEERROR')
c = mqtt.MqttClient('mqtt://127.0.0.1:1', 'dev-x', persistence=None)
c.publish('t', 'x', 1)
print('NONE', c.pending())
c = mqtt.MqttClient('mqtt://127.0.0.1:1', 'dev-x', persistence=NEW)
print('MADE', c.pending())
''', {"FILE": str(afile), "MISSING_PARENT": str(tmp_path / "no" / "such"), "NEW": str(tmp_path / "new")})
    assert rc == 0, out + err
    assert out.count("ERR -2") == 3 and out.count("TYPEERROR") == 2 and "NO ERROR" not in out, out
    assert one(out, "NONE") == [1]
    assert one(out, "MADE") == [] and (tmp_path / "new" / "mqtt.log").exists()


def test_a_failed_write_raises_minus_2_from_publish(fw, tmp_path):
    """The log cannot grow past 8 KiB (RLIMIT_FSIZE, SIGXFSZ ignored: the write fails with
    EFBIG): publish() raises MqttError -2 and the message is not kept; what returned before
    is restored after a restart."""
    store = tmp_path / "s"
    script = fw._write(r'''
import mqtt
c = mqtt.MqttClient('mqtt://127.0.0.1:1', 'dev-full', persistence=DIR)
print('RESTORED', c.pending())
mids = []
try:
    for i in range(1000):
        mids.append(c.publish('full/t', bytes(200), 1))
except mqtt.MqttError as e:
    print('ERR', e.args)
print('MIDS', mids)
print('PENDING', c.pending())
''', {"DIR": str(store)})

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    p = subprocess.run([e2e.FIRMWARE, str(script)], capture_output=True, timeout=30, preexec_fn=limited)
    out = p.stdout.decode()
    assert p.returncode == 0, out + p.stderr.decode()
    assert one(out, "ERR") == (-2, "persistence error")
    mids = one(out, "MIDS")
    assert 10 < len(mids) < 1000
    assert one(out, "PENDING") == mids
    p = subprocess.run([e2e.FIRMWARE, "-c", "import mqtt\nprint('RESTORED', mqtt.MqttClient('mqtt://127.0.0.1:1', "
                        "'dev-full', persistence=%r).pending())" % str(store)], capture_output=True, timeout=30)
    assert one(p.stdout.decode(), "RESTORED") == mids


def test_the_store_stays_bounded_while_messages_complete(run_fw, broker, tmp_path):
    store = tmp_path / "s"
    rc, out, err = run_fw(r'''
import mqtt, os
c = mqtt.MqttClient(URL, 'dev-bound', persistence=DIR)
c.connect(lambda rc, flags: None, {'max_buffered': 1000})
wait_until(c.is_connected)
biggest = 0
for i in range(3000):
    c.publish('bound/t', bytes(100), 1 + i % 2)
    if i % 100 == 0:
        biggest = max(biggest, os.stat(DIR + '/mqtt.log')[6])
wait_until(lambda: not c.pending(), 30000)
print('PENDING', c.pending())
print('BIGGEST', biggest)
c.disconnect()
''', {"URL": broker.url, "DIR": str(store)}, timeout=90)
    assert rc == 0, out + err
    assert one(out, "PENDING") == []
    # never more than three times the live state (at most the 1000 messages the client
    # may hold) plus the compaction slack (16 KiB)
    assert one(out, "BIGGEST") < 3 * 1000 * 130 + 16384
    assert (store / "mqtt.log").stat().st_size < 20000


HEAP = r'''
import mqtt, gc
c = mqtt.MqttClient(URL, 'dev-heap', **KW)
c.connect(None, {'max_buffered': 5000})
wait_until(c.is_connected)
topic, payload = 'heap/t', b'0123456789' * 10
for i in range(2100):
    c.publish(topic, payload, 1)
wait_until(lambda: not c.pending())
res = []
for rnd in range(5):
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    for i in range(500):
        c.publish(topic, payload, 1)
    b = gc.mem_alloc()
    gc.enable()
    res.append(b - a)
print('HEAP', res)
c.disconnect()
'''


def test_persistence_off_costs_no_heap_per_publish(run_fw, broker, tmp_path):
    """Heap allocated by 500 QoS 1 publishes (gc disabled) in 5 batches after a warm-up:
    with persistence off the batches' median is 0 bytes (a batch may meet a growth of the
    client's queue when the broker falls behind). With persistence on, the records are
    encoded in a buffer the client keeps; only the compactions allocate (the file objects
    of the new log), which the test prints."""
    rc, out, err = run_fw(HEAP.replace("**KW", ""), {"URL": broker.url}, timeout=60)
    assert rc == 0, out + err
    res = one(out, "HEAP")
    assert sorted(res)[2] == 0, res
    rc, out, err = run_fw(HEAP.replace("**KW", "persistence=DIR"), {"URL": broker.url, "DIR": str(tmp_path / "h")},
                          timeout=60)
    assert rc == 0, out + err
    print("persistence on, heap per batch of 500 publishes: %r" % one(out, "HEAP"))


def test_messages_on_the_wire_at_a_kill_are_resent_with_dup_and_their_ids(spawn_fw, run_fw, broker, peer, tmp_path):
    """The broker is frozen (SIGSTOP) while the client writes 20 QoS 1/2 messages, then the
    client is killed: the restarted client re-sends all 20 as PUBLISH with DUP=1 and the
    packet ids of the first run, and the peer gets each QoS 2 message exactly once."""
    store = str(tmp_path / "s")
    peer.subscribe("dup/#", 2)
    p = spawn_fw(r'''
import mqtt
c = mqtt.MqttClient(URL, 'dev-dup', persistence=DIR)
c.connect(lambda rc, flags: print('CONN', rc), {})
wait_until(c.is_connected)
print('READY')
wait_until(lambda: False, 1500)     # the test freezes the broker meanwhile
mids = [c.publish('dup/t', 'm%d' % i, 1 + i % 2) for i in range(20)]
print('MIDS', mids)
wait_until(lambda: False, 60000)
''', {"URL": broker.url, "DIR": store})
    p.expect(r"^READY", 20)
    broker.pause()
    try:
        p.expect(r"^MIDS", 20)
        time.sleep(0.3)
        p.kill()
    finally:
        broker.resume()
    mids = one(p.stdout, "MIDS")
    rc, out, err = run_fw(DRAIN, {"URL": broker.url, "ID": "dev-dup", "DIR": store})
    assert rc == 0, out + err
    assert one(out, "RESTORED") == mids
    assert one(out, "ONPUBLISH") == [(m, 0) for m in mids]
    peer.wait_messages(20, 10, "dup/")
    time.sleep(0.5)  # late duplicates, if any, would arrive now
    got = [m[1] for m in peer.messages("dup/")]
    assert {b"m%d" % i for i in range(20)} == set(got)
    qos2 = [g for g in got if int(g[1:]) % 2 == 1]
    assert len(qos2) == len(set(qos2)) == 10, got
    resent = {int(m) for m in re.findall(r"Received PUBLISH from dev-dup \(d1, q[12], r0, m(\d+),", broker.log())}
    assert resent == set(range(1, 21)), broker.log()[-3000:]


def record(kind, body):
    """A store record as the module writes it: length, kind, body, CRC-32."""
    framed = struct.pack("<I", len(body) + 1) + kind + body
    return framed + struct.pack("<I", zlib.crc32(framed))


def pub_record(mid, pid, qos, state, topic, payload):
    return record(b"P", struct.pack("<IHBH", mid, pid, qos | state << 3, len(topic)) + topic + payload)


def test_a_packet_id_reused_in_the_log_keeps_only_the_newer_message(run_fw, broker, peer, tmp_path):
    """A message whose "complete" record was lost, then a newer message with its packet
    id: the newer one is restored, the older one (complete, or the broker could not have
    given its id again) is not."""
    store = tmp_path / "s"
    store.mkdir()
    (store / "mqtt.log").write_bytes(
        record(b"H", b"DLMQ\x01" + struct.pack("<I", 40) + b"dev-reuse")
        + pub_record(30, 7, 1, 1, b"reuse/t", b"old")
        + pub_record(31, 8, 2, 0, b"reuse/t", b"kept")
        + pub_record(35, 7, 2, 0, b"reuse/t", b"new"))
    peer.subscribe("reuse/#", 2)
    rc, out, err = run_fw(DRAIN, {"URL": broker.url, "ID": "dev-reuse", "DIR": str(store)})
    assert rc == 0, out + err
    assert one(out, "RESTORED") == [31, 35]
    assert one(out, "ONPUBLISH") == [(31, 0), (35, 0)]
    peer.wait_messages(2, 10, "reuse/")
    time.sleep(0.3)
    assert sorted(m[1] for m in peer.messages("reuse/")) == [b"kept", b"new"]
    # mids go on after the header's next mid
    out = offline(run_fw, store, n=1, cid="dev-reuse")
    assert one(out, "MIDS") == [40]


DOUBT = r'''
import mqtt
def on_connect(rc, flags):
    print('CONN', rc, flags['session_present'])
    if rc == 0 and not flags['session_present']:
        c.subscribe(('doubt/t', 2))
def on_message(topic, msg):
    m = bytes(msg).decode()
    print('MSG', m, c.in_doubt())
    if m in ('m1', 'm2'):
        # two stored publishes large enough that the second one compacts the store
        # while this delivery is under way
        c.publish('doubt/big', 'x' * 20000, 1)
        c.publish('doubt/big', 'x' * 20000, 1)
    if m == HANG:
        while True:                     # the test kills the firmware here
            pass
c = mqtt.MqttClient(URL, 'dev-doubt', persistence=DIR)
c.on_message(on_message)
c.on_subscribe(lambda mid, granted: print('SUB', granted))
c.connect(on_connect, {})
'''


def test_a_message_whose_on_message_was_cut_short_comes_again_in_doubt(spawn_fw, broker, peer, tmp_path):
    """A kill while on_message runs for a QoS 2 message: the restarted client gets it
    again from the broker and delivers it with in_doubt() true, once; the messages
    delivered before the kill do not come again, those after it are not in doubt, and
    the doubt ends with that delivery (a later restart has none). m1 and m2 compact the
    store from inside on_message: the rewrite keeps m2's delivery as begun, not done."""
    store = str(tmp_path / "s")

    def msgs(p):
        return [tuple(l.split()[1:]) for _, l in p.lines if l.startswith("MSG ")]

    p = spawn_fw(DOUBT, {"URL": broker.url, "DIR": store, "HANG": "m2"})
    p.expect(r"^SUB \[2\]", 20)
    for i in range(5):
        peer.publish("doubt/t", b"m%d" % i, 2, wait=False)
    p.expect(r"^MSG m2 ", 20)
    time.sleep(0.2)
    p.kill()
    assert msgs(p) == [("m0", "False"), ("m1", "False"), ("m2", "False")]

    p = spawn_fw(DOUBT, {"URL": broker.url, "DIR": store, "HANG": ""})
    p.expect(r"^MSG m4 ", 20)
    time.sleep(0.5)  # late duplicates, if any, would arrive now
    p.kill()
    assert msgs(p) == [("m2", "True"), ("m3", "False"), ("m4", "False")]

    p = spawn_fw(DOUBT, {"URL": broker.url, "DIR": store, "HANG": ""})
    p.expect(r"^CONN 0 True", 20)
    peer.publish("doubt/t", b"m5", 2, wait=False)
    p.expect(r"^MSG m5 ", 20)
    time.sleep(0.3)
    p.kill()
    assert msgs(p) == [("m5", "False")]


def test_in_doubt_is_false_without_a_store_and_outside_on_message(spawn_fw, broker, peer):
    p = spawn_fw(r'''
import mqtt
c = mqtt.MqttClient(URL, 'dev-nodoubt')
c.on_message(lambda topic, msg: print('MSG', bytes(msg).decode(), c.in_doubt()))
c.on_subscribe(lambda mid, granted: print('SUB', granted))
c.connect(lambda rc, flags: c.subscribe(('nodoubt/t', 2)), {})
print('IDLE', c.in_doubt())
''', {"URL": broker.url})
    p.expect(r"^SUB \[2\]", 20)
    peer.publish("nodoubt/t", b"x", 2, wait=False)
    p.expect(r"^MSG x ", 20)
    p.kill()
    assert "IDLE False" in p.stdout and "MSG x False" in p.stdout, p.stdout


# A flash chip as the device has one: a block device in an image file (writes go straight
# to the file, so a kill keeps exactly what the file system had written), with littlefs
# or FAT on it, mounted at /flash.
FLASH = r'''
import vfs
class Flash:
    def __init__(self, path):
        self.f = open(path, 'r+b')
    def readblocks(self, n, buf, off=0):
        self.f.seek(n * 512 + off)
        self.f.readinto(buf)
    def writeblocks(self, n, buf, off=0):
        self.f.seek(n * 512 + off)
        self.f.write(buf)
    def ioctl(self, op, arg):
        return {4: BLOCKS, 5: 512}.get(op, 0)
fs_type = getattr(vfs, FS)
flash = Flash(IMAGE)
if MKFS:
    fs_type.mkfs(flash)
vfs.mount(fs_type(flash), '/flash')
'''


@pytest.mark.parametrize("fs", ["VfsLfs2", "VfsFat"])
def test_the_store_on_littlefs_and_fat_survives_a_kill(spawn_fw, run_fw, broker, peer, tmp_path, fs):
    """The store through the firmware's file API on the device's file systems: littlefs
    commits a file's data only when it is synced, so a kill right after publish()
    returned shows that publish() made the message durable there too."""
    image = tmp_path / "flash.img"
    blocks = 1024
    image.write_bytes(b"\xff" * (512 * blocks))
    words = {"FS": fs, "IMAGE": str(image), "BLOCKS": blocks, "ID": "dev-flash", "DIR": "/flash/mqtt",
             "URL": broker.url}
    p = spawn_fw(FLASH.replace("MKFS", "True") + r'''
import mqtt
c = mqtt.MqttClient('mqtt://127.0.0.1:1', ID, persistence=DIR)
print('MIDS', [c.publish('flash/t', 'm%d' % i, 1 + i % 2) for i in range(6)])
wait_until(lambda: False, 60000)        # the test kills the firmware here
''', words)
    p.expect(r"^MIDS", 20)
    p.kill()
    assert one(p.stdout, "MIDS") == [1, 2, 3, 4, 5, 6]
    peer.subscribe("flash/#", 2)
    rc, out, err = run_fw(FLASH.replace("MKFS", "False") + DRAIN, words)
    assert rc == 0, out + err
    assert one(out, "RESTORED") == [1, 2, 3, 4, 5, 6]
    assert one(out, "ONPUBLISH") == [(m, 0) for m in range(1, 7)]
    got = sorted(m[1] for m in peer.wait_messages(6, 10, "flash/"))
    assert got == [b"m%d" % i for i in range(6)]
