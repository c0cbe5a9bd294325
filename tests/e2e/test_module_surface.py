"""Issue 2: the module surface of `mqtt` on the firmware (no broker needed):
constants, ErrorDescription, MqttError, MqttClient/Client and its constructor,
`import mqtt` from the command line and at the REPL prompt."""
import re
import socket
import subprocess
import threading
import time

import pytest

from conftest import FIRMWARE, ON_DEVICE, firmware_command

# The API.md error table: code -> words its description must contain (case-insensitive
# regex), so that a shifted or mixed-up numbering is caught, not just "some text".
ERROR_TABLE = {
    0: r"no error",
    -1: r"error",
    -2: r"persist",
    -3: r"disconnected",
    -4: r"in-?flight",
    -5: r"utf-?8",
    -6: r"none",
    -7: r"nul",
    -8: r"structure",
    -9: r"qos",
    -10: r"message ids?",
    -11: r"discard",
    -12: r"buffer",
    -13: r"tls",
    -14: r"protocol|scheme",
    -15: r"option",
    -16: r"version",
    -17: r"will",
    -18: r"ignored",
    -19: r"bound",
}
CONNACK_TABLE = {
    1: r"protocol version",
    2: r"identifier",
    3: r"unavailable",
    4: r"user ?name|password",
    5: r"authori[sz]ed",
}


def fw_eval(run_fw, code):
    """Runs `code` (which prints) on the firmware; returns stdout, fails on a non-zero exit."""
    rc, out, err = run_fw(code, timeout=15)
    assert rc == 0, "firmware failed (%d):\n%s\n%s" % (rc, out, err)
    return out


@pytest.mark.host_only
def test_command_line_import():
    # The "Done when" line of issue 2, verbatim.
    p = subprocess.run([FIRMWARE, "-c", "import mqtt; print(mqtt.QOS2, mqtt.ErrorDescription(-3))"],
                       capture_output=True, timeout=10, text=True)
    assert p.returncode == 0, p.stderr
    first, _, text = p.stdout.strip().partition(" ")
    assert first == "2"
    assert re.search(ERROR_TABLE[-3], text, re.I), p.stdout


def test_qos_constants(run_fw):
    out = fw_eval(run_fw, "import mqtt\nprint(repr((mqtt.QOS0, mqtt.QOS1, mqtt.QOS2)), type(mqtt.QOS1) is int)")
    assert out.strip() == "(0, 1, 2) True"


def _descriptions(run_fw, codes):
    code = "import mqtt\nfor c in %r:\n    d = mqtt.ErrorDescription(c)\n    print('D', c, type(d) is str, repr(d))\n" % (codes,)
    out = fw_eval(run_fw, code)
    res = {}
    for line in out.splitlines():
        m = re.match(r"D (-?\d+) (True|False) (.*)$", line)
        if m:
            assert m.group(2) == "True", line
            res[int(m.group(1))] = eval(m.group(3))
    assert set(res) == set(codes), out
    return res


def test_error_description_table(run_fw):
    codes = list(ERROR_TABLE) + list(CONNACK_TABLE) + [7, -999]
    d = _descriptions(run_fw, codes)
    unknown = d[7]
    assert "unknown" in unknown.lower()
    known = {c: d[c] for c in list(ERROR_TABLE) + list(CONNACK_TABLE)}
    problems = []
    for c, text in known.items():
        if not text.strip():
            problems.append("%d: empty" % c)
        elif text == unknown:
            problems.append("%d: generic text %r" % (c, text))
        want = ERROR_TABLE.get(c) if c <= 0 else CONNACK_TABLE[c]
        if not re.search(want, text, re.I):
            problems.append("%d: %r does not say /%s/" % (c, text, want))
    texts = list(known.values())
    dups = {t for t in texts if texts.count(t) > 1}
    if dups:
        problems.append("duplicate texts: %r" % dups)
    assert not problems, problems


def test_error_description_unknown_ints(run_fw):
    out = fw_eval(run_fw, """
import mqtt
u = mqtt.ErrorDescription(7)
for c in (6, 8, 100, -100, -999, 2**31, -2**31 - 1, 2**70, -2**70):
    try:
        print('U', mqtt.ErrorDescription(c) == u)
    except Exception as e:
        print('U raised', type(e).__name__, e)
print('TEXT', u)
""")
    assert "unknown" in out.split("TEXT", 1)[1].lower()
    assert [l for l in out.splitlines() if l.startswith("U")] == ["U True"] * 9, out


