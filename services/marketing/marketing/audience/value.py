"""What a customer is worth: RFM scores and value bands, from the compact facts
(audience.facts), relative to ``now``. Never sums currencies: the monetary score is the
best of the contact's currencies, each judged against that currency's own bands.

Scores are 0 (never bought) to 5:

* recency, days since the last paid order: <= 30 -> 5, <= 90 -> 4, <= 180 -> 3, <= 365 -> 2, else 1
* frequency, paid orders: >= 20 -> 5, >= 10 -> 4, >= 5 -> 3, >= 2 -> 2, 1 -> 1
* monetary, lifetime spent in a currency, against its four thresholds (minor units):
  >= t4 -> 5, >= t3 -> 4, >= t2 -> 3, >= t1 -> 2, > 0 -> 1

The thresholds per currency come from the setting MARKETING_MONETARY_BANDS
(``"*=5000,20000,100000,500000;JPY=5000,20000,100000,500000"``: ``*`` for every currency
not named, the default being 50 / 200 / 1,000 / 5,000 in a two-decimal currency).
The value band follows the monetary score: 0 none, 1-2 low, 3 medium, 4 high, 5 top.
"""
from __future__ import annotations

from typing import Any

from ..segments.rules import VALUE_BANDS

DAY = 86_400
RECENCY_DAYS = (30, 90, 180, 365)           # score 5, 4, 3, 2 (older: 1)
FREQUENCY_ORDERS = (20, 10, 5, 2)           # score 5, 4, 3, 2 (one order: 1)
DEFAULT_BANDS = "*=5000,20000,100000,500000"
BAND_OF_SCORE = {0: "none", 1: "low", 2: "low", 3: "medium", 4: "high", 5: "top"}


def parse_bands(text: str) -> dict[str, tuple[int, int, int, int]]:
    """``"*=5000,20000,100000,500000;IRR=..."`` -> ``{currency: (t1, t2, t3, t4)}``; ValueError if malformed."""
    bands: dict[str, tuple[int, int, int, int]] = {}
    for part in filter(None, (p.strip() for p in (text or DEFAULT_BANDS).split(";"))):
        currency, _, values = part.partition("=")
        numbers = tuple(int(v) for v in values.split(","))
        if len(numbers) != 4 or list(numbers) != sorted(numbers) or numbers[0] <= 0:
            raise ValueError(f"monetary bands {part!r}: four increasing positive thresholds expected")
        bands[currency.strip().upper()] = numbers  # type: ignore[assignment]
    if "*" not in bands:
        bands["*"] = parse_bands(DEFAULT_BANDS)["*"]
    return bands


def recency(f: dict[str, Any], now_s: int) -> int:
    last = f.get("lo")
    if last is None:
        return 0
    days = (now_s - last) / DAY
    for score, limit in zip((5, 4, 3, 2), RECENCY_DAYS):
        if days <= limit:
            return score
    return 1


def frequency(f: dict[str, Any]) -> int:
    orders = f.get("oc") or len(f.get("ro") or ())
    if not orders:
        return 0
    for score, limit in zip((5, 4, 3, 2), FREQUENCY_ORDERS):
        if orders >= limit:
            return score
    return 1


def spent(f: dict[str, Any]) -> dict[str, int]:
    """Lifetime spent per currency: sales' summary, or the recent orders it has not
    caught up with yet (never less than those)."""
    totals = dict(f.get("ts") or {})
    recent: dict[str, int] = {}
    for order in f.get("ro") or ():
        recent[order["c"]] = recent.get(order["c"], 0) + order["a"]
    for currency, amount in recent.items():
        totals[currency] = max(totals.get(currency, 0), amount)
    return totals


def monetary(f: dict[str, Any], bands: dict[str, tuple[int, int, int, int]]) -> int:
    best = 0
    for currency, spent_minor in spent(f).items():
        if spent_minor <= 0:
            continue
        t1, t2, t3, t4 = bands.get(currency) or bands["*"]
        best = max(best, 5 if spent_minor >= t4 else 4 if spent_minor >= t3 else 3 if spent_minor >= t2
                   else 2 if spent_minor >= t1 else 1)
    return best


def value_band(f: dict[str, Any], bands: dict[str, tuple[int, int, int, int]]) -> str:
    return BAND_OF_SCORE[monetary(f, bands)]


assert set(BAND_OF_SCORE.values()) <= set(VALUE_BANDS)
