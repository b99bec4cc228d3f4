"""Money as integer minor units plus an ISO-4217 currency code. Never floats."""
from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator

from .contracts import Model, error, parse

_CURRENCY = re.compile(r"^[A-Z]{3}$")
# The largest amount, either sign, in minor units: ten trillion of a two-decimal currency.
# Sums of many such amounts stay far inside MongoDB's int64.
MAX_AMOUNT_MINOR = 10**15


def _currency(value: str) -> str:
    if not _CURRENCY.match(value):
        raise error("currency", "must be a 3-letter ISO-4217 code such as EUR")
    return value


Currency = Annotated[str, AfterValidator(_currency)]


def _bounded(value: int) -> int:
    if abs(value) > MAX_AMOUNT_MINOR:
        raise error("amount_minor", f"must be between -{MAX_AMOUNT_MINOR} and {MAX_AMOUNT_MINOR} minor units")
    return value


class Money(Model):
    """``{"amount_minor": 1234, "currency": "EUR"}`` is EUR 12.34."""

    amount_minor: Annotated[int, AfterValidator(_bounded)]
    currency: Currency

    @classmethod
    def from_wire(cls, value: Any, field: str = "amount") -> "Money":
        return parse(cls, value, prefix=field)

    def to_wire(self) -> dict[str, Any]:
        return {"amount_minor": self.amount_minor, "currency": self.currency}
