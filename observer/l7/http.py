"""HTTP/1.x requests and responses read from a captured TCP segment, as Hubble's `l7.http` reports them.

A segment may hold several messages (pipelining, keep-alive answers sent together) and may end anywhere: the
parser returns the messages it finds in order, the last one marked truncated when the capture ended inside its
start line or headers. Bytes that merely look like HTTP (capital letters on port 80) give [], so that they stay a
plain L3/L4 flow rather than garbage L7. Nothing here raises: the input is whatever a pod sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

REDACTED = "HUBBLE_REDACTED"
MAX_MESSAGES = 64  # per segment: more is not pipelining any client does, and bounds the work

# RFC 9110 9.3, PATCH (RFC 5789), WebDAV (RFC 4918, 3253, 5323) and cache purges: what servers see in practice.
METHODS = frozenset(
    {
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
        "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "SEARCH", "REPORT",
        "MKACTIVITY", "CHECKOUT", "MERGE", "PURGE", "LINK", "UNLINK",
    }
)  # fmt: skip

_REQUEST_LINE = re.compile(rb"([A-Z]{3,12}) ([\x21-\x7e]+) (HTTP/1\.[0-9])")
# A request line the capture cut short: the method, the target as far as it goes, maybe part of the version.
_REQUEST_START = re.compile(rb"([A-Z]{3,12}) ([\x21-\x7e]*)(?: [\x21-\x7e]*)?\r?")
_STATUS_START = re.compile(rb"(HTTP/1\.[0-9]) ([1-5][0-9][0-9])(?: [\t\x20-\x7e\x80-\xff]*)?\r?")
_STATUS_LINE = re.compile(rb"(HTTP/1\.[0-9]) ([1-5][0-9][0-9])(?: [\t\x20-\x7e\x80-\xff]*)?")
_FIELD = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):(.*)")  # the value's OWS is stripped after: no backtracking
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,8})(?:;[^\r\n]*)?")
_LINE_END = re.compile(rb"\r?\n")


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A request line and its header fields; `truncated`: the capture ended before the header section did."""

    method: str
    url: str
    protocol: str
    host: str
    headers: tuple[tuple[str, str], ...]
    truncated: bool


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A status line and its header fields; `truncated`: the capture ended before the header section did."""

    code: int
    protocol: str
    headers: tuple[tuple[str, str], ...]
    truncated: bool


HttpMessage = HttpRequest | HttpResponse


def parse_http(payload: bytes) -> list[HttpMessage]:
    """The HTTP/1.x messages a segment starts with, in order; [] when it does not start with one."""
    messages: list[HttpMessage] = []
    offset = 0
    while offset < len(payload) and len(messages) < MAX_MESSAGES:
        if payload.startswith(b"\r\n", offset):
            offset += 2  # RFC 9112 2.2: an empty line before a request line is ignored (some clients send one)
            continue
        parsed = _message_at(payload, offset)
        if parsed is None:
            break
        message, offset = parsed
        messages.append(message)
        if message.truncated or offset < 0:
            break
    return messages


def _lines(payload: bytes, offset: int) -> tuple[list[bytes], int, bool]:
    """The lines from offset up to the empty line ending a header section, the offset after it, and whether the
    capture ended first (the unfinished last line is then left out)."""
    lines: list[bytes] = []
    while True:
        end = _LINE_END.search(payload, offset)
        if end is None:
            return lines, len(payload), False
        line = payload[offset : end.start()]
        offset = end.end()
        if not line and lines:
            return lines, offset, True
        lines.append(line)


def _message_at(payload: bytes, offset: int) -> tuple[HttpMessage, int] | None:
    """The message starting at offset and where the next one starts (-1: unknown, so stop); None: not HTTP."""
    lines, after, complete = _lines(payload, offset)
    if not lines:
        return _cut_start(payload[offset:])
    start = lines[0]
    fields, valid = _fields(lines[1:])
    truncated = not (complete and valid)
    if request := _REQUEST_LINE.fullmatch(start):
        method = request[1].decode()
        if method not in METHODS:
            return None
        url = request[2].decode()
        message: HttpMessage = HttpRequest(method, url, request[3].decode(), _host(fields), fields, truncated)
        is_request = True
    elif status := _STATUS_LINE.fullmatch(start):
        message = HttpResponse(int(status[2]), status[1].decode(), fields, truncated)
        is_request = False
    else:
        return None
    if truncated:
        return message, -1
    return message, _body_end(payload, after, fields, is_request, message)


def _cut_start(rest: bytes) -> tuple[HttpMessage, int] | None:
    """A message whose start line the capture cut: a request's method and its target as far as it goes, or a
    response's code; None when not even that much is there."""
    if response := _STATUS_START.fullmatch(rest):
        return HttpResponse(int(response[2]), response[1].decode(), (), True), -1
    start = _REQUEST_START.fullmatch(rest)
    if start is None or start[1].decode() not in METHODS or not start[2]:
        return None
    return HttpRequest(start[1].decode(), start[2].decode(), "", "", (), True), -1


