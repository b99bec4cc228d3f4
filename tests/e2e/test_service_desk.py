"""The service desk's scenarios through the gateway, on the private stack: tiers from
loyalty choose the SLA, business hours and pauses, warnings and breaches exactly once
with two replicas, the bot, what the customer sees, satisfaction and reports, and a
service desk that catches up after downtime.

SLA policies are shared by the whole stack, so each scenario's policy applies to one
loyalty tier only (its customers earn their way into it through loyalty): bronze and
gold for the targets, silver for the fast clocks, platinum for the closed calendar.
"""
from __future__ import annotations

import sys
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import grpc
import pytest

from crm.v1 import contacts_pb2, loyalty_pb2, service_desk_pb2 as sd, service_desk_pb2_grpc
from crm_common import clock
from crm_gateway import client
from support.infra import ROOT

sys.path.insert(0, str(ROOT))
from bench.service_desk import EventTap  # noqa: E402
from helpers import member_or_none, money, new_contact, stubs, wait_for

pytestmark = pytest.mark.e2e
H = 3600
PRIORITIES = ("low", "normal", "high", "urgent")
# loyalty's tiers by points earned (1 point per EUR for a bronze member)
TIER_SPEND_MINOR = {"silver": 100_000, "gold": 500_000, "platinum": 2_000_000}


def targets(fr, res):
    return [sd.SlaTarget(priority=p, first_response_seconds=fr, resolution_seconds=res) for p in PRIORITIES]


@pytest.fixture(scope="module")
def desk(channel):
    return service_desk_pb2_grpc.ServiceDeskServiceStub(channel)


@pytest.fixture(scope="module")
def api(channel):
    return stubs(channel)


