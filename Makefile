# DL-7450 firmware with the `mqtt` module: every entry point.
#
#   make            build/micropython (fetches MicroPython and the packages it needs)
#   make demo       build, start a local mosquitto, run examples/workshop_app.py
#   make test       everything: cargo test + end-to-end tests of the firmware
#                   (against mosquitto, and a core subset against aedes too)
#   make size       text/data/bss with and without the module, heap per client
#   make MICROPY_DIR=/path/to/micropython   build against an existing tree
#   make device     build/device/firmware.elf: the device firmware (Cortex-M3, qemu)

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)

TOP := $(CURDIR)
MICROPY_DIR ?= $(TOP)/micropython/src
# mbedtls, compiled into the firmware (Debian's source package, fetched).
MBEDTLS_DIR := $(TOP)/micropython/mbedtls
VARIANT_DIR := $(TOP)/micropython/variants/dl7450
BUILD := $(TOP)/build
# A tree given with MICROPY_DIR gets its own build folder.
ifeq ($(MICROPY_DIR),$(TOP)/micropython/src)
PORT_BUILD := $(BUILD)/unix
else
PORT_BUILD := $(BUILD)/unix-ext
endif
FIRMWARE := $(BUILD)/micropython
VENV := $(TOP)/.venv
PYTEST := $(VENV)/bin/pytest
JOBS ?= $(shell nproc)

# Debian packages the build and the tests need (checked, installed if missing).
DEB_PACKAGES := gcc make pkg-config dpkg-dev xz-utils bzip2 patch libffi-dev \
	libclang-dev mosquitto mosquitto-clients python3-venv openssl cmake

PORT_MAKE = $(MAKE) -C $(MICROPY_DIR)/ports/unix \
	VARIANT_DIR=$(VARIANT_DIR) BUILD=$(PORT_BUILD) MBEDTLS_DIR=$(MBEDTLS_DIR) \
	USER_C_MODULES=$(TOP)/mpy_module $(PORT_MAKE_EXTRA)

.PHONY: all firmware deps fetch mpy-cross test test-rust test-e2e demo clean distclean venv

all: firmware

deps:
	@tools/ensure-packages.sh $(DEB_PACKAGES)

ifeq ($(MICROPY_DIR),$(TOP)/micropython/src)
fetch: deps
	@tools/fetch-source.sh micropython $(MICROPY_DIR) $(TOP)/micropython/download
	@tools/fetch-source.sh mbedtls $(MBEDTLS_DIR) $(TOP)/micropython/download
else
fetch: deps
	@test -f $(MICROPY_DIR)/py/mpconfig.h || { echo "MICROPY_DIR=$(MICROPY_DIR) is not a MicroPython tree"; exit 1; }
	@tools/fetch-source.sh mbedtls $(MBEDTLS_DIR) $(TOP)/micropython/download
endif

mpy-cross: fetch
	@$(MAKE) -s -C $(MICROPY_DIR)/mpy-cross -j$(JOBS) >/dev/null

firmware: mpy-cross
	@$(PORT_MAKE) -j$(JOBS)
	@cp $(PORT_BUILD)/micropython $(FIRMWARE).tmp && mv $(FIRMWARE).tmp $(FIRMWARE)
	@echo "firmware: $(FIRMWARE)"

venv: $(VENV)/.ok
$(VENV)/.ok: tests/requirements.txt | deps
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r tests/requirements.txt
	touch $@

test: firmware venv aedes test-rust fuzz-smoke test-e2e test-cross test-device

# aedes (Node.js), the second broker of the end-to-end tests, pinned by its
# package-lock.json and installed with npm ci.
AEDES_DIR := $(TOP)/tests/brokers/aedes
.PHONY: aedes
aedes: $(AEDES_DIR)/node_modules/.installed
$(AEDES_DIR)/node_modules/.installed: $(AEDES_DIR)/package.json $(AEDES_DIR)/package-lock.json
	@command -v npm >/dev/null || tools/ensure-packages.sh nodejs npm
	@node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' || \
	    { echo "aedes (tests/brokers/aedes) needs Node.js >= 20; found $$(node --version)"; exit 1; }
	cd $(AEDES_DIR) && npm ci --ignore-scripts --no-audit --no-fund
	touch $@

