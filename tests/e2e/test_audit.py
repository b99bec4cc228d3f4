"""The audit trail through the real gateway and services: every change with its
principal, request id and before/after, refused calls, reads by record and by
principal, and an erasure that leaves the entries but no personal data in them."""
from __future__ import annotations

import json
import urllib.request
import uuid

import grpc
import pytest
from google.protobuf import field_mask_pb2, json_format
from prometheus_client.parser import text_string_to_metric_families

from crm.v1 import audit_pb2, audit_pb2_grpc, contacts_pb2, contacts_pb2_grpc
from crm_common import access
from helpers import new_contact
from stack import rpc_call

pytestmark = pytest.mark.e2e


def trail(channel, **request) -> list[audit_pb2.AuditEntry]:
    return list(audit_pb2_grpc.AuditStub(channel).ListAudit(
        audit_pb2.ListAuditRequest(service="contacts", **request), timeout=10).entries)


def plain(entry) -> dict:
    return json_format.MessageToDict(entry, preserving_proto_field_name=True)


def test_every_change_is_recorded_with_who_when_which_request_and_before_after(channel, connect):
    rid = f"audit-{uuid.uuid4().hex[:8]}"
    alice = contacts_pb2_grpc.ContactsServiceStub(connect("sales_rep", subject="alice-a", team="north"))
    created = alice.CreateContact(contacts_pb2.CreateContactRequest(contact=contacts_pb2.Contact(
        given_name="Mina", family_name=rid, emails=[contacts_pb2.Email(address=f"{rid}@example.com")])),
        timeout=10, metadata=[("x-request-id", rid)])
    agent = contacts_pb2_grpc.ContactsServiceStub(connect("support_agent", subject="sam-a"))
    agent.UpdateContact(contacts_pb2.UpdateContactRequest(
        contact_id=created.id, expected_version=created.version, contact=contacts_pb2.Contact(given_name="Minoo"),
        update_mask=field_mask_pb2.FieldMask(paths=["given_name"])), timeout=10)
    agent.SetConsent(contacts_pb2.SetConsentRequest(contact_id=created.id, channel="email", granted=True,
                                                    source="phone call"), timeout=10)

    entries = trail(channel, record_id=created.id)
    assert [e.operation for e in entries] == ["set_consent", "update", "create"]   # newest first
    consent, update, create = (plain(e) for e in entries)
    assert create["principal"] == "user:alice-a" and create["roles"] == ["sales_rep"] and create["via"] == "gateway"
    assert create["request_id"] == rid and create["record_type"] == "contact" and create["service"] == "contacts"
    assert create["after"]["given_name"] == "Mina" and create["after"]["owner"] == "alice-a" and create["before"] == {}
    assert update["principal"] == "user:sam-a"
    assert update["before"] == {"given_name": "Mina", "display_name": "Mina " + rid}
    assert update["after"] == {"given_name": "Minoo", "display_name": "Minoo " + rid}
    assert consent["before"]["consents"]["email"]["granted"] is False
    assert consent["after"]["consents"]["email"]["granted"] is True
    assert consent["after"]["consents"]["email"]["source"] == "phone call"
    assert [e.record_id for e in trail(channel, principal="user:sam-a")][:2] == [created.id, created.id]


def test_reading_the_trail_needs_audit_read_and_names_a_service(channel, connect):
    lead = audit_pb2_grpc.AuditStub(connect("support_lead"))
    with pytest.raises(grpc.RpcError) as exc:
        lead.ListAudit(audit_pb2.ListAuditRequest(service="contacts"), timeout=10)
    assert exc.value.code() is grpc.StatusCode.PERMISSION_DENIED and "audit.read" in exc.value.details()
    with pytest.raises(grpc.RpcError) as exc:
        audit_pb2_grpc.AuditStub(channel).ListAudit(audit_pb2.ListAuditRequest(service="nowhere"), timeout=10)
    assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "contacts" in exc.value.details()


