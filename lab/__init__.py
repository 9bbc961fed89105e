"""The lab: real nodes and pods on this machine (network namespaces, veth pairs) with real traffic."""
