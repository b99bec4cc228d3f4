"""The marketing service's audience and segments in-process, over the real broker and
database: membership follows the facts as they are published, lists, previews, the fill
of a new segment, re-checks of time-relative rules, catching up after downtime,
erasure, surveys, and a rebuild from the producers' records.

Run: .venv/bin/nameko test tests/integration/test_marketing_segments.py -q -p no:cacheprovider
"""
from __future__ import annotations

import time
from datetime import timedelta

import pytest

from crm_common import clock
from crm_common.errors import FailedPrecondition, InvalidArgument
from marketing.service import MarketingService
from support.marketing import (SEEN, contact, contact_created, consent_changed, csat_received, fact, heard,
                               listener_class, new_id, order_paid, order_refunded, ticket_opened,
                               ticket_status_changed, tier_changed)
from support.waiting import wait_for

GOLD_BUYERS = {"all": [{"field": "tier", "op": "gte", "value": "gold"},
                       {"field": "orders_in_last_days", "days": 30, "op": "gte", "value": 1}]}


@pytest.fixture
def marketing(make_config, start_service, rpc, dispatch, mongo_client):
    """``marketing(**settings)`` -> (config, proxy, send(source, envelope), database)."""
    def start(**extra):
        cfg = make_config("marketing", **extra)
        start_service(listener_class(), make_config("marketing_listener"))
        container = start_service(MarketingService, cfg)

        def send(env):
            dispatch(cfg, env["source"])(env["type"], env)
        return cfg, rpc(cfg).marketing, send, mongo_client[cfg["MONGODB_DATABASE"]], container
    return start


def segment(svc, name, rule=None, kind="dynamic"):
    return svc.create_segment(name=f"{name} {new_id('x')}", description="", kind=kind, rule=rule, idempotency_key=None)


def filled(svc, seg):
    return wait_for(lambda: (s := svc.get_segment(segment_id=seg["id"]))["fill_state"] == "done" and s, 20)


def members(svc, seg) -> set[str]:
    out, token = set(), ""
    while True:
        page = svc.list_segment_members(segment_id=seg["id"], page_size=2, page_token=token)
        out |= {m["contact_id"] for m in page["members"]}
        token = page["next_page_token"]
        if not token:
            return out


def known(svc, cid, **check):
    def ready():
        p = svc.get_audience_profile(contact_id=cid)
        return p["known"] and all(check_fn(p) for check_fn in check.values()) and p
    return wait_for(ready, 15)


def test_a_dynamic_segment_gains_a_member_on_the_order_and_the_tier_change_and_loses_it(marketing):
    cfg, svc, send, db, _ = marketing()
    seg = filled(svc, segment(svc, "Gold buyers", GOLD_BUYERS))
    cid, order = new_id(), new_id("ord")
    send(contact_created(contact(cid)))
    send(order_paid(cid, order))
    known(svc, cid, ordered=lambda p: p["value"]["order_count"] == 1)
    assert not heard("segment_entered", contact_id=cid)          # bought, but not gold yet
    started = time.monotonic()
    send(tier_changed(cid, "gold"))
    entered = wait_for(lambda: heard("segment_entered", contact_id=cid, segment_id=seg["id"]), 15)
    lag = time.monotonic() - started
    print(f"event -> segment_entered heard in {lag * 1000:.0f} ms")
    assert entered[0]["data"]["reasons"] == ["tier gte gold (is gold)", "orders_in_last_days[30] gte 1 (is 1)"]
    assert entered[0]["data"]["initial"] is False            # the fact did it, not the fill (done before)
    assert members(svc, seg) == {cid}
    # the condition stops holding: the order is refunded
    send(order_refunded(cid, order))
    left = wait_for(lambda: heard("segment_left", contact_id=cid, segment_id=seg["id"]), 15)
    assert left[0]["data"]["reason"] == "no longer matches"
    assert members(svc, seg) == set()
    # a redelivery of the facts changes nothing: one entry, one exit
    send(tier_changed(cid, "gold"))
    time.sleep(0.5)
    assert len(heard("segment_entered", contact_id=cid, segment_id=seg["id"])) == 1


