"""The node agent: loads the datapath, turns its events into flows, keeps them in a ring and serves them."""
