"""Sales' deal, forecast, activity and order rules without I/O."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from crm_common.errors import FailedPrecondition, InvalidArgument
from sales.activities import domain as activities
from sales.deals import domain as deals
from sales.deals import forecast
from sales.orders import domain as orders
from sales.orders import summary

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=timezone.utc)
PIPELINE = deals.DEFAULT_PIPELINE


def eur(minor, currency="EUR"):
    return {"amount_minor": minor, "currency": currency}


def deal(amount=eur(100_000), close="2027-01-15", **fields):
    doc = deals.new_deal("deal_1", {"name": "D", "contact_id": "con_1", "amount": amount,
                                    "expected_close_date": close}, PIPELINE, "qualification", "rep-a", "north",
                         NOW - timedelta(days=10), "user:rep-a")
    return {**doc, **fields}


# -- deals ---------------------------------------------------------------------------------------

def test_moves_keep_a_history_with_time_in_each_stage():
    d = deal()
    d = {**d, **deals.move(d, PIPELINE, "proposal", NOW - timedelta(days=4), "user:rep-a")}
    d = {**d, **deals.win(d, "ord_1", None, NOW, "user:rep-a")}
    visits = deals.time_in_stages(d, NOW)
    assert [(v["stage_id"], v["seconds"]) for v in visits] == [
        ("qualification", 6 * 86400), ("proposal", 4 * 86400), ("won", 0)]
    assert d["status"] == "won" and d["won"]["order_id"] == "ord_1"


def test_closed_deals_refuse_moves_until_reopened_into_the_stage_they_left():
    d = deal()
    d = {**d, **deals.move(d, PIPELINE, "negotiation", NOW, "x")}
    d = {**d, **deals.lose(d, "price", "too dear", NOW, "x")}
    with pytest.raises(FailedPrecondition):
        deals.move(d, PIPELINE, "proposal", NOW, "x")
    with pytest.raises(FailedPrecondition):
        deals.lose(d, "price", None, NOW, "x")
    reopened = deals.reopen(d, PIPELINE, None, NOW, "x")
    assert reopened["stage_id"] == "negotiation" and reopened["reopened"][0]["from_status"] == "lost"
    assert reopened["lost"] is None and reopened["status"] == "open"


def test_an_unknown_stage_names_the_field_and_the_stages_there_are():
    with pytest.raises(InvalidArgument) as err:
        deals.stage(PIPELINE, "party", "deal.stage_id")
    assert err.value.violations[0]["field"] == "deal.stage_id" and "negotiation" in str(err.value)
    assert deals.move(deal(), PIPELINE, "qualification", NOW, "x") == {}


def test_probability_follows_the_stage_and_the_outcome():
    assert deals.probability(deal(), PIPELINE) == 10
    assert deals.probability(deal(status="won"), PIPELINE) == 100
    assert deals.probability(deal(status="lost"), PIPELINE) == 0


# -- forecast and reports ---------------------------------------------------------------------------

def test_the_weighted_pipeline_is_per_month_owner_and_currency_never_mixed():
    pipelines = {PIPELINE["_id"]: PIPELINE}
    rows = [deal(eur(100_000), "2027-01-15"), deal(eur(50_001), "2027-01-20", stage_id="proposal"),
            deal(eur(9_000_000, "IRR"), "2027-02-01", owner="rep-b"), deal(eur(7, "EUR"), None),
            deal(eur(1_000), "2026-10-01"), deal(eur(1_000), "2030-01-01"), deal(eur(5), "2027-01-02", status="won")]
    out = forecast.forecast(rows, pipelines, forecast.months_from("2026-12", 3))
    by_month = {(r["month"], r["currency"]): r for r in out["by_month"]}
    assert by_month[("2027-01", "EUR")]["weighted"] == eur(10_000 + 25_001)   # 10 % and 50 %, rounded half up
    assert by_month[("2027-01", "EUR")]["deals"] == 2
    assert by_month[("2027-02", "IRR")]["amount"] == eur(9_000_000, "IRR")
    assert by_month[("overdue", "EUR")]["deals"] == 1 and by_month[("", "EUR")]["deals"] == 1
    assert ("2030-01", "EUR") not in by_month
    assert {(r["currency"], r["deals"]) for r in out["totals"]} == {("EUR", 4), ("IRR", 1)}
    assert forecast.months_from("2026-11", 3) == ["2026-11", "2026-12", "2027-01"]


def test_the_report_counts_outcomes_cycle_and_stage_conversion():
    won = deal(eur(300))
    won = {**won, **deals.move(won, PIPELINE, "proposal", NOW - timedelta(days=2), "x")}
    won = {**won, **deals.win(won, None, None, NOW, "x")}
    lost = {**deal(eur(100)), **deals.lose(deal(), "competitor", None, NOW, "x")}
    stuck = deal()
    report = forecast.report([won, lost, stuck], PIPELINE)
    assert (report["won"], report["lost"], report["open"], report["win_rate"]) == (1, 1, 1, 0.5)
    assert report["won_amount"] == [eur(300)] and report["average_won_amount"] == [eur(300)]
    assert report["sales_cycle_days_median"] == 10.0
    assert report["lost_reasons"] == [{"reason": "competitor", "deals": 1}]
    stages = {s["stage_id"]: s for s in report["stage_conversion"]}
    assert (stages["qualification"]["entered"], stages["qualification"]["advanced"]) == (3, 1)
    assert stages["proposal"]["rate"] == 1.0 and stages["negotiation"]["entered"] == 0


# -- activities ---------------------------------------------------------------------------------------

def test_views_are_relative_to_now_and_the_owners_day():
    start, end = activities.day_bounds(datetime(2026, 12, 2, 21, 0, tzinfo=timezone.utc), "Asia/Tehran")
    assert start.isoformat() == "2026-12-03T00:00:00+03:30"    # already tomorrow in Tehran
    now = NOW
    today = activities.day_bounds(now, "UTC")
    act = lambda due, status="open": {"due_at": due, "status": status}   # noqa: E731
    earlier_today, later_today = act(now - timedelta(hours=2)), act(now + timedelta(hours=2))
    assert activities.in_view(earlier_today, "overdue", now, today)
    assert activities.in_view(earlier_today, "today", now, today) and activities.in_view(later_today, "today", now, today)
    assert activities.in_view(act(now + timedelta(days=1)), "upcoming", now, today)
    assert not activities.in_view(act(now - timedelta(days=1), "done"), "overdue", now, today)
    assert activities.in_view(act(now, "done"), "all", now, today)


def test_completing_clears_the_reminder_and_closed_activities_stay_closed():
    doc = activities.new_activity("act_1", {"kind": "call", "subject": "s", "due_at": NOW}, "rep", "t", None, NOW)
    assert doc["reminder_at"] == NOW
    done = {**doc, **activities.complete(doc, "ok", NOW)}
    assert done["reminder_at"] is None and done["status"] == "done"
    with pytest.raises(FailedPrecondition):
        activities.reschedule(done, NOW)


# -- orders ----------------------------------------------------------------------------------------

LINES = [{"sku": "A", "name": "A", "quantity": 3, "unit_price": eur(250)},
         {"sku": "B", "name": "B", "quantity": 1, "unit_price": eur(1_000)}]


def order(**fields):
    req = {"contact_id": "con_1", "external_ref": "r1", "channel": "web", "currency": "EUR", "lines": LINES, **fields}
    return orders.new_order("ord_1", req, NOW, "user:x")


def test_totals_are_computed_and_every_line_is_in_the_orders_currency():
    assert order()["total"] == eur(1_750) and order()["lines"][0]["total"] == eur(750)
    with pytest.raises(InvalidArgument) as err:
        order(lines=[LINES[0], {**LINES[1], "unit_price": eur(5, "USD")}])
    assert err.value.violations[0]["field"] == "lines[1].unit_price.currency"
    with pytest.raises(InvalidArgument) as err:
        order(lines=[{**LINES[0], "quantity": 10**6, "unit_price": eur(10**10)}])
    assert err.value.violations[0]["field"] == "lines[0].quantity"
    with pytest.raises(InvalidArgument) as err:
        order(lines=[{**LINES[0], "quantity": 10**6, "unit_price": eur(6 * 10**8)}] * 2)
    assert err.value.violations[0]["field"] == "lines"


def test_the_status_road_with_retries_as_no_ops():
    o = order()
    with pytest.raises(FailedPrecondition) as err:
        orders.transition(o, "shipped", NOW, "x")
    assert "pay it first" in str(err.value)
    o = {**o, **orders.transition(o, "paid", NOW, "x", payment_ref="p1")}
    assert o["payment_ref"] == "p1" and o["paid_at"] == NOW
    assert orders.transition(o, "paid", NOW, "x") == {}        # a retry
    o = {**o, **orders.transition(o, "shipped", NOW, "x")}
    assert orders.transition(o, "paid", NOW, "x") == {}        # passed already
    with pytest.raises(FailedPrecondition) as err:
        orders.transition(o, "cancelled", NOW, "x")
    assert "refund it instead" in str(err.value)
    o = {**o, **orders.transition(o, "refunded", NOW, "x", "broken")}
    assert [h["status"] for h in o["status_history"]] == ["placed", "paid", "shipped", "refunded"]
    with pytest.raises(FailedPrecondition):
        orders.transition(o, "delivered", NOW, "x")


def view(o):
    return {"id": o["_id"], "total": o["total"], "lines": o["lines"]}


def test_the_purchase_summary_counts_each_order_once_and_a_refund_takes_it_out():
    s = summary.empty("con_1")
    first = view(order())
    s = summary.apply(s, first, "paid", NOW)
    assert summary.apply(s, first, "paid", NOW) is None              # redelivered
    s = summary.apply(s, view({**order(), "_id": "ord_2", "total": eur(10, "IRR"), "lines": []}), "paid",
                      NOW + timedelta(days=1))
    assert s["totals"] == {"EUR": 1_750, "IRR": 10} and s["order_count"] == 2
    assert s["first_purchase_at"] == NOW and s["last_purchase_at"] == NOW + timedelta(days=1)
    assert s["products"]["A"]["quantity"] == 3
    s = summary.apply(s, first, "refunded", NOW)
    assert s["totals"]["EUR"] == 0 and s["order_count"] == 1 and s["refunded_count"] == 1
    assert s["products"]["A"]["quantity"] == 0
    assert summary.apply(s, first, "refunded", NOW) is None and summary.apply(s, first, "paid", NOW) is None


def test_a_refund_before_its_payment_keeps_the_late_payment_out():
    s = summary.apply(summary.empty("con_1"), view(order()), "refunded", NOW)
    assert s["order_count"] == 0 and s["refunded_count"] == 1 and s["totals"] == {}
    assert summary.apply(s, view(order()), "paid", NOW) is None
