"""Context options: which labels say whose flows a metric counted (Hubble's sourceContext, destinationContext
and labelsContext).

`sourceContext=namespace|pod` adds a `source` label holding the source's namespace, or its pod where the
namespace is empty: `|` lists fallbacks, the first non-empty value wins. The options name the flow's endpoint
the way Hubble does:

- identity: the endpoint's labels, joined with "," (Hubble's "identity" is the label set, not the number)
- namespace; pod ("namespace/pod"); pod-short (the pod name less its replica suffixes, "web-7d9f-x2" -> "web");
  pod-name (the name alone)
- dns: the names the address was resolved from (the flow's source_names/destination_names, joined with ",")
- ip: the flow's address; reserved-identity: the endpoint's reserved label ("reserved:world") or nothing
- workload-name: the endpoint's workload (flowscope's cluster file has none: empty, so use a fallback)
- app: the value of the app.kubernetes.io/name, k8s-app or app label

`labelsContext=source_ip,source_namespace,...` adds one label per name instead: source_/destination_ ip,
namespace, pod, workload, workload_kind, app, and traffic_direction.

Values are computed per registry entry (a few hundred endpoints at most) and looked up for a batch with one
numpy indexing; addresses and names per distinct value in the batch.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from flowscope.api.flow import flow_pb2
from flowscope.observer.endpoints import EndpointInfo
from flowscope.observer.events import F_IPV6
from flowscope.observer.metrics.batch import MetricsBatch
from flowscope.observer.metrics.labels import Column
from flowscope.observer.metrics.options import MetricsOptionError
from flowscope.observer.parser.columns import Side, addresses

_SHORT_POD = re.compile(r"^(.+?)(-[a-z0-9]+){1,2}$")
_APP_KEYS = ("app.kubernetes.io/name", "k8s-app", "app")
CONTEXT_KEYS = ("sourceContext", "destinationContext", "labelsContext")
UNSUPPORTED_KEYS = (
    "sourceEgressContext",
    "sourceIngressContext",
    "destinationEgressContext",
    "destinationIngressContext",
)


def _label_value(labels: tuple[str, ...], keys: tuple[str, ...]) -> str:
    """The value of the first of `keys` among "source:key=value" labels."""
    found: dict[str, str] = {}
    for label in labels:
        key, _, value = label.partition("=")
        found.setdefault(key.partition(":")[2] or key, value)
    return next((found[key] for key in keys if key in found), "")


def _pod(info: EndpointInfo) -> str:
    return f"{info.namespace}/{info.pod}" if info.namespace else info.pod


def _pod_short(info: EndpointInfo) -> str:
    short = _SHORT_POD.sub(r"\1", info.pod)
    return f"{info.namespace}/{short}" if info.namespace else short


def _reserved(info: EndpointInfo) -> str:
    return next((label for label in info.labels if label.startswith("reserved:")), "")


# Context options read from the endpoint alone: one value per registry entry.
_BY_ENDPOINT: dict[str, Callable[[EndpointInfo], str]] = {
    "identity": lambda info: ",".join(info.labels),
    "namespace": lambda info: info.namespace,
    "pod": _pod,
    "pod-short": _pod_short,
    "pod-name": lambda info: info.pod,
    "reserved-identity": _reserved,
    "workload-name": lambda info: "",
    "app": lambda info: _label_value(info.labels, _APP_KEYS),
}
CONTEXTS = (*_BY_ENDPOINT, "dns", "ip")

# labelsContext names: (side, what), or traffic_direction.
_SIDES: tuple[tuple[str, Side], ...] = (("source", "src"), ("destination", "dst"))
_LABELS: dict[str, tuple[Side, str]] = {
    f"{prefix}_{what}": (side, context)
    for prefix, side in _SIDES
    for what, context in (
        ("ip", "ip"),
        ("namespace", "namespace"),
        ("pod", "pod-name"),
        ("workload", "workload-name"),
        ("workload_kind", "workload-name"),
        ("app", "app"),
    )
}
TRAFFIC_DIRECTION = "traffic_direction"
DIRECTIONS = tuple(
    flow_pb2.TrafficDirection.Name(number).lower() for number in sorted(flow_pb2.TrafficDirection.values())
)


@dataclass(frozen=True)
class Label:
    """One context label: its name, and how its value is found for a batch."""

    name: str
    side: Side | None  # None: traffic_direction
    options: tuple[str, ...]  # the `|` fallbacks, in order


class ContextOptions:
    """The context labels a handler's options ask for; `columns(batch)` gives their values."""

    def __init__(self, options: Mapping[str, str], handler: str) -> None:
        labels: list[Label] = []
        for key, side, name in (("sourceContext", "src", "source"), ("destinationContext", "dst", "destination")):
            if key in options:
                labels.append(Label(name, side, _fallbacks(options[key], key, handler)))  # type: ignore[arg-type]
        for name in filter(None, (n.strip() for n in options.get("labelsContext", "").split(","))):
            if name == TRAFFIC_DIRECTION:
                labels.append(Label(name, None, ()))
            elif name in _LABELS:
                side, context = _LABELS[name]
                labels.append(Label(name, side, (context,)))
            else:
                known = ", ".join([*_LABELS, TRAFFIC_DIRECTION])
                raise MetricsOptionError(f"--metrics: {handler}: unknown labelsContext label {name!r} (known: {known})")
        if "labelsContext" in options and not any(label.side is None or label.name in _LABELS for label in labels):
            raise MetricsOptionError(f"--metrics: {handler}: labelsContext names no label")
        names = [label.name for label in labels]
        if len(set(names)) != len(names):
            raise MetricsOptionError(f"--metrics: {handler}: a context label is asked for twice ({', '.join(names)})")
        for key in UNSUPPORTED_KEYS:
            if key in options:
                raise MetricsOptionError(
                    f"--metrics: {handler}: {key} is not supported; use sourceContext and"
                    " destinationContext (with labelsContext=traffic_direction)"
                )
        self.labels = tuple(labels)
        self._tables: dict[tuple[int, str], list[str]] = {}

    @property
    def names(self) -> list[str]:
        return [label.name for label in self.labels]

    def columns(self, batch: MetricsBatch) -> list[Column]:
        return [self._column(batch, label) for label in self.labels]

    def _column(self, batch: MetricsBatch, label: Label) -> Column:
        """A label's values, made once per batch for every handler asking the same (handlers often share
        their context options); a fallback is looked at only when some record has no value before it."""
        if label.side is None:
            return Column.table(batch.directions, DIRECTIONS)
        side = label.side

        def make() -> Column:
            column = self._option(batch, side, label.options[0])
            for fallback in label.options[1:]:
                if not column.is_empty().any():
                    break
                column = column.otherwise(self._option(batch, side, fallback))
            return column

        return batch.memo(("context", side, label.options), make)

    def _option(self, batch: MetricsBatch, side: Side, option: str) -> Column:
        if option == "ip":
            return _ips(batch, side)
        if option == "dns":
            return _dns(batch, side)
        return Column.table(batch.entries(side), self._table(batch, option))

    def _table(self, batch: MetricsBatch, option: str) -> list[str]:
        """The option's value for every entry of the batch's registry snapshot, made once per snapshot."""
        index = batch.index
        key = (id(index), option)
        table = self._tables.get(key)
        if table is None:
            if len(self._tables) > 64:
                self._tables.clear()
            value = _BY_ENDPOINT[option]
            table = self._tables[key] = [value(info) for info in index.entries]
        return table