@pytest.fixture(scope="module", autouse=True)
def policies(desk):
    """One policy per tier, each for its own scenarios."""
    desk.SaveSlaPolicy(sd.SaveSlaPolicyRequest(policy=sd.SlaPolicy(
        id="e2e-bronze", name="Bronze", tiers=["bronze"], targets=targets(8 * H, 40 * H))), timeout=10)
    desk.SaveSlaPolicy(sd.SaveSlaPolicyRequest(policy=sd.SlaPolicy(
        id="e2e-gold", name="Gold", tiers=["gold"], targets=targets(H, 8 * H))), timeout=10)
    desk.SaveSlaPolicy(sd.SaveSlaPolicyRequest(policy=sd.SlaPolicy(
        id="e2e-silver-fast", name="Silver (fast clocks)", tiers=["silver"], warning_percent=50,
        targets=targets(3, 8))), timeout=10)
    today = datetime.now(timezone.utc).date()
    desk.SaveCalendar(sd.SaveCalendarRequest(calendar=sd.Calendar(
        id="e2e-closed-now", name="Closed today and tomorrow", time_zone="UTC",
        hours=[sd.OpeningHours(day=d, opens="00:00", closes="24:00") for d in
               ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")],
        holidays=[(today + timedelta(days=n)).isoformat() for n in (0, 1)])), timeout=10)
    desk.SaveSlaPolicy(sd.SaveSlaPolicyRequest(policy=sd.SlaPolicy(
        id="e2e-platinum-calendar", name="Platinum, business days", tiers=["platinum"], calendar_id="e2e-closed-now",
        warning_percent=50, targets=targets(2, 4))), timeout=10)


def customer(api, db, tier: str):
    """A contact who is a loyalty member of ``tier``, as the service desk knows it."""
    contacts, loyalty = api
    contact = new_contact(contacts, loyalty=True, given="Desk", family=tier.title())
    wait_for(lambda: member_or_none(loyalty, contact.id))
    if tier != "bronze":
        raise_tier(loyalty, contact.id, tier)
    wait_for(lambda: (db("service-desk").customers.find_one({"_id": contact.id}) or {}).get("tier") == tier,
             timeout=30)
    return contact.id


def raise_tier(loyalty, contact_id, tier):
    loyalty.EarnPoints(loyalty_pb2.EarnPointsRequest(contact_id=contact_id, source="e2e", source_ref=uuid.uuid4().hex,
                                                     amount=money(TIER_SPEND_MINOR[tier])), timeout=10)


def open_ticket(desk, contact_id, **kw):
    req = {"contact_id": contact_id, "subject": "The parcel never arrived", "description": "Ordered on Monday.",
           "category": "late_delivery", "priority": "normal", "channel": "email", **kw}
    return desk.OpenTicket(sd.OpenTicketRequest(**req), timeout=10)


def get(desk, ticket_id):
    return desk.GetTicket(sd.GetTicketRequest(ticket_id=ticket_id), timeout=10)


@pytest.fixture
def bus(stack):
    tap = EventTap(stack.amqp_uri)   # every service-desk event, duplicates included
    yield tap
    tap.close()


# -- SLAs by customer ----------------------------------------------------------------------

def test_gold_and_bronze_get_different_targets_and_a_tier_change_keeps_the_elapsed_time(api, desk, db):
    gold, bronze = customer(api, db, "gold"), customer(api, db, "bronze")
    a, b = open_ticket(desk, gold), open_ticket(desk, bronze)
    assert (a.sla.policy_id, a.sla.tier) == ("e2e-gold", "gold")
    assert (b.sla.policy_id, b.sla.tier) == ("e2e-bronze", "bronze")
    assert (a.sla.first_response.target_seconds, a.sla.resolution.target_seconds) == (H, 8 * H)
    assert (b.sla.first_response.target_seconds, b.sla.resolution.target_seconds) == (8 * H, 40 * H)
    assert a.customer_name == "Desk Gold"
    time.sleep(1.5)
    raise_tier(api[1], bronze, "gold")                          # the bronze customer spends their way to gold
    moved = wait_for(lambda: (t := get(desk, b.id)).sla.policy_id == "e2e-gold" and t, timeout=30)
    res = moved.sla.resolution
    assert res.target_seconds == 8 * H and res.elapsed_seconds >= 1.5      # kept, not restarted
    due = clock.from_iso(json_ts(res.due_at))
    opened = clock.from_iso(json_ts(b.opened_at))
    assert abs((due - opened).total_seconds() - 8 * H) < 2   # the new target, counted from the opening
    assert [h.what for h in moved.history][-1] == "sla"


def json_ts(ts):
    return clock.to_iso(ts.ToDatetime(tzinfo=timezone.utc))


def test_a_ticket_opened_while_the_calendar_is_closed_is_not_breached_until_it_opens(api, desk, db, bus):
    """The unit tests pin Friday evening -> Monday morning with real dates; here the
    calendar is closed today and tomorrow (holidays), the weekend of this scenario."""
    contact_id = customer(api, db, "platinum")
    t = open_ticket(desk, contact_id)
    assert t.sla.policy_id == "e2e-platinum-calendar"
    opening = datetime.combine(datetime.now(timezone.utc).date() + timedelta(days=2), datetime.min.time(),
                               tzinfo=timezone.utc)
    fr = t.sla.first_response
    assert clock.from_iso(json_ts(fr.due_at)) == opening + timedelta(seconds=2)
    assert clock.from_iso(json_ts(fr.warn_at)) == opening + timedelta(seconds=1)
    time.sleep(6)                                               # three times the target, all after hours
    now = get(desk, t.id)
    assert not now.sla.first_response.breached and not now.sla.first_response.warned
    assert bus.of(t.id, "ticket_sla_warning") == [] and bus.of(t.id, "ticket_sla_breached") == []


def test_pending_on_the_customer_does_not_count_toward_resolution(api, desk, db, bus):
    contact_id = customer(api, db, "silver")
    t = open_ticket(desk, contact_id)
    assert t.sla.resolution.target_seconds == 8
    paused = desk.ChangeTicketStatus(sd.ChangeTicketStatusRequest(ticket_id=t.id, status="pending",
                                                                  pending_reason="customer"), timeout=10)
    assert paused.sla.resolution.paused and not paused.sla.resolution.HasField("due_at")
    time.sleep(10)                                              # longer than the whole resolution target
    waited = get(desk, t.id)
    assert not waited.sla.resolution.breached                  # the pending time counted for nothing:
    assert waited.sla.resolution.elapsed_seconds == paused.sla.resolution.elapsed_seconds
    assert bus.of(t.id, "ticket_sla_breached") and all(e["data"]["target"] == "first_response"
                                                       for e in bus.of(t.id, "ticket_sla_breached"))
    back = desk.RecordCustomerReply(sd.RecordCustomerReplyRequest(ticket_id=t.id, body="Here you go"),
                                    timeout=10).ticket
    assert back.status == "open" and back.sla.resolution.running
    left = (clock.from_iso(json_ts(back.sla.resolution.due_at)) - clock.from_iso(json_ts(back.updated_at)))
    assert 6 <= left.total_seconds() <= 8.01                   # what was left when it paused


def test_warning_then_breach_once_each_with_two_replicas_and_the_breach_escalates(api, desk, db, bus, stack):
    contact_id = customer(api, db, "silver")
    desk.SaveGroup(sd.SaveGroupRequest(group=sd.Group(id="e2e-desk", name="E2E desk", categories=["billing"],
                                                      escalation_group="e2e-leads")), timeout=10)
    replica = stack.start_replica("service-desk")
    try:
        tickets = [open_ticket(desk, contact_id, category="billing").id for _ in range(8)]
        for target in ("first_response", "resolution"):
            wait_for(lambda: all(any(e["data"]["target"] == target for e in bus.of(t, "ticket_sla_breached"))
                                 for t in tickets), timeout=40)
        time.sleep(3)                                           # both replicas' timers ran over them again
    finally:
        stack.stop(replica)
    for t in tickets:
        for kind in ("ticket_sla_warning", "ticket_sla_breached"):
            per_target = Counter(e["data"]["target"] for e in bus.of(t, kind))
            assert per_target == {"first_response": 1, "resolution": 1}, (t, kind, per_target)
        escalations = bus.of(t, "ticket_escalated")
        assert [(e["data"]["from_priority"], e["data"]["to_priority"]) for e in escalations] == \
            [("normal", "high"), ("high", "urgent")]
        assert {e["data"]["escalation_group"] for e in escalations} == {"e2e-leads"}
        final = get(desk, t)
        assert final.priority == "urgent" and final.escalated and final.group == "e2e-desk"


def test_service_desk_catches_up_on_tier_changes_it_missed_while_down(api, desk, db, stack):
    bronze = customer(api, db, "bronze")
    t = open_ticket(desk, bronze)
    assert t.sla.policy_id == "e2e-bronze"
    stack.stop("service-desk")
    try:
        raise_tier(api[1], bronze, "gold")
        wait_for(lambda: member_or_none(api[1], bronze).tier == "gold")
    finally:
        stack.start("service-desk")
        stack.wait_ready("service-desk")
    caught_up = wait_for(lambda: (x := get(desk, t.id)).sla.policy_id == "e2e-gold" and x, timeout=60)
    assert caught_up.sla.tier == "gold" and caught_up.sla.resolution.target_seconds == 8 * H


# -- the conversation, the bot, satisfaction ---------------------------------------------------

def test_internal_notes_never_reach_the_customer(api, desk, connect):
    contact = new_contact(api[0])
    t = open_ticket(desk, contact.id)
    desk.ReplyToTicket(sd.ReplyToTicketRequest(ticket_id=t.id, body="Sorry! A new one ships today."), timeout=10)
    desk.ReplyToTicket(sd.ReplyToTicketRequest(ticket_id=t.id, body="INTERNAL: refund if it fails again",
                                               internal=True), timeout=10)
    portal = service_desk_pb2_grpc.ServiceDeskServiceStub(connect("integration", subject="portal"))
    seen = portal.ListCustomerMessages(sd.ListCustomerMessagesRequest(ticket_id=t.id), timeout=10).messages
    assert [m.body for m in seen] == ["Sorry! A new one ships today."]
    everything = desk.ListMessages(sd.ListMessagesRequest(ticket_id=t.id), timeout=10).messages
    assert [m.internal for m in everything] == [False, True]
    with pytest.raises(grpc.RpcError) as denied:            # the portal cannot read the agents' list
        portal.ListMessages(sd.ListMessagesRequest(ticket_id=t.id), timeout=10)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_the_bot_answers_from_an_article_and_hands_an_unknown_question_over(api, desk, connect):
    article = desk.CreateArticle(sd.CreateArticleRequest(article=sd.Article(
        title="Changing your delivery address", locale="en", status="published", tags=["address", "delivery"],
        body="You can change the delivery address of an order until it ships: open the order and choose "
             "Change address.")), timeout=10)
    desk.CreateArticle(sd.CreateArticleRequest(article=sd.Article(
        title="تغییر نشانی تحویل", locale="fa", status="published", tags=["نشانی"],
        body="تا پیش از ارسال سفارش می‌توانید نشانی تحویل را تغییر دهید.")), timeout=10)
    widget = service_desk_pb2_grpc.ServiceDeskServiceStub(connect("integration", subject="chat-widget"))
    contact = new_contact(api[0])
    answered = widget.AskBot(sd.AskBotRequest(contact_id=contact.id,
                                              question="How can I change the delivery address of my order?"),
                             timeout=10)
    assert answered.outcome == "answered" and answered.hits[0].article.id == article.id
    assert answered.confidence >= 0.6 and not answered.ticket_id
    fa = widget.AskBot(sd.AskBotRequest(contact_id=contact.id, question="نشاني تحويل را چطور تغيير دهم؟"),
                       timeout=10)
    assert fa.outcome == "answered" and "نشانی" in fa.text       # Arabic ي typed, Persian ی found
    unknown = widget.AskBot(sd.AskBotRequest(conversation_id=answered.conversation_id, contact_id=contact.id,
                                             question="My espresso machine leaks water from the bottom"), timeout=10)
    assert unknown.outcome == "handoff_unsure" and unknown.ticket_id and unknown.ticket_id in unknown.text
    ticket = get(desk, unknown.ticket_id)
    assert ticket.channel == "bot" and ticket.contact_id == contact.id
    assert "delivery address" in ticket.description and "espresso machine leaks" in ticket.description
    conversation = widget.GetBotConversation(sd.GetBotConversationRequest(conversation_id=answered.conversation_id),
                                             timeout=10)
    assert [t.role for t in conversation.turns] == ["customer", "bot", "customer", "bot"]
    assert conversation.status == "handed_off" and conversation.ticket_id == ticket.id


def test_resolution_asks_for_satisfaction_the_answer_is_recorded_and_the_report_matches(api, desk, bus, connect):
    contacts = api[0]
    since = datetime.now(timezone.utc) - timedelta(seconds=1)
    desk.SaveGroup(sd.SaveGroupRequest(group=sd.Group(id="e2e-report", name="Report", categories=["wrong_delivery"],
                                                      channels=["phone"])), timeout=10)
    people = [new_contact(contacts) for _ in range(3)]
    tickets = [open_ticket(desk, p.id, category="wrong_delivery", channel=ch) for p, ch in
               zip(people, ("phone", "phone", "email"))]
    assert {t.group for t in tickets} == {"e2e-report"}
    desk.ReplyToTicket(sd.ReplyToTicketRequest(ticket_id=tickets[0].id, body="Swapped."), timeout=10)
    resolved = desk.ChangeTicketStatus(sd.ChangeTicketStatusRequest(ticket_id=tickets[0].id, status="resolved"),
                                       timeout=10)
    assert resolved.status == "resolved"
    wait_for(lambda: bus.of(tickets[0].id, "satisfaction_requested"))
    portal = service_desk_pb2_grpc.ServiceDeskServiceStub(connect("integration", subject="portal"))
    rated = portal.RecordSatisfaction(sd.RecordSatisfactionRequest(ticket_id=tickets[0].id, score=5,
                                                                   comment="Fast and friendly"), timeout=10)
    assert rated.satisfaction.score == 5
    [csat] = wait_for(lambda: bus.of(tickets[0].id, "csat_received"))
    assert (csat["data"]["contact_id"], csat["data"]["score"]) == (people[0].id, 5)
    desk.ChangeTicketStatus(sd.ChangeTicketStatusRequest(ticket_id=tickets[1].id, status="pending",
                                                         pending_reason="customer"), timeout=10)
    report = desk.GetServiceReport(sd.GetServiceReportRequest(
        since=ts(since), until=ts(datetime.now(timezone.utc) + timedelta(seconds=1)), group="e2e-report"),
        timeout=10)
    assert report.tickets == 3
    assert [(c.category, c.count) for c in report.top_categories] == [("wrong_delivery", 3)]
    assert {(r.status, r.count) for r in report.backlog} == {("new", 1), ("open", 0), ("pending", 1)}
    assert [(r.key, r.responses, r.average) for r in report.csat_by_channel] == [("phone", 1, 5.0)]
    assert report.first_response_seconds.count == 1 and report.resolution_seconds.count == 1

    def on_timeline(kind):
        page = contacts.ListTimeline(contacts_pb2.ListTimelineRequest(contact_id=people[0].id), timeout=5)
        return [e for e in page.entries if e.kind == kind and e.source == "service-desk"]
    for kind in ("ticket_opened", "ticket_resolved", "csat_received"):
        assert len(wait_for(lambda: on_timeline(kind))) == 1, kind


def ts(dt):
    from google.protobuf.timestamp_pb2 import Timestamp
    out = Timestamp()
    out.FromDatetime(dt)
    return out


def test_agents_see_their_groups_tickets_only(api, desk, connect):
    desk.SaveGroup(sd.SaveGroupRequest(group=sd.Group(id="e2e-billing", name="Billing",
                                                      categories=["billing"], channels=["social"])), timeout=10)
    contact = new_contact(api[0])
    theirs = open_ticket(desk, contact.id, category="billing", channel="social")
    other = open_ticket(desk, contact.id, category="question", channel="email")
    agent = service_desk_pb2_grpc.ServiceDeskServiceStub(connect("support_agent", subject="neda", team="e2e-billing"))
    assert agent.GetTicket(sd.GetTicketRequest(ticket_id=theirs.id), timeout=10).id == theirs.id
    with pytest.raises(grpc.RpcError) as hidden:
        agent.GetTicket(sd.GetTicketRequest(ticket_id=other.id), timeout=10)
    assert hidden.value.code() == grpc.StatusCode.NOT_FOUND
    listed = agent.ListTickets(sd.ListTicketsRequest(contact_id=contact.id), timeout=10).tickets
    assert [t.id for t in listed] == [theirs.id]


def test_a_high_value_customer_gets_the_high_value_policy_from_sales_purchases(api, desk, db, channel):
    """Sales' purchase_summary_changed (an order paid) moves the customer's value segment:
    their open ticket is re-targeted, the elapsed time kept. Totals of two currencies are
    never added: EUR 4,000 and USD 4,000 are two "medium" totals, not one "high"."""
    from crm.v1 import common_pb2, sales_pb2, sales_pb2_grpc

    desk.SaveSlaPolicy(sd.SaveSlaPolicyRequest(policy=sd.SlaPolicy(
        id="e2e-high-value", name="High value", segments=["high"], targets=targets(900, 2 * H))), timeout=10)
    sales = sales_pb2_grpc.SalesServiceStub(channel)
    contact = new_contact(api[0])

    def pay(amount_minor, currency):
        order = sales.PlaceOrder(sales_pb2.PlaceOrderRequest(
            contact_id=contact.id, external_ref=uuid.uuid4().hex, channel="web", currency=currency,
            lines=[sales_pb2.OrderLine(sku="LAMP", name="Lamp", quantity=1,
                                       unit_price=common_pb2.Money(amount_minor=amount_minor, currency=currency))]),
            timeout=10)
        sales.PayOrder(sales_pb2.PayOrderRequest(order_id=order.id, payment_ref=uuid.uuid4().hex), timeout=10)

    def segment():
        return (db("service-desk").customers.find_one({"_id": contact.id}) or {}).get("segment")

    t = open_ticket(desk, contact.id)
    assert t.sla.policy_id != "e2e-high-value" and t.sla.segment == "none"      # no purchases yet
    pay(400_000, "EUR")
    pay(400_000, "USD")
    wait_for(lambda: segment() == "medium", timeout=30)
    assert get(desk, t.id).sla.policy_id != "e2e-high-value"
    pay(200_000, "EUR")                                            # EUR 6,000 in all: high
    moved = wait_for(lambda: (x := get(desk, t.id)).sla.policy_id == "e2e-high-value" and x, timeout=30)
    assert moved.sla.segment == "high" and moved.sla.first_response.target_seconds == 900
    assert moved.sla.first_response.elapsed_seconds > 0


def test_the_demo_loads_tickets_in_every_status_and_loads_again_without_duplicates(api, channel, stack):
    """Last in this module: the demo's policies apply to every customer."""
    import demo_service_desk as demo   # scripts/ is on the path (tests/e2e/conftest.py)

    contacts = api[0]
    for local in {t[0] for t in demo.TICKETS}:
        try:
            contacts.CreateContact(contacts_pb2.CreateContactRequest(contact=contacts_pb2.Contact(
                given_name=local.split(".")[0].title(), family_name=local.split(".")[1].title(),
                emails=[contacts_pb2.Email(address=f"{local}@example.com")])), timeout=10)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.ALREADY_EXISTS
    lead = client.authorized(grpc.insecure_channel(stack.gateway_addr), stack.token("support_lead", subject="demo"))
    first = demo.load(lead)
    again = demo.load(lead)
    assert "8 tickets created" in first and "0 articles and 0 tickets created" in again
    desk = service_desk_pb2_grpc.ServiceDeskServiceStub(lead)
    statuses = {t.status for g in ("support", "delivery", "quality", "billing")
                for t in desk.ListTickets(sd.ListTicketsRequest(group=g, page_size=100), timeout=10).tickets}
    assert {"new", "open", "pending", "resolved", "closed"} <= statuses
    hits = desk.SearchArticles(sd.SearchArticlesRequest(query="مرجوعی كالا"), timeout=10).hits
    assert hits and hits[0].article.locale == "fa"
