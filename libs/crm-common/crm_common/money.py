"""Money as integer minor units plus an ISO-4217 currency code. Never floats."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import InvalidArgument

_CURRENCY = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True)
class Money:
    amount_minor: int
    currency: str

    @classmethod
    def from_wire(cls, value: Any, field: str = "amount") -> "Money":
        if not isinstance(value, dict):
            raise InvalidArgument.field(field, "must be an object with amount_minor and currency")
        amount, currency = value.get("amount_minor"), value.get("currency")
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise InvalidArgument.field(f"{field}.amount_minor", "must be an integer number of minor units")
        if not isinstance(currency, str) or not _CURRENCY.match(currency):
            raise InvalidArgument.field(f"{field}.currency", "must be a 3-letter ISO-4217 code such as EUR")
        return cls(amount, currency)

    def to_wire(self) -> dict[str, Any]:
        return {"amount_minor": self.amount_minor, "currency": self.currency}
