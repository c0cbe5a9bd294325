#!/usr/bin/env bash
# `make demo`: runs examples/workshop_app.py on the firmware against a private
# mosquitto broker on a free loopback port, then stops the broker.
# Usage: tools/demo.sh path/to/micropython   (exit status: the example's)
set -euo pipefail

FIRMWARE=${1:?usage: tools/demo.sh path/to/micropython}
TOP=$(cd "$(dirname "$0")/.." && pwd)
APP=$TOP/examples/workshop_app.py
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
TIMEOUT=${DEMO_TIMEOUT:-30}

[ -x "$FIRMWARE" ] || { echo "demo: no firmware at $FIRMWARE (run make)" >&2; exit 1; }
[ -x "$MOSQUITTO" ] || { echo "demo: $MOSQUITTO not found (apt-get install mosquitto)" >&2; exit 1; }

tmp=$(mktemp -d)
broker_pid=
cleanup() {
    if [ -n "$broker_pid" ] && kill -0 "$broker_pid" 2>/dev/null; then
        kill "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A free loopback port: ask the kernel for one.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

cat >"$tmp/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence false
CONF

"$MOSQUITTO" -c "$tmp/mosquitto.conf" >"$tmp/mosquitto.log" 2>&1 &
broker_pid=$!

# Wait until the broker accepts connections (at most 5 s).
for _ in $(seq 50); do
    if python3 -c "import socket, sys; socket.create_connection(('127.0.0.1', $port), 0.2).close()" 2>/dev/null; then
        break
    fi
    if ! kill -0 "$broker_pid" 2>/dev/null; then
        echo "demo: mosquitto did not start:" >&2
        cat "$tmp/mosquitto.log" >&2
        exit 1
    fi
    sleep 0.1
done

echo "demo: mosquitto $("$MOSQUITTO" -h 2>/dev/null | awk 'NR == 1 {print $3}') listening on 127.0.0.1:$port (pid $broker_pid)"
echo "demo: running $(basename "$APP") on $FIRMWARE (time limit ${TIMEOUT} s)"
echo "------------------------------------------------------------------------"
status=0
MQTT_BROKER="mqtt://127.0.0.1:$port" timeout "$TIMEOUT" "$FIRMWARE" "$APP" || status=$?
echo "------------------------------------------------------------------------"
case $status in
    0) echo "demo: the example finished (exit status 0)" ;;
    124) echo "demo: the example did not finish within ${TIMEOUT} s" >&2 ;;
    *) echo "demo: the example failed (exit status $status)" >&2 ;;
esac
exit "$status"
