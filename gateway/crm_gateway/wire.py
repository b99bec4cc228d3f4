"""One generic mapping between crm.v1 protobuf messages and the services' JSON dicts.

Request -> kwargs (:func:`to_dict`): every field of the message, by its proto name,
proto3 defaults included ("" / 0 / false / [] / {}); None for an unset message and an
unset ``optional`` scalar. The services' contract models (crm_common.contracts) read
exactly that shape.

Result -> response (:func:`fill`): the keys of the service's dict that name a field
of the response; unknown keys are ignored (a service may add fields before the proto
does) and None leaves a field unset.

Type by type: enums by name, bytes as base64 text (nameko's bodies are JSON), and
well-known types the way proto3 JSON writes them (Timestamp as an ISO-8601 string,
FieldMask as a list of paths, Struct as an object, wrappers as their value). One
crm.v1 type has a JSON shape of its own: ``CustomFieldValue`` (a oneof of scalars) is
the scalar itself. There are no per-RPC converters: a new RPC needs none.

The plans (what to do per field) are computed once per message type; this runs on
every call, so it stays a tight loop over precomputed tuples.
"""
from __future__ import annotations

import base64
from datetime import timezone
from typing import Any, Callable

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from crm_common import clock
from crm_common.errors import InvalidArgument

_MSG = FieldDescriptor.CPPTYPE_MESSAGE
_ENUM = FieldDescriptor.CPPTYPE_ENUM
_BYTES = FieldDescriptor.TYPE_BYTES

