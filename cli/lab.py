"""`flowscope lab up|down|status`: a Kubernetes-like cluster on this machine, made of network namespaces.

    flowscope lab up [--name lab] [--nodes 1] [--tunnel {disabled,vxlan}] [--no-traffic] [--no-agent] [--recreate]
    flowscope lab status [--name lab]
    flowscope lab down [--name lab]

Also runs as `python -m cli.lab ...`.
"""

from __future__ import annotations

import argparse
import sys
import time

from flowscope.cli.errors import CliError
from flowscope.lab import Lab, LabStatus
from flowscope.lab import history as lab_history
from flowscope.lab.topology import LABS_DIR, MAX_NODES, TUNNEL_DEVICE, TUNNELS

UP_DESCRIPTION = """\
Build a lab: network namespaces for the nodes, their pods and a world host outside the cluster, wired like a
Kubernetes cluster; servers in the pods, a traffic generator, and a flowscope agent on each node (with a relay
on localhost:4245 when there are several), so `flowscope observe` shows flows right away.

A lab that is already up is left as it is; --recreate rebuilds it.
"""
LOST = "the agents' applied policy, aggregation settings and stored flows are lost"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lab = subparsers.add_parser("lab", help="build, inspect or remove a lab cluster of network namespaces")
    commands = lab.add_subparsers(dest="lab_command", required=True, metavar="{up,down,status}")

    up = commands.add_parser(
        "up",
        help="build a lab: nodes, pods, servers, traffic and agents",
        description=UP_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _name_option(up)
    up.add_argument("--nodes", type=int, default=1, help=f"number of nodes, 1 to {MAX_NODES} (1)")
    up.add_argument(
        "--tunnel",
        choices=TUNNELS,
        default="disabled",
        help=f"how nodes reach each other's pods: routed on the underlay (disabled), or over a VXLAN overlay "
        f"({TUNNEL_DEVICE} on each node, Cilium's default routing mode) (disabled)",
    )
    up.add_argument("--no-traffic", dest="traffic", action="store_false", help="start no traffic generator")
    up.add_argument("--no-agent", dest="agent", action="store_false", help="start no flowscope agents")
    up.add_argument("--recreate", action="store_true", help=f"rebuild a lab that is already up ({LOST})")
    up.add_argument(
        "--history",
        action="store_true",
        help="start a ClickHouse for the lab (loopback port, data in the lab's state folder) that its relay writes"
        " every node's flows to: read them back with `observe --history URL` (docs/history.md)",
    )
    up.set_defaults(run=run_up)

    down = commands.add_parser("down", help="stop a lab's programs and remove its namespaces")
    _name_option(down)
    down.set_defaults(run=run_down)

    status = commands.add_parser("status", help="what is up; exit status 0 only when all of it is running")
    _name_option(status)
    status.set_defaults(run=run_status)


def _name_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default="lab", help="the lab's name; its namespaces are fs-<name>-* (lab)")


def run_up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    try:
        lab = Lab(args.name, nodes=args.nodes, default_socket=True, tunnel=args.tunnel)
        present = Lab.existing(args.name).status()
        if present.exists and not args.recreate:
            return _already_up(present, args)
        if present.exists:
            print(f'recreating lab "{lab.name}": {LOST}', flush=True)
        lab.up(traffic=args.traffic, agent=args.agent, history=args.history)
    except (ValueError, RuntimeError, OSError, TimeoutError) as exc:
        raise CliError(f"lab up: {exc}") from exc
    print(f'lab "{lab.name}" is up ({time.monotonic() - started:.1f}s)\n')
    print(describe(lab.status()))
    client, web, dns = lab.pod("client"), lab.pod("web"), lab.pod("coredns")
    print("\ntry:")
    print(f"  ip netns exec {client.netns} curl -s http://[{web.ipv6}]/")
    print(f"  ip netns exec {client.netns} dig @{dns.ipv4} {web.fqdn} AAAA")
    if (history := lab_history.lab_url(lab.state_dir)) is not None:
        print(f"  flowscope observe --history {history} --since 10m")
    return 0


