"""Assembling a session's hops into packet paths: what `flowscope trace` shows.

Each node's session reports hops of the packets it picked; the hops of one packet on one node share a
`packet_id` and are ordered by the node's monotonic clock (then `index`). A packet that leaves a node shows up on
the next node under that node's own packet id, so the two are linked by the `digest` of the header fields no hop
changes: the packet that left node A (its last hop a transmit) continues as the packet that entered node B from
the network (its first hop from-network/from-overlay) with the same digest, no earlier. The link is inferred,
never proven, and deltas across it come from wall clocks, so both are marked.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from flowscope.api.trace import trace_pb2
from flowscope.cli.trace.fate import ARRIVAL_POINTS, FORWARDED, Fate, is_transmit, packet_fate

LINK_DIGEST = "digest"
LINK_SEQ_RANGE = "sequence range"  # pieces of one segment (TSO/GSO, GRO), linked by the bytes they carry


@dataclass
class Packet:
    """One packet's hops on one node, in order."""

    node: str
    packet_id: str
    hops: list[trace_pb2.Hop] = field(default_factory=list)
    times: list[int] = field(default_factory=list)  # each hop's wall-clock time, ns since the epoch

    @property
    def key(self) -> tuple[str, str]:
        return self.node, self.packet_id

    @property
    def start(self) -> int:
        return self.times[0] if self.times else 0

    @property
    def fate(self) -> Fate:
        return packet_fate(self.node, self.hops)

    def entry(self) -> trace_pb2.Hop | None:
        """The first tc hop: where the datapath picked the packet (kernel hops before it are the stack's)."""
        return next((hop for hop in self.hops if hop.kind != trace_pb2.KERNEL), None)

    def entered_from_network(self) -> bool:
        entry = self.entry()
        return entry is not None and entry.hook in ARRIVAL_POINTS

    def exit(self) -> tuple[trace_pb2.Hop, int] | None:
        """The last hop that saw the bytes the packet left the node with (its digest and sequence range), and
        when it was sent: its last transmit hop's time, for a forwarded one."""
        if self.fate.kind != FORWARDED:
            return None
        sent = [i for i, hop in enumerate(self.hops) if is_transmit(hop)]
        seen = [hop for hop in self.hops[: sent[-1] + 1] if hop.digest]
        return (seen[-1], self.times[sent[-1]]) if seen else None


@dataclass(frozen=True)
class PathHop:
    """A hop in its path, with the time since the hop before it."""

    node: str
    packet_id: str
    hop: trace_pb2.Hop
    delta_us: float | None  # None on the path's first hop
    clock_dependent: bool = False  # the delta crosses nodes: wall clocks, not one kernel's monotonic clock
    link: str = ""  # on a linked packet's first hop: how it was linked ("digest")


@dataclass
class Path:
    """A packet's path through one node or several, its packets linked in order."""

    id: int
    packets: list[Packet]
    links: list[str] = field(default_factory=list)  # how packets[i + 1] was linked to packets[i]

    @property
    def fate(self) -> Fate:
        return self.packets[-1].fate

    @property
    def start(self) -> int:
        return self.packets[0].start

    def hops(self) -> list[PathHop]:
        out: list[PathHop] = []
        for number, packet in enumerate(self.packets):
            for i, hop in enumerate(packet.hops):
                if i:
                    delta = (hop.ktime_ns - packet.hops[i - 1].ktime_ns) / 1000
                    out.append(PathHop(packet.node, packet.packet_id, hop, delta))
                elif number == 0:
                    out.append(PathHop(packet.node, packet.packet_id, hop, None))
                else:
                    wall = (packet.start - self.packets[number - 1].times[-1]) / 1000
                    how = self.links[number - 1] if number <= len(self.links) else LINK_DIGEST
                    out.append(PathHop(packet.node, packet.packet_id, hop, wall, True, how))
        return out

    def steps(self) -> tuple[tuple[str, str], ...]:
        """The (node, hook) sequence, a hook repeated back to back counted once: what --summary groups by."""
        steps: list[tuple[str, str]] = []
        for packet in self.packets:
            for hop in packet.hops:
                if not steps or steps[-1] != (packet.node, hop.hook):
                    steps.append((packet.node, hop.hook))
        return tuple(steps)


@dataclass
class Session:
    """Everything a session reported: its paths, and each node's start and end."""

    paths: list[Path]
    started: dict[str, trace_pb2.SessionStarted] = field(default_factory=dict)
    ended: dict[str, trace_pb2.SessionEnded] = field(default_factory=dict)

    def lost(self) -> dict[str, int]:
        """Hops each node could not keep, for the nodes that lost any."""
        return {node: end.hops_lost for node, end in sorted(self.ended.items()) if end.hops_lost}


