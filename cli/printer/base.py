"""What every flow printer shares: its options, and sorting responses into flows, node status and lost events.

Node status events go to stderr, as in hubble, and only the ones that say something is wrong (a node is
unavailable or failed) unless --debug asks for the informational ones too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from flowscope.api.observer import observer_pb2
from flowscope.api.relay import relay_pb2
from flowscope.cli.printer.sink import Sink


@dataclass(frozen=True)
class PrintOptions:
    time_format: str = "StampMilli"
    node_name: bool = False
    policy_names: bool = False  # --print-policy-names: the policies behind a policy verdict
    ip_translation: bool = True
    debug: bool = False


class FlowPrinter:
    """Prints GetFlowsResponses; subclasses say how a flow, a node status and a lost event look."""

    def __init__(self, out: Sink, err: Sink, options: PrintOptions | None = None) -> None:
        self.out = out
        self.err = err
        self.options = options or PrintOptions()
        self.printed = 0

    def write(self, response: observer_pb2.GetFlowsResponse) -> None:
        kind = response.WhichOneof("response_types")
        if kind == "flow":
            self.flow(response)
            self.printed += 1
        elif kind == "lost_events":
            self.lost_events(response)
            self.printed += 1
        elif kind == "node_status" and self._shows(response.node_status):
            self.node_status(response)

    def write_bytes(self, batch: Iterable[bytes]) -> None:
        """GetFlowsResponses as the wire brought them, printed as `write` prints them parsed. A reader that has
        the bytes hands them over as they are: a printer that can write from bytes (json) skips the parsing;
        the others parse here. Bytes that are not a GetFlowsResponse raise protobuf's DecodeError."""
        for data in batch:
            self.write(observer_pb2.GetFlowsResponse.FromString(data))

    def _shows(self, status: relay_pb2.NodeStatusEvent) -> bool:
        serious = status.state_change in (relay_pb2.NODE_ERROR, relay_pb2.NODE_UNAVAILABLE)
        return serious or self.options.debug

    def flow(self, response: observer_pb2.GetFlowsResponse) -> None:
        raise NotImplementedError

    def lost_events(self, response: observer_pb2.GetFlowsResponse) -> None:
        raise NotImplementedError

    def node_status(self, response: observer_pb2.GetFlowsResponse) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.out.flush()
        self.err.flush()
