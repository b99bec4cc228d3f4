"""The contacts service in-process over the real broker and database: dedup claims,
validation errors, optimistic concurrency, search and pagination, consent events, the
loyalty timeline, GDPR erase."""
from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import ClassVar

import pytest

from support.waiting import wait_for
from nameko.testing.services import entrypoint_hook

from contacts import service as contacts_service
from contacts.service import ContactsService
from crm_common import clock
from crm_common import events as ev
from crm_common.errors import (AlreadyExists, FailedPrecondition, InvalidArgument, NotFound,
                               VersionConflict)
from crm_common.contracts import Id, Timestamp
from crm_common.events import Event
from crm_common.nameko.base import CrmService, rpc
from crm_common.nameko.handlers import handles
from crm_common.nameko.mongo import MongoStore
from crm_common.nameko.entrypoints import timeline_exchange
from crm_common.timeline import Reference, TimelineFact
from kombu import Connection
from kombu import Producer as KombuProducer

from support import auth  # noqa: E402

auth.permit("courier_t.deliver")

class SpyStore:
    def __init__(self, db):
        self.db = db


class ContactsSpy(CrmService):
    """Records what the contacts service publishes, like a downstream service would."""
    name = "contacts_spy"
    store = MongoStore(SpyStore)

    def _record(self, event):
        self.store.db.seen.insert_one({"_id": event["event_id"], "type": event["type"],
                                       "subject": event["subject"], "data": event["data"], "at": time.time()})

    @handles("contacts", "contact_created")
    def on_created(self, event):
        self._record(event)

    @handles("contacts", "contact_updated")
    def on_updated(self, event):
        self._record(event)

    @handles("contacts", "consent_changed")
    def on_consent(self, event):
        self._record(event)

    @handles("contacts", "contact_erased")
    def on_erased(self, event):
        self._record(event)




@pytest.fixture
def env(make_config, start_service, mongo_client, rpc):
    ccfg, scfg = make_config("contacts"), make_config("contacts_spy")
    start_service(ContactsSpy, scfg)  # subscribe first: its queues must exist before we publish
    container = start_service(ContactsService, ccfg)
    db, spy_db = mongo_client[ccfg["MONGODB_DATABASE"]], mongo_client[scfg["MONGODB_DATABASE"]]

    class Env:
        cfg = ccfg
        api = rpc(ccfg).contacts

        def events(self, type_, subject=None):
            query = {"type": type_, **({"subject": subject} if subject else {})}
            return list(spy_db.seen.find(query).sort("at", 1))

    e = Env()
    e.db, e.spy_db, e.container = db, spy_db, container
    return e


def uniq():
    return uuid.uuid4().hex[:8]


def update(env, contact_id, version, fields):
    """update_contact as the gateway calls it: the new values and the mask naming them."""
    return env.api.update_contact(contact_id=contact_id, expected_version=version, contact=fields,
                                  update_mask=list(fields))


def test_ping(env):
    assert env.api.ping() == {"service": "contacts", "ok": True}


