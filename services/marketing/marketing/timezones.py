"""IANA time zones by name, cached; an unknown name (old data, a zone removed from tzdata)
is UTC rather than an error in the middle of an evaluation or a send."""
from __future__ import annotations

from datetime import timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo


@lru_cache(maxsize=512)
def zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except Exception:  # noqa: BLE001 - ZoneInfoNotFoundError, ValueError for odd names
        return timezone.utc
