# DL-7450 host firmware variant of the unix port.
# The Debian source archive has no lib/ submodules: libffi from the system, no
# btree, and the frozen manifest pulls nothing from micropython-lib.
FROZEN_MANIFEST ?= $(VARIANT_DIR)/manifest.py
MICROPY_SSL_AXTLS = 0
MICROPY_PY_BTREE = 0
MICROPY_PY_FFI = 1

# TLS: mbedtls 3.6 compiled into the firmware, as MicroPython's device ports do
# it (lib/mbedtls there; here Debian's mbedtls source package, fetched by
# tools/fetch-source.sh into MBEDTLS_DIR). Debian's MicroPython links the
# system's libmbedtls when MICROPY_SSL_MBEDTLS is 1 in make (its patch
# 0006-extmod-Use-system-mbedtls replaced extmod.mk's mbedtls sources by
# -lmbedtls), so that make switch stays off and the variant gives the C
# define, the configuration and the sources itself.
MICROPY_SSL_MBEDTLS = 0
MBEDTLS_DIR ?= $(abspath $(VARIANT_DIR)/../../mbedtls)
ifeq ($(wildcard $(MBEDTLS_DIR)/library/ssl_tls.c),)
$(error no mbedtls source in MBEDTLS_DIR=$(MBEDTLS_DIR) (tools/fetch-source.sh mbedtls DIR fetches it))
endif
CFLAGS_THIRDPARTY += -DMICROPY_SSL_MBEDTLS=1 \
	-DMBEDTLS_CONFIG_FILE='"mbedtls_config_variant.h"' -I$(MBEDTLS_DIR)/include
# The sources are named relative to MBEDTLS_DIR's parent, so that their objects
# land in $(BUILD)/<name of MBEDTLS_DIR>/library/.
vpath %.c $(dir $(MBEDTLS_DIR))
SRC_THIRDPARTY_C += lib/mbedtls_errors/mp_mbedtls_errors.c
SRC_THIRDPARTY_C += $(addprefix $(notdir $(MBEDTLS_DIR))/library/,\
	aes.c \
	aesni.c \
	asn1parse.c \
	asn1write.c \
	base64.c \
	bignum_core.c \
	bignum_mod.c \
	bignum_mod_raw.c \
	bignum.c \
	camellia.c \
	ccm.c \
	chacha20.c \
	chachapoly.c \
	cipher.c \
	cipher_wrap.c \
	nist_kw.c \
	aria.c \
	cmac.c \
	constant_time.c \
	mps_reader.c \
	mps_trace.c \
	ctr_drbg.c \
	debug.c \
	des.c \
	dhm.c \
	ecdh.c \
	ecdsa.c \
	ecjpake.c \
	ecp.c \
	ecp_curves.c \
	entropy.c \
	entropy_poll.c \
	gcm.c \
	hmac_drbg.c \
	md5.c \
	md.c \
	oid.c \
	padlock.c \
	pem.c \
	pk.c \
	pkcs12.c \
	pkcs5.c \
	pkparse.c \
	pk_ecc.c \
	pk_wrap.c \
	pkwrite.c \
	platform.c \
	platform_util.c \
	poly1305.c \
	ripemd160.c \
	rsa.c \
	rsa_alt_helpers.c \
	sha1.c \
	sha256.c \
	sha512.c \
	ssl_cache.c \
	ssl_ciphersuites.c \
	ssl_client.c \
	ssl_cookie.c \
	ssl_debug_helpers_generated.c \
	ssl_msg.c \
	ssl_ticket.c \
	ssl_tls.c \
	ssl_tls12_client.c \
	ssl_tls12_server.c \
	timing.c \
	x509.c \
	x509_create.c \
	x509_crl.c \
	x509_crt.c \
	x509_csr.c \
	x509write_crt.c \
	x509write_csr.c \
	)
