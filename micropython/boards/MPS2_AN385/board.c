/*
 * The DL-7450 device firmware's board layer on MPS2-AN385 (Cortex-M3):
 * the tick source, the console with a receive interrupt, the event hook and
 * the idle wait, and the semihosting calls the test runner uses.
 *
 * Ticks: CMSDK timer 0 runs at 25 MHz and wraps once a second; its
 * interrupt counts seconds, and the counter gives the fraction. Timer 1 is a
 * one-shot alarm for the idle wait: the CPU sleeps (WFI) until the earliest
 * of the wait's timeout, the next mqtt deadline and any interrupt.
 */
#include <string.h>

#include "py/runtime.h"
#include "py/mphal.h"
#include "py/stream.h"
#include "shared/runtime/interrupt_char.h"
#include "board.h"
#if MICROPY_PY_MQTT
#include "mqtt.h"
#else
// The same board without the mqtt module (for size comparisons).
#define mqtt_poll() (void)0
#define mqtt_poll_isr() (void)0
#define mqtt_next_deadline_ms() UINT64_MAX
static uint64_t mqtt_c_ticks_ms(void) {
    return mp_hal_ticks_ms();
}
#endif

#if !MICROPY_PY_LWIP
// The same board without a network.
#define board_net_poll() (void)0
#define board_net_schedule() (void)0
#define board_net_pending() false
#define board_net_next_timeout_ms() UINT32_MAX
#endif

/******************************************************************************/
// Interrupt control

mp_uint_t board_disable_irq(void) {
    mp_uint_t state;
    __asm volatile ("mrs %0, primask\n cpsid i" : "=r" (state) : : "memory");
    return state;
}

void board_enable_irq(mp_uint_t state) {
    __asm volatile ("msr primask, %0" : : "r" (state) : "memory");
}

static void board_nvic_enable(int irq) {
    BOARD_NVIC_ISER[irq / 32] = 1u << (irq % 32);
}

/******************************************************************************/
// Ticks

#define TICKS_PER_S (BOARD_PCLK_HZ)
#define TICKS_PER_MS (BOARD_PCLK_HZ / 1000u)
#define TICKS_PER_US (BOARD_PCLK_HZ / 1000000u)

static volatile uint32_t board_seconds;

void Timer0_Handler(void) {
    BOARD_TIMER0->INTSTATUS = 1;
    board_seconds++;
    // Deadlines (keep-alive, retries) and lwIP's timers while a script
    // computes: the VM runs the scheduled work at its next branch.
    mqtt_poll_isr();
    board_net_schedule();
}

// Seconds since boot and the ticks of the current second, read consistently.
static void board_now(uint32_t *s, uint32_t *sub) {
    mp_uint_t state = board_disable_irq();
    uint32_t secs = board_seconds;
    uint32_t v = BOARD_TIMER0->VALUE;
    if (BOARD_TIMER0->INTSTATUS & 1) {
        // wrapped, interrupt not served yet
        v = BOARD_TIMER0->VALUE;
        secs++;
    }
    board_enable_irq(state);
    *s = secs;
    *sub = (TICKS_PER_S - 1) - v;
}

mp_uint_t mp_hal_ticks_ms(void) {
    uint32_t s, sub;
    board_now(&s, &sub);
    return s * 1000u + sub / TICKS_PER_MS;
}

mp_uint_t mp_hal_ticks_us(void) {
    uint32_t s, sub;
    board_now(&s, &sub);
    return s * 1000000u + sub / TICKS_PER_US;
}

mp_uint_t mp_hal_ticks_cpu(void) {
    uint32_t s, sub;
    board_now(&s, &sub);
    return s * TICKS_PER_S + sub;
}

uint64_t mp_hal_time_ns(void) {
    uint32_t s, sub;
    board_now(&s, &sub);
    return (uint64_t)s * 1000000000u + (uint64_t)sub * (1000000000u / TICKS_PER_S);
}

// Sleeps of a millisecond or more run the event loop like the millisecond
// sleeps (callbacks run during time.sleep_us() too); the rest is a busy wait.
void mp_hal_delay_us(mp_uint_t us) {
    mp_uint_t start = mp_hal_ticks_us();
    mp_uint_t elapsed;
    while ((elapsed = mp_hal_ticks_us() - start) + 1000u <= us) {
        mp_event_wait_ms((us - elapsed) / 1000u);
    }
    while (mp_hal_ticks_us() - start < us) {
    }
}

// Sleeps run the event loop: callbacks run while the script sleeps.
void mp_hal_delay_ms(mp_uint_t ms) {
    mp_uint_t start = mp_hal_ticks_ms();
    mp_uint_t elapsed = 0;
    do {
        mp_event_wait_ms(ms - elapsed);
        elapsed = mp_hal_ticks_ms() - start;
    } while (elapsed < ms);
}

/******************************************************************************/
// The idle wait

void Timer1_Handler(void) {
    BOARD_TIMER1->INTSTATUS = 1;
    BOARD_TIMER1->CTRL = 0; // one-shot
}

