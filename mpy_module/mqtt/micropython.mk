# The `mqtt` user C module (make-based ports: unix, stm32, ...).
#
# Add the folder that contains this one to USER_C_MODULES. The Rust core is
# built with cargo from the crate two levels up, after the port's generated
# headers (bindgen reads them), and linked as one partially-linked object so
# that Rust's compiler_builtins never replace the port's libm/libc symbols.

MQTT_MOD_DIR := $(USERMOD_DIR)
MQTT_CRATE_DIR := $(abspath $(MQTT_MOD_DIR)/../..)
MQTT_CORE_OBJ := $(BUILD)/mqtt_core/mqtt_core.o

SRC_USERMOD_C += $(MQTT_MOD_DIR)/modmqtt.c $(MQTT_MOD_DIR)/mqtt_glue.c $(MQTT_MOD_DIR)/mqtt_loop_unix.c $(MQTT_MOD_DIR)/mqtt_loop_bare.c
CFLAGS_USERMOD += -I$(MQTT_MOD_DIR) -DMICROPY_PY_MQTT=1
LDFLAGS_USERMOD += $(MQTT_CORE_OBJ)

# Target triple for cargo; empty means the host (the unix port).
MQTT_RUST_TARGET ?=
# For a target the Rust toolchain has no standard library for: the rustc to
# use (one whose sysroot has the library's source) and the crates to build
# from source (cargo's -Zbuild-std), e.g. MQTT_RUSTC=/usr/bin/rustc
# MQTT_BUILD_STD=core.
MQTT_RUSTC ?=
MQTT_BUILD_STD ?=
# Extra rustc flags for the core (a port's size or speed trade-offs).
MQTT_RUSTFLAGS ?=
# Ports that do not set NM get the cross tool next to their compiler.
MQTT_NM := $(if $(NM),$(NM),$(CROSS_COMPILE)nm)
# 0: build without ws:// and wss:// (they then raise MqttError -14).
MQTT_WEBSOCKET ?= 1
# 0: build without persistence=DIR (a persistence directory then raises MqttError -2).
MQTT_PERSISTENCE ?= 1
# The headers bindgen needs from the port's build.
MQTT_GENHDRS := $(HEADER_BUILD)/qstrdefs.generated.h $(HEADER_BUILD)/root_pointers.h $(HEADER_BUILD)/moduledefs.h
ifeq ($(MICROPY_ROM_TEXT_COMPRESSION),1)
MQTT_GENHDRS += $(HEADER_BUILD)/compressed.data.h
endif

$(MQTT_CORE_OBJ): $(MQTT_GENHDRS) FORCE
	$(ECHO) "CARGO mqtt core"
	$(Q)$(MKDIR) -p $(dir $@)
	$(Q)MQTT_MPY_CFLAGS='$(CFLAGS)' \
	    MQTT_MPY_CWD='$(CURDIR)' \
	    MQTT_MPY_HEADER='$(abspath $(MQTT_MOD_DIR)/mqtt_bindgen.h)' \
	    MQTT_RUST_TARGET='$(MQTT_RUST_TARGET)' MQTT_WEBSOCKET='$(MQTT_WEBSOCKET)' \
	    MQTT_PERSISTENCE='$(MQTT_PERSISTENCE)' \
	    MQTT_RUSTC='$(MQTT_RUSTC)' MQTT_BUILD_STD='$(MQTT_BUILD_STD)' MQTT_RUSTFLAGS='$(MQTT_RUSTFLAGS)' \
	    CC='$(CC)' LD='$(LD)' OBJCOPY='$(OBJCOPY)' NM='$(MQTT_NM)' \
	    $(MQTT_MOD_DIR)/build-core.sh '$(MQTT_CRATE_DIR)' '$(abspath $@)'

# The shim's objects wait for the core, so the link sees a fresh object.
$(BUILD)/mqtt/modmqtt.o: $(MQTT_CORE_OBJ)

ifneq ($(FROZEN_MANIFEST),)
# makemanifest.py regenerates frozen_content.c only when a frozen .py file
# changed, not when the qstr table did: a new qstr of this module that a
# frozen module also uses would then be defined twice. Drop the stale file
# whenever the qstr table changes.
$(BUILD)/frozen_content.c: $(BUILD)/mqtt_core/qstr.stamp
$(BUILD)/mqtt_core/qstr.stamp: $(HEADER_BUILD)/qstrdefs.generated.h
	$(Q)$(MKDIR) -p $(dir $@)
	$(Q)$(RM) -f $(BUILD)/frozen_content.c
	$(Q)touch $@
endif
