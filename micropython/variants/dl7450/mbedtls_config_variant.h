/*
 * mbedtls configuration of the DL-7450 host firmware (MBEDTLS_CONFIG_FILE):
 * MicroPython's common configuration for its ports, plus what the unix port
 * adds to it.
 */
#ifndef DL7450_MBEDTLS_CONFIG_VARIANT_H
#define DL7450_MBEDTLS_CONFIG_VARIANT_H

// AES-CTR for cryptolib, and the timing module (DTLS timers).
#define MBEDTLS_CIPHER_MODE_CTR
#define MBEDTLS_TIMING_C

// PEM certificates and keys: the mqtt module's trust_store, key_store and
// private_key take PEM as well as DER (MicroPython's common configuration
// parses DER only).
#define MBEDTLS_PEM_PARSE_C
#define MBEDTLS_BASE64_C

#include "extmod/mbedtls/mbedtls_config_common.h"

#endif // DL7450_MBEDTLS_CONFIG_VARIANT_H
