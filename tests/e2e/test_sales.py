"""Issue 10's scenarios through the gateway, as a client sees them: leads scored, assigned
and converted, deals through a pipeline, orders, activities, and bad input of every kind."""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import grpc
import pytest
from google.protobuf import timestamp_pb2

from crm.v1 import contacts_pb2, contacts_pb2_grpc, sales_pb2, sales_pb2_grpc
from helpers import money, new_contact, stubs, wait_for
from stack import rpc_call

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sales(channel):
    return sales_pb2_grpc.SalesServiceStub(channel)


@pytest.fixture(scope="module")
def contacts(channel):
    return stubs(channel)[0]


@pytest.fixture(scope="module")
def team(sales):
    """A team 'dach' of two reps covering Germany, Austria and Switzerland."""
    for rep in ("e2e-lena", "e2e-max"):
        sales.UpsertSalesRep(sales_pb2.UpsertSalesRepRequest(rep_id=rep, team="dach", display_name=rep,
                                                             time_zone="Europe/Berlin"), timeout=10)
    sales.SetTerritory(sales_pb2.SetTerritoryRequest(name="DACH", countries=["DE", "AT", "CH"], team="dach", rank=1),
                       timeout=10)
    return {"e2e-lena", "e2e-max"}


def code_of(call):
    with pytest.raises(grpc.RpcError) as exc:
        call()
    return exc.value.code(), exc.value.details()


def web_form_lead(email=None, **fields):
    return sales_pb2.CaptureLeadRequest(
        lead=sales_pb2.Lead(given_name="Jonas", family_name="Weber",
                            email=email or f"jonas.{uuid.uuid4().hex[:8]}@example.de", company_name="Weber AG",
                            company_size=400, job_title="CTO", industry="software", country="DE", **fields),
        channel="web_form", attribution=sales_pb2.Attribution(source="newsletter", medium="email", campaign="q1"))


def test_a_web_form_lead_is_scored_assigned_by_territory_and_converted_once(sales, contacts, team):
    lead = sales.CaptureLead(web_form_lead(), timeout=10).lead
    # 400 employees 20, a CTO 15, software 10, a company 5 (the default rules)
    assert (lead.score, lead.grade) == (50, "B")
    assert {d.rule for d in lead.score_details} == {"big_company", "decision_maker", "target_industry", "has_company"}
    assert lead.team == "dach" and lead.owner in team and lead.assignments[-1].reason == "territory"
    assert lead.attribution.campaign == "q1"
    sales.QualifyLead(sales_pb2.QualifyLeadRequest(lead_id=lead.id), timeout=10)
    request = sales_pb2.ConvertLeadRequest(lead_id=lead.id, create_deal=True, deal=sales_pb2.DealDraft(
        name="Weber platform", amount=money(2_400_000)))
    first = sales.ConvertLead(request, timeout=15)
    again = sales.ConvertLead(request, timeout=15)
    assert (again.contact_id, again.company_id, again.deal_id) == (first.contact_id, first.company_id, first.deal_id)
    contact = contacts.GetContact(contacts_pb2.GetContactRequest(contact_id=first.contact_id), timeout=10)
    assert contact.company_id == first.company_id and contact.owner == lead.owner
    assert contacts.GetCompany(contacts_pb2.GetCompanyRequest(company_id=first.company_id), timeout=10).name == "Weber AG"
    deal = sales.GetDeal(sales_pb2.GetDealRequest(deal_id=first.deal_id), timeout=10)
    assert deal.amount.amount_minor == 2_400_000 and deal.lead_id == lead.id and deal.owner == lead.owner
    assert sales.GetLead(sales_pb2.GetLeadRequest(lead_id=lead.id), timeout=10).status == "converted"

    def on_timeline(kind):
        page = contacts.ListTimeline(contacts_pb2.ListTimelineRequest(contact_id=first.contact_id), timeout=10)
        return [e for e in page.entries if e.kind == kind and e.source == "sales"]
    assert wait_for(lambda: on_timeline("deal_created"))
    assert wait_for(lambda: on_timeline("lead_converted"))


