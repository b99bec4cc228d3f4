"""Campaigns in-process over the real broker and database, delivering to a real SMTP
server (the mail sink, a process of its own on free ports): personalization, consent at
send time, frequency caps, dry runs, budgets, two replicas and retried sends, retries and
bounces, SMS with quiet hours, tracked clicks and opens, unsubscribes and the lead handoff.

Run: .venv/bin/nameko test tests/integration/test_marketing_campaigns.py -q -p no:cacheprovider
"""
from __future__ import annotations

import re
from datetime import datetime, timezone

import eventlet
import pytest

from crm_common import clock
from crm_common.errors import FailedPrecondition, InvalidArgument, NotFound
from crm_common.nameko.outbox import Outbox
from marketing import settings as marketing_settings
from marketing.audience import state as S
from marketing.audience.writes import AudienceWrites
from marketing.campaigns import domain as D
from marketing.campaigns.sending import Sending
from marketing.engagement import tokens
from marketing.service import MarketingService
from marketing.store import MarketingStore
from support.marketing import (consent_changed, contact, contact_created, heard, listener_class, mail_sink,
                               new_id)
from support.waiting import wait_for


@pytest.fixture
def sink(tmp_path, request):
    """The mail sink; a test marked ``slow_server`` gets one that takes 50 ms per email."""
    with mail_sink(tmp_path / "mail", 0.05 if request.node.get_closest_marker("slow_server") else 0) as s:
        yield s


@pytest.fixture
def marketing(make_config, start_service, rpc, dispatch, mongo_client, sink):
    """``marketing(replicas=1, **settings)`` -> (config, proxy, send(envelope), database)."""
    def start(replicas=1, **extra):
        cfg = make_config("marketing", **{**sink.settings(), "MARKETING_SEND_RETRY_WAIT_SECONDS": "0.05", **extra})
        start_service(listener_class(), make_config("marketing_listener"))
        for _ in range(replicas):
            start_service(MarketingService, cfg)

        def send(env):
            dispatch(cfg, env["source"])(env["type"], env)
        return cfg, rpc(cfg).marketing, send, mongo_client[cfg["MONGODB_DATABASE"]]
    return start


EMAIL = {"subject": "Hi {{ first_name }}, spring is here",
         "body_text": "Dear {{ first_name }} ({{ tier }}), our spring range: https://shop.example/spring",
         "body_html": "<p>Dear {{ first_name }}</p><a href=\"https://shop.example/spring\">Spring</a>"}


def audience_list(svc, send, people: list[dict]) -> dict:
    """A static list of these contacts, once marketing has heard of each."""
    for person in people:
        send(contact_created(person))
    for person in people:
        wait_for(lambda: svc.get_audience_profile(contact_id=person["id"])["known"], 15)
    seg = svc.create_segment(name=f"List {new_id('x')}", description="", kind="static", rule=None,
                             idempotency_key=None)
    svc.add_segment_members(segment_id=seg["id"], contact_ids=[p["id"] for p in people], idempotency_key=None)
    return seg


def campaign(svc, seg, channel="email", **extra):
    content = {"email": EMAIL, "sms": None} if channel == "email" else {"email": None, "sms": {
        "text": "Hi {{ first_name }}, 20% off today"}}
    fields = dict(name=f"Spring {new_id('c')}", channel=channel, defaults={"first_name": "friend"},
                  include_segment_ids=[seg["id"]], exclude_segment_ids=[], schedule_at=None, budget=None,
                  cost_per_message=None, idempotency_key=None, **content)
    fields.update(extra)
    return svc.create_campaign(**fields)


def finished(svc, cmp, state="completed"):
    return wait_for(lambda: (p := svc.get_campaign_progress(campaign_id=cmp["id"]))["state"] == state
                    and p["completed_at"] and p, 60)


def dry_run(svc, cmp) -> tuple[dict, dict[str, tuple[str, str, str]]]:
    answer = svc.dry_run_campaign(campaign_id=cmp["id"], decision=None, page_size=500, page_token="")
    return answer["summary"], {e["contact_id"]: (e["decision"], e["reason"], e["detail"]) for e in answer["entries"]}


