"""`flowscope policy` and `flowscope config` as a person meets them: flags, answers, one-line errors."""

from __future__ import annotations

import os

import pytest

from flowscope.api.control import control_pb2
from flowscope.cli.main import main
from flowscope.cli.policy import combine, format_check, format_status


def test_check_names_the_rule_that_decided() -> None:
    answer = control_pb2.CheckPolicyResponse(
        source_ip="10.200.1.11",
        destination_ip="10.200.1.12",
        source="default/client",
        destination="default/server",
        egress=control_pb2.Verdict(enforced=False, allowed=True, subject="default/client"),
        ingress=control_pb2.Verdict(
            enforced=True, allowed=True, match_type="L3-L4", rule="server-in/ingress/0", subject="default/server"
        ),
        allowed=True,
        revision=3,
    )
    assert format_check(answer, 6, 9000).splitlines() == [
        "ALLOWED: default/client (10.200.1.11) -> default/server (10.200.1.12) 9000/TCP, policy revision 3",
        "  egress of default/client: not enforced (no policy selects it in this direction)",
        "  ingress of default/server: allowed by server-in/ingress/0 (L3-L4)",
    ]
    answer.ingress.CopyFrom(control_pb2.Verdict(enforced=True, drop_reason=133, subject="default/server"))
    answer.allowed = False
    assert format_check(answer, 17, 53).splitlines()[2] == (
        "  ingress of default/server: denied (no rule allows it): POLICY_DENIED"
    )


def test_show_lists_what_the_policy_compiled_to() -> None:
    status = control_pb2.PolicyStatus(
        revision=2,
        source="p.yaml",
        policies=["server-in"],
        enforced=[control_pb2.EnforcedSubject(identity=9, subject="default/server", ingress=True)],
        entries=[
            control_pb2.PolicyEntry(
                subject="default/server",
                direction=1,
                peer="default/client",
                protocol=6,
                port=9000,
                rule="server-in/ingress/0",
            ),
            control_pb2.PolicyEntry(
                subject="default/server", direction=1, peer="web/web", deny=True, rule="r/ingressDeny/0"
            ),
        ],
    )
    text = format_status(status)
    assert "Revision: 2 (from p.yaml)" in text and "Enforced: default/server (ingress)" in text
    assert "default/server   ingress     default/client   9000/TCP   allow    server-in/ingress/0" in text
    assert "web/web          any        deny" in text
    assert format_status(control_pb2.PolicyStatus()) == "no policy applied"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["policy", "check", "a", "b", "--protocol", "tpc"], "unknown protocol 'tpc'"),
        (["config", "set", "monitor-aggregation"], "the following arguments are required: value"),
        (["config", "get", "aggregation"], "invalid choice: 'aggregation'"),
        (["agent", "--monitor-aggregation", "high"], "monitor aggregation level 'high'"),
        (["agent", "--monitor-aggregation-interval", "5"], "monitor aggregation interval '5'"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_apply_of_a_missing_file_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "apply", "/nonexistent/policy.yaml", "--server", "unix:///nonexistent.sock"]) == 1
    assert capsys.readouterr().err.strip() == (
        "flowscope: error: cannot read /nonexistent/policy.yaml: No such file or directory"
    )


def test_no_agent_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "get", "--server", "unix:///nonexistent.sock"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("flowscope: error: cannot connect to unix:///nonexistent.sock") and "\n" not in err


def test_every_argument_says_what_it_is(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, text in ((["policy", "apply", "--help"], "the policy:"), (["config", "set", "--help"], "its new value")):
        with pytest.raises(SystemExit):
            main(argv)
        assert text in capsys.readouterr().out


def test_check_takes_each_side_from_the_node_that_hosts_it() -> None:
    def answer(node: str, ingress: control_pb2.Verdict) -> control_pb2.CheckPolicyResponse:
        return control_pb2.CheckPolicyResponse(
            source="default/client",
            destination="default/server",
            node=node,
            source_node="node1",
            destination_node="node2",
            egress=control_pb2.Verdict(subject="default/client", allowed=True),
            ingress=ingress,
            allowed=ingress.allowed,
        )

    not_enforced = control_pb2.Verdict(subject="default/server", allowed=True)
    denied = control_pb2.Verdict(subject="default/server", enforced=True, drop_reason=133)
    combined, unasked = combine({"node1": answer("node1", not_enforced), "node2": answer("node2", denied)})
    assert not combined.allowed and not unasked and combined.ingress == denied
    alone, unasked = combine({"": answer("node1", not_enforced)})
    assert unasked == {"ingress"}
    lines = format_check(alone, 17, 9001, unasked).splitlines()
    assert lines[0].startswith("NOT KNOWN: ")
    assert lines[2].startswith("  ingress of default/server: not known: it lives on node2, whose agent enforces it")


def test_a_lab_without_agents_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "show", "--lab", f"t{os.getpid()}-nolab"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"flowscope: error: lab 't{os.getpid()}-nolab' has no agents: is it up? "
        f"(flowscope lab status --name t{os.getpid()}-nolab)"
    )
