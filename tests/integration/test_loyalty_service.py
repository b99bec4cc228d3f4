"""The loyalty service in-process over the real broker and database.

Run: cd /work/main && .venv/bin/nameko test tests/integration/test_loyalty_service.py -q -p no:cacheprovider
"""
from __future__ import annotations

import time
import uuid
from types import SimpleNamespace

import eventlet
import pytest

from support.waiting import wait_for
from nameko.events import SERVICE_POOL, event_handler
from prometheus_client import REGISTRY
from pymongo import monitoring

from crm_common import clock
from crm_common.errors import CrmError, FailedPrecondition, InvalidArgument, NotFound
from crm_common.events import envelope
from crm_common.ids import derived_id
from loyalty.service import LoyaltyService
from loyalty.store import LoyaltyStore

SEEN: list[dict] = []


class LoyaltyEventSink:
    """A stand-in consumer of loyalty.events: records every envelope it gets."""

    name = "loyalty_sink_t"

    def _record(self, event):
        SEEN.append(event)

    @event_handler("loyalty", "member_enrolled", handler_type=SERVICE_POOL)
    def on_enrolled(self, event):
        self._record(event)

    @event_handler("loyalty", "points_earned", handler_type=SERVICE_POOL)
    def on_earned(self, event):
        self._record(event)

    @event_handler("loyalty", "points_redeemed", handler_type=SERVICE_POOL)
    def on_redeemed(self, event):
        self._record(event)

    @event_handler("loyalty", "points_expired", handler_type=SERVICE_POOL)
    def on_expired(self, event):
        self._record(event)

    @event_handler("loyalty", "tier_changed", handler_type=SERVICE_POOL)
    def on_tier(self, event):
        self._record(event)

    @event_handler("loyalty", "points_reversed", handler_type=SERVICE_POOL)
    def on_reversed(self, event):
        self._record(event)

    @event_handler("loyalty", "points_settled", handler_type=SERVICE_POOL)
    def on_settled(self, event):
        self._record(event)




def events_of(contact_id, type_):
    return [e for e in SEEN if e["subject"] == contact_id and e["type"] == type_]


def new_contact_id():
    return f"con_t{uuid.uuid4().hex[:12]}"


def eur(minor):
    return {"amount_minor": minor, "currency": "EUR"}


@pytest.fixture
def loyalty(make_config, start_service, mongo_client, rpc):
    """``loyalty(**extra_config)`` -> (config, rpc proxy to loyalty, database)."""
    def start(**extra):
        cfg = make_config("loyalty", **extra)
        start_service(LoyaltyEventSink, make_config("loyalty_sink"))
        start_service(LoyaltyService, cfg)
        return cfg, rpc(cfg).loyalty, mongo_client[cfg["MONGODB_DATABASE"]]
    return start


def contact_wire(contact_id, name="Sara Ahmadi", version=1, loyalty_granted=None):
    consents = {}
    if loyalty_granted is not None:
        consents["loyalty"] = {"granted": loyalty_granted, "source": "web-form", "at": clock.to_iso(clock.now())}
    return {"id": contact_id, "version": version, "display_name": name, "given_name": "Sara",
            "family_name": "Ahmadi", "consents": consents, "erased": False}


def contacts_event(type_, contact_id, data, event_id=None):
    return envelope(type_, source="contacts", subject=contact_id, data=data, event_id=event_id)


def consent_event(contact_id, granted, at=None, name="Sara Ahmadi"):
    return contacts_event("consent_changed", contact_id, {
        "contact_id": contact_id, "channel": "loyalty", "granted": granted, "source": "app",
        "at": clock.to_iso(at or clock.now()), "display_name": name})


def handled_count(event_type):
    """Deliveries of ``event_type`` the loyalty service finished (its handlers keep no
    markers: they are idempotent by construction; the metric says a delivery was handled)."""
    return sum(REGISTRY.get_sample_value("crm_events_handled_total", {"service": "loyalty", "event": event_type,
                                                                       "outcome": o}) or 0
               for o in ("ok", "parked"))


def ledger_sum(db, contact_id):
    return sum(e["points"] for e in db.ledger.find({"contact_id": contact_id}))


# -- membership --------------------------------------------------------------------------------

def test_explicit_enroll_is_idempotent(loyalty):
    cfg, svc, db = loyalty()
    cid = new_contact_id()
    first = svc.enroll(contact_id=cid)
    assert first["member_id"] == derived_id("mem", cid)
    assert (first["status"], first["tier"], first["balance"], first["next_expiry"]) == ("active", "bronze", 0, None)
    again = svc.enroll(contact_id=cid)
    assert again == first
    assert svc.get_member(contact_id=cid)["version"] == 1
    wait_for(lambda: events_of(cid, "member_enrolled"))
    time.sleep(0.3)
    [ev] = events_of(cid, "member_enrolled")
    assert ev["data"] == {"contact_id": cid, "member_id": first["member_id"], "tier": "bronze",
                          "enrolled_at": first["enrolled_at"]}
    [entry] = db.audit.find({"record_id": cid})     # the enrolment is audited, once
    assert (entry["operation"], entry["record_type"], entry["after"]["member_id"]) == ("enroll", "member",
                                                                                     first["member_id"])
    assert entry["principal"] and entry["contact_id"] == cid


