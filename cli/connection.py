"""Reaching a flowscope (or Hubble) server: the --server and TLS flags, falling back to the local agent's
socket, and turning every way of failing into one line that names the addresses tried.

Like hubble's CLI, the default server is a relay on localhost:4245. When the user did not choose a server
(no --server, no FLOWSCOPE_SERVER) and nothing answers there, the node agent's unix socket is tried next, so
`flowscope observe` on a node just works.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from flowscope.cli.errors import CliError, UsageError
from flowscope.cli.timefmt import positive_duration
from flowscope.common import paths
from flowscope.common.closing import Closing
from flowscope.common.tls import ClientTLS, TLSConfigError, UnreadableFile

if TYPE_CHECKING:
    from flowscope.common.h2grpc.client import Stream

DEFAULT_SERVER = "localhost:4245"
DEFAULT_SOCKET = str(paths.DEFAULT_SOCKET)
SERVER_ENV = "FLOWSCOPE_SERVER"
SOCKET_ENV = "FLOWSCOPE_DEFAULT_SOCKET_PATH"
TLS_PREFIX = "tls://"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
TLS_FILE_FLAGS = ("--tls-ca-cert-files", "--tls-client-cert-file", "--tls-client-key-file")  # errors name them so


def add_server_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("server")
    group.add_argument(
        "--server",
        metavar="ADDRESS",
        help=f"host:port, tls://host:port or unix:///path (${SERVER_ENV}; default {DEFAULT_SERVER}, "
        f"then the local agent's {DEFAULT_SOCKET})",
    )
    group.add_argument(
        "--timeout", type=positive_duration, default=5.0, metavar="DURATION", help="connect timeout (5s)"
    )
    group.add_argument(
        "--request-timeout",
        type=positive_duration,
        default=12.0,
        metavar="DURATION",
        help="timeout of one request (12s)",
    )
    group.add_argument("--tls", action="store_true", help="use TLS")
    group.add_argument("--tls-allow-insecure", action="store_true", help="trust whatever certificate the server shows")
    group.add_argument("--tls-ca-cert-files", nargs="+", action="extend", default=[], metavar="FILE", help="CAs")
    group.add_argument("--tls-client-cert-file", metavar="FILE", help="client certificate (mutual TLS)")
    group.add_argument("--tls-client-key-file", metavar="FILE", help="client key (mutual TLS)")
    group.add_argument("--tls-server-name", metavar="NAME", help="name to expect in the server's certificate")


@dataclass(frozen=True)
class ServerOptions:
    """Where to connect and how, read from the flags and the environment."""

    server: str = DEFAULT_SERVER
    chosen: bool = False
    timeout: float = 5.0
    request_timeout: float = 12.0
    tls: bool = False
    allow_insecure: bool = False
    ca_files: tuple[str, ...] = ()
    client_cert: str | None = None
    client_key: str | None = None
    server_name: str | None = None
    fallback_socket: str = field(default_factory=lambda: os.environ.get(SOCKET_ENV, DEFAULT_SOCKET))

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServerOptions:
        server = args.server or os.environ.get(SERVER_ENV) or ""
        return cls(
            server=server or DEFAULT_SERVER,
            chosen=bool(server),
            timeout=args.timeout,
            request_timeout=args.request_timeout,
            tls=args.tls or server.startswith(TLS_PREFIX),
            allow_insecure=args.tls_allow_insecure,
            ca_files=tuple(args.tls_ca_cert_files),
            client_cert=args.tls_client_cert_file,
            client_key=args.tls_client_key_file,
            server_name=args.tls_server_name,
        )

    def flags(self) -> list[str]:
        """The server flags that give these options again (`from_args` of them is equal): how `top` hands the
        server it reads to the `flowscope trace` it starts. A server nobody chose is left out, so the command
        looks for it as it would when typed."""
        flags = ["--server", self.server] if self.chosen else []
        flags += ["--timeout", f"{self.timeout:.9f}s", "--request-timeout", f"{self.request_timeout:.9f}s"]
        flags += ["--tls"] * self.tls + ["--tls-allow-insecure"] * self.allow_insecure
        if self.ca_files:
            flags += ["--tls-ca-cert-files", *self.ca_files]
        named = (
            ("--tls-client-cert-file", self.client_cert),
            ("--tls-client-key-file", self.client_key),
            ("--tls-server-name", self.server_name),
        )
        return flags + [part for flag, value in named if value is not None for part in (flag, value)]

    def candidates(self) -> list[str]:
        """Targets to try in order: the server, then (when nobody chose one) the local agent's socket."""
        first = grpc_target(self.server)
        return [first] if self.chosen else [first, f"unix://{self.fallback_socket}"]


