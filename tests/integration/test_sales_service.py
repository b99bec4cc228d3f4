"""The sales service in-process over the real broker and database, with the real contacts
service beside it (conversion creates contacts there; its events feed sales' read model).

Run: .venv/bin/nameko test tests/integration/test_sales_service.py -q -p no:cacheprovider
"""
from __future__ import annotations

import uuid
from datetime import timedelta

import eventlet
import pytest
from nameko.events import SERVICE_POOL, event_handler

from contacts.service import ContactsService
from crm_common import clock
from crm_common.errors import (AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied,
                               VersionConflict)
from sales.service import SalesService
from support.waiting import wait_for


def eur(minor):
    return {"amount_minor": minor, "currency": "EUR"}


def tag():
    return uuid.uuid4().hex[:8]


@pytest.fixture
def sales(make_config, start_service, mongo_client, rpc):
    """``sales(**extra)`` -> SimpleNamespace(cfg, svc (admin), contacts (admin), db, as_(roles, subject, team))."""
    from types import SimpleNamespace

    def start(replicas=1, **extra):
        contacts_cfg = make_config("contacts")
        cfg = make_config("sales", SALES_REMINDER_INTERVAL_SECONDS="0.2", **extra)
        start_service(ContactsService, {**contacts_cfg, "AMQP_URI": cfg["AMQP_URI"]})
        for _ in range(replicas):
            start_service(SalesService, cfg)
        return SimpleNamespace(
            cfg=cfg, svc=rpc(cfg).sales, contacts=rpc(cfg).contacts, db=mongo_client[cfg["MONGODB_DATABASE"]],
            as_=lambda *roles, **principal: rpc(cfg, roles=roles, **principal).sales)
    return start


def setup_team(svc, team="north", reps=("rep-a", "rep-b"), countries=("DE", "AT"), capacity=0):
    for rep in reps:
        svc.upsert_sales_rep(rep_id=rep, team=team, display_name=rep.title(), lead_capacity=capacity,
                             time_zone="Europe/Berlin")
    svc.set_territory(name=f"{team}-territory", countries=list(countries), team=team, rank=1)


def web_lead(email=None, **fields):
    return {"lead": {"given_name": "Anna", "family_name": "Schmidt", "email": email or f"anna.{tag()}@example.de",
                     "company_name": "Schmidt GmbH", "company_size": 250, "job_title": "Head of Purchasing",
                     "country": "DE", "industry": "Retail", **fields},
            "channel": "web_form", "attribution": {"source": "google", "medium": "cpc", "campaign": "spring"}}


# -- leads ---------------------------------------------------------------------------------------

def test_a_web_lead_is_scored_assigned_by_territory_and_round_robin(sales):
    s = sales()
    setup_team(s.svc)
    owners = []
    for _ in range(4):
        got = s.svc.capture_lead(**web_lead())
        assert got["merged"] is False
        lead = got["lead"]
        assert lead["status"] == "new" and lead["team"] == "north"
        assert lead["grade"] in ("A", "B") and lead["score"] >= 40
        assert {d["rule"] for d in lead["score_details"]} >= {"big_company", "decision_maker", "target_industry"}
        assert lead["assignments"][-1]["reason"] == "territory"
        owners.append(lead["owner"])
    assert sorted(owners) == ["rep-a", "rep-a", "rep-b", "rep-b"]   # round-robin
    assert owners[0] != owners[1]
    reps = {r["rep_id"]: r for r in s.svc.list_sales_reps(team="north")["reps"]}
    assert reps["rep-a"]["open_leads"] == 2 and reps["rep-b"]["open_leads"] == 2


def test_a_lead_from_outside_every_territory_waits_unassigned(sales):
    s = sales()
    setup_team(s.svc)
    lead = s.svc.capture_lead(**web_lead(country="JP"))["lead"]
    assert (lead["owner"], lead["team"]) == ("", "")


