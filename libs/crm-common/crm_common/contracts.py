"""RPC argument models: the one definition of what an RPC accepts (pydantic v2).

Every RPC of a service declares a model (``class EarnPoints(Command): ...``) in the
service's ``contracts.py``; :func:`crm_common.nameko.base.rpc` validates the call's
keyword arguments against it before the method runs, so the gateway and an internal
caller get the same answer, with the same field paths (``contact.emails[0].address``),
for the same invalid input. The gateway checks only what is the edge's business
(message size, deadline, identity).

Conventions (the shape the gateway produces from a crm.v1 request, docs/rpc.md):

- Field names are the proto field names; a request carries every field of its proto
  message, proto3 defaults included ("" / 0 / false / [] / {}), and None for an unset
  message or timestamp. Optional strings therefore accept "" as "not given"
  (:data:`OptStr`), page_size 0 means the default.
- Models are strict: "5" is not an integer, 1 is not a boolean. Values that end up in a
  MongoDB filter are plain strings or integers by construction, never an operator dict.
- Top-level request models forbid unknown fields (a typo by an internal caller is an
  error, not a silently ignored argument).
"""
from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Annotated, Any, Callable, TypeVar

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer,
                      ValidationError)
from pydantic_core import PydanticCustomError

from . import clock
from .errors import InvalidArgument

M = TypeVar("M", bound=BaseModel)

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50
IDEMPOTENCY_KEY_MAX = 100


class Model(BaseModel):
    """Base of every contract model: strict types, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, regex_engine="python-re")


class Tolerant(Model):
    """For shapes a caller may send back as it received them: unknown (output-only)
    fields are ignored instead of refused."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True, regex_engine="python-re")


# --------------------------------------------------------------------------- field types

def error(kind: str, message: str) -> PydanticCustomError:
    """A validation error whose message is shown as is (``kind`` names the rule)."""
    return PydanticCustomError(f"crm_{kind}", message)


def _empty_to_none(value: Any) -> Any:
    return None if value == "" else value


def clean_text(value: str) -> str:
    """NFC, trimmed, inner whitespace collapsed; control characters refused."""
    text = " ".join(unicodedata.normalize("NFC", value).split())
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise error("control_characters", "must not contain control characters")
    return text


def _max_len(limit: int) -> Callable[[str], str]:
    def check(value: str) -> str:
        if len(value) > limit:
            raise error("too_long", f"must be at most {limit} characters")
        return value
    return check


def _required(value: str) -> str:
    if not value:
        raise error("required", "is required")
    return value


def Text(max_len: int, *, required: bool = False):  # noqa: N802 - a type factory
    """A cleaned one-line text of at most ``max_len`` characters ("" allowed unless required)."""
    checks = [AfterValidator(clean_text)]
    if required:
        checks.append(AfterValidator(_required))
    schema = Field(json_schema_extra={"maxLength": max_len, **({"minLength": 1} if required else {})})
    return Annotated[str, *checks, AfterValidator(_max_len(max_len)), schema]


def clean_paragraphs(value: str) -> str:
    """NFC, line ends as \n, trailing spaces of each line and blank lines at both ends
    dropped; control characters other than newline and tab refused."""
    lines = unicodedata.normalize("NFC", value).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    text = "\n".join(line.rstrip() for line in lines).strip("\n")
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in text):
        raise error("control_characters", "must not contain control characters other than newlines and tabs")
    return text if text.strip() else ""


def Paragraphs(max_len: int, *, required: bool = False):  # noqa: N802 - a type factory
    """A cleaned multi-line text (a message, a description, an article) of at most
    ``max_len`` characters ("" allowed unless required)."""
    checks = [AfterValidator(clean_paragraphs)]
    if required:
        checks.append(AfterValidator(_required))
    schema = Field(json_schema_extra={"maxLength": max_len, **({"minLength": 1} if required else {})})
    return Annotated[str, *checks, AfterValidator(_max_len(max_len)), schema]


def OptText(max_len: int):  # noqa: N802 - a type factory
    """Like :func:`Text`, but "" and None mean "not given" (None)."""
    return Annotated[str | None, BeforeValidator(_empty_to_none), AfterValidator(_none_if_blank(max_len)),
                     Field(json_schema_extra={"maxLength": max_len})]


def _none_if_blank(max_len: int) -> Callable[[str | None], str | None]:
    limit = _max_len(max_len)

    def check(value: str | None) -> str | None:
        if value is None:
            return None
        value = clean_text(value)
        return limit(value) if value else None
    return check


_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _id_shape(value: str) -> str:
    if not value:
        raise error("required", "is required")
    if not _ID.match(value):
        raise error("id", "must be an id such as con_01J... (letters, digits, '_' and '-', at most 64)")
    return value


#: A record id (``con_01J...``): a plain string that is safe in any filter.
Id = Annotated[str, AfterValidator(_id_shape), Field(json_schema_extra={"pattern": _ID.pattern})]


def _opt_id_shape(value: str | None) -> str | None:
    return None if value is None else _id_shape(value)


#: An optional record id: "" and None mean "not given" (None).
OptId = Annotated[str | None, BeforeValidator(_empty_to_none), AfterValidator(_opt_id_shape),
                  Field(json_schema_extra={"pattern": _ID.pattern})]