def test_a_campaign_reaches_only_who_may_receive_it_personalized_and_the_dry_run_said_why(marketing, sink):
    cfg, svc, send, db = marketing(MARKETING_FREQUENCY_CAP_MESSAGES="1")
    dana, nameless, refuses, capped, late = (
        contact(new_id(), name="Dana"), contact(new_id(), name="", display_name=""), contact(new_id(), email=False),
        contact(new_id(), name="Cap"), contact(new_id(), name="Late"))
    # capped got a message of another campaign this week (the cap is 1 per 7 days)
    warmup = campaign(svc, audience_list(svc, send, [capped]))
    svc.send_campaign(campaign_id=warmup["id"], idempotency_key=None)
    finished(svc, warmup)
    seg = audience_list(svc, send, [dana, nameless, refuses, capped, late])
    cmp = campaign(svc, seg)
    summary, answers = dry_run(svc, cmp)
    assert answers[refuses["id"]] == ("skip", "no_consent", "no consent for email")
    assert answers[capped["id"]][:2] == ("skip", "capped")
    assert answers[late["id"]] == answers[dana["id"]] == ("send", "", "")
    assert summary == {"audience": 5, "would_send": 3, "would_defer": 0, "would_skip": 2,
                       "by_reason": {"no_consent": 1, "capped": 1}}
    # late withdraws consent just before the send
    send(consent_changed(late["id"], "email", False))
    wait_for(lambda: not svc.get_audience_profile(contact_id=late["id"])["consents"]["email"]["granted"], 15)
    assert dry_run(svc, cmp)[1][late["id"]] == ("skip", "no_consent", "no consent for email")
    svc.send_campaign(campaign_id=cmp["id"], idempotency_key=None)
    progress = finished(svc, cmp)
    assert (progress["recipients"], progress["sent"], progress["skipped_by_reason"]) == (
        5, 2, {"no_consent": 2, "capped": 1})
    got = {m["to"][0]: m for m in sink.mailbox.emails() if m["campaign_id"] == cmp["id"]}
    assert set(got) == {dana["emails"][0]["address"], nameless["emails"][0]["address"]}
    assert got[dana["emails"][0]["address"]]["subject"] == "Hi Dana, spring is here"
    assert got[nameless["emails"][0]["address"]]["subject"] == "Hi friend, spring is here"
    body = sink.mailbox.text(got[dana["emails"][0]["address"]]["message"])
    assert "Dear Dana" in body and "Unsubscribe: http://127.0.0.1" in body
    for who in (refuses, capped, late):
        assert not [m for m in sink.emails_to(who["emails"][0]["address"]) if m["campaign_id"] == cmp["id"]]
    sent = heard("message_sent", campaign_id=cmp["id"])
    assert {e["data"]["contact_id"] for e in sent} == {dana["id"], nameless["id"]}
    facts = [e for e in heard("timeline_fact", contact_id=dana["id"]) if e["data"]["kind"] == "message_sent"]
    assert facts and facts[0]["data"]["summary"].startswith("Sent email “Spring")


def by_hand(make_config, mongo_client, sink, people):
    """The store, a sending worker factory and a queued campaign to ``people`` (a static
    list), with no service running: the tests below run the queueing and the delivery
    themselves, so nothing depends on timing."""
    cfg = make_config("marketing", **sink.settings())
    db = mongo_client[cfg["MONGODB_DATABASE"]]
    MarketingStore.ensure_indexes(db)
    store, published = MarketingStore(db), []
    outbox = Outbox("marketing", lambda t, e: published.append(e), lambda rk, e: published.append(e), None,
                    record_audit=lambda e: None)
    settings = marketing_settings.Settings.from_config(cfg)
    writes = AudienceWrites(store.audience, store.segments, outbox, settings)
    now = clock.now()
    store.segments.insert({"_id": "seg_list", "name": "L", "name_key": "l", "kind": "static", "state": "active",
                           "fill": "done", "version": 1, "created_at": now, "updated_at": now}, [])
    for person in people:
        writes.apply(person["id"], lambda s, now, p=person: {**S.apply_contact(s, p),
                                                            "segments": {"seg_list": {"since": now, "kind": "static"}}})
    store.campaigns.insert({"_id": "cmp_hand", "name": "By hand", "name_key": "by hand", "channel": "email",
                            "content": EMAIL, "defaults": {}, "include": ["seg_list"], "exclude": [],
                            "state": D.RUNNING, "queue": {"state": "pending", "lease": None}, "spent_minor": 0,
                            "version": 1, "created_at": now, "updated_at": now}, [])

    def worker(name):
        return Sending(store.campaigns, store.audience, outbox, settings, name)
    worker("queuer").queue(store.campaigns.get("cmp_hand"))
    return db, store, writes, worker


