/* What vipgate uses of libxdp's AF_XDP sockets and of libbpf: bindgen reads this, the
 * shim includes it. */
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <xdp/xsk.h>

/* The rings' static inline functions, a burst a call. Each returns how many descriptors
 * it moved. */

/* Takes up to `max` received descriptors off `rx`: their addresses and lengths. */
unsigned vg_rx(struct xsk_ring_cons *rx, __u64 *addrs, __u32 *lens, unsigned max);
/* Puts up to `n` frame addresses on the fill ring `fq`, as many as it has room for. */
unsigned vg_fill(struct xsk_ring_prod *fq, const __u64 *addrs, unsigned n);
/* Puts up to `n` frames (address, length) on the TX ring, as many as it has room for. */
unsigned vg_tx(struct xsk_ring_prod *tx, const __u64 *addrs, const __u32 *lens, unsigned n);
/* Takes up to `max` addresses of sent frames off the completion ring `cq`. */
unsigned vg_complete(struct xsk_ring_cons *cq, __u64 *addrs, unsigned max);
/* Whether the kernel asks to be woken for this ring (XDP_USE_NEED_WAKEUP). */
int vg_needs_wakeup(const struct xsk_ring_prod *r);
/* Free places in a producer ring. */
unsigned vg_prod_free(struct xsk_ring_prod *r);
/* errno of the calling thread. */
int vg_errno(void);