def _iso(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return clock.from_iso(value)
        except ValueError:
            raise error("timestamp", "must be an ISO-8601 timestamp such as 2026-11-25T20:00:00Z") from None
    return value


#: A timestamp: ISO-8601 on the wire, a timezone-aware UTC datetime in the model.
Timestamp = Annotated[datetime, BeforeValidator(_iso), PlainSerializer(clock.to_iso, return_type=str)]
OptTimestamp = Annotated[datetime | None, BeforeValidator(_iso), PlainSerializer(clock.to_iso, return_type=str | None)]

_KEY = re.compile(r"^[A-Za-z0-9._:/=+-]{1,100}$")


def _idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not _KEY.match(value):
        raise error("idempotency_key", f"must be 1 to {IDEMPOTENCY_KEY_MAX} characters of "
                                       "letters, digits and . _ : / = + -")
    return value


class Request(Model):
    """Base of RPC argument models."""


class Command(Request):
    """A request that changes state. With an ``idempotency_key``, a retry of the same
    request returns the first call's result instead of doing it again
    (crm_common.nameko.idempotency)."""

    idempotency_key: Annotated[str | None, BeforeValidator(_empty_to_none),
                               AfterValidator(_idempotency_key)] = None


class Page(Model):
    """``page_size`` (0 = the default, at most 500) and an opaque ``page_token``
    (crm_common.paging), as every list RPC takes them."""

    page_size: int = Field(0, ge=0, le=MAX_PAGE_SIZE)
    page_token: Annotated[str, BeforeValidator(lambda v: "" if v is None else v), AfterValidator(_max_len(1000))] = ""

    @property
    def size(self) -> int:
        return self.page_size or DEFAULT_PAGE_SIZE


# --------------------------------------------------------------------------- validation

_MESSAGES: dict[str, Callable[[dict[str, Any]], str]] = {
    "missing": lambda ctx: "is required",
    "extra_forbidden": lambda ctx: "unknown field",
    "string_type": lambda ctx: "must be a string",
    "int_type": lambda ctx: "must be an integer",
    "int_from_float": lambda ctx: "must be an integer",
    "float_type": lambda ctx: "must be a number",
    "bool_type": lambda ctx: "must be a boolean",
    "dict_type": lambda ctx: "must be an object",
    "model_type": lambda ctx: "must be an object",
    "model_attributes_type": lambda ctx: "must be an object",
    "list_type": lambda ctx: "must be a list",
    "datetime_type": lambda ctx: "must be an ISO-8601 timestamp",
    "string_too_long": lambda ctx: f"must be at most {ctx['max_length']} characters",
    "string_too_short": lambda ctx: ("is required" if ctx["min_length"] == 1
                                     else f"must be at least {ctx['min_length']} characters"),
    "too_long": lambda ctx: f"at most {ctx['max_length']} items",
    "too_short": lambda ctx: ("is required" if ctx["min_length"] == 1 else f"at least {ctx['min_length']} items"),
    "greater_than_equal": lambda ctx: f"must be at least {ctx['ge']}",
    "greater_than": lambda ctx: f"must be greater than {ctx['gt']}",
    "less_than_equal": lambda ctx: f"must be at most {ctx['le']}",
    "less_than": lambda ctx: f"must be less than {ctx['lt']}",
    "literal_error": lambda ctx: f"must be one of: {ctx['expected'].replace(chr(39), '')}",
    "enum": lambda ctx: f"must be one of: {ctx['expected'].replace(chr(39), '')}",
    "string_pattern_mismatch": lambda ctx: "has an invalid format",
}


def field_path(loc: tuple[Any, ...]) -> str:
    """``("contact", "emails", 0, "address")`` -> ``contact.emails[0].address``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not isinstance(part, str) or not part or part == "[key]" \
                or part.startswith(("function-", "union[", "nullable[")):
            continue  # pydantic's validator and union markers are not fields
        else:
            out += f".{part}" if out else part
    return out


def violations(exc: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    out, seen = [], set()
    for err in exc.errors(include_url=False, include_input=False):
        path = field_path(tuple(err["loc"]))
        path = f"{prefix}.{path}" if prefix and path else (prefix or path)
        describe = _MESSAGES.get(err["type"])
        text = describe(err.get("ctx") or {}) if describe else str(err["msg"]).removeprefix("Value error, ")
        if (path, text) not in seen:  # a union reports one failure per member: keep one
            seen.add((path, text))
            out.append({"field": path, "description": text})
    return out


def invalid(exc: ValidationError, prefix: str = "") -> InvalidArgument:
    items = violations(exc, prefix)
    first = items[0] if items else {"field": prefix, "description": "is invalid"}
    more = f" (and {len(items) - 1} more)" if len(items) > 1 else ""
    head = f"{first['field']}: " if first["field"] else ""
    return InvalidArgument(f"{head}{first['description']}{more}", violations=items)


def parse(model: type[M], data: Any, *, context: dict[str, Any] | None = None, prefix: str = "") -> M:
    """``model`` validated from ``data``, or InvalidArgument listing every violation."""
    if not isinstance(data, dict):
        raise InvalidArgument.field(prefix or "request", "must be an object")
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise invalid(exc, prefix) from None


def dump(model: BaseModel) -> dict[str, Any]:
    """The JSON-safe dict of a model (ISO timestamps)."""
    return model.model_dump(mode="json")