def test_unknown_member_and_bad_arguments(loyalty):
    cfg, svc, db = loyalty()
    cid = new_contact_id()
    with pytest.raises(NotFound) as err:
        svc.get_member(contact_id=cid)
    with pytest.raises(NotFound) as err:
        svc.earn_points(contact_id=cid, source="shop", source_ref="o1", amount=eur(1000))
    assert "not a loyalty member" in str(err.value)
    svc.enroll(contact_id=cid)
    with pytest.raises(InvalidArgument) as err:
        svc.earn_points(contact_id=cid, source="shop", source_ref="o1", amount=eur(0))
    with pytest.raises(InvalidArgument) as err:
        svc.earn_points(contact_id={"$ne": 1}, source="shop", source_ref="o1", amount=eur(100))


def test_auto_enroll_from_consent_changed_and_opt_out_cycle(loyalty, dispatch):
    cfg, svc, db = loyalty()
    send = dispatch(cfg, "contacts")
    cid = new_contact_id()
    send("consent_changed", consent_event(cid, True, name="Reza Karimi"))
    member = wait_for(lambda: db.members.find_one({"_id": cid}))
    got = svc.get_member(contact_id=cid)
    assert got["status"] == "active" and got["display_name"] == "Reza Karimi"
    assert member["member_id"] == derived_id("mem", cid)
    svc.earn_points(contact_id=cid, source="shop", source_ref="o1", amount=eur(5000))
    send("consent_changed", consent_event(cid, False))
    wait_for(lambda: svc.get_member(contact_id=cid)["status"] == "opted_out")
    assert svc.get_member(contact_id=cid)["balance"] == 50  # points kept
    with pytest.raises(FailedPrecondition) as err:
        svc.earn_points(contact_id=cid, source="shop", source_ref="o2", amount=eur(5000))
    send("consent_changed", consent_event(cid, True))
    wait_for(lambda: svc.get_member(contact_id=cid)["status"] == "active")
    assert len(events_of(cid, "member_enrolled")) <= 1


def test_revoking_without_membership_is_a_no_op(loyalty, dispatch):
    cfg, svc, db = loyalty()
    cid = new_contact_id()
    ev = consent_event(cid, False)
    before = handled_count("consent_changed")
    dispatch(cfg, "contacts")("consent_changed", ev)
    wait_for(lambda: handled_count("consent_changed") > before)
    with pytest.raises(NotFound) as err:
        svc.get_member(contact_id=cid)


def test_auto_enroll_from_contact_created_and_redelivery_is_a_no_op(loyalty, dispatch):
    cfg, svc, db = loyalty()
    send = dispatch(cfg, "contacts")
    cid, other = new_contact_id(), new_contact_id()
    created = contacts_event("contact_created", cid, {"contact": contact_wire(cid, loyalty_granted=True)})
    send("contact_created", created)
    send("contact_created", contacts_event("contact_created", other, {"contact": contact_wire(other, "Not Member")}))
    wait_for(lambda: events_of(cid, "member_enrolled"))
    assert svc.get_member(contact_id=cid)["display_name"] == "Sara Ahmadi"
    before = handled_count("contact_created")
    send("contact_created", created)  # exact redelivery
    send("contact_created", {**created, "event_id": "evt_redelivered_copy"})  # same fact, new id
    wait_for(lambda: handled_count("contact_created") >= before + 2)
    time.sleep(0.3)
    assert svc.get_member(contact_id=cid)["version"] == 1
    assert len(events_of(cid, "member_enrolled")) == 1
    wait_for(lambda: db.profiles.find_one({"_id": other}))
    with pytest.raises(NotFound):
        svc.get_member(contact_id=other)  # no loyalty consent: not enrolled


def test_contact_updated_refreshes_name_newest_version_wins(loyalty, dispatch):
    cfg, svc, db = loyalty()
    send = dispatch(cfg, "contacts")
    cid = new_contact_id()
    svc.enroll(contact_id=cid)
    send("contact_updated", contacts_event("contact_updated", cid, {
        "contact": contact_wire(cid, "Sara Ahmadi-Rad", version=3), "changed": ["family_name"]}))
    wait_for(lambda: svc.get_member(contact_id=cid)["display_name"] == "Sara Ahmadi-Rad")
    stale = contacts_event("contact_updated", cid, {"contact": contact_wire(cid, "Old Name", version=2),
                                                    "changed": ["family_name"]})
    before = handled_count("contact_updated")
    send("contact_updated", stale)
    wait_for(lambda: handled_count("contact_updated") > before)
    assert svc.get_member(contact_id=cid)["display_name"] == "Sara Ahmadi-Rad"


def test_contact_erased_anonymizes_and_keeps_ledger(loyalty, dispatch):
    cfg, svc, db = loyalty()
    send = dispatch(cfg, "contacts")
    cid = new_contact_id()
    send("contact_created", contacts_event("contact_created", cid, {"contact": contact_wire(cid, loyalty_granted=True)}))
    wait_for(lambda: db.members.find_one({"_id": cid}))
    svc.earn_points(contact_id=cid, source="shop", source_ref="o1", amount=eur(12000))
    send("contact_erased", contacts_event("contact_erased", cid, {"contact_id": cid}))
    wait_for(lambda: svc.get_member(contact_id=cid)["erased"])
    member = svc.get_member(contact_id=cid)
    assert member["display_name"] is None and member["balance"] == 120
    assert db.profiles.find_one({"_id": cid})["display_name"] is None
    assert [e["points"] for e in svc.list_ledger(contact_id=cid)["entries"]] == [120]
    # a late update does not bring the name back
    before = handled_count("contact_updated")
    send("contact_updated", contacts_event("contact_updated", cid, {"contact": contact_wire(cid, "Back", version=9),
                                                                    "changed": []}))
    wait_for(lambda: handled_count("contact_updated") > before)
    assert svc.get_member(contact_id=cid)["display_name"] is None


