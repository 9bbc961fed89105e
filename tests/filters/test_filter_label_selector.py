"""Label selectors: Kubernetes semantics over Cilium labels with sources."""

from __future__ import annotations

import pytest

from flowscope.observer.filters.label_selector import parse_label, parse_selector

POD = ("k8s:app=client", "k8s:io.kubernetes.pod.namespace=default", "k8s:version=3", "container:app=sidecar")


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("", True),
        ("app", True),
        ("k8s:app", True),
        ("k8s:app=client", True),
        ("container:app=client", False),
        ("container:app=sidecar", True),
        ("app==client", True),
        ("app!=server", True),
        ("tier!=web", True),  # a missing key is "not equal"
        ("!tier", True),
        ("!app", False),
        ("app in (server, client)", True),
        ("app notin (server)", True),
        ("tier notin (web)", True),
        ("tier in (web)", False),
        ("version>2", True),
        ("version<3", False),
        ("app>2", False),
        ("app=client, version=3", True),
        ("app=client,version=4", False),
        ("  app = client  ", True),
        ("io.kubernetes.pod.namespace=default", True),
        ("reserved:world", False),
    ],
)
def test_matches(text: str, matches: bool) -> None:
    assert parse_selector(text).matches(POD) is matches


def test_reserved_labels() -> None:
    assert parse_selector("reserved:world").matches(["reserved:world"])
    assert parse_selector("world").matches(["reserved:world"])
    assert not parse_selector("reserved:host").matches(["reserved:world"])


def test_label_strings() -> None:
    assert parse_label("k8s:app=client") == ("k8s", "app", "client")
    assert parse_label("reserved:world") == ("reserved", "world", "")
    assert parse_label("k8s:app.kubernetes.io/name=web") == ("k8s", "app.kubernetes.io/name", "web")
    assert parse_label("plain=1") == ("unspec", "plain", "1")
    assert parse_label("a=b:c") == ("unspec", "a", "b:c")
