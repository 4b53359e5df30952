/* The static inline ring functions of libxdp's xsk.h as real symbols, a burst a call (see
 * wrapper.h). */
#include <errno.h>

#include "wrapper.h"

unsigned vg_rx(struct xsk_ring_cons *rx, __u64 *addrs, __u32 *lens, unsigned max)
{
	__u32 idx = 0;
	unsigned n = xsk_ring_cons__peek(rx, max, &idx);
	for (unsigned i = 0; i < n; i++) {
		const struct xdp_desc *d = xsk_ring_cons__rx_desc(rx, idx + i);
		addrs[i] = d->addr;
		lens[i] = d->len;
	}
	if (n)
		xsk_ring_cons__release(rx, n);
	return n;
}

/* Reserves as many of `n` places as the producer ring `r` has, from *idx; returns how many. */
static unsigned reserve_up_to(struct xsk_ring_prod *r, unsigned n, __u32 *idx)
{
	unsigned room = xsk_prod_nb_free(r, n);
	if (room < n)
		n = room;
	if (n == 0 || xsk_ring_prod__reserve(r, n, idx) != n)
		return 0;
	return n;
}

unsigned vg_fill(struct xsk_ring_prod *fq, const __u64 *addrs, unsigned n)
{
	__u32 idx = 0;
	n = reserve_up_to(fq, n, &idx);
	for (unsigned i = 0; i < n; i++)
		*xsk_ring_prod__fill_addr(fq, idx + i) = addrs[i];
	if (n)
		xsk_ring_prod__submit(fq, n);
	return n;
}

unsigned vg_tx(struct xsk_ring_prod *tx, const __u64 *addrs, const __u32 *lens, unsigned n)
{
	__u32 idx = 0;
	n = reserve_up_to(tx, n, &idx);
	for (unsigned i = 0; i < n; i++) {
		struct xdp_desc *d = xsk_ring_prod__tx_desc(tx, idx + i);
		d->addr = addrs[i];
		d->len = lens[i];
		d->options = 0;
	}
	if (n)
		xsk_ring_prod__submit(tx, n);
	return n;
}

unsigned vg_complete(struct xsk_ring_cons *cq, __u64 *addrs, unsigned max)
{
	__u32 idx = 0;
	unsigned n = xsk_ring_cons__peek(cq, max, &idx);
	for (unsigned i = 0; i < n; i++)
		addrs[i] = *xsk_ring_cons__comp_addr(cq, idx + i);
	if (n)
		xsk_ring_cons__release(cq, n);
	return n;
}

int vg_needs_wakeup(const struct xsk_ring_prod *r)
{
	return xsk_ring_prod__needs_wakeup(r);
}

unsigned vg_prod_free(struct xsk_ring_prod *r)
{
	return xsk_prod_nb_free(r, r->size);
}

int vg_errno(void)
{
	return errno;
}