# -- earning -----------------------------------------------------------------------------------

def test_earn_same_purchase_twice_counts_once(loyalty):
    cfg, svc, db = loyalty()
    cid = new_contact_id()
    svc.enroll(contact_id=cid)
    first = svc.earn_points(contact_id=cid, source="shop", source_ref="order-1", amount=eur(12345))
    assert first["entry"]["points"] == 123 and first["member"]["balance"] == 123
    assert first["entry"]["id"] == derived_id("led", "earn", "shop", "order-1")
    assert first["entry"]["amount"] == eur(12345) and first["entry"]["kind"] == "earn"
    again = svc.earn_points(contact_id=cid, source="shop", source_ref="order-1", amount=eur(99900))
    assert again["entry"] == first["entry"] and again["member"]["balance"] == 123
    assert db.ledger.count_documents({"contact_id": cid}) == 1
    wait_for(lambda: events_of(cid, "points_earned"))
    time.sleep(0.3)
    [ev] = events_of(cid, "points_earned")
    assert ev["data"] == {"contact_id": cid, "entry": first["entry"], "balance": 123}


def test_concurrent_duplicate_earns_count_once(loyalty, rpc):
    cfg, svc, db = loyalty()
    cid = new_contact_id()
    svc.enroll(contact_id=cid)
    proxies = [rpc(cfg).loyalty for _ in range(8)]
    pool = eventlet.GreenPool(8)
    results = list(pool.imap(lambda p: p.earn_points(contact_id=cid, source="shop", source_ref="same-order", amount=eur(1000)), proxies))
    assert {r["entry"]["id"] for r in results} == {derived_id("led", "earn", "shop", "same-order")}
    assert svc.get_member(contact_id=cid)["balance"] == 10
    assert ledger_sum(db, cid) == 10 and db.ledger.count_documents({"contact_id": cid}) == 1


def test_tier_goes_up_and_multiplier_applies(loyalty):
    cfg, svc, db = loyalty()
    cid = new_contact_id()
    svc.enroll(contact_id=cid)
    r = svc.earn_points(contact_id=cid, source="shop", source_ref="big", amount=eur(100000))  # 1000 points at bronze
    assert r["entry"]["points"] == 1000 and r["member"]["tier"] == "silver"
    assert r["member"]["points_earned_12m"] == 1000
    r = svc.earn_points(contact_id=cid, source="shop", source_ref="next", amount=eur(10000))  # 100 * 1.25
    assert r["entry"]["points"] == 125
    [ev] = wait_for(lambda: events_of(cid, "tier_changed"))
    assert ev["data"] == {"contact_id": cid, "from_tier": "bronze", "to_tier": "silver", "points_earned_12m": 1000,
                          "changed_at": ev["data"]["changed_at"]}
    # ops gauges (crm_loyalty_members{tier}, crm_loyalty_points_outstanding) from the same database
    assert LoyaltyStore(db).member_stats() == {"silver": {"members": 1, "points": 1125}}
    LoyaltyService.update_gauges(SimpleNamespace(store=LoyaltyStore(db)))
    assert REGISTRY.get_sample_value("crm_loyalty_members", {"tier": "silver"}) == 1
    assert REGISTRY.get_sample_value("crm_loyalty_members", {"tier": "gold"}) == 0
    assert REGISTRY.get_sample_value("crm_loyalty_points_outstanding") == 1125


# -- redeeming ---------------------------------------------------------------------------------

def test_twenty_concurrent_redemptions_only_one_wins(loyalty, rpc):
    cfg, svc, db = loyalty()
    cid = new_contact_id()
    svc.enroll(contact_id=cid)
    svc.earn_points(contact_id=cid, source="shop", source_ref="o1", amount=eur(10000))  # 100 points
    proxies = [rpc(cfg, timeout=30).loyalty for _ in range(20)]

    def attempt(proxy):
        try:
            return proxy.redeem_points(contact_id=cid, points=80, reason="gift card")
        except CrmError as exc:
            return exc

    results = list(eventlet.GreenPool(20).imap(attempt, proxies))
    wins = [r for r in results if isinstance(r, dict)]
    losses = [r for r in results if isinstance(r, CrmError)]
    assert len(wins) == 1 and len(losses) == 19
    assert all(isinstance(e, FailedPrecondition) for e in losses)
    assert all("insufficient points: balance 20, requested 80" in str(e) for e in losses)
    member = svc.get_member(contact_id=cid)
    assert member["balance"] == 20
    assert ledger_sum(db, cid) == 20
    entries = svc.list_ledger(contact_id=cid)["entries"]
    assert [e["kind"] for e in entries] == ["redeem", "earn"]
    assert all(e["balance_after"] >= 0 for e in entries)


