"""The segment rule language: a JSON structure, validated here, evaluated in Python by
``segments.evaluate`` over the audience's facts. No part of a rule ever reaches a
database query, and a key starting with ``$`` is refused wherever it appears.

A rule is a node:

* ``{"all": [node, ...]}``   every node holds (1 to 50 nodes)
* ``{"any": [node, ...]}``   at least one holds
* ``{"not": node}``          the node does not hold
* a condition: ``{"field": <name>, "op": <operator>, "value": <value>}`` plus the
  parameter some fields take (``days``, ``channel``, ``key``, ``campaign_id``).

Fields, by kind, and the operators of each kind (``FIELDS`` is the catalogue; the proto
documents it for clients):

* text: ``eq``/``ne`` a string, ``in``/``not_in`` a list of strings, ``exists`` true/false
* texts (a list, e.g. tags): ``contains_any``/``contains_all``/``contains_none`` a list,
  ``is_empty`` true/false
* number: ``eq ne gt gte lt lte`` an integer, ``between`` ``[low, high]`` (inclusive)
* bool: ``is`` true/false
* rank (ordered choices: tier, value_band): ``eq ne gt gte lt lte`` a choice,
  ``in``/``not_in`` a list of choices
* money (per currency, never summed across currencies): ``eq gt gte lt lte``
  ``{"amount_minor": 50000, "currency": "EUR"}``; a contact without that currency has 0
* time: ``within_last_days``/``more_than_days_ago`` a number of days, ``before``/``after``
  an ISO-8601 timestamp, ``never`` (no value: it never happened)
* birthday: ``this_month``, ``today`` (no value), ``in_month`` 1-12, ``within_next_days`` 0-366

Relative dates are relative to the ``now`` of each evaluation.

Numbers may arrive as JSON numbers with a zero fraction (``5.0``: a ``google.protobuf.Struct``
carries every number as a double); they are taken as integers. Anything else malformed is
INVALID_ARGUMENT naming its path (``rule.all[1].any[0].value``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import (Discriminator, Field, Tag, TypeAdapter, ValidationError, ValidationInfo,
                      field_validator, model_validator)

from crm_common import clock
from crm_common.contracts import Id, Model, error, invalid
from crm_common.errors import InvalidArgument
from crm_common.money import Money

MAX_NODES = 100          # conditions and groups in one rule
MAX_DEPTH = 6
MAX_LIST = 200           # items of an in / contains list
MAX_DAYS = 36_500
TEXT_MAX = 200

TIERS = ("none", "bronze", "silver", "gold", "platinum")
VALUE_BANDS = ("none", "low", "medium", "high", "top")
CHANNELS = ("email", "sms", "phone")
CONTACT_TIMES = ("morning", "afternoon", "evening")
VALUES = ("price", "service", "quality", "speed")
LIFECYCLE_STAGES = ("subscriber", "lead", "marketing_qualified", "sales_qualified", "opportunity", "customer",
                    "evangelist", "other")


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: str                         # text texts number bool rank money time birthday custom
    doc: str
    choices: tuple[str, ...] = ()     # allowed values (text, texts, rank); rank: in this order
    param: str = ""                   # the parameter the field takes: days, channel, key, campaign_id


FIELDS: dict[str, FieldSpec] = {f.name: f for f in (
    # who they are (contacts)
    FieldSpec("lifecycle_stage", "text", "the contact's lifecycle stage", LIFECYCLE_STAGES),
    FieldSpec("tags", "texts", "the contact's tags"),
    FieldSpec("country", "text", "ISO country code of the contact's address (upper case)"),
    FieldSpec("city", "text", "city of the contact's address"),
    FieldSpec("language", "text", "language of the contact's locale (fa, en, de ...)"),
    FieldSpec("gender", "text", "the contact's gender"),
    FieldSpec("owner", "text", "the contact's owner"),
    FieldSpec("email_domain", "text", "domain of the contact's primary email"),
    FieldSpec("has_email", "bool", "the contact has an email address"),
    FieldSpec("has_phone", "bool", "the contact has a phone number"),
    FieldSpec("consent", "consent", "the contact's consent for a channel (param channel: email, sms, phone)",
              param="channel"),
    FieldSpec("custom_field", "custom", "a custom field of the contact (param key)", param="key"),
    FieldSpec("created_at", "time", "when the contact was created"),
    FieldSpec("birthday", "birthday", "the contact's birthday"),
    # what they expect
    FieldSpec("preferred_channel", "text", "the channel the customer prefers", CHANNELS),
    FieldSpec("preferred_contact_time", "text", "when the customer prefers to be contacted", CONTACT_TIMES),
    FieldSpec("values", "texts", "what the customer values most", VALUES),
    # what they are worth (sales, loyalty)
    FieldSpec("tier", "rank", "loyalty tier (none when not a member)", TIERS),
    FieldSpec("loyalty_member", "bool", "the contact is a loyalty member"),
    FieldSpec("points", "number", "loyalty points balance"),
    FieldSpec("order_count", "number", "paid orders, lifetime (refunds excluded)"),
    FieldSpec("total_spent", "money", "lifetime spending in one currency"),
    FieldSpec("last_order", "time", "the last paid order"),
    FieldSpec("first_order", "time", "the first paid order"),
    FieldSpec("orders_in_last_days", "window_number", "paid orders in the last N days (param days)", param="days"),
    FieldSpec("spent_in_last_days", "window_money", "spending in one currency in the last N days (param days)",
              param="days"),
    FieldSpec("rfm_recency", "number", "RFM recency score 0-5 (5: bought recently, 0: never)"),
    FieldSpec("rfm_frequency", "number", "RFM frequency score 0-5"),
    FieldSpec("rfm_monetary", "number", "RFM monetary score 0-5 (the best of the contact's currencies)"),
    FieldSpec("value_band", "rank", "value band from the monetary score", VALUE_BANDS),
    # how they are served (service desk)
    FieldSpec("open_tickets", "number", "open support tickets"),
    FieldSpec("last_csat", "number", "the last satisfaction score 1-5 (0: none)"),
    # how they engage (marketing)
    FieldSpec("opened", "engaged", "opened a message (param campaign_id: of that campaign; none: any)",
              param="campaign_id"),
    FieldSpec("clicked", "engaged", "clicked a link (param campaign_id: of that campaign; none: any)",
              param="campaign_id"),
    FieldSpec("engagement_score", "number", "engagement score (opens, clicks, replies of the scoring window)"),
    FieldSpec("last_opened", "time", "the last open of a message"),
    FieldSpec("last_clicked", "time", "the last click in a message"),
)}

OPS = {
    "text": ("eq", "ne", "in", "not_in", "exists"),
    "window_number": ("eq", "ne", "gt", "gte", "lt", "lte", "between"),
    "window_money": ("eq", "gt", "gte", "lt", "lte"),
    "consent": ("is",),
    "engaged": ("is",),
    "texts": ("contains_any", "contains_all", "contains_none", "is_empty"),
    "number": ("eq", "ne", "gt", "gte", "lt", "lte", "between"),
    "bool": ("is",),
    "rank": ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in"),
    "money": ("eq", "gt", "gte", "lt", "lte"),
    "time": ("within_last_days", "more_than_days_ago", "before", "after", "never"),
    "birthday": ("this_month", "today", "in_month", "within_next_days"),
    "custom": ("eq", "ne", "in", "not_in", "exists", "gt", "gte", "lt", "lte"),
}

#: Conditions whose truth changes with time alone (a daily re-check keeps their
#: memberships right between events).
TIME_RELATIVE_OPS = {"within_last_days", "more_than_days_ago", "before", "after", "this_month", "today",
                     "in_month", "within_next_days"}
TIME_RELATIVE_FIELDS = {"orders_in_last_days", "spent_in_last_days", "rfm_recency"}


def _names(kind: str) -> tuple[str, ...]:
    return tuple(f.name for f in FIELDS.values() if f.kind == kind)


Days = Annotated[int, Field(ge=0, le=MAX_DAYS)]
BOUND = 10**15


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise error("value", "must be a string")
    if not value or len(value) > TEXT_MAX:
        raise error("value", f"must be 1 to {TEXT_MAX} characters")
    return value


def _strings(value: Any, op: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise error("value", f"{op} takes a non-empty list of strings")
    if len(value) > MAX_LIST:
        raise error("value", f"{op} takes at most {MAX_LIST} items")
    return [_string(v) for v in value]


def _integer(value: Any, op: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise error("value", f"{op} takes an integer")
    if abs(value) > BOUND:
        raise error("value", f"must be between -{BOUND} and {BOUND}")
    return value


def _flag(value: Any, op: str) -> bool:
    if not isinstance(value, bool):
        raise error("value", f"{op} takes true or false")
    return value


def _days(value: Any, op: str) -> int:
    days = _integer(value, op)
    if not 0 <= days <= MAX_DAYS:
        raise error("value", f"{op} takes 0 to {MAX_DAYS} days")
    return days


def _choices(field: str | None, values: list[str]) -> None:
    choices = FIELDS[field].choices if field in FIELDS else ()
    for v in values:
        if choices and v not in choices:
            raise error("choice", f"{v!r} is not one of: {', '.join(choices)}")


class _Condition(Model):
    """What every condition has; ``value`` is checked against ``op`` by each kind (the
    parameters some fields take are declared before ``value``, so its check sees them)."""

    field: str
    op: str

    def param(self) -> Any:
        spec = FIELDS[self.field]
        return getattr(self, spec.param, None) if spec.param else None

    def describe(self) -> str:
        """The condition as a person reads it (``tier gte gold``)."""
        param = self.param()
        name = f"{self.field}[{param}]" if param is not None else self.field
        value = getattr(self, "value", None)
        if isinstance(value, Money):
            value = f"{value.currency} {value.amount_minor}"
        return f"{name} {self.op}" + ("" if value is None else f" {value}")


class TextCondition(_Condition):
    field: Literal[_names("text")]
    op: Literal[OPS["text"]]
    value: Any

    @field_validator("value")
    @classmethod
    def _value(cls, value, info: ValidationInfo):
        op, field = info.data.get("op"), info.data.get("field")
        if op == "exists":
            return _flag(value, op)
        value = _strings(value, op) if op in ("in", "not_in") else _string(value)
        _choices(field, value if isinstance(value, list) else [value])
        return value


class TextsCondition(_Condition):
    field: Literal[_names("texts")]
    op: Literal[OPS["texts"]]
    value: Any

    @field_validator("value")
    @classmethod
    def _value(cls, value, info: ValidationInfo):
        op, field = info.data.get("op"), info.data.get("field")
        if op == "is_empty":
            return _flag(value, op)
        value = _strings(value, op)
        _choices(field, value)
        return value


class NumberCondition(_Condition):
    field: Literal[_names("number")]
    op: Literal[OPS["number"]]
    value: Any

    @field_validator("value")
    @classmethod
    def _value(cls, value, info: ValidationInfo):
        op = info.data.get("op")
        if op == "between":
            if not isinstance(value, list) or len(value) != 2:
                raise error("value", "between takes [low, high]")
            low, high = (_integer(v, op) for v in value)
            if low > high:
                raise error("value", "between takes [low, high] with low <= high")
            return [low, high]
        return _integer(value, op)


class WindowNumberCondition(NumberCondition):
    field: Literal[_names("window_number")]
    days: Annotated[int, Field(ge=1, le=MAX_DAYS)]
    value: Any


class BoolCondition(_Condition):
    field: Literal[_names("bool")]
    op: Literal["is"]
    value: bool


class ConsentCondition(BoolCondition):
    field: Literal["consent"]
    channel: Literal[CHANNELS]
    value: bool


class EngagedCondition(BoolCondition):
    field: Literal[_names("engaged")]
    campaign_id: Id | None = None
    value: bool


class RankCondition(_Condition):
    field: Literal[_names("rank")]
    op: Literal[OPS["rank"]]
    value: Any

    @field_validator("value")
    @classmethod
    def _value(cls, value, info: ValidationInfo):
        op, field = info.data.get("op"), info.data.get("field")
        value = _strings(value, op) if op in ("in", "not_in") else _string(value)
        _choices(field, value if isinstance(value, list) else [value])
        return value


class MoneyCondition(_Condition):
    field: Literal[_names("money")]
    op: Literal[OPS["money"]]
    value: Money


class WindowMoneyCondition(MoneyCondition):
    field: Literal[_names("window_money")]
    days: Annotated[int, Field(ge=1, le=MAX_DAYS)]
    value: Money


class TimeCondition(_Condition):
    field: Literal[_names("time")]
    op: Literal[OPS["time"]]
    value: Any = None

    @field_validator("value")
    @classmethod
    def _value(cls, value, info: ValidationInfo):
        op = info.data.get("op")
        if op in ("within_last_days", "more_than_days_ago"):
            return _days(value, op)
        if op in ("before", "after"):
            if not isinstance(value, str):
                raise error("value", f"{op} takes an ISO-8601 timestamp")
            try:
                clock.from_iso(value)
            except ValueError:
                raise error("value", "must be an ISO-8601 timestamp such as 2026-11-25T20:00:00Z") from None
            return value
        if op == "never" and value is not None:
            raise error("value", "never takes no value")
        return value

    def at(self) -> datetime:
        return clock.from_iso(self.value)


class BirthdayCondition(_Condition):
    field: Literal["birthday"]
    op: Literal[OPS["birthday"]]
    value: Any = None

    @field_validator("value")
    @classmethod
    def _value(cls, value, info: ValidationInfo):
        op = info.data.get("op")
        if op in ("this_month", "today"):
            if value is not None:
                raise error("value", f"{op} takes no value")
            return value
        if op == "in_month":
            month = _integer(value, op)
            if not 1 <= month <= 12:
                raise error("value", "in_month takes a month 1-12")
            return month
        days = _integer(value, op)
        if not 0 <= days <= 366:
            raise error("value", "within_next_days takes 0 to 366 days")
        return days


_CUSTOM_KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class CustomCondition(_Condition):
    field: Literal["custom_field"]
    op: Literal[OPS["custom"]]
    key: Annotated[str, Field(pattern=_CUSTOM_KEY.pattern)]
    value: Any

    @field_validator("value")
    @classmethod
    def _value(cls, value, info: ValidationInfo):
        op = info.data.get("op")
        if op == "exists":
            return _flag(value, op)
        if op in ("gt", "gte", "lt", "lte"):
            return _integer(value, op)
        if op in ("in", "not_in"):
            if not isinstance(value, list) or not value or len(value) > MAX_LIST:
                raise error("value", f"{op} takes a list of 1 to {MAX_LIST} values")
            return [_scalar(v) for v in value]
        return _scalar(value)


def _scalar(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return _integer(value, "eq")
    return _string(value)


_KINDS = {"text": TextCondition, "texts": TextsCondition, "number": NumberCondition,
          "window_number": WindowNumberCondition, "bool": BoolCondition, "consent": ConsentCondition,
          "engaged": EngagedCondition, "rank": RankCondition, "money": MoneyCondition,
          "window_money": WindowMoneyCondition, "time": TimeCondition, "birthday": BirthdayCondition,
          "custom": CustomCondition}


class All(Model):
    all: Annotated[list["Node"], Field(min_length=1, max_length=50)]


class Any_(Model):
    any: Annotated[list["Node"], Field(min_length=1, max_length=50)]


class Not(Model):
    not_: "Node" = Field(alias="not")

    model_config = {**Model.model_config, "populate_by_name": True}


_GROUPS = {All: "~all", Any_: "~any", Not: "~not"}


def _node_tag(value: Any) -> str | None:
    """Which shape a node is, from its keys (tags start with ``~`` so error paths drop
    them); for a parsed node (serializing), from its class."""
    if isinstance(value, Model):
        return _GROUPS.get(type(value)) or f"~{FIELDS[value.field].kind}"
    if not isinstance(value, dict):
        return None
    for key in ("all", "any", "not"):
        if key in value:
            return f"~{key}"
    spec = FIELDS.get(value.get("field")) if isinstance(value.get("field"), str) else None
    return f"~{spec.kind}" if spec else "~unknown"


class _Unknown(Model):
    field: str

    @model_validator(mode="before")
    @classmethod
    def _refuse(cls, value):
        if isinstance(value, dict) and "field" not in value:
            raise error("node", "must be {\"all\": [...]}, {\"any\": [...]}, {\"not\": {...}} or a condition "
                                "{\"field\", \"op\", \"value\"}")
        raise error("field", f"unknown field {value.get('field')!r}; fields: {', '.join(FIELDS)}")


Node = Annotated[Union[Annotated[All, Tag("~all")], Annotated[Any_, Tag("~any")], Annotated[Not, Tag("~not")],
                       *(Annotated[cls, Tag(f"~{kind}")] for kind, cls in _KINDS.items()),
                       Annotated[_Unknown, Tag("~unknown")]],
                 Discriminator(_node_tag, custom_error_type="node",
                               custom_error_message="must be an object: all, any, not or a condition")]
All.model_rebuild()
Any_.model_rebuild()
Not.model_rebuild()
_NODE = TypeAdapter(Node)

Rule = Union[All, Any_, Not, _Condition]


# --------------------------------------------------------------------------- parsing

def _walk(value: Any, path: str, depth: int, counter: list[int]) -> Any:
    """Refuse ``$`` keys, bound the size, and take integral doubles as integers."""
    if depth > MAX_DEPTH * 2 + 4:
        raise InvalidArgument.field(path, f"is nested too deeply (at most {MAX_DEPTH} levels of all/any/not)")
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            where = f"{path}.{key}"
            if not isinstance(key, str) or key.startswith("$"):
                raise InvalidArgument.field(where, "operators starting with '$' are not part of the rule language "
                                                   "(see the rule language in marketing.proto)")
            if key in ("all", "any", "not", "field"):
                counter[0] += 1
                if counter[0] > MAX_NODES:
                    raise InvalidArgument.field(path, f"a rule has at most {MAX_NODES} nodes")
            out[key] = _walk(item, where, depth + 1, counter)
        return out
    if isinstance(value, list):
        return [_walk(item, f"{path}[{i}]", depth + 1, counter) for i, item in enumerate(value)]
    if isinstance(value, float) and value.is_integer() and abs(value) <= 10**15:
        return int(value)
    return value


def _depth(node: Rule) -> int:
    if isinstance(node, (All, Any_)):
        return 1 + max(_depth(n) for n in (node.all if isinstance(node, All) else node.any))
    if isinstance(node, Not):
        return 1 + _depth(node.not_)
    return 0


def parse(value: Any, path: str = "rule") -> Rule:
    """The rule, or InvalidArgument naming every bad path under ``path``."""
    if not isinstance(value, dict) or not value:
        raise InvalidArgument.field(path, "must be an object: all, any, not or a condition")
    cleaned = _walk(value, path, 0, [0])
    try:
        rule = _NODE.validate_python(cleaned)
    except ValidationError as exc:
        raise _clean_paths(invalid(exc, path)) from None
    if _depth(rule) > MAX_DEPTH:
        raise InvalidArgument.field(path, f"is nested too deeply (at most {MAX_DEPTH} levels of all/any/not)")
    return rule


def _clean_paths(exc: InvalidArgument) -> InvalidArgument:
    """Drop the union tags (``~text``) pydantic puts in error locations."""
    items = []
    for v in exc.violations:
        field = ".".join(p for p in v["field"].split(".") if not p.startswith("~"))
        field = re.sub(r"\.~[a-z]+(?=\[|$)", "", field)
        items.append({"field": field, "description": v["description"]})
    first = items[0]
    more = f" (and {len(items) - 1} more)" if len(items) > 1 else ""
    return InvalidArgument(f"{first['field']}: {first['description']}{more}", violations=items)


def dump(rule: Rule) -> dict[str, Any]:
    """The rule as JSON (what is stored, and what clients read back)."""
    return rule.model_dump(mode="json", by_alias=True, exclude_none=True)


def conditions(rule: Rule):
    """Every condition of the rule (depth first)."""
    if isinstance(rule, All):
        for n in rule.all:
            yield from conditions(n)
    elif isinstance(rule, Any_):
        for n in rule.any:
            yield from conditions(n)
    elif isinstance(rule, Not):
        yield from conditions(rule.not_)
    else:
        yield rule


def is_time_relative(rule: Rule) -> bool:
    """Whether time alone can change who matches (so a periodic re-check is needed)."""
    return any(c.op in TIME_RELATIVE_OPS or c.field in TIME_RELATIVE_FIELDS for c in conditions(rule))