def test_a_consent_withdrawn_after_the_send_was_queued_still_wins(make_config, mongo_client, sink):
    """The decision is taken again right before each message goes out."""
    stays, leaves = contact(new_id(), name="Stay"), contact(new_id(), name="Leave")
    db, store, writes, worker = by_hand(make_config, mongo_client, sink, [stays, leaves])
    queued = {m["contact_id"]: m["status"] for m in db.messages.find({"campaign_id": "cmp_hand"})}
    assert queued == {stays["id"]: D.QUEUED, leaves["id"]: D.QUEUED}
    writes.apply(leaves["id"], lambda s, now: S.apply_consent(s, "email", False, now))    # a second before it goes
    worker("w1").deliver(seconds=10)
    final = {m["contact_id"]: (m["status"], m["reason"], m["detail"]) for m in db.messages.find({"campaign_id": "cmp_hand"})}
    assert final == {stays["id"]: (D.SENT, "", ""), leaves["id"]: (D.SKIPPED, "no_consent",
                                                                    "consent withdrawn for email")}
    assert [m["to"] for m in sink.mailbox.emails()] == [[stays["emails"][0]["address"]]]
    assert store.campaigns.get("cmp_hand")["state"] == D.COMPLETED


@pytest.mark.slow_server
def test_two_workers_holding_one_batch_send_each_message_once(make_config, mongo_client, sink):
    """What a batch's lease cannot rule out (it expired under a slow worker and another
    took it): both work through the same messages, and the claim lets one send each."""
    people = [contact(new_id(), name=f"P{i}") for i in range(12)]
    db, store, writes, worker = by_hand(make_config, mongo_client, sink, people)
    [batch] = list(db.batches.find({"campaign_id": "cmp_hand"}))
    threads = [eventlet.spawn(worker(f"w{i}").deliver_batch, {**batch, "owner": f"w{i}"}) for i in range(2)]
    for thread in threads:
        thread.wait()
    received = [m["to"][0] for m in sink.mailbox.emails()]
    assert sorted(received) == sorted(p["emails"][0]["address"] for p in people)
    assert {m["claimed_by"] for m in db.messages.find({"campaign_id": "cmp_hand"})} == {"w0", "w1"}


def test_two_replicas_and_retried_sends_never_send_twice_and_the_budget_stops_the_send(marketing, sink, rpc):
    cfg, svc, send, db = marketing(replicas=2, MARKETING_SEND_BATCH="3")
    people = [contact(new_id(), name=f"P{i}") for i in range(30)]
    seg = audience_list(svc, send, people)
    cmp = campaign(svc, seg, budget={"amount_minor": 200, "currency": "EUR"},
                   cost_per_message={"amount_minor": 10, "currency": "EUR"})
    callers = [(rpc(cfg).marketing, key) for key in (None, None, "k1", "k1", None)]   # a proxy per green thread
    answers = list(eventlet.GreenPool().imap(
        lambda c: c[0].send_campaign(campaign_id=cmp["id"], idempotency_key=c[1]), callers))
    assert {a["id"] for a in answers} == {cmp["id"]}
    progress = finished(svc, cmp)
    assert (progress["sent"], progress["skipped_by_reason"], progress["spent_minor"]) == (20, {"budget": 10}, 200)
    assert svc.get_campaign(campaign_id=cmp["id"])["spent"] == {"amount_minor": 200, "currency": "EUR"}
    received = [m["to"][0] for m in sink.mailbox.emails() if m["campaign_id"] == cmp["id"]]
    assert len(received) == 20 and len(set(received)) == 20
    # which replica sent what depends on when each one's timer ticked; the next test makes two
    # workers race for the same messages on purpose
    assert svc.send_campaign(campaign_id=cmp["id"], idempotency_key=None)["state"] == "completed"
    assert len(heard("campaign_completed", campaign_id=cmp["id"])) >= 1


