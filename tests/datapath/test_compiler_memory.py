"""Handing back what compiling took: the compiler's code pages leave the process's resident memory, the programs
it compiled stay loaded, and a later compilation in the same process still works (the pages fault back in)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.bpf

# A fresh process, so that what is resident before is this compilation's alone.
SCRIPT = r"""
import json
from bcc import BPF
from flowscope.observer.datapath.bpfsys import prog_info
from flowscope.observer.datapath.compiler_memory import COMPILER_LIBRARIES, mappings, release_compiler_memory

PROGRAM = b"int pass(struct __sk_buff *skb) { return skb->len > 0 ? 0 : 1; }"

def compiler_resident():
    return sum(m.rss for m in mappings() if COMPILER_LIBRARIES.search(m.path))

def vm_rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

first = BPF(text=PROGRAM)
fd = first.load_func(b"pass", BPF.SCHED_CLS).fd
before, rss_before = compiler_resident(), vm_rss()
dropped = release_compiler_memory()
after, rss_after = compiler_resident(), vm_rss()
second = BPF(text=PROGRAM)
second_fd = second.load_func(b"pass", BPF.SCHED_CLS).fd
print(json.dumps({
    "before": before, "after": after, "dropped": dropped, "rss_before": rss_before, "rss_after": rss_after,
    "first_loaded": prog_info(fd).id > 0, "second_loaded": prog_info(second_fd).id > 0,
}))
"""


def test_the_compilers_pages_leave_and_the_programs_stay() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["before"] > 10 << 20, result  # clang and LLVM ran through tens of MiB of their code
    assert result["dropped"] >= result["before"] - result["after"] > 10 << 20, result
    assert result["after"] < result["before"] // 4, result  # what stays: their data, written at load time
    assert result["rss_after"] < result["rss_before"] - (10 << 20), result  # the process's own figure shows it
    assert result["first_loaded"] and result["second_loaded"], result