def test_two_leads_with_one_email_are_one_lead(sales, team):
    email = f"twice.{uuid.uuid4().hex[:8]}@example.de"
    first = sales.CaptureLead(web_form_lead(email), timeout=10)
    second = sales.CaptureLead(web_form_lead(email.upper()), timeout=10)
    assert not first.merged and second.merged and second.lead.id == first.lead.id
    listed = sales.ListLeads(sales_pb2.ListLeadsRequest(page_size=500), timeout=10).leads
    assert [lead.id for lead in listed if lead.email == email] == [first.lead.id]


def test_a_deal_through_three_stages_and_won_shows_in_history_and_forecast(sales, contacts):
    contact = new_contact(contacts)
    month = (datetime.now(timezone.utc) + timedelta(days=40)).strftime("%Y-%m")
    deal = sales.CreateDeal(sales_pb2.CreateDealRequest(deal=sales_pb2.Deal(
        name="Fleet renewal", contact_id=contact.id, amount=money(500_000, "IRR"),
        expected_close_date=f"{month}-10")), timeout=10)
    for stage in ("needs_analysis", "proposal", "negotiation"):
        deal = sales.MoveDeal(sales_pb2.MoveDealRequest(deal_id=deal.id, stage_id=stage), timeout=10)
    forecast = sales.GetForecast(sales_pb2.GetForecastRequest(months=3), timeout=10)
    row = [r for r in forecast.by_month if r.month == month and r.currency == "IRR"][0]
    assert row.weighted.amount_minor >= 375_000   # 75 % of this deal (other IRR deals may add)
    won = sales.WinDeal(sales_pb2.WinDealRequest(deal_id=deal.id), timeout=10)
    assert [h.stage_id for h in won.stage_history] == ["qualification", "needs_analysis", "proposal",
                                                       "negotiation", "won"]
    assert all(h.seconds >= 0 for h in won.stage_history)
    report = sales.GetSalesReport(sales_pb2.GetSalesReportRequest(), timeout=10)
    assert report.won >= 1 and any(m.currency == "IRR" for m in report.won_amount)
    other = sales.CreateDeal(sales_pb2.CreateDealRequest(deal=sales_pb2.Deal(
        name="Side deal", contact_id=contact.id, amount=money(1_000))), timeout=10)
    code, details = code_of(lambda: sales.LoseDeal(sales_pb2.LoseDealRequest(deal_id=other.id), timeout=10))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "reason" in details
    lost = sales.LoseDeal(sales_pb2.LoseDealRequest(deal_id=other.id, reason="competitor", note="went with X"),
                          timeout=10)
    assert lost.status == "lost" and lost.lost.reason == "competitor"


def test_an_order_is_placed_once_per_reference_and_its_status_history_is_readable(sales, contacts):
    contact = new_contact(contacts)
    request = sales_pb2.PlaceOrderRequest(contact_id=contact.id, external_ref=f"pos-{uuid.uuid4().hex[:8]}",
                                          channel="store", currency="EUR", lines=[
                                              sales_pb2.OrderLine(sku="SKU-1", name="Scarf", quantity=2,
                                                                  unit_price=money(3_000))])
    first = sales.PlaceOrder(request, timeout=10)
    second = sales.PlaceOrder(request, timeout=10)
    assert second.id == first.id and first.total.amount_minor == 6_000
    sales.PayOrder(sales_pb2.PayOrderRequest(order_id=first.id, payment_ref="card-77"), timeout=10)
    shipped = sales.ShipOrder(sales_pb2.ShipOrderRequest(order_id=first.id, carrier="Post", tracking_ref="TR1"),
                              timeout=10)
    assert [h.status for h in shipped.status_history] == ["placed", "paid", "shipped"]
    listed = sales.ListOrders(sales_pb2.ListOrdersRequest(contact_id=contact.id), timeout=10).orders
    assert [o.id for o in listed] == [first.id]
    summary = wait_for(lambda: (s := sales.GetPurchaseSummary(sales_pb2.GetPurchaseSummaryRequest(
        contact_id=contact.id), timeout=10)).order_count == 1 and s)
    assert summary.totals[0].amount_minor == 6_000 and summary.products[0].sku == "SKU-1"