def test_a_logged_interaction_names_who_logged_it_and_the_request(channel, connect):
    contact = new_contact(contacts_pb2_grpc.ContactsServiceStub(channel))
    agent = contacts_pb2_grpc.ContactsServiceStub(connect("support_agent", subject="lena-t"))
    rid = f"call-{uuid.uuid4().hex[:8]}"
    entry = agent.LogInteraction(contacts_pb2.LogInteractionRequest(
        contact_id=contact.id, channel="phone", direction="inbound", summary="asked about delivery"),
        timeout=10, metadata=(("x-request-id", rid),))
    assert (entry.logged_by, entry.request_id) == ("user:lena-t", rid)
    listed = contacts_pb2_grpc.ContactsServiceStub(channel).ListTimeline(
        contacts_pb2.ListTimelineRequest(contact_id=contact.id), timeout=10).entries
    assert [(e.logged_by, e.request_id) for e in listed if e.id == entry.id] == [("user:lena-t", rid)]


def test_a_call_refused_through_the_gateway_is_in_the_trail_of_the_service_it_was_for(stack, channel, connect):
    marketer = contacts_pb2_grpc.ContactsServiceStub(connect("marketer", subject="mark-g"))
    rid = f"refused-{uuid.uuid4().hex[:8]}"
    counted = denied_count(stack)
    with pytest.raises(grpc.RpcError) as exc:
        marketer.EraseContact(contacts_pb2.EraseContactRequest(contact_id="con_someone"), timeout=10,
                              metadata=(("x-request-id", rid),))
    assert exc.value.code() is grpc.StatusCode.PERMISSION_DENIED and "contacts.erase" in exc.value.details()
    entry = plain(trail(channel, principal="user:mark-g")[0])
    assert (entry["operation"], entry["record_id"], entry["request_id"]) == ("denied", "contacts.erase_contact", rid)
    assert entry["roles"] == ["marketer"] and entry["via"] == "gateway"
    assert denied_count(stack) == counted + 1        # and counted, for the burst alert


def denied_count(stack) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.metrics_ports['gateway']}/metrics", timeout=5) as r:
        families = text_string_to_metric_families(r.read().decode())
    return next(s.value for f in families if f.name == "crm_gateway_denied" for s in f.samples
                if s.name == "crm_gateway_denied_total" and s.labels == {"reason": "PERMISSION_DENIED"})


def test_a_refused_call_is_recorded(stack, channel):
    forged = access.mint(access.Principal("user:mallory", ("admin",)), "not-the-secret-but-long-enough-000000")
    with pytest.raises(RuntimeError):
        rpc_call(stack.amqp_uri, "contacts", "erase_contact", {"contact_id": "con_x"}, timeout=10, token=forged)
    marketer = stack.internal_token("marketer", subject="user:mark-a")
    with pytest.raises(RuntimeError):
        rpc_call(stack.amqp_uri, "contacts", "erase_contact", {"contact_id": "con_x"}, timeout=10, token=marketer)
    entries = [plain(e) for e in trail(channel, record_id="contacts.erase_contact")]
    assert entries[0]["operation"] == "denied" and entries[0]["principal"] == "user:mark-a"
    assert "may not contacts.erase" in entries[0]["after"]["reason"]
    assert entries[1].get("principal", "") == "" and "not valid" in entries[1]["after"]["reason"]


def test_erasure_keeps_the_entries_and_leaves_no_personal_data_in_them(stack, channel, db):
    contacts = contacts_pb2_grpc.ContactsServiceStub(channel)
    person = new_contact(contacts, given="Parvaneh", family=f"Secret{uuid.uuid4().hex[:6]}")
    contacts.UpdateContact(contacts_pb2.UpdateContactRequest(
        contact_id=person.id, expected_version=person.version,
        contact=contacts_pb2.Contact(phones=[contacts_pb2.Phone(number="+989121112233")]),
        update_mask=field_mask_pb2.FieldMask(paths=["phones"])), timeout=10)
    contacts.EraseContact(contacts_pb2.EraseContactRequest(contact_id=person.id), timeout=10)

    entries = trail(channel, record_id=person.id)
    assert [e.operation for e in entries] == ["erase", "update", "create"]
    stored = list(db("contacts")["audit"].find({"contact_id": person.id}))
    assert len(stored) == 3
    for text in (json.dumps([plain(e) for e in entries], ensure_ascii=False), repr(stored)):
        for secret in (person.family_name, "Parvaneh", person.emails[0].address, "989121112233"):
            assert secret not in text
    update = plain(entries[1])
    assert update["before"] == {"phones": "[erased]"} and update["after"] == {"phones": "[erased]"}
    assert set(plain(entries[0])["after"]) >= {"given_name", "emails", "erased"}


