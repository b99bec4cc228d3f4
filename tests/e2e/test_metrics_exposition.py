"""The live /metrics of every process: valid for Prometheus (`promtool check metrics`), and
carrying every series the dashboards and alerts read (deploy/k8s/components/monitoring),
so no panel stays empty and no alert stays silent because of a name or a label value."""
from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import time
import urllib.request
import uuid

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

import monitoring_check   # scripts/, on sys.path through conftest
from crm_common import registry
from crm.v1 import contacts_pb2, loyalty_pb2, sales_pb2, sales_pb2_grpc
from helpers import member_or_none, money, new_contact, stubs, wait_for

PROCESSES = tuple(d.name for d in registry.load().deployables)

# Metrics whose series exist only after a failure this stack does not provoke: for these
# the process must still declare the metric (its # TYPE line), so a rename is caught.
FAILURE_ONLY_METRICS = {
    "crm_events_relayed_total": "the relay re-published an event (a crash between write and publish)",
    "crm_events_parked": "a delivery was parked or replayed",
}
# Label values that only failures (or time) produce. Every other value a dashboard or
# alert names, alone or in an a|b|c alternation, must be on a live series.
UNREACHED_VALUES = {
    **{("grpc_code", code): "a server-side gRPC failure"
       for code in ("Unknown", "Internal", "Unavailable", "DeadlineExceeded")},
    ("outcome", "error"): "an RPC that crashed", ("outcome", "internal"): "an RPC that crashed",
    ("outcome", "parked"): "a delivery that failed every retry", ("outcome", "malformed"): "a delivery without an id",
    ("event", "points_expired"): "points older than LOYALTY_POINTS_TTL_DAYS",
    ("outcome", "deferred"): "an SMS in quiet hours (MARKETING_QUIET_HOURS: the time of day decides)",
}
_ALTERNATION = re.compile(r"[\w.:-]+(?:\|[\w.:-]+)+")


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:   # make install puts it there; a missing tool is a broken setup, not a skip
        pytest.fail("promtool is not installed: run `make install` (scripts/check-monitoring.sh install)")
    return path


def exercise(channel) -> None:
    """Traffic down every path the dashboards show: a consenting contact (contact_created
    handled by loyalty, member_enrolled handled by contacts), an explicit enrolment, an
    earning that moves the tier, a redemption, a lead, a deal won and one lost, an order
    paid and refunded, and typed errors (NOT_FOUND, FAILED_PRECONDITION)."""
    contacts, loyalty = stubs(channel)
    contact = new_contact(contacts, loyalty=True)
    wait_for(lambda: member_or_none(loyalty, contact.id))
    loyalty.Enroll(loyalty_pb2.EnrollRequest(contact_id=new_contact(contacts).id), timeout=10)
    loyalty.EarnPoints(loyalty_pb2.EarnPointsRequest(contact_id=contact.id, source="pos",
                                                     source_ref=f"metrics-{uuid.uuid4().hex}",
                                                     amount=money(150_000)), timeout=10)   # -> silver
    loyalty.RedeemPoints(loyalty_pb2.RedeemPointsRequest(contact_id=contact.id, points=10, reason="metrics"),
                         timeout=10)
    sales = sales_pb2_grpc.SalesServiceStub(channel)
    sales.CaptureLead(sales_pb2.CaptureLeadRequest(lead=sales_pb2.Lead(email=f"m.{uuid.uuid4().hex}@example.org"),
                                                   channel="web_form"), timeout=10)
    for close in (sales.WinDeal, sales.LoseDeal):
        deal = sales.CreateDeal(sales_pb2.CreateDealRequest(deal=sales_pb2.Deal(
            name="metrics", contact_id=contact.id, amount=money(1_000))), timeout=10)
        close(sales_pb2.WinDealRequest(deal_id=deal.id) if close == sales.WinDeal
              else sales_pb2.LoseDealRequest(deal_id=deal.id, reason="price"), timeout=10)
    order = sales.PlaceOrder(sales_pb2.PlaceOrderRequest(
        contact_id=contact.id, external_ref=f"metrics-{uuid.uuid4().hex}", channel="web", currency="EUR",
        lines=[sales_pb2.OrderLine(sku="M-1", name="M", quantity=1, unit_price=money(500))]), timeout=10)
    sales.PayOrder(sales_pb2.PayOrderRequest(order_id=order.id), timeout=10)
    sales.RefundOrder(sales_pb2.RefundOrderRequest(order_id=order.id, reason="metrics"), timeout=10)
    for call in (lambda: loyalty.RedeemPoints(loyalty_pb2.RedeemPointsRequest(
                     contact_id=contact.id, points=1_000_000, reason="too much"), timeout=10),
                 lambda: contacts.GetContact(contacts_pb2.GetContactRequest(contact_id="con_missing"), timeout=10)):
        with pytest.raises(grpc.RpcError):
            call()


