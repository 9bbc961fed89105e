"""Wire a planned topology: the underlay bridge, nodes and the world host on it, and pods on the nodes.

Pods are routed the way Cilium and Calico route them, with no bridge on the node: a pod has a /32 and a /128
on its `eth0` and a default route through a link-local gateway (169.254.1.1, fe80::1) that the host side
`lxc<id>` answers (proxy ARP for IPv4, a link-local address for IPv6); the node has a host route to each of
its pods and routes the other nodes' pod CIDRs over the underlay. Every packet between pods, nodes and the
world therefore crosses an `lxc` device and, off the node, its `eth0`: where a datapath observes them.

With --tunnel vxlan, nodes reach each other's pods over an overlay instead, as Cilium does by default: each node
has a VXLAN device `fs_vxlan` in external (collect-metadata) mode, like cilium_vxlan, and its routes to the other
nodes' pod CIDRs go through it carrying the tunnel key as lightweight-tunnel encapsulation (`encap ip id <vni>
dst <node>`): the kernel itself encapsulates, so the overlay works without an agent (a datapath only observes
it), and the key is the packet's tunnel metadata, which tc programs on fs_vxlan read at both hooks. The routes
go via a fixed neighbour (the CIDR's first address, with the remote device's MAC) so no ARP crosses the
overlay. Pods get the overlay's MTU (1450: 50 bytes of outer headers), as Cilium gives them.

Nothing is created in the root namespace: veth pairs are made from inside the underlay or the node, with the
peer born directly in its namespace.
"""

from __future__ import annotations

from flowscope.common.overlay import VXLAN_PORT
from flowscope.lab import netns
from flowscope.lab.topology import (
    GATEWAY_V4,
    GATEWAY_V6,
    TUNNEL_DEVICE,
    TUNNEL_VNI,
    Host,
    NodeHost,
    Pod,
    Topology,
)

BRIDGE = "br0"
OVERLAY_MTU = 1450  # 1500 less the outer Ethernet (14), IPv4 (20), UDP (8) and VXLAN (8) headers

# Addresses are used the moment the lab is up, so no duplicate address detection (which delays IPv6 by
# a second or two), and proxy ARP answers at once instead of after a random delay of up to 0.8 s.
_QUIET_IPV6 = {"net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0"}
_NODE_SYSCTLS = {
    **_QUIET_IPV6,
    "net.ipv4.ip_forward": "1",
    "net.ipv6.conf.all.forwarding": "1",
    # NodePort to a remote backend: the datapath SNATs the packet to the node's own address at tc ingress (and
    # gives the reply that source back there), so the kernel must route packets whose source is its own
    "net.ipv4.conf.all.accept_local": "1",
}


def build(topology: Topology) -> None:
    """Create links, addresses and routes in the (already added) namespaces of the topology."""
    for host in [*topology.nodes, topology.world]:
        netns.sysctl(host.netns, _NODE_SYSCTLS if isinstance(host, NodeHost) else _QUIET_IPV6)
    for pod in topology.pods:
        netns.sysctl(pod.netns, _QUIET_IPV6)
    netns.ip_batch(topology.underlay_netns, _underlay(topology))
    for node in topology.nodes:
        pods = [pod for pod in topology.pods if pod.node == node.name]
        netns.ip_batch(node.netns, _node(node, topology, pods))
    netns.ip_batch(topology.world.netns, _world(topology.world, topology.nodes))
    mtu = _pod_mtu(topology)
    for pod in topology.pods:
        netns.ip_batch(pod.netns, pod_side(pod, mtu))


def _pod_mtu(topology: Topology) -> int | None:
    return OVERLAY_MTU if topology.tunnel == "vxlan" else None


def _uplink(host: Host) -> str:
    """The underlay side of a host's eth0 (at most 15 characters: `u-` and a short host name)."""
    return f"u-{host.name}"


def _underlay(topology: Topology) -> list[str]:
    commands = [
        "link set lo up",
        f"link add {BRIDGE} type bridge forward_delay 0 mcast_snooping 0",
        f"link set {BRIDGE} up",
    ]
    for host in [*topology.nodes, topology.world]:
        commands += [
            f"link add {_uplink(host)} type veth peer name eth0 netns {host.netns}",
            f"link set {_uplink(host)} master {BRIDGE} up",
        ]
    return commands


