"""What every stage shares: the names and numbers of the wire and the datapath, durations, paths, TLS and the
version. It sits below observer, relay and cli and imports none of them, so each stage can use it without
reaching into another stage."""
