"""Issue 12's scenarios through the gateway, as a client sees them, with the real services
(contacts, loyalty, sales, marketing) and the stack's own mail sink (a real SMTP server):
segments that follow orders and tiers, a campaign that honours consent and caps, two
replicas and a budget, tracked clicks that reach sales and the timeline, unsubscribes that
reach contacts, a marketing service that catches up after downtime, and the rebuild
command."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from google.protobuf import struct_pb2

from crm.v1 import contacts_pb2, marketing_pb2, marketing_pb2_grpc, sales_pb2, sales_pb2_grpc
from helpers import money, stubs, wait_for
from support.infra import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from mail_sink import Mailbox  # noqa: E402

pytestmark = pytest.mark.e2e
GOLD_BUYERS = {"all": [{"field": "tier", "op": "gte", "value": "gold"},
                       {"field": "orders_in_last_days", "days": 30, "op": "gte", "value": 1}]}


@pytest.fixture(scope="module")
def marketing(channel):
    return marketing_pb2_grpc.MarketingServiceStub(channel)


@pytest.fixture(scope="module")
def sales(channel):
    return sales_pb2_grpc.SalesServiceStub(channel)


@pytest.fixture(scope="module")
def contacts(channel):
    return stubs(channel)[0]


@pytest.fixture(scope="module")
def mailbox(stack):
    return Mailbox(stack.mailbox)


def rule(value: dict) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


def person(contacts, name="Sara", *, email_consent=True, loyalty=True):
    tag = uuid.uuid4().hex[:10]
    contact = contacts_pb2.Contact(given_name=name, family_name="Marketing",
                                   emails=[contacts_pb2.Email(address=f"{name.lower()}.{tag}@example.com", primary=True)])
    contact.consents["email"].CopyFrom(contacts_pb2.Consent(granted=email_consent, source="e2e"))
    if loyalty:
        contact.consents["loyalty"].CopyFrom(contacts_pb2.Consent(granted=True, source="e2e"))
    return contacts.CreateContact(contacts_pb2.CreateContactRequest(contact=contact), timeout=10)


def profile(marketing, contact_id):
    return marketing.GetAudienceProfile(marketing_pb2.GetAudienceProfileRequest(contact_id=contact_id), timeout=10)


def segment(marketing, name, value=None, kind="dynamic"):
    request = marketing_pb2.CreateSegmentRequest(name=f"{name} {uuid.uuid4().hex[:6]}", kind=kind)
    if value is not None:
        request.rule.CopyFrom(rule(value))
    return marketing.CreateSegment(request, timeout=10)


def members(marketing, seg) -> set[str]:
    page = marketing.ListSegmentMembers(marketing_pb2.ListSegmentMembersRequest(segment_id=seg.id, page_size=500),
                                        timeout=10)
    return {m.contact_id for m in page.members}


def filled(marketing, seg):
    return wait_for(lambda: (s := marketing.GetSegment(marketing_pb2.GetSegmentRequest(segment_id=seg.id),
                                                       timeout=10)).fill_state == "done" and s, 30)


def pay(sales, contact_id, amount_minor):
    order = sales.PlaceOrder(sales_pb2.PlaceOrderRequest(
        contact_id=contact_id, external_ref=f"mkt-{uuid.uuid4().hex[:10]}", channel="web", currency="EUR",
        lines=[sales_pb2.OrderLine(sku="COAT-1", name="Coat", quantity=1, unit_price=money(amount_minor))]),
        timeout=10)
    sales.PayOrder(sales_pb2.PayOrderRequest(order_id=order.id), timeout=10)
    return order


def listed(marketing, contact_ids, name="List"):
    for cid in contact_ids:
        wait_for(lambda: profile(marketing, cid).known, 20)
    seg = segment(marketing, name, kind="static")
    marketing.AddSegmentMembers(marketing_pb2.AddSegmentMembersRequest(segment_id=seg.id, contact_ids=contact_ids),
                                timeout=10)
    return seg


EMAIL = marketing_pb2.EmailContent(subject="Hello {{ first_name }}",
                                   body_text="Dear {{ first_name }}, the new coats: https://shop.example/coats",
                                   body_html="<p>Dear {{ first_name }}</p><a href='https://shop.example/coats'>Coats</a>")


def campaign(marketing, seg, **extra):
    return marketing.CreateCampaign(marketing_pb2.CreateCampaignRequest(
        name=f"Coats {uuid.uuid4().hex[:8]}", channel="email", email=EMAIL, include_segment_ids=[seg.id], **extra),
        timeout=10)


def completed(marketing, cmp):
    return wait_for(lambda: (p := marketing.GetCampaignProgress(marketing_pb2.GetCampaignProgressRequest(
        campaign_id=cmp.id), timeout=10)).state == "completed" and p.completed_at.seconds and p, 60)


def test_a_segment_on_tier_and_recent_purchases_follows_the_order_the_tier_and_the_refund(marketing, sales, contacts):
    seg = filled(marketing, segment(marketing, "Gold buyers", GOLD_BUYERS))
    buyer = person(contacts)
    order = pay(sales, buyer.id, 500_000)      # EUR 5,000: 5,000 points, gold
    wait_for(lambda: buyer.id in members(marketing, seg), 20)
    seen = profile(marketing, buyer.id)
    assert (seen.value.tier, seen.value.order_count) == ("gold", 1)
    assert seg.id in {m.segment_id for m in seen.segments}
    sales.RefundOrder(sales_pb2.RefundOrderRequest(order_id=order.id, reason="returned"), timeout=10)
    wait_for(lambda: buyer.id not in members(marketing, seg), 20)


def test_a_campaign_honours_consent_and_caps_and_the_dry_run_says_why(marketing, contacts, mailbox):
    dana, refuses, late = person(contacts, "Dana"), person(contacts, "Rhea", email_consent=False), person(contacts, "Leo")
    capped = person(contacts, "Cap")
    warm = listed(marketing, [capped.id])
    for _ in range(3):     # the cap: 3 messages per 7 days, whatever the campaign
        first = campaign(marketing, warm)
        marketing.SendCampaign(marketing_pb2.SendCampaignRequest(campaign_id=first.id), timeout=10)
        completed(marketing, first)
    cmp = campaign(marketing, listed(marketing, [dana.id, refuses.id, late.id, capped.id]))
    dry = marketing.DryRunCampaign(marketing_pb2.DryRunCampaignRequest(campaign_id=cmp.id), timeout=10)
    why = {e.contact_id: (e.decision, e.reason) for e in dry.entries}
    assert why == {dana.id: ("send", ""), late.id: ("send", ""), refuses.id: ("skip", "no_consent"),
                   capped.id: ("skip", "capped")}
    assert dict(dry.summary.by_reason) == {"no_consent": 1, "capped": 1}
    contacts.SetConsent(contacts_pb2.SetConsentRequest(contact_id=late.id, channel="email", granted=False,
                                                       source="preference-centre"), timeout=10)
    wait_for(lambda: not profile(marketing, late.id).consents["email"].granted, 15)
    marketing.SendCampaign(marketing_pb2.SendCampaignRequest(campaign_id=cmp.id), timeout=10)
    progress = completed(marketing, cmp)
    assert (progress.sent, dict(progress.skipped_by_reason)) == (1, {"no_consent": 2, "capped": 1})
    got = [m for m in mailbox.emails() if m["campaign_id"] == cmp.id]
    assert [m["to"] for m in got] == [[dana.emails[0].address]] and got[0]["subject"] == "Hello Dana"


def test_retried_sends_and_two_replicas_send_once_and_the_budget_stops_the_send(stack, marketing, channel,
                                                                               contacts, mailbox):
    people = [person(contacts, f"B{i}") for i in range(12)]
    cmp = campaign(marketing, listed(marketing, [p.id for p in people]),
                   budget=money(50), cost_per_message=money(5))
    replica = stack.start_replica("marketing")
    try:
        stub = marketing_pb2_grpc.MarketingServiceStub(channel)
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda key: stub.SendCampaign(marketing_pb2.SendCampaignRequest(
                campaign_id=cmp.id, idempotency_key=key), timeout=10), ["", "", "again", "again", ""]))
        assert {a.id for a in answers} == {cmp.id}
        progress = completed(marketing, cmp)
    finally:
        stack.stop(replica)
    assert (progress.sent, dict(progress.skipped_by_reason), progress.spent_minor) == (10, {"budget": 2}, 50)
    received = [m["to"][0] for m in mailbox.emails() if m["campaign_id"] == cmp.id]
    assert len(received) == 10 and len(set(received)) == 10


def test_a_click_is_recorded_raises_the_leads_score_and_shows_on_the_timeline_a_forged_token_is_refused(
        marketing, sales, contacts, mailbox):
    reader = person(contacts, "Nina")
    lead = sales.CaptureLead(sales_pb2.CaptureLeadRequest(
        lead=sales_pb2.Lead(given_name="Nina", email=reader.emails[0].address), channel="web_form",
        contact_id=reader.id), timeout=10).lead
    cmp = campaign(marketing, listed(marketing, [reader.id]))
    marketing.SendCampaign(marketing_pb2.SendCampaignRequest(campaign_id=cmp.id), timeout=10)
    completed(marketing, cmp)
    [mail] = [m for m in mailbox.emails() if m["campaign_id"] == cmp.id]
    token = re.search(r"/t/c/(\S+)", mailbox.text(mail["message"])).group(1)
    tracked = marketing.TrackEngagement(marketing_pb2.TrackEngagementRequest(token=token), timeout=10)
    assert (tracked.kind, tracked.recorded, tracked.redirect_url) == ("click", True, "https://shop.example/coats")
    scored = wait_for(lambda: (got := sales.GetLead(sales_pb2.GetLeadRequest(lead_id=lead.id), timeout=10)
                               ).behaviour.get("message_clicked") and got, 20)
    assert scored.score > lead.score

    def kinds():
        page = contacts.ListTimeline(contacts_pb2.ListTimelineRequest(contact_id=reader.id), timeout=10)
        return {(e.source, e.kind) for e in page.entries}
    assert wait_for(lambda: {("marketing", "message_sent"), ("marketing", "message_clicked"),
                             ("marketing", "message_opened")} <= kinds(), 20)
    for forged in (token[:-4] + "AAAA", "eyJhbGciOiJub25lIn0.eyJrIjoiYyJ9.", "x" * 40):
        with pytest.raises(grpc.RpcError) as err:
            marketing.TrackEngagement(marketing_pb2.TrackEngagementRequest(token=forged), timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "token" in err.value.details()


def test_unsubscribing_withdraws_the_consent_in_contacts(marketing, contacts, mailbox):
    leaver = person(contacts, "Ulla")
    cmp = campaign(marketing, listed(marketing, [leaver.id]))
    marketing.SendCampaign(marketing_pb2.SendCampaignRequest(campaign_id=cmp.id), timeout=10)
    completed(marketing, cmp)
    [mail] = [m for m in mailbox.emails() if m["campaign_id"] == cmp.id]
    assert mail["message"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    token = re.search(r"/t/u/(\S+)", mailbox.text(mail["message"])).group(1)
    assert marketing.TrackEngagement(marketing_pb2.TrackEngagementRequest(token=token), timeout=10).kind == "unsubscribe"
    withdrawn = wait_for(lambda: (c := contacts.GetContact(contacts_pb2.GetContactRequest(contact_id=leaver.id),
                                                            timeout=10)).consents["email"].granted is False and c, 20)
    assert withdrawn.consents["email"].source == f"unsubscribe:{cmp.id}"
    wait_for(lambda: not profile(marketing, leaver.id).consents["email"].granted, 20)
    again = campaign(marketing, listed(marketing, [leaver.id]))
    dry = marketing.DryRunCampaign(marketing_pb2.DryRunCampaignRequest(campaign_id=again.id), timeout=10)
    assert [(e.decision, e.reason) for e in dry.entries] == [("skip", "no_consent")]


@pytest.mark.parametrize("bad,path", [
    ({"all": [{"field": "tier", "op": "gte", "value": {"$gt": ""}}]}, "rule.all[0].value.$gt"),
    ({"$where": "this.tier == 'gold'"}, "rule.$where"),
    ({"any": [{"not": {"field": "points", "op": "gt", "value": "many"}}]}, "rule.any[0].not.value"),
])
def test_a_rule_with_an_operator_or_a_malformed_structure_is_invalid_argument_naming_the_path(marketing, bad, path):
    with pytest.raises(grpc.RpcError) as err:
        segment(marketing, "Bad", bad)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(f"{path}:")


def test_marketing_stopped_while_contacts_and_orders_change_catches_up(stack, marketing, sales, contacts):
    seg = filled(marketing, segment(marketing, "Gold buyers", GOLD_BUYERS))
    stack.stop("marketing")
    try:
        buyer, quiet = person(contacts, "Late"), person(contacts, "Quiet")
        pay(sales, buyer.id, 600_000)
        contacts.SetConsent(contacts_pb2.SetConsentRequest(contact_id=quiet.id, channel="email", granted=False,
                                                           source="e2e"), timeout=10)
    finally:
        stack.start("marketing")
        stack.wait_ready("marketing")
    wait_for(lambda: buyer.id in members(marketing, seg), 30)
    assert profile(marketing, buyer.id).value.tier == "gold"
    wait_for(lambda: not profile(marketing, quiet.id).consents["email"].granted, 30)


def test_the_rebuild_command_merges_the_producers_records_into_the_audience(stack, marketing, sales, contacts):
    buyer = person(contacts, "Rebuilt")
    pay(sales, buyer.id, 600_000)
    wait_for(lambda: profile(marketing, buyer.id).value.tier == "gold", 30)
    done = subprocess.run([sys.executable, "-m", "marketing.audience.rebuild_cli", "--page-size", "100"],
                          env={**os.environ, "AMQP_URI": stack.amqp_uri, "CRM_INTERNAL_SECRET": stack.auth.secret},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rebuilt = dict(re.findall(r"(\w+) ([\d,]+)", done.stdout.rpartition("rebuilt: ")[2]))
    assert set(rebuilt) == {"reset", "contacts", "loyalty", "sales", "tickets", "lists", "engagement", "segments"}
    assert int(rebuilt["contacts"].replace(",", "")) >= 1 and int(rebuilt["sales"].replace(",", "")) >= 1
    assert profile(marketing, buyer.id).value.tier == "gold"