def test_a_new_segment_is_filled_with_the_contacts_that_match_already(marketing):
    cfg, svc, send, db, _ = marketing()
    gold, silver = new_id(), new_id()
    for cid, tier in ((gold, "gold"), (silver, "silver")):
        send(contact_created(contact(cid)))
        send(tier_changed(cid, tier))
    known(svc, silver, tier=lambda p: p["value"]["tier"] == "silver")
    known(svc, gold, tier=lambda p: p["value"]["tier"] == "gold")
    seg = segment(svc, "Gold", {"field": "tier", "op": "gte", "value": "gold"})
    assert seg["fill_state"] == "pending"
    done = filled(svc, seg)
    assert members(svc, seg) == {gold} and done["members"] == 1
    entered = heard("segment_entered", contact_id=gold, segment_id=seg["id"])
    assert len(entered) == 1 and entered[0]["data"]["initial"] is True
    # a changed rule re-evaluates everyone
    updated = svc.update_segment(segment_id=seg["id"], expected_version=seg["version"], name="", description="",
                                 rule={"field": "tier", "op": "gte", "value": "silver"}, update_mask=["rule"],
                                 idempotency_key=None)
    assert updated["fill_state"] == "pending" and updated["rule"] == {"field": "tier", "op": "gte", "value": "silver"}
    filled(svc, updated)
    assert members(svc, seg) == {gold, silver}
    preview = svc.preview_segment(segment_id=seg["id"], rule=None, sample_size=5)
    assert preview["count"] == 2 and preview["evaluated"] >= 2
    assert {s["contact_id"] for s in preview["sample"]} == {gold, silver}
    assert all(s["reasons"] and s["display_name"] == "Sara Tester" for s in preview["sample"])
    # archived: everybody leaves
    svc.archive_segment(segment_id=seg["id"], idempotency_key=None)
    wait_for(lambda: heard("segment_left", contact_id=silver, segment_id=seg["id"]), 20)
    assert members(svc, seg) == set()


def test_rules_with_operators_or_a_malformed_structure_are_refused_by_path(marketing):
    cfg, svc, send, db, _ = marketing()
    for rule, path in [({"all": [{"field": "tier", "op": "gte", "value": {"$gt": ""}}]}, "rule.all[0].value.$gt"),
                       ({"$where": "function() { return true }"}, "rule.$where"),
                       ({"any": [{"field": "tier"}]}, "rule.any[0].op")]:
        with pytest.raises(InvalidArgument) as err:
            segment(svc, "Bad", rule)
        assert err.value.violations[0]["field"] == path
        with pytest.raises(InvalidArgument) as err:
            svc.preview_segment(segment_id="", rule=rule, sample_size=0)
        assert err.value.violations[0]["field"] == path


def test_static_lists_add_remove_list_and_erasure(marketing):
    cfg, svc, send, db, _ = marketing()
    vip = segment(svc, "VIP list", kind="static")
    ids = [new_id() for _ in range(3)]
    send(contact_created(contact(ids[0])))
    added = svc.add_segment_members(segment_id=vip["id"], contact_ids=[*ids, ids[0]], idempotency_key=None)
    assert added == {"added": 3, "already": 0}
    again = svc.add_segment_members(segment_id=vip["id"], contact_ids=ids[:2], idempotency_key=None)
    assert again == {"added": 0, "already": 2}
    assert members(svc, vip) == set(ids)
    assert svc.remove_segment_members(segment_id=vip["id"], contact_ids=[ids[2], new_id()],
                                      idempotency_key=None) == {"removed": 1, "absent": 1}
    # erased: out of every segment, personal data gone
    known(svc, ids[0], named=lambda p: p["display_name"] == "Sara Tester")
    send(fact("contacts", "contact_erased", ids[0], {"contact_id": ids[0]}))
    profile = known(svc, ids[0], erased=lambda p: p["erased"])
    assert profile["display_name"] == "" and profile["emails"] == [] and profile["segments"] == []
    assert members(svc, vip) == {ids[1]}
    dynamic = segment(svc, "dyn", {"field": "tier", "op": "eq", "value": "none"})
    with pytest.raises(FailedPrecondition):
        svc.add_segment_members(segment_id=dynamic["id"], contact_ids=ids[:1], idempotency_key=None)


