// The MPS2-AN385 peripherals the DL-7450 device firmware uses.
#ifndef DL7450_BOARD_H
#define DL7450_BOARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// CMSDK APB timer (25 MHz peripheral clock on MPS2-AN385).
typedef struct {
    volatile uint32_t CTRL;
    volatile uint32_t VALUE;
    volatile uint32_t RELOAD;
    volatile uint32_t INTSTATUS; // write 1 to clear
} board_timer_t;

#define BOARD_TIMER0 ((board_timer_t *)0x40000000)
#define BOARD_TIMER1 ((board_timer_t *)0x40001000)
#define BOARD_TIMER_CTRL_EN (1u << 0)
#define BOARD_TIMER_CTRL_IRQEN (1u << 3)
#define BOARD_PCLK_HZ (25000000u)

// CMSDK APB UART 0: the console (qemu -serial stdio).
typedef struct {
    volatile uint32_t DATA;
    volatile uint32_t STATE;
    volatile uint32_t CTRL;
    volatile uint32_t INTSTATUS; // write 1 to clear
    volatile uint32_t BAUDDIV;
} board_uart_t;

#define BOARD_UART0 ((board_uart_t *)0x40004000)
#define BOARD_UART_STATE_TXFULL (1u << 0)
#define BOARD_UART_STATE_RXFULL (1u << 1)
#define BOARD_UART_CTRL_TX_EN (1u << 0)
#define BOARD_UART_CTRL_RX_EN (1u << 1)
#define BOARD_UART_CTRL_RX_IRQEN (1u << 3)
#define BOARD_UART_INT_RX (1u << 1)

// Interrupt numbers (NVIC inputs) of the AN385 FPGA image.
#define BOARD_IRQ_UART0_RX (0)
#define BOARD_IRQ_TIMER0 (8)
#define BOARD_IRQ_TIMER1 (9)
#define BOARD_IRQ_ETH (13)

#define BOARD_NVIC_ISER ((volatile uint32_t *)0xe000e100)

void board_init(void);
size_t board_cmdline(char *buf, size_t len);
int board_read_host_file(const char *path, char **data, size_t *len);
void board_exit(int status) __attribute__((noreturn));

// The network (board_eth.c): the LAN9118 under lwIP.
void board_net_init(void);
void board_net_poll(void);
void board_net_schedule(void);
bool board_net_pending(void);
uint32_t board_net_next_timeout_ms(void);

#endif // DL7450_BOARD_H
