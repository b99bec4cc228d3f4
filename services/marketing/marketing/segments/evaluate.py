"""Evaluating a rule (segments.rules) over the compact facts of a contact
(audience.facts): in Python, never as a database query. A rule is compiled once into
nested closures; evaluating one contact is a few dictionary lookups per condition, so a
full evaluation over 100,000 contacts is dominated by reading their pages.

``matches(f)`` says whether the contact is in; ``explain(f)`` also says why: the
conditions that held (for ``any``, the ones that did), with the contact's own values.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Callable

from crm_common import clock

from ..audience import value as V
from ..timezones import zone
from . import rules as R

DAY = 86_400
Facts = dict[str, Any]


@dataclass
class Context:
    """What an evaluation is relative to: its ``now``, the monetary bands, the time zone
    of contacts who have none."""

    now: datetime
    bands: dict[str, tuple[int, int, int, int]] = field(default_factory=lambda: V.parse_bands(""))
    default_tz: str = "UTC"

    def __post_init__(self) -> None:
        self.now_s = int(self.now.timestamp())
        self._dates: dict[str, date] = {}

    def today(self, tz: str | None) -> date:
        """The contact's local date (its time zone, else the default)."""
        name = tz or self.default_tz
        day = self._dates.get(name)
        if day is None:
            day = self._dates[name] = self.now.astimezone(zone(name)).date()
        return day


Test = Callable[[Facts, Context], bool]
Show = Callable[[Facts, Context], Any]


@dataclass(frozen=True)
class Compiled:
    test: Test
    explain: Callable[[Facts, Context], list[str] | None]   # the reasons when it holds, else None
    time_relative: bool = False

    def matches(self, f: Facts, ctx: Context) -> bool:
        return self.test(f, ctx)


def compile_rule(rule: R.Rule) -> Compiled:
    test, explain = _compile(rule)
    return Compiled(test, explain, R.is_time_relative(rule))


def _compile(node: R.Rule) -> tuple[Test, Callable[[Facts, Context], list[str] | None]]:
    if isinstance(node, R.All):
        parts = [_compile(n) for n in node.all]
        tests = [t for t, _ in parts]

        def all_explain(f, ctx):
            reasons = []
            for _, explain in parts:
                got = explain(f, ctx)
                if got is None:
                    return None
                reasons += got
            return reasons
        return (lambda f, ctx: all(t(f, ctx) for t in tests)), all_explain
    if isinstance(node, R.Any_):
        parts = [_compile(n) for n in node.any]
        tests = [t for t, _ in parts]

        def any_explain(f, ctx):
            reasons = [r for _, explain in parts for r in (explain(f, ctx) or ())]
            return reasons if any(t(f, ctx) for t in tests) else None
        return (lambda f, ctx: any(t(f, ctx) for t in tests)), any_explain
    if isinstance(node, R.Not):
        inner, _ = _compile(node.not_)
        text = f"not ({_text(node.not_)})"
        return (lambda f, ctx: not inner(f, ctx)), (lambda f, ctx: None if inner(f, ctx) else [text])
    test, show = _condition(node)
    described = node.describe()

    def explain(f, ctx):
        if not test(f, ctx):
            return None
        actual = show(f, ctx)
        return [described if actual is _NOTHING else f"{described} (is {_fmt(actual)})"]
    return test, explain


def _text(node: R.Rule) -> str:
    if isinstance(node, R.All):
        return " and ".join(_text(n) for n in node.all)
    if isinstance(node, R.Any_):
        return " or ".join(_text(n) for n in node.any)
    if isinstance(node, R.Not):
        return f"not ({_text(node.not_)})"
    return node.describe()


_NOTHING = object()


