// The HAL of the DL-7450 device firmware (MPS2-AN385).
#include <stddef.h>
#include "shared/runtime/interrupt_char.h"