def test_create_and_get_round_trip_persian(env):
    created = env.api.create_contact(contact={
        "given_name": " سارا ", "family_name": "احمدی",
        "emails": [{"address": "Sara.Ahmadi@Example.com", "label": "work"}],
        "phones": [{"number": "۰۰۹۸ ۹۱۲ ۱۲۳-۴۵۶۷", "label": "mobile"}],
        "birthday": "1990-04-01", "gender": "female", "locale": "fa_ir",
        "address": {"city": "تهران", "country": "ir"},
        "tags": ["VIP"], "lifecycle_stage": "customer", "owner": "agent-7",
        "custom_fields": {"shoe_size": 38, "newsletter_topic": "چای"},
        "consents": {"email": {"granted": True, "source": "web-form"}},
    })
    assert created["id"].startswith("con_") and created["version"] == 1
    assert created["display_name"] == "سارا احمدی" and created["given_name"] == "سارا"
    assert created["emails"] == [{"address": "sara.ahmadi@example.com", "label": "work", "primary": True}]
    assert created["phones"] == [{"number": "+989121234567", "label": "mobile"}]
    assert created["locale"] == "fa-IR" and created["address"]["country"] == "IR"
    assert created["tags"] == ["vip"] and created["custom_fields"]["newsletter_topic"] == "چای"
    assert created["consents"]["email"]["granted"] is True and created["consents"]["email"]["source"] == "web-form"
    assert created["consents"]["sms"] == {"granted": False, "source": None, "at": None}
    assert created["erased"] is False and created["company_id"] is None
    fetched = env.api.get_contact(contact_id=created["id"])
    assert fetched == created
    event = wait_for(lambda: env.events("contact_created", created["id"]))[0]
    assert event["data"]["contact"] == created
    doc = env.db.contacts.find_one({"_id": created["id"]})
    assert doc[ev.OUTBOX_COUNT] == 0  # published and cleared
    assert sorted(doc["dedup_keys"]) == ["email:sara.ahmadi@example.com", "phone:+989121234567"]
    with pytest.raises(NotFound):
        env.api.get_contact(contact_id="con_missing")


def test_duplicate_email_or_phone_is_refused_with_existing_id(env):
    first = env.api.create_contact(contact={"given_name": "Sara", "emails": ["sara@example.com"],
                                    "phones": ["+98 912 000 1111"]})
    with pytest.raises(AlreadyExists) as exc:
        env.api.create_contact(contact={"given_name": "Other", "emails": ["other@example.com", "SARA@example.com"]})
    assert exc.value.details["existing_id"] == first["id"]
    assert "sara@example.com" in exc.value.message and first["id"] in exc.value.message
    # the failed create released the key it had claimed before hitting the duplicate
    assert env.db.contact_keys.find_one({"_id": "email:other@example.com"}) is None
    with pytest.raises(AlreadyExists) as exc:
        env.api.create_contact(contact={"given_name": "P", "phones": ["۰۰۹۸۹۱۲۰۰۰۱۱۱۱"]})
    assert exc.value.details["existing_id"] == first["id"] and "phone" in exc.value.message
    assert env.api.create_contact(contact={"given_name": "Other", "emails": ["other@example.com"]})["id"]


def test_malformed_input_is_invalid_argument_naming_the_field(env):
    with pytest.raises(InvalidArgument) as exc:
        env.api.create_contact(contact={"given_name": "Sara", "emails": [{"address": "sara@"}]})
    assert exc.value.details["violations"][0]["field"] == "contact.emails[0].address"
    assert "contact.emails[0].address" in exc.value.message
    with pytest.raises(InvalidArgument) as exc:
        env.api.create_contact(contact={"given_name": "Sara", "phones": ["0912 123 4567"]})
    assert exc.value.details["violations"][0]["field"] == "contact.phones[0].number"
    assert "country code" in exc.value.message
    with pytest.raises(InvalidArgument) as exc:
        env.api.create_contact(contact={"given_name": "Sara", "company_id": "cmp_nope"})
    assert exc.value.details["violations"][0]["field"] == "contact.company_id"
    assert env.db.contacts.count_documents({}) == 0


def test_default_country_code_is_configurable(make_config, start_service, rpc):
    cfg = make_config("contacts", CONTACTS_DEFAULT_COUNTRY_CODE="98")
    start_service(ContactsService, cfg)
    created = rpc(cfg).contacts.create_contact(contact={"given_name": "Reza", "phones": ["۰۹۱۲ ۱۲۳ ۴۵۶۷"]})
    assert created["phones"][0]["number"] == "+989121234567"


