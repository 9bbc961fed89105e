"""`flowscope relay`: serve every node's flows as one stream, as Hubble Relay does, until SIGINT or SIGTERM.

flowscope relay                                   # follow the local agent's peer service
flowscope relay --peer-service 10.77.0.1:4244     # ... or a remote one
flowscope relay --peers node1=10.77.0.1:4244,node2=10.77.0.2:4244
flowscope relay --metrics-address :9966           # Prometheus metrics, as Hubble Relay's (docs/metrics.md)

Packet-path sessions (`flowscope trace --server <relay>`) run on every node through the relay. They change
what the datapath does, so the relay serves them only to callers it can trust (its --socket, or a listen
address with mutual TLS: --tls-client-ca-files; elsewhere PERMISSION_DENIED), and starts them on each agent's
write side: the agent's unix socket when --peer-socket-template names it, else its control listener at
<node's host>:<--peer-control-port> (the agents' --control-listen-address), with --tls-client-cert-file:

flowscope relay --listen-address :4245 --tls-server-cert-file relay.pem --tls-server-key-file relay.key \
    --tls-client-ca-files ca.pem --tls-hubble-server-ca-files ca.pem \
    --tls-client-cert-file relay.pem --tls-client-key-file relay.key --peer-control-port 4246
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from flowscope.cli.errors import CliError
from flowscope.cli.stall import add_stall_timeout
from flowscope.cli.timefmt import non_negative_duration, positive_duration
from flowscope.common.paths import DEFAULT_SOCKET
from flowscope.observer.history.flags import add_export_flags as add_history_flags

if TYPE_CHECKING:
    from flowscope.relay.server import RelayConfig

DEFAULT_PEER_SERVICE = f"unix://{DEFAULT_SOCKET}"


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _port(text: str) -> int:
    port = _positive(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"not a port: {text}")
    return port


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "relay",
        help="serve the flows of every node as one stream (hubble-relay)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    p.add_argument("--listen-address", default="localhost:4245", help="address to serve on (localhost:4245)")
    p.add_argument(
        "--peer-service",
        metavar="ADDRESS",
        help=f"an agent serving peer.Peer: host:port or unix:///path ({DEFAULT_PEER_SERVICE} unless --peers)",
    )
    p.add_argument(
        "--peers",
        nargs="+",
        action="extend",
        default=[],
        metavar="NAME=ADDRESS",
        help="a static list of agents (comma- or space-separated), besides or instead of the peer service",
    )
    p.add_argument(
        "--peer-socket-template",
        metavar="PATH",
        help="dial each node at this unix socket ({name}: the node's name) instead of its address",
    )
    p.add_argument(
        "--peer-control-port",
        type=_port,
        metavar="PORT",
        help="the agents' control listener port (mutual TLS), where the relay starts packet-path sessions",
    )
    p.add_argument(
        "--socket", type=Path, metavar="PATH", help="also serve on this unix socket, packet-path sessions included"
    )
    p.add_argument("--peer-service-tls-server-name", default="", metavar="NAME", help="name in its certificate")
    p.add_argument(
        "--sort-window", type=positive_duration, default=0.05, metavar="DURATION", help="longest hold (50ms)"
    )
    p.add_argument("--client-buffer", type=_positive, default=8192, metavar="N", help="responses per client (8192)")
    p.add_argument("--dial-timeout", type=positive_duration, default=2.0, metavar="DURATION", help="status calls (2s)")
    p.add_argument(
        "--peer-keepalive",
        type=non_negative_duration,
        default=1.0,
        metavar="DURATION",
        help="ping each node this often, and name it unavailable when a ping is not answered as long; 0: off (1s)",
    )
    p.add_argument(
        "--metrics-address",
        metavar="HOST:PORT",
        help="serve Prometheus metrics on /metrics here, e.g. :9966 (Hubble Relay's port); off by default",
    )
    add_stall_timeout(p)
    add_history_flags(p)
    p.add_argument(
        "--history",
        metavar="URL",
        help="answer GetFlows calls marked as history questions (observe --history-from-relay) from ClickHouse at URL",
    )
    tls = p.add_argument_group("TLS")
    tls.add_argument("--tls-server-cert-file", type=Path, metavar="FILE", help="the relay's certificate")
    tls.add_argument("--tls-server-key-file", type=Path, metavar="FILE", help="the relay's key")
    _ca_files(tls, "--tls-client-ca-files", "CAs of client certificates: clients must present one (mutual TLS)")
    tls.add_argument("--disable-server-tls", action="store_true", help="serve plaintext even with certificates")
    tls.add_argument("--tls-client-cert-file", type=Path, metavar="FILE", help="certificate shown to agents")
    tls.add_argument("--tls-client-key-file", type=Path, metavar="FILE", help="its key")
    _ca_files(tls, "--tls-hubble-server-ca-files", "CAs of the agents' certificates (turns on TLS to agents over TCP)")
    tls.add_argument("--disable-client-tls", action="store_true", help="talk plaintext to agents")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(run=run)


def _ca_files(group: argparse._ArgumentGroup, flag: str, help: str) -> None:
    """A list of CA files, space-separated or the flag repeated: the relay reads both sides' CAs (its clients',
    the agents') the same way, as hubble-relay does."""
    group.add_argument(flag, type=Path, nargs="+", action="extend", default=[], metavar="FILE", help=help)


