/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Drop reasons the datapath itself gives, numbered as Cilium's (and so as flow.DropReason on the wire).
 */
#ifndef FLOWSCOPE_DROP_H
#define FLOWSCOPE_DROP_H

#define FS_DROP_POLICY_DENIED 133    /* no policy rule allows it, in a direction some rule covers (default deny) */
#define FS_DROP_CT_INVALID_HDR 135   /* at an enforcing endpoint: headers cut short, so no policy can judge it */
#define FS_DROP_MISSED_TAIL_CALL 140 /* a tail call found its slot empty: never pass such a packet silently */
#define FS_DROP_WRITE_ERROR 141      /* a service's translation could not be written into the packet */
#define FS_DROP_CT_MAP_INSERTION_FAILED 155 /* at an enforcing endpoint: no room to track the connection */
#define FS_DROP_FRAG_NOSUPPORT 157   /* at an enforcing endpoint: a later IP fragment carries no ports to judge */
#define FS_DROP_SERVICE_BACKEND_NOT_FOUND 158 /* to a service frontend that has no backend (lb.h) */
#define FS_DROP_NAT_NO_MAPPING 167       /* a NodePort SNAT found no free port (nodeport.h) */
#define FS_DROP_POLICY_DENY 181      /* an explicit deny rule matched */

#endif /* FLOWSCOPE_DROP_H */
