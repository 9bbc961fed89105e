"""deploy/entrypoint.sh, the image's entry point, run for real in a private mount namespace that looks like the
image where it matters: no headers under /lib/modules (an empty tmpfs, as in a container on a node whose kernel
the image never saw) and the project's `flowscope` at /opt/flowscope/bin (here a stand-in that reports what it
was given and which headers bcc would find). Nothing outside that namespace changes."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest
from deploy_manifests import DEPLOY

ENTRYPOINT = DEPLOY / "entrypoint.sh"

STAND_IN = """#!/bin/sh
echo "args: $*"
kdir=/lib/modules/$(uname -r)
if [ -e "$kdir/build/include/generated/autoconf.h" ] && [ -e "$kdir/source/include/linux/kconfig.h" ]; then
  echo "headers: $(readlink "$kdir/build")"
else
  echo "headers: none"
fi
"""


def in_image_like_namespace(*args: str) -> subprocess.CompletedProcess[str]:
    script = "\n".join(
        [
            "set -e",
            "mount -t tmpfs none /lib/modules",
            "mount -t tmpfs none /opt",
            "mkdir -p /opt/flowscope/bin",
            f"printf '%s' {shlex.quote(STAND_IN)} > /opt/flowscope/bin/flowscope",
            "chmod +x /opt/flowscope/bin/flowscope",
            f"exec sh {shlex.quote(str(ENTRYPOINT))} {shlex.join(args)}",
        ]
    )
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(autouse=True)
def _needs_root_and_packaged_headers() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (a mount namespace)")
    if not list(Path("/usr/src").glob("linux-headers-*-common")):
        pytest.skip("no packaged kernel headers under /usr/src (scripts/setup installs them)")


def test_the_agent_gets_the_packaged_headers_linked_for_the_running_kernel() -> None:
    answer = in_image_like_namespace("agent", "--node-name=node-a")
    assert answer.returncode == 0, answer.stderr
    assert "args: agent --node-name=node-a" in answer.stdout
    headers = answer.stdout.split("headers: ", 1)[1].strip()
    assert headers.startswith("/usr/src/linux-headers-"), answer.stdout


def test_other_commands_run_as_they_are() -> None:
    answer = in_image_like_namespace("relay", "--listen-address=:4245")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.splitlines() == ["args: relay --listen-address=:4245", "headers: none"]