def live_samples(texts: dict[str, str]) -> tuple[dict[str, list[dict[str, str]]], set[str]]:
    """Sample name -> label sets across every process, and every declared metric name."""
    samples: dict[str, list[dict[str, str]]] = {}
    declared: set[str] = set()
    for text in texts.values():
        for family in text_string_to_metric_families(text):
            declared.add(family.name)
            declared.add(family.name + "_total" if family.type == "counter" else family.name)
            for s in family.samples:
                samples.setdefault(s.name, []).append(s.labels)
    return samples, declared


def variants(sel: monitoring_check.Selector) -> list[list[monitoring_check.Matcher]]:
    """The matchers to find on a live series: Prometheus's target labels (namespace, job,
    pod...) and Grafana's $variables left out, each literal a|b|c alternation split into
    one variant per value, and variants that only failures produce dropped."""
    Matcher = monitoring_check.Matcher
    choices = []
    for m in sel.matchers:
        if m.label in monitoring_check.TARGET_LABELS or "$" in m.value:
            continue
        if m.op == "=~" and _ALTERNATION.fullmatch(m.value):
            choices.append([Matcher(m.label, "=", v) for v in m.value.split("|")])
        else:
            choices.append([m])
    return [list(combo) for combo in itertools.product(*choices)
            if not any(m.op == "=" and (m.label, m.value) in UNREACHED_VALUES for m in combo)]


def missing_series(texts: dict[str, str], uses=None) -> list[str]:
    """What the dashboards and alerts (or ``uses``) read that no process exports live."""
    samples, declared = live_samples(texts)
    missing = []
    for use in monitoring_check.all_uses() if uses is None else uses:
        for sel in monitoring_check.parse(use.expr).selectors:
            if sel.metric in monitoring_check.EXTERNAL_METRICS:
                continue
            if sel.metric in FAILURE_ONLY_METRICS:
                if sel.metric not in declared:
                    missing.append(f"{use.where}: {sel.metric} is not declared by any process")
                continue
            if not samples.get(sel.metric):
                missing.append(f"{use.where}: no process exports a {sel.metric} series")
            for matchers in variants(sel):
                if not any(all(m.matches(labels) for m in matchers) for labels in samples.get(sel.metric, [])):
                    wanted = ", ".join(f'{m.label}{m.op}"{m.value}"' for m in matchers)
                    missing.append(f"{use.where}: no live {sel.metric} series has {wanted}")
    return missing


