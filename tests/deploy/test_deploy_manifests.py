"""deploy/: the Kubernetes manifests are valid objects for the stated Kubernetes version, every flag they give
exists (parsed by the real `flowscope` parser), ports, paths, names and the image agree across them, no container
is privileged without the reason written beside it, and the image installs only packages scripts/setup knows."""

from __future__ import annotations

import subprocess

import kubernetes_validate
import pytest
from deploy_manifests import (
    DEPLOY,
    DOCKERFILE,
    KUBERNETES_VERSION,
    KUSTOMIZATION,
    Container,
    ParseError,
    container,
    containers,
    dockerfile_packages,
    exec_probes,
    find,
    kustomization,
    manifest_files,
    objects,
    parse,
    project_version,
    setup_packages,
)

from flowscope.cli import agent as agent_command
from flowscope.common.addresses import listen_target
from flowscope.observer.metadata import Cluster
from flowscope.observer.server.peer import TLS_DOMAIN
from flowscope.observer.server.serve import HEALTH_SERVICE

AGENT = ("flowscope-agent", "agent")
RELAY = ("flowscope-relay", "relay")


def image() -> str:
    return f"flowscope/flowscope:{project_version()}"


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


@pytest.mark.parametrize("obj", objects(), ids=lambda o: f"{o['kind']}/{o['metadata']['name']}")
def test_each_object_passes_the_schema_of_kubernetes(obj: dict) -> None:
    # strict: a field the schema does not know (a typo, a field of a later version) fails too
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_kustomization_names_every_manifest_and_the_image() -> None:
    k = kustomization()
    assert sorted(k["resources"]) == sorted(path.name for path in manifest_files())
    assert [i["name"] for i in k["images"]] == [image().split(":")[0]]
    assert k["images"][0]["newTag"] == project_version()


def test_every_container_runs_the_projects_image_and_the_dockerfile_builds_it() -> None:
    assert {c.spec["image"] for c in containers()} == {image()}
    assert f"-t {image()}" in DOCKERFILE.read_text()


@pytest.mark.parametrize("c", [c for c in containers() if c.runs_flowscope], ids=lambda c: c.name)
def test_every_flag_a_container_is_given_exists(c: Container) -> None:
    args = parse(c.argv())
    assert args.run is not None


@pytest.mark.parametrize("c", [c for c in containers() if exec_probes(c)], ids=lambda c: c.name)
def test_every_exec_probe_is_a_flowscope_command_that_parses(c: Container) -> None:
    for kind, command in exec_probes(c).items():
        assert command[0] == "flowscope", kind
        parse(command[1:])


def test_a_flag_that_does_not_exist_is_refused() -> None:
    """The check above is worth something: the real parser refuses what the agent would refuse at start."""
    with pytest.raises(ParseError, match="--no-such-flag"):
        parse(["agent", "--no-such-flag=1"])


def test_the_agents_arguments_make_a_config() -> None:
    c = container(*AGENT)
    config = agent_command.config_from(parse(c.argv()), None)
    assert config.node_name == "node-a"  # $(NODE_NAME), from the downward API


def test_the_agents_ports_are_the_ones_it_listens_on() -> None:
    c = container(*AGENT)
    args = parse(c.argv())
    assert c.pod["hostNetwork"] is True
    assert c.port("grpc") == port_of(args.listen_address) == 4244
    assert c.port("metrics") == port_of(args.metrics_address) == 9965
    assert {p["containerPort"] for p in c.spec["ports"]} == {
        port_of(args.listen_address),
        port_of(args.metrics_address),
    }
    annotations = c.annotations
    assert annotations["prometheus.io/port"] == str(c.port("metrics"))
    metrics = find("Service", "flowscope-agent-metrics")
    assert [(p["port"], p["targetPort"]) for p in metrics["spec"]["ports"]] == [(9965, "metrics")]
    # the exec probes ask the socket the agent serves on
    for command in exec_probes(c).values():
        probe = parse(command[1:])
        assert probe.server == f"unix://{args.socket}"
    assert c.mount_of(str(args.socket))[1]["hostPath"]["path"] == str(args.socket.parent)


def test_the_relays_port_service_and_probes_are_the_ones_it_listens_on() -> None:
    c = container(*RELAY)
    args = parse(c.argv())
    listen = port_of(args.listen_address)
    assert listen_target(args.listen_address) == f"[::]:{listen}"  # every address of the pod, not localhost
    assert c.port("grpc") == listen == 4245
    assert c.port("metrics") == port_of(args.metrics_address) == 9966  # Hubble Relay's metrics port
    assert c.annotations["prometheus.io/port"] == str(c.port("metrics"))
    service = find("Service", "flowscope-relay")
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(4245, "grpc"), (9966, "metrics")]
    assert service["spec"]["selector"].items() <= c.workload["spec"]["template"]["metadata"]["labels"].items()
    for kind in ("readinessProbe", "livenessProbe"):
        assert c.spec[kind]["grpc"] == {"port": listen, "service": HEALTH_SERVICE}
    # Kubernetes' gRPC probe speaks plaintext: it may only be used where the relay serves without TLS
    assert args.tls_server_cert_file is None


def test_the_relay_follows_the_peer_service_in_front_of_the_agents() -> None:
    agent, relay = container(*AGENT), container(*RELAY)
    agent_args, relay_args = parse(agent.argv()), parse(relay.argv())
    peer = find("Service", "flowscope-peer")
    host, port = relay_args.peer_service.rsplit(":", 1)
    assert host == f"{peer['metadata']['name']}.{peer['metadata']['namespace']}.svc"
    (service_port,) = peer["spec"]["ports"]
    assert int(port) == service_port["port"]
    assert agent.port(service_port["targetPort"]) == port_of(agent_args.listen_address)
    labels = agent.workload["spec"]["template"]["metadata"]["labels"]
    assert peer["spec"]["selector"].items() <= labels.items()


