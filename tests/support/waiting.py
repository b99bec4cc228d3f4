"""Polling instead of fixed sleeps: wait until something became true."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.05,
             retry_on: tuple[type[BaseException], ...] = ()) -> T:
    """Return the first truthy value of ``predicate()``; exceptions in ``retry_on`` count
    as 'not yet'. Fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except retry_on as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last error: {last!r})")
        time.sleep(interval)
