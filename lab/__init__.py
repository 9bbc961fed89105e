"""The lab: real nodes and pods on this machine (network namespaces, veth pairs) with real traffic.

`Lab` is the way in (lab/lab.py); `flowscope lab up|down|status` (cli/lab.py) drives it from a shell.
"""

from flowscope.lab.lab import Lab, LabStatus
from flowscope.lab.topology import Host, NodeHost, Pod, Topology, plan

__all__ = ["Host", "Lab", "LabStatus", "NodeHost", "Pod", "Topology", "plan"]