def test_capacity_is_never_exceeded_and_a_waiting_lead_is_assigned_when_room_frees(sales):
    s = sales()
    setup_team(s.svc, reps=("rep-c",), capacity=2)
    leads = [s.svc.capture_lead(**web_lead())["lead"] for _ in range(3)]
    assert [lead["owner"] for lead in leads] == ["rep-c", "rep-c", ""]
    assert leads[2]["team"] == "north" and leads[2]["assignments"][-1]["reason"] == "no_capacity"
    s.svc.disqualify_lead(lead_id=leads[0]["id"], reason="spam")
    waiting = wait_for(lambda: s.svc.get_lead(lead_id=leads[2]["id"])["owner"] == "rep-c", timeout=30)
    assert waiting
    assert s.svc.get_sales_rep(rep_id="rep-c")["open_leads"] == 2


def test_the_same_person_twice_is_one_lead_and_the_caller_is_told(sales):
    s = sales()
    setup_team(s.svc)
    email = f"dup.{tag()}@example.de"
    first = s.svc.capture_lead(**web_lead(email=email))
    second = s.svc.capture_lead(**{**web_lead(email=email.upper(), phone="+49 30 1234 5678", notes="came to our booth"),
                                   "channel": "event"})
    assert second["merged"] is True and second["lead"]["id"] == first["lead"]["id"]
    merged = s.svc.get_lead(lead_id=first["lead"]["id"])
    assert merged["phone"] == "+493012345678" and "booth" in merged["notes"]
    assert [t["channel"] for t in merged["touches"]] == ["web_form", "event"]
    assert s.db.leads.count_documents({"email": email}) == 1
    # by phone too
    third = s.svc.capture_lead(lead={"given_name": "A", "phone": "0049-30-1234-5678"}, channel="phone")
    assert third["merged"] is True and third["lead"]["id"] == first["lead"]["id"]


def test_racing_captures_of_one_person_make_one_lead(sales, rpc):
    s = sales()
    email = f"race.{tag()}@example.de"
    callers = [rpc(s.cfg).sales for _ in range(8)]   # a proxy serves one green thread at a time
    pool = eventlet.GreenPool(8)
    results = list(pool.imap(lambda caller: caller.capture_lead(**web_lead(email=email)), callers))
    ids = {r["lead"]["id"] for r in results}
    assert len(ids) == 1
    assert sum(1 for r in results if not r["merged"]) == 1
    assert s.db.leads.count_documents({"email": email}) == 1


def test_bad_lead_input_names_the_field(sales):
    s = sales()
    with pytest.raises(InvalidArgument) as err:
        s.svc.capture_lead(lead={"given_name": "No Contact"}, channel="web_form")
    assert "lead" in str(err.value) and "email or a phone" in str(err.value)
    with pytest.raises(InvalidArgument) as err:
        s.svc.capture_lead(lead={"email": "not-an-email"}, channel="web_form")
    assert err.value.violations[0]["field"] == "lead.email"
    with pytest.raises(InvalidArgument) as err:
        s.svc.capture_lead(lead={"email": "a@example.org"}, channel="carrier_pigeon")
    assert err.value.violations[0]["field"] == "channel"
    with pytest.raises(InvalidArgument) as err:
        s.svc.capture_lead(lead={"email": "a@example.org", "country": {"$ne": 1}}, channel="web_form")
    assert err.value.violations[0]["field"] == "lead.country"
    with pytest.raises(InvalidArgument) as err:
        s.svc.disqualify_lead(lead_id="lead_x", reason="meh")
    assert err.value.violations[0]["field"] == "reason"
    with pytest.raises(NotFound):
        s.svc.get_lead(lead_id="lead_nope")


def test_behaviour_raises_the_score_and_a_grade_move_is_announced(sales):
    s = sales()
    lead = s.svc.capture_lead(lead={"email": f"quiet.{tag()}@example.org"}, channel="web_form")["lead"]
    assert lead["grade"] == "D"
    for _ in range(3):
        lead = s.svc.track_lead_activity(lead_id=lead["id"], kind="form_filled")
    assert lead["behaviour"]["form_filled"] == 3 and lead["score"] == 20   # capped at 20
    assert lead["grade"] == "C"
    by_email = s.svc.track_lead_activity(email=lead["email"], kind="message_clicked", detail="spring newsletter")
    assert by_email["id"] == lead["id"] and by_email["score"] == 27
    scored = wait_for(lambda: list(s.db.leads.find({"_id": lead["id"], "_outbox_n": 0})))
    assert scored


