/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kernel drops: the skb:kfree_skb tracepoint, reported as DROPPED events with the kernel's own reason.
 *
 * The kernel frees every packet it drops through kfree_skb with an `enum skb_drop_reason`; packets it is done
 * with normally go through consume_skb (SKB_CONSUMED), which is not a drop. This program:
 *   1. skips what is not a drop (SKB_NOT_DROPPED_YET, SKB_CONSUMED) and, unless the agent asks for it,
 *      NOT_SPECIFIED, the reason of every plain kfree_skb(), most of which are not problems (multicast the host
 *      does not listen to, say); and frees counted as drops that lose no packet on the network (AF_UNIX
 *      messages, a closing socket's queues, echo replies a raw socket took: fs_kdrop_not_lost, kdrop/skb.h);
 *   2. keeps only drops in network namespaces of this node: `kdrop_netns` maps a namespace's inode to the
 *      endpoint living in it (0: the node itself), and the agent fills it. Every agent on the machine sees every
 *      kfree_skb of the kernel; the namespace is what makes a drop this node's. And leaves out TC_INGRESS and
 *      TC_EGRESS drops on the devices our own tc programs are attached to (`kdrop_own_devices`): the datapath
 *      reported those packets itself, with the reason it knows (POLICY_DENIED, ...);
 *   3. rate-limits per CPU and per reason with a token bucket: a drop storm costs at most `burst` reports, then
 *      one per `report_cost_ns`. A suppressed drop is counted in `kdrop_limited` and in its bucket, and the
 *      next report of that reason on that CPU carries it (`packets`, `bytes`, FS_F_AGGREGATE);
 *   4. fills one `struct fs_event` (event.h) in its own ring buffer: the header from the packet's headers, and
 *      the frame's first bytes, so the agent decodes it like any other event. A full ring is counted in
 *      `kdrop_lost`.
 *
 * Compiled by observer/datapath/kdrop.py, with struct offsets and enum values of the running kernel from BTF.
 */
#include <uapi/linux/bpf.h>

#include "flowscope/event.h"
#include "flowscope/kdrop/skb.h"

/* The tracepoint's `reason` field has this type; bcc declares the argument struct from the tracepoint's format
 * file, so the enum only needs to exist. Its values come from BTF (FS_SKB_*). */
enum skb_drop_reason { FS_SKB_DROP_REASON_DECLARED };

#ifndef FS_KDROP_RINGBUF_PAGES
#define FS_KDROP_RINGBUF_PAGES 64
#endif
#ifndef FS_KDROP_NETNS_MAX
#define FS_KDROP_NETNS_MAX 1024
#endif

#define FS_KDROP_F_UNSPECIFIED 0x1 /* report NOT_SPECIFIED drops too */

struct fs_kdrop_config {
	__u64 report_cost_ns; /* credit one report spends: 1 s / reports per second; 0: no limit */
	__u64 burst_ns;       /* credit a bucket holds at most: report_cost_ns * burst */
	__u32 flags;          /* FS_KDROP_F_* */
	__u32 pad;
};

/* One reason's token bucket on one CPU, with the drops it suppressed since its last report. */
struct fs_kdrop_bucket {
	__u64 stamp;  /* when credit was last brought up to date; 0: never used */
	__u64 credit; /* ns of credit */
	__u64 suppressed_bytes;
	__u32 suppressed;
	__u32 pad;
};

BPF_RINGBUF_OUTPUT(kdrop_events, FS_KDROP_RINGBUF_PAGES);
BPF_PERCPU_ARRAY(kdrop_lost, __u64, 1);    /* reports not emitted: the ring buffer was full */
BPF_PERCPU_ARRAY(kdrop_limited, __u64, 1); /* drops not reported on their own: rate limited */
BPF_PERCPU_ARRAY(kdrop_buckets, struct fs_kdrop_bucket, FS_KDROP_BUCKETS);
BPF_HASH(kdrop_netns, __u32, __u32, FS_KDROP_NETNS_MAX); /* netns inode -> endpoint id (0: the node) */
BPF_HASH(kdrop_own_devices, __u32, __u8, FS_KDROP_NETNS_MAX); /* ifindex in the node -> 1: our tc programs */
BPF_ARRAY(kdrop_config, struct fs_kdrop_config, 1);

static __always_inline void fs_kdrop_count(__u64 *counter)
{
	if (counter)
		*counter += 1; /* per-CPU, and tracepoint programs do not nest on a CPU: no atomics needed */
}

/* Whether the bucket lets one more report through now; if not, the drop is counted as suppressed. */
static __always_inline int fs_kdrop_admit(struct fs_kdrop_bucket *b, const struct fs_kdrop_config *cfg,
					  __u32 bytes)
{
	__u32 zero = 0;
	__u64 now;

	if (!cfg->report_cost_ns)
		return 1;
	now = bpf_ktime_get_ns();
	if (!b->stamp)
		b->credit = cfg->burst_ns;
	else
		b->credit += now - b->stamp;
	if (b->credit > cfg->burst_ns)
		b->credit = cfg->burst_ns;
	b->stamp = now;
	if (b->credit >= cfg->report_cost_ns) {
		b->credit -= cfg->report_cost_ns;
		return 1;
	}
	b->suppressed += 1;
	b->suppressed_bytes += bytes;
	fs_kdrop_count(kdrop_limited.lookup(&zero));
	return 0;
}

TRACEPOINT_PROBE(skb, kfree_skb)
{
	__u32 reason = args->reason;
	__u32 zero = 0, inum, bucket_index;
	struct fs_kdrop_config *cfg;
	struct fs_kdrop_bucket *bucket;
	struct fs_kdrop_frame frame;
	struct fs_kdrop_skb s = {};
	struct fs_event *ev;
	__u32 *ep_id;

	if (reason == FS_SKB_NOT_DROPPED_YET || reason == FS_SKB_CONSUMED)
		return 0;
	cfg = kdrop_config.lookup(&zero);
	if (!cfg)
		return 0;
	if (reason == FS_SKB_DROP_REASON_NOT_SPECIFIED && !(cfg->flags & FS_KDROP_F_UNSPECIFIED))
		return 0;
	if (fs_kdrop_read_skb(args->skbaddr, &s) < 0)
		return 0;
	inum = fs_kdrop_netns(&s);
	ep_id = kdrop_netns.lookup(&inum);
	if (!ep_id)
		return 0; /* another node's, or nobody's we know */
	if (fs_kdrop_not_lost(reason, &s, args->protocol))
		return 0;
	if ((reason == FS_SKB_DROP_REASON_TC_INGRESS || reason == FS_SKB_DROP_REASON_TC_EGRESS) && *ep_id == 0) {
		__u32 ifindex = fs_kdrop_ifindex(&s);

		if (kdrop_own_devices.lookup(&ifindex))
			return 0; /* our datapath dropped it, and said why */
	}

	/* Reasons past the core enum (subsystem reasons carry a subsystem id in the high bits) share one bucket. */
	bucket_index = reason < FS_KDROP_BUCKETS - 1 ? reason : FS_KDROP_BUCKETS - 1;
	bucket = kdrop_buckets.lookup(&bucket_index);
	if (!bucket)
		return 0;
	frame = fs_kdrop_frame_of(&s);
	if (!fs_kdrop_admit(bucket, cfg, frame.len))
		return 0;

	ev = kdrop_events.ringbuf_reserve(sizeof(struct fs_event));
	if (!ev) {
		fs_kdrop_count(kdrop_lost.lookup(&zero)); /* the bucket keeps what it suppressed for the next one */
		return 0;
	}
	/* Zero first: what is not set here stays 0. That includes `subtype`, where Cilium's drop reasons go: a kernel
	 * reason there would read as a Cilium one to a Hubble client (their numbers meet from 130 on). */
	__builtin_memset(ev, 0, __builtin_offsetof(struct fs_event, data));
	ev->ts = bpf_ktime_get_ns();
	ev->type = FS_EVENT_DROP;
	ev->version = FS_EVENT_VERSION;
	ev->flags = FS_F_KERNEL_DROP;
	ev->verdict = FS_VERDICT_DROPPED;
	ev->drop_reason = reason;
	ev->location = (__u64)args->location;
	ev->cpu = bpf_get_smp_processor_id();
	ev->ep_id = *ep_id;
	ev->ifindex = *ep_id ? 0 : fs_kdrop_ifindex(&s); /* an ifindex of a pod's namespace means nothing here */
	ev->hash = s.hash;
	ev->len_orig = frame.len;
	ev->ethertype = args->protocol;
	ev->packets = 1 + bucket->suppressed;
	ev->bytes = (__u64)frame.len + bucket->suppressed_bytes;
	if (bucket->suppressed)
		ev->flags |= FS_F_AGGREGATE;
	bucket->suppressed = 0;
	bucket->suppressed_bytes = 0;

	if (s.network != FS_NO_HEADER) {
		if (ev->ethertype == FS_ETH_P_IP)
			fs_kdrop_ipv4(ev, &s);
		else if (ev->ethertype == FS_ETH_P_IPV6)
			fs_kdrop_ipv6(ev, &s);
	}
	fs_kdrop_capture(ev, &s, &frame);
	/* No wakeup: the agent's ingest loop looks at this ring on every pass, at most 20 ms apart. */
	kdrop_events.ringbuf_submit(ev, BPF_RB_NO_WAKEUP);
	return 0;
}