def exercise_marketing(stack, channel) -> None:
    """A segment filled, an email campaign sent to a consenting contact (who unsubscribes), to one
    without consent (skipped), to an address the mail sink bounces and to one it keeps
    deferring (failed after the retries)."""
    import sys
    from crm.v1 import marketing_pb2, marketing_pb2_grpc
    sys.path.insert(0, str(monitoring_check.ROOT / "scripts"))
    from mail_sink import Mailbox

    contacts, _ = stubs(channel)
    marketing = marketing_pb2_grpc.MarketingServiceStub(channel)
    tag = uuid.uuid4().hex[:8]
    people = []
    for name, address, consent in (("ok", f"ok.{tag}@example.org", True), ("no", f"no.{tag}@example.org", False),
                                   ("bounce", f"b.{tag}@bounce.test", True), ("defer", f"d.{tag}@defer.test", True)):
        contact = contacts_pb2.Contact(given_name=name, emails=[contacts_pb2.Email(address=address)])
        contact.consents["email"].CopyFrom(contacts_pb2.Consent(granted=consent, source="metrics"))
        people.append(contacts.CreateContact(contacts_pb2.CreateContactRequest(contact=contact), timeout=10))
    for person in people:
        wait_for(lambda: marketing.GetAudienceProfile(marketing_pb2.GetAudienceProfileRequest(
            contact_id=person.id), timeout=10).known)
    seg = marketing.CreateSegment(marketing_pb2.CreateSegmentRequest(name=f"metrics {tag}", kind="static"), timeout=10)
    everyone = marketing_pb2.CreateSegmentRequest(name=f"metrics all {tag}", kind="dynamic")
    everyone.rule.update({"field": "has_email", "op": "is", "value": True})
    marketing.CreateSegment(everyone, timeout=10)     # filled in the background: its size gauge
    marketing.AddSegmentMembers(marketing_pb2.AddSegmentMembersRequest(segment_id=seg.id,
                                                                       contact_ids=[p.id for p in people]), timeout=10)
    cmp = marketing.CreateCampaign(marketing_pb2.CreateCampaignRequest(
        name=f"metrics {tag}", channel="email", include_segment_ids=[seg.id],
        email=marketing_pb2.EmailContent(subject="Hi", body_text="Hello")), timeout=10)
    marketing.SendCampaign(marketing_pb2.SendCampaignRequest(campaign_id=cmp.id), timeout=10)
    mail = wait_for(lambda: [m for m in Mailbox(stack.mailbox).emails() if m["campaign_id"] == cmp.id], 30)[0]
    unsubscribe = re.search(r"/t/u/(\S+)", Mailbox.text(mail["message"])).group(1)
    marketing.TrackEngagement(marketing_pb2.TrackEngagementRequest(token=unsubscribe), timeout=10)


@pytest.fixture(scope="module")
def expositions(stack, channel) -> dict[str, str]:
    exercise(channel)
    exercise_marketing(stack, channel)
    texts: dict[str, str] = {}
    deadline = time.monotonic() + 20   # event handlers and gauge timers run after the calls return
    while True:
        texts = {name: scrape(stack.metrics_ports[name]) for name in PROCESSES}
        if not missing_series(texts) or time.monotonic() > deadline:
            return texts
        time.sleep(0.5)


@pytest.mark.parametrize("process", PROCESSES)
def test_promtool_accepts_the_exposition(expositions, process):
    result = subprocess.run([promtool(), "check", "metrics"], input=expositions[process],
                            capture_output=True, text=True, timeout=30)
    # Exit 0 and silence: promtool prints lint problems (naming, units, help) and exits 3.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_every_series_the_dashboards_and_alerts_read_is_live(expositions):
    assert missing_series(expositions) == []


def test_a_label_value_no_process_exports_is_reported(expositions):
    """The comparison above can fail: a value nobody exports is caught, alone or in an
    alternation, and a failure-only value is not demanded."""
    uses = [monitoring_check.Use("typo", 'crm_rpc_requests_total{service="contact"}'),
            monitoring_check.Use("alternation", 'crm_events_published_total{event=~"contact_created|member_enroled"}'),
            monitoring_check.Use("fine", 'crm_events_handled_total{service="loyalty", outcome=~"ok|parked"}')]
    assert missing_series(expositions, uses) == [
        'typo: no live crm_rpc_requests_total series has service="contact"',
        'alternation: no live crm_events_published_total series has event="member_enroled"']