def test_redeem_with_request_id_is_idempotent_and_ledger_pages(loyalty):
    cfg, svc, db = loyalty()
    cid = new_contact_id()
    svc.enroll(contact_id=cid)
    for i in range(3):
        svc.earn_points(contact_id=cid, source="shop", source_ref=f"o{i}", amount=eur(1000))
    first = svc.redeem_points(contact_id=cid, points=5, reason="coffee", idempotency_key="req-1")
    again = svc.redeem_points(contact_id=cid, points=5, reason="coffee", idempotency_key="req-1")
    assert again["entry"] == first["entry"] and again["member"]["balance"] == 25
    assert first["entry"]["points"] == -5 and first["entry"]["balance_after"] == 25
    page1 = svc.list_ledger(contact_id=cid, page_size=3)
    assert [e["kind"] for e in page1["entries"]] == ["redeem", "earn", "earn"] and page1["next_page_token"]
    page2 = svc.list_ledger(contact_id=cid, page_size=3, page_token=page1["next_page_token"])
    assert [e["source_ref"] for e in page2["entries"]] == ["o0"] and page2["next_page_token"] == ""
    assert ledger_sum(db, cid) == 25
    [ev] = wait_for(lambda: events_of(cid, "points_redeemed"))
    assert ev["data"]["entry"] == first["entry"] and ev["data"]["balance"] == 25


# -- expiry ------------------------------------------------------------------------------------

def test_expiry_consumes_oldest_first_and_publishes(loyalty):
    cfg, svc, db = loyalty(LOYALTY_POINTS_TTL_SECONDS=2.5)
    cid = new_contact_id()
    svc.enroll(contact_id=cid)
    a = svc.earn_points(contact_id=cid, source="shop", source_ref="A", amount=eur(1000))["entry"]    # 10 points, oldest
    time.sleep(1.2)
    svc.earn_points(contact_id=cid, source="shop", source_ref="B", amount=eur(2000))                  # 20 points
    svc.redeem_points(contact_id=cid, points=4, reason="sticker")                          # from A: 6 left
    member = svc.get_member(contact_id=cid)
    assert member["next_expiry"]["points"] == 6
    wait_for(lambda: clock.now() >= clock.from_iso(member["next_expiry"]["at"]), timeout=5)
    assert svc.expire_due_points() == {"expired_members": 1, "points": 6}  # B is not due yet
    member = svc.get_member(contact_id=cid)
    assert member["balance"] == 20 and member["next_expiry"]["points"] == 20
    [ev] = wait_for(lambda: events_of(cid, "points_expired"))
    assert ev["data"]["entry"]["points"] == -6 and ev["data"]["entry"]["source_ref"] == a["id"]
    assert ev["data"]["entry"]["id"] == derived_id("led", "expire", a["id"]) and ev["data"]["balance"] == 20
    assert ledger_sum(db, cid) == member["balance"]
    assert svc.expire_due_points() == {"expired_members": 0, "points": 0}  # nothing due: a no-op
    wait_for(lambda: clock.now() >= clock.from_iso(member["next_expiry"]["at"]), timeout=5)
    assert svc.expire_due_points() == {"expired_members": 1, "points": 20}
    assert svc.get_member(contact_id=cid)["balance"] == 0 and ledger_sum(db, cid) == 0
    entries = svc.list_ledger(contact_id=cid)["entries"]
    assert [e["kind"] for e in entries] == ["expire", "expire", "redeem", "earn", "earn"]
    assert {e["principal"] for e in entries} == {"user:test-admin"}   # who asked, expiry included


def test_expiry_with_two_replicas_racing_expires_each_lot_once(loyalty, start_service, rpc):
    cfg, svc, db = loyalty(LOYALTY_POINTS_TTL_SECONDS=1)
    start_service(LoyaltyService, cfg)  # a second replica: same queues, same database, its own timers
    members = [new_contact_id() for _ in range(6)]
    for cid in members:
        svc.enroll(contact_id=cid)
        svc.earn_points(contact_id=cid, source="shop", source_ref=f"order-{cid}", amount=eur(1500))
    time.sleep(1.2)
    proxies = [rpc(cfg).loyalty for _ in range(8)]  # calls land on both replicas
    results = list(eventlet.GreenPool(8).imap(lambda p: p.expire_due_points(), proxies))
    assert sum(r["points"] for r in results) == 6 * 15
    for cid in members:
        assert svc.get_member(contact_id=cid)["balance"] == 0 and ledger_sum(db, cid) == 0
        assert [e["kind"] for e in svc.list_ledger(contact_id=cid)["entries"]] == ["expire", "earn"]
        wait_for(lambda: events_of(cid, "points_expired"))
    time.sleep(0.3)
    assert all(len(events_of(cid, "points_expired")) == 1 for cid in members)


# -- the ledger as the long memory of idempotency ------------------------------------------------

def test_a_purchase_that_earned_for_another_contact_earns_nothing_here(loyalty):
    cfg, svc, db = loyalty()
    first, second = new_contact_id(), new_contact_id()
    for cid in (first, second):
        svc.enroll(contact_id=cid)
    earned = svc.earn_points(contact_id=first, source="pos", source_ref="receipt-7", amount=eur(5000))
    with pytest.raises(CrmError) as exc:
        svc.earn_points(contact_id=second, source="pos", source_ref="receipt-7", amount=eur(5000))
    assert type(exc.value).__name__ == "AlreadyExists" and exc.value.details["existing_id"] == earned["entry"]["id"]
    member = svc.get_member(contact_id=second)
    assert member["balance"] == 0 and db.ledger.count_documents({"contact_id": second}) == 0
    doc = db.members.find_one({"_id": second})
    assert doc["pending_ledger_n"] == 0 and doc["_outbox_n"] == 0   # nothing staged, nothing to publish
    time.sleep(0.5)
    assert not events_of(second, "points_earned")


