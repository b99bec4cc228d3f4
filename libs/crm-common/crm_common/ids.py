"""Identifiers: prefixed, time-sortable (``con_01J...``), or derived deterministically.

A new id is a ULID (48-bit millisecond time + 80 random bits, Crockford base32), so
ids sort by creation time, which gives stable cursor pagination for free.

Inside :func:`replayable` (what an RPC with an idempotency key runs in), new ids are
not random: they are derived from the key, in the order the call asks for them, with
the time of the first attempt. A call re-run after a crash therefore asks for the
very same ids, and the unique ``_id`` of what it creates stops a second copy.
"""
from __future__ import annotations

import hashlib
import os
import threading
import time
from contextlib import contextmanager
from typing import Iterator

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_replay = threading.local()   # green-local under eventlet's monkey patching


def _b32(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def new_id(prefix: str, *, at_ms: int | None = None) -> str:
    seed = getattr(_replay, "seed", None)
    if seed is not None and at_ms is None:
        _replay.count += 1
        digest = hashlib.sha256(f"{seed}\x1f{prefix}\x1f{_replay.count}".encode()).digest()
        return f"{prefix}_{_b32(_replay.at_ms, 10)}{_b32(int.from_bytes(digest[:10], 'big'), 16)}"
    ms = int(time.time() * 1000) if at_ms is None else at_ms
    rand = int.from_bytes(os.urandom(10), "big")
    return f"{prefix}_{_b32(ms, 10)}{_b32(rand, 16)}"


@contextmanager
def replayable(seed: str, at_ms: int) -> Iterator[None]:
    """New ids within are derived from ``seed`` and stamped ``at_ms`` (see module doc)."""
    previous = getattr(_replay, "seed", None), getattr(_replay, "at_ms", 0), getattr(_replay, "count", 0)
    _replay.seed, _replay.at_ms, _replay.count = seed, at_ms, 0
    try:
        yield
    finally:
        _replay.seed, _replay.at_ms, _replay.count = previous


def derived_id(prefix: str, *parts: str) -> str:
    """The same parts always give the same id: makes retries and redeliveries idempotent."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:26]
    return f"{prefix}_{digest}"
