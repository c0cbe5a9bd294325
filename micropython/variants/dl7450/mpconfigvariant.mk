# DL-7450 host firmware variant of the unix port.
# The Debian source archive has no lib/ submodules: TLS is mbedtls from the
# system (libmbedtls-dev), libffi from the system, no btree, and the frozen
# manifest pulls nothing from micropython-lib.
FROZEN_MANIFEST ?= $(VARIANT_DIR)/manifest.py
MICROPY_SSL_AXTLS = 0
MICROPY_SSL_MBEDTLS = 1
MICROPY_PY_BTREE = 0
MICROPY_PY_FFI = 1