# The core with its default features, and without them (the device's build:
# no WebSocket, no persistence).
test-rust:
	cargo test --quiet
	cargo test --quiet --no-default-features

# Each folder in its own pytest run: their conftest modules share a name. Tests marked
# `brokers` in tests/e2e run against mosquitto and aedes (MQTT_BROKERS).
E2E_SUITES := tests/e2e tests/transports tests/reliability tests/persistence tests/cmake
test-e2e: firmware venv aedes
	@set -e; for suite in $(E2E_SUITES); do \
	    echo "== $$suite"; \
	    MQTT_FIRMWARE=$(FIRMWARE) MICROPY_DIR=$(MICROPY_DIR) $(PYTEST) -q $$suite; \
	done

# The device firmware: MicroPython for the Cortex-M3 of an MPS2-AN385 board
# (run under qemu by tools/device-run), with the mqtt module; and the same
# firmware without the module, for size comparisons.
DEVICE_DIR := $(TOP)/micropython/boards/MPS2_AN385
DEVICE_BUILD := $(BUILD)/device
# lwIP, the device's TCP/IP stack (Debian's source package, fetched).
LWIP_DIR := $(TOP)/micropython/lwip
DEVICE_PACKAGES := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm rustc-web rust-web-src
DEVICE_MAKE = $(MAKE) --no-print-directory -C $(DEVICE_DIR) MICROPY_TOP=$(MICROPY_DIR) LWIP_TOP=$(LWIP_DIR) -j$(JOBS)

.PHONY: device device-stock device-deps test-device test-cross bench-device
device-deps:
	@tools/ensure-packages.sh $(DEVICE_PACKAGES)
	@tools/fetch-source.sh lwip $(LWIP_DIR) $(TOP)/micropython/download

device: fetch device-deps
	@$(DEVICE_MAKE) BUILD=$(DEVICE_BUILD) USER_C_MODULES=$(TOP)/mpy_module
	@echo "device firmware: $(DEVICE_BUILD)/firmware.elf"

device-stock: fetch device-deps
	@$(DEVICE_MAKE) BUILD=$(BUILD)/device-stock

# The end-to-end suite on the device firmware under qemu (tests/e2e/conftest.py:
# MQTT_TARGET=device): the same scripts as on the host, against mosquitto on
# loopback through tools/device-run --forward; only the terminal REPL tests
# and host-only ones (marked host_only) are skipped.
DEVICE_SUITES := tests/e2e
test-device: device venv
	@echo "== device firmware (qemu): $(DEVICE_SUITES)"
	@MQTT_TARGET=device $(PYTEST) -q $(DEVICE_SUITES)

# The device's figures under emulation (docs/performance.md).
bench-device: device
	@tools/bench/device.py

# The core for Cortex-M4F/M7 as well, so that a target-specific break shows
# up (the protocol core only: the binding needs a port's headers).
CROSS_TARGETS := thumbv7em-none-eabihf
test-cross: device-deps
	@for t in $(CROSS_TARGETS); do \
	    echo "== cargo build --target $$t"; \
	    RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 cargo build --quiet --release -Zbuild-std=core \
	        --target $$t --target-dir target/cross || exit 1; \
	done

demo: firmware
	@tools/demo.sh $(FIRMWARE)

clean:
	rm -rf $(BUILD) target

distclean: clean
	rm -rf micropython/src micropython/mbedtls micropython/lwip micropython/download $(VENV)

# Fuzzing (cargo-fuzz + libFuzzer on the stable toolchain via RUSTC_BOOTSTRAP).
# `make test` runs a bounded smoke run of every target; `make fuzz` a long one.
FUZZ_TARGETS := decoder engine ws
FUZZ_SECONDS ?= 600
FUZZ_SMOKE_SECONDS ?= 15
CARGO_FUZZ_VERSION := 0.13.2

