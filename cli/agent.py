"""`flowscope agent`: run the node agent in the foreground until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from flowscope.cli.config import add_agent_flags, agent_settings
from flowscope.cli.stall import add_stall_timeout
from flowscope.common.capture import DEFAULT_CAPLEN
from flowscope.common.l7_ports import DEFAULT_L7_PORTS, L7Port, parse_l7_ports
from flowscope.common.paths import DEFAULT_SOCKET
from flowscope.observer.exporter.flags import add_export_flags
from flowscope.observer.history.flags import add_export_flags as add_history_flags
from flowscope.observer.l7.store import DEFAULT_CAPACITY as L7_STORE_SIZE
from flowscope.observer.metrics.options import DEFAULT_HANDLERS as DEFAULT_METRICS

if TYPE_CHECKING:
    from flowscope.common.tls import ServerTLS
    from flowscope.observer.agent import AgentConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("agent", help="run the node agent (loads the datapath, serves flows)")
    p.add_argument("--node-name", default=socket.gethostname(), help="this node's name (default: hostname)")
    p.add_argument("--cluster-file", type=Path, help="cluster metadata JSON (nodes and endpoints); re-read on change")
    p.add_argument("--device", help="the node's network device, traced as from/to-network (e.g. eth0)")
    p.add_argument(
        "--tunnel-device",
        help="the node's overlay tunnel device, traced as to/from-overlay with the outer headers (e.g. fs_vxlan)",
    )
    p.add_argument("--socket", type=Path, default=DEFAULT_SOCKET, help=f"unix socket to serve on ({DEFAULT_SOCKET})")
    p.add_argument(
        "--listen-address",
        default=":4244",
        help="TCP address of the read-only services (Observer, Peer, health); empty for none (:4244)",
    )
    p.add_argument(
        "--control-listen-address",
        metavar="ADDRESS",
        help="also serve flowscope.control (policy, settings) on this TCP address; needs mutual TLS "
        "(--tls-client-ca-files). Without it, only the unix socket serves it",
    )
    p.add_argument("--ring-capacity", type=int, default=65535, help="flows kept, 2^n-1 (65535)", dest="ring_capacity")
    p.add_argument(
        "--caplen",
        type=int,
        default=DEFAULT_CAPLEN,
        help="packet bytes captured per event, multiple of 8 (%(default)s)",
    )
    p.add_argument(
        "--ring-buffer-pages",
        type=int,
        default=1024,
        help="the kernel's event buffer, in pages, a power of two (1024: 4 MiB)",
    )
    p.add_argument(
        "--l7-ports",
        type=_l7_ports,
        default=DEFAULT_L7_PORTS,
        metavar="SPEC",
        help="ports whose DNS, HTTP and TLS ClientHello payload is captured for L7 flows: PROTOCOL/PORT=KIND[:CAPLEN],"
        " comma-separated, or none (%(default)s)",
    )
    p.add_argument(
        "--l7-keep-url-query",
        action="store_true",
        help="keep HTTP URLs' query strings in L7 flows (by default they read ?HUBBLE_REDACTED)",
    )
    p.add_argument(
        "--l7-keep-userinfo",
        action="store_true",
        help="keep the user info (user:password@) of HTTP URLs in L7 flows (by default HUBBLE_REDACTED)",
    )
    p.add_argument(
        "--l7-http-headers",
        type=_header_names,
        default=frozenset(),
        metavar="NAME[,NAME]",
        help="HTTP headers L7 flows keep, case-insensitive (default: none, every header is dropped)",
    )
    p.add_argument(
        "--l7-store-size",
        type=int,
        default=L7_STORE_SIZE,
        metavar="N",
        help="L7 messages kept beside the flows, about 650 bytes each (%(default)s)",
    )
    p.add_argument("--tls-cert-file", type=Path, help="server certificate (turns on TLS for TCP)")
    p.add_argument("--tls-key-file", type=Path, help="server key")
    p.add_argument(
        "--tls-client-ca-files",
        type=Path,
        nargs="*",
        default=[],
        help="CAs of client certificates (mutual TLS)",
    )
    p.add_argument(
        "--kernel-drops",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="report the kernel's own drops, with its reason (skb:kfree_skb) (on)",
    )
    p.add_argument(
        "--kernel-drop-rate",
        type=int,
        default=1000,
        help="kernel drop reports per second, per reason and CPU, before they are only counted; 0: no limit (1000)",
    )
    p.add_argument(
        "--report-unspecified-drops",
        action="store_true",
        help="also report NOT_SPECIFIED kernel drops (every plain kfree_skb; noisy)",
    )
    p.add_argument(
        "--metrics-address",
        metavar="ADDRESS",
        help="serve Prometheus metrics on this address, e.g. :9965 (Hubble's port); none when not given",
    )
    p.add_argument(
        "--metrics",
        metavar="HANDLERS",
        help="the metric handlers, as Hubble's option: 'flow:sourceContext=namespace|pod;destinationContext="
        f"namespace drop tcp ...' ({DEFAULT_METRICS}; also dns, http, flows-to-world)",
    )
    p.add_argument(
        "--metrics-bpf-stats",
        action="store_true",
        help="hold kernel BPF statistics on for the programs' run counts and times in the metrics"
        " (every program run then pays two clock reads)",
    )
    add_export_flags(p)
    add_history_flags(p)
    add_stall_timeout(p)
    p.add_argument(
        "--compile-cache",
        type=Path,
        metavar="DIR",
        help="where compiled programs are kept, so that a start with unchanged programs and kernel does not compile"
        " (/var/cache/flowscope/datapath)",
    )
    p.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="compile the programs at every start, and neither read nor write the compile cache",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--uninstall",
        action="store_true",
        help="remove what agents keep in this network namespace (attached programs, pins, conntrack tables), then exit",
    )
    add_agent_flags(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: loading the agent (bcc, numpy, the datapath) costs every other command 0.4 s otherwise.
    from flowscope.common.tls import TLSConfigError, server_tls
    from flowscope.observer.agent import Agent

    if args.uninstall:
        return uninstall()
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        tls = server_tls(
            args.tls_cert_file,
            args.tls_key_file,
            args.tls_client_ca_files,
            flags=("--tls-cert-file", "--tls-key-file", "--tls-client-ca-files"),
        )
    except TLSConfigError as exc:
        print(f"flowscope agent: {exc}", file=sys.stderr)
        return 2
    try:
        agent = Agent(config_from(args, tls))
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"flowscope agent: {exc}", file=sys.stderr)
        return 1
    with agent:
        agent.wait()
    return 0


def _l7_ports(spec: str) -> tuple[L7Port, ...]:
    try:
        return parse_l7_ports(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _header_names(text: str) -> frozenset[str]:
    names = frozenset(name.strip().lower() for name in text.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError("give header names separated by commas, e.g. content-type,user-agent")
    return names


def config_from(args: argparse.Namespace, tls: ServerTLS | None) -> AgentConfig:
    """The AgentConfig the flags describe (`tls`: what the TLS flags gave, already checked)."""
    from flowscope.observer.agent import AgentConfig
    from flowscope.observer.exporter.settings import from_args as export_settings
    from flowscope.observer.history.flags import writer_options
    from flowscope.observer.l7.source import Redaction

    return AgentConfig(
        node_name=args.node_name,
        cluster_file=args.cluster_file,
        device=args.device,
        tunnel_device=args.tunnel_device,
        socket_path=args.socket,
        listen_address=args.listen_address or None,
        control_listen_address=args.control_listen_address or None,
        ring_capacity=args.ring_capacity,
        caplen=args.caplen,
        ring_buffer_pages=args.ring_buffer_pages,
        l7_ports=args.l7_ports,
        l7_redaction=Redaction(args.l7_keep_url_query, args.l7_keep_userinfo, args.l7_http_headers),
        l7_store_size=args.l7_store_size,
        tls=tls,
        kernel_drops=args.kernel_drops,
        kernel_drop_rate=args.kernel_drop_rate,
        report_unspecified_drops=args.report_unspecified_drops,
        stall_s=args.stall_timeout,
        compile_cache=_compile_cache(args),
        metrics_address=args.metrics_address or None,
        metrics=args.metrics or None,
        metrics_bpf_stats=args.metrics_bpf_stats,
        export=export_settings(args),
        export_clickhouse=args.export_clickhouse,
        history=writer_options(args),
        **agent_settings(args),
    )


def _compile_cache(args: argparse.Namespace) -> Path | None:
    """Where the agent keeps compiled programs: the default folder unless a flag names another or turns it off."""
    from flowscope.observer.datapath.compile_cache import DEFAULT_FOLDER

    if args.no_compile_cache:
        return None
    return args.compile_cache or DEFAULT_FOLDER


def uninstall() -> int:
    """Remove what agents keep in this network namespace across their restarts (docs/design.md, clean-up), under
    the agent's lock: never from under a running agent."""
    from flowscope.observer.agent import NodeLock
    from flowscope.observer.datapath import pins, uninstall

    try:
        lock = NodeLock()
    except RuntimeError as exc:
        print(f"flowscope agent: {exc}; stop it first", file=sys.stderr)
        return 1
    try:
        detached, had_pins = uninstall()
    finally:
        lock.release()
    folder = pins.pin_dir()
    if had_pins:
        print(f"flowscope agent: removed {folder} (conntrack tables included) and took {detached} programs off hooks")
    else:
        print(f"flowscope agent: nothing to remove ({folder} does not exist)")
    return 0
