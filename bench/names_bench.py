"""What attaching names costs the ingest thread: NameCache.annotate over a batch of 100k records.

    .venv/bin/python bench/names_bench.py [--records 100000] [--named 0.01] [--peers 5000]

Why: annotate runs on every batch before it is stored, on the one thread that keeps up with the kernel's ring
buffer. Its promise is that records whose addresses have no names cost one vectorised test (target: under
~5 ms per 100k records), and only named rows pay Python. The cache holds `--peers` named addresses spread over
100 clients; `--named` is the share of records from such a client to such a peer.
"""

from __future__ import annotations

import argparse
import ipaddress
import statistics
import time
from dataclasses import dataclass

import numpy as np

from flowscope.observer.events import F_L4, event_dtype
from flowscope.observer.l7.names import NameCache, NameSets

NOW = time.time_ns()


@dataclass(frozen=True)
class Answer:
    query: str
    ips: tuple[str, ...]
    ttl: int = 3600
    cnames: tuple[str, ...] = ()


def address(text: str) -> bytes:
    return ipaddress.ip_address(text).packed.ljust(16, b"\0")


def filled_cache(peers: int, clients: int = 100) -> tuple[NameCache, list[bytes], list[bytes]]:
    cache = NameCache(NameSets())
    client_addresses = [address(f"10.200.{i // 250}.{i % 250 + 1}") for i in range(clients)]
    peer_texts = [f"10.{100 + i // 65000}.{i // 250 % 256}.{i % 250 + 1}" for i in range(peers)]
    for i, peer in enumerate(peer_texts):
        cache.learn_dns(client_addresses[i % clients], Answer(f"host{i}.example.com.", (peer,)), NOW)
    return cache, client_addresses, [address(peer) for peer in peer_texts]


def batch(size: int, named: float, clients: list[bytes], peers: list[bytes], seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    records = np.zeros(size, dtype=event_dtype())
    records["ts"] = NOW + 1
    records["ethertype"] = 0x0800
    records["flags"] = F_L4
    unnamed = rng.integers(0x0A000001, 0x0A00FFFF, size=(size, 2), dtype=np.uint32).byteswap()
    raw = np.zeros((size, 2, 16), dtype=np.uint8)
    raw[:, :, :4] = unnamed.view(np.uint8).reshape(size, 2, 4)
    records["saddr"] = raw[:, 0].copy().view("V16").ravel()
    records["daddr"] = raw[:, 1].copy().view("V16").ravel()
    rows = rng.choice(size, int(size * named), replace=False)
    for row in rows.tolist():
        peer = int(rng.integers(len(peers)))
        records["saddr"][row] = clients[peer % len(clients)]
        records["daddr"][row] = peers[peer]
    return records


def measure(cache: NameCache, records: np.ndarray, rounds: int = 20) -> float:
    """Median ms of annotate over fresh copies of the batch (names reset each round), each stamped first as
    the ingest thread stamps its batches (so the records are as warm as they are there)."""
    times = []
    for _ in range(rounds):
        copy = records.copy()
        copy["ts"] += 1
        began = time.perf_counter()
        cache.annotate(copy)
        times.append((time.perf_counter() - began) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--named", type=float, default=0.01)
    parser.add_argument("--peers", type=int, default=5000)
    args = parser.parse_args()
    cache, clients, peers = filled_cache(args.peers)
    for share in (0.0, args.named, 0.1):
        records = batch(args.records, share, clients, peers)
        ms = measure(cache, records)
        named = int(args.records * share)
        print(f"{args.records} records, {named} named, {args.peers} named peers: annotate {ms:.2f} ms (median)")


if __name__ == "__main__":
    main()
