"""Unique keys held by records, without transactions and without per-element unique
indexes: the claim protocol (contacts' emails and phones, sales' open leads).

A claim is a document ``{_id: <key>, <holder_field>: <record id>, claimed_at}`` (the
key is the ``_id``, so two claimants of one key cannot both insert it). A record writes
its claims first, then itself listing them (``dedup_keys``), then releases the claims
it dropped. A claim is *held* when its record says so (``holds(record_id, key)``: the
record exists and lists the key, and whatever else the owner counts, e.g. "the lead is
still open"). A claim that is not held is the leftover of a crash between two writes
(or of a failed one) and is *stale*: the next claimant takes it over with a
conditional update on the old holder (two contenders cannot both win). To not steal a
key from a request that is between its two writes right now, a claim younger than
``grace`` is respected even when it is not held yet. Releases are conditional on the
holder, so a late release never removes somebody else's claim.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Callable, Iterable

from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from .errors import VersionConflict

log = logging.getLogger(__name__)

ATTEMPTS = 5


class KeyHeld(Exception):
    """``key`` belongs to another record, ``holder`` (its id)."""

    def __init__(self, key: str, holder: str):
        super().__init__(f"{key} is held by {holder}")
        self.key = key
        self.holder = holder


class Claims:
    def __init__(self, collection: Collection, holds: Callable[[str, str], bool], *,
                 holder_field: str, grace: timedelta):
        self.collection = collection
        self.holds = holds
        self.holder_field = holder_field
        self.grace = grace

    def claim(self, keys: Iterable[str], holder: str, now: datetime) -> list[str]:
        """Claim every key for ``holder``; returns the keys newly claimed by this call. On
        a key another record holds, releases what this call claimed and raises
        :class:`KeyHeld`."""
        claimed: list[str] = []
        try:
            for key in keys:
                if self._claim_one(key, holder, now):
                    claimed.append(key)
        except (KeyHeld, VersionConflict):
            self.release(claimed, holder)
            raise
        return claimed

    def _claim_one(self, key: str, holder: str, now: datetime) -> bool:
        field = self.holder_field
        for _ in range(ATTEMPTS):
            try:
                self.collection.insert_one({"_id": key, field: holder, "claimed_at": now})
                return True
            except DuplicateKeyError:
                pass
            claim = self.collection.find_one({"_id": key})
            if claim is None:
                continue  # released meanwhile: try again
            current = claim.get(field)
            if current == holder:
                return False  # ours already (a retry, or a key the record keeps)
            young = claim.get("claimed_at") and now - claim["claimed_at"] < self.grace
            if (isinstance(current, str) and self.holds(current, key)) or young:
                raise KeyHeld(key, str(current))
            # stale: a crash left it behind; take it over unless someone else just did
            if self.collection.update_one({"_id": key, field: current},
                                          {"$set": {field: holder, "claimed_at": now}}).matched_count:
                log.warning("took over stale claim %s from %s for %s", key, current, holder)
                return True
        raise VersionConflict(f"{key} is being claimed concurrently; retry", {"key": key})

    def holder(self, key: str) -> str | None:
        claim = self.collection.find_one({"_id": key}, {self.holder_field: 1})
        return None if claim is None else claim.get(self.holder_field)

    def release(self, keys: Iterable[str], holder: str) -> None:
        for key in keys:
            self.collection.delete_one({"_id": key, self.holder_field: holder})

    def release_all(self, holder: str) -> int:
        """Release every claim ``holder`` has (needs an index on the holder field)."""
        return self.collection.delete_many({self.holder_field: holder}).deleted_count