@pytest.mark.parametrize("arg", ["'x'", "None", "1.0", "b'\\x01'", "[0]"])
def test_error_description_non_int_is_type_error(run_fw, arg):
    out = fw_eval(run_fw, """
import mqtt
try:
    r = mqtt.ErrorDescription(%s)
    print('returned', repr(r))
except TypeError:
    print('TypeError')
except Exception as e:
    print('raised', type(e).__name__)
""" % arg)
    assert out.strip() == "TypeError"


def test_mqtt_error_class_and_fields(run_fw):
    out = fw_eval(run_fw, """
import mqtt
print('SUB', issubclass(mqtt.MqttError, Exception), issubclass(mqtt.MqttError, BaseException))
try:
    mqtt.MqttClient('gopher://h', 'x')
    print('no raise')
except Exception as e:   # must be catchable as Exception
    print('CLS', type(e) is mqtt.MqttError, isinstance(e, mqtt.MqttError))
    print('ERRNO', repr(e.errno), repr(e.args[0]), len(e.args))
    print('ARG1', type(e.args[1]) is str, e.args[1] == mqtt.ErrorDescription(-14), repr(e.args[1]))
""")
    lines = out.splitlines()
    assert "SUB True True" in lines
    assert "CLS True True" in lines, out
    assert "ERRNO -14 -14 2" in lines, out
    arg1 = [l for l in lines if l.startswith("ARG1")][0]
    assert arg1.startswith("ARG1 True "), out
    assert len(eval(arg1.split(" ", 3)[3])) > 0


def test_client_limit_and_repr(run_fw):
    """Documented: at most 32 clients at a time, one more raises MqttError -1; a collected
    client frees its place; repr shows the URL and the state."""
    out = fw_eval(run_fw, """
import mqtt, gc
cs = [mqtt.MqttClient('tcp://h:%d' % (i + 1), 'c%d' % i) for i in range(32)]
try:
    mqtt.MqttClient('tcp://h', 'one-more')
    print('33rd ok')
except mqtt.MqttError as e:
    print('33rd', e.errno)
print('REPR', repr(cs[0]))
cs = None
gc.collect()
print('AFTER GC', type(mqtt.MqttClient('tcp://h', 'again')).__name__)
""")
    assert "33rd -1" in out, out
    assert "AFTER GC MqttClient" in out, out
    r = re.search(r"^REPR (.*)$", out, re.M).group(1)
    assert "h:1" in r and "disconnected" in r, r


def test_client_alias(run_fw):
    out = fw_eval(run_fw, "import mqtt\nprint(mqtt.Client is mqtt.MqttClient, type(mqtt.MqttClient('tcp://h', 'x')) is mqtt.Client)")
    assert out.strip() == "True True"


# ---------------------------------------------------------------------------------------
# constructor

# The device firmware is built without WebSocket (MQTT_WEBSOCKET=0): there
# ws:// and wss:// are schemes it does not serve.
WS = "MqttError -14" if ON_DEVICE else "ok"
CTOR_CASES = [
    # (id, constructor arguments as Python source, expected outcome)
    ("tcp", "'tcp://broker.example'", "ok"),
    ("mqtt", "'mqtt://broker.example'", "ok"),
    ("ssl", "'ssl://broker.example'", "ok"),
    ("mqtts", "'mqtts://broker.example'", "ok"),
    ("ws", "'ws://broker.example'", WS),
    ("wss", "'wss://broker.example'", WS),
    ("ws-path", "'ws://broker.example:8080/mqtt/x'", WS),
    ("tcp-port", "'tcp://10.0.0.1:1884'", "ok"),
    ("port-1", "'tcp://h:1'", "ok"),
    ("port-65535", "'tcp://h:65535'", "ok"),
    ("ipv6", "'tcp://[::1]:1883'", "ok"),
    ("ipv6-noport", "'mqtt://[2001:db8::1]'", "ok"),
    ("unresolvable-host", "'tcp://no-such-host.invalid:1883'", "ok"),
    ("bad-scheme-http", "'http://broker.example'", "MqttError -14"),
    ("bad-scheme-foo", "'foo://broker.example:1883'", "MqttError -14"),
    ("no-host", "'tcp://'", "ValueError"),
    ("no-host-port", "'tcp://:1883'", "ValueError"),
    ("port-0", "'tcp://h:0'", "ValueError"),
    ("port-65536", "'tcp://h:65536'", "ValueError"),
    ("port-non-numeric", "'tcp://h:abc'", "ValueError"),
    ("port-empty", "'tcp://h:'", "ValueError"),
    # documented in docs/mqtt.Client.rst (the module reference)
    ("scheme-upper-case", "'TCP://broker.example'", "ok"),
    ("tcp-lone-slash", "'tcp://broker.example/'", "ok"),
    ("no-scheme", "'broker.example:1883'", "MqttError -14"),
    ("user-info", "'tcp://user@broker.example'", "ValueError"),
    ("tcp-with-path", "'tcp://broker.example/some/path'", "ValueError"),
]
CTOR_ARG_CASES = [
    ("no-args", "", "TypeError"),
    ("client-id-missing", "'tcp://h'", "TypeError"),
    ("client-id-int", "'tcp://h', 5", "TypeError"),
    ("client-id-none", "'tcp://h', None", "TypeError"),
    ("client-id-bytes", "'tcp://h', b'id'", "TypeError"),
    ("url-int", "5, 'id'", "TypeError"),
    ("url-none", "None, 'id'", "TypeError"),
    ("url-bytes", "b'tcp://h', 'id'", "TypeError"),
]

