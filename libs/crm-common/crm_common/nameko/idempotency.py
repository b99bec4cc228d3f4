"""Idempotency keys: a command retried with the same key returns the first result.

A caller that timed out or saw UNAVAILABLE cannot know whether its command was applied
(the broker may have lost only the reply). With ``idempotency_key`` set (every
:class:`crm_common.contracts.Command` has it) the service records, per RPC method and
key, a *claim* before running the command and the *result* after it:

1. ``find_one`` the record: a finished one returns its stored result (the same request
   only: a key reused for different arguments is INVALID_ARGUMENT).
2. Else insert a pending claim (unique ``_id`` = ``<method>:<key>``): exactly one call
   wins; a concurrent duplicate waits briefly for the winner's result, then answers
   ABORTED ("still in progress, retry").
3. Run the command inside :func:`crm_common.ids.replayable`, seeded by the key and the
   first claim's time (``ids_at_ms``), so the ids it creates are the same on every attempt; store the
   result. A typed error (the command was refused) drops the claim, so a corrected
   retry may run.

A crash between the command and step 3's result leaves a pending claim; after
``STALE_AFTER`` a retry takes it over and runs the command again with the same ids,
and the unique ``_id`` of what it creates stops a second copy (the store answers with
the existing one). Records are forgotten after ``RETENTION`` (pruned hourly with the
handled-event markers).
"""
from __future__ import annotations

import hashlib
import json
import time
import uuid
from datetime import timedelta
from typing import Any, Callable

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from .. import clock, ids
from ..contracts import Command
from ..errors import InvalidArgument, VersionConflict

COLLECTION = "idempotency_keys"
STALE_AFTER = timedelta(seconds=30)
RETENTION = timedelta(days=1)
WAIT_SECONDS = 2.0


def fingerprint(request: Command) -> str:
    body = request.model_dump(mode="json", exclude={"idempotency_key"})
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def once(db: Database, method: str, request: Command, run: Callable[[], Any]) -> Any:
    key = request.idempotency_key
    if not key:
        return run()
    records = db[COLLECTION]
    record_id, fp, owner = f"{method}:{key}", fingerprint(request), uuid.uuid4().hex
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        record = records.find_one({"_id": record_id})
        if record is None:
            now = clock.now()
            claim = {"_id": record_id, "fingerprint": fp, "owner": owner, "state": "pending",
                     "claimed_at": now, "ids_at_ms": int(now.timestamp() * 1000)}
            try:
                records.insert_one(claim)
                break
            except DuplicateKeyError:
                continue  # another call claimed it a moment ago: read it
        if record["fingerprint"] != fp:
            raise InvalidArgument.field("idempotency_key", f"was already used for a different {method} request; "
                                                           "use a new key for a new request")
        if record["state"] == "done":
            return record["result"]
        if clock.now() - record["claimed_at"] > STALE_AFTER:
            taken = records.update_one({"_id": record_id, "owner": record["owner"], "state": "pending"},
                                       {"$set": {"owner": owner}})
            if taken.modified_count == 1:
                claim = {**record, "owner": owner}
                break
            continue
        if time.monotonic() > deadline:
            raise VersionConflict(f"a {method} request with this idempotency key is still in progress; retry",
                                  {"idempotency_key": key})
        time.sleep(0.05)

    try:
        with ids.replayable(record_id, claim["ids_at_ms"]):
            result = run()
    except BaseException:
        records.delete_one({"_id": record_id, "owner": owner})
        raise
    records.update_one({"_id": record_id, "owner": owner},
                       {"$set": {"state": "done", "result": result, "done_at": clock.now()}})
    return result


def prune(db: Database, older_than: timedelta = RETENTION) -> int:
    return db[COLLECTION].delete_many({"claimed_at": {"$lt": clock.now() - older_than}}).deleted_count


def ensure_indexes(db: Database) -> None:
    db[COLLECTION].create_index("claimed_at")
