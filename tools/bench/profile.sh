#!/usr/bin/env bash
# Instruction-count profile of the mqtt module publishing a batch, with
# valgrind's callgrind (repeatable, unlike wall time on a shared 2-core box).
# Not part of `make bench` (valgrind is ~50x slower); run it by hand:
#   tools/bench/profile.sh [N]        (default N = 5000 messages per QoS)
# Builds an unstripped firmware with the module into build/bench/unix-prof
# (cached), starts a private mosquitto, runs tools/bench/mp_mod.py tp at QoS 0
# and 1 (throughput mode) and 2000 QoS 0 round trips under callgrind, and writes
# build/bench/profile-{qos0,qos1,rtt0}.txt (inclusive and self cost per function)
# next to the raw callgrind.out.* files.
set -euo pipefail

TOP=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$TOP/build/bench
N=${1:-5000}
MICROPY_DIR=${MICROPY_DIR:-$TOP/micropython/src}
PROF=$OUT/unix-prof
mkdir -p "$OUT"

echo "profile: building the unstripped firmware ($PROF)"
make -C "$MICROPY_DIR/ports/unix" VARIANT_DIR="$TOP/micropython/variants/dl7450" BUILD="$PROF" \
    USER_C_MODULES="$TOP/mpy_module" STRIP= -j"$(nproc)" >"$OUT/unix-prof.log" 2>&1 \
    || { tail -30 "$OUT/unix-prof.log" >&2; exit 1; }

tmp=$(mktemp -d)
broker=
sub=
cleanup() {
    [ -n "$sub" ] && kill "$sub" 2>/dev/null || true
    [ -n "$broker" ] && kill "$broker" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$tmp/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence false
max_inflight_messages 65534
max_queued_messages 10000000
CONF
/usr/sbin/mosquitto -c "$tmp/mosquitto.conf" >"$tmp/mosquitto.log" 2>&1 &
broker=$!
sleep 0.5

annotate() {   # callgrind_annotate without its header, paths shortened
    callgrind_annotate "$@" 2>/dev/null | sed -n '/file:function/,$p' | grep '\[' | grep -v "'2 \[" \
        | sed "s#$TOP/##g; s#micropython/src/ports/unix/../../##g" | head -40 || true
}

run() {   # NAME QOS MODE ARGS...: one callgrind run of mp_mod.py
    local name=$1 qos=$2 mode=$3
    shift 3
    local topic=bench/profile/$name
    mosquitto_sub -h 127.0.0.1 -p "$port" -q "$qos" -t "$topic" >/dev/null &
    sub=$!
    sleep 0.3
    local cg=$OUT/callgrind.out.$name
    echo "profile: $name under callgrind"
    valgrind --tool=callgrind --callgrind-out-file="$cg" \
        "$PROF/micropython" "$TOP/tools/bench/mp_mod.py" "$mode" 127.0.0.1 "$port" "$topic" "$@" \
        >"$tmp/out.txt" 2>"$tmp/valgrind.txt" || { cat "$tmp/valgrind.txt" >&2; exit 1; }
    kill "$sub" 2>/dev/null || true
    wait "$sub" 2>/dev/null || true
    sub=
    {
        echo "# callgrind: mp_mod.py $mode $* ($(date -I))"
        grep -E "^(summary|totals)" "$cg" || true
        echo
        echo "## inclusive (instructions)"
        annotate --inclusive=yes "$cg"
        echo
        echo "## self"
        annotate "$cg"
    } >"$OUT/profile-$name.txt"
    echo "profile: $OUT/profile-$name.txt"
}

run qos0 0 tp "$N" 0
run qos1 1 tp "$N" 1
run rtt0 0 rtt 0 2000 0
