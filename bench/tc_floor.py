"""Attach bench/bpf/tc_floor.c, a tc program that does nothing, on the hooks the agent uses; hold until killed.

    ip netns exec <node> .venv/bin/python bench/tc_floor.py eth0 lxc-a lxc-b ...

The first device gets the node device's hooks, the others the endpoint hooks, through tcx links as the agent
attaches. Prints "attached" once it is. Its links are not pinned: they go with this process, however it ends.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from bcc import BPF

from flowscope.observer.datapath.tc import DEVICE_HOOKS, ENDPOINT_HOOKS, TcAttachments

SOURCE = Path(__file__).resolve().parent / "bpf" / "tc_floor.c"


def main() -> int:
    node_device, *endpoint_devices = sys.argv[1:]
    program = BPF(src_file=str(SOURCE).encode())
    fd = program.load_func(b"pass", BPF.SCHED_CLS).fd
    tc = TcAttachments()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        for hook in DEVICE_HOOKS:
            tc.attach(node_device, hook, fd)
        for device in endpoint_devices:
            for hook in ENDPOINT_HOOKS:
                tc.attach(device, hook, fd)
        print("attached", flush=True)
        signal.pause()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        tc.close()
        program.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