def test_marketing_engagement_scores_open_leads_and_a_qualified_contact_becomes_a_lead(sales, dispatch):
    from crm_common.events import envelope

    s = sales()
    send = dispatch(s.cfg, "marketing")
    email = f"reader.{tag()}@example.org"
    reader = s.contacts.create_contact(contact={"given_name": "Reader", "emails": [{"address": email}]})
    lead = s.svc.capture_lead(lead={"email": email}, channel="web_form")["lead"]
    wait_for(lambda: s.svc.get_lead(lead_id=lead["id"])["contact_id"] == reader["id"])
    clicked = envelope("message_clicked", source="marketing", subject=reader["id"], data={
        "contact_id": reader["id"], "message_id": "msg_1", "campaign_id": "cmp_1", "campaign_name": "Spring",
        "channel": "email", "at": clock.to_iso(clock.now()), "link": "https://shop.example/spring"})
    send("message_clicked", clicked)
    scored = wait_for(lambda: (got := s.svc.get_lead(lead_id=lead["id"]))["behaviour"].get("message_clicked") and got)
    send("message_clicked", clicked)                     # a redelivery (a relay's, a broker's) counts once
    eventlet.sleep(0.5)
    assert s.svc.get_lead(lead_id=lead["id"])["behaviour"] == {"message_clicked": 1}
    assert scored["score"] > lead["score"]
    assert scored["history"][-1]["detail"] == "https://shop.example/spring"
    # marketing hands over someone sales has no lead for, and the reader again
    fan = s.contacts.create_contact(contact={"given_name": "Fan", "emails": [{"address": f"fan.{tag()}@example.org"}]})
    for person in (fan, reader):
        send("lead_qualified", envelope("lead_qualified", source="marketing", subject=person["id"], data={
            "contact_id": person["id"], "email": person["emails"][0]["address"], "phone": None,
            "given_name": person["given_name"], "family_name": "", "display_name": person["given_name"], "score": 12,
            "threshold": 10, "qualified_at": clock.to_iso(clock.now()),
            "history": [{"at": clock.to_iso(clock.now()), "kind": "clicked", "message_id": "msg_1",
                         "campaign_id": "cmp_1", "channel": "email", "link": "https://shop.example/spring"}]}))
    new = wait_for(lambda: [x for x in s.svc.list_leads(page_size=500)["leads"] if x.get("contact_id") == fan["id"]])
    assert new[0]["channel"] == "marketing" and "Engaged with marketing" in new[0]["notes"]
    merged = wait_for(lambda: (got := s.svc.get_lead(lead_id=lead["id"]))["touches"][-1]["channel"] != "web_form"
                      and got)
    assert [t["channel"] for t in merged["touches"]] == ["web_form", "marketing"]
    assert len([x for x in s.svc.list_leads(page_size=500)["leads"] if x.get("contact_id") == reader["id"]]) == 1


def test_rule_changes_rescore_open_leads(sales):
    s = sales()
    lead = s.svc.capture_lead(**web_lead(industry="mining"))["lead"]
    rules = s.svc.get_scoring_rules()
    assert rules["version"] == 0
    new = s.svc.set_scoring_rules(
        rules=[{"id": "miners", "attribute": "industry", "match": "any_of", "values": ["Mining"], "points": 90}],
        grades=[{"grade": "hot", "min_score": 50}, {"grade": "cold", "min_score": 0}])
    assert new["version"] == 1
    rescored = wait_for(lambda: (l := s.svc.get_lead(lead_id=lead["id"]))["grade"] == "hot" and l, timeout=30)
    assert rescored["score"] == 90
    with pytest.raises(InvalidArgument) as err:
        s.svc.set_scoring_rules(rules=[{"id": "x", "attribute": "country", "fact": "web_visit", "points": 1}],
                                grades=[{"grade": "A", "min_score": 0}])
    assert err.value.violations[0]["field"] == "rules[0]"