def test_a_purchase_older_than_the_members_memory_is_still_earned_once(loyalty):
    cfg, svc, db = loyalty()
    cid = new_contact_id()
    svc.enroll(contact_id=cid)
    first = svc.earn_points(contact_id=cid, source="pos", source_ref="old-1", amount=eur(3000))
    svc.earn_points(contact_id=cid, source="pos", source_ref="new-1", amount=eur(1000))
    # the member forgets lots after a year; the ledger does not (simulated: the lot is gone)
    db.members.update_one({"_id": cid}, {"$set": {
        "lots": [lot for lot in db.members.find_one({"_id": cid})["lots"] if lot["source_ref"] != "old-1"]}})
    again = svc.earn_points(contact_id=cid, source="pos", source_ref="old-1", amount=eur(3000))
    assert again["entry"] == first["entry"]
    assert svc.get_member(contact_id=cid)["balance"] == 40 and ledger_sum(db, cid) == 40
    assert db.ledger.count_documents({"contact_id": cid}) == 2


def test_entries_a_crash_left_staged_reach_the_ledger_before_their_events_are_relayed(loyalty):
    from crm_common.events import announce
    from loyalty import domain
    from loyalty.events import PointsEarned
    from loyalty.store import Member
    from loyalty.views import entry_view

    cfg, svc, db = loyalty()
    cid = new_contact_id()
    svc.enroll(contact_id=cid)
    store = LoyaltyStore(db)
    before = store.member(cid)
    now = clock.now()
    change = domain.earn(before.state, cid, now, domain.Policy(), source="pos", source_ref="crash-1",
                         amount=domain.Money(amount_minor=7000, currency="EUR"))
    [entry] = change.entries
    staged = announce(PointsEarned(contact_id=cid, entry=entry_view(entry), balance=70), source="loyalty",
                      event_id=derived_id("evt", entry["_id"]))
    store.write(cid, before, change, [], {entry["_id"]: staged}, now)   # ... and the process dies here
    assert db.ledger.find_one({"_id": entry["_id"]}) is None
    wait_for(lambda: db.ledger.find_one({"_id": entry["_id"]}), timeout=20)
    [ev] = wait_for(lambda: events_of(cid, "points_earned"), timeout=20)
    assert ev["data"]["entry"]["id"] == entry["_id"]
    doc = wait_for(lambda: (lambda d: d if d["pending_ledger_n"] == 0 else None)(
        db.members.find_one({"_id": cid})), timeout=20)
    assert wait_for(lambda: db.ledger.find_one({"_id": entry["_id"]})["_outbox_n"] == 0, timeout=10)
    assert doc["balance"] == 70 == ledger_sum(db, cid)
    assert isinstance(Member.from_doc(doc).state, domain.MemberState)


def test_a_staged_earn_the_ledger_refuses_is_voided_by_the_relay_with_its_settlement(loyalty):
    """A crash after the member write of an earn that earned for another contact, while
    this member owed points: the relay inserts, is refused, and voids earn and settlement."""
    from loyalty import domain

    cfg, svc, db = loyalty()
    owes, other = new_contact_id(), new_contact_id()
    for cid in (owes, other):
        svc.enroll(contact_id=cid)
    svc.earn_points(contact_id=owes, source="pos", source_ref="mine", amount=eur(4000))
    svc.redeem_points(contact_id=owes, points=40, reason="gift card")
    svc.earn_points(contact_id=other, source="pos", source_ref="theirs", amount=eur(3000))
    store = LoyaltyStore(db)
    before = store.member(owes)
    refund = domain.reverse(before.state, owes, clock.now(), domain.Policy(), source="pos", source_ref="mine",
                            reason="refunded")
    before = store.write(owes, before, refund, [], {}, clock.now())
    change = domain.earn(before.state, owes, clock.now(), domain.Policy(), source="pos", source_ref="theirs",
                         amount=domain.Money(amount_minor=3000, currency="EUR"))
    assert [e["kind"] for e in change.entries] == ["earn", "settle"]
    store.write(owes, before, change, [], {}, clock.now())   # ... and the process dies here
    member = wait_for(lambda: (lambda m: m if m["points_owed"] == 40 else None)(svc.get_member(contact_id=owes)),
                      timeout=20)
    assert member["balance"] == 0 and ledger_sum(db, owes) == 0
    assert sorted(e["kind"] for e in db.ledger.find({"contact_id": owes})) == ["earn", "redeem", "reverse"]
    doc = wait_for(lambda: (lambda d: d if d["pending_ledger_n"] == 0 else None)(db.members.find_one({"_id": owes})),
                   timeout=20)
    assert doc["pending_ledger"] == {}


