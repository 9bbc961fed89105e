"""A lab's flows in a real ClickHouse: the agent's writer (--export-clickhouse) stores what GetFlows serves,
`observe --history` reads it back with filters (pushed down or not) exactly as the agent gave it, also after
ClickHouse was restarted mid-way; the relay of `lab up --history` writes its merged stream to the lab's own
ClickHouse and answers `observe --history-from-relay`; `top --history` aggregates the window."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from conntrack.agent_control import CLIENT_FLOWS, curl_web, flows, ping_server
from google.protobuf import json_format
from history_server import needs_clickhouse
from waiting import polled, wait_for

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.lab import Lab, netns
from flowscope.lab import history as lab_history
from flowscope.lab.history import ClickHouse
from flowscope.observer.history.clickhouse import ClickHouse as Client
from flowscope.observer.history.clickhouse import quote
from flowscope.observer.history.rows import COLUMN_NAMES, RowReader, row_binary

pytestmark = [pytest.mark.bpf, needs_clickhouse]

FLOWSCOPE = str(Path(sys.executable).parent / "flowscope")


class HistoryLab:
    """A one-node lab whose agent writes to a ClickHouse in node1's namespace (where it reaches it on loopback),
    and whose relay writes to the lab's own ClickHouse (lab up --history) in this namespace."""

    def __init__(self, lab: Lab, node_clickhouse: ClickHouse) -> None:
        self.lab, self.node_clickhouse = lab, node_clickhouse

    def stored_uuids(self) -> set[str]:
        with self.node_clickhouse.inside():
            client = Client.connect(self.node_clickhouse.url)
            try:
                return set(client.execute("SELECT uuid FROM flows").decode().split())
            except Exception:
                return set()  # not there yet (schema applied at the writer's first send), or restarting
            finally:
                client.close()

    def observe(self, *args: str, inside: str | None = "node1") -> list[observer_pb2.GetFlowsResponse]:
        argv = [FLOWSCOPE, "observe", *args, "-o", "jsonpb"]
        argv = netns.exec_argv(self.lab.netns(inside), argv) if inside else argv
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return [json_format.Parse(line, observer_pb2.GetFlowsResponse()) for line in done.stdout.splitlines()]

    def history(self, *args: str) -> list[observer_pb2.GetFlowsResponse]:
        return self.observe("--history", self.node_clickhouse.url, "--since", "1h", *args)


@pytest.fixture(scope="module")
def history_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HistoryLab]:
    folder = tmp_path_factory.mktemp("history")
    with Lab(f"t{os.getpid()}-hist") as lab:
        lab.up(traffic=False, agent=False, history=True)
        node_clickhouse = ClickHouse.start(folder / "node1", namespace=lab.netns("node1"), die_with_parent=True)
        try:
            args = ["--export-clickhouse", node_clickhouse.url]
            lab.start_agents(["node1"], extra_args=args)
            lab.start_relay()
            yield HistoryLab(lab, node_clickhouse)
        finally:
            node_clickhouse.stop()
        lab_folder = lab_history.lab_folder(lab.state_dir)
    assert not lab_folder.exists()  # lab down stopped its ClickHouse and removed its folder


# The client's echo requests: a ping of two leaves at least two of them (the agent may serve them a moment later).
CLIENT_ICMP = flow_pb2.FlowFilter(protocol=["icmp"], source_pod=["default/client"])


def _by_uuid(responses: Sequence[observer_pb2.GetFlowsResponse]) -> dict[str, flow_pb2.Flow]:
    return {r.flow.uuid: r.flow for r in responses}


def test_observe_history_reads_back_what_the_agent_served(history_lab: HistoryLab) -> None:
    ping_server(history_lab.lab)
    curl_web(history_lab.lab)
    # The agent decodes and stores events a moment after the packets: asked until the curl's flows are there.
    served = polled(
        lambda: flows(history_lab.lab, *CLIENT_FLOWS),
        lambda got: len(got) >= 6 and any(f.l4.HasField("TCP") for f in got),
        timeout=30,
    )
    assert len(served) >= 6
    wait_for(lambda: {f.uuid for f in served} <= history_lab.stored_uuids(), timeout=30)
    read = history_lab.history("--from-pod", "default/client")
    read += history_lab.history("--to-pod", "default/client")
    from_history = _by_uuid(read)
    assert all(from_history[f.uuid] == f for f in served)  # whole flows, exactly as GetFlows gave them
    times = [r.flow.time.ToNanoseconds() for r in history_lab.history("--from-pod", "default/client")]
    assert times == sorted(times)

    icmp = [f for f in served if f.l4.HasField("ICMPv4")]
    read_icmp = history_lab.history(
        "--protocol", "icmp", "--from-pod", "default/client", "--to-ip", icmp[0].IP.destination
    )
    assert {r.flow.uuid for r in read_icmp} == {f.uuid for f in icmp if f.source.pod_name == "client"}

    # --last 2: the newest two of the client's flows, the agent's and the history's read side by side (flows
    # keep coming, a reply or a connection's report: asked again until both have the same newest ones)
    def last_two_agree() -> bool:
        agent = [f.uuid for f in flows(history_lab.lab, flow_pb2.FlowFilter(source_pod=["default/client"]))][-2:]
        history = [r.flow.uuid for r in history_lab.history("--from-pod", "default/client", "--last", "2")]
        return len(history) == 2 and history == agent

    wait_for(last_two_agree, timeout=30)