def test_qualify_and_convert_creates_contact_company_and_deal_once(sales):
    s = sales()
    setup_team(s.svc)
    lead = s.svc.capture_lead(**web_lead())["lead"]
    with pytest.raises(FailedPrecondition):
        s.svc.convert_lead(lead_id=lead["id"])
    s.svc.qualify_lead(lead_id=lead["id"])
    first = s.svc.convert_lead(lead_id=lead["id"], create_deal=True,
                               deal={"name": "Schmidt rollout", "amount": eur(1_500_000)})
    assert first["contact_id"].startswith("con_") and first["company_id"].startswith("cmp_")
    assert first["deal_id"].startswith("deal_") and first["contact_existed"] is False
    again = s.svc.convert_lead(lead_id=lead["id"], create_deal=True)
    assert (again["contact_id"], again["company_id"], again["deal_id"]) == (
        first["contact_id"], first["company_id"], first["deal_id"])
    contact = s.contacts.get_contact(contact_id=first["contact_id"])
    assert contact["company_id"] == first["company_id"] and contact["owner"] == lead["owner"]
    deal = s.svc.get_deal(deal_id=first["deal_id"])
    assert (deal["stage_id"], deal["owner"], deal["lead_id"]) == ("qualification", lead["owner"], lead["id"])
    assert s.svc.get_lead(lead_id=lead["id"])["status"] == "converted"
    # the email is free again: a new capture starts a new lead, linked to the contact
    wait_for(lambda: s.db.known_contacts.find_one({"_id": first["contact_id"]}))
    fresh = s.svc.capture_lead(**web_lead(email=lead["email"]))
    assert fresh["merged"] is False and fresh["lead"]["contact_id"] == first["contact_id"]


def test_converting_a_lead_whose_email_is_a_contact_links_that_contact(sales):
    s = sales()
    email = f"known.{tag()}@example.org"
    known = s.contacts.create_contact(contact={"given_name": "Known", "emails": [{"address": email}]})
    lead = s.svc.capture_lead(lead={"email": email, "given_name": "Known"}, channel="chat")["lead"]
    s.svc.qualify_lead(lead_id=lead["id"])
    done = s.svc.convert_lead(lead_id=lead["id"])
    assert done["contact_id"] == known["id"] and done["contact_existed"] is True and done["deal_id"] == ""


def test_converted_leads_of_one_company_share_it(sales):
    """The company is matched by the lead's website (contacts keeps one company per
    domain), or named by the caller; a lead without either gets a company of its own."""
    s = sales()
    site = f"schmidt-{tag()}.de"
    first, second = (s.svc.capture_lead(**web_lead(website=f"https://www.{site}/kontakt"))["lead"] for _ in range(2))
    for lead in (first, second):
        s.svc.qualify_lead(lead_id=lead["id"])
    a = s.svc.convert_lead(lead_id=first["id"])
    b = s.svc.convert_lead(lead_id=second["id"])
    assert a["company_existed"] is False and b["company_existed"] is True
    assert b["company_id"] == a["company_id"]
    assert s.contacts.get_company(company_id=a["company_id"])["domain"] == site
    assert s.contacts.get_contact(contact_id=b["contact_id"])["company_id"] == a["company_id"]
    third = s.svc.capture_lead(**web_lead(company_name="Schmidt Holding"))["lead"]
    s.svc.qualify_lead(lead_id=third["id"])
    with pytest.raises(NotFound):
        s.svc.convert_lead(lead_id=third["id"], company_id="cmp_missing")
    assert s.svc.get_lead(lead_id=third["id"])["status"] == "qualified"   # nothing half done
    c = s.svc.convert_lead(lead_id=third["id"], company_id=a["company_id"], create_deal=True)
    assert (c["company_id"], c["company_existed"]) == (a["company_id"], True)
    assert s.svc.get_deal(deal_id=c["deal_id"])["company_id"] == a["company_id"]


# -- deals -----------------------------------------------------------------------------------------

def new_contact(s, name="Deal"):
    return s.contacts.create_contact(contact={"given_name": name, "emails": [{"address": f"d.{tag()}@example.org"}]})


