"""Two checkouts' datapaths against each other, in paired windows of one flood: their programs swapped in turns.

    sudo .venv/bin/python bench/ab_bench.py --before CHECKOUT [--seconds 120] [--traffic UDP-64] [--level medium]

Why: a change that takes a tenth of the datapath's cost away moves the traffic by about 1%, less than what
paired_bench.py (programs on against off) can tell apart between two of its runs. Here each checkout's
datapath is loaded by a worker process of its own (its own flowscope package and bpf/ sources, no agent), with
the same endpoints and runtime config, and the hooks of a one-node lab run one checkout's programs or the
other's in turns every 0.1 s (BPF_LINK_UPDATE: the program behind each tcx link replaced in place) through one
long iperf3 run. The figure is this checkout's traffic over the other's, with a 90% bootstrap interval over
pairs of neighbouring windows.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from checkouts import import_checkout, link_tree

# Nothing of this checkout's flowscope at module level: a worker must load its checkout's (bench/checkouts.py).
HERE = Path(__file__).resolve()
NODE = "node1"
LEVELS = {"none": 0, "low": 2, "medium": 3, "maximum": 4}
BPF_TCX_INGRESS, BPF_TCX_EGRESS = 46, 47  # enum bpf_attach_type
ENDPOINT_HOOKS = (("from_container", BPF_TCX_INGRESS), ("to_container", BPF_TCX_EGRESS))
DEVICE_HOOKS = (("from_netdev", BPF_TCX_INGRESS), ("to_netdev", BPF_TCX_EGRESS))


def serve(tree: Path) -> None:
    """The worker: load the checkout's datapath, set the endpoints and config it is sent (one JSON line), answer
    with its entry programs' ids, and read its ring buffer until stdin closes."""
    import_checkout(tree)
    from flowscope.observer.datapath import Datapath
    from flowscope.observer.datapath.bpfsys import prog_info

    request = json.loads(sys.stdin.readline())
    with Datapath() as dp:
        dp.update_config(**request["config"])
        for ifindex, ep_id, identity in request["endpoints"]:
            dp.set_endpoint(ifindex, ep_id, identity)
        names = [name for name, _ in ENDPOINT_HOOKS + DEVICE_HOOKS]
        print(json.dumps({name: prog_info(dp.program_fd(name)).id for name in names}), flush=True)
        reader, done = dp.reader(), threading.Event()

        def drain() -> None:
            while not done.is_set():
                reader.read_batch(100)

        thread = threading.Thread(target=drain, daemon=True)
        thread.start()
        sys.stdin.read()
        done.set()
        thread.join()
        print(json.dumps({"lost": sum(dp.lost_counts())}), flush=True)


class Worker:
    def __init__(self, tree: Path, request: dict[str, object]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE), "--serve", str(tree)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin: IO[str] = self.proc.stdin
        self.stdout: IO[str] = self.proc.stdout
        self.stdin.write(json.dumps(request) + "\n")
        self.stdin.flush()
        line = self.stdout.readline()
        if not line:
            raise RuntimeError(f"the worker for {tree} did not start")
        self.programs: dict[str, int] = json.loads(line)

    def close(self) -> int:
        """Stop it; the events its datapath lost."""
        self.stdin.close()
        last = self.stdout.read().strip().splitlines()
        self.proc.wait(timeout=30)
        return int(json.loads(last[-1])["lost"]) if last else -1


class Swap:
    """The node's hooks running this checkout's programs (`set(True)`) or the other's (`set(False)`)."""

    def __init__(self, hooks: list[tuple[int, int, str]], after: dict[str, int], before: dict[str, int]) -> None:
        from flowscope.observer.datapath.bpfsys import prog_fd_by_id, tcx_link_create

        self.fds = {
            on: {name: prog_fd_by_id(pid) for name, pid in ids.items()} for on, ids in ((True, after), (False, before))
        }
        self.links = [(name, tcx_link_create(self.fds[False][name], ifindex, kind)) for ifindex, kind, name in hooks]

    def set(self, on: bool) -> None:
        from flowscope.observer.datapath.bpfsys import link_update

        for name, link in self.links:
            link_update(link, self.fds[on][name])

    def close(self) -> None:
        for _, link in self.links:
            os.close(link)
        for fds in self.fds.values():
            for fd in fds.values():
                os.close(fd)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, help="the checkout to measure this one against")
    parser.add_argument("--seconds", type=float, default=120.0, help="length of the iperf3 run (120)")
    parser.add_argument("--traffic", default="UDP-64", help="TCP or UDP-64 (UDP-64)")
    parser.add_argument("--level", default="medium", choices=LEVELS, help="monitor aggregation (medium)")
    parser.add_argument("--window", type=float, default=0.1, help="seconds each checkout runs in turn (0.1)")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    if args.before is None:
        parser.error("--before is needed")
    link_tree(args.before)  # refused in words before the lab comes up, not by a worker that dies
    from paired_bench import pair_up, ratio, ratio_interval, run_windows

    from flowscope.lab import Lab
    from flowscope.lab.netns import inside

    with Lab(f"ab{os.getpid()}") as lab:
        lab.up(traffic=False, agent=False)
        with inside(lab.netns(NODE)):
            pods = [pod for pod in lab.pods if pod.node == NODE]
            endpoints = [(socket.if_nametoindex(pod.ifname), 100 + i, 5000 + i) for i, pod in enumerate(pods)]
            hooks = [(ifindex, kind, name) for ifindex, _, _ in endpoints for name, kind in ENDPOINT_HOOKS]
            hooks += [(socket.if_nametoindex("eth0"), kind, name) for name, kind in DEVICE_HOOKS]
        request = {"config": {"aggregation": LEVELS[args.level], "report_flags": 7}, "endpoints": endpoints}
        after, before = Worker(HERE.parents[1], request), Worker(args.before.resolve(), request)
        try:
            windows = run_windows(
                lab,
                args.traffic,
                args.seconds,
                args.window,
                0.01,
                lambda _: Swap(hooks, after.programs, before.programs),
            )
        finally:
            lost = after.close(), before.close()
    pairs = pair_up(windows)
    low, high = ratio_interval(pairs)
    print(
        f"{args.traffic} at {args.level}: this checkout / {args.before} = {ratio(pairs):.4f} "
        f"(90% interval {low:.4f}-{high:.4f}), {len(pairs)} pairs of windows; events lost {lost[0]} / {lost[1]}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