def test_a_filter_that_is_not_pushed_down_still_applies(history_lab: HistoryLab) -> None:
    curl_web(history_lab.lab)
    to_web = flow_pb2.FlowFilter(source_label=["app=client"], destination_port=["80"])
    labelled = polled(lambda: flows(history_lab.lab, to_web), bool, timeout=30)
    assert labelled
    wait_for(lambda: {f.uuid for f in labelled} <= history_lab.stored_uuids(), timeout=30)
    read = history_lab.history("--from-label", "app=client", "--to-port", "80")
    assert {r.flow.uuid for r in read} >= {f.uuid for f in labelled}
    assert all("k8s:app=client" in r.flow.source.labels or "app=client" in r.flow.source.labels for r in read)
    assert all(r.flow.source.pod_name == "client" for r in read)


def test_flows_reach_clickhouse_after_it_was_restarted(history_lab: HistoryLab) -> None:
    history_lab.node_clickhouse.stop()
    ping_server(history_lab.lab)  # while ClickHouse is down: the writer keeps them and retries
    during = polled(lambda: flows(history_lab.lab, CLIENT_ICMP), lambda got: len(got) >= 2, timeout=30)
    assert len(during) >= 2
    history_lab.node_clickhouse.restart()
    wait_for(lambda: {f.uuid for f in during} <= history_lab.stored_uuids(), timeout=60)
    read = _by_uuid(history_lab.history("--protocol", "icmp", "--from-pod", "default/client"))
    assert all(read[f.uuid] == f for f in during)


def test_the_relay_writes_the_lab_history_and_answers_history_questions(history_lab: HistoryLab) -> None:
    lab = history_lab.lab
    ping_server(history_lab.lab)
    served = polled(lambda: flows(lab, CLIENT_ICMP), lambda got: len(got) >= 2, timeout=30)
    assert len(served) >= 2
    url = lab_history.lab_url(lab.state_dir)
    assert url is not None
    admin = Client.connect(url)
    wanted = {f.uuid for f in served}

    def stored() -> set[str]:
        try:
            in_list = ", ".join(quote(u) for u in wanted)
            return set(admin.execute(f"SELECT uuid FROM flows WHERE uuid IN ({in_list})").decode().split())
        except Exception:
            return set()

    wait_for(lambda: stored() == wanted, timeout=30)
    direct = history_lab.observe(
        "--history", url, "--since", "1h", "--protocol", "icmp", "--from-pod", "default/client", inside=None
    )
    assert wanted <= {r.flow.uuid for r in direct} and all(r.node_name == "node1" for r in direct)
    assert all(r.flow.l4.HasField("ICMPv4") and r.flow.source.pod_name == "client" for r in direct)
    relay = lab.status().state.relay  # type: ignore[union-attr]
    args = [
        "--server",
        relay,
        "--history-from-relay",
        "--since",
        "1h",
        "--protocol",
        "icmp",
        "--from-pod",
        "default/client",
    ]
    via_relay = _by_uuid(history_lab.observe(*args, inside=None))  # read later: may hold newer flows too
    assert {u: via_relay[u] for u in wanted} == {u: f for u, f in _by_uuid(direct).items() if u in wanted}
    refused = subprocess.run(
        [FLOWSCOPE, "observe", "--server", relay, "--history-from-relay", "--follow"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode != 0 and "follow" in refused.stderr
    admin.close()


def test_top_history_shows_who_talked_most(history_lab: HistoryLab) -> None:
    ping_server(history_lab.lab)
    wait_for(lambda: len(history_lab.stored_uuids()) > 0, timeout=30)
    argv = [FLOWSCOPE, "top", "--history", history_lab.node_clickhouse.url, "--since", "1h"]
    done = subprocess.run(
        netns.exec_argv(history_lab.lab.netns("node1"), argv), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "default/client" in done.stdout and "default/server" in done.stdout
    assert json


def test_the_agent_stores_the_columns_its_flows_say(history_lab: HistoryLab) -> None:
    """The agent makes its rows from the records' columns (observer/history/record_rows.py): every row stored
    is, column for column, the row `row_binary` writes for the flow stored in it (as every flow was stored)."""
    ping_server(history_lab.lab)
    curl_web(history_lab.lab)
    wait_for(lambda: len(history_lab.stored_uuids()) >= 6, timeout=30)
    known = ", ".join(quote(u) for u in history_lab.stored_uuids())  # flows keep coming: these, both times
    with history_lab.node_clickhouse.inside():
        client = Client.connect(history_lab.node_clickhouse.url)
        try:
            where = f"FROM flows WHERE uuid IN ({known}) ORDER BY uuid FORMAT RowBinary"
            flows_stored = client.execute(f"SELECT time_ns, node, flow {where}")
            rows = client.execute(f"SELECT {', '.join(COLUMN_NAMES)} {where}")
        finally:
            client.close()
    stored = list(RowReader().feed(flows_stored))
    assert stored
    responses = []
    for time_ns, node, flow in stored:
        response = observer_pb2.GetFlowsResponse(flow=flow_pb2.Flow.FromString(flow), node_name=node)
        response.time.FromNanoseconds(time_ns)
        responses.append(response)
    assert rows == b"".join(row_binary(r) for r in responses)
