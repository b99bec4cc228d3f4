"""Rules that look at several fields at once collect every violation, then raise once
(field shapes are checked by the contract models, crm_common.contracts)."""
from __future__ import annotations

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
