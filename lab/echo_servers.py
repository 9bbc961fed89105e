"""A TCP request/response server and a UDP echo server, and the clients the traffic generator runs.

TCP: the client sends lines; each line gets one line back, `ok <line>`. UDP: every datagram is sent back as it
came. Small and predictable on purpose, so tests can check an exchange byte for byte.

    python -m lab.echo_servers serve [--tcp-port 9000] [--udp-port 9001]
    python -m lab.echo_servers request HOST [--port 9000] [--count 1]     # exit 0 when every reply is right
    python -m lab.echo_servers datagram HOST [--port 9001] [--count 1]
"""

from __future__ import annotations

import argparse
import socket
import socketserver
import sys

from flowscope.lab.dualstack import TCPServer, UDPServer, client_socket, serve_until_terminated
from flowscope.lab.topology import TCP_RR_PORT, UDP_ECHO_PORT


class RequestResponse(socketserver.StreamRequestHandler):
    timeout = 10

    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(b"ok " + line)
            self.wfile.flush()


class Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        sock.sendto(data, self.client_address)


def request(host: str, port: int, count: int, timeout: float = 2.0) -> bool:
    """Send `count` requests over one connection; True when every response came back right."""
    with client_socket(host, socket.SOCK_STREAM, timeout) as sock:
        sock.connect((host, port))
        with sock.makefile("rwb") as stream:
            for i in range(count):
                line = f"request {i}\n".encode()
                stream.write(line)
                stream.flush()
                if stream.readline() != b"ok " + line:
                    return False
    return True


def datagram(host: str, port: int, count: int, timeout: float = 2.0) -> bool:
    """Send `count` datagrams, each waiting for its echo; True when all came back."""
    with client_socket(host, socket.SOCK_DGRAM, timeout) as sock:
        sock.connect((host, port))
        for i in range(count):
            payload = f"datagram {i}".encode()
            sock.send(payload)
            if sock.recv(2048) != payload:
                return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve")
    serve.add_argument("--tcp-port", type=int, default=TCP_RR_PORT)
    serve.add_argument("--udp-port", type=int, default=UDP_ECHO_PORT)
    for name, port in (("request", TCP_RR_PORT), ("datagram", UDP_ECHO_PORT)):
        client = commands.add_parser(name)
        client.add_argument("host")
        client.add_argument("--port", type=int, default=port)
        client.add_argument("--count", type=int, default=1)
    args = parser.parse_args(argv)

    if args.command == "serve":
        print(f"echo: tcp request/response on {args.tcp_port}, udp echo on {args.udp_port}", flush=True)
        serve_until_terminated(
            TCPServer(("::", args.tcp_port), RequestResponse), UDPServer(("::", args.udp_port), Echo)
        )
        return 0
    exchange = request if args.command == "request" else datagram
    try:
        ok = exchange(args.host, args.port, args.count)
    except OSError as exc:
        print(f"{args.command} {args.host}: {exc}", file=sys.stderr)
        return 1
    if not ok:
        print(f"{args.command} {args.host}: wrong reply", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