static void board_alarm(uint32_t ms) {
    // The counter holds 171 s of 25 MHz ticks; a longer wait wakes early
    // and waits again.
    if (ms > 100000u) {
        ms = 100000u;
    }
    BOARD_TIMER1->CTRL = 0;
    BOARD_TIMER1->INTSTATUS = 1;
    BOARD_TIMER1->RELOAD = ms * TICKS_PER_MS;
    BOARD_TIMER1->VALUE = ms * TICKS_PER_MS;
    BOARD_TIMER1->CTRL = BOARD_TIMER_CTRL_EN | BOARD_TIMER_CTRL_IRQEN;
}

static bool board_rx_ready(void);

// MICROPY_INTERNAL_EVENT_HOOK: port-level work that never blocks. Received
// frames go into lwIP first, so that the clients see their sockets ready.
void board_event_hook(void) {
    board_net_poll();
    mqtt_poll();
}

// MICROPY_INTERNAL_WFE: sleep until an interrupt (a received frame, a
// console byte, a timer), the timeout (ms, or (mp_uint_t)-1 for none), the
// next mqtt deadline or lwIP's next timer, whichever comes first.
void board_wait_for_event(mp_uint_t timeout_ms) {
    uint64_t now = mqtt_c_ticks_ms();
    uint64_t deadline = mqtt_next_deadline_ms();
    uint64_t wait = timeout_ms == (mp_uint_t)-1 ? UINT64_MAX : timeout_ms;
    uint32_t net_wait = board_net_next_timeout_ms();
    if (net_wait != UINT32_MAX) {
        wait = MIN(wait, net_wait);
    }
    if (deadline != UINT64_MAX) {
        wait = deadline <= now ? 0 : MIN(wait, deadline - now);
    }
    if (wait == 0) {
        return;
    }
    if (wait != UINT64_MAX) {
        board_alarm(wait > UINT32_MAX ? UINT32_MAX : (uint32_t)wait);
    }
    // With interrupts masked, a pending interrupt still ends WFI; it is
    // served once they are unmasked. No wake-up is lost between the check and
    // the sleep.
    mp_uint_t state = board_disable_irq();
    if (MP_STATE_VM(sched_state) != MP_SCHED_PENDING && !board_rx_ready() && !board_net_pending()) {
        __asm volatile ("wfi");
    }
    board_enable_irq(state);
    BOARD_TIMER1->CTRL = 0;
}

/******************************************************************************/
// Console: UART 0 with a receive interrupt and a small ring buffer

static uint8_t board_rx_buf[256];
static volatile uint32_t board_rx_head;
static volatile uint32_t board_rx_tail;

static bool board_rx_ready(void) {
    return board_rx_head != board_rx_tail;
}

void UART0_RX_Handler(void) {
    BOARD_UART0->INTSTATUS = BOARD_UART_INT_RX;
    while (BOARD_UART0->STATE & BOARD_UART_STATE_RXFULL) {
        if (board_rx_head - board_rx_tail >= sizeof(board_rx_buf)) {
            // Full: leave the byte in the UART (qemu holds back the rest)
            // until the reader has made room.
            BOARD_UART0->CTRL &= ~BOARD_UART_CTRL_RX_IRQEN;
            return;
        }
        int c = BOARD_UART0->DATA & 0xff;
        if (c == mp_interrupt_char) {
            mp_sched_keyboard_interrupt();
            continue;
        }
        board_rx_buf[board_rx_head % sizeof(board_rx_buf)] = c;
        board_rx_head++;
    }
}

uintptr_t mp_hal_stdio_poll(uintptr_t poll_flags) {
    uintptr_t ret = 0;
    if ((poll_flags & MP_STREAM_POLL_RD) && board_rx_ready()) {
        ret |= MP_STREAM_POLL_RD;
    }
    if (poll_flags & MP_STREAM_POLL_WR) {
        ret |= MP_STREAM_POLL_WR;
    }
    return ret;
}

// Waiting for input runs the event loop: callbacks run at the idle REPL.
int mp_hal_stdin_rx_chr(void) {
    for (;;) {
        if (board_rx_ready()) {
            int c = board_rx_buf[board_rx_tail % sizeof(board_rx_buf)];
            board_rx_tail++;
            BOARD_UART0->CTRL |= BOARD_UART_CTRL_RX_IRQEN;
            return c;
        }
        mp_event_wait_indefinite();
    }
}

mp_uint_t mp_hal_stdout_tx_strn(const char *str, size_t len) {
    for (size_t i = 0; i < len; i++) {
        while (BOARD_UART0->STATE & BOARD_UART_STATE_TXFULL) {
        }
        BOARD_UART0->DATA = (uint8_t)str[i];
    }
    return len;
}

/******************************************************************************/
// Semihosting: the runner's command line, the script file, the exit status

#define SYS_OPEN (0x01)
#define SYS_CLOSE (0x02)
#define SYS_READ (0x06)
#define SYS_FLEN (0x0c)
#define SYS_GET_CMDLINE (0x15)
#define SYS_EXIT_EXTENDED (0x20)
#define ADP_STOPPED_APPLICATION_EXIT (0x20026)

