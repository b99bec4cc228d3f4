"""Update documents that change only what changed, field by field.

``$set`` of a whole subdocument is what MongoDB does right and our local FerretDB v1 does
not always: it skips a ``$set`` whose new subdocument holds the same values in the same
order as the current one under other keys (``{"queued": 5}`` -> ``{"sent": 5}`` is kept as
``{"queued": 5}``: its ``types.Identical`` compares a document's values, not its keys;
tests/integration/database pins it as a known gap). Setting the changed leaves by their
dotted paths, and unsetting the removed ones, never hands it two documents to compare,
and writes less besides.

Keys of the documents given here must be safe as path components (no ``.``, no leading
``$``); ids validated by crm_common.contracts.Id are.

Also the one-command write of a read model's fact (:func:`upsert_unless`).
"""
from __future__ import annotations

from typing import Any

from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

_MISSING = object()


def changes(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> tuple[dict[str, Any], dict[str, str]]:
    """``($set, $unset)`` turning ``before`` into ``after``: a dict that was a dict before
    is recursed into; anything else (values, lists, a dict replacing a non-dict) is set whole."""
    sets: dict[str, Any] = {}
    unsets: dict[str, str] = {}
    for key, new in after.items():
        path = f"{prefix}{key}"
        old = before.get(key, _MISSING)
        if isinstance(new, dict) and isinstance(old, dict) and new:
            s, u = changes(old, new, f"{path}.")
            sets.update(s)
            unsets.update(u)
        elif old is _MISSING or old != new or type(old) is not type(new):
            sets[path] = new
    for key in before:
        if key not in after:
            unsets[f"{prefix}{key}"] = ""
    return sets, unsets


def update(before: dict[str, Any], after: dict[str, Any], **extra: dict[str, Any]) -> dict[str, Any]:
    """A MongoDB update document from :func:`changes`, merged with ``extra`` operators
    (``update(old, new, **{"$inc": {"version": 1}})``)."""
    sets, unsets = changes(before, after)
    out: dict[str, Any] = {op: dict(fields) for op, fields in extra.items()}
    if sets:
        out.setdefault("$set", {}).update(sets)
    if unsets:
        out.setdefault("$unset", {}).update(unsets)
    return out


def older_than(field: str, value: Any) -> dict[str, Any]:
    """The filter of a document whose ``field`` is not ``value`` or later (a smaller
    value, none, or one of another type): what a read model guards a newer fact's write with."""
    return {field: {"$not": {"$gte": value}}}


def upsert_unless(collection: Collection, doc_id: Any, guard: dict[str, Any],
                  update: dict[str, Any]) -> dict[str, Any] | None:
    """A read model's write of a fact in ONE command, no read before it: ``update`` the
    document ``doc_id`` if it matches ``guard`` (the fact is newer than what it holds, it is
    not erased, ...), or create it. Returns the document as it was before (``{}`` when it
    was created; whole: FerretDB v1 has no projection in findAndModify), or None when the stored one fails ``guard`` (then
    the upsert's insert finds the ``_id`` taken: a duplicate key, on MongoDB as on our
    FerretDB build, whose writes of one document are atomic). Any writer that makes a
    document fail a guard must write it as one update too (an erasure's scrub, a newer
    version): racing with this one, it comes either before it (and this one does nothing)
    or after it (and overwrites it)."""
    try:
        before = collection.find_one_and_update({"_id": doc_id, **guard}, update, upsert=True,
                                                return_document=ReturnDocument.BEFORE)
    except DuplicateKeyError:
        return None
    return before or {}
