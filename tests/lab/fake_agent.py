"""Stands in for `flowscope agent` in lab tests: serves the gRPC health check on --socket, nothing else.

Run as `python fake_agent.py agent --node-name ... --socket ...`, the way the lab runs `flowscope agent`, so
the lab's agent launch (namespace, flags, waiting for health) is tested without the real agent.
"""

from __future__ import annotations

import argparse
import signal
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["agent"])
    for flag in ("--node-name", "--cluster-file", "--device", "--socket", "--listen-address"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args()
    service = health.HealthServicer()
    service.set("hubble.server.Observer", health_pb2.HealthCheckResponse.SERVING)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(service, server)
    server.add_insecure_port(f"unix://{args.socket}")
    server.start()
    print(f"fake agent of {args.node_name} serving on {args.socket}", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    main()
