/* What vipgate uses of DPDK: bindgen reads this, the shim includes it. */
#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>
#include <rte_version.h>

/* DPDK's static inline functions, as real symbols. */
uint16_t vg_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t vg_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
struct rte_mbuf *vg_pktmbuf_alloc(struct rte_mempool *pool);
int vg_pktmbuf_alloc_bulk(struct rte_mempool *pool, struct rte_mbuf **mbufs, unsigned int n);
void vg_pktmbuf_free(struct rte_mbuf *m);
void vg_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned int n);
int vg_errno(void);
const char *vg_version(void);
unsigned int vg_mempool_avail(const struct rte_mempool *pool);
/* The RSS hash types vipgate asks for: IP, TCP and UDP (function-like macros in DPDK). */
uint64_t vg_rss_hf(void);

/* Where the fields Rust reads sit in struct rte_mbuf, as C lays it out (checked by a test). */
size_t vg_mbuf_offset(int field);
