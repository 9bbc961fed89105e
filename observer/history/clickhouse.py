"""ClickHouse's HTTP interface, as little of it as flowscope needs: a query in the POST body (or in the URL with
a body of rows to insert), the answer as bytes or as a stream. No driver: http.client speaks it already.

A URL is `http://host:8123[/?database=DB]`; the query-string parameters (database, user, password, settings)
are passed on with every request.
"""

from __future__ import annotations

import http.client
import urllib.parse
from collections.abc import Generator
from dataclasses import dataclass, field

DEFAULT_PORT = 8123
TIMEOUT_S = 30.0


class ClickHouseError(Exception):
    """The server refused a query (its own message), or could not be reached (`unreachable`)."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    params: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """`http://host[:port][/?database=...]`; ValueError for anything else (https is not spoken yet)."""
        parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"not a ClickHouse HTTP URL: {url!r} (expected http://HOST:8123)")
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise ValueError(f"bad port in ClickHouse URL {url!r}") from None
        return cls(parts.hostname, port, tuple(urllib.parse.parse_qsl(parts.query)))

    @property
    def database(self) -> str:
        return dict(self.params).get("database", "default")

    def __str__(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass
class ClickHouse:
    """One connection to a server's HTTP interface (kept alive between requests, reopened when it broke)."""

    endpoint: Endpoint
    timeout: float = TIMEOUT_S
    _connection: http.client.HTTPConnection | None = field(default=None, repr=False)

    @classmethod
    def connect(cls, url: str, timeout: float = TIMEOUT_S) -> ClickHouse:
        return cls(Endpoint.parse(url), timeout)

    def execute(self, sql: str, body: bytes | None = None) -> bytes:
        """Run one statement; with `body`, `sql` goes in the URL and `body` is its data (an INSERT's rows)."""
        return b"".join(self.stream(sql, body))

    def stream(self, sql: str, body: bytes | None = None, chunk: int = 1 << 18) -> Generator[bytes, None, None]:
        """The answer in chunks as it arrives; closing the generator early drops the connection."""
        params = list(self.endpoint.params)
        if body is not None:
            params.append(("query", sql))
        path = "/?" + urllib.parse.urlencode(params)
        payload = body if body is not None else sql.encode()
        response = self._request(path, payload)
        finished = False
        try:
            if response.status != 200:
                message = response.read().decode(errors="replace").strip()
                finished = True
                raise ClickHouseError(f"ClickHouse at {self.endpoint}: {_short(message)}")
            while data := response.read(chunk):
                yield data
            finished = True
        except (OSError, http.client.HTTPException) as exc:
            raise ClickHouseError(f"ClickHouse at {self.endpoint}: {exc}", unreachable=True) from None
        finally:
            if not finished:
                self.close()  # an answer left half read poisons the kept-alive connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _request(self, path: str, payload: bytes) -> http.client.HTTPResponse:
        for attempt in (1, 2):  # a kept-alive connection the server closed meanwhile: one fresh try
            fresh = self._connection is None
            if self._connection is None:
                self._connection = http.client.HTTPConnection(
                    self.endpoint.host, self.endpoint.port, timeout=self.timeout
                )
            try:
                self._connection.request("POST", path, body=payload)
                return self._connection.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if fresh or attempt == 2:
                    raise ClickHouseError(
                        f"ClickHouse at {self.endpoint} unreachable: {exc}", unreachable=True
                    ) from None
        raise AssertionError("unreachable")


def check_url(url: str) -> None:
    """ValueError for a URL that is not ClickHouse's HTTP interface."""
    Endpoint.parse(url)


def quote(text: str) -> str:
    """A string literal for SQL."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _short(message: str, limit: int = 400) -> str:
    return message if len(message) <= limit else message[:limit] + "..."
