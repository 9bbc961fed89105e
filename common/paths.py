"""Where flowscope keeps its runtime files; one place, so the agent, the CLI and the lab agree."""

from pathlib import Path

RUN_DIR = Path("/run/flowscope")
# The node agent's unix socket, where the CLI looks when no relay answers (Hubble: /var/run/cilium/hubble.sock).
DEFAULT_SOCKET = RUN_DIR / "hubble.sock"


def agent_lock_file(netns_inode: int) -> Path:
    """The lock an agent holds for its network namespace (one agent each), named by the namespace's inode."""
    return RUN_DIR / f"agent-netns-{netns_inode}.lock"


def agent_lock_files() -> dict[int, Path]:
    """Every agent lock file there is, by the inode of its network namespace."""
    found = {}
    for path in RUN_DIR.glob("agent-netns-*.lock"):
        inode = path.stem.removeprefix("agent-netns-")
        if inode.isdigit():
            found[int(inode)] = path
    return found
