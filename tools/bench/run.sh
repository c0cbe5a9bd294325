#!/usr/bin/env bash
# `make bench`: prepares what the benchmark needs, then runs tools/bench/bench.py.
#   - umqtt.simple 1.3.4 (PyPI sdist, MIT), checked against a pinned sha256,
#     unpacked into build/bench/lib/umqtt/ (MICROPYPATH for the same firmware);
#   - the firmware built without the mqtt module (build/bench/unix-nomod, cached),
#     to measure the text the module adds;
#   - build/bench/mosq_rtt: the libmosquitto round-trip helper (tools/bench/mosq_rtt.c);
#   - build/bench/paho_async: the Paho C MQTTAsync client (tools/bench/paho_async.c,
#     libpaho-mqtt-dev).
# Environment: MQTT_FIRMWARE (default build/micropython), VENV (default .venv, for
# python with paho-mqtt), BENCH_ROUNDS (3), BENCH_N0/N1/N2 (messages per run: 60000/20000/12000).
set -euo pipefail

TOP=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$TOP/tools/bench
OUT=$TOP/build/bench
FIRMWARE=${MQTT_FIRMWARE:-$TOP/build/micropython}
VENV=${VENV:-$TOP/.venv}
MICROPY_DIR=${MICROPY_DIR:-$TOP/micropython/src}
VARIANT_DIR=$TOP/micropython/variants/dl7450

UMQTT_VERSION=1.3.4
UMQTT_SHA256=b6a2520239e3992c63a7de9370ee9b3d9d27819a90359c521f1c0f7ccab8d12f

start=$(date +%s.%N)
mkdir -p "$OUT"
[ -x "$FIRMWARE" ] || { echo "bench: no firmware at $FIRMWARE (run make)" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || { echo "bench: no venv at $VENV (run make venv)" >&2; exit 1; }
for tool in /usr/sbin/mosquitto mosquitto_pub mosquitto_sub size gcc; do
    command -v "$tool" >/dev/null || { echo "bench: $tool not found (mosquitto, mosquitto-clients, binutils, gcc)" >&2; exit 1; }
done

# --- umqtt.simple 1.3.4 ------------------------------------------------------
# (`pip download` of this sdist stops after the download: it has no setup.py, so
# pip cannot read its metadata. pip still resolves it on the configured index and
# names the file's address in its error: take it from there, fetch it, check
# the pinned hash.)
tarball=$OUT/micropython-umqtt.simple-$UMQTT_VERSION.tar.gz
if [ ! -f "$OUT/lib/umqtt/simple.py" ] || [ ! -f "$tarball" ]; then
    echo "bench: fetching umqtt.simple $UMQTT_VERSION"
    url=$("$VENV/bin/python" -m pip download --no-deps --no-binary :all: -d "$OUT/pipdl" \
            "micropython-umqtt.simple==$UMQTT_VERSION" 2>&1 |
          grep -o "https\?://[^ ]*micropython-umqtt.simple-$UMQTT_VERSION.tar.gz" | head -n1 || true)
    [ -n "$url" ] || { echo "bench: pip could not resolve micropython-umqtt.simple==$UMQTT_VERSION" >&2; exit 1; }
    curl -sSfL --retry 3 -o "$tarball.tmp" "$url"
    mv "$tarball.tmp" "$tarball"
fi
echo "$UMQTT_SHA256  $tarball" | sha256sum --check --quiet - || {
    echo "bench: sha256 mismatch for $tarball" >&2; rm -f "$tarball"; exit 1; }
rm -rf "$OUT/lib"
mkdir -p "$OUT/lib"
tar -xzf "$tarball" -C "$OUT/lib" --strip-components=1 "micropython-umqtt.simple-$UMQTT_VERSION/umqtt/simple.py"
touch "$OUT/lib/umqtt/__init__.py"

# --- the firmware without the module (text size baseline), cached ------------
NOMOD=$OUT/unix-nomod
# a change of the variant (configuration, TLS library) makes a new baseline
if [ -x "$NOMOD/micropython" ] && [ -n "$(find "$VARIANT_DIR" -newer "$NOMOD/micropython")" ]; then
    rm -rf "$NOMOD"
fi
if [ ! -x "$NOMOD/micropython" ]; then
    echo "bench: building the firmware without the mqtt module (once, ~25 s)"
    make -C "$MICROPY_DIR/ports/unix" VARIANT_DIR="$VARIANT_DIR" BUILD="$NOMOD" -j"$(nproc)" \
        >"$OUT/unix-nomod.log" 2>&1 || { tail -30 "$OUT/unix-nomod.log" >&2; exit 1; }
fi

# --- libmosquitto round-trip helper ------------------------------------------
if [ ! -x "$OUT/mosq_rtt" ] || [ "$HERE/mosq_rtt.c" -nt "$OUT/mosq_rtt" ]; then
    gcc -O2 -Wall -o "$OUT/mosq_rtt" "$HERE/mosq_rtt.c" -l:libmosquitto.so.1
fi

# --- Paho C MQTTAsync client ---------------------------------------------------
if [ ! -x "$OUT/paho_async" ] || [ "$HERE/paho_async.c" -nt "$OUT/paho_async" ]; then
    gcc -O2 -Wall -o "$OUT/paho_async" "$HERE/paho_async.c" -lpaho-mqtt3a
fi

"$VENV/bin/python" "$HERE/bench.py" \
    --firmware "$FIRMWARE" \
    --nomod "$NOMOD/micropython" \
    --core-obj "$TOP/build/unix/mqtt_core/mqtt_core.o" \
    --umqtt-lib "$OUT/lib" \
    --mosq-rtt "$OUT/mosq_rtt" \
    --paho-async "$OUT/paho_async" \
    --python "$VENV/bin/python" \
    --out "$OUT"

end=$(date +%s.%N)
awk -v s="$start" -v e="$end" 'BEGIN { printf "bench: run.sh took %.0f s\n", e - s }'