def _fields(lines: list[bytes]) -> tuple[tuple[tuple[str, str], ...], bool]:
    """Header fields as sent (name case kept) and whether every line was one; obs-fold continuations are skipped."""
    fields: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            continue  # obs-fold (RFC 9112 5.2): a continuation of the previous value, which we keep unfolded
        field = _FIELD.fullmatch(line)
        if field is None:
            return tuple(fields), False
        fields.append((field[1].decode(), field[2].strip(b" \t").decode("latin-1")))
    return tuple(fields), True


def _host(fields: tuple[tuple[str, str], ...]) -> str:
    return next((value for name, value in fields if name.lower() == "host"), "")


def _header(fields: tuple[tuple[str, str], ...], wanted: str) -> str | None:
    return next((value for name, value in fields if name.lower() == wanted), None)


def _body_end(
    payload: bytes, offset: int, fields: tuple[tuple[str, str], ...], is_request: bool, message: HttpMessage
) -> int:
    """Where the message after this one starts (its body skipped), or -1 when that cannot be known."""
    if isinstance(message, HttpResponse) and (message.code < 200 or message.code in (204, 304)):
        return offset  # RFC 9112 6.3: never a body
    encoding = _header(fields, "transfer-encoding")
    if encoding is not None:
        return _chunked_end(payload, offset) if encoding.lower().endswith("chunked") else -1
    length = _header(fields, "content-length")
    if length is None:
        return offset if is_request else -1  # a response without a length runs until the connection closes
    if not length.isascii() or not length.isdigit():
        return -1
    return offset + int(length)


def _chunked_end(payload: bytes, offset: int) -> int:
    """The end of a chunked body (RFC 9112 7.1) when the capture holds all of it, else -1."""
    while True:
        end = _LINE_END.search(payload, offset)
        size = _CHUNK_SIZE.fullmatch(payload, offset, end.start()) if end else None
        if end is None or size is None:
            return -1
        offset = end.end()
        length = int(size[1], 16)
        if length == 0:
            return _trailers_end(payload, offset)
        offset += length
        if payload[offset : offset + 2] != b"\r\n":
            return -1
        offset += 2


def _trailers_end(payload: bytes, offset: int) -> int:
    """The end of a chunked body's trailer section (ended by an empty line), or -1 when the capture ends first."""
    while True:
        end = _LINE_END.search(payload, offset)
        if end is None:
            return -1
        if end.start() == offset:
            return end.end()
        offset = end.end()


def redact_url(url: str, query: bool = True, userinfo: bool = True) -> str:
    """The url with its query string and its user info replaced by HUBBLE_REDACTED.

    Hubble (--hubble-redact-http-urlquery, off by default) drops the query and fragment entirely, and
    (--hubble-redact-http-userinfo, on) replaces only a password. flowscope redacts both by default and keeps
    the shape of what was there: `/a?HUBBLE_REDACTED` says a query was sent, `http://HUBBLE_REDACTED@host/`
    hides the user name too, which is often as telling as the password.
    """
    if query:
        mark = url.find("?")
        if mark >= 0 and mark + 1 < len(url):
            url = url[: mark + 1] + REDACTED
    if userinfo:
        scheme_end = url.find("://")
        if scheme_end > 0:
            authority_at = scheme_end + 3
            authority_end = len(url)
            for stop in "/?#":
                found = url.find(stop, authority_at)
                if found >= 0:
                    authority_end = min(authority_end, found)
            at = url.rfind("@", authority_at, authority_end)
            if at >= 0:
                url = url[:authority_at] + REDACTED + url[at:]
    return url


def allowed_headers(headers: tuple[tuple[str, str], ...], allow: frozenset[str]) -> tuple[tuple[str, str], ...]:
    """The fields whose name (compared lower-case; `allow` holds lower-case names) is allow-listed, as sent."""
    return tuple((name, value) for name, value in headers if name.lower() in allow)
