"""Input checks shared by services: collect every violation, then raise once.

Values that reach a Mongo filter go through :func:`plain_str`/:func:`plain_int` first,
so client data can never smuggle an operator (``{"$ne": ...}``) into a query.
"""
from __future__ import annotations

from typing import Any

from .errors import InvalidArgument


class Violations:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, field: str, description: str) -> None:
        self.items.append({"field": field, "description": description})

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        if self.items:
            first = self.items[0]
            more = f" (and {len(self.items) - 1} more)" if len(self.items) > 1 else ""
            raise InvalidArgument(f"{first['field']}: {first['description']}{more}", violations=self.items)


def plain_str(value: Any, field: str, *, max_len: int = 200, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidArgument.field(field, "must be a string")
    value = value.strip()
    if not value and not allow_empty:
        raise InvalidArgument.field(field, "is required")
    if len(value) > max_len:
        raise InvalidArgument.field(field, f"must be at most {max_len} characters")
    return value


def plain_int(value: Any, field: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument.field(field, "must be an integer")
    if minimum is not None and value < minimum:
        raise InvalidArgument.field(field, f"must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise InvalidArgument.field(field, f"must be at most {maximum}")
    return value


def page_size(value: Any, *, default: int = 50, maximum: int = 500) -> int:
    if value in (None, 0):
        return default
    return plain_int(value, "page_size", minimum=1, maximum=maximum)
