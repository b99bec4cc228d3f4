"""One writer per key inside a service process, so that racing requests for the same
record queue instead of all reading the same version, writing, losing and retrying.

Correctness never rests on this lock: every write stays guarded (a version, a balance)
in the database, and other replicas are not held by it. It only stops a burst of
requests for one record (a thousand redemptions of one member's points) from turning
into a storm of guaranteed-to-fail guarded writes: each would cost the database a round
trip and a retry, and under a few dozen in flight they cost more than the work.

While a key has holders or waiters, ``hold`` yields one :class:`Turn` object shared by
them: a writer may leave there what it wrote (``turn.last``), so the next one can start
from it instead of reading it back; its guarded write still proves it was current. And
a request may queue itself (``hold(key, request)``) before it waits: the holder may then
do the work of everyone queued in one write (group commit), and a waiter that finds its
request done when its turn comes has nothing left to do under the lock.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import contextmanager
from typing import Iterator

from nameko.extensions import DependencyProvider


class KeyLocks(DependencyProvider):
    """Injects itself: ``with self.locks.hold(key):`` is held by one worker of this process
    at a time; ``self.locks.busy(key)`` tells whether somebody holds or waits for it."""

    CARRIED_KEYS = 10_000

    def setup(self) -> None:
        self._turns: dict[str, Turn] = {}
        self._guard = threading.Lock()          # green under eventlet's monkey patching
        self._carried: OrderedDict[str, list] = OrderedDict()

    def carry(self, key: str, items: list) -> None:
        """Leave work for this process's next writer of ``key`` to finish in its own
        write (bounded: the oldest keys are dropped; whatever is dropped must be safe to
        leave to a timer)."""
        if items:
            self._carried.setdefault(key, []).extend(items)
            self._carried.move_to_end(key)
            while len(self._carried) > self.CARRIED_KEYS:
                self._carried.popitem(last=False)

    def take_carried(self, key: str) -> list:
        return self._carried.pop(key, [])

    @contextmanager
    def hold(self, key: str, request: object = None) -> Iterator["Turn"]:
        with self._guard:
            turn = self._turns.get(key)
            if turn is None:
                turn = self._turns[key] = Turn()
            turn.users += 1
            if request is not None:
                turn.queue.append(request)
        try:
            with turn.lock:
                yield turn
        finally:
            with self._guard:
                turn.users -= 1
                if not turn.users:
                    del self._turns[key]

    def busy(self, key: str) -> bool:
        """Whether a worker of this process holds (or waits for) ``key``."""
        return key in self._turns

    def get_dependency(self, worker_ctx):
        return self


class Turn:
    """What the holders of one key share while any of them holds or waits for it."""

    __slots__ = ("lock", "users", "last", "queue")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0
        self.last = None   # what the previous holder read or wrote, for the next one to start from
        self.queue = []    # requests waiting for the key, in arrival order
