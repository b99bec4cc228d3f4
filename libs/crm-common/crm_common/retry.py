"""Retry on conflict: optimistic concurrency's other half (tenacity).

A read-modify-write guarded by a version (or any condition) loses the race now and then;
the function that lost re-reads and tries again. Decorate the whole read-compute-write
with :func:`on_conflict`; raise :class:`~crm_common.errors.VersionConflict` when the
guarded write matched nothing. After the last attempt the conflict reaches the caller
(ABORTED: retry later).
"""
from __future__ import annotations

from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random

from .errors import VersionConflict


def on_conflict(attempts: int = 5, max_wait: float = 0.01):
    return retry(retry=retry_if_exception_type(VersionConflict), stop=stop_after_attempt(attempts),
                 wait=wait_random(0, max_wait), reraise=True)
