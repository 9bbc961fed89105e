"""The relay and the cluster's history (observer/history): it writes its merged stream to ClickHouse
(`relay --export-clickhouse URL`: every node's flows, each carrying its node's name, one writer for the
cluster) and answers GetFlows calls marked as history questions from ClickHouse (`relay --history URL`).

A history question is a GetFlows call with the gRPC metadata `flowscope-history: 1` (what `observe
--history-from-relay` sends): the request stays the Hubble request it is, filters and window included, and a
client that does not send the mark (hubble) keeps getting the rings' flows. Follow mode has no history.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

from flowscope.api.observer import observer_pb2
from flowscope.observer.history.clickhouse import ClickHouse
from flowscope.observer.history.migrate import table_for
from flowscope.observer.history.reader import responses
from flowscope.observer.history.writer import ClickHouseWriter, WriterOptions
from flowscope.relay.fanout import Fanout
from flowscope.relay.merge import Merger
from flowscope.relay.pool import PeerPool

log = logging.getLogger(__name__)

METADATA_KEY = "flowscope-history"


def is_history_call(metadata: object) -> bool:
    """Whether a call's invocation metadata marks it as a history question."""
    return any(key == METADATA_KEY and value in ("1", b"1") for key, value in metadata or ())  # type: ignore[attr-defined]


class HistoryAnswers:
    """GetFlows answered from ClickHouse: the responses' wire bytes, in time order."""

    def __init__(self, url: str, cluster: bool = False) -> None:
        self.url = url
        self._table = table_for(cluster)

    def answer(self, request: observer_pb2.GetFlowsRequest) -> Iterator[bytes]:
        """ValueError for a follow request; FilterError, ClickHouseError as the reader raises them."""
        if request.follow:
            raise ValueError("a history request cannot follow: give --since/--until or --last")
        client = ClickHouse.connect(self.url)
        try:
            for response in responses(client, request, self._table):
                yield response.SerializeToString()
        finally:
            client.close()


class RelayHistoryWriter:
    """Follows every node through the relay's pool, as a client would, and stores the merged flows."""

    def __init__(
        self, url: str, options: WriterOptions, pool: PeerPool, relay_name: str, stopping: threading.Event
    ) -> None:
        self.writer = ClickHouseWriter(url, options)
        self.flows = 0  # flows handed to the writer
        self.lost_events = 0  # events the merged stream reported lost (counted, not stored)
        self._pool = pool
        self._name = relay_name
        self._stopping = stopping
        self._thread = threading.Thread(target=self._run, name="relay history", daemon=True)

    def start(self) -> RelayHistoryWriter:
        self._thread.start()
        return self

    def close(self) -> None:
        self._thread.join(5.0)
        self.writer.close()

    def status(self) -> observer_pb2.ExporterStatus:
        """The relay's writer as an exporter: what `flowscope status` shows beside the nodes' exporters."""
        status = observer_pb2.ExporterStatus(
            name="clickhouse", node_name=self._name, flows_exported=self.flows, lost_events=self.lost_events
        )
        self.writer.describe(status)
        return status

    def _run(self) -> None:
        active: Callable[[], bool] = lambda: not self._stopping.is_set()  # noqa: E731
        while active():
            fanout = Fanout(observer_pb2.GetFlowsRequest(follow=True), self._pool, Merger(self._name))
            try:
                for data in fanout.responses(active):
                    # One at a time: the merger says nothing of where its batches end, and a flow must not wait
                    # for the next one; the writer batches the rows itself.
                    response = observer_pb2.GetFlowsResponse.FromString(data)
                    if response.HasField("flow"):
                        self.writer.export((response,))
                        self.flows += 1
                    elif response.HasField("lost_events"):
                        self.lost_events += response.lost_events.num_events_lost
            except Exception:
                log.exception("relay history: the merged stream failed; following again")
            self._stopping.wait(1.0)
