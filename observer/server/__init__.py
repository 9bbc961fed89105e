"""The agent's gRPC side: Hubble's Observer API and the health service over the flow ring."""