_WRAPPERS = {f"google.protobuf.{n}Value" for n in
             ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")}


# --------------------------------------------------------------------------- special types

def _timestamp_out(ts: Timestamp) -> str:
    return clock.to_iso(ts.ToDatetime(tzinfo=timezone.utc))


def _timestamp_in(ts: Timestamp, value: Any) -> None:
    ts.FromJsonString(value)


def _custom_out(msg: Message) -> Any:
    kind = msg.WhichOneof("kind")
    return None if kind is None else getattr(msg, kind)


def _custom_in(msg: Message, value: Any) -> None:
    if isinstance(value, bool):
        msg.bool_value = value
    elif isinstance(value, int):
        msg.int_value = value
    elif isinstance(value, float):
        msg.double_value = value
    elif isinstance(value, str):
        msg.string_value = value
    else:
        raise TypeError(f"custom field value of type {type(value).__name__}")


def _json_in(msg: Message, value: Any) -> None:
    json_format.ParseDict(value, msg)


# full name -> (message -> JSON value, (message, JSON value) -> None)
SPECIAL: dict[str, tuple[Callable[[Message], Any], Callable[[Message, Any], None]]] = {
    "google.protobuf.Timestamp": (_timestamp_out, _timestamp_in),
    "google.protobuf.FieldMask": (lambda m: list(m.paths), lambda m, v: m.paths.extend(v)),
    "google.protobuf.Struct": (json_format.MessageToDict, lambda m, v: m.update(v)),
    "google.protobuf.Value": (json_format.MessageToDict, _json_in),
    "google.protobuf.ListValue": (json_format.MessageToDict, _json_in),
    "crm.v1.CustomFieldValue": (_custom_out, _custom_in),
    **{name: (lambda m: m.value, lambda m, v: setattr(m, "value", v)) for name in _WRAPPERS},
}


# --------------------------------------------------------------------------- message -> dict

_OUT: dict[str, tuple] = {}


def _value_out(field: FieldDescriptor) -> Callable[[Any], Any] | None:
    """How one value of ``field`` becomes JSON (None: it already is)."""
    if field.cpp_type == _MSG:
        special = SPECIAL.get(field.message_type.full_name)
        if special is not None:
            return special[0]
        desc = field.message_type
        return lambda m: _to_dict(m, desc)
    if field.cpp_type == _ENUM:
        names = {v.number: v.name for v in field.enum_type.values}
        return lambda n: names.get(n, n)
    if field.type == _BYTES:
        return lambda b: base64.b64encode(b).decode("ascii")
    return None


def _plan_out(desc: Descriptor) -> tuple:
    plan = []
    for f in desc.fields:
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            plan.append((f.name, "map", _value_out(f.message_type.fields_by_name["value"])))
        elif f.is_repeated:
            plan.append((f.name, "list", _value_out(f)))
        elif f.has_presence:
            plan.append((f.name, "optional", _value_out(f)))
        else:
            plan.append((f.name, "plain", _value_out(f)))
    return tuple(plan)


class _Unrepresentable(ValueError):
    """A value the wire form cannot hold (a Timestamp outside years 1-9999, nanos out of
    range), with the path of fields down to it."""

    def __init__(self, path: list[str], reason: str):
        super().__init__(reason)
        self.path, self.reason = path, reason


def to_dict(msg: Message, desc: Descriptor | None = None) -> dict[str, Any]:
    """The request as keyword arguments. A value that cannot be represented is
    InvalidArgument naming its field (``contact.updated_at``), never an internal error."""
    try:
        return _to_dict(msg, desc)
    except _Unrepresentable as exc:
        raise InvalidArgument.field(".".join(exc.path), exc.reason) from None


def _to_dict(msg: Message, desc: Descriptor | None = None) -> dict[str, Any]:
    desc = desc or msg.DESCRIPTOR
    plan = _OUT.get(desc.full_name)
    if plan is None:
        plan = _OUT[desc.full_name] = _plan_out(desc)
    out: dict[str, Any] = {}
    for name, shape, conv in plan:
        value = getattr(msg, name)
        try:
            if shape == "plain":
                out[name] = value if conv is None else conv(value)
            elif shape == "optional":
                out[name] = (value if conv is None else conv(value)) if msg.HasField(name) else None
            elif shape == "list":
                out[name] = list(value) if conv is None else [conv(v) for v in value]
            else:
                out[name] = dict(value) if conv is None else {k: conv(v) for k, v in value.items()}
        except _Unrepresentable as exc:
            raise _Unrepresentable([name, *exc.path], exc.reason) from None
        except (ValueError, OverflowError) as exc:   # protobuf's own check says what is wrong
            raise _Unrepresentable([name], str(exc)) from None
    return out


# --------------------------------------------------------------------------- dict -> message

_IN: dict[str, dict[str, tuple]] = {}


def _value_in(field: FieldDescriptor):
    """How a JSON value is written into ``field``: ("set", conv) for scalars, ("msg", writer)
    for messages (writer(message, value))."""
    if field.cpp_type == _MSG:
        special = SPECIAL.get(field.message_type.full_name)
        return ("msg", special[1] if special is not None else fill)
    if field.cpp_type == _ENUM:
        numbers = {v.name: v.number for v in field.enum_type.values}
        return ("set", lambda v: numbers[v] if isinstance(v, str) else v)
    if field.type == _BYTES:
        return ("set", lambda v: base64.b64decode(v) if isinstance(v, str) else v)
    return ("set", None)


def _plan_in(desc: Descriptor) -> dict[str, tuple]:
    plan = {}
    for f in desc.fields:
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            plan[f.name] = ("map", *_value_in(f.message_type.fields_by_name["value"]))
        elif f.is_repeated:
            plan[f.name] = ("list", *_value_in(f))
        else:
            plan[f.name] = ("one", *_value_in(f))
    return plan


def fill(msg: Message, data: dict[str, Any]) -> Message:
    """Write ``data`` into ``msg`` (see the module docstring) and return it."""
    desc = msg.DESCRIPTOR
    plan = _IN.get(desc.full_name)
    if plan is None:
        plan = _IN[desc.full_name] = _plan_in(desc)
    for key, value in data.items():
        if value is None:
            continue
        entry = plan.get(key)
        if entry is None:
            continue
        shape, how, conv = entry
        if shape == "one":
            if how == "set":
                setattr(msg, key, value if conv is None else conv(value))
            else:
                sub = getattr(msg, key)
                sub.SetInParent()
                conv(sub, value)
        elif shape == "list":
            target = getattr(msg, key)
            if how == "set":
                target.extend(value if conv is None else [conv(v) for v in value])
            else:
                for item in value:
                    conv(target.add(), item)
        else:
            target = getattr(msg, key)
            for k, v in value.items():
                if v is None:
                    continue
                if how == "set":
                    target[k] = v if conv is None else conv(v)
                else:
                    conv(target[k], v)
    return msg
