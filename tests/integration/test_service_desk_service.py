"""The service desk in-process over the real broker and database: tickets and their
conversation, SLA clocks and the timer (exactly once), routing and round-robin under a
cap, the read model of tiers and value, the knowledge base and the bot, satisfaction,
reports and erasure.

Run: .venv/bin/nameko test tests/integration/test_service_desk_service.py -q -p no:cacheprovider
"""
from __future__ import annotations

import time
import uuid

import pytest
from nameko.events import SERVICE_POOL, event_handler

from crm_common import clock
from crm_common.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from crm_common.events import envelope
from service_desk.service import ServiceDeskService
from support.waiting import wait_for

SEEN: list[dict] = []
H = 3600


class DeskEventSink:
    """A stand-in consumer of service-desk.events."""

    name = "service_desk_sink_t"

    @event_handler("service-desk", "ticket_opened", handler_type=SERVICE_POOL)
    def on_opened(self, event):
        SEEN.append(event)

    @event_handler("service-desk", "ticket_sla_warning", handler_type=SERVICE_POOL)
    def on_warning(self, event):
        SEEN.append(event)

    @event_handler("service-desk", "ticket_sla_breached", handler_type=SERVICE_POOL)
    def on_breach(self, event):
        SEEN.append(event)

    @event_handler("service-desk", "ticket_escalated", handler_type=SERVICE_POOL)
    def on_escalated(self, event):
        SEEN.append(event)

    @event_handler("service-desk", "ticket_resolved", handler_type=SERVICE_POOL)
    def on_resolved(self, event):
        SEEN.append(event)

    @event_handler("service-desk", "satisfaction_requested", handler_type=SERVICE_POOL)
    def on_satisfaction(self, event):
        SEEN.append(event)

    @event_handler("service-desk", "csat_received", handler_type=SERVICE_POOL)
    def on_csat(self, event):
        SEEN.append(event)


def events_of(ticket_id, type_):
    """The distinct events (by event_id, as consumers dedupe: the relay re-publishes an event
    whose outbox entry is still there after 5 s, which a loaded machine reaches)."""
    return list({e["event_id"]: e for e in SEEN if e["subject"] == ticket_id and e["type"] == type_}.values())


def cid():
    return f"con_t{uuid.uuid4().hex[:12]}"


ALL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def targets(fr, res):
    return [{"priority": p, "first_response_seconds": fr, "resolution_seconds": res}
            for p in ("low", "normal", "high", "urgent")]


@pytest.fixture
def desk(make_config, start_service, mongo_client, rpc):
    """(config, rpc proxy as admin, database, rpc factory)."""
    cfg = make_config("service-desk")
    start_service(DeskEventSink, make_config("service_desk_sink"))
    start_service(ServiceDeskService, cfg)
    return cfg, rpc(cfg)["service-desk"], mongo_client[cfg["MONGODB_DATABASE"]], rpc


def open_ticket(svc, contact_id, **kw):
    args = {"contact_id": contact_id, "subject": "Where is my order?", "description": "It is late.\nPlease help.",
            "category": "late_delivery", "priority": "normal", "channel": "email", "order_ref": "ord-1", **kw}
    return svc.open_ticket(**args)


def test_open_reply_note_and_the_customer_never_sees_a_note(desk):
    cfg, svc, db, _ = desk
    contact = cid()
    ticket = open_ticket(svc, contact)
    assert (ticket["status"], ticket["group"], ticket["assignee"], ticket["sla"]["policy_id"]) == \
        ("new", "support", "", "")
    assert ticket["id"].startswith("tkt_") and ticket["description"] == "It is late.\nPlease help."
    reply = svc.reply_to_ticket(ticket_id=ticket["id"], body="We are on it.", internal=False)
    assert reply["ticket"]["status"] == "open" and reply["ticket"]["first_response_at"]
    assert reply["message"]["seq"] == 1 and reply["message"]["author"] == "test-admin"
    note = svc.reply_to_ticket(ticket_id=ticket["id"], body="Carrier says Tuesday. Do not promise.", internal=True)
    assert note["message"]["internal"] is True
    svc.record_customer_reply(ticket_id=ticket["id"], body="Thanks!")
    agent_view = svc.list_messages(ticket_id=ticket["id"])["messages"]
    customer_view = svc.list_customer_messages(ticket_id=ticket["id"])["messages"]
    assert [m["body"] for m in agent_view] == ["We are on it.", "Carrier says Tuesday. Do not promise.", "Thanks!"]
    assert [m["body"] for m in customer_view] == ["We are on it.", "Thanks!"]
    assert all("author" not in m for m in customer_view)
    wait_for(lambda: events_of(ticket["id"], "ticket_opened"))
    [opened] = events_of(ticket["id"], "ticket_opened")
    assert {k: opened["data"][k] for k in ("contact_id", "category", "priority", "channel")} == \
        {"contact_id": contact, "category": "late_delivery", "priority": "normal", "channel": "email"}
    page = svc.list_messages(ticket_id=ticket["id"], page_size=2)
    assert len(page["messages"]) == 2 and page["next_page_token"]
    rest = svc.list_messages(ticket_id=ticket["id"], page_size=2, page_token=page["next_page_token"])
    assert [m["seq"] for m in rest["messages"]] == [3] and rest["next_page_token"] == ""