def _on_underlay(host: Host) -> list[str]:
    return [
        "link set lo up",
        f"addr add {host.ipv4}/24 dev eth0",
        f"addr add {host.ipv6}/64 dev eth0 nodad",
        "link set eth0 up",
    ]


def _node(node: NodeHost, topology: Topology, pods: list[Pod]) -> list[str]:
    """A node's default route leads to the world host, its gateway out of the cluster."""
    commands = _on_underlay(node)
    world = topology.world
    commands += [f"route add default via {world.ipv4}", f"route add default via {world.ipv6}"]
    overlay = topology.tunnel == "vxlan"
    if overlay:
        commands += _tunnel_device(node)
    for other in topology.nodes:
        if other is not node:
            commands += _overlay_routes(node, other) if overlay else _pod_routes(other)
    for pod in pods:
        commands += host_side(pod, _pod_mtu(topology))
    return commands


def _tunnel_device(node: NodeHost) -> list[str]:
    """The node's VXLAN device, Cilium's way: external, so each packet's route says where it goes."""
    return [
        f"link add {TUNNEL_DEVICE} address {node.tunnel_mac} mtu {OVERLAY_MTU} type vxlan external "
        f"dstport {VXLAN_PORT}",
        f"link set {TUNNEL_DEVICE} up",
    ]


def _overlay_routes(node: NodeHost, other: NodeHost) -> list[str]:
    """Another node's pod CIDRs through the tunnel, to that node's underlay address (IPv6 too, over IPv4)."""
    encap = f"encap ip id {TUNNEL_VNI} dst {other.ipv4} src {node.ipv4}"
    commands = []
    for cidr in (other.pod_cidr_v4, other.pod_cidr_v6):
        via = cidr.split("/")[0]  # the CIDR's first address: no pod has it, the remote device answers for it
        commands += [
            f"neigh add {via} lladdr {other.tunnel_mac} dev {TUNNEL_DEVICE} nud permanent",
            f"route add {cidr} {encap} via {via} dev {TUNNEL_DEVICE} onlink",
        ]
    return commands


def host_side(pod: Pod, mtu: int | None = None) -> list[str]:
    """In the node: the pod's veth (its peer moved into the pod), the gateway it answers for, host routes."""
    return [
        f"link add {pod.ifname} type veth peer name eth0 netns {pod.netns}",
        f"link set {pod.ifname} up" + (f" mtu {mtu}" if mtu else ""),
        f"neigh add proxy {GATEWAY_V4} dev {pod.ifname}",
        f"ntable change name arp_cache dev {pod.ifname} proxy_delay 0",
        f"addr add {GATEWAY_V6}/64 dev {pod.ifname} nodad",
        f"route add {pod.ipv4}/32 dev {pod.ifname}",
        f"route add {pod.ipv6}/128 dev {pod.ifname}",
    ]


def _world(world: Host, nodes: tuple[NodeHost, ...]) -> list[str]:
    """The world host routes each node's pod CIDR to that node, as a cloud router would (no masquerading)."""
    commands = _on_underlay(world)
    for node in nodes:
        commands += _pod_routes(node)
    return commands


def _pod_routes(node: NodeHost) -> list[str]:
    """Routes to a node's pod CIDRs through that node: how the other nodes and the world reach its pods."""
    return [
        f"route add {node.pod_cidr_v4} via {node.ipv4}",
        f"route add {node.pod_cidr_v6} via {node.ipv6}",
    ]


def pod_side(pod: Pod, mtu: int | None = None) -> list[str]:
    """In the pod: its addresses and a default route through the link-local gateway."""
    return [
        "link set lo up",
        "link set eth0 up" + (f" mtu {mtu}" if mtu else ""),
        f"addr add {pod.ipv4}/32 dev eth0",
        f"addr add {pod.ipv6}/128 dev eth0 nodad",
        f"route add {GATEWAY_V4} dev eth0 scope link",
        f"route add default via {GATEWAY_V4} dev eth0",
        f"route add default via {GATEWAY_V6} dev eth0",
    ]