def grpc_target(address: str) -> str:
    """The gRPC target for an address as users write it (`tls://` dropped, bare socket paths as unix://)."""
    address = address.removeprefix(TLS_PREFIX)
    return f"unix://{address}" if address.startswith("/") else address


class Connection(Closing):
    """A server that answered, how to reach it (TLS, the name its certificate must give, a certificate trusted as
    it was shown), and how to name it in messages.

    Unary calls and the streams other than flows go through a grpcio channel, opened when first used; flow
    streams are read through common/h2grpc (`stream`), on a connection of their own, without grpcio's ~40 µs
    per message. A command that only reads flows (`observe`, `top`) never opens a channel at all."""

    def __init__(self, target: str, options: ServerOptions, dial: Dial | None = None) -> None:
        self.target = target
        self.options = options
        self.dial = dial or Dial()
        self.metadata: tuple[tuple[str, str], ...] = ()  # sent with every flow stream (observe --history-from-relay)
        self._channel: grpc.Channel | None = None

    @property
    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = self.dial.channel(self.target)
        return self._channel

    def stream(self, method: str, request: bytes, timeout: float | None = None) -> Stream:
        """A server-streaming call of `method` (its full path) on a connection of its own; nothing is sent
        until it is read. Its responses are bytes; it ends or fails as a grpcio call would."""
        from flowscope.common.h2grpc.client import open_stream  # h2: only for the commands that read streams

        dial = self.dial
        return open_stream(
            self.target,
            method,
            request,
            tls=dial.tls,
            server_name=dial.server_name,
            trust=dial.trust,
            timeout=timeout,
            connect_timeout=self.options.timeout,
            metadata=self.metadata,
        )

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()

    def error(self, exc: grpc.RpcError) -> CliError:
        """One line for a failed call: the server's own reason, or what happened to the connection."""
        code: grpc.StatusCode = exc.code()
        details = exc.details() or code.name
        if code == grpc.StatusCode.UNAVAILABLE:
            return CliError(f"lost the connection to {self.target}: {details}")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return CliError(f"{self.target} did not answer within {self.options.request_timeout:g}s")
        return CliError(f"server error: {code.name}: {details}")


@dataclass(frozen=True)
class Dial:
    """TLS as the flags ask for it (None: plaintext), made once per target and used by every call to it."""

    tls: ClientTLS | None = None
    server_name: str = ""  # the name the server's certificate must give; its address's host when empty
    trust: bytes | None = None  # certificates trusted as they are (--tls-allow-insecure), instead of the CAs

    def channel(self, target: str) -> grpc.Channel:
        if self.tls is None:
            return grpc.insecure_channel(target)
        return self.tls.channel(target, self.server_name or None, trust=self.trust)


def connect(options: ServerOptions, *, channel: bool = True) -> Connection:
    """A connection to the first candidate that answers; CliError naming every address tried otherwise.
    `channel`: the command calls through a grpcio channel, so the server is checked through one; False when it
    only reads flow streams (`Connection.stream`), which are checked the way they are read."""
    failures: list[str] = []
    for target in options.candidates():
        reason = _probe(target, options.timeout)
        if reason is None:
            connection = Connection(target, options, _dial(target, options))
            reason = _answers(connection, channel)
            if reason is None:
                return connection
            connection.close()
            if not options.tls and "socket closed" in reason.lower():
                reason += "; a TLS server? try tls:// or --tls"
        failures.append(f"{target} ({reason})")
    message = f"cannot connect to {failures[0]}"
    if len(failures) > 1:
        message += "; also tried " + ", ".join(failures[1:])
    raise CliError(message)