def test_update_with_optimistic_concurrency_and_key_moves(env):
    c = env.api.create_contact(contact={"given_name": "Sara", "family_name": "Ahmadi", "emails": ["old@example.com"]})
    updated = update(env, c["id"], 1, {"family_name": "Karimi", "emails": ["new@example.com"],
                                                  "tags": ["Tea"]})
    assert updated["version"] == 2 and updated["display_name"] == "Sara Karimi"
    assert updated["emails"][0]["address"] == "new@example.com" and updated["tags"] == ["tea"]
    assert env.api.get_contact(contact_id=c["id"]) == updated
    with pytest.raises(VersionConflict) as exc:
        update(env, c["id"], 1, {"given_name": "Zahra"})
    # nameko stringifies non-string values inside exc_args (safe_for_serialization)
    assert "version 2" in exc.value.message and str(exc.value.details["current_version"]) == "2"
    # the old email was released, the new one is claimed
    assert env.api.create_contact(contact={"given_name": "X", "emails": ["old@example.com"]})["id"]
    with pytest.raises(AlreadyExists) as exc:
        env.api.create_contact(contact={"given_name": "Y", "emails": ["new@example.com"]})
    assert exc.value.details["existing_id"] == c["id"]
    # an update may not steal another contact's email, and leaves no claim behind
    other = env.api.create_contact(contact={"given_name": "Z", "emails": ["z@example.com"]})
    with pytest.raises(AlreadyExists):
        update(env, other["id"], 1, {"emails": ["z@example.com", "new@example.com", "z2@example.com"]})
    assert env.db.contact_keys.find_one({"_id": "email:z2@example.com"}) is None
    # consents only through set_consent; validation as on create
    with pytest.raises(InvalidArgument) as exc:
        update(env, c["id"], 2, {"consents": {"email": {"granted": True, "source": "x"}}})
    assert exc.value.details["violations"][0]["field"] == "update_mask[0]"
    with pytest.raises(InvalidArgument) as exc:
        update(env, c["id"], 2, {"emails": ["bad"]})
    assert exc.value.details["violations"][0]["field"] == "contact.emails[0].address"
    event = wait_for(lambda: env.events("contact_updated", c["id"]))[0]
    assert event["data"]["changed"] == ["display_name", "emails", "family_name", "tags"]
    assert event["data"]["contact"]["version"] == 2
    # a no-op update changes nothing
    assert update(env, c["id"], 2, {"tags": ["TEA"]})["version"] == 2


def test_search_filters_and_pagination(env):
    tag = f"seg-{uniq()}"
    ids = []
    for i in range(7):
        stage = "customer" if i % 2 == 0 else "lead"
        ids.append(env.api.create_contact(contact={
            "given_name": f"Person{i}", "family_name": "علي" if i == 3 else "Smith",
            "emails": [f"p{i}-{tag}@example.com"], "phones": [f"+98 912 555 00{i:02d}"],
            "tags": [tag], "lifecycle_stage": stage, "owner": "agent-1" if i < 2 else "agent-2"})["id"])
    env.api.create_contact(contact={"given_name": "Outsider", "emails": ["outsider@example.com"]})

    seen, token, pages = [], None, 0
    while True:
        page = env.api.search_contacts(tag=tag, page_size=3, page_token=token)
        seen += [c["id"] for c in page["contacts"]]
        pages += 1
        token = page["next_page_token"]
        if not token:
            break
    assert pages == 3
    assert seen == sorted(ids, reverse=True)  # newest first, no duplicates, no gaps

    customers = env.api.search_contacts(tag=tag, lifecycle_stage="customer")["contacts"]
    assert sorted(c["id"] for c in customers) == sorted(ids[0::2])
    owned = env.api.search_contacts(tag=tag, lifecycle_stage="lead", owner="agent-1")["contacts"]
    assert [c["id"] for c in owned] == [ids[1]]
    # text: name (Arabic yeh finds Persian yeh and back), email, phone with Persian digits
    assert [c["id"] for c in env.api.search_contacts(text="علی")["contacts"]] == [ids[3]]
    assert [c["id"] for c in env.api.search_contacts(text="PERSON5")["contacts"]] == [ids[5]]
    assert [c["id"] for c in env.api.search_contacts(text=f"P6-{tag}@")["contacts"]] == [ids[6]]
    assert [c["id"] for c in env.api.search_contacts(text="۰۹۱۲ ۵۵۵ ۰۰۰۴")["contacts"]] == [ids[4]]
    assert env.api.search_contacts(text=".*")["contacts"] == []  # regex is escaped
    with pytest.raises(InvalidArgument) as exc:
        env.api.search_contacts(page_token="not-a-token")
    assert exc.value.details["violations"][0]["field"] == "page_token"
    with pytest.raises(InvalidArgument):
        env.api.search_contacts(lifecycle_stage="vip")