def test_bad_input_and_unknown_records(desk):
    cfg, svc, db, _ = desk
    with pytest.raises(InvalidArgument) as err:
        open_ticket(svc, cid(), category="nonsense", subject="")
    assert {v["field"] for v in err.value.details["violations"]} == {"category", "subject"}
    with pytest.raises(NotFound):
        svc.get_ticket(ticket_id="tkt_nope")
    with pytest.raises(InvalidArgument):
        svc.get_ticket(ticket_id={"$ne": 1})
    t = open_ticket(svc, cid())
    with pytest.raises(InvalidArgument) as err:
        svc.change_ticket_status(ticket_id=t["id"], status="pending")
    assert err.value.details["violations"][0]["field"] == "pending_reason"
    with pytest.raises(FailedPrecondition):
        svc.change_ticket_status(ticket_id=t["id"], status="closed")


def test_lifecycle_pending_pauses_resolution_and_resolve_requests_satisfaction(desk):
    cfg, svc, db, _ = desk
    svc.save_sla_policy(policy={"id": "all", "name": "All", "targets": targets(H, 8 * H)})
    t = open_ticket(svc, cid())
    assert t["sla"]["policy_id"] == "all" and t["sla"]["resolution"]["target_seconds"] == 8 * H
    pending = svc.change_ticket_status(ticket_id=t["id"], status="pending", pending_reason="customer")
    res = pending["sla"]["resolution"]
    assert res["paused"] and not res["running"] and res["due_at"] is None
    assert pending["sla"]["first_response"]["running"]          # pausing does not touch first response
    time.sleep(1.0)
    back = svc.record_customer_reply(ticket_id=t["id"], body="Here is the photo.")["ticket"]
    assert back["status"] == "open" and back["sla"]["resolution"]["running"]
    assert back["sla"]["resolution"]["elapsed_seconds"] < 1.0    # the wait did not count
    resolved = svc.change_ticket_status(ticket_id=t["id"], status="resolved")
    assert resolved["sla"]["resolution"]["met"] is True and resolved["sla"]["first_response"]["met"] is True
    assert resolved["reopen_until"]
    wait_for(lambda: events_of(t["id"], "satisfaction_requested") and events_of(t["id"], "ticket_resolved"))
    with pytest.raises(InvalidArgument):
        svc.record_satisfaction(ticket_id=t["id"], score=6)
    rated = svc.record_satisfaction(ticket_id=t["id"], score=4, comment="Quick, thanks")
    assert rated["satisfaction"]["score"] == 4
    with pytest.raises(FailedPrecondition):
        svc.record_satisfaction(ticket_id=t["id"], score=5)
    wait_for(lambda: events_of(t["id"], "csat_received"))
    assert events_of(t["id"], "csat_received")[0]["data"]["score"] == 4
    # a reply within the reopen window reopens it; the history keeps every move
    reopened = svc.record_customer_reply(ticket_id=t["id"], body="It broke again")["ticket"]
    assert reopened["status"] == "open" and reopened["reopened_count"] == 1
    assert [h["to_value"] for h in reopened["history"] if h["what"] == "status"] == \
        ["pending", "open", "resolved", "open"]