@dataclass(frozen=True)
class PathGroup:
    """Paths that took the same steps to the same fate, for --summary."""

    steps: tuple[tuple[str, str], ...]
    fate: str
    count: int
    path_ids: tuple[int, ...]


def hop_time(event: trace_pb2.TraceEvent) -> int:
    """A hop's wall-clock time in ns: its own, else the event's."""
    hop = event.hop
    stamp = hop.time if hop.HasField("time") else event.time
    return stamp.seconds * 1_000_000_000 + stamp.nanos


def packets(events: Iterable[trace_pb2.TraceEvent]) -> tuple[list[Packet], Session]:
    """The packets in `events`, each one's hops in order, and the session's start and end per node."""
    session = Session([])
    by_key: dict[tuple[str, str], Packet] = {}
    for event in events:
        kind = event.WhichOneof("event")
        if kind == "started":
            session.started[event.node_name] = event.started
        elif kind == "ended":
            session.ended[event.node_name] = event.ended
        elif kind == "hop":
            key = (event.node_name, event.hop.packet_id)
            packet = by_key.setdefault(key, Packet(*key))
            packet.hops.append(event.hop)
            packet.times.append(hop_time(event))
    for packet in by_key.values():
        order = sorted(range(len(packet.hops)), key=lambda i: (packet.hops[i].ktime_ns, packet.hops[i].index))
        packet.hops = [packet.hops[i] for i in order]
        packet.times = [packet.times[i] for i in order]
    return sorted(by_key.values(), key=lambda p: (p.start, p.key)), session


def link(found: list[Packet]) -> list[tuple[list[Packet], list[str]]]:
    """Chains of packets linked across nodes, in order of their first hop's time, each with how its links
    were made.

    Taken in time order, a packet that left its node through a transmit continues as the earliest packet not yet
    linked that entered another node from the network at or after the transmit: with the same digest, or,
    failing that, of the same connection carrying an overlapping range of its TCP byte stream (the pieces of a
    segment that TSO/GSO cut up, or GRO merged, on the way)."""
    follows: dict[tuple[str, str], tuple[Packet, str]] = {}
    linked: set[tuple[str, str]] = set()
    for packet in found:
        sent = packet.exit()
        if sent is None:
            continue
        hop, when = sent
        arrivals = [
            c
            for c in found
            if c.node != packet.node and c.key not in linked and c.entered_from_network() and c.start >= when
        ]
        for how, same in ((LINK_DIGEST, _same_digest), (LINK_SEQ_RANGE, _overlapping_range)):
            candidate = next((c for c in arrivals if same(hop, c.entry())), None)
            if candidate is not None:
                follows[packet.key] = (candidate, how)
                linked.add(candidate.key)
                break
    chains = []
    for packet in found:
        if packet.key in linked:
            continue
        chain, hows = [packet], []
        while chain[-1].key in follows:
            following, how = follows[chain[-1].key]
            chain.append(following)
            hows.append(how)
        chains.append((chain, hows))
    return chains


def _same_digest(sent: trace_pb2.Hop, entry: trace_pb2.Hop | None) -> bool:
    return entry is not None and bool(entry.digest) and entry.digest == sent.digest


def _overlapping_range(sent: trace_pb2.Hop, entry: trace_pb2.Hop | None) -> bool:
    if entry is None or not sent.flow_digest or entry.flow_digest != sent.flow_digest:
        return False
    if not (sent.payload_length and entry.payload_length):
        return False
    ahead = (entry.tcp_seq - sent.tcp_seq) % 2**32  # how far the arrival starts after the sent piece, mod 2^32
    behind = (sent.tcp_seq - entry.tcp_seq) % 2**32
    return ahead < sent.payload_length or behind < entry.payload_length


def assemble(events: Iterable[trace_pb2.TraceEvent]) -> Session:
    """The session's paths, numbered from 1 in order of their first hop's time, and its start and end."""
    found, session = packets(events)
    session.paths = [Path(number, chain, hows) for number, (chain, hows) in enumerate(link(found), start=1)]
    return session


def summary(session: Session) -> list[PathGroup]:
    """Paths grouped by their steps and fate, the most common first (then the earliest seen)."""
    groups: dict[tuple[tuple[tuple[str, str], ...], str], list[int]] = {}
    for path in session.paths:
        groups.setdefault((path.steps(), path.fate.short()), []).append(path.id)
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[1][0]))
    return [PathGroup(steps, fate, len(ids), tuple(ids)) for (steps, fate), ids in ordered]