def test_transient_failures_are_retried_and_refusals_bounce(marketing, sink):
    cfg, svc, send, db = marketing()
    flaky = contact(new_id(), address=f"{new_id('f')}@flaky.test")
    gone = contact(new_id(), address=f"{new_id('b')}@bounce.test")
    busy = contact(new_id(), address=f"{new_id('d')}@defer.test")
    cmp = campaign(svc, audience_list(svc, send, [flaky, gone, busy]))
    svc.send_campaign(campaign_id=cmp["id"], idempotency_key=None)
    progress = finished(svc, cmp)
    assert (progress["sent"], progress["bounced"], progress["failed"]) == (1, 1, 1)
    by_contact = {m["contact_id"]: m for m in svc.list_campaign_messages(
        campaign_id=cmp["id"], status=None, page_size=10, page_token="")["messages"]}
    assert (by_contact[flaky["id"]]["status"], by_contact[flaky["id"]]["attempts"]) == ("sent", 2)
    assert by_contact[gone["id"]]["status"] == "bounced" and "550" in by_contact[gone["id"]]["detail"]
    assert (by_contact[busy["id"]]["status"], by_contact[busy["id"]]["attempts"]) == ("failed", 4)
    failed = heard("message_failed", campaign_id=cmp["id"])
    assert {(e["data"]["contact_id"], e["data"]["status"]) for e in failed} == {(gone["id"], "bounced"),
                                                                                 (busy["id"], "failed")}
    # a provider's later reports
    sent = by_contact[flaky["id"]]["id"]
    assert svc.record_delivery_report(message_id=sent, kind="reply", detail="", idempotency_key=None)["recorded"]
    assert not svc.record_delivery_report(message_id=sent, kind="reply", detail="", idempotency_key=None)["recorded"]
    assert svc.record_delivery_report(message_id=sent, kind="bounce", detail="mailbox full",
                                      idempotency_key=None)["recorded"]
    assert svc.list_campaign_messages(campaign_id=cmp["id"], status="bounced", page_size=10,
                                      page_token="")["messages"][0]["contact_id"] in {gone["id"], flaky["id"]}
    with pytest.raises(FailedPrecondition):
        svc.record_delivery_report(message_id=by_contact[busy["id"]]["id"], kind="bounce", detail="",
                                   idempotency_key=None)
    wait_for(lambda: heard("message_replied", message_id=sent), 10)


def test_sms_waits_out_quiet_hours_and_goes_to_the_provider(marketing, sink):
    hour = datetime.now(timezone.utc).hour
    cfg, svc, send, db = marketing(MARKETING_QUIET_HOURS=f"{hour}-{(hour + 1) % 24}")
    night_owl = contact(new_id(), sms=True, phone="+4915112345678")
    cmp = campaign(svc, audience_list(svc, send, [night_owl]), channel="sms")
    summary, answers = dry_run(svc, cmp)
    assert answers[night_owl["id"]][:2] == ("defer", "quiet_hours") and summary["would_defer"] == 1
    svc.send_campaign(campaign_id=cmp["id"], idempotency_key=None)
    progress = wait_for(lambda: (p := svc.get_campaign_progress(campaign_id=cmp["id"]))["deferred"] == 1 and p, 30)
    assert progress["deferred_by_reason"] == {"quiet_hours": 1} and sink.mailbox.sms() == []
    svc.cancel_campaign(campaign_id=cmp["id"], idempotency_key=None)
    assert finished(svc, cmp, "cancelled")["skipped_by_reason"] == {"cancelled": 1}


