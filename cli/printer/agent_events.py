"""Printing the agent's own events and the datapath's debug events (`observe agent-events`, `observe
debug-events`) in hubble's formats.

Compact is one line an event, as hubble prints them: `TIME[ [node]]: TYPE (DETAILS)` for agent events, with the
notification's key fields as DETAILS (`labels: [...], revision: 3, count: 1`), and `TIME[ [node]]: FROM TYPE
MARK: 0x.. CPU: 01 (MESSAGE)` for debug events. Dict and table show the same fields as rows or columns; json
and jsonpb the whole response.
"""

from __future__ import annotations

from flowscope.api.flow import flow_pb2
from flowscope.api.observer import observer_pb2
from flowscope.cli.printer.base import PrintOptions
from flowscope.cli.printer.dictfmt import SEPARATOR
from flowscope.cli.printer.jsonpb import to_json
from flowscope.cli.printer.sink import Sink
from flowscope.cli.printer.tabwriter import align
from flowscope.cli.timefmt import format_timestamp

EventResponse = observer_pb2.GetAgentEventsResponse | observer_pb2.GetDebugEventsResponse


def _type_name(event: flow_pb2.AgentEvent | flow_pb2.DebugEvent) -> str:
    """The event's type by its enum name (`POLICY_UPDATED`), or its number when this schema does not know it."""
    enum = event.DESCRIPTOR.fields_by_name["type"].enum_type
    known = enum.values_by_number.get(event.type) if enum is not None else None
    return known.name if known is not None else str(event.type)


def agent_event_details(event: flow_pb2.AgentEvent, time_format: str) -> str:
    """The notification's key fields, in hubble's words and order; `UNKNOWN` when it carries none."""
    kind = event.WhichOneof("notification")
    if kind == "agent_start":
        return f"start time: {format_timestamp(event.agent_start.time, time_format)}"
    if kind == "policy_update":
        policy = event.policy_update
        return f"labels: [{','.join(policy.labels)}], revision: {policy.revision}, count: {policy.rule_count}"
    if kind == "endpoint_update":
        endpoint = event.endpoint_update
        details = [f"id: {endpoint.id}"]
        details += [f"namespace: {endpoint.namespace}"] if endpoint.namespace else []
        details += [f"pod name: {endpoint.pod_name}"] if endpoint.pod_name else []
        return ", ".join(details)
    if kind == "endpoint_regenerate":
        regeneration = event.endpoint_regenerate
        details = [f"id: {regeneration.id}, labels: [{','.join(regeneration.labels)}]"]
        return ", ".join(details + ([f"error: {regeneration.error}"] if regeneration.error else []))
    if kind == "ipcache_update":
        entry = event.ipcache_update
        details = [f"cidr: {entry.cidr}, identity: {entry.identity}"]
        details += [f"old identity: {entry.old_identity.value}"] if entry.HasField("old_identity") else []
        details += [f"host ip: {entry.host_ip}"] if entry.host_ip else []
        details += [f"old host ip: {entry.old_host_ip}"] if entry.old_host_ip else []
        return ", ".join([*details, f"encrypt key: {entry.encrypt_key}"])
    if kind == "service_upsert":
        return _service_details(event.service_upsert)
    if kind == "service_delete":
        return f"id: {event.service_delete.id}"
    if kind == "unknown":
        return f"type: {event.unknown.type}, notification: {event.unknown.notification}"
    return "UNKNOWN"


def _service_details(service: flow_pb2.ServiceUpsertNotification) -> str:
    def address(addr: flow_pb2.ServiceUpsertNotificationAddr) -> str:
        return f"[{addr.ip}]:{addr.port}" if ":" in addr.ip else f"{addr.ip}:{addr.port}"

    details = [f"id: {service.id}"]
    details += [f"frontend: {address(service.frontend_address)}"] if service.HasField("frontend_address") else []
    backends = [address(backend) for backend in service.backend_addresses]
    details += [f"backends: [{','.join(backends)}]"] if backends else []
    details += [f"type: {service.type}"] if service.type else []
    details += [f"traffic policy: {service.traffic_policy}"] if service.traffic_policy else []
    details += [f"namespace: {service.namespace}"] if service.namespace else []
    details += [f"name: {service.name}"] if service.name else []
    return ", ".join(details)


