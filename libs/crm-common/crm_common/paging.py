"""One opaque page-token scheme for every list RPC.

A token is URL-safe base64 of a small JSON object (the sort key of the last item
returned); callers pass ``next_page_token`` back unchanged and never look inside.
Every list RPC pages the same way: ``page_size`` (0 = default, see
crm_common.contracts.Page) and ``page_token`` in, ``next_page_token`` ("" on the last
page) out.
"""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Callable, Sequence, TypeVar

from .errors import InvalidArgument

T = TypeVar("T")

MAX_TOKEN = 1000


def encode(**cursor: Any) -> str:
    raw = json.dumps(cursor, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str, **fields: type) -> dict[str, Any] | None:
    """The cursor of ``token`` (None for ""), whose keys and value types must be exactly
    ``fields``; anything else is InvalidArgument on ``page_token``."""
    if not token:
        return None
    bad = InvalidArgument.field("page_token", "is not a token this list returned; pass next_page_token back unchanged")
    if not isinstance(token, str) or len(token) > MAX_TOKEN:
        raise bad
    try:
        cursor = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad from None
    if not isinstance(cursor, dict) or set(cursor) != set(fields):
        raise bad
    for key, typ in fields.items():
        value = cursor[key]
        if not isinstance(value, typ) or isinstance(value, bool) and typ is not bool:
            raise bad
    return cursor


def page(rows: Sequence[T], size: int, cursor_of: Callable[[T], dict[str, Any]]) -> tuple[list[T], str]:
    """Given up to ``size + 1`` rows fetched in order, the page to return and its
    ``next_page_token`` ("" when there is no more)."""
    rows = list(rows)
    if len(rows) <= size:
        return rows, ""
    rows = rows[:size]
    return rows, encode(**cursor_of(rows[-1]))


def by_id(token: str, size: int, fetch: Callable[[str | None, int], Sequence[dict[str, Any]]]
          ) -> tuple[list[dict[str, Any]], str]:
    """The page of a list in ``_id`` order and its ``next_page_token``: ``fetch(after_id,
    limit)`` reads up to ``limit`` records after ``after_id`` (None: from the first)."""
    cursor = decode(token, id=str)
    return page(fetch(cursor and cursor["id"], size + 1), size, lambda d: {"id": d["_id"]})
