/*
 * Start-up code and vector table of the DL-7450 device firmware on
 * MPS2-AN385: the Cortex-M3 system exceptions (handlers from the qemu port's
 * mcu/arm/errorhandler.c) and the board's interrupts.
 */
#include <stdint.h>

#include "board.h"

extern uint32_t _estack, _sidata, _sdata, _edata, _sbss, _ebss;

int main(void);

void NMI_Handler(void);
void HardFault_Handler(void);
void MemManage_Handler(void);
void BusFault_Handler(void);
void UsageFault_Handler(void);
void SVC_Handler(void);
void DebugMon_Handler(void);
void PendSV_Handler(void);
void SysTick_Handler(void);
void UART0_RX_Handler(void);
void Timer0_Handler(void);
void Timer1_Handler(void);
void ETH_Handler(void);

static void Unused_Handler(void) {
    for (;;) {
    }
}

__attribute__((naked, noreturn)) void Reset_Handler(void) {
    __asm volatile ("ldr r0, =_estack\n mov sp, r0");
    for (uint32_t *src = &_sidata, *dest = &_sdata; dest < &_edata;) {
        *dest++ = *src++;
    }
    for (uint32_t *dest = &_sbss; dest < &_ebss;) {
        *dest++ = 0;
    }
    board_init();
    board_exit(main());
}

#define BOARD_IRQ_COUNT (32)

__attribute__((section(".isr_vector"), used))
const uint32_t isr_vector[16 + BOARD_IRQ_COUNT] = {
    [0] = (uint32_t)&_estack,
    [1] = (uint32_t)&Reset_Handler,
    [2] = (uint32_t)&NMI_Handler,
    [3] = (uint32_t)&HardFault_Handler,
    [4] = (uint32_t)&MemManage_Handler,
    [5] = (uint32_t)&BusFault_Handler,
    [6] = (uint32_t)&UsageFault_Handler,
    [11] = (uint32_t)&SVC_Handler,
    [12] = (uint32_t)&DebugMon_Handler,
    [14] = (uint32_t)&PendSV_Handler,
    [15] = (uint32_t)&SysTick_Handler,
    [16 + 1 ... 16 + BOARD_IRQ_COUNT - 1] = (uint32_t)&Unused_Handler,
    [16 + BOARD_IRQ_UART0_RX] = (uint32_t)&UART0_RX_Handler,
    [16 + BOARD_IRQ_TIMER0] = (uint32_t)&Timer0_Handler,
    [16 + BOARD_IRQ_TIMER1] = (uint32_t)&Timer1_Handler,
    #if MICROPY_PY_LWIP
    [16 + BOARD_IRQ_ETH] = (uint32_t)&ETH_Handler,
    #endif
};
