"""The one generic protobuf <-> dict mapping of the gateway (crm_gateway.wire)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

subprocess.run([str(Path(__file__).resolve().parents[2] / "scripts" / "gen-proto.sh")], check=True)

from crm.v1 import common_pb2, contacts_pb2, diagnostics_pb2, loyalty_pb2  # noqa: E402
from crm_common.errors import InvalidArgument  # noqa: E402
from crm_gateway import wire  # noqa: E402

CONTACT = {
    "id": "con_1", "version": 2, "created_at": "2026-11-25T20:00:00.000Z", "updated_at": "2026-11-25T20:00:00+00:00",
    "given_name": "Sara", "family_name": "Ahmadi", "display_name": "Sara Ahmadi",
    "emails": [{"address": "s@example.com", "label": "work", "primary": True}],
    "phones": [{"number": "+98912", "label": "mobile"}], "company_id": None,
    "birthday": None, "gender": "female", "locale": None, "address": None, "tags": ["vip", "tea"],
    "lifecycle_stage": "lead", "owner": "agent-7",
    "custom_fields": {"n": 42, "s": "x", "f": 1.5, "b": False},
    "consents": {"email": {"granted": True, "source": "web", "at": "2026-11-25T20:00:00Z"}, "sms": None},
    "erased": False, "something_new": {"a": 1},
}


def test_a_service_dict_fills_the_response_none_unset_unknown_ignored():
    c = wire.fill(contacts_pb2.Contact(), CONTACT)
    assert c.id == "con_1" and c.version == 2 and c.company_id == "" and c.birthday == ""
    assert not c.HasField("address") and c.created_at.seconds == c.updated_at.seconds > 0
    assert {k: v.WhichOneof("kind") for k, v in c.custom_fields.items()} == {
        "n": "int_value", "s": "string_value", "f": "double_value", "b": "bool_value"}
    assert c.custom_fields["b"].bool_value is False
    assert set(c.consents) == {"email"} and c.consents["email"].source == "web"


def test_a_request_becomes_every_field_by_proto_name_with_proto3_defaults():
    req = contacts_pb2.CreateContactRequest(contact=wire.fill(contacts_pb2.Contact(), CONTACT))
    d = wire.to_dict(req)
    assert set(d) == {"contact", "idempotency_key"} and d["idempotency_key"] == ""
    c = d["contact"]
    assert c["custom_fields"] == {"n": 42, "s": "x", "f": 1.5, "b": False}
    assert isinstance(c["custom_fields"]["n"], int) and isinstance(c["custom_fields"]["b"], bool)
    assert c["consents"] == {"email": {"granted": True, "source": "web", "at": "2026-11-25T20:00:00.000Z"}}
    assert c["emails"] == CONTACT["emails"] and c["phones"] == CONTACT["phones"]
    assert c["birthday"] == "" and c["address"] is None and c["version"] == 2 and c["erased"] is False
    assert c["created_at"] == "2026-11-25T20:00:00.000Z"


def test_unset_messages_are_none_set_empty_ones_are_objects():
    d = wire.to_dict(contacts_pb2.UpdateContactRequest(contact_id="con_1", update_mask={"paths": ["tags"]}))
    assert d["contact"] is None and d["update_mask"] == ["tags"] and d["expected_version"] == 0
    c = contacts_pb2.Contact()
    c.address.SetInParent()
    c.custom_fields["empty"].SetInParent()
    d = wire.to_dict(c)
    assert d["address"] == {"line1": "", "line2": "", "city": "", "region": "", "postal_code": "", "country": ""}
    assert d["custom_fields"] == {"empty": None}   # the service says what is wrong with it


def test_timestamps_money_struct_bytes():
    r = wire.fill(loyalty_pb2.PointsResponse(), {
        "entry": {"id": "led_1", "contact_id": "con_1", "kind": "earn", "points": 12, "balance_after": 30,
                  "source": "pos", "source_ref": "r", "reason": None,
                  "amount": {"amount_minor": 1234, "currency": "EUR"}, "occurred_at": "2026-11-25T21:30:00.5+01:30"},
        "member": {"contact_id": "con_1", "tier": "silver", "next_expiry": {"points": 4, "at": "2027-01-01T00:00:00Z"}}})
    assert r.entry.amount == common_pb2.Money(amount_minor=1234, currency="EUR") and r.entry.reason == ""
    assert wire.to_dict(r)["entry"]["occurred_at"] == "2026-11-25T20:00:00.500Z"
    assert r.member.tier == "silver" and r.member.next_expiry.points == 4
    e = wire.fill(contacts_pb2.TimelineEntry(), {"data": {"points": 12, "ledger_id": "led_1"}, "reference": None})
    assert e.data["ledger_id"] == "led_1" and e.data["points"] == 12 and not e.HasField("reference")
    assert wire.to_dict(diagnostics_pb2.EchoRequest(service="x", payload=b"\x00\xff")) == {
        "service": "x", "payload": "AP8="}
    assert wire.fill(diagnostics_pb2.EchoReply(), {"payload": "AP8="}).payload == b"\x00\xff"


def test_lists_of_messages_round_trip():
    res = wire.fill(contacts_pb2.SearchContactsResponse(), {"contacts": [CONTACT, CONTACT], "next_page_token": "t"})
    assert [c.id for c in res.contacts] == ["con_1", "con_1"] and res.next_page_token == "t"
    again = wire.fill(contacts_pb2.SearchContactsResponse(), wire.to_dict(res))
    assert again == res


@pytest.mark.parametrize("field,value,reason", [("seconds", -2**63, "Seconds"), ("seconds", 253402300800, "Seconds"),
                                                ("nanos", -1, "Nanos"), ("nanos", 10**9, "Nanos")])
def test_a_timestamp_outside_what_it_can_hold_is_invalid_argument_naming_its_field(field, value, reason):
    req = contacts_pb2.CreateContactRequest()
    setattr(req.contact.updated_at, field, value)
    with pytest.raises(InvalidArgument) as exc:
        wire.to_dict(req)
    assert exc.value.violations[0]["field"] == "contact.updated_at" and reason in str(exc.value)
