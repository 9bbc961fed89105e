"""gRPC over HTTP/2 for flowscope's own servers and its flow-stream readers, without grpcio's per-message cost.

grpcio's Python API sends and receives one message per round trip through its core (~35-60 µs of CPU a message
on this machine: bench/RESULTS.md "Fast reads"), more than a whole flow's budget. Here a stream's messages are
framed in batches into few HTTP/2 DATA frames (h2 keeps the protocol's state), so a flow costs its bytes.
"""