def test_a_deal_through_three_stages_and_won_keeps_its_history_and_shows_in_reports(sales):
    s = sales()
    contact = new_contact(s)
    deal = s.svc.create_deal(deal={"name": "Big order", "contact_id": contact["id"], "amount": eur(1_000_000),
                                   "expected_close_date": "2027-03-15"})
    assert (deal["stage_id"], deal["probability"], deal["status"]) == ("qualification", 10, "open")
    for stage in ("needs_analysis", "proposal", "negotiation"):
        deal = s.svc.move_deal(deal_id=deal["id"], stage_id=stage)
    forecast = s.svc.get_forecast(from_month="2027-01", months=6)
    march = [r for r in forecast["by_month"] if r["month"] == "2027-03"]
    assert march[0]["weighted"] == eur(750_000)
    deal = s.svc.win_deal(deal_id=deal["id"])
    assert deal["status"] == "won" and deal["probability"] == 100
    assert [h["stage_id"] for h in deal["stage_history"]] == [
        "qualification", "needs_analysis", "proposal", "negotiation", "won"]
    assert all(h["left_at"] for h in deal["stage_history"][:-1]) and deal["stage_history"][-1]["left_at"] is None
    report = s.svc.get_sales_report()
    assert report["won"] == 1 and report["win_rate"] == 1.0 and report["won_amount"] == [eur(1_000_000)]
    conversion = {c["stage_id"]: c for c in report["stage_conversion"]}
    assert conversion["negotiation"]["entered"] == 1 and conversion["negotiation"]["rate"] == 1.0
    with pytest.raises(FailedPrecondition):
        s.svc.move_deal(deal_id=deal["id"], stage_id="proposal")
    reopened = s.svc.reopen_deal(deal_id=deal["id"])
    assert reopened["status"] == "open" and reopened["stage_id"] == "negotiation"
    assert reopened["reopened"][0]["from_status"] == "won"


def test_deal_input_errors_name_the_field(sales):
    s = sales()
    contact = new_contact(s)
    deal = s.svc.create_deal(deal={"name": "X", "contact_id": contact["id"], "amount": eur(100)})
    with pytest.raises(InvalidArgument) as err:
        s.svc.move_deal(deal_id=deal["id"], stage_id="closing_party")
    assert err.value.violations[0]["field"] == "stage_id" and "qualification" in str(err.value)
    with pytest.raises(InvalidArgument) as err:
        s.svc.lose_deal(deal_id=deal["id"], reason="")
    assert err.value.violations[0]["field"] == "reason"
    with pytest.raises(NotFound) as err:
        s.svc.create_deal(deal={"name": "X", "contact_id": "con_doesnotexist", "amount": eur(100)})
    assert "deal.contact_id" in str(err.value)
    with pytest.raises(InvalidArgument) as err:
        s.svc.create_deal(deal={"name": "X", "contact_id": contact["id"], "amount": eur(-5)})
    assert err.value.violations[0]["field"] == "deal.amount"
    lost = s.svc.lose_deal(deal_id=deal["id"], reason="price", note="too expensive")
    assert lost["lost"]["reason"] == "price"
    with pytest.raises(VersionConflict):
        s.svc.update_deal(deal_id=deal["id"], deal={"name": "Y"}, update_mask=["name"], expected_version=1)


# -- scopes ------------------------------------------------------------------------------------------

def test_a_rep_sees_and_changes_only_their_own_deals_and_leads(sales):
    s = sales()
    setup_team(s.svc, reps=("rep-x", "rep-y"))
    contact = new_contact(s)
    rep_x = s.as_("sales_rep", subject="user:rep-x", team="north")
    rep_y = s.as_("sales_rep", subject="user:rep-y", team="north")
    manager = s.as_("sales_manager", subject="user:boss", team="north")
    deal = rep_x.create_deal(deal={"name": "Mine", "contact_id": contact["id"], "amount": eur(100)})
    assert deal["owner"] == "rep-x" and deal["team"] == "north"
    with pytest.raises(NotFound):
        rep_y.get_deal(deal_id=deal["id"])
    with pytest.raises(NotFound):
        rep_y.move_deal(deal_id=deal["id"], stage_id="proposal")
    assert rep_y.list_deals()["deals"] == []
    assert manager.get_deal(deal_id=deal["id"])["id"] == deal["id"]
    with pytest.raises(PermissionDenied):
        rep_y.create_deal(deal={"name": "For x", "contact_id": contact["id"], "amount": eur(1), "owner": "rep-x"})
    analyst = s.as_("analyst")
    lead = s.svc.capture_lead(**web_lead(phone="+49 30 5550 1234"))["lead"]
    masked = analyst.get_lead(lead_id=lead["id"])
    assert masked["email"] != lead["email"] and "•••" in masked["email"] and "•••" in masked["phone"]
    with pytest.raises(PermissionDenied):
        analyst.qualify_lead(lead_id=lead["id"])


