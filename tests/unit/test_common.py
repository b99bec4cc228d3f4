"""Shared library rules: ids, clock, money, errors' wire form, validation, outbox staging."""
from datetime import datetime, timezone

import pytest

from crm_common import clock, errors, events, ids, validation
from crm_common.money import Money


def test_new_ids_are_prefixed_unique_and_sort_by_time():
    a = ids.new_id("con", at_ms=1_700_000_000_000)
    b = ids.new_id("con", at_ms=1_700_000_000_001)
    assert a.startswith("con_") and len(a) == 4 + 26
    assert a < b
    assert len({ids.new_id("con") for _ in range(1000)}) == 1000


def test_derived_ids_are_deterministic_and_part_sensitive():
    assert ids.derived_id("led", "earn", "pos", "1") == ids.derived_id("led", "earn", "pos", "1")
    assert ids.derived_id("led", "earn", "pos", "1") != ids.derived_id("led", "earn", "pos1", "")


def test_iso_round_trip_is_utc_millisecond():
    t = datetime(2026, 11, 25, 20, 0, 1, 123456, tzinfo=timezone.utc)
    assert clock.to_iso(t) == "2026-11-25T20:00:01.123Z"
    assert clock.from_iso("2026-11-25T23:30:01.123+03:30") == t.replace(microsecond=123000)
    assert clock.from_iso("2026-11-25T20:00:01").tzinfo is not None
    with pytest.raises(ValueError):
        clock.from_iso("yesterday")


@pytest.mark.parametrize("value, field", [
    ({"amount_minor": 1.5, "currency": "EUR"}, "amount.amount_minor"),
    ({"amount_minor": True, "currency": "EUR"}, "amount.amount_minor"),
    ({"amount_minor": 100, "currency": "eur"}, "amount.currency"),
    ("100 EUR", "amount"),
])
def test_money_refuses_anything_but_integer_minor_units(value, field):
    with pytest.raises(errors.InvalidArgument) as exc:
        Money.from_wire(value)
    assert exc.value.violations[0]["field"] == field


def test_money_round_trip():
    assert Money.from_wire({"amount_minor": 1250, "currency": "IRR"}).to_wire() == {"amount_minor": 1250, "currency": "IRR"}


def test_errors_rebuild_from_nameko_wire_form():
    err = errors.InvalidArgument.field("emails[0].address", "is not a valid email address")
    wire = {"exc_type": "InvalidArgument", "exc_path": "crm_common.errors.InvalidArgument",
            "value": str(err), "exc_args": list(err.args)}
    rebuilt = errors.from_remote(wire)
    assert isinstance(rebuilt, errors.InvalidArgument)
    assert rebuilt.violations == [{"field": "emails[0].address", "description": "is not a valid email address"}]
    dup = errors.AlreadyExists("email taken", {"existing_id": "con_1"})
    rebuilt = errors.from_remote({"exc_type": "AlreadyExists", "exc_path": "crm_common.errors.AlreadyExists",
                                  "exc_args": list(dup.args)})
    assert rebuilt.details["existing_id"] == "con_1" and rebuilt.code == "ALREADY_EXISTS"


def test_foreign_errors_are_not_rebuilt():
    assert errors.from_remote({"exc_type": "NotFound", "exc_path": "somewhere.else.NotFound", "exc_args": []}) is None
    assert errors.from_remote({"exc_type": "KeyError", "exc_path": "builtins.KeyError"}) is None


def test_violations_collect_then_raise_once():
    v = validation.Violations()
    v.add("a", "is required")
    v.add("b", "is too long")
    with pytest.raises(errors.InvalidArgument) as exc:
        v.raise_if_any()
    assert [x["field"] for x in exc.value.violations] == ["a", "b"]
    assert "a: is required" in str(exc.value)


def test_outbox_staging_keeps_events_with_the_state_change():
    e1 = events.envelope("thing_made", source="s", subject="t", data={})
    e2 = events.envelope("thing_changed", source="s", subject="t", data={})
    doc = events.stage_on_insert({"_id": "t"}, [e1])
    assert doc[events.OUTBOX] == {e1["event_id"]: e1} and doc[events.OUTBOX_COUNT] == 1
    update = events.stage_on_update({"$set": {"x": 1}, "$inc": {"version": 1}}, [e2])
    assert update["$set"][f"{events.OUTBOX}.{e2['event_id']}"] == e2
    assert update["$set"]["x"] == 1 and update["$inc"] == {"version": 1, events.OUTBOX_COUNT: 1}



def test_an_export_is_portable_json_without_the_storage_bookkeeping():
    from bson import ObjectId
    from crm_common.privacy import portable
    stored = {"_id": "con_1", "given_name": "Sara", "_outbox": {"e1": {}}, "_outbox_n": 1,
              "created_at": datetime(2026, 12, 2, 10, 0, tzinfo=timezone.utc), "raw": b"\x00\x01",
              "lines": [{"_seq": 1, "sku": "A", "oid": ObjectId("0123456789abcdef01234567")}]}
    assert portable(stored) == {"id": "con_1", "given_name": "Sara", "created_at": "2026-12-02T10:00:00.000Z",
                                "raw": "AAE=", "lines": [{"sku": "A", "oid": "0123456789abcdef01234567"}]}
