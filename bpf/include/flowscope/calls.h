/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Slots of the `calls` program array: the stages an entry program tail-calls into.
 *
 * The loader reads this file: every `#define FS_CALL_<NAME> <slot>` names a slot, and the loader puts the
 * program `stage_<name>` (lower case) into it. Adding a stage is adding a define here and that function.
 */
#ifndef FLOWSCOPE_CALLS_H
#define FLOWSCOPE_CALLS_H

#define FS_CALL_IPV4 0       /* parse IPv4 and its L4 header, resolve identities */
#define FS_CALL_IPV6 1       /* parse IPv6, its extension headers and its L4 header, resolve identities */
#define FS_CALL_OTHER 2      /* any other ethertype (ARP, LLDP, ...): nothing more to parse */
#define FS_CALL_SEND_TRACE 3 /* decide whether this packet is reported (monitor aggregation), emit, pass */
#define FS_CALL_CT 4         /* connection tracking: state, direction, counters */
#define FS_CALL_POLICY 5     /* network policy at an endpoint: verdict events, drops */
#define FS_CALL_LB 6         /* services: a frontend's backend (DNAT), a reply's frontend back (reverse NAT) */

#define FS_CALLS_MAX 16 /* size of the program array: room for the stages later issues insert */

/* Where every parse stage hands the packet next: services, conntrack, then policy, then the trace decision. */
#define FS_NEXT_AFTER_PARSE FS_CALL_LB
#define FS_NEXT_AFTER_LB FS_CALL_CT
#define FS_NEXT_AFTER_CT FS_CALL_POLICY
#define FS_NEXT_AFTER_POLICY FS_CALL_SEND_TRACE

#endif /* FLOWSCOPE_CALLS_H */
