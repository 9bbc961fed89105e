/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Drop reasons the datapath itself gives, numbered as Cilium's (and so as flow.DropReason on the wire).
 */
#ifndef FLOWSCOPE_DROP_H
#define FLOWSCOPE_DROP_H

#define FS_DROP_MISSED_TAIL_CALL 140 /* a tail call found its slot empty: never pass such a packet silently */

#endif /* FLOWSCOPE_DROP_H */
