"""The marketing part of the demo: what some customers said they expect (a survey),
segments by value AND expectation ("gold customers who prefer SMS", "lapsed high-value
customers" ...), and a campaign sent to the newsletter readers, some of whom opened it and
clicked, with its mails in the local sink (`make mail`).

Loaded once (skipped when the demo's campaign exists already), through the gateway, as
the people who would do it: a marketer defines the segments and sends the campaign; the
survey form and the web front that serves tracking links call as an integration.
"""
from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import grpc
from google.protobuf import struct_pb2

from crm.v1 import contacts_pb2, contacts_pb2_grpc, marketing_pb2, marketing_pb2_grpc
from crm_gateway import client

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mail_sink import Mailbox  # noqa: E402

CAMPAIGN = "Autumn collection"
MAILBOX = Path(os.environ.get("CRM_MAIL_DIR") or Path(__file__).resolve().parents[1] / "var" / "mail")
# a demo customer's email, preferred channel, preferred contact time, what they value, time zone
SURVEY = [
    ("sara.ahmadi@example.com", "sms", "evening", ["price", "quality"], "Asia/Tehran"),
    ("reza.karimi@example.com", "sms", "morning", ["speed"], "Asia/Tehran"),
    ("negar.mohammadi@example.com", "sms", "afternoon", ["service"], "Asia/Tehran"),
    ("olivia.smith@example.com", "email", "morning", ["quality"], "Europe/London"),
    ("fatima.alsayed@example.com", "sms", "evening", ["service", "quality"], "Asia/Dubai"),
    ("lukas.mueller@example.com", "email", "", ["price"], "Europe/Berlin"),
    ("sofia.hernandez@example.com", "sms", "afternoon", ["price"], "Europe/Madrid"),
]
SEGMENTS = [
    ("Gold customers who prefer SMS", "Our best loyalty members who told us to text them",
     {"all": [{"field": "tier", "op": "gte", "value": "gold"},
              {"field": "preferred_channel", "op": "eq", "value": "sms"}]}),
    ("Lapsed high-value customers", "Spent a lot, nothing for three months: win them back",
     {"all": [{"field": "value_band", "op": "gte", "value": "high"},
              {"field": "last_order", "op": "more_than_days_ago", "value": 90}]}),
    ("Price-minded customers", "Value price most: offers, not stories",
     {"all": [{"field": "values", "op": "contains_any", "value": ["price"]},
              {"field": "lifecycle_stage", "op": "eq", "value": "customer"}]}),
    ("Waiting on support", "A ticket is open: no promotions until it is solved (the service desk's facts)",
     {"field": "open_tickets", "op": "gte", "value": 1}),
    ("Newsletter readers", "Asked for news by email",
     {"all": [{"field": "tags", "op": "contains_any", "value": ["newsletter", "vip"]},
              {"field": "consent", "channel": "email", "op": "is", "value": True}]}),
]
EMAIL = marketing_pb2.EmailContent(
    subject="{{ first_name }}, the autumn collection is here",
    body_text="Dear {{ first_name }},\n\nOur autumn collection has arrived: https://shop.example.com/autumn\n"
              "{% if tier %}As a {{ tier }} member you have {{ points }} points to spend.{% endif %}\n",
    body_html="<p>Dear {{ first_name }},</p><p>Our <a href=\"https://shop.example.com/autumn\">autumn collection</a>"
              " has arrived.</p>{% if tier %}<p>As a {{ tier }} member you have {{ points }} points to spend.</p>"
              "{% endif %}")


def load(channel: grpc.Channel, mint, mailbox: Path) -> str:
    marketer = marketing_pb2_grpc.MarketingServiceStub(client.authorized(channel, mint("demo-marketer", ["marketer"], "")))
    front = marketing_pb2_grpc.MarketingServiceStub(client.authorized(channel, mint("web-front", ["integration"], "")))
    contacts = contacts_pb2_grpc.ContactsServiceStub(client.authorized(channel, mint("demo-marketer", ["marketer"], "")))
    existing = marketer.ListCampaigns(marketing_pb2.ListCampaignsRequest(page_size=500), timeout=10).campaigns
    if any(c.name == CAMPAIGN for c in existing):
        return "marketing demo: already loaded"
    answered = _survey(contacts, front)
    segments = {name: _segment(marketer, name, description, rule) for name, description, rule in SEGMENTS}
    readers = segments["Newsletter readers"]
    _wait(lambda: marketer.GetSegment(marketing_pb2.GetSegmentRequest(segment_id=readers), timeout=10).fill_state
          == "done")
    campaign = marketer.CreateCampaign(marketing_pb2.CreateCampaignRequest(
        name=CAMPAIGN, channel="email", email=EMAIL, defaults={"first_name": "friend"},
        include_segment_ids=[readers], exclude_segment_ids=[segments["Lapsed high-value customers"]]), timeout=10)
    marketer.SendCampaign(marketing_pb2.SendCampaignRequest(campaign_id=campaign.id), timeout=10)
    progress = _wait(lambda: (p := marketer.GetCampaignProgress(marketing_pb2.GetCampaignProgressRequest(
        campaign_id=campaign.id), timeout=10)).state == "completed" and p)
    opens, clicks = _engage(front, Mailbox(mailbox), campaign.id)
    return (f"marketing demo: {answered} survey answers, {len(segments)} segments, campaign “{CAMPAIGN}”: "
            f"{progress.sent} sent, {progress.skipped} skipped, {opens} opened, {clicks} clicked")


def _survey(contacts, front) -> int:
    answered = 0
    for email, channel, time_of_day, values, zone in SURVEY:
        found = contacts.SearchContacts(contacts_pb2.SearchContactsRequest(text=email, page_size=1), timeout=10)
        if not found.contacts:
            continue
        contact_id = found.contacts[0].id
        front.RecordSurveyAnswers(marketing_pb2.RecordSurveyAnswersRequest(
            contact_id=contact_id, survey="Autumn preferences", preferred_channel=channel,
            preferred_contact_time=time_of_day, values=values, timezone=zone), timeout=10)
        answered += 1
    return answered


def _segment(marketer, name: str, description: str, rule: dict) -> str:
    body = struct_pb2.Struct()
    body.update(rule)
    try:
        return marketer.CreateSegment(marketing_pb2.CreateSegmentRequest(
            name=name, description=description, kind="dynamic", rule=body), timeout=10).id
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
        return _segment_id(marketer, name)


def _segment_id(marketer, name: str) -> str:
    page = marketer.ListSegments(marketing_pb2.ListSegmentsRequest(page_size=500), timeout=10)
    return next(s.id for s in page.segments if s.name == name)


def _engage(front, box: Mailbox, campaign_id: str) -> tuple[int, int]:
    """Some recipients open the mail (its pixel), some of them click the collection's link."""
    mails = _wait(lambda: [m for m in box.emails() if m["campaign_id"] == campaign_id]) or []
    opens = clicks = 0
    for n, mail in enumerate(mails):
        html = box.html(mail["message"])
        if n % 3 != 2:
            pixel = re.search(r"/t/o/([^\"']+)", html)
            opens += front.TrackEngagement(marketing_pb2.TrackEngagementRequest(token=pixel.group(1)),
                                           timeout=10).recorded
        if n % 2 == 0:
            link = re.search(r"/t/c/([^\"']+)", html)
            clicks += front.TrackEngagement(marketing_pb2.TrackEngagementRequest(token=link.group(1)),
                                            timeout=10).recorded
    return opens, clicks


def _wait(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    return predicate()