def test_relay_and_agents_speak_mutual_tls_with_names_the_agents_certificate_can_carry() -> None:
    agent, relay = container(*AGENT), container(*RELAY)
    agent_args, relay_args = parse(agent.argv()), parse(relay.argv())
    assert agent_args.tls_cert_file and agent_args.tls_key_file and agent_args.tls_client_ca_files
    assert relay_args.tls_client_cert_file and relay_args.tls_client_key_file and relay_args.tls_hubble_server_ca_files
    assert not relay_args.disable_client_tls
    # the agents announce <node>.<cluster>.hubble-grpc.cilium.io; one wildcard certificate covers those and the
    # peer service's name when it is <something>.<cluster>.hubble-grpc.cilium.io
    cluster = cluster_file()
    assert relay_args.peer_service_tls_server_name.split(".", 1)[1] == f"{cluster.name}.{TLS_DOMAIN}"


def test_files_the_flags_name_come_from_the_secrets_and_the_configmap() -> None:
    agent, relay = container(*AGENT), container(*RELAY)
    agent_args, relay_args = parse(agent.argv()), parse(relay.argv())
    agent_files = [agent_args.tls_cert_file, agent_args.tls_key_file, *agent_args.tls_client_ca_files]
    relay_files = [
        relay_args.tls_client_cert_file,
        relay_args.tls_client_key_file,
        *relay_args.tls_hubble_server_ca_files,
    ]
    for c, files, secret in (
        (agent, agent_files, "flowscope-agent-tls"),
        (relay, relay_files, "flowscope-relay-client-tls"),
    ):
        for path in files:
            mount, volume = c.mount_of(str(path))
            assert volume["secret"]["secretName"] == secret, path
            assert mount.get("readOnly") is True
            assert str(path).removeprefix(mount["mountPath"] + "/") in ("tls.crt", "tls.key", "ca.crt")
    mount, volume = agent.mount_of(str(agent_args.cluster_file))
    config_map = find("ConfigMap", volume["configMap"]["name"])
    assert agent_args.cluster_file.name in config_map["data"]


def cluster_file() -> Cluster:
    agent = container(*AGENT)
    path = parse(agent.argv()).cluster_file
    volume = agent.mount_of(str(path))[1]
    return Cluster.from_json(find("ConfigMap", volume["configMap"]["name"])["data"][path.name])


def test_the_cluster_file_in_the_configmap_is_one_the_agent_reads() -> None:
    cluster = cluster_file()
    assert cluster.nodes and cluster.service_problems() == []
    assert all(node.ipv4 or node.address for node in cluster.nodes)  # so the peer service can announce them


def test_no_container_is_privileged_unless_the_manifest_says_why() -> None:
    for c in containers():
        if c.spec.get("securityContext", {}).get("privileged"):
            reason = c.annotations.get("flowscope.io/privileged", "")
            assert f"{c.spec['name']}: " in reason, f"{c.name} is privileged without a reason"
            assert c.init, f"{c.name}: only a run-once init container may be privileged"
    agent = container(*AGENT).spec["securityContext"]
    assert agent["privileged"] is False and agent["capabilities"]["drop"] == ["ALL"]
    assert "SYS_ADMIN" not in agent["capabilities"]["add"]
    relay = container(*RELAY)
    assert relay.spec["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert relay.pod["securityContext"]["runAsNonRoot"] is True


def test_the_agent_runs_on_every_node() -> None:
    ds = find("DaemonSet", "flowscope-agent")
    assert {"operator": "Exists"} in ds["spec"]["template"]["spec"]["tolerations"]


def test_the_images_packages_are_ones_scripts_setup_installs() -> None:
    """The image installs nothing a developer's machine (set up by scripts/setup) does not have, so what runs
    in the tests is what runs in the image."""
    packages = dockerfile_packages()
    assert "python3-bpfcc" in packages and "linux-headers-$arch" in packages
    assert set(packages) <= set(setup_packages())


def test_the_images_entry_point_is_the_script_deploy_ships() -> None:
    text = DOCKERFILE.read_text()
    assert "COPY deploy/entrypoint.sh /usr/local/bin/flowscope-entrypoint" in text
    assert 'ENTRYPOINT ["/usr/local/bin/flowscope-entrypoint"]' in text
    subprocess.run(["sh", "-n", str(DEPLOY / "entrypoint.sh")], check=True)
    assert KUSTOMIZATION.exists()


def test_the_flow_logs_configmap_is_one_the_agent_takes_and_writes_to_the_nodes_disk() -> None:
    from flowscope.observer.exporter.flowlogs_config import parse_flowlogs
    from flowscope.observer.parser import compile_field_mask

    agent = container(*AGENT)
    path = parse(agent.argv()).flowlogs_config
    volume = agent.mount_of(str(path))[1]
    exporters = parse_flowlogs(find("ConfigMap", volume["configMap"]["name"])["data"][path.name])
    assert exporters
    for exporter in exporters:
        compile_field_mask(exporter.spec.field_mask)  # every path is a Flow field
        mount, volume = agent.mount_of(exporter.path)
        assert volume["hostPath"]["path"] == mount["mountPath"] and not mount.get("readOnly"), exporter.path
