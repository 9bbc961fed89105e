"""The agent's encoding of a GetFlows answer alone (records -> GetFlowsResponse bytes, no gRPC), this checkout
against others, and whether they write the same bytes (issue 15).

    .venv/bin/python bench/encode_bench.py --before CHECKOUT [--before ...] [--flows 20000] [--rounds 5]

Each round runs every checkout in a worker process of its own, one after the other, so a slow minute of the
shared machine hurts them alike; a worker times FlowReader.wire over a ring of `--flows` records of lab traffic
(bench/read_bench.py's: TCP both ways, UDP, IPv6, as at aggregation `none`) in CPU time, best of 3, for three
cases: no field mask (hubble's jsonpb), hubble's default mask (compact), and the same records as aggregated
reports (at the default aggregation most flows are). The table shows each checkout's least CPU time per flow
over the rounds.

Then each worker encodes one corpus (50,000 records: the decoder fuzzer's mutated and random records, lab
traffic, and both again with other times, ports and counts, so that flows share their shapes) with a policy
rule table and name sets, under four masks, through the decoder and through FlowReader.wire, and prints a
digest of the bytes: the checkouts must agree.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "tests" / "reliability"))

CASES = ("no mask", "hubble's mask", "aggregated, no mask")
MASKS: dict[str, list[str] | None] = {
    "none": None,
    "hubble": None,  # HUBBLE_FIELD_MASK, filled in by the worker
    "whole": ["time", "uuid", "l4", "flowscope", "source"],
    "partial": ["source.labels", "l4.TCP.source_port", "flowscope.packets", "time.nanos", "Summary", "verdict"],
}


def cost(checkout: Path, count: int) -> None:
    """The worker of a round: `checkout`'s least CPU time per flow for each case, in µs."""
    from checkouts import import_checkout

    import_checkout(checkout)
    from read_bench import ring_records
    from records import lab_registry

    from flowscope.api.observer import observer_pb2
    from flowscope.cli.observe.request import HUBBLE_FIELD_MASK
    from flowscope.observer import events
    from flowscope.observer.filters import FilterContext
    from flowscope.observer.flow_ring import FlowRing
    from flowscope.observer.parser import FlowDecoder
    from flowscope.observer.server.getflows import FlowReader, select

    registry = lab_registry()
    decoder = FlowDecoder("node1", registry, b"bench")
    ctx = FilterContext(node_name="node1", snapshot=registry.snapshot, instance=decoder.instance)
    plain = ring_records(count)
    reports = plain.copy()
    reports["flags"] |= events.F_AGGREGATE
    reports["packets"] = 3 + reports["ts"] % 1000
    reports["bytes"] = reports["packets"] * 1400
    reports["tcp_flags_seen"] = 0x12
    out = []
    for records, mask in ((plain, None), (plain, list(HUBBLE_FIELD_MASK)), (reports, None)):
        ring = FlowRing(65535, events.event_dtype())
        ring.write(records)
        request = observer_pb2.GetFlowsRequest(number=count)
        if mask is not None:
            request.field_mask.paths.extend(mask)
        best = float("inf")
        for _ in range(3):
            reader = FlowReader(ring, decoder, select(request, ctx), "node1")
            start = time.process_time()
            sum(len(b) for b in reader.wire(lambda: True))
            best = min(best, time.process_time() - start)
        out.append(best / count * 1e6)
    print(" ".join(f"{us:.2f}" for us in out))