def test_a_rule_that_time_alone_changes_is_rechecked(marketing):
    cfg, svc, send, db, _ = marketing(MARKETING_RECHECK_MINUTES="0.05")    # every 3 seconds
    seg = filled(svc, segment(svc, "Bought today", {"field": "orders_in_last_days", "days": 1, "op": "gte",
                                                    "value": 1}))
    assert seg["time_relative"] is True
    cid = new_id()
    send(contact_created(contact(cid)))
    send(order_paid(cid, new_id("ord"), at=clock.now() - timedelta(days=1) + timedelta(seconds=4)))
    wait_for(lambda: heard("segment_entered", contact_id=cid, segment_id=seg["id"]), 15)
    left = wait_for(lambda: heard("segment_left", contact_id=cid, segment_id=seg["id"]), 40)
    assert left[0]["data"]["reason"] == "no longer matches"


def test_expectations_from_surveys_and_custom_fields_segment_the_audience(marketing):
    cfg, svc, send, db, _ = marketing()
    seg = filled(svc, segment(svc, "Gold customers who prefer SMS",
                              {"all": [{"field": "tier", "op": "gte", "value": "gold"},
                                       {"field": "preferred_channel", "op": "eq", "value": "sms"}]}))
    by_field, by_survey = new_id(), new_id()
    send(contact_created(contact(by_field, custom_fields={"preferred_channel": "SMS", "values": "price"})))
    send(contact_created(contact(by_survey)))
    for cid in (by_field, by_survey):
        send(tier_changed(cid, "platinum"))
    wait_for(lambda: heard("segment_entered", contact_id=by_field, segment_id=seg["id"]), 15)
    profile = svc.record_survey_answers(contact_id=by_survey, survey="Spring survey", preferred_channel="sms",
                                        preferred_contact_time="evening", values=["speed", "quality"],
                                        timezone="Asia/Tehran", idempotency_key=None)
    assert profile["expectations"]["preferred_channel"]["source"] == "survey:Spring survey"
    assert profile["expectations"]["values"]["value"] == "quality,speed"
    assert seg["id"] in {m["segment_id"] for m in profile["segments"]}
    timeline = wait_for(lambda: [e for e in heard("timeline_fact", contact_id=by_survey) if e["data"]["kind"] ==
                                 "survey_answered"], 10)
    assert "preferred channel: sms" in timeline[0]["data"]["summary"]
    with pytest.raises(InvalidArgument) as err:
        svc.record_survey_answers(contact_id=by_survey, survey="x", preferred_channel="fax",
                                  preferred_contact_time="", values=[], timezone="Mars/Base", idempotency_key=None)
    assert {v["field"] for v in err.value.violations} == {"preferred_channel", "timezone"}


def test_stopped_while_facts_change_then_started_the_audience_catches_up(marketing, start_service):
    cfg, svc, send, db, container = marketing()
    seg = filled(svc, segment(svc, "Gold buyers", GOLD_BUYERS))
    stays, joins, leaves = new_id(), new_id(), new_id()
    for cid in (stays, leaves):
        send(contact_created(contact(cid)))
        send(order_paid(cid, f"ord_{cid}"))
        send(tier_changed(cid, "gold"))
    send(contact_created(contact(joins)))
    wait_for(lambda: members(svc, seg) == {stays, leaves}, 15)
    container.stop()
    send(order_paid(joins, f"ord_{joins}"))
    send(tier_changed(joins, "platinum"))
    send(tier_changed(leaves, "silver", "gold"))
    send(consent_changed(stays, "email", False))
    time.sleep(1)
    start_service(MarketingService, cfg)
    wait_for(lambda: members(svc, seg) == {stays, joins}, 20)
    assert svc.get_audience_profile(contact_id=stays)["consents"]["email"]["granted"] is False
    assert svc.get_audience_profile(contact_id=leaves)["value"]["tier"] == "silver"


def test_membership_follows_the_service_desk_open_resolved_reopened_and_satisfaction(marketing):
    cfg, svc, send, db, _ = marketing()
    seg = filled(svc, segment(svc, "Waiting on support", {"field": "open_tickets", "op": "gte", "value": 1}))
    cid, ticket = new_id(), new_id("tkt")
    send(contact_created(contact(cid)))
    send(ticket_opened(cid, ticket))
    wait_for(lambda: heard("segment_entered", contact_id=cid, segment_id=seg["id"]), 15)
    send(ticket_status_changed(cid, ticket, "open", "resolved"))
    wait_for(lambda: heard("segment_left", contact_id=cid, segment_id=seg["id"]), 15)
    send(ticket_status_changed(cid, ticket, "resolved", "open"))           # the customer replied: reopened
    wait_for(lambda: len(heard("segment_entered", contact_id=cid, segment_id=seg["id"])) == 2, 15)
    send(csat_received(cid, ticket, 2))
    profile = known(svc, cid, csat=lambda p: p["service"]["last_csat"] == 2)
    assert profile["service"]["open_tickets"] == 1 and members(svc, seg) == {cid}