def test_staged_copies_the_relay_dropped_first_are_not_dropped_twice(loyalty):
    """The relay drops the staged copies of entries the member's next write here would
    have dropped; that write must not count them again, or ``pending_ledger_n`` drifts
    below what is staged and the relay stops seeing what a crash leaves behind."""
    cfg, svc, db = loyalty()
    cid = new_contact_id()
    svc.enroll(contact_id=cid)
    svc.earn_points(contact_id=cid, source="pos", source_ref="a", amount=eur(1000))
    wait_for(lambda: db.members.find_one({"_id": cid})["pending_ledger_n"] == 0, timeout=20)   # the relay's doing
    svc.earn_points(contact_id=cid, source="pos", source_ref="b", amount=eur(1000))
    doc = db.members.find_one({"_id": cid})
    assert doc["pending_ledger_n"] == len(doc["pending_ledger"]) == 1


class _Commands(monitoring.CommandListener):
    """Every database command the process sends, to count what one request costs."""

    def __init__(self):
        self.seen: list[tuple[str, str, str]] = []

    def started(self, event):
        self.seen.append((event.database_name, event.command_name, repr(event.command)))

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


COMMANDS = _Commands()
monitoring.register(COMMANDS)   # clients made after this (the services') report to it


def test_an_earn_is_four_database_commands(loyalty):
    cfg, svc, db = loyalty()
    cid = new_contact_id()
    svc.enroll(contact_id=cid)
    svc.earn_points(contact_id=cid, source="pos", source_ref="warm", amount=eur(1000))
    COMMANDS.seen.clear()
    result = svc.earn_points(contact_id=cid, source="pos", source_ref="counted", amount=eur(2500))
    mine = [(name, cmd) for database, name, cmd in COMMANDS.seen
            if database == cfg["MONGODB_DATABASE"] and (cid in cmd or result["entry"]["id"] in cmd)]
    assert [name for name, _ in mine] == ["find", "update", "insert", "update"], mine
    assert result["member"]["balance"] == 35


# -- points for sales' orders (sales.order_paid / sales.order_refunded) ------------------------------

def new_order_id():
    return f"ord_t{uuid.uuid4().hex[:12]}"


def order_event(type_, order_id, contact_id, minor, ref, **data):
    """sales' order_paid / order_refunded as sales/events.py declares them."""
    order = {"id": order_id, "contact_id": contact_id, "external_ref": ref, "channel": "web", "status": "paid",
             "currency": "EUR", "total": eur(minor), "lines": [{"sku": "SKU-1", "name": "Kettle", "quantity": 1,
                                                                  "unit_price": eur(minor)}]}
    return envelope(type_, source="sales", subject=order_id, subject_type="order",
                    data={"order_id": order_id, "contact_id": contact_id, "order": order, "total": eur(minor), **data})


def paid(order_id, contact_id, minor, ref="WEB-1001"):
    return order_event("order_paid", order_id, contact_id, minor, ref, paid_at=clock.to_iso(clock.now()))


def refunded(order_id, contact_id, minor, ref="WEB-1001", reason="damaged in transit"):
    return order_event("order_refunded", order_id, contact_id, minor, ref, reason=reason,
                       refunded_at=clock.to_iso(clock.now()))


def lot_of(order_id):
    return derived_id("led", "earn", "order", order_id)


def deliver(send, *events):
    """Publish sales' events and wait until loyalty has handled every one of them."""
    before = {t: handled_count(t) for t in ("order_paid", "order_refunded")}
    for event in events:
        send(event["type"], event)
    for t in before:
        n = sum(e["type"] == t for e in events)
        wait_for(lambda: handled_count(t) >= before[t] + n, timeout=20)


def timeline_summary(event):
    from loyalty.events import ENTRY_EVENTS
    return ENTRY_EVENTS[event["data"]["entry"]["kind"]].model_validate(event["data"]).timeline().summary


def test_a_paid_order_earns_by_the_rule_once_however_often_it_is_delivered(loyalty, dispatch):
    cfg, svc, db = loyalty()
    send = dispatch(cfg, "sales")
    cid, oid = new_contact_id(), new_order_id()
    svc.enroll(contact_id=cid)
    event = paid(oid, cid, 12599)
    deliver(send, event)
    member = svc.get_member(contact_id=cid)
    assert (member["balance"], member["points_owed"]) == (125, 0)
    [entry] = svc.list_ledger(contact_id=cid)["entries"]
    assert entry["id"] == lot_of(oid)
    assert (entry["kind"], entry["points"], entry["source"], entry["source_ref"], entry["reason"]) == (
        "earn", 125, "order", oid, "order WEB-1001")
    assert entry["amount"] == eur(12599)
    deliver(send, event, {**event, "event_id": "evt_the_same_order_again"})   # a redelivery; a relayed copy
    assert svc.get_member(contact_id=cid)["balance"] == 125 and ledger_sum(db, cid) == 125
    assert db.ledger.count_documents({"contact_id": cid}) == 1
    [ev] = wait_for(lambda: events_of(cid, "points_earned"))
    time.sleep(0.3)
    assert len(events_of(cid, "points_earned")) == 1
    assert timeline_summary(ev) == "Earned 125 points (order WEB-1001)"
    assert (ev["data"]["entry"]["source"], ev["data"]["entry"]["source_ref"]) == ("order", oid)
    # the RPC path for the same purchase is the same purchase
    again = svc.earn_points(contact_id=cid, source="order", source_ref=oid, amount=eur(12599))
    assert again["entry"] == entry and again["member"]["balance"] == 125