def test_set_consent_publishes_only_on_change_and_keeps_history(env):
    c = env.api.create_contact(contact={"given_name": "Sara", "emails": ["c@example.com"]})
    granted = env.api.set_consent(contact_id=c["id"], channel="sms", granted=True, source="pos-terminal")
    assert granted["consents"]["sms"]["granted"] is True and granted["version"] == 2
    assert env.api.set_consent(contact_id=c["id"], channel="sms", granted=True, source="again")["version"] == 2  # no change, no event
    revoked = env.api.set_consent(contact_id=c["id"], channel="sms", granted=False, source="unsubscribe-link")
    assert revoked["consents"]["sms"] == {"granted": False, "source": "unsubscribe-link",
                                          "at": revoked["consents"]["sms"]["at"]}
    wait_for(lambda: len(env.events("consent_changed", c["id"])) == 2)
    events = env.events("consent_changed", c["id"])
    assert [(e["data"]["channel"], e["data"]["granted"], e["data"]["source"]) for e in events] == [
        ("sms", True, "pos-terminal"), ("sms", False, "unsubscribe-link")]
    assert events[0]["data"]["display_name"] == "Sara" and events[0]["data"]["contact_id"] == c["id"]
    time.sleep(0.3)
    assert len(env.events("consent_changed", c["id"])) == 2
    history = env.api.get_consent_history(contact_id=c["id"])["history"]
    assert [(h["channel"], h["granted"]) for h in history] == [("sms", True), ("sms", False)]
    with pytest.raises(InvalidArgument) as exc:
        env.api.set_consent(contact_id=c["id"], channel="fax", granted=True, source="x")
    assert exc.value.details["violations"][0]["field"] == "channel"


def test_an_unsubscribe_from_marketing_withdraws_the_consent_once_and_never_undoes_a_later_grant(env, dispatch):
    c = env.api.create_contact(contact={"given_name": "Uma", "emails": [f"u{uniq()}@example.com"],
                                        "consents": {"email": {"granted": True, "source": "web"}}})
    unsubscribed = clock.now()
    fact = ev.envelope("contact_unsubscribed", source="marketing", subject=c["id"], data={
        "contact_id": c["id"], "message_id": "msg_1", "campaign_id": "cmp_spring", "campaign_name": "Spring",
        "channel": "email", "at": clock.to_iso(unsubscribed)})
    send = dispatch(env.cfg, "marketing")
    send("contact_unsubscribed", fact)
    withdrawn = wait_for(lambda: (got := env.api.get_contact(contact_id=c["id"]))["consents"]["email"]["granted"]
                         is False and got)
    assert withdrawn["consents"]["email"]["source"] == "unsubscribe:cmp_spring"
    assert withdrawn["consents"]["email"]["at"] == clock.to_iso(unsubscribed)
    wait_for(lambda: len(env.events("consent_changed", c["id"])) == 1)
    # the customer opts in again afterwards; the same unsubscribe delivered again changes nothing
    env.api.set_consent(contact_id=c["id"], channel="email", granted=True, source="preference-centre")
    send("contact_unsubscribed", fact)
    send("contact_unsubscribed", {**fact, "event_id": ev.new_id("evt")})
    time.sleep(0.5)
    assert env.api.get_contact(contact_id=c["id"])["consents"]["email"]["granted"] is True
    history = env.api.get_consent_history(contact_id=c["id"])["history"]
    assert [(h["granted"], h["source"]) for h in history][-2:] == [(False, "unsubscribe:cmp_spring"),
                                                                  (True, "preference-centre")]
    audit = env.api.list_audit(record_id=c["id"], principal=None, page_size=10, page_token="")["entries"]
    assert any(e["principal"] == "service:contacts" and e["operation"] == "set_consent" for e in audit)


