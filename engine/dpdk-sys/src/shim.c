/* DPDK keeps its per-packet functions static inline in headers; these wrappers give them
 * symbols Rust can call. One call per burst (rx, tx, bulk free) or per rare packet. */
#include <stddef.h>
#include "wrapper.h"

uint16_t vg_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t vg_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_tx_burst(port, queue, pkts, n);
}

struct rte_mbuf *vg_pktmbuf_alloc(struct rte_mempool *pool)
{
	return rte_pktmbuf_alloc(pool);
}

int vg_pktmbuf_alloc_bulk(struct rte_mempool *pool, struct rte_mbuf **mbufs, unsigned int n)
{
	return rte_pktmbuf_alloc_bulk(pool, mbufs, n);
}

void vg_pktmbuf_free(struct rte_mbuf *m)
{
	rte_pktmbuf_free(m);
}

void vg_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned int n)
{
	rte_pktmbuf_free_bulk(mbufs, n);
}

int vg_errno(void)
{
	return rte_errno;
}

const char *vg_version(void)
{
	return rte_version();
}

unsigned int vg_mempool_avail(const struct rte_mempool *pool)
{
	return rte_mempool_avail_count(pool);
}

uint64_t vg_rss_hf(void)
{
	return RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP;
}

size_t vg_mbuf_offset(int field)
{
	switch (field) {
	case 0: return offsetof(struct rte_mbuf, buf_addr);
	case 1: return offsetof(struct rte_mbuf, data_off);
	case 2: return offsetof(struct rte_mbuf, nb_segs);
	case 3: return offsetof(struct rte_mbuf, pkt_len);
	case 4: return offsetof(struct rte_mbuf, data_len);
	case 5: return offsetof(struct rte_mbuf, buf_len);
	case 6: return sizeof(struct rte_mbuf);
	default: return (size_t)-1;
	}
}