def test_a_refund_takes_the_orders_points_back_once(loyalty, dispatch):
    cfg, svc, db = loyalty()
    send = dispatch(cfg, "sales")
    cid, first, second = new_contact_id(), new_order_id(), new_order_id()
    svc.enroll(contact_id=cid)
    deliver(send, paid(first, cid, 10000, "WEB-1"), paid(second, cid, 4000, "WEB-2"))
    assert svc.get_member(contact_id=cid)["balance"] == 140
    refund = refunded(first, cid, 10000, "WEB-1")
    deliver(send, refund)
    member = svc.get_member(contact_id=cid)
    assert (member["balance"], member["points_owed"]) == (40, 0)
    entry = svc.list_ledger(contact_id=cid)["entries"][0]
    assert entry["id"] == derived_id("led", "reverse", lot_of(first))
    assert (entry["kind"], entry["points"], entry["owed"], entry["balance_after"]) == ("reverse", -100, 0, 40)
    assert (entry["source"], entry["source_ref"]) == ("order", first)
    deliver(send, refund, {**refund, "event_id": "evt_the_same_refund_again"}, paid(first, cid, 10000, "WEB-1"))
    assert svc.get_member(contact_id=cid)["balance"] == 40 and ledger_sum(db, cid) == 40
    assert [e["kind"] for e in svc.list_ledger(contact_id=cid)["entries"]] == ["reverse", "earn", "earn"]
    [ev] = wait_for(lambda: events_of(cid, "points_reversed"))
    time.sleep(0.3)
    assert len(events_of(cid, "points_reversed")) == 1
    assert ev["data"]["balance"] == 40
    assert timeline_summary(ev) == "100 points taken back (order WEB-1 refunded: damaged in transit)"


def test_a_refund_of_points_partly_spent_owes_the_rest_and_a_later_order_settles_it(loyalty, dispatch):
    cfg, svc, db = loyalty()
    send = dispatch(cfg, "sales")
    cid, spent, later, last = new_contact_id(), new_order_id(), new_order_id(), new_order_id()
    svc.enroll(contact_id=cid)
    deliver(send, paid(spent, cid, 10000, "WEB-1"))
    svc.redeem_points(contact_id=cid, points=70, reason="gift card")
    deliver(send, refunded(spent, cid, 10000, "WEB-1"))
    member = svc.get_member(contact_id=cid)
    assert (member["balance"], member["points_owed"]) == (0, 70)
    with pytest.raises(FailedPrecondition):
        svc.redeem_points(contact_id=cid, points=1, reason="anything")
    deliver(send, paid(later, cid, 5000, "WEB-2"))                   # 50 points: all to what is owed
    member = svc.get_member(contact_id=cid)
    assert (member["balance"], member["points_owed"]) == (0, 20)
    deliver(send, paid(last, cid, 3000, "WEB-3"))                    # 30 points: 20 owed, 10 spendable
    member = svc.get_member(contact_id=cid)
    assert (member["balance"], member["points_owed"]) == (10, 0)
    entries = svc.list_ledger(contact_id=cid)["entries"]
    assert [(e["kind"], e["points"], e["owed"], e["balance_after"], e["owed_after"]) for e in entries] == [
        ("settle", -20, -20, 10, 0), ("earn", 30, 0, 30, 20),
        ("settle", -50, -50, 0, 20), ("earn", 50, 0, 50, 70),
        ("reverse", -30, 70, 0, 70), ("redeem", -70, 0, 30, 0), ("earn", 100, 0, 100, 0)]
    assert ledger_sum(db, cid) == 10 and sum(e["owed"] for e in entries) == 0
    [reversed_ev] = wait_for(lambda: events_of(cid, "points_reversed"))
    assert timeline_summary(reversed_ev) == ("100 points taken back (order WEB-1 refunded: damaged in transit): "
                                             "70 of them owed, to be settled from future earnings")
    settled = wait_for(lambda: (lambda s: s if len(s) == 2 else None)(events_of(cid, "points_settled")))
    assert sorted(timeline_summary(e) for e in settled) == [
        "20 of these points paid back points owed after a refund (nothing owed any more)",
        "50 of these points paid back points owed after a refund (20 still owed)"]


def test_a_refund_delivered_before_the_payment_leaves_the_order_without_points(loyalty, dispatch):
    cfg, svc, db = loyalty()
    send = dispatch(cfg, "sales")
    cid, oid, other = new_contact_id(), new_order_id(), new_order_id()
    svc.enroll(contact_id=cid)
    deliver(send, paid(other, cid, 2500, "WEB-0"))
    deliver(send, refunded(oid, cid, 10000))
    assert db.refunded_orders.find_one({"_id": oid})["contact_id"] == cid
    assert svc.get_member(contact_id=cid)["balance"] == 25                    # nothing to take back yet
    deliver(send, paid(oid, cid, 10000))
    member = svc.get_member(contact_id=cid)
    assert (member["balance"], member["points_owed"], member["points_earned_12m"]) == (25, 0, 25)
    assert [(e["kind"], e["source_ref"]) for e in svc.list_ledger(contact_id=cid)["entries"]] == [
        ("reverse", oid), ("earn", oid), ("earn", other)]
    deliver(send, paid(oid, cid, 10000), refunded(oid, cid, 10000))            # both again: nothing more
    assert svc.get_member(contact_id=cid)["balance"] == 25 and db.ledger.count_documents({"contact_id": cid}) == 3


