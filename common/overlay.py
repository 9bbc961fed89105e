"""What the overlay's builder (lab/network.py) and its observer (observer/parser/tunnel.py) both know.

The outer UDP port is not in the tunnel metadata the datapath reads, so the agent reports the port the tunnel
devices are made with: Cilium's VXLAN port, which the lab's fs_vxlan devices use.
"""

from __future__ import annotations

VXLAN_PORT = 8472  # Cilium's VXLAN port (the IANA one, 4789, is Linux's default)