# -- activities ------------------------------------------------------------------------------------

REMINDERS: list[dict] = []


class ReminderSink:
    """A consumer of sales' reminders: records every delivery."""

    name = "reminder_sink_t"

    @event_handler("sales", "activity_due", handler_type=SERVICE_POOL)
    def on_due(self, event):
        REMINDERS.append(event)


def test_a_due_activity_is_reminded_exactly_once_with_two_replicas(sales, start_service, make_config):
    s = sales(replicas=2)
    start_service(ReminderSink, {**make_config("reminder_sink"), "AMQP_URI": s.cfg["AMQP_URI"]})
    contact = new_contact(s)
    due = clock.now() - timedelta(seconds=1)
    ids = [s.svc.create_activity(activity={"kind": "call", "subject": f"Call {i}", "due_at": clock.to_iso(due),
                                           "regarding": {"type": "contact", "id": contact["id"]},
                                           "owner": "rep-z"})["id"] for i in range(20)]
    wait_for(lambda: all(s.svc.get_activity(activity_id=i)["reminded_at"] for i in ids), timeout=20)
    wait_for(lambda: len([e for e in REMINDERS if e["subject"] in ids]) >= 20)
    eventlet.sleep(1.5)   # both replicas' timers ran several more rounds meanwhile
    delivered = [e["subject"] for e in REMINDERS if e["subject"] in ids]
    assert sorted(delivered) == sorted(ids)   # each activity reminded once: no more, no less


def test_activity_lists_by_view_and_completion(sales):
    s = sales()
    now = clock.now()
    s.svc.upsert_sales_rep(rep_id="rep-t", team="north", time_zone="Asia/Tehran")
    caller = s.as_("sales_rep", subject="user:rep-t", team="north")
    past = caller.create_activity(activity={"kind": "task", "subject": "Overdue",
                                            "due_at": clock.to_iso(now - timedelta(days=2))})
    later = caller.create_activity(activity={"kind": "meeting", "subject": "Next week",
                                             "due_at": clock.to_iso(now + timedelta(days=7))})
    overdue = caller.list_activities(view="overdue")
    assert [a["id"] for a in overdue["activities"]] == [past["id"]] and overdue["time_zone"] == "Asia/Tehran"
    assert [a["id"] for a in caller.list_activities(view="upcoming")["activities"]] == [later["id"]]
    done = caller.complete_activity(activity_id=later["id"], outcome="signed")
    assert done["status"] == "done"
    with pytest.raises(FailedPrecondition):
        caller.reschedule_activity(activity_id=later["id"], due_at=clock.to_iso(now))
    assert caller.list_activities(view="upcoming")["activities"] == []


# -- orders --------------------------------------------------------------------------------------------

def order(contact_id, ref=None, lines=None, currency="EUR"):
    return {"contact_id": contact_id, "external_ref": ref or f"web-{tag()}", "channel": "web", "currency": currency,
            "lines": lines or [{"sku": "TEA-1", "name": "Green tea", "quantity": 2, "unit_price": eur(1_250)},
                               {"sku": "POT-9", "name": "Teapot", "quantity": 1, "unit_price": eur(4_900)}]}