def test_the_audience_is_rebuilt_from_the_producers_records(marketing, make_config, start_service, rpc):
    from contacts.service import ContactsService
    from loyalty.service import LoyaltyService
    from sales.service import SalesService
    from service_desk.service import ServiceDeskService

    cfg, svc, send, db, _ = marketing()
    made_cfg = {name: make_config(name) for name in ("contacts", "loyalty", "sales", "service-desk")}
    for cls, name in ((ContactsService, "contacts"), (LoyaltyService, "loyalty"), (SalesService, "sales"),
                      (ServiceDeskService, "service-desk")):
        start_service(cls, made_cfg[name])
    contacts, loyalty = rpc(made_cfg["contacts"]).contacts, rpc(made_cfg["loyalty"]).loyalty
    sales, desk = rpc(made_cfg["sales"]).sales, rpc(made_cfg["service-desk"])["service-desk"]
    made = contacts.create_contact(contact={"given_name": "Reza", "family_name": new_id("n"),
                                            "emails": [{"address": f"{new_id('r')}@example.org"}],
                                            "consents": {"email": {"granted": True, "source": "test"}}},
                                   idempotency_key=None)
    loyalty.enroll(contact_id=made["id"], idempotency_key=None)
    loyalty.earn_points(contact_id=made["id"], source="pos", source_ref=new_id("o"),
                        amount={"amount_minor": 600_000, "currency": "EUR"}, idempotency_key=None)
    placed = sales.place_order(contact_id=made["id"], external_ref=new_id("web"), channel="web", currency="EUR",
                               lines=[{"sku": "TEA-1", "name": "Green tea", "quantity": 2,
                                       "unit_price": {"amount_minor": 1_250, "currency": "EUR"}}])
    sales.pay_order(order_id=placed["id"], payment_ref=new_id("psp"))
    desk.open_ticket(contact_id=made["id"], subject="Where is my tea?", description="Late.", category="late_delivery",
                     priority="normal", channel="email", order_ref=placed["id"])
    # the events built it: a gold member who spent 25 EUR and has a ticket open
    known(svc, made["id"], value=lambda p: (p["value"]["tier"], p["value"]["order_count"]) == ("gold", 1),
          tickets=lambda p: p["service"]["open_tickets"] == 1)
    seg = filled(svc, segment(svc, "Gold", {"field": "tier", "op": "gte", "value": "gold"}))
    lst = segment(svc, "List", kind="static")
    svc.add_segment_members(segment_id=lst["id"], contact_ids=[made["id"]], idempotency_key=None)
    known(svc, made["id"], gold=lambda p: p["value"]["tier"] == "gold" and p["segments"])
    first = svc.rebuild_audience(reset=True, page_size=50, page_token="")
    assert first["step"] == "reset" and not first["done"]
    assert svc.get_audience_profile(contact_id=made["id"])["known"] is False      # from scratch
    token, steps = first["next_page_token"], {}
    while token:
        done = svc.rebuild_audience(reset=True, page_size=50, page_token=token)
        steps[done["step"]] = steps.get(done["step"], 0) + done["applied"]
        token = done["next_page_token"]
    assert done["done"] and all(steps[step] >= 1 for step in ("contacts", "loyalty", "sales", "tickets", "lists"))
    profile = svc.get_audience_profile(contact_id=made["id"])
    assert (profile["display_name"], profile["value"]["tier"], profile["consents"]["email"]["granted"]) == (
        made["display_name"], "gold", True)
    assert (profile["value"]["order_count"], profile["service"]["open_tickets"]) == (1, 1)
    filled(svc, svc.get_segment(segment_id=seg["id"]))
    assert made["id"] in members(svc, seg) and members(svc, lst) == {made["id"]}