def config_from(args: argparse.Namespace) -> RelayConfig:
    """The RelayConfig the flags describe; CliError when they contradict each other."""
    from flowscope.common.addresses import listen_target
    from flowscope.common.tls import TLSConfigError, server_tls
    from flowscope.observer.history.clickhouse import check_url as check_clickhouse_url
    from flowscope.observer.history.flags import writer_options
    from flowscope.observer.metrics.server import split_address
    from flowscope.relay.peers import parse_static
    from flowscope.relay.server import RelayConfig
    from flowscope.relay.tls import client_tls
    from flowscope.relay.trace import check_peer_control

    try:
        listen_target(args.listen_address)  # a typo is one line here, not a gRPC log line at bind
        if args.metrics_address is not None:
            split_address(args.metrics_address)
        peers = parse_static(args.peers)
        config = RelayConfig(
            listen_address=args.listen_address,
            peer_service=args.peer_service or (None if peers else DEFAULT_PEER_SERVICE),
            peer_service_server_name=args.peer_service_tls_server_name,
            peers=peers,
            socket_template=args.peer_socket_template,
            server_tls=server_tls(
                args.tls_server_cert_file, args.tls_server_key_file, args.tls_client_ca_files, args.disable_server_tls
            ),
            client_tls=client_tls(
                args.tls_hubble_server_ca_files,
                args.tls_client_cert_file,
                args.tls_client_key_file,
                args.disable_client_tls,
            ),
            window_s=args.sort_window,
            client_buffer=args.client_buffer,
            ask_timeout_s=args.dial_timeout,
            keepalive_s=args.peer_keepalive,
            stall_s=args.stall_timeout,
            socket_path=args.socket,
            peer_control_port=args.peer_control_port,
            export_clickhouse=args.export_clickhouse,
            history_url=args.history,
            history=writer_options(args),
            metrics_address=args.metrics_address,
        )
        for url in (config.export_clickhouse, config.history_url):
            if url is not None:
                check_clickhouse_url(url)
        check_peer_control(config.peer_control_port, config.client_tls)
    except (ValueError, TLSConfigError) as exc:
        raise CliError(f"relay: {exc}") from exc
    if config.socket_template is not None and "{name}" not in config.socket_template:
        raise CliError("relay: --peer-socket-template must contain {name}")
    return config


def run(args: argparse.Namespace) -> int:
    # Imported here, so other commands do not pay for the relay's modules.
    from flowscope.relay.server import RelayServer

    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    config = config_from(args)
    try:
        relay = RelayServer(config)
    except (OSError, RuntimeError, ValueError) as exc:
        raise CliError(f"relay: cannot serve on {config.listen_address}: {exc}") from exc
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logging.getLogger("relay").info("%s: stopping", signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    try:
        relay.start()
    except (OSError, ValueError) as exc:  # e.g. a TLS file it cannot read, found as the first peer is dialled
        relay.stop()
        raise CliError(f"relay: {exc}") from exc
    sources = [f"peer service {config.peer_service}"] if config.peer_service else []
    sources += [f"{len(config.peers)} static peers"] if config.peers else []
    tls = (
        "mutual TLS"
        if config.server_tls and config.server_tls.client_cas
        else "TLS"
        if config.server_tls
        else "plaintext"
    )
    logging.getLogger("relay").info(
        "relay serving on %s (port %d, %s); nodes from %s", config.listen_address, relay.port, tls, ", ".join(sources)
    )
    if config.socket_path is not None:
        logging.getLogger("relay").info("relay serving on unix socket %s too", config.socket_path)
    if relay.metrics is not None:
        logging.getLogger("relay").info("relay metrics on %s (port %d)", config.metrics_address, relay.metrics.port)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        relay.stop()
    return 0