class Parcel(Event):
    """A kind of fact contacts has never heard of: its producer says what the timeline shows."""

    type: ClassVar[str] = "parcel_delivered"
    contact_id: Id
    parcel: str
    at: Timestamp

    def timeline(self):
        return TimelineFact(contact_id=self.contact_id, kind="parcel_delivered", occurred_at=self.at,
                            summary=f"Parcel {self.parcel} delivered", channel="other", direction="outbound",
                            reference=Reference(type="parcel", id=self.parcel), data={"parcel": self.parcel})


class CourierStore:
    def __init__(self, db):
        self.db = db


class Courier(CrmService):
    """A producer contacts knows nothing about (not in the registry either)."""

    name = "courier_t"
    OUTBOX_COLLECTIONS = ("parcels",)
    store = MongoStore(CourierStore)

    @rpc
    def deliver(self, contact_id, parcel, at):
        staged = self.outbox.announce(Parcel(contact_id=contact_id, parcel=parcel, at=at))
        self.store.db.parcels.insert_one(ev.stage_on_insert({"_id": parcel}, staged))
        self.outbox.publish(self.store.db.parcels, parcel, staged)
        return [e["event_id"] for e in staged]


def test_a_new_kind_of_fact_from_any_producer_lands_on_the_timeline_exactly_once(env, make_config, start_service, rpc,
                                                                                  amqp_uri):
    c = env.api.create_contact(contact={"given_name": "Sara", "emails": ["parcel@example.com"]})
    ccfg = make_config("courier_t")
    start_service(Courier, ccfg)
    courier = rpc(ccfg).courier_t
    event_id, fact_id = courier.deliver(c["id"], "P-1", "2026-11-20T10:00:00Z")
    wait_for(lambda: env.db.timeline.count_documents({"contact_id": c["id"]}) == 1)
    # the same fact again (a relay, a redelivery after a crash before the handled marker): nothing new
    env.db.handled_events.delete_many({})
    envelope = ev.announce(Parcel(contact_id=c["id"], parcel="P-1", at="2026-11-20T10:00:00Z"), source="courier_t",
                           event_id=event_id)[1]
    with Connection(amqp_uri) as conn:
        KombuProducer(conn).publish(envelope, exchange=timeline_exchange(), routing_key="courier_t.parcel_delivered",
                                    serializer="json", declare=[timeline_exchange()])
    assert envelope["event_id"] == fact_id
    courier.deliver(c["id"], "P-2", "2026-11-21T10:00:00Z")   # a barrier: handled after the duplicate
    wait_for(lambda: env.db.timeline.count_documents({"contact_id": c["id"]}) >= 2)
    time.sleep(0.3)
    entries = env.api.list_timeline(contact_id=c["id"])["entries"]
    assert [e["summary"] for e in entries] == ["Parcel P-2 delivered", "Parcel P-1 delivered"]
    first = entries[1]
    assert first["kind"] == "parcel_delivered" and first["source"] == "courier_t"
    assert first["direction"] == "outbound" and first["occurred_at"] == "2026-11-20T10:00:00.000Z"
    assert first["reference"] == {"type": "parcel", "id": "P-1"} and first["data"] == {"parcel": "P-1"}


