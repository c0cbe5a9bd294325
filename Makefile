# DL-7450 firmware with the `mqtt` module: every entry point.
#
#   make            build/micropython (fetches MicroPython and the packages it needs)
#   make demo       build, start a local mosquitto, run examples/workshop_app.py
#   make test       everything: cargo test + end-to-end tests of the firmware
#                   (against mosquitto, and a core subset against aedes too)
#   make MICROPY_DIR=/path/to/micropython   build against an existing tree

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)

TOP := $(CURDIR)
MICROPY_DIR ?= $(TOP)/micropython/src
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
DEB_PACKAGES := gcc make pkg-config dpkg-dev xz-utils libmbedtls-dev libffi-dev \
	libclang-dev mosquitto mosquitto-clients python3-venv openssl cmake

PORT_MAKE = $(MAKE) -C $(MICROPY_DIR)/ports/unix \
	VARIANT_DIR=$(VARIANT_DIR) BUILD=$(PORT_BUILD) \
	USER_C_MODULES=$(TOP)/mpy_module $(PORT_MAKE_EXTRA)

.PHONY: all firmware deps fetch mpy-cross test test-rust test-e2e demo clean distclean venv

all: firmware

deps:
	@tools/ensure-packages.sh $(DEB_PACKAGES)

ifeq ($(MICROPY_DIR),$(TOP)/micropython/src)
fetch: deps
	@tools/fetch-micropython.sh $(MICROPY_DIR) $(TOP)/micropython/download
else
fetch: deps
	@test -f $(MICROPY_DIR)/py/mpconfig.h || { echo "MICROPY_DIR=$(MICROPY_DIR) is not a MicroPython tree"; exit 1; }
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

test: firmware venv aedes test-rust fuzz-smoke test-e2e

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

test-rust:
	cargo test --quiet

# Each folder in its own pytest run: their conftest modules share a name. Tests marked
# `brokers` in tests/e2e run against mosquitto and aedes (MQTT_BROKERS).
E2E_SUITES := tests/e2e tests/transports tests/reliability tests/cmake
test-e2e: firmware venv aedes
	@set -e; for suite in $(E2E_SUITES); do \
	    echo "== $$suite"; \
	    MQTT_FIRMWARE=$(FIRMWARE) MICROPY_DIR=$(MICROPY_DIR) $(PYTEST) -q $$suite; \
	done

demo: firmware
	@tools/demo.sh $(FIRMWARE)

clean:
	rm -rf $(BUILD) target

distclean: clean
	rm -rf micropython/src micropython/download $(VENV)

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

# Performance: this module against umqtt.simple, paho-mqtt and mosquitto_pub.
.PHONY: bench
bench: firmware venv
	@MQTT_FIRMWARE=$(FIRMWARE) VENV=$(VENV) tools/bench/run.sh

# Reliability: long runs (make test runs short versions).
SOAK_SECONDS ?= 600
.PHONY: soak test-asan
soak: firmware venv
	MQTT_FIRMWARE=$(FIRMWARE) SOAK_SECONDS=$(SOAK_SECONDS) $(PYTEST) -q -s tests/reliability/test_soak.py

# The firmware with AddressSanitizer and UndefinedBehaviorSanitizer, and the
# end-to-end suite on it.
ASAN_BUILD := $(BUILD)/unix-asan
test-asan: mpy-cross venv aedes
	@$(MAKE) --no-print-directory -C $(MICROPY_DIR)/ports/unix VARIANT_DIR=$(VARIANT_DIR) BUILD=$(ASAN_BUILD) \
	    USER_C_MODULES=$(TOP)/mpy_module -j$(JOBS) \
	    CFLAGS_EXTRA="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	    LDFLAGS_EXTRA="-fsanitize=address,undefined" STRIP=
	@set -e; for suite in tests/e2e tests/transports tests/reliability; do \
	    echo "== $$suite (ASan/UBSan firmware)"; \
	    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	        MQTT_FIRMWARE=$(ASAN_BUILD)/micropython $(PYTEST) -q $$suite; \
	done
