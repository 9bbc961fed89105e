"""Field masks applied by pruning the decoded flow, not by copying it.

The hubble CLI sends a field mask with every request (about 20 paths). protobuf's own
`FieldMask.MergeMessage` copies those paths into a new message in pure Python and costs ~30 us a flow, more
than decoding it. Clearing, by name, the fields a mask leaves out of the freshly decoded flow gives the same
message for a few microseconds. Compile the mask once per request, then pass it to
`FlowDecoder.decode(..., fields=...)`.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import lru_cache
from typing import cast

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from flowscope.api.flow import flow_pb2

_Paths = dict[str, "_Paths | None"]  # field name -> the paths below it; None: the whole field


@dataclass(frozen=True)
class FieldTree:
    """What to keep of a message: the fields to clear here, and how to prune the fields kept in part.

    A pruned sub-message stays present exactly when MergeMessage would have made it present: when a scalar
    or repeated field is kept in it (MergeMessage assigns those even when empty), or something kept below it
    is present.
    """

    clear: tuple[str, ...]
    below: tuple[tuple[str, FieldTree], ...]
    anchored: bool = False  # a scalar or repeated field is kept here
    message_leaves: tuple[str, ...] = ()  # singular message fields kept whole


def compile_field_mask(paths: Iterable[str], descriptor: Descriptor | None = None) -> FieldTree:
    """The pruning plan of a field mask's paths ("source.identity", "l4"); ValueError for an unknown field.

    A path to a field keeps all of it, whatever longer paths below it say. The message is flow.Flow unless
    another descriptor is given. The same paths give the same plan object: the decoder keeps what it made for
    a mask by the plan (FlowDecoder.decode), so every request that sends hubble's default mask shares it.
    """
    return _compiled(tuple(paths), descriptor or cast(Descriptor, flow_pb2.Flow.DESCRIPTOR))


@lru_cache(maxsize=64)
def _compiled(paths: tuple[str, ...], descriptor: Descriptor) -> FieldTree:
    tree: _Paths = {}
    for path in paths:
        node: _Paths | None = tree
        parts = path.split(".")
        for depth, part in enumerate(parts):
            if node is None:
                break
            if depth == len(parts) - 1:
                node[part] = None
            else:
                node = node.setdefault(part, {})
    return _plan(tree, descriptor)


def _plan(tree: _Paths, descriptor: Descriptor) -> FieldTree:
    for name in tree:
        if name not in descriptor.fields_by_name:
            raise ValueError(f"{descriptor.full_name} has no field {name!r}")
    below = []
    for name, subtree in tree.items():
        if subtree is None:
            continue
        field = descriptor.fields_by_name[name]
        if field.message_type is None or field.is_repeated:
            raise ValueError(f"{descriptor.full_name}.{name} has no fields to select from")
        below.append((name, _plan(subtree, field.message_type)))
    leaves = [descriptor.fields_by_name[name] for name, subtree in tree.items() if subtree is None]
    return FieldTree(
        clear=tuple(field.name for field in descriptor.fields if field.name not in tree),
        below=tuple(below),
        anchored=any(field.is_repeated or field.message_type is None for field in leaves),
        message_leaves=tuple(f.name for f in leaves if f.message_type is not None and not f.is_repeated),
    )


def prune(message: Message, tree: FieldTree) -> bool:
    """Clear every field of `message` the plan does not keep; says whether anything that counts is left."""
    for name in tree.clear:
        message.ClearField(name)
    kept = tree.anchored or any(message.HasField(name) for name in tree.message_leaves)
    for name, below in tree.below:
        if message.HasField(name):
            if prune(getattr(message, name), below):
                kept = True
            else:
                message.ClearField(name)
    return kept


def restrict(tree: FieldTree, names: AbstractSet[str]) -> FieldTree:
    """The plan of `tree` for the top-level fields in `names` only: pruning with it leaves every other field as
    it is. A message pruned once already and then written again in those fields only needs no more."""
    return FieldTree(
        clear=tuple(name for name in tree.clear if name in names),
        below=tuple((name, below) for name, below in tree.below if name in names),
    )


def keeps_whole(tree: FieldTree | None, name: str) -> bool:
    """Whether pruning with `tree` (None: no mask) leaves the top-level field `name` as it is."""
    return tree is None or (name not in tree.clear and all(below != name for below, _ in tree.below))
