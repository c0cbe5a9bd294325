/*
 * DL-7450 device firmware: MicroPython on the Cortex-M3 of an MPS2-AN385
 * board (qemu -machine mps2-an385), with the `mqtt` module built in.
 */
#include <stdint.h>

#define MICROPY_CONFIG_ROM_LEVEL            (MICROPY_CONFIG_ROM_LEVEL_EXTRA_FEATURES)

// Code emitters for the Thumb-2 CPU.
#define MICROPY_EMIT_THUMB                  (1)
#define MICROPY_EMIT_INLINE_THUMB           (1)
#define MICROPY_MAKE_POINTER_CALLABLE(p)    ((void *)((mp_uint_t)(p) | 1))

#define MICROPY_MALLOC_USES_ALLOCATED_SIZE  (1)
#define MICROPY_MEM_STATS                   (1)
#define MICROPY_ENABLE_GC                   (1)
#define MICROPY_ENABLE_EMERGENCY_EXCEPTION_BUF (1)
#define MICROPY_LONGINT_IMPL                (MICROPY_LONGINT_IMPL_MPZ)
#define MICROPY_FLOAT_IMPL                  (MICROPY_FLOAT_IMPL_FLOAT)
#define MICROPY_WARNINGS                    (1)
#define MICROPY_HELPER_REPL                 (1)
#define MICROPY_PY_SYS_PLATFORM             "dl7450"
#define MICROPY_PY_SYS_STDIO_BUFFER         (0)
#define MICROPY_PY_SYS_ATEXIT               (1)
#define MICROPY_PY_SELECT                   (1)
#define MICROPY_PY_ASYNCIO                  (0)
#define MICROPY_PY_MACHINE                  (1)
#define MICROPY_PY_MACHINE_INCLUDEFILE      "ports/qemu/modmachine.c"
#define MICROPY_PY_MACHINE_RESET            (1)
#define MICROPY_PY_MACHINE_PIN_BASE         (1)
#define MICROPY_VFS                         (1)
#define MICROPY_READER_VFS                  (1)
#define MICROPY_PERSISTENT_CODE_LOAD        (1)

// The socket module: MicroPython's extmod/modlwip.c over lwIP and the
// board's LAN9118 driver (board_eth.c). Non-blocking sockets poll through
// mp_event_wait_ms(), whose event hook feeds lwIP.
#ifndef MICROPY_PY_LWIP
#define MICROPY_PY_LWIP                     (0)
#endif

// time: ticks from the CMSDK timer, sleeps that run the event loop.
#define MICROPY_PY_TIME                     (1)
#define MICROPY_PY_TIME_TIME_TIME_NS        (1)
#define MICROPY_PY_TIME_INCLUDEFILE         "modtime_board.c"

// The event loop. The mqtt module schedules its pump with a static node, so
// it never competes with Python callbacks for the scheduler's queue. Every
// wait runs the event hook, which asks the mqtt clients whether they have
// work, and the idle wait sleeps (WFI) until the next interrupt or deadline.
#define MICROPY_ENABLE_SCHEDULER            (1)
#define MICROPY_SCHEDULER_STATIC_NODES      (1)
#define MICROPY_SCHEDULER_DEPTH             (8)
#define MICROPY_INTERNAL_EVENT_HOOK         board_event_hook()
#define MICROPY_INTERNAL_WFE(TIMEOUT_MS)    board_wait_for_event(TIMEOUT_MS)
#define MICROPY_BEGIN_ATOMIC_SECTION()      board_disable_irq()
#define MICROPY_END_ATOMIC_SECTION(state)   board_enable_irq(state)

// Type definitions for the machine.
#define MP_SSIZE_MAX (0x7fffffff)
#define UINT_FMT "%lu"
#define INT_FMT "%ld"
typedef int32_t mp_int_t;   // must be pointer size
typedef uint32_t mp_uint_t; // must be pointer size
typedef long mp_off_t;

#include <alloca.h>

// An implementation of log2 that is not a macro.
#define MP_NEED_LOG2 (1)

#define MP_STATE_PORT MP_STATE_VM

void board_event_hook(void);
void board_wait_for_event(mp_uint_t timeout_ms);
mp_uint_t board_disable_irq(void);
void board_enable_irq(mp_uint_t state);
