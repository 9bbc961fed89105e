/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The kernel's side of packet-path sessions (include/flowscope/trace.h): tracepoints that report a followed
 * packet's hops between and after our tc hooks. Part of the datapath's translation unit (datapath.c includes
 * it), so that they share `trace_packets` with the tc programs; loaded and attached only while a session runs
 * (observer/datapath/pathtrace.py), and only where the kernel's BTF gave the sk_buff offsets (FS_SKB_*).
 *
 * Raw tracepoints: they run for every packet of the machine while attached, and a raw tracepoint gets the
 * tracepoint's arguments as they are (ctx->args[], in the order of the kernel's btf_trace_<name> prototype),
 * without the perf record a classic tracepoint builds first: about a third of a small packet's cost in a flood
 * (bench/RESULTS.md). And they return at once while the session follows no packet (`trace_followed`).
 *
 * Each follows only packets in `trace_packets`, and only in this node's network namespaces (`trace_netns`): a
 * packet seen in another namespace has left the node (the next node's own session takes it from there), so it
 * is forgotten without a hop. skb:kfree_skb and skb:consume_skb end a packet: its entry goes. net:net_dev_xmit
 * can see an skb already freed (retis marks it so): it only reports packets still followed, never starts one.
 */
#ifdef FS_SKB_HEAD

#include "flowscope/kdrop/skb.h"
#include "flowscope/trace.h"

/* net:net_dev_xmit comes after the driver took the packet: a veth has handed it to its peer already (skb->dev
 * is the peer, maybe in another node's namespace), another driver may have freed it. So the skb is not read:
 * the hop says the driver's return code, and its device is the one of the packet's net_dev_queue hop just
 * before (observer/trace/ fills it in). */
static __always_inline int fs_trace_xmit(struct fs_trace_packet *p, __u64 key, __u64 now, __s32 rc)
{
	struct fs_trace_hop *hop = trace_events.ringbuf_reserve(sizeof(struct fs_trace_hop));

	if (!hop) {
		fs_trace_lost(p->session);
		return 0;
	}
	p->last_ts = now;
	__builtin_memset(hop, 0, sizeof(struct fs_trace_hop) - FS_CAPLEN);
	hop->skb = key;
	hop->first_ts = p->first_ts;
	hop->first_head = p->first_head;
	hop->kind = FS_HOP_KERNEL;
	hop->session = p->session;
	hop->stage = FS_HOP_TP_DEV_XMIT;
	hop->action = rc;
	hop->ev.ts = now;
	hop->ev.type = FS_EVENT_TRACE;
	hop->ev.version = FS_EVENT_VERSION;
	hop->ev.cpu = bpf_get_smp_processor_id();
	trace_events.ringbuf_submit(hop, 0);
	return 0;
}

static __always_inline int fs_trace_kernel(void *skbaddr, __u8 tp, __s32 action, __u32 reason, __u64 location)
{
	__u64 key = (__u64)(long)skbaddr;
	struct fs_trace_packet *p;
	struct fs_kdrop_skb s = {};
	struct fs_kdrop_frame frame;
	struct fs_trace_hop *hop;
	__u32 inum, *ep_id, no_endpoint = 0;
	__u64 now;

	if (!fs_trace_following())
		return 0;
	p = trace_packets.lookup(&key);
	if (!p)
		return 0;
	now = bpf_ktime_get_ns();
	if (now - p->last_ts > FS_PATH_STALE_NS)
		goto forget;
	if (tp == FS_HOP_TP_DEV_XMIT)
		return fs_trace_xmit(p, key, now, action);
	if (fs_kdrop_read_skb(skbaddr, &s) < 0)
		goto forget;
	/* Where it is: its device's namespace, or its socket's. Neither (a packet on its way into a listening socket
	 * has lost its device and has no socket yet) is no news: still where it was (the agent says so). */
	inum = fs_kdrop_netns(&s);
	ep_id = inum ? trace_netns.lookup(&inum) : &no_endpoint;
	if (!ep_id)
		goto forget; /* it left the node */
	p->last_ts = now;

	hop = trace_events.ringbuf_reserve(sizeof(struct fs_trace_hop));
	if (!hop) {
		fs_trace_lost(p->session);
		goto done;
	}
	hop->skb = key;
	hop->first_ts = p->first_ts;
	hop->first_head = p->first_head;
	hop->head = (__u64)(long)s.head;
	hop->netns = inum;
	hop->kind = FS_HOP_KERNEL;
	hop->point = 0;
	hop->session = p->session;
	hop->stage = tp;
	hop->ct_state = 0;
	hop->ct_dir = 0;
	hop->policy_todo = 0;
	hop->emit = 0;
	hop->action = action;
	__builtin_memset(&hop->ev, 0, FS_EVENT_HDR_LEN);
	hop->ev.ts = now;
	hop->ev.type = FS_EVENT_TRACE;
	hop->ev.version = FS_EVENT_VERSION;
	hop->ev.cpu = bpf_get_smp_processor_id();
	hop->ev.ep_id = *ep_id;
	hop->ev.ifindex = fs_kdrop_ifindex(&s);
	hop->ev.drop_reason = reason;
	if (tp == FS_HOP_TP_KFREE) {
		hop->ev.flags = FS_F_KERNEL_DROP; /* the kernel's reason, not a Cilium code */
		/* a free the kernel counts as a drop though nothing was lost (an echo reply a ping socket took a copy
		 * of, say: kdrop/skb.h): action 1 says so */
		hop->action = fs_kdrop_not_lost(reason, &s, fs_bswap16(s.protocol));
	}
	hop->ev.location = location;
	hop->ev.hash = s.hash;
	hop->ev.ethertype = fs_bswap16(s.protocol);
	frame = fs_kdrop_frame_of(&s);
	hop->ev.len_orig = frame.len;
	if (s.network != FS_NO_HEADER) {
		if (hop->ev.ethertype == FS_ETH_P_IP)
			fs_kdrop_ipv4(&hop->ev, &s);
		else if (hop->ev.ethertype == FS_ETH_P_IPV6)
			fs_kdrop_ipv6(&hop->ev, &s);
	}
	fs_kdrop_capture(&hop->ev, &s, &frame);
	trace_events.ringbuf_submit(hop, 0);
done:
	if (tp == FS_HOP_TP_KFREE || tp == FS_HOP_TP_CONSUME)
		fs_trace_forget(key);
	return 0;
forget:
	fs_trace_forget(key);
	return 0;
}

/* btf_trace_netif_receive_skb(void *, struct sk_buff *) */
int hop_netif_receive_skb(struct bpf_raw_tracepoint_args *ctx)
{
	return fs_trace_kernel((void *)ctx->args[0], FS_HOP_TP_NETIF_RECEIVE, 0, 0, 0);
}

/* btf_trace_net_dev_queue(void *, struct sk_buff *) */
int hop_net_dev_queue(struct bpf_raw_tracepoint_args *ctx)
{
	return fs_trace_kernel((void *)ctx->args[0], FS_HOP_TP_DEV_QUEUE, 0, 0, 0);
}

/* btf_trace_net_dev_xmit(void *, struct sk_buff *, int rc, struct net_device *, unsigned int len) */
int hop_net_dev_xmit(struct bpf_raw_tracepoint_args *ctx)
{
	return fs_trace_kernel((void *)ctx->args[0], FS_HOP_TP_DEV_XMIT, (__s32)ctx->args[1], 0, 0);
}

/* btf_trace_kfree_skb(void *, struct sk_buff *, void *location, enum skb_drop_reason, struct sock *rx_sk) */
int hop_kfree_skb(struct bpf_raw_tracepoint_args *ctx)
{
	return fs_trace_kernel((void *)ctx->args[0], FS_HOP_TP_KFREE, 0, (__u32)ctx->args[2], ctx->args[1]);
}

/* btf_trace_consume_skb(void *, struct sk_buff *, void *location) */
int hop_consume_skb(struct bpf_raw_tracepoint_args *ctx)
{
	return fs_trace_kernel((void *)ctx->args[0], FS_HOP_TP_CONSUME, 0, 0, ctx->args[1]);
}

#endif /* FS_SKB_HEAD */