def test_points_changes_name_who_asked_in_the_ledger_even_when_served_in_a_batch(channel, connect):
    from concurrent.futures import ThreadPoolExecutor

    from crm.v1 import common_pb2, loyalty_pb2, loyalty_pb2_grpc
    member = new_contact(contacts_pb2_grpc.ContactsServiceStub(channel), loyalty=True)
    leads = [loyalty_pb2_grpc.LoyaltyServiceStub(connect("support_lead", subject=f"lead-{i}")) for i in range(4)]
    loyalty_pb2_grpc.LoyaltyServiceStub(channel).Enroll(loyalty_pb2.EnrollRequest(contact_id=member.id), timeout=10)

    def earn(i):   # concurrent requests for one member are written together, by one worker
        return leads[i].EarnPoints(loyalty_pb2.EarnPointsRequest(
            contact_id=member.id, source="goodwill", source_ref=f"g{i}",
            amount=common_pb2.Money(amount_minor=1000 * (i + 1), currency="EUR")), timeout=10)

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(earn, range(4)))
    ledger = loyalty_pb2_grpc.LoyaltyServiceStub(channel).ListLedger(
        loyalty_pb2.ListLedgerRequest(contact_id=member.id), timeout=10).entries
    by_entry = {e.id: e.principal for e in ledger if e.kind == "earn"}
    assert by_entry == {a.entry.id: f"user:lead-{i}" for i, a in enumerate(answers)}
    assert all(e.request_id.startswith("gateway.EarnPoints.") for e in ledger if e.kind == "earn")


def test_a_record_owner_reads_the_trail_of_their_own_records_and_a_manager_their_teams(channel, connect):
    from crm.v1 import sales_pb2, sales_pb2_grpc
    from helpers import money

    contact = new_contact(contacts_pb2_grpc.ContactsServiceStub(channel))
    uma = connect("sales_rep", subject="uma-a", team="east")
    deal = sales_pb2_grpc.SalesServiceStub(uma).CreateDeal(sales_pb2.CreateDealRequest(deal=sales_pb2.Deal(
        name="Uma's", contact_id=contact.id, amount=money(100))), timeout=10)
    sales_pb2_grpc.SalesServiceStub(uma).MoveDeal(sales_pb2.MoveDealRequest(deal_id=deal.id, stage_id="proposal"),
                                                  timeout=10)

    def sales_trail(ch, **request):
        return list(audit_pb2_grpc.AuditStub(ch).ListAudit(
            audit_pb2.ListAuditRequest(service="sales", **request), timeout=10).entries)

    mine = sales_trail(uma, record_id=deal.id)
    assert [e.operation for e in mine] == ["move", "create"]
    assert all(e.record_id == deal.id for e in sales_trail(uma))      # nothing about records that are not hers
    assert sales_trail(connect("sales_rep", subject="vic-a", team="east"), record_id=deal.id) == []
    assert [e.operation for e in sales_trail(connect("sales_manager", subject="eve-a", team="east"),
                                             record_id=deal.id)] == ["move", "create"]
    assert sales_trail(connect("sales_manager", subject="wes-a", team="west"), record_id=deal.id) == []
    code = None
    try:
        sales_trail(connect("marketer", subject="mo-a"), record_id=deal.id)
    except grpc.RpcError as exc:
        code = exc.code()
    assert code is grpc.StatusCode.PERMISSION_DENIED
