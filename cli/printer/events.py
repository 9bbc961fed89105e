"""The words for events that are not flows: node status changes and lost events."""

from __future__ import annotations

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.api.relay import relay_pb2
from flowscope.cli.timefmt import format_timestamp

_NODE_NAMES_CUTOFF = 50


def join_with_cutoff(items: list[str], separator: str = ", ", target: int = _NODE_NAMES_CUTOFF) -> str:
    """Names joined until the text gets long, then `(and N more)`; always at least one name."""
    length, end = 0, len(items)
    for index, item in enumerate(items):
        length += len(item) + len(separator)
        if length > target and index > 0:
            end = index
            break
    joined = separator.join(items[:end])
    return joined if end == len(items) else f"{joined} (and {len(items) - end} more)"


def node_status_line(response: observer_pb2.GetFlowsResponse, time_format: str) -> str:
    """`TIME [node]: 2 nodes are unavailable: a, b` and its siblings, as hubble words them."""
    status = response.node_status
    count, node_names = len(status.node_names), join_with_cutoff(list(status.node_names))
    prefix = f"{format_timestamp(response.time, time_format)} [{response.node_name}]"
    match status.state_change:
        case relay_pb2.NODE_CONNECTED:
            return f"{prefix}: Receiving flows from {count} nodes: {node_names}"
        case relay_pb2.NODE_UNAVAILABLE:
            return f"{prefix}: {count} nodes are unavailable: {node_names}"
        case relay_pb2.NODE_GONE:
            return f"{prefix}: {count} nodes removed from cluster: {node_names}"
        case relay_pb2.NODE_ERROR:
            return f'{prefix}: Error "{status.message}" on {count} nodes: {node_names}'
    return f"{prefix}: unknown node status event: {relay_pb2.NodeState.Name(status.state_change)}"


def lost_source(lost: flow_pb2.LostEvent) -> str:
    source = lost.source
    return flow_pb2.LostEventSource.Name(source) if source in flow_pb2.LostEventSource.values() else str(source)
