"""The issue's scenarios, through the gateway as a client sees them."""
from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from crm.v1 import contacts_pb2, loyalty_pb2
from crm_common import registry
from helpers import member_or_none, money, new_contact, stubs, wait_for


@pytest.fixture(scope="module")
def api(channel):
    return stubs(channel)


def test_consenting_contact_becomes_a_member_and_it_shows_on_the_timeline(api):
    contacts, loyalty = api
    contact = new_contact(contacts, loyalty=True, given="مریم", family="رضایی")
    member = wait_for(lambda: member_or_none(loyalty, contact.id))
    assert member.status == "active" and member.tier == "bronze" and member.balance == 0
    assert member.display_name == "مریم رضایی"

    def enrolled_on_timeline():
        page = contacts.ListTimeline(contacts_pb2.ListTimelineRequest(contact_id=contact.id), timeout=5)
        return [e for e in page.entries if e.kind == "member_enrolled" and e.source == "loyalty"]
    assert len(wait_for(enrolled_on_timeline)) == 1


def test_contact_without_consent_is_not_enrolled(api):
    contacts, loyalty = api
    contact = new_contact(contacts, loyalty=False)
    wait_for(lambda: contacts.GetContact(contacts_pb2.GetContactRequest(contact_id=contact.id), timeout=5))
    assert member_or_none(loyalty, contact.id) is None


def test_same_email_twice_is_refused_with_the_existing_id(api):
    contacts, _ = api
    first = new_contact(contacts)
    again = contacts_pb2.Contact(given_name="Other", family_name="Person",
                                 emails=[contacts_pb2.Email(address=first.emails[0].address.upper())])
    with pytest.raises(grpc.RpcError) as exc:
        contacts.CreateContact(contacts_pb2.CreateContactRequest(contact=again), timeout=5)
    assert exc.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert first.id in exc.value.details()


def test_malformed_email_names_the_field(api):
    contacts, _ = api
    bad = contacts_pb2.Contact(given_name="Ali", emails=[contacts_pb2.Email(address="ali-at-example")])
    with pytest.raises(grpc.RpcError) as exc:
        contacts.CreateContact(contacts_pb2.CreateContactRequest(contact=bad), timeout=5)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "emails[0].address" in exc.value.details()


def test_earning_twice_for_the_same_purchase_counts_once(api):
    contacts, loyalty = api
    contact = new_contact(contacts, loyalty=True)
    wait_for(lambda: member_or_none(loyalty, contact.id))
    order = f"order-{uuid.uuid4().hex[:8]}"
    request = loyalty_pb2.EarnPointsRequest(contact_id=contact.id, source="pos", source_ref=order,
                                            amount=money(12_599))
    first = loyalty.EarnPoints(request, timeout=5)
    second = loyalty.EarnPoints(request, timeout=5)
    assert first.entry.points == 125 and second.entry.id == first.entry.id
    member = loyalty.GetMember(loyalty_pb2.GetMemberRequest(contact_id=contact.id), timeout=5)
    assert member.balance == 125
    ledger = loyalty.ListLedger(loyalty_pb2.ListLedgerRequest(contact_id=contact.id), timeout=5)
    assert [e.points for e in ledger.entries if e.kind == "earn"] == [125]


def test_concurrent_redemptions_never_overdraw(api):
    contacts, loyalty = api
    contact = new_contact(contacts, loyalty=True)
    wait_for(lambda: member_or_none(loyalty, contact.id))
    loyalty.EarnPoints(loyalty_pb2.EarnPointsRequest(contact_id=contact.id, source="pos", source_ref="o-1",
                                                     amount=money(10_000)), timeout=5)  # 100 points

    def redeem(i):
        try:
            loyalty.RedeemPoints(loyalty_pb2.RedeemPointsRequest(contact_id=contact.id, points=80,
                                                                 reason=f"voucher {i}"), timeout=30)
            return grpc.StatusCode.OK
        except grpc.RpcError as exc:
            return exc.code()

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(redeem, range(20)))
    assert codes.count(grpc.StatusCode.OK) == 1
    assert codes.count(grpc.StatusCode.FAILED_PRECONDITION) == 19
    member = loyalty.GetMember(loyalty_pb2.GetMemberRequest(contact_id=contact.id), timeout=5)
    assert member.balance == 20


def test_erasure_removes_personal_data_in_every_service(api, db):
    contacts, loyalty = api
    contact = new_contact(contacts, loyalty=True, given="Reza", family="Karimi",
                          phones=[contacts_pb2.Phone(number="+98 912 ۱۲۳ ۴۵۶۷", label="mobile")])
    wait_for(lambda: member_or_none(loyalty, contact.id))
    contacts.LogInteraction(contacts_pb2.LogInteractionRequest(
        contact_id=contact.id, channel="phone", direction="inbound", summary="Reza asked about his order"), timeout=5)

    erased = contacts.EraseContact(contacts_pb2.EraseContactRequest(contact_id=contact.id), timeout=5)
    assert erased.erased and not erased.emails and not erased.phones and "Reza" not in erased.display_name

    wait_for(lambda: loyalty.GetMember(loyalty_pb2.GetMemberRequest(contact_id=contact.id), timeout=5)
             .display_name == "")
    for service in [s.name for s in registry.load().services]:  # every service forgets them
        database = db(service)
        for name in database.list_collection_names():
            for doc in database[name].find({}):
                text = repr(doc)
                assert "Reza" not in text and "Karimi" not in text and contact.emails[0].address not in text, \
                    f"personal data left in {service}.{name}"


def test_unknown_id_is_not_found(api):
    contacts, loyalty = api
    with pytest.raises(grpc.RpcError) as exc:
        contacts.GetContact(contacts_pb2.GetContactRequest(contact_id="con_doesnotexist"), timeout=5)
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as exc:
        loyalty.GetMember(loyalty_pb2.GetMemberRequest(contact_id="con_doesnotexist"), timeout=5)
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND


def test_tiny_deadline_is_deadline_exceeded(api):
    contacts, _ = api
    with pytest.raises(grpc.RpcError) as exc:
        contacts.SearchContacts(contacts_pb2.SearchContactsRequest(text="a"), timeout=0.001)
    assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