def test_warning_then_breach_once_each_and_the_breach_escalates(desk):
    cfg, svc, db, _ = desk
    svc.save_group(group={"id": "support", "name": "Support", "escalation_group": "leads"})
    svc.save_sla_policy(policy={"id": "fast", "name": "Fast", "warning_percent": 50, "targets": targets(2, 3600)})
    t = open_ticket(svc, cid())
    assert t["sla"]["first_response"]["target_seconds"] == 2
    wait_for(lambda: events_of(t["id"], "ticket_sla_breached"), timeout=15)
    after = svc.get_ticket(ticket_id=t["id"])
    assert after["priority"] == "high" and after["escalated"] and after["sla"]["first_response"]["breached"]
    assert after["sla"]["priority"] == "normal"                 # escalation keeps the targets
    for _ in range(3):
        svc.run_due_timers()
    time.sleep(1.0)
    assert len(events_of(t["id"], "ticket_sla_warning")) == 1 and len(events_of(t["id"], "ticket_sla_breached")) == 1
    [esc] = events_of(t["id"], "ticket_escalated")
    assert (esc["data"]["escalation_group"], esc["data"]["to_priority"]) == ("leads", "high")
    warning = events_of(t["id"], "ticket_sla_warning")[0]["data"]
    assert warning["target"] == "first_response" and warning["due_at"] <= warning["warned_at"]


def test_routing_round_robin_and_the_cap(desk):
    cfg, svc, db, _ = desk
    svc.save_group(group={"id": "billing", "name": "Billing", "categories": ["billing"]})
    for name in ("ana", "bob"):
        svc.save_agent(agent={"id": name, "name": name.title(), "groups": ["billing"], "available": True,
                              "max_open": 2})
    got = [open_ticket(svc, cid(), category="billing")["assignee"] for _ in range(5)]
    assert sorted(got[:4]) == ["ana", "ana", "bob", "bob"] and got[0] != got[1] and got[4] == ""
    agents = {a["id"]: a for a in svc.list_agents(group="billing")["agents"]}
    assert agents["ana"]["open_tickets"] == 2 and agents["bob"]["open_tickets"] == 2
    queued = svc.list_tickets(group="billing", status="new")["tickets"]
    assert len(queued) == 1 and queued[0]["assignee"] == ""
    done = svc.list_tickets(assignee="ana")["tickets"][0]
    svc.change_ticket_status(ticket_id=done["id"], status="resolved")
    taken = svc.assign_ticket(ticket_id=queued[0]["id"])
    assert taken["assignee"] == "ana" and taken["status"] == "open"
    with pytest.raises(FailedPrecondition):
        svc.assign_ticket(ticket_id=queued[0]["id"], assignee="ana", group="support")


def test_scopes_agent_sees_the_team_queue_only(desk):
    cfg, svc, db, rpc = desk
    svc.save_group(group={"id": "billing", "name": "Billing", "categories": ["billing"]})
    mine = open_ticket(svc, cid(), category="billing")
    other = open_ticket(svc, cid(), category="question")
    agent = rpc(cfg, roles=("support_agent",), subject="user:neda", team="billing")["service-desk"]
    assert agent.get_ticket(ticket_id=mine["id"])["id"] == mine["id"]
    with pytest.raises(NotFound):
        agent.get_ticket(ticket_id=other["id"])
    assert {t["id"] for t in agent.list_tickets()["tickets"]} == {mine["id"]}
    assert agent.list_tickets(group="support")["tickets"] == []
    with pytest.raises(PermissionDenied):
        agent.save_group(group={"id": "x", "name": "X"})
    svc.save_agent(agent={"id": "neda", "name": "Neda", "groups": ["billing"]})
    svc.save_agent(agent={"id": "omid", "name": "Omid", "groups": ["billing"]})
    assert agent.set_agent_availability(agent_id="neda", available=False)["available"] is False
    with pytest.raises(PermissionDenied):
        agent.set_agent_availability(agent_id="omid", available=False)


