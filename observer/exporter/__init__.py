"""Flow logs: the agent's flows exported as they are ingested, as Hubble's pkg/hubble/exporter does.

core.py is the pipeline every exporter shares (selection, decoding, counting, off the ingest thread); a sink
says where the responses go: file.py writes JSON lines to rotated files, observer/history writes ClickHouse.
"""