def _fmt(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return "none" if value is None else str(value)


# --------------------------------------------------------------------------- conditions

def _accessor(c: R._Condition) -> Show:
    """The contact's value the condition is about."""
    name = c.field
    simple = {"lifecycle_stage": "ls", "tags": "tg", "country": "co", "city": "ci", "language": "la",
              "gender": "ge", "owner": "ow", "email_domain": "ed", "has_email": "he", "has_phone": "hp",
              "created_at": "ca", "preferred_channel": "pc", "preferred_contact_time": "pt", "values": "va",
              "loyalty_member": "lm", "points": "pb", "first_order": "fo", "last_order": "lo", "open_tickets": "ot",
              "last_csat": "cq", "engagement_score": "es", "last_opened": "lop", "last_clicked": "lck",
              "birthday": "bd"}
    if name in simple:
        key = simple[name]
        return lambda f, ctx: f.get(key)
    if name == "consent":
        channel = c.channel
        return lambda f, ctx: channel in (f.get("cn") or ())
    if name == "custom_field":
        key = c.key
        return lambda f, ctx: (f.get("cf") or {}).get(key)
    if name == "tier":
        return lambda f, ctx: R.TIERS[f.get("ti") or 0]
    if name == "value_band":
        return lambda f, ctx: V.value_band(f, ctx.bands)
    if name == "order_count":
        return lambda f, ctx: max(f.get("oc") or 0, len(f.get("ro") or ()))
    if name == "total_spent":
        currency = c.value.currency
        return lambda f, ctx: V.spent(f).get(currency, 0)
    if name == "orders_in_last_days":
        window = c.days * DAY
        return lambda f, ctx: sum(1 for o in f.get("ro") or () if o["t"] >= ctx.now_s - window)
    if name == "spent_in_last_days":
        window, currency = c.days * DAY, c.value.currency
        return lambda f, ctx: sum(o["a"] for o in f.get("ro") or () if o["t"] >= ctx.now_s - window and o["c"] == currency)
    if name == "rfm_recency":
        return lambda f, ctx: V.recency(f, ctx.now_s)
    if name == "rfm_frequency":
        return lambda f, ctx: V.frequency(f)
    if name == "rfm_monetary":
        return lambda f, ctx: V.monetary(f, ctx.bands)
    if name in ("opened", "clicked"):
        key, campaign = ("op" if name == "opened" else "ck"), c.campaign_id
        if campaign:
            return lambda f, ctx: campaign in (f.get(key) or {})
        return lambda f, ctx: bool(f.get(key))
    raise AssertionError(f"no accessor for {name}")  # the catalogue and this table go together


_COMPARE = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "gt": lambda a, b: a > b,
            "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b}


def _normalized(c: R._Condition, value: Any) -> Any:
    """Condition values compared the way the facts are stored."""
    fix = {"country": str.upper, "city": str.casefold, "language": str.lower, "email_domain": str.lower}.get(c.field)
    if fix is None:
        return value
    return [fix(v) for v in value] if isinstance(value, list) else fix(value) if isinstance(value, str) else value


def _condition(c: R._Condition) -> tuple[Test, Show]:
    get = _accessor(c)
    kind, op = R.FIELDS[c.field].kind, c.op
    value = _normalized(c, getattr(c, "value", None))
    if kind in ("bool", "consent", "engaged"):
        want = value
        return (lambda f, ctx: bool(get(f, ctx)) is want), (lambda f, ctx: _NOTHING)
    if kind in ("text", "custom"):
        if op == "exists":
            return (lambda f, ctx: (get(f, ctx) is not None) is value), get
        if op in ("in", "not_in"):
            allowed, inside = frozenset(value), op == "in"
            return (lambda f, ctx: (get(f, ctx) in allowed) is inside), get
        compare = _COMPARE[op]

        def text_test(f, ctx):
            actual = get(f, ctx)
            if actual is None:
                return op == "ne"
            try:
                return compare(actual, value)
            except TypeError:   # a custom field holding another type than the condition's
                return op == "ne"
        return text_test, get
    if kind == "texts":
        if op == "is_empty":
            return (lambda f, ctx: (not get(f, ctx)) is value), get
        wanted = frozenset(value)
        test = {"contains_any": lambda have: bool(wanted & have), "contains_all": lambda have: wanted <= have,
                "contains_none": lambda have: not (wanted & have)}[op]
        return (lambda f, ctx: test(frozenset(get(f, ctx) or ()))), get
    if kind in ("number", "window_number"):
        if op == "between":
            low, high = value
            return (lambda f, ctx: low <= (get(f, ctx) or 0) <= high), get
        compare = _COMPARE[op]
        return (lambda f, ctx: compare(get(f, ctx) or 0, value)), get
    if kind in ("money", "window_money"):
        compare, amount = _COMPARE[op], value.amount_minor
        return (lambda f, ctx: compare(get(f, ctx) or 0, amount)), (lambda f, ctx: f"{value.currency} {get(f, ctx)}")
    if kind == "rank":
        order = R.FIELDS[c.field].choices
        if op in ("in", "not_in"):
            allowed, inside = frozenset(value), op == "in"
            return (lambda f, ctx: (get(f, ctx) in allowed) is inside), get
        compare, rank = _COMPARE[op], order.index(value)
        return (lambda f, ctx: compare(order.index(get(f, ctx)), rank)), get
    if kind == "time":
        return _time(op, value, get)
    if kind == "birthday":
        return _birthday(op, value, get)
    raise AssertionError(f"no evaluation for {kind}")


def _time(op: str, value: Any, get: Show) -> tuple[Test, Show]:
    show = lambda f, ctx: _when(get(f, ctx))  # noqa: E731
    if op == "never":
        return (lambda f, ctx: get(f, ctx) is None), show
    if op in ("within_last_days", "more_than_days_ago"):
        window, recent = value * DAY, op == "within_last_days"

        def test(f, ctx):
            at = get(f, ctx)
            if at is None:
                return False
            return (at >= ctx.now_s - window) if recent else (at < ctx.now_s - window)
        return test, show
    bound, after = int(clock.from_iso(value).timestamp()), op == "after"

    def absolute(f, ctx):
        at = get(f, ctx)
        return at is not None and (at > bound if after else at < bound)
    return absolute, show


def _when(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d")


def _birthday(op: str, value: Any, get: Show) -> tuple[Test, Show]:
    def local(f, ctx) -> tuple[date, int, int] | None:
        bd = get(f, ctx)
        if not bd:
            return None
        try:
            month, day = int(bd[:2]), int(bd[3:5])
        except ValueError:
            return None
        return ctx.today(f.get("tz")), month, day

    def test(f, ctx):
        got = local(f, ctx)
        if got is None:
            return False
        today, month, day = got
        if op == "this_month":
            return month == today.month
        if op == "in_month":
            return month == value
        if op == "today":
            return (month, day) == (today.month, today.day)
        return _days_until(today, month, day) <= value
    return test, get


def _days_until(today: date, month: int, day: int) -> int:
    """Days from ``today`` to the next birthday on (month, day); 29 February is celebrated
    on 28 February in other years."""
    for year in (today.year, today.year + 1):
        try:
            nxt = date(year, month, day)
        except ValueError:
            nxt = date(year, month, 28) if (month, day) == (2, 29) else None
        if nxt is not None and nxt >= today:
            return (nxt - today).days
    return 366


def evaluate_all(compiled: Compiled, facts: dict[str, Facts], ctx: Context) -> list[str]:
    """The contact ids (of ``{contact_id: facts}``) the rule matches; erased contacts never do."""
    test = compiled.test
    return [cid for cid, f in facts.items() if not f.get("x") and test(f, ctx)]