def test_timeline_newest_first_with_pagination(env):
    c = env.api.create_contact(contact={"given_name": "Sara", "emails": ["tl@example.com"]})
    same = "2026-11-01T09:00:00.000Z"
    made = [env.api.log_interaction(contact_id=c["id"], channel="phone", direction="inbound", summary=f"call {i}", occurred_at=same) for i in range(4)]
    made.append(env.api.log_interaction(contact_id=c["id"], channel="email", direction="outbound", summary="latest"))
    made.append(env.api.log_interaction(contact_id=c["id"], channel="meeting", direction="internal", summary="oldest", occurred_at="2026-10-01T09:00:00Z"))
    assert made[4]["source"] == "manual" and made[4]["kind"] == "interaction"
    got, token = [], None
    while True:
        page = env.api.list_timeline(contact_id=c["id"], page_size=2, page_token=token)
        got += page["entries"]
        token = page["next_page_token"]
        if not token:
            break
    assert len(got) == 6 and len({e["id"] for e in got}) == 6
    assert got[0]["summary"] == "latest" and got[-1]["summary"] == "oldest"
    ties = [e["id"] for e in got[1:5]]
    assert ties == sorted(ties, reverse=True)
    with pytest.raises(InvalidArgument) as exc:
        env.api.log_interaction(contact_id=c["id"], channel="phone", direction="inbound", summary="x" * 2001)
    assert exc.value.details["violations"][0]["field"] == "summary"
    with pytest.raises(NotFound):
        env.api.list_timeline(contact_id="con_missing")


def test_erase_anonymizes_publishes_and_frees_keys(env):
    company = env.api.create_company(company={"name": "Chai Co", "domain": "https://www.chai.example", "tags": ["retail"]})
    c = env.api.create_contact(contact={"given_name": "سارا", "family_name": "احمدی", "emails": ["gone@example.com"],
                                "phones": ["+98 912 777 8888"], "birthday": "1990-04-01",
                                "custom_fields": {"shoe_size": 38}, "tags": ["vip"], "lifecycle_stage": "customer",
                                "consents": {"email": {"granted": True, "source": "web"}}})
    c = env.api.link_contact_to_company(contact_id=c["id"], company_id=company["id"])
    env.api.log_interaction(contact_id=c["id"], channel="phone", direction="inbound", summary="Sara asked about her order, home address Tehran")
    dispatch_entry = env.db.timeline.insert_one({"_id": "tle_loyal", "contact_id": c["id"], "kind": "loyalty",
                                                 "channel": "other", "direction": "internal",
                                                 "summary": "Earned 5 points", "occurred_at": clock.now(),
                                                 "source": "loyalty", "data": {}})
    assert dispatch_entry.acknowledged
    erased = env.api.erase_contact(contact_id=c["id"])
    assert erased["erased"] is True and erased["display_name"] == "Erased contact"
    assert erased["given_name"] == "" and erased["emails"] == [] and erased["phones"] == []
    assert erased["birthday"] is None and erased["custom_fields"] == {}
    assert erased["tags"] == ["vip"] and erased["lifecycle_stage"] == "customer"  # business segments kept
    assert erased["company_id"] == company["id"]
    assert erased["consents"]["email"]["granted"] is False
    assert env.api.get_contact(contact_id=c["id"]) == erased
    raw = env.db.contacts.find_one({"_id": c["id"]})
    assert "سارا" not in str(raw) and "gone@example.com" not in str(raw)
    summaries = {e["summary"] for e in env.api.list_timeline(contact_id=c["id"])["entries"]}
    assert summaries == {"[erased]"}   # what people wrote and what services said about them
    wait_for(lambda: env.events("contact_erased", c["id"]))
    assert env.events("contact_erased", c["id"])[0]["data"] == {"contact_id": c["id"]}
    again = env.api.erase_contact(contact_id=c["id"])  # harmless
    assert again == erased
    assert env.db.contact_keys.count_documents({"contact_id": c["id"]}) == 0
    assert c["id"] not in [x["id"] for x in env.api.search_contacts(tag="vip")["contacts"]]
    fresh = env.api.create_contact(contact={"given_name": "New", "emails": ["gone@example.com"], "phones": ["+989127778888"]})
    assert fresh["id"] != c["id"]
    with pytest.raises(FailedPrecondition):
        update(env, c["id"], erased["version"], {"given_name": "Back"})
    time.sleep(0.3)
    assert len(env.events("contact_erased", c["id"])) == 1


