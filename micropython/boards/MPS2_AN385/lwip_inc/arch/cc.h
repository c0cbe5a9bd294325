// lwIP's compiler and platform definitions for the DL-7450 device firmware
// (arm-none-eabi-gcc, little-endian Cortex-M3).
#ifndef DL7450_LWIP_ARCH_CC_H
#define DL7450_LWIP_ARCH_CC_H

#include <stdint.h>

#ifndef BYTE_ORDER
#define BYTE_ORDER LITTLE_ENDIAN
#endif

// newlib's headers are present, but the firmware links no C library: lwIP
// uses its own ctype replacements.
#define LWIP_NO_CTYPE_H 1

#define LWIP_PLATFORM_DIAG(x)
// An lwIP assertion (never expected) stops the firmware like a core panic.
void abort(void);
#define LWIP_PLATFORM_ASSERT(x) abort()

#endif // DL7450_LWIP_ARCH_CC_H
