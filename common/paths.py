"""Where flowscope keeps its runtime files; one place, so the agent, the CLI and the lab agree."""

from pathlib import Path

RUN_DIR = Path("/run/flowscope")
# The node agent's unix socket, where the CLI looks when no relay answers (Hubble: /var/run/cilium/hubble.sock).
DEFAULT_SOCKET = RUN_DIR / "hubble.sock"
