"""Identifiers: prefixed, time-sortable (``con_01J...``), or derived deterministically.

A new id is a ULID (48-bit millisecond time + 80 random bits, Crockford base32), so
ids sort by creation time, which gives stable cursor pagination for free.
"""
from __future__ import annotations

import hashlib
import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _b32(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def new_id(prefix: str, *, at_ms: int | None = None) -> str:
    ms = int(time.time() * 1000) if at_ms is None else at_ms
    rand = int.from_bytes(os.urandom(10), "big")
    return f"{prefix}_{_b32(ms, 10)}{_b32(rand, 16)}"


def derived_id(prefix: str, *parts: str) -> str:
    """The same parts always give the same id: makes retries and redeliveries idempotent."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:26]
    return f"{prefix}_{digest}"