def _probe(target: str, timeout: float) -> str | None:
    """Why nothing listens at the target, found with a plain socket (fast and exact); None if it answers."""
    if target.startswith("unix:"):
        path = target.removeprefix("unix:").removeprefix("//")
        if not os.path.exists(path):
            return "no such socket"
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(path)
        except OSError as exc:
            return (exc.strerror or str(exc)).lower()
        return None
    address = host_port(target)
    if address is None:
        return None  # a target only gRPC understands (dns:///..., ipv4:...): let it try
    try:
        with socket.create_connection(address, timeout=timeout):
            return None
    except TimeoutError:
        return f"no answer within {timeout:g}s"
    except OSError as exc:
        return (exc.strerror or str(exc)).lower()


def host_port(target: str) -> tuple[str, int] | None:
    host, colon, port = target.rpartition(":")
    if not colon or not port.isdigit() or "/" in target:
        return None
    return host.strip("[]") or "localhost", int(port)


def _dial(target: str, options: ServerOptions) -> Dial:
    """Plaintext, or TLS: the CAs given (or the system's), the server name to expect, a client certificate;
    with --tls-allow-insecure, trusting the certificate the server presents and a name in it."""
    if not options.tls:
        return Dial()
    try:
        tls = ClientTLS(
            tuple(Path(file) for file in options.ca_files),
            Path(options.client_cert) if options.client_cert else None,
            Path(options.client_key) if options.client_key else None,
            described_as=TLS_FILE_FLAGS,
        )
        if not options.allow_insecure:
            tls.credentials()  # reads the files now: one that cannot be read is a usage error, not a failed call
            return Dial(tls, options.server_name or "")
        address = host_port(target)
        if address is None:
            raise UsageError(f"--tls-allow-insecure needs a host:port server, not {target}")
        from flowscope.cli.tls import presented_certificate  # cryptography: ~25 ms of start-up, for this flag only

        presented, name = presented_certificate(address, tls, options.timeout)
        return Dial(tls, options.server_name or name or "", trust=presented)
    except UnreadableFile as exc:
        raise CliError(str(exc)) from None
    except TLSConfigError as exc:
        raise UsageError(str(exc)) from None


def _answers(connection: Connection, channel: bool) -> str | None:
    """None once the server answers a call; else why not (the transport's own reason when it fails to connect).

    The call is a health check, through the channel or as a stream, made without waiting for the channel to
    be ready, so it connects and fails as soon as connecting does. Any answer proves the connection, a refusal
    too (a server without the health service says UNIMPLEMENTED). Not `channel.subscribe`: its polling thread
    then holds `channel.close()` for up to 0.2 s, which every short command would pay."""
    timeout = connection.options.timeout
    try:
        if channel:  # bytes in and out: an empty HealthCheckRequest is no bytes
            connection.channel.unary_unary(HEALTH_CHECK)(b"", timeout=timeout)
        else:
            for _ in connection.stream(HEALTH_CHECK, b"", timeout=timeout):
                pass
    except grpc.RpcError as exc:
        code = exc.code()
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return f"no answer within {timeout:g}s"
        if code == grpc.StatusCode.UNAVAILABLE:
            return _last_error(str(exc.details() or code.name))
    return None


def _last_error(details: str) -> str:
    """gRPC's reason without its wrapping: `failed to connect to all addresses; last error: UNKNOWN:
    ipv4:127.0.0.1:4245: Tls handshake failed (...): ...: OK` → `Tls handshake failed (...): ...`."""
    reason = details.split("last error:", 1)[-1].strip().removesuffix(": OK")
    return re.sub(r"^(?:[A-Z_]+: )?(?:(?:ipv4|ipv6|unix):\S+?: |\S+:\d+: )?", "", reason) or details