def digests(checkout: Path) -> None:
    """The worker of the bytes check: a digest of the corpus' flows per mask, as decoded and as sent."""
    from checkouts import import_checkout

    import_checkout(checkout)
    import numpy as np
    from decoder_fuzz import Fuzzer
    from read_bench import ring_records
    from records import lab_registry

    from flowscope.api.observer import observer_pb2
    from flowscope.cli.observe.request import HUBBLE_FIELD_MASK
    from flowscope.observer import events
    from flowscope.observer.filters import FilterContext
    from flowscope.observer.flow_ring import FlowRing
    from flowscope.observer.l7.names import NameSets
    from flowscope.observer.parser import FlowDecoder, compile_field_mask
    from flowscope.observer.policy import RuleOrigin
    from flowscope.observer.server.getflows import FlowReader, select

    class Rules:
        def name(self, number: int) -> str | None:
            return f"rule-{number}" if number % 3 else None

        def origin(self, number: int) -> RuleOrigin | None:
            return RuleOrigin(f"p{number}", "default", "CiliumNetworkPolicy", ("a=b",), number) if number % 2 else None

    fuzzer = Fuzzer(7)
    fuzzed = np.array([fuzzer.make() for _ in range(30000)], dtype=events.event_dtype())
    again = np.concatenate([fuzzed[:10000], ring_records(5000)])
    rng = np.random.default_rng(3)
    again["sport"] = rng.integers(0, 65536, len(again))
    again["ts"] = rng.integers(0, 2**62, len(again))
    again["packets"] = rng.integers(0, 2**32, len(again))
    again["bytes"] = rng.integers(0, 2**40, len(again))
    corpus = np.concatenate([fuzzed, ring_records(5000), again])
    registry = lab_registry()
    decoder = FlowDecoder("node1", registry, b"same", {3: "NO_SOCKET"}, lambda at: None if at % 2 else f"f+0x{at:x}")
    decoder.rules = Rules()
    decoder.name_sets = NameSets()
    for i in range(50):
        decoder.name_sets.intern((f"n{i}.svc.lab",))
    ctx = FilterContext(node_name="node1", snapshot=registry.snapshot, instance=decoder.instance)
    for name, mask in MASKS.items():
        paths = list(HUBBLE_FIELD_MASK) if name == "hubble" else mask
        fields = compile_field_mask(paths) if paths else None
        decoded = hashlib.sha256()
        for seq, stored in enumerate(corpus):
            decoded.update(decoder.decode(stored, seq, fields).SerializeToString())
        ring = FlowRing(2**17 - 1, events.event_dtype())
        ring.write(corpus)
        request = observer_pb2.GetFlowsRequest(number=len(corpus))
        if paths:
            request.field_mask.paths.extend(paths)
        sent = hashlib.sha256()
        for response in FlowReader(ring, decoder, select(request, ctx), "node1").wire(lambda: True):
            if response.startswith(b"\x0a"):  # a flow (a lost event carries the time it was sent)
                sent.update(response)
        print(name, decoded.hexdigest()[:16], sent.hexdigest()[:16])


def _worker(*arguments: str) -> str:
    """What a worker printed; SystemExit with its errors when it failed."""
    done = subprocess.run([sys.executable, __file__, *arguments], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the worker {' '.join(arguments)} failed:\n{done.stderr}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, action="append", default=[], help="a checkout to compare with")
    parser.add_argument("--flows", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cost", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--digests", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cost:
        cost(Path(args.cost[0]), int(args.cost[1]))
        return
    if args.digests:
        digests(args.digests)
        return
    sides = {path.name: path.resolve() for path in args.before} | {"this checkout": HERE.parent}
    best: dict[str, list[float]] = {name: [float("inf")] * len(CASES) for name in sides}
    for _ in range(args.rounds):
        for name, path in sides.items():
            result = _worker("--cost", str(path), str(args.flows)).split()
            best[name] = [min(old, float(new)) for old, new in zip(best[name], result, strict=True)]
    print(f"the agent's encoding of `--last {args.flows}`, CPU µs per flow, least of {args.rounds} alternating rounds")
    print("| case | " + " | ".join(sides) + " |")
    print("|---|" + "---|" * len(sides))
    for i, case in enumerate(CASES):
        print(f"| {case} | " + " | ".join(f"{best[name][i]:.2f}" for name in sides) + " |")
    outputs = {}
    for name, path in sides.items():
        outputs[name] = _worker("--digests", str(path))
    same = len(set(outputs.values())) == 1
    print(f"\nthe same bytes in every checkout (50,000 records, masks {', '.join(MASKS)}): {'yes' if same else 'NO'}")
    if not same:
        for name, text in outputs.items():
            print(f"{name}:\n{text}")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