def test_an_activity_due_in_the_past_is_reminded_once_with_two_sales_replicas(stack, sales, contacts, db):
    replica = stack.start_replica("sales")
    try:
        contact = new_contact(contacts)
        due = timestamp_pb2.Timestamp()
        due.FromDatetime(datetime.now(timezone.utc) - timedelta(minutes=5))
        ids = [sales.CreateActivity(sales_pb2.CreateActivityRequest(activity=sales_pb2.Activity(
            kind="call", subject=f"Follow up {i}", due_at=due,
            regarding=sales_pb2.Regarding(type="contact", id=contact.id))), timeout=10).id for i in range(10)]
        wait_for(lambda: all(sales.GetActivity(sales_pb2.GetActivityRequest(activity_id=i), timeout=10).reminded_at
                             .seconds for i in ids), timeout=30)
        time.sleep(1.5)   # more timer rounds on both replicas
        audit = [d for d in db("sales")["activities"].find({"_id": {"$in": ids}}, {"reminded_at": 1})]
        assert len(audit) == 10
        # the reminders each replica published: exactly one per activity in all
        published = sum(_published(port, "activity_due") for port in (stack.metrics_ports["sales"],
                                                                       stack.metrics_ports[replica]))
        assert published == 10
    finally:
        stack.stop(replica)


def _published(port: int, event: str) -> float:
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith("crm_events_published_total{") and f'event="{event}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("case", ["unknown stage", "negative quantity", "currency mismatch", "unknown contact",
                                  "no lines", "operator as id", "lead without email or phone",
                                  "unknown pipeline", "bad month", "ship unpaid"])