define run-fuzz
	@cd fuzz && for t in $(FUZZ_TARGETS); do \
	    mkdir -p corpus/$$t && \
	    RUSTC_BOOTSTRAP=1 cargo fuzz run -O $$t corpus/$$t seeds/$$t -- \
	        -max_total_time=$(1) -print_final_stats=1 2>&1 | \
	        grep -E "^(Done|stat::number_of_executed_units)|ERROR|panicked|SUMMARY" ; \
	    test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done
endef

.PHONY: fuzz fuzz-smoke fuzz-tools
fuzz-tools:
	@command -v cargo-fuzz >/dev/null || cargo install --locked --quiet cargo-fuzz --version $(CARGO_FUZZ_VERSION)

fuzz-smoke: fuzz-tools
	$(call run-fuzz,$(FUZZ_SMOKE_SECONDS))

fuzz: fuzz-tools
	$(call run-fuzz,$(FUZZ_SECONDS))

# Performance: this module against umqtt.simple, paho-mqtt, Paho C MQTTAsync
# and mosquitto_pub.
BENCH_PACKAGES := libpaho-mqtt-dev curl
.PHONY: bench
bench: firmware venv
	@tools/ensure-packages.sh $(BENCH_PACKAGES)
	@MQTT_FIRMWARE=$(FIRMWARE) VENV=$(VENV) tools/bench/run.sh

# Footprint: text/data/bss of each firmware with and without the module, heap
# per client and per received message (tools/size/size.py, results in
# build/size/results.md). SIZE_PAIRS lists NAME:WITH_MODULE:WITHOUT_MODULE;
# a pair whose files are missing is left out, so the device columns appear once
# the device build makes them. SIZE_RUNS lists NAME:FIRMWARE runnable here.
SIZE_NOMOD := $(BUILD)/size/unix-nomod
SIZE_PAIRS ?= host:$(FIRMWARE):$(SIZE_NOMOD)/micropython \
	device:$(BUILD)/device/firmware.elf:$(BUILD)/device-stock/firmware.elf
SIZE_CORES ?= host:$(PORT_BUILD)/mqtt_core/mqtt_core.o device:$(BUILD)/device/mqtt_core/mqtt_core.o
SIZE_RUNS ?= host:$(FIRMWARE) device:$(BUILD)/device/firmware.elf
.PHONY: size
size: firmware device device-stock
	@$(MAKE) --no-print-directory -C $(MICROPY_DIR)/ports/unix VARIANT_DIR=$(VARIANT_DIR) \
	    BUILD=$(SIZE_NOMOD) -j$(JOBS) >$(BUILD)/size-nomod.log 2>&1 || { tail -30 $(BUILD)/size-nomod.log; exit 1; }
	@python3 tools/size/size.py --out $(BUILD)/size $(foreach p,$(SIZE_PAIRS),--pair $(p)) \
	    $(foreach c,$(SIZE_CORES),--core-obj $(c)) $(foreach r,$(SIZE_RUNS),--run $(r))

# Reliability: long runs (make test runs short versions).
SOAK_SECONDS ?= 600
.PHONY: soak test-asan
soak: firmware venv
	MQTT_FIRMWARE=$(FIRMWARE) SOAK_SECONDS=$(SOAK_SECONDS) $(PYTEST) -q -s tests/reliability/test_soak.py

# The firmware with AddressSanitizer and UndefinedBehaviorSanitizer, and the
# end-to-end suite on it.
ASAN_BUILD := $(BUILD)/unix-asan
test-asan: mpy-cross venv aedes
	@$(MAKE) --no-print-directory -C $(MICROPY_DIR)/ports/unix VARIANT_DIR=$(VARIANT_DIR) BUILD=$(ASAN_BUILD) MBEDTLS_DIR=$(MBEDTLS_DIR) \
	    USER_C_MODULES=$(TOP)/mpy_module -j$(JOBS) \
	    CFLAGS_EXTRA="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	    LDFLAGS_EXTRA="-fsanitize=address,undefined" STRIP=
	@set -e; for suite in tests/e2e tests/transports tests/reliability tests/persistence; do \
	    echo "== $$suite (ASan/UBSan firmware)"; \
	    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	        MQTT_FIRMWARE=$(ASAN_BUILD)/micropython $(PYTEST) -q $$suite; \
	done