def _fallbacks(text: str, key: str, handler: str) -> tuple[str, ...]:
    options = tuple(option.strip() for option in text.split("|"))
    for option in options:
        if option not in CONTEXTS:
            raise MetricsOptionError(
                f"--metrics: {handler}: {key}={text}: unknown context {option!r} (known: {', '.join(CONTEXTS)})"
            )
    return options


def _ips(batch: MetricsBatch, side: Side) -> Column:
    """The flow's address on one side, as text ("" where the flow has no IP): each distinct address of the
    batch written once."""
    raw = addresses(batch.records, side)["raw"]  # numpy drops an S16's trailing zero bytes: put them back
    v6 = (batch.records["flags"] & F_IPV6) != 0
    codes = np.zeros(len(batch), dtype=np.int64)
    values = [""]
    for rows, family, width in ((batch.ip & ~v6, socket.AF_INET, 4), (batch.ip & v6, socket.AF_INET6, 16)):
        where = np.flatnonzero(rows)
        if not len(where):
            continue
        distinct, inverse = np.unique(raw[where], return_inverse=True)
        codes[where] = len(values) + inverse.reshape(-1)
        values += [socket.inet_ntop(family, packed.ljust(16, b"\0")[:width]) for packed in distinct.tolist()]
    return Column(codes, values)


def _dns(batch: MetricsBatch, side: Side) -> Column:
    """The names the flow's address was resolved from, joined with ","."""
    names = batch.sources.names
    ids = batch.records["src_names" if side == "src" else "dst_names"]
    if names is None:
        return Column.constant("", len(batch))
    return Column.of(ids, lambda number: ",".join(names.names(number)) if number else "")