def test_payments_and_refunds_racing_on_two_replicas_leave_no_points(loyalty, dispatch, start_service):
    cfg, svc, db = loyalty()
    start_service(LoyaltyService, cfg)   # a second replica on the same queues and database
    send = dispatch(cfg, "sales")
    cid = new_contact_id()
    svc.enroll(contact_id=cid)
    orders = [new_order_id() for _ in range(12)]
    events = []
    for i, oid in enumerate(orders):   # half refunded first, half paid first, all at once
        pair = [paid(oid, cid, 1000 * (i + 1)), refunded(oid, cid, 1000 * (i + 1))]
        events += pair[::-1] if i % 2 else pair
    deliver(send, *events)
    member = svc.get_member(contact_id=cid)
    assert (member["balance"], member["points_owed"], member["points_earned_12m"]) == (0, 0, 0)
    kinds = sorted(e["kind"] for e in db.ledger.find({"contact_id": cid}))
    assert kinds == ["earn"] * 12 + ["reverse"] * 12 and ledger_sum(db, cid) == 0


def test_an_order_of_a_contact_who_is_not_an_active_member_earns_nothing_and_parks_nothing(loyalty, dispatch):
    cfg, svc, db = loyalty()
    send = dispatch(cfg, "sales")
    stranger, opted_out, erased = new_contact_id(), new_contact_id(), new_contact_id()
    for cid in (opted_out, erased):
        svc.enroll(contact_id=cid)
    dispatch(cfg, "contacts")("consent_changed", consent_event(opted_out, False))
    wait_for(lambda: svc.get_member(contact_id=opted_out)["status"] == "opted_out")
    dispatch(cfg, "contacts")("contact_erased", contacts_event("contact_erased", erased, {"contact_id": erased}))
    wait_for(lambda: svc.get_member(contact_id=erased)["erased"])
    deliver(send, *[paid(new_order_id(), cid, 5000) for cid in (stranger, opted_out, erased)],
            refunded(new_order_id(), stranger, 5000))
    with pytest.raises(NotFound):
        svc.get_member(contact_id=stranger)
    assert [svc.get_member(contact_id=cid)["balance"] for cid in (opted_out, erased)] == [0, 0]
    assert db.ledger.count_documents({}) == 0 and db.parked_events.count_documents({}) == 0


def test_an_order_event_with_a_malformed_id_is_parked_naming_the_field(loyalty, dispatch):
    cfg, svc, db = loyalty()
    cid = new_contact_id()
    svc.enroll(contact_id=cid)
    bad = paid(new_order_id(), cid, 5000)
    bad["data"]["contact_id"] = "con_1; drop"
    deliver(dispatch(cfg, "sales"), bad)
    [parked] = list(db.parked_events.find({}))
    assert parked["method"] == "on_order_paid" and "data.contact_id" in parked["error"]
    assert svc.get_member(contact_id=cid)["balance"] == 0


def test_a_paid_order_is_an_earn_and_one_look_for_its_refund(loyalty, dispatch):
    cfg, svc, db = loyalty()
    send = dispatch(cfg, "sales")
    cid, oid = new_contact_id(), new_order_id()
    svc.enroll(contact_id=cid)
    deliver(send, paid(new_order_id(), cid, 1000))
    COMMANDS.seen.clear()
    deliver(send, paid(oid, cid, 2500))
    mine = [name for database, name, cmd in COMMANDS.seen
            if database == cfg["MONGODB_DATABASE"] and (cid in cmd or oid in cmd or lot_of(oid) in cmd)]
    assert mine == ["find", "update", "insert", "update", "find"], mine
    assert svc.get_member(contact_id=cid)["balance"] == 35


def test_a_refused_earn_takes_its_settlement_with_it(loyalty, dispatch):
    """A purchase that earned for another contact earns nothing here: nor does it pay
    what this member owes (its settlement is never in the ledger, nothing is published)."""
    cfg, svc, db = loyalty()
    owes, other, oid = new_contact_id(), new_contact_id(), new_order_id()
    for cid in (owes, other):
        svc.enroll(contact_id=cid)
    send = dispatch(cfg, "sales")
    deliver(send, paid(oid, owes, 10000))
    svc.redeem_points(contact_id=owes, points=100, reason="gift card")
    deliver(send, refunded(oid, owes, 10000))
    svc.earn_points(contact_id=other, source="pos", source_ref="receipt-7", amount=eur(5000))
    with pytest.raises(CrmError) as exc:
        svc.earn_points(contact_id=owes, source="pos", source_ref="receipt-7", amount=eur(5000))
    assert type(exc.value).__name__ == "AlreadyExists"
    member = svc.get_member(contact_id=owes)
    assert (member["balance"], member["points_owed"]) == (0, 100)
    entries = list(db.ledger.find({"contact_id": owes}))
    assert sorted(e["kind"] for e in entries) == ["earn", "redeem", "reverse"]
    assert ledger_sum(db, owes) == 0 and sum(e["owed"] for e in entries) == 100
    doc = db.members.find_one({"_id": owes})
    assert doc["pending_ledger_n"] == 0 and doc["_outbox_n"] == 0
    time.sleep(0.5)
    assert not events_of(owes, "points_settled")
