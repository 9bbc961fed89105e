"""TLS on the relay's two legs, from certificate files, as Hubble's relay takes them.

Clients to relay (`--tls-server-cert-file`, `--tls-server-key-file`, and `--tls-client-ca-files` to require
client certificates: mutual TLS), made by common/tls.py's `server_tls` as the agent's are. Relay to agents
(`--tls-hubble-server-ca-files` to verify them, `--tls-client-cert-file`/`--tls-client-key-file` to present a
certificate to agents that require one); each agent's certificate is checked against the server name its peer
notification gives (`<node>.<cluster>.hubble-grpc.cilium.io` in Hubble), or its address when there is none.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from flowscope.common.tls import ClientTLS

AGENT_FILES = ("agent CA file", "client certificate", "client key")  # as errors name them


def client_tls(server_cas: Sequence[Path], cert: Path | None, key: Path | None, disabled: bool) -> ClientTLS | None:
    """The relay-to-agent TLS the flags ask for: none when disabled or when no TLS flag is given."""
    if disabled or not (server_cas or cert or key):
        return None
    return ClientTLS(tuple(server_cas), cert, key, described_as=AGENT_FILES)