def _already_up(status: LabStatus, args: argparse.Namespace) -> int:
    """`lab up` over a lab that is up touches nothing: its agents keep their policy, settings and flows.

    That is success when the lab is what was asked for, and an error naming --recreate when it is not (another
    size, traffic or agents, or parts of it dead), since only a rebuild would make it so.
    """
    problem = _differs(status, args)
    if problem:
        raise CliError(f'lab up: lab "{status.name}" is already up {problem}; to rebuild it use --recreate ({LOST})')
    assert status.state is not None  # a lab that does not differ is recorded
    nodes = status.state.nodes
    age = time.time() - status.state.created
    print(f'lab "{status.name}" is already up ({nodes} node{"s" * (nodes > 1)}, for {age:.0f}s); nothing changed\n')
    print(describe(status))
    return 0


def _differs(status: LabStatus, args: argparse.Namespace) -> str:
    """How a lab that is up differs from what `lab up` asks for ("" when it does not)."""
    state = status.state
    if state is None:
        return "as namespaces without a record"
    if state.nodes != args.nodes:
        return f"with {state.nodes} node{'s' * (state.nodes > 1)}, not {args.nodes}"
    if state.tunnel != args.tunnel:
        return f"with --tunnel {state.tunnel}"
    if state.traffic != args.traffic:
        return "with traffic" if state.traffic else "without traffic"
    if bool(state.agents) != args.agent:
        return "with agents" if state.agents else "without agents"
    if not status.healthy:
        return f"but not all of it runs (see: flowscope lab status --name {status.name})"
    return ""


def run_down(args: argparse.Namespace) -> int:
    try:
        Lab(args.name).down()
    except (ValueError, OSError) as exc:
        raise CliError(f"lab down: {exc}") from exc
    print(f'lab "{args.name}" is down')
    return 0


def run_status(args: argparse.Namespace) -> int:
    try:
        status = Lab.existing(args.name).status()
    except ValueError as exc:
        raise CliError(f"lab status: {exc}") from exc
    print(describe(status))
    return 0 if status.healthy else 1


def describe(status: LabStatus) -> str:
    """A lab's status as a person reads it."""
    if not status.exists:
        return f'lab "{status.name}" is not up'
    if not status.recorded:
        return (
            f'lab "{status.name}" has no record in {LABS_DIR / status.name}, but these namespaces remain: '
            f"{' '.join(status.netns_present)}\nremove them with: flowscope lab down --name {status.name}"
        )
    t = status.topology
    lines = [f"lab {t.name}: {len(t.nodes)} node(s), {len(t.pods)} pods, state in {t.state_dir}"]
    if status.netns_missing:
        lines.append(f"MISSING namespaces: {' '.join(status.netns_missing)}")
    overlay = f"; overlay: vxlan on {TUNNEL_DEVICE}" if t.tunnel == "vxlan" else ""
    lines.append(f"\nhosts (underlay 10.77.0.0/24, fd77::/64{overlay})")
    for node in t.nodes:
        pod_cidrs = f"pods {node.pod_cidr_v4} {node.pod_cidr_v6}"
        lines.append(f"  {node.name:<9} {node.ipv4:<12} {node.ipv6:<10} {pod_cidrs:<36} netns {node.netns}")
    lines.append(f"  {t.world.name:<9} {t.world.ipv4:<12} {t.world.ipv6:<10} {'':<36} netns {t.world.netns}")
    lines.append("\npods")
    lines.append(f"  {'NAMESPACE':<12} {'POD':<8} {'NODE':<7} {'ID':<6} {'DEVICE':<9} {'IPV4':<13} IPV6")
    for pod in t.pods:
        lines.append(
            f"  {pod.namespace:<12} {pod.name:<8} {pod.node:<7} {pod.endpoint_id:<6} {pod.ifname:<9} "
            f"{pod.ipv4:<13} {pod.ipv6}"
        )
    lines.append("\ndaemons")
    for daemon, alive in status.daemons:
        state = "alive" if alive else "DEAD"
        lines.append(f"  {daemon.role:<12} {state:<6} pid {daemon.pid:<8} {daemon.netns:<20} log {daemon.log}")
        socket = status.agents.get(daemon.role.removeprefix("agent-"))
        if daemon.role.startswith("agent-") and socket:
            lines.append(f"  {'':<12} serves on unix://{socket}")
    if not status.daemons:
        lines.append("  none")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`python -m cli.lab up ...`, the same as `flowscope lab up ...`."""
    parser = argparse.ArgumentParser(prog="flowscope")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["lab", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.run(args))
    except CliError as exc:
        print(f"flowscope: error: {exc.message}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
