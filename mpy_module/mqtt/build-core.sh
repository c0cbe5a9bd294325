#!/usr/bin/env bash
# Builds the Rust core of the mqtt module and turns it into one relocatable
# object for the firmware link: `ld -r` keeps only what the exported mqtt_rs_*
# functions need, and objcopy makes every other symbol local, so Rust's
# compiler_builtins (fmod, ...) never replace the port's own; its weak memcpy
# & co. stay global and weak, so the port's replace them.
# Usage: build-core.sh CRATE_DIR OUTPUT.o   (env: see micropython.mk; MQTT_WEBSOCKET, MQTT_PERSISTENCE)
set -euo pipefail

crate=$1
out=$2
: "${CARGO:=cargo}"
: "${LD:=ld}"
: "${OBJCOPY:=objcopy}"
: "${NM:=nm}"
command -v "$CARGO" >/dev/null || export PATH="$HOME/.cargo/bin:$PATH"

export CARGO_TARGET_DIR=${MQTT_CARGO_TARGET_DIR:-$crate/target/firmware}
# MQTT_WEBSOCKET=0: without ws:// and wss:// (saves the WebSocket codec's text);
# MQTT_PERSISTENCE=0: without persistence=DIR (saves the session store's text)
features=firmware
[ "${MQTT_WEBSOCKET:-1}" = 0 ] || features+=,websocket
[ "${MQTT_PERSISTENCE:-1}" = 0 ] || features+=,persistence
args=(rustc --manifest-path "$crate/Cargo.toml" --release --lib --no-default-features --features "$features"
      --crate-type staticlib)
libdir=$CARGO_TARGET_DIR/release
if [ -n "${MQTT_RUST_TARGET:-}" ]; then
    args+=(--target "$MQTT_RUST_TARGET")
    libdir=$CARGO_TARGET_DIR/$MQTT_RUST_TARGET/release
fi
if [ -n "${MQTT_RUSTFLAGS:-}" ]; then
    export RUSTFLAGS="${RUSTFLAGS:-} $MQTT_RUSTFLAGS"
fi
if [ -n "${MQTT_RUSTC:-}" ]; then
    export RUSTC=$MQTT_RUSTC
fi
if [ -n "${MQTT_BUILD_STD:-}" ]; then
    # The standard library built from source: a nightly feature of cargo.
    export RUSTC_BOOTSTRAP=1
    args+=("-Zbuild-std=$MQTT_BUILD_STD")
fi
[ -n "${V:-}" ] || args+=(-q)
"$CARGO" "${args[@]}"

lib=$libdir/libdl7450_mqtt.a
syms=$("$NM" -g --defined-only "$lib" 2>/dev/null | awk '$2 == "T" && $3 ~ /^mqtt_rs_/ {print $3}' | sort -u)
if [ -z "$syms" ]; then
    echo "build-core.sh: no mqtt_rs_* symbols in $lib" >&2
    exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
undef=()
keep=()
for s in $syms; do
    undef+=(-u "$s")
    keep+=(--keep-global-symbol="$s")
done
"$LD" -r "${undef[@]}" -o "$tmp/partial-bc.o" "$lib"
# Embedded LLVM bitcode (bare-metal targets) is not code, and a binutils
# whose LTO plugin cannot read it sees no symbols at all.
"$OBJCOPY" --remove-section=.llvmbc --remove-section=.llvmcmd "$tmp/partial-bc.o" "$tmp/partial.o"
# compiler_builtins' memcpy & co. (bare-metal targets) are weak: they stay
# global, so the port's own (strong) ones replace them and theirs are dropped.
for s in $("$NM" "$tmp/partial.o" | awk '$2 == "W" && $3 ~ /^(__aeabi_mem[a-z0-9]+|memcpy|memmove|memset|memcmp|bcmp)$/ {print $3}'); do
    keep+=(--keep-global-symbol="$s")
done
# No unwinding ever crosses the core (panic = "abort"): its unwind tables
# (.eh_frame, ARM's .ARM.exidx/.ARM.extab) and debug sections are dead weight
# in the firmware.
"$OBJCOPY" "${keep[@]}" --remove-section=.eh_frame --remove-section='.ARM.exidx*' \
    --remove-section='.ARM.extab*' --strip-debug "$tmp/partial.o" "$tmp/core.o"
# Cargo may hand back an archive with an old mtime: compare contents, and
# only then touch the object the link depends on.
if ! cmp -s "$tmp/core.o" "$out"; then
    cp "$tmp/core.o" "$out"
fi
