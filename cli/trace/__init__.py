"""`flowscope trace`: packet-path sessions, their rendering and their pcapng files."""
