"""HTTP/1.x messages decode as sent, pipelined ones in order, cut ones as far as complete; not-HTTP gives []."""

from __future__ import annotations

from flowscope.observer.l7.http import HttpRequest, HttpResponse, allowed_headers, parse_http, redact_url

REQUEST = b"GET /status/404?token=abc HTTP/1.1\r\nHost: web.web.svc.lab\r\nUser-Agent: curl/8.0\r\nAccept: */*\r\n\r\n"


def test_a_request_keeps_its_line_and_fields_as_sent() -> None:
    assert parse_http(REQUEST) == [
        HttpRequest(
            method="GET",
            url="/status/404?token=abc",
            protocol="HTTP/1.1",
            host="web.web.svc.lab",
            headers=(("Host", "web.web.svc.lab"), ("User-Agent", "curl/8.0"), ("Accept", "*/*")),
            truncated=False,
        )
    ]


def test_a_response_with_and_without_a_reason_phrase() -> None:
    assert parse_http(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n") == [
        HttpResponse(code=500, protocol="HTTP/1.1", headers=(("Content-Length", "0"),), truncated=False)
    ]
    [bare] = parse_http(b"HTTP/1.0 404\r\n\r\n")
    assert isinstance(bare, HttpResponse) and (bare.code, bare.protocol) == (404, "HTTP/1.0")


def test_pipelined_requests_come_back_in_order_bodies_skipped() -> None:
    segment = b"POST /a HTTP/1.1\r\nHost: w\r\nContent-Length: 6\r\n\r\nGET /b" + REQUEST + b"HEAD /c HTTP/1.1\r\n\r\n"
    assert [(m.method, m.url) for m in parse_http(segment) if isinstance(m, HttpRequest)] == [
        ("POST", "/a"), ("GET", "/status/404?token=abc"), ("HEAD", "/c"),
    ]  # fmt: skip


def test_keep_alive_responses_after_a_chunked_body_and_a_204() -> None:
    segment = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        b"HTTP/1.1 204 No Content\r\n\r\n"
        b"HTTP/1.1 301 Moved\r\nLocation: /x\r\nContent-Length: 2\r\n\r\nok"
    )
    assert [m.code for m in parse_http(segment) if isinstance(m, HttpResponse)] == [200, 204, 301]


def test_a_response_whose_body_runs_to_the_close_ends_the_segment() -> None:
    segment = b"HTTP/1.0 200 OK\r\n\r\nHTTP/1.1 500 x\r\n\r\n"  # the second one is body text
    assert [m.code for m in parse_http(segment) if isinstance(m, HttpResponse)] == [200]


def test_a_capture_cut_mid_headers_keeps_the_complete_fields() -> None:
    [request] = parse_http(REQUEST[:60])
    assert isinstance(request, HttpRequest) and request.truncated
    assert request.headers == (("Host", "web.web.svc.lab"),) and request.host == "web.web.svc.lab"


def test_a_capture_cut_in_the_request_line_keeps_the_method_and_target_so_far() -> None:
    [request] = parse_http(b"GET /a/very/long/pa")
    assert isinstance(request, HttpRequest) and (request.method, request.url, request.truncated) == (
        "GET", "/a/very/long/pa", True,
    )  # fmt: skip


def test_names_compare_case_insensitively_and_folded_lines_are_skipped() -> None:
    [request] = parse_http(b"GET http://w/x HTTP/1.1\r\nHOST: w:8080\r\nX-Long: a\r\n  b\r\n\r\n")
    assert isinstance(request, HttpRequest) and request.host == "w:8080" and request.url == "http://w/x"
    assert request.headers == (("HOST", "w:8080"), ("X-Long", "a")) and not request.truncated


def test_a_malformed_field_line_ends_the_message_marked_truncated() -> None:
    [request] = parse_http(b"GET / HTTP/1.1\r\nHost: w\r\nno colon here\r\n\r\n")
    assert isinstance(request, HttpRequest) and request.truncated and request.headers == (("Host", "w"),)


def test_capital_letters_that_are_not_http_give_nothing() -> None:
    for payload in (
        b"",
        b"HELLO WORLD\r\n\r\n",
        b"FETCH / HTTP/1.1\r\n\r\n",  # not a method
        b"GET / HTTP/2.0\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # the HTTP/2 preface
        b"HTTP/1.1 999 Nope\r\n\r\n",
        b"GET  / HTTP/1.1\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.2\r\n",
    ):
        assert parse_http(payload) == [], payload


def test_redaction_keeps_the_shape_of_what_it_hides() -> None:
    assert redact_url("/search?q=secret&token=1") == "/search?HUBBLE_REDACTED"
    assert redact_url("/plain") == "/plain" and redact_url("/empty?") == "/empty?"
    assert redact_url("http://alice:pw@web:80/p?x=1") == "http://HUBBLE_REDACTED@web:80/p?HUBBLE_REDACTED"
    assert redact_url("http://web/p?u=a@b") == "http://web/p?HUBBLE_REDACTED"  # an @ in the query is no user
    assert redact_url("http://alice:pw@web/p?x=1", query=False) == "http://HUBBLE_REDACTED@web/p?x=1"
    assert redact_url("http://alice:pw@web/p?x=1", userinfo=False) == "http://alice:pw@web/p?HUBBLE_REDACTED"


def test_only_allow_listed_headers_are_kept() -> None:
    headers = (("Host", "w"), ("Authorization", "Bearer x"), ("X-Request-Id", "7"))
    assert allowed_headers(headers, frozenset({"x-request-id", "host"})) == (("Host", "w"), ("X-Request-Id", "7"))
    assert allowed_headers(headers, frozenset()) == ()


def test_field_values_lose_their_surrounding_whitespace_only() -> None:
    [request] = parse_http(b"GET / HTTP/1.1\r\nX-A: \t a  b" + b" " * 900 + b"c \t\r\n\r\n")
    assert isinstance(request, HttpRequest) and request.headers == (("X-A", "a  b" + " " * 900 + "c"),)


def test_a_status_line_cut_after_its_code_still_gives_the_code() -> None:
    assert parse_http(b"HTTP/1.1 50") == []
    assert parse_http(b"HTTP/1.1 503 Serv") == [HttpResponse(503, "HTTP/1.1", (), truncated=True)]


def test_empty_lines_between_messages_are_ignored() -> None:
    segment = b"\r\nPOST /a HTTP/1.1\r\nContent-Length: 2\r\n\r\nok\r\nGET /b HTTP/1.1\r\n\r\n"
    assert [m.url for m in parse_http(segment) if isinstance(m, HttpRequest)] == ["/a", "/b"]
    assert parse_http(b"\r\n\r\n\r\n") == []
