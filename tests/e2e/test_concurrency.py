"""Races through the gateway, as clients make them: the database's guarded writes decide
(MongoDB's single-document atomicity; our FerretDB build's too, tools/ferretdb), so a
balance never goes below zero and a stale version never wins."""
from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import grpc

from crm.v1 import contacts_pb2, loyalty_pb2
from helpers import member_or_none, money, new_contact, stubs, wait_for


def _code(call):
    try:
        call()
        return "OK"
    except grpc.RpcError as exc:
        return exc.code().name


def test_a_thousand_racing_redemptions_spend_exactly_the_balance(channel, db):
    contacts, loyalty = stubs(channel)
    contact = new_contact(contacts, loyalty=True, given="Racer")
    wait_for(lambda: member_or_none(loyalty, contact.id))
    loyalty.EarnPoints(loyalty_pb2.EarnPointsRequest(contact_id=contact.id, source="pos", source_ref=f"{contact.id}-1",
                                                     amount=money(30000)), timeout=10)   # 300 points
    redeem = loyalty_pb2.RedeemPointsRequest(contact_id=contact.id, points=1, reason="race")
    with ThreadPoolExecutor(64) as pool:
        codes = Counter(pool.map(lambda _: _code(lambda: loyalty.RedeemPoints(redeem, timeout=30)), range(1000)))
    assert codes == {"OK": 300, "FAILED_PRECONDITION": 700}
    member = loyalty.GetMember(loyalty_pb2.GetMemberRequest(contact_id=contact.id), timeout=10)
    assert member.balance == 0
    ledger = list(db("loyalty").ledger.find({"contact_id": contact.id}))
    assert sum(e["points"] for e in ledger) == member.balance == 0
    assert sorted(e["seq"] for e in ledger) == list(range(1, 302))   # one earn, 300 redemptions, no gaps
    assert min(e["balance_after"] for e in ledger) == 0


def test_of_twenty_updates_at_one_expected_version_exactly_one_wins(channel):
    contacts, _ = stubs(channel)
    contact = new_contact(contacts, given="Version")

    def update(i):
        return _code(lambda: contacts.UpdateContact(contacts_pb2.UpdateContactRequest(
            contact_id=contact.id, expected_version=contact.version, contact=contacts_pb2.Contact(owner=f"agent-{i}"),
            update_mask={"paths": ["owner"]}), timeout=10))

    with ThreadPoolExecutor(20) as pool:
        codes = Counter(pool.map(update, range(20)))
    assert codes == {"OK": 1, "ABORTED": 19}
    after = contacts.GetContact(contacts_pb2.GetContactRequest(contact_id=contact.id), timeout=10)
    assert after.version == contact.version + 1 and after.owner.startswith("agent-")
