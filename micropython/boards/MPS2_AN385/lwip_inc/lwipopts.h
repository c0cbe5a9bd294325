// lwIP configuration of the DL-7450 device firmware (MPS2-AN385 under qemu).
// lwIP runs without an OS (NO_SYS): the board's event hook feeds it received
// frames and runs its timers; MicroPython's modlwip.c is the socket module.
#ifndef DL7450_LWIPOPTS_H
#define DL7450_LWIPOPTS_H

#include <stdint.h>

// Everything lwIP does happens in thread mode (event hook and socket calls);
// the Ethernet interrupt only wakes the CPU, so no locking is needed.
#define SYS_ARCH_DECL_PROTECT(lev) do { } while (0)
#define SYS_ARCH_PROTECT(lev) do { } while (0)
#define SYS_ARCH_UNPROTECT(lev) do { } while (0)
typedef uint32_t sys_prot_t;

#define NO_SYS                          1
#define SYS_LIGHTWEIGHT_PROT            1
#define MEM_ALIGNMENT                   4

#define LWIP_IPV4                       1
#define LWIP_IPV6                       0
#define LWIP_ARP                        1
#define LWIP_ETHERNET                   1
#define LWIP_RAW                        0
#define LWIP_NETCONN                    0
#define LWIP_SOCKET                     0
#define LWIP_STATS                      0
#define LWIP_NETIF_HOSTNAME             0
#define LWIP_NETIF_LINK_CALLBACK        0
#define LWIP_NETIF_STATUS_CALLBACK      0

// A static address on qemu's user network; no DHCP. DNS is
// compiled in for getaddrinfo(), but no server is configured: numeric
// addresses resolve without it, names fail.
#define LWIP_DHCP                       0
#define LWIP_AUTOIP                     0
#define LWIP_IGMP                       1 // modlwip.c calls it (IP_ADD_MEMBERSHIP)
#define LWIP_DNS                        1
#define LWIP_UDP                        1
#define MEMP_NUM_UDP_PCB                2

#define LWIP_CHKSUM_ALGORITHM           3
#define SO_REUSE                        1
#define TCP_LISTEN_BACKLOG              1
#define LWIP_TCP_KEEPALIVE              0

// lwIP's own memory is static RAM outside the MicroPython heap (the board
// has 4 MiB; the heap is 140 KiB). The receive window (4 segments) is
// smaller than the LAN9118's 10 KiB receive FIFO, so a full window of
// frames waiting for the event hook never overflows it.
#define MEM_SIZE                        (24 * 1024)
#define TCP_MSS                         (1460)
#define TCP_WND                         (4 * TCP_MSS)
#define TCP_SND_BUF                     (8 * TCP_MSS)
#define TCP_SND_QUEUELEN                (4 * TCP_SND_BUF / TCP_MSS)
#define MEMP_NUM_TCP_SEG                (32)
#define MEMP_NUM_TCP_PCB                (8)
#define PBUF_POOL_SIZE                  (16)

#define LWIP_RAND()                     board_random_u32()
uint32_t board_random_u32(void);

#endif // DL7450_LWIPOPTS_H
