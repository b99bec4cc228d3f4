"""A data subject's export through the gateway (crm.v1.Privacy/ExportContactData): what
every service holds about one person, for admins only, and what erasure leaves of it."""
from __future__ import annotations

import uuid

import grpc
import pytest
from google.protobuf import json_format

from crm.v1 import (contacts_pb2, contacts_pb2_grpc, privacy_pb2, privacy_pb2_grpc, sales_pb2,
                    sales_pb2_grpc, service_desk_pb2 as sd, service_desk_pb2_grpc as sd_grpc)
from helpers import member_or_none, money, new_contact, stubs, wait_for

pytestmark = pytest.mark.e2e


def export(channel, contact_id: str) -> dict[str, dict]:
    reply = privacy_pb2_grpc.PrivacyStub(channel).ExportContactData(
        privacy_pb2.ExportContactDataRequest(contact_id=contact_id), timeout=20)
    assert reply.contact_id == contact_id and reply.exported_at.endswith("Z")
    return {part.service: json_format.MessageToDict(part.records) for part in reply.services}


def test_an_admin_exports_what_every_service_holds_about_a_person(channel, connect):
    contacts, loyalty = stubs(channel)
    contact = new_contact(contacts, loyalty=True, given="Parisa", family=f"Export{uuid.uuid4().hex[:6]}")
    wait_for(lambda: member_or_none(loyalty, contact.id))
    contacts.LogInteraction(contacts_pb2.LogInteractionRequest(
        contact_id=contact.id, channel="phone", direction="inbound", summary="Parisa asked for her data"), timeout=10)
    order = sales_pb2_grpc.SalesServiceStub(channel).PlaceOrder(sales_pb2.PlaceOrderRequest(
        contact_id=contact.id, external_ref=f"web-{uuid.uuid4().hex[:8]}", channel="web", currency="EUR",
        lines=[sales_pb2.OrderLine(sku="TEA-1", name="Tea", quantity=1, unit_price=money(1_500))]), timeout=10)
    desk = sd_grpc.ServiceDeskServiceStub(channel)
    ticket = desk.OpenTicket(sd.OpenTicketRequest(contact_id=contact.id, subject="Where is my tea?",
                                                  description="Ordered last week.", category="late_delivery",
                                                  priority="normal", channel="email"), timeout=10)
    desk.ReplyToTicket(sd.ReplyToTicketRequest(ticket_id=ticket.id, body="Customer sounded upset", internal=True),
                       timeout=10)

    got = export(channel, contact.id)
    assert set(got) == {"contacts", "loyalty", "sales", "service-desk", "marketing"}
    assert got["contacts"]["contact"][0]["id"] == contact.id
    assert got["contacts"]["contact"][0]["given_name"] == "Parisa"
    assert "Parisa asked for her data" in [e["summary"] for e in got["contacts"]["timeline"]]
    assert [m["id"] for m in got["loyalty"]["member"]] == [contact.id]
    assert [o["id"] for o in got["sales"]["orders"]] == [order.id]
    assert [t["id"] for t in got["service-desk"]["tickets"]] == [ticket.id]
    assert "Customer sounded upset" in [m.get("body") for m in got["service-desk"]["ticket_messages"]]
    wait_for(lambda: export(channel, contact.id)["marketing"]["audience_profile"])   # a read model: eventually
    assert not any(key.startswith("_") for part in got.values() for records in part.values()
                   for record in records for key in record)   # no storage bookkeeping

    # erasure, then the export shows what was kept, nothing personal
    contacts.EraseContact(contacts_pb2.EraseContactRequest(contact_id=contact.id), timeout=10)
    wait_for(lambda: "Parisa" not in str(export(channel, contact.id)), timeout=20)
    assert "Parisa" not in str(export(channel, contact.id))


def test_only_an_admin_may_export_and_nobody_is_not_found(channel, connect):
    contact = new_contact(contacts_pb2_grpc.ContactsServiceStub(channel))
    for role in ("marketer", "support_lead", "analyst"):
        with pytest.raises(grpc.RpcError) as exc:
            privacy_pb2_grpc.PrivacyStub(connect(role)).ExportContactData(
                privacy_pb2.ExportContactDataRequest(contact_id=contact.id), timeout=10)
        assert exc.value.code() is grpc.StatusCode.PERMISSION_DENIED and "contacts.export" in exc.value.details()
    with pytest.raises(grpc.RpcError) as exc:
        export(channel, "con_nobody")
    assert exc.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as exc:
        export(channel, "")
    assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "contact_id" in exc.value.details()