def test_the_read_model_retargets_open_tickets_keeping_elapsed_time(desk, dispatch):
    cfg, svc, db, _ = desk
    svc.save_sla_policy(policy={"id": "base", "name": "Base", "targets": targets(8 * H, 40 * H)})
    svc.save_sla_policy(policy={"id": "gold", "name": "Gold", "tiers": ["gold", "platinum"],
                                "targets": targets(H, 8 * H)})
    svc.save_sla_policy(policy={"id": "vip", "name": "High value", "segments": ["high"],
                                "targets": targets(1800, 4 * H)})
    gold, bronze = cid(), cid()
    loyalty, sales = dispatch(cfg, "loyalty"), dispatch(cfg, "sales")
    loyalty("member_enrolled", envelope("member_enrolled", source="loyalty", subject=gold, data={
        "contact_id": gold, "member_id": "mem_1", "tier": "bronze", "enrolled_at": "2026-01-01T00:00:00Z"}))
    loyalty("tier_changed", envelope("tier_changed", source="loyalty", subject=gold, data={
        "contact_id": gold, "from_tier": "bronze", "to_tier": "gold", "points_earned_12m": 6000,
        "changed_at": "2026-02-01T00:00:00Z"}))
    wait_for(lambda: (db.customers.find_one({"_id": gold}) or {}).get("tier") == "gold")
    a, b = open_ticket(svc, gold), open_ticket(svc, bronze)
    assert (a["sla"]["policy_id"], b["sla"]["policy_id"]) == ("gold", "base")
    assert a["sla"]["resolution"]["target_seconds"] < b["sla"]["resolution"]["target_seconds"]
    time.sleep(1.0)
    # the bronze customer's value reaches the high band: the open ticket follows
    sales("purchase_summary_changed", envelope("purchase_summary_changed", source="sales", subject=bronze, data={
        "contact_id": bronze, "summary": {"totals": [{"amount_minor": 900_000, "currency": "EUR"},
                                                     {"amount_minor": 10, "currency": "USD"}], "order_count": 3}}))
    moved = wait_for(lambda: (t := svc.get_ticket(ticket_id=b["id"]))["sla"]["policy_id"] == "vip" and t)
    res = moved["sla"]["resolution"]
    assert res["target_seconds"] == 4 * H and res["elapsed_seconds"] >= 1.0       # time kept, not restarted
    assert moved["sla"]["segment"] == "high"
    # an older fact arriving late changes nothing
    loyalty("tier_changed", envelope("tier_changed", source="loyalty", subject=gold, data={
        "contact_id": gold, "from_tier": "silver", "to_tier": "silver", "points_earned_12m": 1000,
        "changed_at": "2026-01-15T00:00:00Z"}))
    time.sleep(0.5)
    assert svc.get_ticket(ticket_id=a["id"])["sla"]["policy_id"] == "gold"


def test_knowledge_base_search_and_the_bot(desk):
    cfg, svc, db, _ = desk
    refunds = svc.create_article(article={"title": "Refunds and returns", "locale": "en", "status": "published",
                                          "body": "You can return an order within 14 days. Refunds go back to "
                                                  "your card within 5 working days.", "tags": ["refund"]})
    svc.create_article(article={"title": "Delivery times", "locale": "en", "status": "published",
                                "body": "Orders ship within 2 days and arrive in 3 to 5 days.", "tags": []})
    fa = svc.create_article(article={"title": "مرجوع کردن کالا", "locale": "fa", "status": "published",
                                     "body": "كالای خریداری‌شده را تا ۱۴ روز می‌توانید مرجوع کنید.", "tags": ["مرجوعی"]})
    draft = svc.create_article(article={"title": "Refund secrets", "locale": "en", "body": "Draft refund notes"})
    hits = svc.search_articles(query="refunds")["hits"]
    assert [h["article"]["id"] for h in hits] == [refunds["id"]]
    assert draft["id"] in [h["article"]["id"] for h in svc.search_articles(query="refund", include_drafts=True)["hits"]]
    # Arabic letter variants and digits typed differently still find the Persian article
    assert svc.search_articles(query="كالا را مرجوع كنم 14")["hits"][0]["article"]["id"] == fa["id"]
    assert svc.search_articles(query="refund", locale="fa")["hits"] == []
    contact = cid()
    answered = svc.ask_bot(contact_id=contact, question="How do I get a refund for my order?")
    assert answered["outcome"] == "answered" and answered["hits"][0]["article"]["id"] == refunds["id"]
    unsure = svc.ask_bot(contact_id=contact, conversation_id=answered["conversation_id"],
                         question="My blender makes a strange grinding noise")
    assert unsure["outcome"] == "handoff_unsure" and unsure["ticket_id"]
    ticket = svc.get_ticket(ticket_id=unsure["ticket_id"])
    assert ticket["channel"] == "bot" and "How do I get a refund" in ticket["description"] \
        and "grinding noise" in ticket["description"]
    later = svc.ask_bot(contact_id=contact, conversation_id=answered["conversation_id"], question="Any news?")
    assert later["outcome"] == "handed_off"
    assert [m["body"] for m in svc.list_customer_messages(ticket_id=ticket["id"])["messages"]] == ["Any news?"]
    asked = svc.ask_bot(contact_id=cid(), question="می‌خواهم با یک کارشناس صحبت کنم", locale="fa")
    assert asked["outcome"] == "handoff_asked" and asked["ticket_id"] in asked["text"]