def test_sms_delivery_with_retries_and_refusals(marketing, sink):
    cfg, svc, send, db = marketing(MARKETING_QUIET_HOURS="0-0")
    ok = contact(new_id(), name="Sam", sms=True, phone="+4915100000001")
    busy_once = contact(new_id(), sms=True, phone="+99800000002")
    refused = contact(new_id(), sms=True, phone="+99900000003")
    no_phone = contact(new_id(), sms=True)
    cmp = campaign(svc, audience_list(svc, send, [ok, busy_once, refused, no_phone]), channel="sms")
    svc.send_campaign(campaign_id=cmp["id"], idempotency_key=None)
    progress = finished(svc, cmp)
    assert (progress["sent"], progress["bounced"], progress["skipped_by_reason"]) == (2, 1, {"no_address": 1})
    texts = {s["to"]: s["text"] for s in sink.mailbox.sms()}
    assert texts["+4915100000001"] == "Hi Sam, 20% off today" and "+99800000002" in texts


def test_clicks_and_opens_are_tracked_unsubscribes_withdraw_and_engagement_hands_the_lead_over(marketing, sink):
    cfg, svc, send, db = marketing(MARKETING_LEAD_SCORE_THRESHOLD="4")
    fan = contact(new_id(), name="Fan", phones=[{"number": "+4915100000009"}])
    cmp = campaign(svc, audience_list(svc, send, [fan]))
    svc.send_campaign(campaign_id=cmp["id"], idempotency_key=None)
    finished(svc, cmp)
    [mail] = sink.emails_to(fan["emails"][0]["address"])
    text = sink.mailbox.text(mail["message"])
    click = re.search(r"http://127\.0\.0\.1:\d+/t/c/(\S+)", text).group(1)
    leave = re.search(r"http://127\.0\.0\.1:\d+/t/u/(\S+)", text).group(1)
    pixel = re.search(r"/t/o/([^\"]+)\"", sink.mailbox.html(mail["message"])).group(1)
    tracked = svc.track_engagement(token=click)
    assert (tracked["kind"], tracked["recorded"], tracked["redirect_url"]) == (
        "click", True, "https://shop.example/spring")
    assert svc.track_engagement(token=click)["recorded"] is False
    assert svc.track_engagement(token=pixel)["recorded"] is False          # the click counted as the open
    clicked = wait_for(lambda: heard("message_clicked", contact_id=fan["id"]), 10)
    assert clicked[0]["data"]["link"] == "https://shop.example/spring"
    assert clicked[0]["data"]["campaign_id"] == cmp["id"] and clicked[0]["data"]["channel"] == "email"
    assert len(heard("message_opened", contact_id=fan["id"])) == 1
    kinds = wait_for(lambda: {e["data"]["kind"] for e in heard("timeline_fact", contact_id=fan["id"])} >= {
        "message_sent", "message_opened", "message_clicked"} and True, 10)
    assert kinds
    # open (1) + click (3) reach the threshold (4): handed to sales with what the contact did
    lead = wait_for(lambda: heard("lead_qualified", contact_id=fan["id"]), 10)[0]["data"]
    assert (lead["score"], lead["email"], lead["given_name"]) == (4, fan["emails"][0]["address"], "Fan")
    assert [h["kind"] for h in lead["history"]] == ["clicked", "opened"] or \
        [h["kind"] for h in lead["history"]] == ["opened", "clicked"]
    profile = svc.get_audience_profile(contact_id=fan["id"])
    assert profile["engagement"]["score"] == 4 and profile["engagement"]["qualified_at"]
    # forged, altered, foreign: INVALID_ARGUMENT; a real token of no message: NOT_FOUND
    secret = marketing_settings.Settings.from_config(cfg).tracking_secret
    for forged in (click[:-3] + "abc", tokens.mint("f" * 40, "c", tracked["message_id"], "https://evil.example"),
                   "nonsense"):
        with pytest.raises(InvalidArgument) as err:
            svc.track_engagement(token=forged)
        assert err.value.violations[0]["field"] == "token"
    with pytest.raises(NotFound):
        svc.track_engagement(token=tokens.mint(secret, "o", "msg_nothing"))
    # unsubscribe: the fact contacts withdraws the consent from
    assert svc.track_engagement(token=leave)["kind"] == "unsubscribe"
    unsubscribed = wait_for(lambda: heard("contact_unsubscribed", contact_id=fan["id"]), 10)
    assert unsubscribed[0]["data"]["channel"] == "email"
    assert svc.track_engagement(token=leave)["recorded"] is False
