/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The floor of what observing with tc costs: a program that does nothing, attached where the datapath's entry
 * programs attach. bench/datapath_bench.py measures the traffic with it, so that what is left between it and
 * flowscope is what flowscope's own work costs, and what is left below it is what any tc program costs.
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>

int pass(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}
