/*
 * The DL-7450 device firmware's network: an SMSC LAN9118 Ethernet
 * controller at 0x40200000 (MPS2-AN385, NVIC input 13) under lwIP.
 *
 * The driver is polled. The controller's interrupt (receive status FIFO
 * not empty) only wakes the CPU from its idle wait; the board's event hook
 * drains the receive FIFO into lwIP and runs lwIP's timers. All lwIP calls
 * happen in thread mode, so lwIP needs no locking (NO_SYS).
 *
 * The address is static, on qemu's user network: 10.0.2.15/24, gateway
 * 10.0.2.2. tools/device-run makes the host's forwarded loopback ports
 * reachable at 10.0.2.100.
 */
#include <string.h>

#include "py/mphal.h"
#include "py/runtime.h"
#include "board.h"
#if MICROPY_PY_MQTT
#include "mqtt.h"
#else
#define mqtt_poll() (void)0
#endif

#if MICROPY_PY_LWIP

#include "lwip/init.h"
#include "lwip/netif.h"
#include "lwip/etharp.h"
#include "lwip/timeouts.h"
#include "netif/ethernet.h"

// Registers (byte offsets).
#define ETH_BASE            (0x40200000u)
#define ETH_REG(off)        (*(volatile uint32_t *)(ETH_BASE + (off)))
#define ETH_RX_DATA         ETH_REG(0x00)
#define ETH_TX_DATA         ETH_REG(0x20)
#define ETH_RX_STATUS       ETH_REG(0x40)
#define ETH_ID_REV          ETH_REG(0x50)
#define ETH_IRQ_CFG         ETH_REG(0x54)
#define ETH_INT_STS         ETH_REG(0x58)
#define ETH_INT_EN          ETH_REG(0x5c)
#define ETH_BYTE_TEST       ETH_REG(0x64)
#define ETH_FIFO_INT        ETH_REG(0x68)
#define ETH_RX_CFG          ETH_REG(0x6c)
#define ETH_TX_CFG          ETH_REG(0x70)
#define ETH_HW_CFG          ETH_REG(0x74)
#define ETH_RX_FIFO_INF     ETH_REG(0x7c)
#define ETH_TX_FIFO_INF     ETH_REG(0x80)
#define ETH_PMT_CTRL        ETH_REG(0x84)
#define ETH_MAC_CSR_CMD     ETH_REG(0xa4)
#define ETH_MAC_CSR_DATA    ETH_REG(0xa8)

#define ETH_BYTE_TEST_VALUE (0x87654321u)
#define ETH_HW_CFG_SRST     (1u << 0)
#define ETH_PMT_CTRL_READY  (1u << 0)
#define ETH_IRQ_CFG_TYPE    (1u << 0)  // push-pull
#define ETH_IRQ_CFG_POL     (1u << 4)  // active high
#define ETH_IRQ_CFG_EN      (1u << 8)
#define ETH_INT_RSFL        (1u << 3)  // receive status FIFO level
#define ETH_TX_CFG_ON       (1u << 1)
#define ETH_TX_CFG_TXSAO    (1u << 2)  // no transmit status kept
#define ETH_MAC_CSR_BUSY    (1u << 31)
#define ETH_MAC_CSR_READ    (1u << 30)

// MAC registers behind MAC_CSR_CMD/DATA.
#define ETH_MAC_CR          (1)
#define ETH_MAC_ADDRH       (2)
#define ETH_MAC_ADDRL       (3)
#define ETH_MAC_CR_RXEN     (1u << 2)
#define ETH_MAC_CR_TXEN     (1u << 3)
#define ETH_MAC_CR_FDPX     (1u << 20)

// Transmit command words.
#define ETH_TX_CMD_A_LAST   (1u << 12)
#define ETH_TX_CMD_A_FIRST  (1u << 13)

// Receive status word.
#define ETH_RX_STS_ERROR    (1u << 15)
#define ETH_RX_STS_LEN(s)   (((s) >> 16) & 0x3fff)

#define ETH_FRAME_MAX       (1536)

