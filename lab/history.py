"""A ClickHouse server of our own: for a lab's history (`lab up --history`), the tests and the benchmark.

Debian's clickhouse-server runs as a plain child process with a configuration written into a folder of its
own: data, logs and config all live there, it listens on loopback only, and nothing outside the folder is
touched, so a run killed with -9 leaves nothing that the next run (another folder, other ports) trips over.
The configuration names a cluster, `flowscope`, of two shards on this same server (each its own database,
chosen by the replica's default_database), so the Distributed schema can be tried on one machine.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from flowscope.lab import netns

SERVER = "clickhouse-server"
CLUSTER = "flowscope"
SHARDS = ("shard1", "shard2")  # the databases the test cluster's two shards write into


def free_port(namespace: str | None = None) -> int:
    with netns.inside(namespace) if namespace else nullcontext(), socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ClickHouse:
    """One server, started in `folder` on loopback ports (of network namespace `namespace`, when given: where
    a lab's agents reach it); `url` is its HTTP interface there."""

    folder: Path
    http_port: int
    tcp_port: int
    namespace: str | None = None
    die_with_parent: bool = False
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(
        cls,
        folder: Path,
        http_port: int = 0,
        timeout: float = 60.0,
        namespace: str | None = None,
        die_with_parent: bool = False,
    ) -> ClickHouse:
        """Write the configuration and start the server; return once it answers /ping. `die_with_parent`: the
        server gets SIGKILL when this process dies (tests, benchmarks: a kill -9'd run leaves no server)."""
        if shutil.which(SERVER) is None:
            raise RuntimeError(f"{SERVER} is not installed (scripts/setup installs Debian's clickhouse-server)")
        server = cls(folder, http_port or free_port(namespace), free_port(namespace), namespace, die_with_parent)
        server._configure()
        log = (folder / "stdout.log").open("ab")
        argv = [SERVER, f"--config-file={folder / 'config.xml'}"]
        server.process = subprocess.Popen(
            netns.exec_argv(namespace, argv) if namespace else argv,
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent else None,
        )
        log.close()
        (folder / "pid").write_text(f"{server.process.pid}\n")
        try:
            server.wait_ready(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def inside(self) -> AbstractContextManager[None]:
        """Where the server's loopback is: its namespace (sockets made within keep it), or here."""
        return netns.inside(self.namespace) if self.namespace else nullcontext()

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                log = (
                    (self.folder / "err.log").read_text(errors="replace")[-2000:]
                    if (self.folder / "err.log").exists()
                    else ""
                )
                raise RuntimeError(f"clickhouse-server exited with {self.process.returncode}: {log}")
            try:
                with self.inside(), urllib.request.urlopen(f"{self.url}/ping", timeout=1) as reply:
                    if reply.read().strip() == b"Ok.":
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"clickhouse-server did not answer on {self.url} within {timeout:.0f}s")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 20 s); its folder stays for a restart."""
        if self.process is None:
            return
        stop_pid(self.process.pid, self.process)
        self.process = None

    def restart(self, timeout: float = 60.0) -> None:
        """Stop and start the same server again: same folder, same ports, same data."""
        self.stop()
        fresh = ClickHouse.start(self.folder, self.http_port, timeout, self.namespace, self.die_with_parent)
        fresh.tcp_port = self.tcp_port
        self.process = fresh.process

    def _configure(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "config.xml"
        if config.exists():  # a restart: the same ports
            self.tcp_port = int(config.read_text().split("<tcp_port>")[1].split("<")[0])
        shards = "".join(
            f"<shard><replica><host>127.0.0.1</host><port>{self.tcp_port}</port>"
            f"<default_database>{name}</default_database></replica></shard>"
            for name in SHARDS
        )
        folder = self.folder
        config.write_text(
            f"""<yandex>
  <logger><level>warning</level><log>{folder}/server.log</log><errorlog>{folder}/err.log</errorlog>
    <size>10M</size><count>2</count></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{self.http_port}</http_port>
  <tcp_port>{self.tcp_port}</tcp_port>
  <path>{folder}/data/</path>
  <tmp_path>{folder}/tmp/</tmp_path>
  <user_files_path>{folder}/user_files/</user_files_path>
  <format_schema_path>{folder}/format_schemas/</format_schema_path>
  <users_config>{folder}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>53687091</mark_cache_size>
  <uncompressed_cache_size>0</uncompressed_cache_size>
  <max_concurrent_queries>50</max_concurrent_queries>
  <timezone>UTC</timezone>
  <remote_servers><{CLUSTER}>{shards}</{CLUSTER}></remote_servers>
  <macros><cluster>{CLUSTER}</cluster></macros>
</yandex>
"""
        )
        (folder / "users.xml").write_text(
            """<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
    <profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
"""
        )


def _die_with_parent() -> None:
    pr_set_pdeathsig = 1
    ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGKILL)


def stop_pid(pid: int, process: subprocess.Popen[bytes] | None = None, timeout: float = 20.0) -> None:
    """End a server we started by its pid: SIGTERM, then SIGKILL."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None:
            if process.poll() is not None:
                return
        else:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    if process is not None:
        process.wait()


def stop_folder(folder: Path) -> None:
    """Stop the server a folder's pid file names, if it still runs (`lab down`, also after a crash)."""
    pid_file = folder / "pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().strip() or 0)
    cmdline = Path(f"/proc/{pid}/cmdline")
    if pid and cmdline.exists() and str(folder) in cmdline.read_bytes().decode(errors="replace"):
        stop_pid(pid)
    pid_file.unlink(missing_ok=True)


def lab_folder(state_dir: Path) -> Path:
    return state_dir / "clickhouse"


def start_for_lab(state_dir: Path) -> ClickHouse:
    """`lab up --history`: a ClickHouse in the lab's state folder, on a loopback port of this (the root)
    namespace, where the lab's relay writes the merged flows of every node and the CLI reads them back; it
    outlives the `lab up` that started it, and `lab down` stops it (stop_for_lab)."""
    server = ClickHouse.start(lab_folder(state_dir))
    (lab_folder(state_dir) / "url").write_text(server.url + "\n")
    return server


def lab_url(state_dir: Path) -> str | None:
    """The URL of the lab's ClickHouse, when it has one."""
    path = lab_folder(state_dir) / "url"
    return path.read_text().strip() if path.exists() else None


def stop_for_lab(state_dir: Path) -> None:
    stop_folder(lab_folder(state_dir))