def test_report_matches_the_tickets(desk):
    cfg, svc, db, _ = desk
    svc.save_sla_policy(policy={"id": "all", "name": "All", "targets": targets(H, 8 * H)})
    since = clock.to_iso(clock.now())
    a, b, c = (open_ticket(svc, cid(), category=cat, channel=ch) for cat, ch in
               (("billing", "email"), ("billing", "phone"), ("question", "email")))
    svc.reply_to_ticket(ticket_id=a["id"], body="Done")
    svc.change_ticket_status(ticket_id=a["id"], status="resolved")
    svc.record_satisfaction(ticket_id=a["id"], score=5)
    svc.change_ticket_status(ticket_id=b["id"], status="pending", pending_reason="third_party")
    report = svc.get_service_report(since=since, until=clock.to_iso(clock.now() + clock_delta()))
    assert report["tickets"] == 3
    assert report["top_categories"] == [{"category": "billing", "count": 2}, {"category": "question", "count": 1}]
    assert report["first_response_seconds"]["count"] == 1 and report["resolution_seconds"]["count"] == 1
    [row] = report["sla_by_priority"]
    assert row["first_response"] == {"met": 1, "missed": 0, "percent": 100.0}
    assert report["csat_by_channel"] == [{"key": "email", "responses": 1, "average": 5.0, "satisfied_percent": 100.0}]
    backlog = {r["status"]: r["count"] for r in report["backlog"]}
    assert backlog["new"] >= 1 and backlog["pending"] >= 1


def clock_delta():
    from datetime import timedelta
    return timedelta(seconds=5)


def test_erasure_anonymizes_tickets_and_keeps_them(desk, dispatch):
    cfg, svc, db, _ = desk
    contact = cid()
    t = open_ticket(svc, contact, subject="My address is 12 Main St")
    svc.reply_to_ticket(ticket_id=t["id"], body="Dear Sara, we called 0912...")
    dispatch(cfg, "contacts")("contact_erased", envelope("contact_erased", source="contacts", subject=contact,
                                                         data={"contact_id": contact}))
    erased = wait_for(lambda: (x := svc.get_ticket(ticket_id=t["id"]))["erased"] and x)
    assert (erased["subject"], erased["description"]) == ("[erased]", "[erased]")
    assert {m["body"] for m in svc.list_messages(ticket_id=t["id"])["messages"]} == {"[erased]"}
    wait_for(lambda: db.audit.count_documents({"contact_id": contact}) >= 2)
    wait_for(lambda: all(d.get("anonymized") for d in db.audit.find({"contact_id": contact})))
    with pytest.raises(FailedPrecondition):
        open_ticket(svc, contact)
    with pytest.raises(FailedPrecondition):
        svc.reply_to_ticket(ticket_id=t["id"], body="more")


def test_two_replicas_racing_over_due_tickets_publish_each_alert_once(make_config, start_service, mongo_client, rpc):
    """Two containers on one database and queue, their timers running, and more timer runs
    asked for at once on both: each warning and breach is published once."""
    import eventlet

    cfg = make_config("service-desk")
    start_service(DeskEventSink, make_config("service_desk_sink"))
    start_service(ServiceDeskService, cfg)
    start_service(ServiceDeskService, cfg)
    svc = rpc(cfg)["service-desk"]
    svc.save_sla_policy(policy={"id": "race", "name": "Race", "warning_percent": 50, "targets": targets(2, 3)})
    tickets = [open_ticket(svc, cid())["id"] for _ in range(30)]
    time.sleep(3.2)
    pool = eventlet.GreenPool()
    for _ in range(8):
        pool.spawn(rpc(cfg)["service-desk"].run_due_timers)
    pool.waitall()
    wait_for(lambda: all(len(events_of(t, "ticket_sla_breached")) >= 2 for t in tickets), timeout=20)
    time.sleep(1.5)
    for t in tickets:
        for kind in ("ticket_sla_warning", "ticket_sla_breached", "ticket_escalated"):
            per_target = [e["data"]["target"] for e in events_of(t, kind)]
            assert sorted(per_target) == ["first_response", "resolution"], (t, kind, per_target)