def test_an_order_is_placed_once_per_reference_paid_shipped_and_summarized(sales):
    s = sales()
    contact = new_contact(s)
    placed = s.svc.place_order(**order(contact["id"], ref="shop-1001"))
    assert placed["total"] == eur(7_400) and placed["status"] == "placed"
    again = s.svc.place_order(**order(contact["id"], ref="shop-1001"))
    assert again["id"] == placed["id"]
    other = new_contact(s, "Other")
    with pytest.raises(AlreadyExists):
        s.svc.place_order(**order(other["id"], ref="shop-1001"))
    with pytest.raises(FailedPrecondition):
        s.svc.ship_order(order_id=placed["id"])
    paid = s.svc.pay_order(order_id=placed["id"], payment_ref="psp-1")
    assert s.svc.pay_order(order_id=placed["id"])["version"] == paid["version"]   # a retry changes nothing
    s.svc.ship_order(order_id=placed["id"], carrier="DHL", tracking_ref="JD0001")
    delivered = s.svc.deliver_order(order_id=placed["id"])
    assert [h["status"] for h in delivered["status_history"]] == ["placed", "paid", "shipped", "delivered"]
    summary = wait_for(lambda: (x := s.svc.get_purchase_summary(contact_id=contact["id"]))["order_count"] and x)
    assert summary["totals"] == [eur(7_400)] and summary["products"][0]["sku"] == "TEA-1"
    first = s.svc.list_purchase_summaries(page_size=1, page_token="")     # internal: a read model's rebuild pages them
    assert first["summaries"] == [summary] and first["next_page_token"] == ""
    s.svc.refund_order(order_id=placed["id"], reason="damaged")
    summary = wait_for(lambda: (x := s.svc.get_purchase_summary(contact_id=contact["id"]))["refunded_count"] and x)
    assert summary["order_count"] == 0 and summary["totals"] == [eur(0)]
    with pytest.raises(FailedPrecondition):
        s.svc.cancel_order(order_id=placed["id"], reason="too late")


def test_bad_orders_are_refused_naming_the_field(sales):
    s = sales()
    contact = new_contact(s)
    mixed = order(contact["id"], lines=[{"sku": "A", "name": "A", "quantity": 1, "unit_price": eur(100)},
                                        {"sku": "B", "name": "B", "quantity": 1,
                                         "unit_price": {"amount_minor": 100, "currency": "IRR"}}])
    with pytest.raises(InvalidArgument) as err:
        s.svc.place_order(**mixed)
    assert err.value.violations[0]["field"] == "lines[1].unit_price.currency"
    with pytest.raises(InvalidArgument) as err:
        s.svc.place_order(**order(contact["id"], lines=[{"sku": "A", "name": "A", "quantity": -1,
                                                         "unit_price": eur(100)}]))
    assert err.value.violations[0]["field"] == "lines[0].quantity"
    with pytest.raises(InvalidArgument) as err:
        s.svc.place_order(**order(contact["id"], lines=[{"sku": "A", "name": "A", "quantity": 1_000_000,
                                                         "unit_price": eur(10**15)}]))
    assert err.value.violations[0]["field"] == "lines[0].quantity"
    with pytest.raises(NotFound) as err:
        s.svc.place_order(**order("con_unknown0000"))
    assert "contact_id" in str(err.value)
    s.contacts.erase_contact(contact_id=contact["id"])
    wait_for(lambda: s.db.known_contacts.find_one({"_id": contact["id"], "erased": True}))
    with pytest.raises(FailedPrecondition):
        s.svc.place_order(**order(contact["id"]))


def test_a_ticket_the_contact_opens_raises_their_open_leads_score_once(sales, dispatch):
    from crm_common.events import envelope

    s = sales()
    contact = new_contact(s, "Ticket")
    lead = s.svc.capture_lead(lead={"email": f"t.{tag()}@example.org"}, channel="chat",
                              contact_id=contact["id"])["lead"]
    opened = envelope("ticket_opened", source="service-desk", subject="tkt_1", subject_type="ticket",
                      data={"ticket_id": "tkt_1", "contact_id": contact["id"], "category": "billing",
                            "priority": "high", "channel": "email", "opened_at": clock.to_iso(clock.now())})
    send = dispatch(s.cfg, "service-desk")
    send("ticket_opened", opened)
    send("ticket_opened", opened)   # redelivered
    scored = wait_for(lambda: (x := s.svc.get_lead(lead_id=lead["id"]))["behaviour"].get("ticket_opened") and x)
    eventlet.sleep(0.5)
    scored = s.svc.get_lead(lead_id=lead["id"])
    assert scored["behaviour"] == {"ticket_opened": 1} and scored["score"] == lead["score"] + 5
    assert scored["history"][-1]["source"] == "service-desk" and "billing" in scored["history"][-1]["detail"]
