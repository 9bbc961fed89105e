/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The conntrack tables, `ct4` and `ct6`: hash tables kept in BPF arrays, with the hashing and the probing done
 * here, in the programs.
 *
 * Why not BPF hash maps: every packet looks its connection up once at every hook it crosses, and a hash map's
 * lookup is three kernel calls (the lookup, the hash, the key comparison). On this kind of machine (Retpolines
 * and Safe RET against Spectre and SRSO) each return costs dearly: a 64-byte UDP flood between two pods carried
 * 3.5% more with array lookups, which the verifier turns into a few instructions in line, than with the LRU
 * hash's (bench/ab_bench.py, bench/RESULTS.md). The price is doing here what the kernel did:
 *
 * - Where a key lives: its home slot, a hash of the key and a random seed (FS_CT_SEED, compiled in by the
 *   loader at every load: keys cannot be chosen to pile up in one place), or one of the next FS_CT_WINDOW - 1
 *   slots.
 * - Making an entry: among the slots of the window, the key's own (a stale or reopened connection) if it is
 *   there, else an empty one, else the one that expires first, which reports the counts it had not reported
 *   yet before it is taken (an LRU hash dropped them). A slot is taken by one CPU at a time (`busy`, set with
 *   a compare-and-exchange); a packet that finds the slot taken is not tracked, as when a map is full.
 * - Writing order: the taken slot's key is cleared first (no packet finds it any more), then the entry is
 *   written, then the new key, then the slot is released. A packet that found the old key just before may still
 *   count into it: only when a live connection is evicted, and only that packet.
 * - The agent reads both tables through a read-only mapping (BPF_F_MMAPABLE), so its sweep reads memory, not
 *   system calls; `ct_used` has a bit for each slot holding a connection, so it reads only those slots.
 *   `ct_flush` removes an entry the same way an eviction does.
 *
 * Orders between CPUs rely on x86's: stores are seen in the order they are made.
 */
#ifndef FLOWSCOPE_CTTABLE_H
#define FLOWSCOPE_CTTABLE_H

#include "flowscope/maps.h"

#define FS_CT_WINDOW 4 /* slots a key may live in: its home slot and the next three */
/* The tables' layout: raise it with any change to what a slot holds or where a key lives (the slots' structs,
 * fs_ct_home, FS_CT_WINDOW), so that an agent finding tables pinned by an older one starts with empty ones. */
#define FS_CT_LAYOUT 1
_Static_assert((FS_CT_MAX & (FS_CT_MAX - 1)) == 0, "FS_CT_MAX: slot indexes are taken modulo a power of two");

/* A slot's parts, found once: its key (as words), its busy flag, its entry, and where it is. */
struct fs_ct_slot_ref {
	__u64 *key;
	__u64 *busy;
	struct fs_ct_entry *e;
	__u32 index;
};

static __always_inline __u32 fs_ct_key_words(int ipv6)
{
	return ipv6 ? sizeof(struct fs_ct6_key) / 8 : sizeof(struct fs_ct4_key) / 8;
}

/* The home slot of `key`: a multiply-xorshift over its words, from the seed. */
static __always_inline __u32 fs_ct_home(const union fs_ct_key *key, int ipv6)
{
	const __u64 *word = (const __u64 *)key;
	__u64 h = FS_CT_SEED;

#pragma unroll
	for (int i = 0; i < sizeof(struct fs_ct6_key) / 8; i++) {
		if (i >= fs_ct_key_words(ipv6))
			break;
		h = (h ^ word[i]) * 0x9E3779B97F4A7C15ULL;
		h ^= h >> 29;
	}
	return (__u32)h;
}

/* Point `ref` at the parts of `slot`, a struct fs_ct4_slot or fs_ct6_slot (a macro: two types, one shape). */
#define FS_CT_SLOT_REF(ref, slot)                    \
	({                                           \
		(ref)->key = (__u64 *)&(slot)->key; \
		(ref)->busy = &(slot)->busy;         \
		(ref)->e = &(slot)->e;               \
	})

/* Slot `index` (taken modulo the table's size) of the family's table; 0 when the lookup fails. */
static __always_inline int fs_ct_slot(struct fs_ct_slot_ref *ref, int ipv6, __u32 index)
{
	index &= FS_CT_MAX - 1;
	ref->index = index;
	if (ipv6) {
		struct fs_ct6_slot *slot = ct6.lookup(&index);

		if (!slot)
			return 0;
		FS_CT_SLOT_REF(ref, slot);
	} else {
		struct fs_ct4_slot *slot = ct4.lookup(&index);

		if (!slot)
			return 0;
		FS_CT_SLOT_REF(ref, slot);
	}
	return 1;
}

static __always_inline int fs_ct_slot_holds(const struct fs_ct_slot_ref *ref, const union fs_ct_key *key, int ipv6)
{
	const __u64 *word = (const __u64 *)key;

#pragma unroll
	for (int i = 0; i < sizeof(struct fs_ct6_key) / 8; i++) {
		if (i >= fs_ct_key_words(ipv6))
			break;
		if (ref->key[i] != word[i])
			return 0;
	}
	return 1;
}

