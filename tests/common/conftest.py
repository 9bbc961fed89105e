"""Certificate pairs for the TLS tests of common/: a server's and a client's, each self-signed, made anew for
each test in its own temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from certificates import Pair, self_signed


@pytest.fixture
def server_pair(tmp_path: Path) -> Pair:
    return self_signed(tmp_path, "server.test")


@pytest.fixture
def client_pair(tmp_path: Path) -> Pair:
    return self_signed(tmp_path, "client.test")