def endpoint_short(endpoint: flow_pb2.Endpoint | None) -> str:
    """`ns/pod (ID: 12)`, `reserved:host (ID: 1)` or `ID: 12`, as hubble names a debug event's source."""
    if endpoint is None:
        return "N/A"
    text = f"ID: {endpoint.ID}"
    if endpoint.namespace and endpoint.pod_name:
        return f"{endpoint.namespace}/{endpoint.pod_name} ({text})"
    if len(endpoint.labels) == 1 and endpoint.labels[0].startswith("reserved:"):
        return f"{endpoint.labels[0]} ({text})"
    return text


def _mark(event: flow_pb2.DebugEvent) -> str:
    return f"0x{event.hash.value:x}" if event.HasField("hash") else "N/A"


def _cpu(event: flow_pb2.DebugEvent) -> str:
    return f"{event.cpu.value:02d}" if event.HasField("cpu") else "N/A"


class EventPrinter:
    """Prints GetAgentEventsResponses or GetDebugEventsResponses in one -o format."""

    def __init__(self, output: str, out: Sink, options: PrintOptions | None = None) -> None:
        self.output = output
        self.out = out
        self.options = options or PrintOptions()
        self.printed = 0
        self._rows: list[list[str]] = []

    def write(self, response: EventResponse) -> None:
        if self.output in ("json", "jsonpb"):
            self.out.text(to_json(response))
        elif self.output == "compact":
            self.out.line([(self._compact(response), "")])
        else:
            fields = self._fields(response)
            if self.output == "dict":
                self._record(fields)
            else:
                if not self._rows:
                    self._rows.append([name for name, _ in fields])
                self._rows.append([value for _, value in fields])
        self.printed += 1

    def _when(self, response: EventResponse) -> str:
        when = format_timestamp(response.time, self.options.time_format)
        return f"{when} [{response.node_name}]" if self.options.node_name else when

    def _compact(self, response: EventResponse) -> str:
        if isinstance(response, observer_pb2.GetAgentEventsResponse):
            event = response.agent_event
            kind = _type_name(event)
            return f"{self._when(response)}: {kind} ({agent_event_details(event, self.options.time_format)})"
        debug = response.debug_event
        source = endpoint_short(debug.source if debug.HasField("source") else None)
        kind = _type_name(debug)
        return f"{self._when(response)}: {source} {kind} MARK: {_mark(debug)} CPU: {_cpu(debug)} ({debug.message})"

    def _fields(self, response: EventResponse) -> list[tuple[str, str]]:
        fields = [("TIMESTAMP", format_timestamp(response.time, self.options.time_format))]
        fields += [("NODE", response.node_name)] if self.options.node_name else []
        if isinstance(response, observer_pb2.GetAgentEventsResponse):
            event = response.agent_event
            kind = _type_name(event)
            return [*fields, ("TYPE", kind), ("DETAILS", agent_event_details(event, self.options.time_format))]
        debug = response.debug_event
        source = endpoint_short(debug.source if debug.HasField("source") else None)
        kind = _type_name(debug)
        if self.output == "dict":
            fields += [("TYPE", kind), ("FROM", source), ("MARK", _mark(debug)), ("CPU", _cpu(debug))]
        else:
            fields += [("FROM", source), ("TYPE", kind), ("CPU/MARK", f"{_cpu(debug)} {_mark(debug)}")]
        return [*fields, ("MESSAGE", debug.message)]

    def _record(self, fields: list[tuple[str, str]]) -> None:
        if self.printed:
            self.out.line([(SEPARATOR, "")])
        for key, value in fields:
            self.out.line([(f"{key:>11}: {value}", "")])

    def close(self) -> None:
        if self._rows:
            self.out.text("\n".join(align(self._rows)))
        self.out.flush()