def test_bad_input_gets_the_right_status_naming_the_field(sales, contacts, case):
    contact = new_contact(contacts)
    line = sales_pb2.OrderLine(sku="A-1", name="A", quantity=1, unit_price=money(100))
    deal = sales.CreateDeal(sales_pb2.CreateDealRequest(deal=sales_pb2.Deal(
        name="D", contact_id=contact.id, amount=money(1))), timeout=10)
    calls = {
        "unknown stage": (lambda: sales.MoveDeal(sales_pb2.MoveDealRequest(deal_id=deal.id, stage_id="party"),
                                                 timeout=10), grpc.StatusCode.INVALID_ARGUMENT, "stage_id"),
        "negative quantity": (lambda: sales.PlaceOrder(sales_pb2.PlaceOrderRequest(
            contact_id=contact.id, external_ref="x-1", channel="web", currency="EUR",
            lines=[sales_pb2.OrderLine(sku="A", name="A", quantity=-2, unit_price=money(100))]), timeout=10),
            grpc.StatusCode.INVALID_ARGUMENT, "lines[0].quantity"),
        "currency mismatch": (lambda: sales.PlaceOrder(sales_pb2.PlaceOrderRequest(
            contact_id=contact.id, external_ref="x-2", channel="web", currency="EUR",
            lines=[line, sales_pb2.OrderLine(sku="B", name="B", quantity=1, unit_price=money(5, "USD"))]),
            timeout=10), grpc.StatusCode.INVALID_ARGUMENT, "lines[1].unit_price.currency"),
        "unknown contact": (lambda: sales.PlaceOrder(sales_pb2.PlaceOrderRequest(
            contact_id="con_01NOBODY0000000000000000", external_ref=f"x-{uuid.uuid4().hex}", channel="web",
            currency="EUR", lines=[line]), timeout=10), grpc.StatusCode.NOT_FOUND, "contact_id"),
        "no lines": (lambda: sales.PlaceOrder(sales_pb2.PlaceOrderRequest(
            contact_id=contact.id, external_ref="x-3", channel="web", currency="EUR"), timeout=10),
            grpc.StatusCode.INVALID_ARGUMENT, "lines"),
        "operator as id": (lambda: sales.GetDeal(sales_pb2.GetDealRequest(deal_id='{"$ne": null}'), timeout=10),
                           grpc.StatusCode.INVALID_ARGUMENT, "deal_id"),
        "lead without email or phone": (lambda: sales.CaptureLead(sales_pb2.CaptureLeadRequest(
            lead=sales_pb2.Lead(given_name="Nobody"), channel="phone"), timeout=10),
            grpc.StatusCode.INVALID_ARGUMENT, "lead"),
        "unknown pipeline": (lambda: sales.CreateDeal(sales_pb2.CreateDealRequest(deal=sales_pb2.Deal(
            name="D", contact_id=contact.id, amount=money(1), pipeline_id="pip_nope")), timeout=10),
            grpc.StatusCode.NOT_FOUND, "deal.pipeline_id"),
        "bad month": (lambda: sales.GetForecast(sales_pb2.GetForecastRequest(from_month="2027-13"), timeout=10),
                      grpc.StatusCode.INVALID_ARGUMENT, "from_month"),
        "ship unpaid": (lambda: sales.ShipOrder(sales_pb2.ShipOrderRequest(order_id=sales.PlaceOrder(
            sales_pb2.PlaceOrderRequest(contact_id=contact.id, external_ref=f"x-{uuid.uuid4().hex}", channel="web",
                                        currency="EUR", lines=[line]), timeout=10).id), timeout=10),
            grpc.StatusCode.FAILED_PRECONDITION, "pay it first"),
    }
    call, expected, mention = calls[case]
    code, details = code_of(call)
    assert code is expected, details
    assert mention in details


def test_a_rep_cannot_read_or_change_another_reps_deal_even_over_amqp(stack, connect, channel):
    contacts = contacts_pb2_grpc.ContactsServiceStub(channel)
    contact = new_contact(contacts)
    rita = sales_pb2_grpc.SalesServiceStub(connect("sales_rep", subject="rita", team="west"))
    theo = sales_pb2_grpc.SalesServiceStub(connect("sales_rep", subject="theo", team="west"))
    deal = rita.CreateDeal(sales_pb2.CreateDealRequest(deal=sales_pb2.Deal(
        name="Rita's", contact_id=contact.id, amount=money(1_000))), timeout=10)
    assert deal.owner == "rita"
    for call in (lambda: theo.GetDeal(sales_pb2.GetDealRequest(deal_id=deal.id), timeout=10),
                 lambda: theo.MoveDeal(sales_pb2.MoveDealRequest(deal_id=deal.id, stage_id="proposal"), timeout=10),
                 lambda: theo.WinDeal(sales_pb2.WinDealRequest(deal_id=deal.id), timeout=10)):
        code, _ = code_of(call)
        assert code is grpc.StatusCode.NOT_FOUND
    assert theo.ListDeals(sales_pb2.ListDealsRequest(), timeout=10).deals == []
    from crm_common import access
    forged = access.mint(access.Principal("user:rita", ("sales_rep",)), "not-the-secret-but-long-enough-0123456")
    with pytest.raises(RuntimeError) as exc:
        rpc_call(stack.amqp_uri, "sales", "move_deal", {"deal_id": deal.id, "stage_id": "proposal"}, timeout=10,
                 token=forged)
    assert exc.value.args[0]["exc_type"] == "Unauthenticated"
    with pytest.raises(RuntimeError) as exc:
        rpc_call(stack.amqp_uri, "sales", "move_deal", {"deal_id": deal.id, "stage_id": "proposal"}, timeout=10,
                 token=stack.internal_token("sales_rep", subject="user:theo"))
    assert exc.value.args[0]["exc_type"] == "NotFound"
    assert rita.GetDeal(sales_pb2.GetDealRequest(deal_id=deal.id), timeout=10).stage_id == "qualification"


