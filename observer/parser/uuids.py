"""Flow uuids that say which stored event they name.

A flow's uuid must stay the same however often it is decoded (clients use it to deduplicate and to ask for one
flow again), and a uuid filter must find its flow among 65,535 stored records without decoding them. So the
uuid is not random: it is an RFC 9562 version-8 uuid whose 60 custom high bits come from the agent instance
and whose low 62 bits are the record's sequence number. Reading a uuid back gives the sequence number to look
for, and uuids of another agent (or of an earlier run of this one) are recognised as not ours.
"""

from __future__ import annotations

import hashlib
import uuid

_SEQ_BITS = 62
_SEQ_MASK = (1 << _SEQ_BITS) - 1
_VARIANT = 0b10 << _SEQ_BITS
_LOW_MASK = (1 << 64) - 1


class FlowIds:
    """Makes and reads the uuids of one agent instance's flows."""

    def __init__(self, instance: bytes) -> None:
        digest = int.from_bytes(hashlib.blake2b(instance, digest_size=8).digest()) >> 4  # 60 bits
        self._high = (digest >> 12) << 16 | 0x8 << 12 | (digest & 0xFFF)  # custom_a, version 8, custom_b
        high = f"{self._high:016x}"
        self._prefix = f"{high[:8]}-{high[8:12]}-{high[12:16]}-"

    def uuid(self, seq: int) -> str:
        low = f"{_VARIANT | (seq & _SEQ_MASK):016x}"
        return f"{self._prefix}{low[:4]}-{low[4:]}"

    def seq(self, text: str) -> int | None:
        """The sequence number a uuid of ours names; None for another instance's.

        Raises ValueError when the text is not a uuid at all.
        """
        value = uuid.UUID(text).int
        low = value & _LOW_MASK
        if value >> 64 != self._high or low >> _SEQ_BITS != _VARIANT >> _SEQ_BITS:
            return None
        return low & _SEQ_MASK