OUTCOME_FN = r'''
import mqtt
def outcome(f):
    try:
        r = f()
    except mqtt.MqttError as e:
        return 'MqttError %d' % e.errno
    except TypeError:
        return 'TypeError'
    except ValueError:
        return 'ValueError'
    except Exception as e:
        return 'other %s %s' % (type(e).__name__, e)
    return 'ok'
'''


@pytest.fixture(scope="module")
def ctor_results(tmp_path_factory):
    lines = [OUTCOME_FN]
    for cid, args, _ in CTOR_CASES:
        lines.append("print(%r, outcome(lambda: mqtt.MqttClient(%s, 'dev-1')))" % (cid, args))
    for cid, args, _ in CTOR_ARG_CASES:
        lines.append("print(%r, outcome(lambda: mqtt.MqttClient(%s)))" % (cid, args))
    path = tmp_path_factory.mktemp("ctor") / "ctor.py"
    path.write_text("\n".join(lines) + "\n")
    p = subprocess.run(firmware_command(path), capture_output=True, text=True, timeout=15)
    res = {}
    for line in p.stdout.splitlines():
        k, _, v = line.partition(" ")
        res[k] = v
    return res, p


@pytest.mark.parametrize("cid,args,expected", CTOR_CASES + CTOR_ARG_CASES,
                         ids=[c[0] for c in CTOR_CASES + CTOR_ARG_CASES])
def test_constructor(ctor_results, cid, args, expected):
    res, p = ctor_results
    assert cid in res, "case did not run:\n%s\n%s" % (p.stdout, p.stderr)
    assert res[cid] == expected, "MqttClient(%s, ...) -> %s" % (args, res[cid])


def test_constructor_does_no_network_io(run_fw):
    """Constructing clients (for a listening local port and for an unresolvable host)
    opens no connection and does no DNS, and is immediate."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.1)
    port = srv.getsockname()[1]
    accepted = []
    stop = threading.Event()

    def acceptor():
        while not stop.is_set():
            try:
                c, _ = srv.accept()
                accepted.append(c)
            except socket.timeout:
                pass
            except OSError:
                return

    t = threading.Thread(target=acceptor, daemon=True)
    t.start()
    try:
        rc, out, err = run_fw("""
import mqtt
cs = [mqtt.MqttClient(URL, 'dev-%d' % i) for i in range(5)]
cs += [mqtt.MqttClient('tcp://no-such-host-%d.invalid:1883' % i, 'x') for i in range(5)]
print('CONN', [c.is_connected() for c in cs])
time.sleep_ms(500)
print('END')
""", vars={"URL": "tcp://127.0.0.1:%d" % port})
        time.sleep(0.2)
    finally:
        stop.set()
        t.join(1)
        srv.close()
        for c in accepted:
            c.close()
    assert rc == 0, out + err
    assert "END" in out
    assert "CONN [False, False, False, False, False, False, False, False, False, False]" in out
    assert accepted == [], "the constructor connected to the broker"


def test_import_at_repl_prompt(repl):
    r = repl()
    out = r.line("import mqtt")
    assert "Error" not in out and "Traceback" not in out, out
    out = r.line("print('Q', mqtt.QOS0 + mqtt.QOS1 + mqtt.QOS2, mqtt.Client is mqtt.MqttClient)")
    assert "Q 3 True" in out, out
    out = r.line("print(mqtt.ErrorDescription(-14))")
    assert re.search(ERROR_TABLE[-14], out.split("\n", 1)[1], re.I), out
