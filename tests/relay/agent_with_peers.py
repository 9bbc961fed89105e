"""`flowscope agent`, with peer.Peer served whether or not observer/agent.py wires it in yet.

Run exactly like `flowscope agent ...`. When the agent already serves peer.Peer this changes nothing; until
then it adds observer/server/peer.py's service to the agent's server, so relay tests with real agents run
either way. Once the agent wires the service in, tests can use the plain `flowscope` command again.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

import flowscope.observer.agent as agent_module
from flowscope.cli.main import main
from flowscope.observer.server.peer import add_peer_service
from flowscope.observer.server.serve import ObserverServer


def _argument(flag: str) -> str | None:
    argv = sys.argv
    return argv[argv.index(flag) + 1] if flag in argv[:-1] else None


def _with_peer_service(server_class: type[ObserverServer]) -> type[ObserverServer]:
    cluster = _argument("--cluster-file")
    tls_enabled = _argument("--tls-cert-file") is not None

    class WithPeers(server_class):  # type: ignore[valid-type, misc]
        def __init__(
            self,
            state: Any,
            socket_path: Path | None,
            listen_address: str | None,
            tls: Any = None,
            extra_services: list[Callable[[grpc.Server], None]] | None = None,
        ) -> None:
            extra = list(extra_services or [])
            if not any(getattr(add, "func", None) is add_peer_service for add in extra):
                add = functools.partial(
                    add_peer_service,
                    cluster_file=Path(cluster) if cluster else None,
                    tls_enabled=tls_enabled,
                    stopping=state.stopping,
                )
                extra.append(add)
            super().__init__(state, socket_path, listen_address, tls, extra)

    return WithPeers


if __name__ == "__main__":
    if "peer_service" not in Path(agent_module.__file__).read_text():
        agent_module.ObserverServer = _with_peer_service(agent_module.ObserverServer)  # type: ignore[misc]
    sys.exit(main())