// getaddrinfo()'s address family preference, which the network module keeps
// on ports that have one; this board has IPv4 only.
int mp_mod_network_prefer_dns_use_ip_version = 4;

static struct netif board_netif;
static bool board_eth_present;
// One frame, word-aligned, for the FIFO copies in both directions.
static uint32_t board_eth_frame[ETH_FRAME_MAX / 4];

static uint32_t eth_mac_read(uint32_t reg) {
    ETH_MAC_CSR_CMD = ETH_MAC_CSR_BUSY | ETH_MAC_CSR_READ | reg;
    while (ETH_MAC_CSR_CMD & ETH_MAC_CSR_BUSY) {
    }
    return ETH_MAC_CSR_DATA;
}

static void eth_mac_write(uint32_t reg, uint32_t value) {
    ETH_MAC_CSR_DATA = value;
    ETH_MAC_CSR_CMD = ETH_MAC_CSR_BUSY | reg;
    while (ETH_MAC_CSR_CMD & ETH_MAC_CSR_BUSY) {
    }
}

static bool eth_rx_pending(void) {
    return ((ETH_RX_FIFO_INF >> 16) & 0xff) != 0;
}

// lwIP's link output: one frame into the transmit FIFO, as one segment.
static err_t eth_link_output(struct netif *netif, struct pbuf *p) {
    (void)netif;
    uint16_t len = p->tot_len;
    if (len > ETH_FRAME_MAX) {
        return ERR_BUF;
    }
    pbuf_copy_partial(p, board_eth_frame, len, 0);
    uint32_t words = (len + 3) / 4;
    // Free space in bytes; the controller sends each frame as soon as its
    // last word is in, so the wait is short.
    for (int tries = 0; (ETH_TX_FIFO_INF & 0xffff) < words * 4 + 8; tries++) {
        if (tries > 100000) {
            return ERR_IF;
        }
    }
    ETH_TX_DATA = ETH_TX_CMD_A_FIRST | ETH_TX_CMD_A_LAST | len;
    ETH_TX_DATA = ((uint32_t)len << 16) | len; // tag, packet length
    for (uint32_t i = 0; i < words; i++) {
        ETH_TX_DATA = board_eth_frame[i];
    }
    return ERR_OK;
}

// One received frame from the FIFO into lwIP; false when the FIFO is empty.
static bool eth_receive_one(void) {
    if (!eth_rx_pending()) {
        return false;
    }
    uint32_t status = ETH_RX_STATUS;
    uint32_t len = ETH_RX_STS_LEN(status); // with the 4-byte FCS
    uint32_t words = (len + 3) / 4;
    bool ok = !(status & ETH_RX_STS_ERROR) && len > 4 && words <= ETH_FRAME_MAX / 4;
    for (uint32_t i = 0; i < words; i++) {
        uint32_t w = ETH_RX_DATA;
        if (ok) {
            board_eth_frame[i] = w;
        }
    }
    if (!ok) {
        return true;
    }
    len -= 4;
    struct pbuf *p = pbuf_alloc(PBUF_RAW, len, PBUF_POOL);
    if (p == NULL) {
        return true; // out of buffers: dropped, TCP retransmits
    }
    pbuf_take(p, board_eth_frame, len);
    if (board_netif.input(p, &board_netif) != ERR_OK) {
        pbuf_free(p);
    }
    return true;
}

static err_t eth_netif_init(struct netif *netif) {
    uint32_t lo = eth_mac_read(ETH_MAC_ADDRL);
    uint32_t hi = eth_mac_read(ETH_MAC_ADDRH);
    netif->hwaddr_len = 6;
    netif->hwaddr[0] = lo;
    netif->hwaddr[1] = lo >> 8;
    netif->hwaddr[2] = lo >> 16;
    netif->hwaddr[3] = lo >> 24;
    netif->hwaddr[4] = hi;
    netif->hwaddr[5] = hi >> 8;
    netif->mtu = 1500;
    netif->flags = NETIF_FLAG_BROADCAST | NETIF_FLAG_ETHARP | NETIF_FLAG_ETHERNET;
    netif->name[0] = 'e';
    netif->name[1] = 'n';
    netif->output = etharp_output;
    netif->linkoutput = eth_link_output;
    return ERR_OK;
}

