"""The lab's web server: HTTP/1.1 on port 80 and HTTPS on 443, from one process in a web pod or the world host.

It gives an L7 observer the exchanges worth seeing: pages (`/`, the files of its www directory), chosen status
codes (`/status/404`, `/status/500`: any code from 200 to 599, with a short text body), 404 for anything else,
keep-alive and pipelined requests answered in order on one connection, and TLS whose ClientHello carries the
server name the client asked for. Every answer has a Content-Length, so a connection stays open after it.

    python -m lab.http_server --directory DIR [--port 80] [--tls-port 443 --cert CERT --key KEY]
"""

from __future__ import annotations

import argparse
import functools
import re
import socket
import ssl
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flowscope.lab.dualstack import HTTPServer, serve_until_terminated
from flowscope.lab.topology import HTTP_PORT, HTTPS_PORT

_STATUS = re.compile(r"/status/([2-5][0-9][0-9])")
_NO_BODY = (HTTPStatus.NO_CONTENT, HTTPStatus.RESET_CONTENT, HTTPStatus.NOT_MODIFIED)  # RFC 9110: never a body


class Handler(SimpleHTTPRequestHandler):
    """Files of one directory, /status/<code>, and 404 for the rest, all on connections that stay open."""

    protocol_version = "HTTP/1.1"  # keep-alive: the stdlib reads the next request from the same buffered stream
    server_version = "flowscope-lab"
    timeout = 10  # an idle keep-alive connection is closed after this many seconds
    disable_nagle_algorithm = True  # headers and body go as two writes: Nagle would hold the body for the ACK

    def do_GET(self) -> None:
        if not self._answered_by_route():
            super().do_GET()

    def do_HEAD(self) -> None:
        if not self._answered_by_route():
            super().do_HEAD()

    def do_POST(self) -> None:
        """/status/<code> as for a GET, 404 where there is no file, 405 on a file; the body is read first, so the
        next pipelined request starts where it should."""
        self._discard_body()
        if not self._answered_by_route():
            self._answer(HTTPStatus.METHOD_NOT_ALLOWED)

    def _answered_by_route(self) -> bool:
        """Answer /status/<code> and what is not a file here; False leaves a file to the stdlib, which serves
        it with its type, length and modification time."""
        path = urlsplit(self.path).path
        if status := _STATUS.fullmatch(path):
            self._answer(int(status.group(1)))
            return True
        if self._is_page(path):
            return False
        self._answer(HTTPStatus.NOT_FOUND)
        return True

    def _is_page(self, path: str) -> bool:
        """A file, or a directory with an index page (never a generated directory listing)."""
        local = Path(self.translate_path(path))
        return local.is_file() or (local / "index.html").is_file()

    def _answer(self, code: int) -> None:
        """A short text answer with that code. Unlike the stdlib's send_error it keeps the connection open: a
        404 or a 500 is an ordinary answer here, and clients keep talking after it."""
        phrase = self.responses.get(code, ("",))[0]
        body = b"" if code in _NO_BODY else f"{code} {phrase}".strip().encode() + b"\n"
        self.send_response(code, phrase)
        if code not in _NO_BODY:
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _discard_body(self) -> None:
        """Read a request body of known length; one sent chunked is not read, so the connection ends after."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            return
        self.rfile.read(length)


class TLSServer(HTTPServer):
    """The same server behind TLS. Each connection's handshake runs in that connection's own thread, so a slow
    or broken client never holds up the accepting one (as wrapping the listening socket would)."""

    def __init__(self, address: tuple[str, int], handler: Any, context: ssl.SSLContext) -> None:
        super().__init__(address, handler)
        self.context = context

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(Handler.timeout)
        with self.context.wrap_socket(request, server_side=True) as tls:
            super().finish_request(tls, client_address)

    def shutdown_request(self, request: Any) -> None:
        """The plain socket was handed to TLS, which closed it; nothing is left to shut down."""
        if isinstance(request, socket.socket) and request.fileno() != -1:
            super().shutdown_request(request)


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--directory", type=Path, required=True, help="the files it serves")
    parser.add_argument("--port", type=int, default=HTTP_PORT)
    parser.add_argument("--tls-port", type=int, default=HTTPS_PORT)
    parser.add_argument("--cert", type=Path, help="PEM certificate: serve HTTPS on --tls-port too")
    parser.add_argument("--key", type=Path, help="PEM private key of --cert")
    args = parser.parse_args(argv)
    if (args.cert is None) != (args.key is None):
        parser.error("--cert and --key go together")
    handler = functools.partial(Handler, directory=str(args.directory))
    servers: list[HTTPServer] = [HTTPServer(("::", args.port), handler)]
    if args.cert is not None:
        servers.append(TLSServer(("::", args.tls_port), handler, tls_context(args.cert, args.key)))
    tls = f", https on {args.tls_port}" if args.cert is not None else ""
    print(f"http: serving {args.directory} on {args.port}{tls}", flush=True)
    serve_until_terminated(*servers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