static uint32_t board_semihosting(uint32_t num, const void *arg) {
    register uint32_t r0 __asm__ ("r0") = num;
    register const void *r1 __asm__ ("r1") = arg;
    __asm__ __volatile__ ("bkpt 0xab" : "+r" (r0) : "r" (r1) : "memory");
    return r0;
}

size_t board_cmdline(char *buf, size_t len) {
    struct {
        char *buf;
        uint32_t len;
    } args = { buf, len };
    if (len == 0 || board_semihosting(SYS_GET_CMDLINE, &args) != 0) {
        return 0;
    }
    return args.len < len ? args.len : len - 1;
}

int board_read_host_file(const char *path, char **data, size_t *len) {
    struct {
        const char *name;
        uint32_t mode;
        uint32_t len;
    } open_args = { path, 1 /* "rb" */, strlen(path) };
    int32_t h = (int32_t)board_semihosting(SYS_OPEN, &open_args);
    if (h < 0) {
        return -1;
    }
    uint32_t handle = h;
    int32_t n = (int32_t)board_semihosting(SYS_FLEN, &handle);
    int ret = -1;
    if (n >= 0) {
        char *buf = m_new(char, n + 1);
        struct {
            uint32_t handle;
            char *buf;
            uint32_t len;
        } read_args = { handle, buf, n };
        if (board_semihosting(SYS_READ, &read_args) == 0) {
            buf[n] = 0;
            *data = buf;
            *len = n;
            ret = 0;
        }
    }
    board_semihosting(SYS_CLOSE, &handle);
    return ret;
}

void board_exit(int status) {
    uint32_t args[2] = { ADP_STOPPED_APPLICATION_EXIT, (uint32_t)status };
    board_semihosting(SYS_EXIT_EXTENDED, args);
    for (;;) {
        __asm volatile ("wfi");
    }
}

// exit() ends the emulation with the status (sys.exit() from a callback,
// machine.reset()).
void exit(int status) {
    board_exit(status);
}

// A Rust panic in the mqtt core (never expected) ends the firmware.
void abort(void) {
    mp_printf(&mp_plat_print, "abort\n");
    board_exit(134);
}

/******************************************************************************/

void board_init(void) {
    BOARD_UART0->BAUDDIV = 16;
    BOARD_UART0->CTRL = BOARD_UART_CTRL_TX_EN | BOARD_UART_CTRL_RX_EN | BOARD_UART_CTRL_RX_IRQEN;
    board_nvic_enable(BOARD_IRQ_UART0_RX);

    BOARD_TIMER0->CTRL = 0;
    BOARD_TIMER0->RELOAD = TICKS_PER_S - 1;
    BOARD_TIMER0->VALUE = TICKS_PER_S - 1;
    BOARD_TIMER0->INTSTATUS = 1;
    BOARD_TIMER0->CTRL = BOARD_TIMER_CTRL_EN | BOARD_TIMER_CTRL_IRQEN;
    board_nvic_enable(BOARD_IRQ_TIMER0);

    BOARD_TIMER1->CTRL = 0;
    BOARD_TIMER1->INTSTATUS = 1;
    board_nvic_enable(BOARD_IRQ_TIMER1);

    #if MICROPY_PY_LWIP
    board_net_init();
    #endif
}

/******************************************************************************/
// The ARM EABI memory helpers that compiled Rust code calls (__aeabi_memcpy
// & co.), on top of the C library's routines (shared/libc/string0.c): one
// copy of each routine in flash instead of a second one from Rust's
// compiler_builtins, whose definitions are weak.

void __aeabi_memcpy(void *dest, const void *src, size_t n) {
    memcpy(dest, src, n);
}
void __aeabi_memcpy4(void *dest, const void *src, size_t n) __attribute__((alias("__aeabi_memcpy")));
void __aeabi_memcpy8(void *dest, const void *src, size_t n) __attribute__((alias("__aeabi_memcpy")));

void __aeabi_memmove(void *dest, const void *src, size_t n) {
    memmove(dest, src, n);
}
void __aeabi_memmove4(void *dest, const void *src, size_t n) __attribute__((alias("__aeabi_memmove")));
void __aeabi_memmove8(void *dest, const void *src, size_t n) __attribute__((alias("__aeabi_memmove")));

void __aeabi_memset(void *dest, size_t n, int c) {
    memset(dest, c, n);
}
void __aeabi_memset4(void *dest, size_t n, int c) __attribute__((alias("__aeabi_memset")));
void __aeabi_memset8(void *dest, size_t n, int c) __attribute__((alias("__aeabi_memset")));

void __aeabi_memclr(void *dest, size_t n) {
    memset(dest, 0, n);
}
void __aeabi_memclr4(void *dest, size_t n) __attribute__((alias("__aeabi_memclr")));
void __aeabi_memclr8(void *dest, size_t n) __attribute__((alias("__aeabi_memclr")));