// While a script computes, the event hook does not run: received frames
// and lwIP's timers are then served from the scheduler, which the VM runs
// at its next branch (never inside an lwIP call: lwIP runs no Python code).
static mp_sched_node_t board_net_node;

static void board_net_sched(mp_sched_node_t *node) {
    (void)node;
    board_net_poll();
    mqtt_poll();
}

void board_net_schedule(void) {
    if (board_eth_present) {
        mp_sched_schedule_node(&board_net_node, board_net_sched);
    }
}

// The Ethernet interrupt: clearing the level flag drops the line; the
// frames stay in the FIFO until the event hook or the scheduled poll
// takes them.
void ETH_Handler(void) {
    ETH_INT_STS = ETH_INT_RSFL;
    board_net_schedule();
}

void board_net_init(void) {
    lwip_init();
    if (ETH_BYTE_TEST != ETH_BYTE_TEST_VALUE || (ETH_ID_REV >> 16) != 0x0118) {
        return;
    }
    ETH_HW_CFG = ETH_HW_CFG_SRST;
    for (int tries = 0; (ETH_HW_CFG & ETH_HW_CFG_SRST) || !(ETH_PMT_CTRL & ETH_PMT_CTRL_READY); tries++) {
        if (tries > 100000) {
            return;
        }
    }
    ETH_RX_CFG = 0;
    ETH_TX_CFG = ETH_TX_CFG_ON | ETH_TX_CFG_TXSAO;
    ETH_FIFO_INT = 0; // interrupt as soon as one frame is in
    eth_mac_write(ETH_MAC_CR, ETH_MAC_CR_RXEN | ETH_MAC_CR_TXEN | ETH_MAC_CR_FDPX);

    ip4_addr_t addr, mask, gw;
    IP4_ADDR(&addr, 10, 0, 2, 15);
    IP4_ADDR(&mask, 255, 255, 255, 0);
    IP4_ADDR(&gw, 10, 0, 2, 2);
    if (netif_add(&board_netif, &addr, &mask, &gw, NULL, eth_netif_init, ethernet_input) == NULL) {
        return;
    }
    netif_set_default(&board_netif);
    netif_set_up(&board_netif);
    netif_set_link_up(&board_netif);
    board_eth_present = true;

    ETH_INT_STS = 0xffffffffu;
    ETH_INT_EN = ETH_INT_RSFL;
    ETH_IRQ_CFG = ETH_IRQ_CFG_EN | ETH_IRQ_CFG_POL | ETH_IRQ_CFG_TYPE;
    BOARD_NVIC_ISER[BOARD_IRQ_ETH / 32] = 1u << (BOARD_IRQ_ETH % 32);
}

// From the event hook: received frames into lwIP, then lwIP's timers. A
// bounded number of frames per pass, so that a flood cannot starve the VM.
void board_net_poll(void) {
    static bool busy;
    if (busy) {
        return;
    }
    busy = true;
    if (board_eth_present) {
        for (int n = 0; n < 32 && eth_receive_one(); n++) {
        }
    }
    sys_check_timeouts();
    busy = false;
}

// True when received frames wait in the FIFO (the idle wait does not sleep).
bool board_net_pending(void) {
    return board_eth_present && eth_rx_pending();
}

// Milliseconds until lwIP's next timer (UINT32_MAX: none).
uint32_t board_net_next_timeout_ms(void) {
    return sys_timeouts_sleeptime();
}

u32_t sys_now(void) {
    return mp_hal_ticks_ms();
}

uint32_t board_random_u32(void) {
    static uint32_t state;
    if (state == 0) {
        state = mp_hal_ticks_cpu() | 1;
    }
    // xorshift32: TCP initial sequence numbers and local ports.
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    return state;
}

#endif // MICROPY_PY_LWIP
