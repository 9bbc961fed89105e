"""The lab's web server, asked from the client pod: pages and chosen status codes, pipelined requests answered in
order on one connection, and HTTPS that verifies against the lab's certificate under the web service's name."""

from __future__ import annotations

import sys

import pytest

from flowscope.lab import Lab
from flowscope.lab.services import certificate_file, web_service_name
from flowscope.lab.topology import HTTP_PORT, HTTPS_PORT

pytestmark = pytest.mark.netns

CURL = ["curl", "--silent", "--show-error", "--max-time", "5", "--globoff"]

# Run in the client pod: both requests leave in one write, so the server finds the second one already buffered
# behind the first; what comes back is printed as it came.
PIPELINED = """
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
with socket.create_connection((host, port), timeout=5) as sock:
    sock.sendall(
        b"GET /status/500 HTTP/1.1\\r\\nHost: web\\r\\n\\r\\n"
        b"GET /status/404 HTTP/1.1\\r\\nHost: web\\r\\nConnection: close\\r\\n\\r\\n"
    )
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
sys.stdout.write(answer.decode())
"""


def status_of(lab: Lab, url: str, *extra: str) -> tuple[str, str]:
    """(status code, body) of a GET from the client pod."""
    done = lab.exec("client", [*CURL, *extra, "--write-out", "\n%{http_code}", url])
    body, _, code = done.stdout.rpartition("\n")
    return code, body.strip()


@pytest.mark.parametrize(
    ("path", "code", "body"),
    [
        ("/", "200", "hello from web"),
        ("/index.html", "200", "hello from web"),
        ("/status/404", "404", "404 Not Found"),
        ("/status/500", "500", "500 Internal Server Error"),
        ("/status/503", "503", "503 Service Unavailable"),
        ("/nosuch", "404", "404 Not Found"),
        ("/status/99", "404", "404 Not Found"),
    ],
)
def test_pages_and_chosen_status_codes(one_node: Lab, path: str, code: str, body: str) -> None:
    answered, text = status_of(one_node, f"http://{one_node.pod('web').ipv4}{path}")
    assert (answered, body in text) == (code, True), text


def test_the_world_serves_too_over_ipv6(one_node: Lab) -> None:
    code, body = status_of(one_node, f"http://[{one_node.world.ipv6}]/status/404")
    assert (code, body) == ("404", "404 Not Found")
    assert status_of(one_node, f"http://[{one_node.world.ipv6}]/")[0] == "200"


def test_pipelined_requests_are_answered_in_order_on_one_connection(one_node: Lab) -> None:
    web = one_node.pod("web")
    answer = one_node.exec("client", [sys.executable, "-c", PIPELINED, web.ipv4, str(HTTP_PORT)]).stdout
    status_lines = [line for line in answer.splitlines() if line.startswith("HTTP/")]
    assert status_lines == ["HTTP/1.1 500 Internal Server Error", "HTTP/1.1 404 Not Found"], answer
    assert answer.index("500 Internal Server Error\n") < answer.index("404 Not Found\n")
    assert answer.count("Content-Length:") == 2  # so a client finds where each answer ends


def test_keep_alive_serves_several_requests_on_one_connection(one_node: Lab) -> None:
    web = one_node.pod("web")
    paths = ["/", "/status/404", "/status/500"]
    fetches = [arg for path in paths for arg in ("--output", "/dev/null", f"http://{web.ipv4}{path}")]
    done = one_node.exec("client", [*CURL, "--write-out", "%{http_code} %{num_connects}\n", *fetches])
    assert done.stdout.split("\n")[:3] == ["200 1", "404 0", "500 0"]  # one connection, reused twice


def test_https_verifies_against_the_labs_certificate_by_the_service_name(one_node: Lab) -> None:
    web = one_node.pod("web")
    name = web_service_name(one_node.topology)
    assert name == "web.web.svc.lab"
    cacert = str(certificate_file(one_node.topology))
    for address in (web.ipv4, f"[{web.ipv6}]"):
        resolve = ["--cacert", cacert, "--resolve", f"{name}:{HTTPS_PORT}:{address}"]
        assert status_of(one_node, f"https://{name}/status/500", *resolve) == ("500", "500 Internal Server Error")
        assert status_of(one_node, f"https://{name}/", *resolve)[0] == "200"


def test_https_refuses_a_name_the_certificate_does_not_carry(one_node: Lab) -> None:
    web = one_node.pod("web")
    cacert = str(certificate_file(one_node.topology))
    resolve = ["--cacert", cacert, "--resolve", f"other.lab:{HTTPS_PORT}:{web.ipv4}"]
    done = one_node.exec("client", [*CURL, *resolve, "https://other.lab/"], check=False)
    assert done.returncode == 60, done.stderr  # curl: the peer's certificate cannot be authenticated


def test_the_world_host_has_https_by_its_name(one_node: Lab) -> None:
    world = one_node.world
    cacert = str(certificate_file(one_node.topology))
    resolve = ["--cacert", cacert, "--resolve", f"{world.name}:{HTTPS_PORT}:{world.ipv4}"]
    assert status_of(one_node, f"https://{world.name}/", *resolve)[0] == "200"