def test_stale_claim_is_taken_over_but_a_fresh_one_is_respected(env):
    hour_ago = clock.now() - timedelta(hours=1)
    env.db.contact_keys.insert_one({"_id": "email:ghost@example.com", "contact_id": "con_GHOST",
                                    "claimed_at": hour_ago})
    c = env.api.create_contact(contact={"given_name": "Ghostbuster", "emails": ["Ghost@example.com"]})
    assert env.db.contact_keys.find_one({"_id": "email:ghost@example.com"})["contact_id"] == c["id"]
    # a claim left by an update that crashed before releasing: its contact exists but no longer has the key
    env.db.contact_keys.insert_one({"_id": "email:moved@example.com", "contact_id": c["id"],
                                    "claimed_at": hour_ago})
    d = env.api.create_contact(contact={"given_name": "D", "emails": ["moved@example.com"]})
    assert env.db.contact_keys.find_one({"_id": "email:moved@example.com"})["contact_id"] == d["id"]
    # a claim seconds old may be a create in flight: respected
    env.db.contact_keys.insert_one({"_id": "email:inflight@example.com", "contact_id": "con_INFLIGHT",
                                    "claimed_at": clock.now()})
    with pytest.raises(AlreadyExists) as exc:
        env.api.create_contact(contact={"given_name": "E", "emails": ["inflight@example.com"]})
    assert exc.value.details["existing_id"] == "con_INFLIGHT"


def test_companies_and_links(env):
    company = env.api.create_company(company={"name": " شرکت چای ", "domain": "Chai.IR", "tags": ["B2B"]})
    assert company["id"].startswith("cmp_") and company["name"] == "شرکت چای"
    assert company["domain"] == "chai.ir" and company["tags"] == ["b2b"] and company["version"] == 1
    assert env.api.get_company(company_id=company["id"]) == company
    c = env.api.create_contact(contact={"given_name": "Sara", "emails": ["co@example.com"]})
    linked = env.api.link_contact_to_company(contact_id=c["id"], company_id=company["id"])
    assert linked["company_id"] == company["id"] and linked["version"] == 2
    assert env.api.link_contact_to_company(contact_id=c["id"], company_id=company["id"])["version"] == 2  # idempotent
    with pytest.raises(NotFound):
        env.api.link_contact_to_company(contact_id=c["id"], company_id="cmp_missing")
    with pytest.raises(NotFound):
        env.api.link_contact_to_company(contact_id="con_missing", company_id=company["id"])
    with pytest.raises(NotFound):
        env.api.get_company(company_id="cmp_missing")
    with pytest.raises(InvalidArgument) as exc:
        env.api.create_company(company={"name": "", "domain": "nodot"})
    assert [v["field"] for v in exc.value.details["violations"]] == ["company.name", "company.domain"]


