"""dict (docs/rpc.md wire form) <-> crm.v1 protobuf conversion."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

subprocess.run([str(Path(__file__).resolve().parents[2] / "scripts" / "gen-proto.sh")], check=True)

from google.protobuf.timestamp_pb2 import Timestamp  # noqa: E402

from crm.v1 import common_pb2, contacts_pb2  # noqa: E402
from crm_common.errors import InvalidArgument  # noqa: E402
from crm_gateway import convert  # noqa: E402

CONTACT = {
    "id": "con_1", "version": 2, "created_at": "2026-11-25T20:00:00.000Z", "updated_at": "2026-11-25T20:00:00+00:00",
    "given_name": "Sara", "family_name": "Ahmadi", "display_name": "Sara Ahmadi",
    "emails": [{"address": "s@example.com", "label": "work", "primary": True}],
    "phones": [{"number": "+98912", "label": "mobile"}], "company_id": None,
    "birthday": None, "gender": "female", "locale": None, "address": None, "tags": ["vip", "tea"],
    "lifecycle_stage": "lead", "owner": "agent-7",
    "custom_fields": {"n": 42, "s": "x", "f": 1.5, "b": False},
    "consents": {"email": {"granted": True, "source": "web", "at": "2026-11-25T20:00:00Z"}, "sms": None},
    "erased": False,
}


def test_timestamps():
    ts = Timestamp()
    convert.set_timestamp(ts, "2026-11-25T20:00:00.123Z")
    assert convert.timestamp_to_iso(ts) == "2026-11-25T20:00:00.123Z"
    ts = Timestamp()
    convert.set_timestamp(ts, "2026-11-25T21:30:00+01:30")  # offset form
    assert convert.timestamp_to_iso(ts) == "2026-11-25T20:00:00.000Z"
    ts = Timestamp()
    convert.set_timestamp(ts, "2026-11-25T20:00:00")  # naive = UTC
    assert convert.timestamp_to_iso(ts) == "2026-11-25T20:00:00.000Z"
    ts = Timestamp()
    convert.set_timestamp(ts, None)
    assert ts.seconds == 0


def test_contact_to_proto_and_back():
    c = convert.contact_to_proto(CONTACT)
    assert c.id == "con_1" and c.version == 2 and c.company_id == "" and c.birthday == ""
    assert not c.HasField("address") and c.created_at.seconds == c.updated_at.seconds > 0
    assert {k: v.WhichOneof("kind") for k, v in c.custom_fields.items()} == {
        "n": "int_value", "s": "string_value", "f": "double_value", "b": "bool_value"}
    assert c.custom_fields["b"].bool_value is False
    assert set(c.consents) == {"email"} and c.consents["email"].source == "web"
    d = convert.contact_input_to_dict(c)
    assert d["custom_fields"] == {"n": 42, "s": "x", "f": 1.5, "b": False}
    assert isinstance(d["custom_fields"]["n"], int) and isinstance(d["custom_fields"]["b"], bool)
    assert d["consents"] == {"email": {"granted": True, "source": "web"}}
    assert d["emails"] == CONTACT["emails"] and d["phones"] == CONTACT["phones"]
    assert "birthday" not in d and "address" not in d and "id" not in d and "version" not in d


def test_changes_follow_the_mask_and_clear_with_empty_values():
    c = contacts_pb2.Contact(given_name="New", owner="", tags=[], gender="x")
    changes = convert.contact_changes_to_dict(c, ["given_name", "owner", "tags", "address", "custom_fields"])
    assert changes == {"given_name": "New", "owner": None, "tags": [], "address": None, "custom_fields": {}}
    c.address.city = "Tehran"
    assert convert.contact_changes_to_dict(c, ["address"])["address"]["city"] == "Tehran"


def test_bad_masks_and_values():
    with pytest.raises(InvalidArgument) as ei:
        convert.contact_changes_to_dict(contacts_pb2.Contact(), [])
    assert ei.value.violations[0]["field"] == "update_mask"
    with pytest.raises(InvalidArgument) as ei:
        convert.contact_changes_to_dict(contacts_pb2.Contact(), ["given_name", "version", "id"])
    assert [v["field"] for v in ei.value.violations] == ["update_mask.paths[1]", "update_mask.paths[2]"]
    c = contacts_pb2.Contact()
    c.custom_fields["empty"].SetInParent()
    with pytest.raises(InvalidArgument) as ei:
        convert.contact_input_to_dict(c)
    assert ei.value.violations[0]["field"] == "contact.custom_fields[empty]"


def test_loyalty_shapes():
    r = convert.points_response_to_proto({
        "entry": {"id": "led_1", "contact_id": "con_1", "kind": "earn", "points": 12, "balance_after": 30,
                  "source": "pos", "source_ref": "r", "reason": None,
                  "amount": {"amount_minor": 1234, "currency": "EUR"}, "occurred_at": "2026-11-25T20:00:00Z"},
        "member": {"contact_id": "con_1", "member_id": "mem_1", "status": "active", "tier": "silver",
                   "balance": 30, "points_earned_12m": 1200, "enrolled_at": "2026-01-01T00:00:00Z",
                   "display_name": "S", "version": 5, "next_expiry": {"points": 4, "at": "2027-01-01T00:00:00Z"}}})
    assert r.entry.amount == common_pb2.Money(amount_minor=1234, currency="EUR") and r.entry.reason == ""
    assert r.member.tier == "silver" and r.member.next_expiry.points == 4
    assert convert.money_to_dict(r.entry.amount) == {"amount_minor": 1234, "currency": "EUR"}
    e = convert.ledger_entry_to_proto({"id": "led_2", "points": -5, "amount": None})
    assert not e.HasField("amount") and e.points == -5


def test_timeline_entry_data_struct():
    e = convert.timeline_entry_to_proto({"id": "tl_1", "kind": "loyalty", "data": {"points": 12, "ledger_id": "led_1"},
                                         "occurred_at": "2026-11-25T20:00:00Z"})
    assert e.data["ledger_id"] == "led_1" and e.data["points"] == 12
