"""Conditional writes that are atomic on MongoDB and fast on FerretDB v1.

``update_one({"_id": x, "version": 3}, ...)`` is MongoDB's compare-and-set. FerretDB
v1 (SQLite) gives no such guarantee (its updates are unisolated read-modify-write)
and, worse, runs an update or delete whose filter is more than ``_id`` as a scan of
the whole collection: measured here 26 ms per update at 280 documents, growing
linearly, against 0.4 ms by ``_id``.

So on FerretDB these helpers read the document by ``_id`` alone, check the condition
in Python, then write by ``_id``: the same (non-)atomicity FerretDB offers anyway, at
``_id`` speed. FerretDB pushes a filter down to SQLite only when it is exactly
``{"_id": <string or ObjectId>}``; a find of ``{"_id": x, "version": 3}`` decodes and
filters every document of the collection in Go (measured: 38 ms at 860 documents
against 0.4 ms by ``_id``). On MongoDB they issue the single conditional write. Code
that must win races on both (loyalty's member versions, claim documents) arbitrates
with unique ``_id`` inserts.
"""
from __future__ import annotations

import operator
from typing import Any

from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

_ferretdb: dict[int, bool] = {}


def is_ferretdb(client: MongoClient) -> bool:
    key = id(client)
    if key not in _ferretdb:
        _ferretdb[key] = "ferretdbVersion" in client.admin.command("buildInfo")
    return _ferretdb[key]


_COMPARE = {"$lt": operator.lt, "$lte": operator.le, "$gt": operator.gt, "$gte": operator.ge}


def matches(doc: dict[str, Any], condition: dict[str, Any]) -> bool:
    """Whether ``doc`` satisfies ``condition``, for the query subset conditional writes use:
    equality, ``$exists`` and the comparisons, on dotted paths. Anything else raises."""
    for path, want in condition.items():
        present, value = True, doc
        for part in path.split("."):
            if not isinstance(value, dict) or part not in value:
                present, value = False, None
                break
            value = value[part]
        if isinstance(want, dict) and want and all(k.startswith("$") for k in want):
            for op, arg in want.items():
                if op == "$exists":
                    ok = present == bool(arg)
                elif op in _COMPARE:
                    try:
                        ok = present and value is not None and _COMPARE[op](value, arg)
                    except TypeError:  # MongoDB compares within a type only
                        ok = False
                else:
                    raise ValueError(f"conditional write: unsupported operator {op}")
                if not ok:
                    return False
        elif want is None:
            if value is not None:  # MongoDB: {field: null} matches a missing field too
                return False
        elif not present or value != want:
            return False
    return True


def _fetch_by_id(collection: Collection, doc_id: Any, condition: dict[str, Any]) -> dict[str, Any] | None:
    """The fields ``condition`` looks at, read with a filter FerretDB pushes down."""
    fields = {path.split(".", 1)[0]: 1 for path in condition}
    return collection.find_one({"_id": doc_id}, fields or None)


def update_if(collection: Collection, doc_id: Any, condition: dict[str, Any], update: dict[str, Any],
              *, upsert: bool = False) -> bool:
    """``update_one({"_id": doc_id, **condition}, update)``; True if a document matched
    (or was inserted by ``upsert`` because none with ``doc_id`` existed)."""
    if not is_ferretdb(collection.database.client):
        try:
            result = collection.update_one({"_id": doc_id, **condition}, update, upsert=upsert)
        except DuplicateKeyError:  # upsert: the document exists but fails the condition
            return False
        return result.matched_count == 1 or result.upserted_id is not None
    doc = _fetch_by_id(collection, doc_id, condition)
    if (doc is None and not upsert) or (doc is not None and not matches(doc, condition)):
        return False
    result = collection.update_one({"_id": doc_id}, update, upsert=upsert)
    return result.matched_count == 1 or result.upserted_id is not None


def delete_if(collection: Collection, doc_id: Any, condition: dict[str, Any]) -> bool:
    """``delete_one({"_id": doc_id, **condition})``; True if a document was deleted."""
    if is_ferretdb(collection.database.client):
        doc = _fetch_by_id(collection, doc_id, condition)
        if doc is None or not matches(doc, condition):
            return False
        return collection.delete_one({"_id": doc_id}).deleted_count == 1
    return collection.delete_one({"_id": doc_id, **condition}).deleted_count == 1
