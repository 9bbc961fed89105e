"""What `pip install .` puts into site-packages: the one package `flowscope`, and an agent that runs from it.

Why: observer, relay, cli and lab used to install as top-level modules, so any other package named `cli` broke
flowscope and flowscope broke it. setup.py maps every folder to flowscope.<folder>; this builds the real wheel,
installs it into a new virtual environment and starts a lab's agent from that install.
"""

from __future__ import annotations

import json
import site
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
# What a new virtual environment holds before anything is installed into it.
VENV_OWN = {"pip", "setuptools", "_distutils_hack", "pkg_resources", "distutils-precedence.pth", "__pycache__"}


def build_wheel(out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(PROJECT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("flowscope-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment with the wheel installed; the dependencies are taken from this one's."""
    root = tmp_path_factory.mktemp("install")
    wheel = build_wheel(root / "wheel")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    (target,) = venv.glob("lib/python3*/site-packages")
    # A path line in a .pth adds that folder without reading the .pth files in it, so the checkout's editable
    # install (a .pth in this environment's site-packages) stays out.
    (target / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check"]
    subprocess.run([*pip, str(wheel)], check=True, capture_output=True)
    return venv


def test_the_wheel_holds_one_package_with_its_c_sources_and_schema(tmp_path: Path) -> None:
    names = zipfile.ZipFile(build_wheel(tmp_path)).namelist()
    assert {name.split("/")[0] for name in names} == {"flowscope", "flowscope-0.1.0.dist-info"}
    assert "flowscope/bpf/datapath.c" in names
    assert "flowscope/bpf/include/flowscope/event.h" in names
    assert "flowscope/api/flow/flow_pb2.py" in names
    assert "flowscope/observer/agent.py" in names


def test_the_install_adds_no_top_level_module_but_flowscope(installed: Path) -> None:
    (target,) = installed.glob("lib/python3*/site-packages")
    added = {entry.name for entry in target.iterdir()} - VENV_OWN - {"dependencies.pth"}
    assert {name for name in added if not name.endswith(".dist-info")} == {"flowscope"}
    where = subprocess.run(
        [str(installed / "bin" / "python"), "-c", "import flowscope.observer.agent as a; print(a.__file__)"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert where.startswith(str(target))


@pytest.mark.bpf
def test_an_agent_started_from_the_install_serves_flows(installed: Path) -> None:
    flowscope = str(installed / "bin" / "flowscope")
    name = "tinstall"
    try:
        up = subprocess.run([flowscope, "lab", "up", "--name", name], capture_output=True, text=True, timeout=120)
        assert up.returncode == 0, up.stderr
        state = json.loads(Path(f"/run/flowscope/labs/{name}/state.json").read_text())
        agent = next(daemon for daemon in state["daemons"] if daemon["role"].startswith("agent"))
        assert agent["argv"][0] == flowscope
        deadline = time.monotonic() + 60
        while True:  # the lab's traffic reaches the agent's ring within moments of `lab up`
            observe = subprocess.run(  # a one-node lab has no relay: observe falls back to the agent's socket
                [flowscope, "observe", "--last", "5", "-o", "json"], capture_output=True, text=True, timeout=60
            )
            assert observe.returncode == 0, observe.stderr
            if observe.stdout or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert json.loads(observe.stdout.splitlines()[0])["node_name"] == "node1"
    finally:
        subprocess.run([flowscope, "lab", "down", "--name", name], capture_output=True, timeout=120)
