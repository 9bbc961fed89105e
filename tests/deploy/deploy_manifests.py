"""Reading deploy/: the Kubernetes manifests as objects, their containers, and each container's command line
as the real `flowscope` parser reads it (tests/deploy's tests share it)."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flowscope.cli.main import build_parser

PROJECT = Path(__file__).resolve().parents[2]
DEPLOY = PROJECT / "deploy"
MANIFESTS = DEPLOY / "kubernetes"
KUSTOMIZATION = MANIFESTS / "kustomization.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
SETUP = PROJECT / "scripts" / "setup"
KUBERNETES_VERSION = "1.30"  # the oldest Kubernetes the manifests are checked against (appArmorProfile: 1.30)
WORKLOADS = ("DaemonSet", "Deployment")
# What a downward-API variable stands for when an argument is parsed: $(NODE_NAME) is the node's name.
FIELD_SAMPLES = {"spec.nodeName": "node-a"}


def project_version() -> str:
    return str(tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["version"])


def manifest_files() -> list[Path]:
    return sorted(path for path in MANIFESTS.glob("*.yaml") if path != KUSTOMIZATION)


def objects() -> list[dict[str, Any]]:
    """Every Kubernetes object of every manifest, in file order."""
    return [doc for path in manifest_files() for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomization() -> dict[str, Any]:
    return dict(yaml.safe_load(KUSTOMIZATION.read_text()))


def find(kind: str, name: str) -> dict[str, Any]:
    for obj in objects():
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise LookupError(f"no {kind} named {name} in {MANIFESTS}")


@dataclass(frozen=True)
class Container:
    """A container of a workload, with the pod spec around it (volumes, annotations)."""

    workload: dict[str, Any]
    spec: dict[str, Any]
    init: bool = False

    @property
    def name(self) -> str:
        return f"{self.workload['kind']}/{self.workload['metadata']['name']}/{self.spec['name']}"

    @property
    def pod(self) -> dict[str, Any]:
        return dict(self.workload["spec"]["template"]["spec"])

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.workload["spec"]["template"]["metadata"].get("annotations", {}))

    @property
    def runs_flowscope(self) -> bool:
        """Whether the container runs the image's entry point (`flowscope`) with its args."""
        return "command" not in self.spec

    def argv(self) -> list[str]:
        """The flowscope arguments, with $(VAR) replaced as the kubelet replaces it."""
        return [self.expand(arg) for arg in self.spec.get("args", [])]

    def expand(self, text: str) -> str:
        values = {}
        for env in self.spec.get("env", []):
            if "value" in env:
                values[env["name"]] = env["value"]
            elif "fieldRef" in env.get("valueFrom", {}):
                values[env["name"]] = FIELD_SAMPLES[env["valueFrom"]["fieldRef"]["fieldPath"]]
        return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: values.get(m.group(1), m.group(0)), text)

    def mount_of(self, path: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The volume mount a file path lies under (the deepest), and its volume."""
        mounts = [m for m in self.spec.get("volumeMounts", []) if (path + "/").startswith(m["mountPath"] + "/")]
        if not mounts:
            raise LookupError(f"{self.name}: {path} is on no volume")
        mount = max(mounts, key=lambda m: len(m["mountPath"]))
        volume = next(v for v in self.pod["volumes"] if v["name"] == mount["name"])
        return mount, volume

    def port(self, name: str) -> int:
        return int(next(p["containerPort"] for p in self.spec["ports"] if p["name"] == name))


def containers() -> Iterator[Container]:
    for obj in objects():
        if obj["kind"] in WORKLOADS:
            pod = obj["spec"]["template"]["spec"]
            for spec in pod.get("initContainers", []):
                yield Container(obj, spec, init=True)
            for spec in pod["containers"]:
                yield Container(obj, spec)


def container(workload: str, name: str) -> Container:
    for c in containers():
        if c.workload["metadata"]["name"] == workload and c.spec["name"] == name:
            return c
    raise LookupError(f"no container {name} in {workload}")


class ParseError(AssertionError):
    """Arguments the real parser refused, with its message."""


def parse(argv: list[str]) -> argparse.Namespace:
    """`flowscope ARGV` as the real parser reads it; ParseError with the parser's message when it refuses."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            return build_parser().parse_args(argv)
    except SystemExit:
        raise ParseError(f"flowscope {shlex.join(argv)}: {stderr.getvalue().strip()}") from None


def exec_probes(c: Container) -> dict[str, list[str]]:
    """The container's exec probes (startup, liveness, readiness) by kind."""
    return {
        kind: list(c.spec[kind]["exec"]["command"])
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
        if "exec" in c.spec.get(kind, {})
    }


def setup_packages() -> list[str]:
    """The Debian packages scripts/setup installs (its `packages=(...)` list), as written there."""
    match = re.search(r"^packages=\((.*?)\)", SETUP.read_text(), re.MULTILINE | re.DOTALL)
    assert match, f"no packages=(...) list in {SETUP}"
    return [word.strip('"') for word in shlex.split(match.group(1), posix=False)]


def dockerfile_packages() -> list[str]:
    """The Debian packages each `apt-get install` of the Dockerfile names, as written there."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        for command in re.findall(r"apt-get install ([^&]*)", line):
            found += [word.strip('"') for word in shlex.split(command, posix=False) if not word.startswith("-")]
    return found