def test_a_domain_belongs_to_one_company(env):
    first = env.api.create_company(company={"name": "Chai Co", "domain": "https://www.one-chai.example/about"})
    with pytest.raises(AlreadyExists) as exc:
        env.api.create_company(company={"name": "Chai Company", "domain": "ONE-CHAI.example"})
    assert exc.value.details["existing_id"] == first["id"] and exc.value.details["field"] == "company.domain"
    assert env.db.companies.count_documents({"name": "Chai Company"}) == 0
    assert env.api.create_company(company={"name": "Chai Co"})["id"] != first["id"]   # names are not unique
    entry = env.db.audit.find_one({"record_id": first["id"]})
    assert (entry["operation"], entry["record_type"], entry["after"]["domain"]) == ("create", "company", "one-chai.example")
    assert not env.db.companies.find_one({"_id": first["id"]}).get(ev.OUTBOX_COUNT)   # the entry left the outbox
    # a claim left by a create that crashed before its insert is taken over once stale
    env.db.company_keys.insert_one({"_id": "domain:ghost.example", "company_id": "cmp_GHOST",
                                    "claimed_at": clock.now() - timedelta(hours=1)})
    assert env.api.create_company(company={"name": "Ghost", "domain": "ghost.example"})["domain"] == "ghost.example"
    # a replay under its idempotency key is the first company, not a conflict with itself
    once = env.api.create_company(company={"name": "Once", "domain": "once.example"}, idempotency_key="co-1")
    assert env.api.create_company(company={"name": "Once", "domain": "once.example"},
                                  idempotency_key="co-1") == once


def test_companies_created_before_domains_were_unique_claim_them_oldest_first(env):
    from contacts.store import ContactsStore
    now = clock.now()
    for cid in ("cmp_0OLD1", "cmp_0OLD2"):
        env.db.companies.insert_one({"_id": cid, "name": "Old", "domain": "old.example", "tags": [],
                                     "created_at": now, "updated_at": now, "version": 1})
    env.db.migrations.delete_one({"_id": "company_domains"})
    assert ContactsStore(env.db).backfill_company_domains() >= 2
    assert env.db.company_keys.find_one({"_id": "domain:old.example"})["company_id"] == "cmp_0OLD1"
    assert env.db.companies.find_one({"_id": "cmp_0OLD2"})["dedup_keys"] == []
    with pytest.raises(AlreadyExists):
        env.api.create_company(company={"name": "New", "domain": "old.example"})


def test_contacts_gauge(env):
    env.api.create_contact(contact={"given_name": "A", "emails": ["g1@example.com"], "lifecycle_stage": "evangelist"})
    b = env.api.create_contact(contact={"given_name": "B", "emails": ["g2@example.com"], "lifecycle_stage": "evangelist"})
    env.api.erase_contact(contact_id=b["id"])
    with entrypoint_hook(env.container, "update_gauges") as update:
        update()
    gauge = contacts_service.CONTACTS_TOTAL
    assert gauge.labels("evangelist")._value.get() == 1
    assert gauge.labels("opportunity")._value.get() == 0


def test_a_create_whose_result_was_lost_in_a_crash_is_replayed_without_a_duplicate(env):
    """The crash window of idempotency keys: the contact was stored but the key's result was
    not. After the claim goes stale a retry runs the create again with the same ids, and the
    unique _id turns the second insert into 'the one that exists'."""
    first = env.api.create_contact(contact={"given_name": "Crash", "emails": ["crash@example.com"]},
                                   idempotency_key="crash-1")
    env.db.idempotency_keys.update_one({"_id": "create_contact:crash-1"},
                                       {"$set": {"state": "pending", "claimed_at": clock.now() - timedelta(minutes=5)},
                                        "$unset": {"result": ""}})
    again = env.api.create_contact(contact={"given_name": "Crash", "emails": ["crash@example.com"]},
                                   idempotency_key="crash-1")
    assert again["id"] == first["id"] and env.db.contacts.count_documents({"given_name": "Crash"}) == 1
    assert env.db.idempotency_keys.find_one({"_id": "create_contact:crash-1"})["state"] == "done"
    # a refused command leaves no claim: the corrected retry with the same key runs
    with pytest.raises(InvalidArgument):
        env.api.create_contact(contact={"given_name": "X", "company_id": "cmp_nope"}, idempotency_key="fix-1")
    assert env.db.idempotency_keys.find_one({"_id": "create_contact:fix-1"}) is None
    assert env.api.create_contact(contact={"given_name": "X"}, idempotency_key="fix-1")["given_name"] == "X"
