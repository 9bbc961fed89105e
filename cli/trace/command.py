"""`flowscope trace`: packet-path sessions, "where did my packet go, and why?".

    flowscope trace --from-pod default/client --to-port 9000 --protocol tcp --tcp-flags syn
    flowscope trace --pcap-filter 'udp and dst port 9999' --count 1
    flowscope trace --to-pod web/web --summary --count 50 --duration 10s
    flowscope trace --pcap-filter 'host 10.200.2.12' -o json
    flowscope trace --to-port 80 --write session.pcapng     # one interface per observation point (tshark -r)

A session picks packets with the filter as they enter the datapath of each node (the same filter flags as
observe, and a pcap-filter subset: docs/trace.md), then follows each picked packet through every tc hook,
tail-call stage and kernel tracepoint of the node until its fate: delivered, forwarded out of the node, or
dropped (where, and why). Paths continue across nodes by a digest of the packet's invariant headers, and say
so. It ends after --count packets (default 10) on each node or --duration (default 30s), or on Ctrl-C.

Sessions change what the datapath does, so they run on an agent's write side: its unix socket (or its mutual
TLS control listener). With no --server, every agent of a lab that is up is asked, and their paths merged.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
from rich.console import Console

from flowscope.api.trace import trace_pb2, trace_pb2_grpc
from flowscope.cli.agent_calls import add_agent_target_flags, agent_targets
from flowscope.cli.connection import Connection, ServerOptions, connect
from flowscope.cli.errors import CliError, UsageError
from flowscope.cli.interrupts import EXIT_CODE, Interrupts, Stop
from flowscope.cli.observe.flags import add_filter_flags, filter_builder
from flowscope.cli.trace.paths import Path as TracedPath
from flowscope.cli.trace.pcapng import PcapngWriter
from flowscope.cli.trace.render import OUTPUTS, Renderer
from flowscope.common.durations import parse_duration


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "trace",
        help="follow packets hop by hop through every node, to their fate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    session = parser.add_argument_group("session")
    session.add_argument("--pcap-filter", metavar="EXPR", default="", help="pcap-filter subset ('tcp port 80')")
    session.add_argument("--count", type=int, default=10, metavar="N", help="packets to follow on each node (10)")
    session.add_argument("--duration", default="30s", metavar="D", help="longest the session runs (30s)")
    session.add_argument("--payload", action="store_true", help="keep packet bytes past the L4 header")
    output = parser.add_argument_group("output")
    output.add_argument("-o", "--output", choices=OUTPUTS, default="tree", help="tree (default), json or jsonpb")
    output.add_argument("--summary", action="store_true", help="count the packets that took the same path")
    output.add_argument("--write", type=Path, metavar="FILE", help="also write the hops as pcapng")
    add_filter_flags(parser)
    add_agent_target_flags(parser)
    parser.set_defaults(run=run)


def build_request(args: argparse.Namespace) -> trace_pb2.TraceRequest:
    """The TraceRequest for these flags: observe's filter flags as Hubble's filters, and the session's limits."""
    try:
        whitelist, blacklist = filter_builder(args).build()
        seconds = parse_duration(args.duration)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if blacklist:
        raise UsageError("--not cannot pick packets: use --pcap-filter 'not ...' to leave some out")
    if args.count <= 0:
        raise UsageError(f"--count must be positive, not {args.count}")
    if seconds <= 0:
        raise UsageError(f"--duration must be positive, not {args.duration}")
    request = trace_pb2.TraceRequest(
        filters=whitelist, pcap_filter=args.pcap_filter, count=args.count, payload=args.payload
    )
    request.duration.FromNanoseconds(int(seconds * 1e9))
    return request


def run(args: argparse.Namespace) -> int:
    with Interrupts() as interrupts:
        follow(args, interrupts)
    return EXIT_CODE if interrupts.stopped else 0