def _member(loyalty, contact_id):
    from crm.v1 import loyalty_pb2
    return loyalty.GetMember(loyalty_pb2.GetMemberRequest(contact_id=contact_id), timeout=10)


def _order(sales, contact_id, amount_minor, ref=None):
    return sales.PlaceOrder(sales_pb2.PlaceOrderRequest(
        contact_id=contact_id, external_ref=ref or f"web-{uuid.uuid4().hex[:10]}", channel="web", currency="EUR",
        lines=[sales_pb2.OrderLine(sku="BAG-1", name="Bag", quantity=1, unit_price=money(amount_minor))]), timeout=10)


def test_a_paid_order_earns_points_by_itself_a_refund_takes_them_back_and_the_timeline_shows_both(sales, channel):
    from helpers import member_or_none
    contacts, loyalty = stubs(channel)
    contact = new_contact(contacts, loyalty=True)
    wait_for(lambda: member_or_none(loyalty, contact.id))
    order = _order(sales, contact.id, 25_000)
    again = _order(sales, contact.id, 25_000, ref=order.external_ref)
    assert again.id == order.id
    sales.PayOrder(sales_pb2.PayOrderRequest(order_id=order.id), timeout=10)
    assert wait_for(lambda: _member(loyalty, contact.id).balance == 250)   # 1 point per EUR, bronze

    def kinds():
        page = contacts.ListTimeline(contacts_pb2.ListTimelineRequest(contact_id=contact.id), timeout=10)
        return {(e.source, e.kind) for e in page.entries}
    assert wait_for(lambda: {("sales", "order_placed"), ("sales", "order_paid"),
                             ("loyalty", "points_earned")} <= kinds())
    # spend some, then refund: the rest is owed, the balance never negative
    from crm.v1 import loyalty_pb2
    loyalty.RedeemPoints(loyalty_pb2.RedeemPointsRequest(contact_id=contact.id, points=200, reason="voucher",
                                                         idempotency_key=f"e2e-{uuid.uuid4().hex}"), timeout=10)
    sales.RefundOrder(sales_pb2.RefundOrderRequest(order_id=order.id, reason="returned"), timeout=10)
    member = wait_for(lambda: (m := _member(loyalty, contact.id)).points_owed == 200 and m)
    assert member.balance == 0
    assert wait_for(lambda: ("loyalty", "points_reversed") in kinds())
    second = _order(sales, contact.id, 30_000)
    sales.PayOrder(sales_pb2.PayOrderRequest(order_id=second.id), timeout=10)
    member = wait_for(lambda: (m := _member(loyalty, contact.id)).points_owed == 0 and m)
    assert member.balance == 100   # 300 earned, 200 of them settled what was owed


def test_loyalty_stopped_while_orders_are_paid_catches_up_with_every_orders_points(stack, sales, channel):
    from helpers import member_or_none
    contacts, loyalty = stubs(channel)
    members = [new_contact(contacts, loyalty=True) for _ in range(3)]
    for m in members:   # enrolled before loyalty goes away (a paid order earns only for a member)
        wait_for(lambda: member_or_none(loyalty, m.id))
    stack.stop("loyalty")
    try:
        for m in members:
            for amount in (10_000, 5_000):
                order = _order(sales, m.id, amount)
                sales.PayOrder(sales_pb2.PayOrderRequest(order_id=order.id), timeout=10)
    finally:
        stack.start("loyalty")
        stack.wait_ready("loyalty")
    for m in members:
        assert wait_for(lambda: _member(loyalty, m.id).balance == 150, timeout=30)