/* Copy a key word by word (the words of IPv4's first): spelt out, since a loop with a variable bound would
 * become a memcpy() call, which BPF does not have. */
static __always_inline void fs_ct_key_copy(__u64 *dst, const __u64 *src, int ipv6)
{
	dst[0] = src[0];
	dst[1] = src[1];
	if (ipv6) {
		dst[2] = src[2];
		dst[3] = src[3];
		dst[4] = src[4];
	}
}

static __always_inline void fs_ct_key_clear(__u64 *dst, int ipv6)
{
	dst[0] = 0;
	dst[1] = 0;
	if (ipv6) {
		dst[2] = 0;
		dst[3] = 0;
		dst[4] = 0;
	}
}

/* A slot without a connection: its key's family byte (4 or 6 in a key) is 0. */
static __always_inline int fs_ct_slot_empty(const struct fs_ct_slot_ref *ref, int ipv6)
{
	return ipv6 ? !((struct fs_ct6_key *)ref->key)->family : !((struct fs_ct4_key *)ref->key)->family;
}

/* The entry of connection `key`, or 0. */
static __always_inline struct fs_ct_entry *fs_ct_find(const union fs_ct_key *key, int ipv6)
{
	struct fs_ct_slot_ref ref;
	__u32 home = fs_ct_home(key, ipv6);

#pragma unroll
	for (int i = 0; i < FS_CT_WINDOW; i++) {
		if (fs_ct_slot(&ref, ipv6, home + i) && fs_ct_slot_holds(&ref, key, ipv6))
			return ref.e;
	}
	return 0;
}

/* Take a slot of `key`'s window for a new entry of `key` (see the top of this file for which); 0 when it is
 * taken by another CPU. On success the slot is this CPU's (busy) and its key cleared; `old` has the key it held
 * and the return is 2 when it held a connection (whose entry is still in place, for its last report), else 1.
 * fs_ct_publish() gives the slot its new key and releases it. */
static __always_inline int fs_ct_take(struct fs_ct_slot_ref *ref, const union fs_ct_key *key, int ipv6,
				      union fs_ct_key *old)
{
	__u32 home = fs_ct_home(key, ipv6), pick = 0;
	__u64 soonest = ~0ULL;
	int held;

#pragma unroll
	for (int i = 0; i < FS_CT_WINDOW; i++) {
		__u64 rank;

		if (!fs_ct_slot(ref, ipv6, home + i))
			continue;
		if (fs_ct_slot_holds(ref, key, ipv6)) {
			pick = i;
			break;
		}
		rank = fs_ct_slot_empty(ref, ipv6) ? 0 : ref->e->expires + 1;
		if (rank < soonest) {
			soonest = rank;
			pick = i;
		}
	}
	if (!fs_ct_slot(ref, ipv6, home + pick))
		return 0;
	if (__sync_val_compare_and_swap(ref->busy, 0, 1) != 0)
		return 0;
	held = !fs_ct_slot_empty(ref, ipv6);
	fs_ct_key_copy((__u64 *)old, ref->key, ipv6);
	fs_ct_key_clear(ref->key, ipv6);
	return held ? 2 : 1;
}

/* Say in ct_used whether a slot holds a connection; an atomic operation only when the bit changes. */
static __always_inline void fs_ct_mark(const struct fs_ct_slot_ref *ref, int ipv6, int used)
{
	__u32 word = (ipv6 ? FS_CT_MAX / 64 : 0) + ref->index / 64;
	__u64 bit = 1ULL << (ref->index % 64);
	__u64 *bits = ct_used.lookup(&word);

	if (!bits || !(*bits & bit) == !used)
		return;
	if (used)
		__sync_fetch_and_or(bits, bit);
	else
		__sync_fetch_and_and(bits, ~bit);
}

/* Give a slot taken with fs_ct_take() its key, and release it. */
static __always_inline void fs_ct_publish(struct fs_ct_slot_ref *ref, const union fs_ct_key *key, int ipv6)
{
	fs_ct_key_copy(ref->key, (const __u64 *)key, ipv6);
	fs_ct_mark(ref, ipv6, 1);
	*ref->busy = 0;
}

/* Remove connection `key` (ct_flush, for a stale entry whose counts it reported). */
static __always_inline void fs_ct_remove(const union fs_ct_key *key, int ipv6)
{
	struct fs_ct_slot_ref ref;
	__u32 home = fs_ct_home(key, ipv6);

#pragma unroll
	for (int i = 0; i < FS_CT_WINDOW; i++) {
		if (!fs_ct_slot(&ref, ipv6, home + i) || !fs_ct_slot_holds(&ref, key, ipv6))
			continue;
		if (__sync_val_compare_and_swap(ref.busy, 0, 1) != 0)
			return;
		fs_ct_key_clear(ref.key, ipv6);
		fs_ct_mark(&ref, ipv6, 0);
		*ref.busy = 0;
		return;
	}
}

#endif /* FLOWSCOPE_CTTABLE_H */