def follow(args: argparse.Namespace, interrupts: Interrupts) -> None:
    """The session these flags ask for, shown as it goes, until it ends or `interrupts` stops it (its sessions
    are then cancelled on their agents, and what was followed so far is shown). Taking the interrupts from the
    caller lets `top` run a session inside its screen and tell a Ctrl-C, which ends the session, from a SIGTERM,
    which ends top too."""
    request = build_request(args)
    targets = agent_targets(args)
    console = Console(soft_wrap=args.output != "tree")
    renderer = Renderer(console, args.output, args.summary, err=Console(stderr=True, soft_wrap=True))
    writer = PcapngWriter.create(args.write) if args.write else None
    try:
        sessions = [NodeSession(node, options, request, interrupts) for node, options in sorted(targets.items())]
        try:
            for event in _events(sessions, interrupts):
                renderer.event(event)
        finally:
            for session in sessions:
                session.cancel()
        paths = renderer.finish()
        if writer is not None:
            _write(writer, renderer.events, path_ids(paths.paths))
    finally:
        if writer is not None:
            writer.close()


def _write(writer: PcapngWriter, events: list[trace_pb2.TraceEvent], path_ids: dict[tuple[str, str], int]) -> None:
    for event in events:
        if event.WhichOneof("event") == "hop":
            writer.write(event, path_id=path_ids.get((event.node_name, event.hop.packet_id)))
        else:
            writer.write(event)


def path_ids(paths: list[TracedPath]) -> dict[tuple[str, str], int]:
    """(node, packet id) -> the id of the path it is on: the packet id pcapng gives every hop of the path."""
    return {(packet.node, packet.packet_id): path.id for path in paths for packet in path.packets}


def _events(sessions: list[NodeSession], interrupts: Interrupts) -> Iterator[trace_pb2.TraceEvent]:
    """Every node's events as they come, until every session ended (or a signal came: then the sessions are
    cancelled, which ends them on their agents at once)."""
    for session in sessions:
        session.start()
    running = len(sessions)
    while running:
        item = interrupts.get()
        if isinstance(item, Stop):
            return
        if isinstance(item, Finished):
            running -= 1
            if item.error is not None:
                raise item.error
            continue
        if isinstance(item, trace_pb2.TraceEvent):
            yield item


class Finished:
    """A node's stream ended: by itself (error None), or failing with a CliError."""

    def __init__(self, error: CliError | None) -> None:
        self.error = error


class NodeSession(threading.Thread):
    """One agent's session: its events go into the shared inbox, then `Finished`."""

    def __init__(
        self, node: str, options: ServerOptions, request: trace_pb2.TraceRequest, interrupts: Interrupts
    ) -> None:
        super().__init__(name=f"trace {node or options.server}", daemon=True)
        self._node = node
        self._options = options
        self._request = request
        self._inbox = interrupts.inbox
        self._connection: Connection | None = None
        self._call: grpc.Call | None = None
        self._cancelled = threading.Event()

    def run(self) -> None:
        try:
            self._connection = connect(self._options)
            if self._cancelled.is_set():
                return
            stub = trace_pb2_grpc.TracerStub(self._connection.channel)
            self._call = stub.Trace(self._request)
            for event in self._call:
                self._inbox.put(event)
            self._inbox.put(Finished(None))
        except CliError as exc:
            self._inbox.put(Finished(self._named(exc)))
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED and self._cancelled.is_set():
                self._inbox.put(Finished(None))
            else:
                self._inbox.put(Finished(self._named(self._error(exc))))

    def cancel(self) -> None:
        """End the session on its agent (the agent stops it when the call goes) and close the channel."""
        self._cancelled.set()
        if self._call is not None:
            self._call.cancel()
        if self._connection is not None:
            self._connection.close()

    def _error(self, exc: grpc.RpcError) -> CliError:
        assert self._connection is not None
        code = exc.code()
        if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED):
            return CliError(str(exc.details()))
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return CliError(f"{self._connection.target} does not run packet-path sessions: point --server at an agent")
        if code == grpc.StatusCode.PERMISSION_DENIED:
            return CliError(f"{self._connection.target}: {exc.details()}")
        return self._connection.error(exc)

    def _named(self, exc: CliError) -> CliError:
        return CliError(f"{self._node}: {exc.message}") if self._node else exc
