"""Campaign rules without I/O: who gets a message now and why not, quiet hours and
preferred times, budgets, personalization in a sandbox, tracking tokens that cannot be
forged, the contracts' paths, the settings, the outgoing email."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import jwt
import pytest

from crm_common import registry
from crm_common.contracts import parse
from crm_common.errors import InvalidArgument
from marketing.campaigns import contracts as C
from marketing.campaigns import domain as D
from marketing.campaigns import templates
from marketing.delivery import email as smtp
from marketing.engagement import tokens
from marketing.segments import contracts as SC
from marketing.settings import QuietHours, Settings

QUIET = QuietHours(21, 8)
NOON = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)
SECRET = "s" * 40


def recipient(**over):
    base = dict(contact_id="con_1", erased=False, address="sara@example.org", consent=True)
    base.update(over)
    return D.Recipient(**base)


def decide(r, channel="email", now=NOON, **kw):
    return D.decide(r, channel, now, quiet=QUIET, default_tz="UTC", **kw)


# --------------------------------------------------------------------------- who gets it

@pytest.mark.parametrize("r,kw,reason", [
    (recipient(erased=True), {}, D.ERASED),
    (recipient(address=None), {}, D.NO_ADDRESS),
    (recipient(consent=False), {}, D.NO_CONSENT),
    (recipient(), {"sent_in_window": 3, "cap": 3}, D.CAPPED),
])
def test_skips_and_why(r, kw, reason):
    answer = decide(r, **kw)
    assert (answer.action, answer.reason) == ("skip", reason)
    assert answer.detail


def test_withdrawn_and_never_given_consent_read_differently():
    assert decide(recipient(consent=False, consent_withdrawn=True)).detail == "consent withdrawn for email"
    assert decide(recipient(consent=False)).detail == "no consent for email"


def test_under_the_cap_and_without_one_it_goes():
    assert decide(recipient(), sent_in_window=2, cap=3).action == "send"
    assert decide(recipient(), sent_in_window=50, cap=0).action == "send"


def test_recipients_from_the_read_model_and_from_the_facts():
    state = {"contact": {"email": "a@b.c", "phone": "+98912"}, "consents": {"sms": {"granted": False, "at": NOON}},
             "expectations": {"timezone": {"value": "Asia/Tehran"}, "preferred_contact_time": {"value": "evening"}}}
    r = D.Recipient.of_state("con_1", state, "sms")
    assert (r.address, r.consent, r.consent_withdrawn, r.tz, r.preferred_time) == (
        "+98912", False, True, "Asia/Tehran", "evening")
    f = D.Recipient.of_facts("con_1", {"he": True, "hp": False, "cn": ["email"], "tz": None}, "email")
    assert f.address and f.consent and not D.Recipient.of_facts("con_1", {"hp": False}, "sms").address


def test_email_ignores_quiet_hours_sms_waits_for_the_morning_in_the_contacts_zone():
    night = datetime(2026, 3, 10, 22, 30, tzinfo=timezone.utc)
    assert decide(recipient(), now=night).action == "send"
    answer = decide(recipient(address="+98912"), "sms", night)
    assert (answer.action, answer.reason) == ("defer", D.QUIET_HOURS)
    assert answer.not_before == datetime(2026, 3, 11, 8, 0, tzinfo=timezone.utc)
    # 22:30 UTC is 02:00 in Tehran: also quiet there; 08:00 Tehran is 04:30 UTC
    tehran = decide(recipient(address="+98912", tz="Asia/Tehran"), "sms", night)
    assert tehran.not_before == datetime(2026, 3, 11, 4, 30, tzinfo=timezone.utc)
    assert tehran.detail == "until 08:00 Asia/Tehran"
    # noon UTC is 15:30 in Tehran: fine
    assert decide(recipient(address="+98912", tz="Asia/Tehran"), "sms").action == "send"


def test_sms_goes_in_the_customers_preferred_time():
    answer = decide(recipient(address="+98912", preferred_time="evening"), "sms")
    assert (answer.action, answer.reason) == ("defer", D.PREFERRED_TIME)
    assert answer.not_before == datetime(2026, 3, 10, 17, 0, tzinfo=timezone.utc)
    assert decide(recipient(address="+98912", preferred_time="afternoon"), "sms").action == "send"
    # a preferred window inside quiet hours is ignored rather than never sending
    assert D.next_allowed(NOON, "UTC", QuietHours(6, 23), "morning") == datetime(2026, 3, 10, 23, tzinfo=timezone.utc)


@pytest.mark.parametrize("start,end,hour,quiet", [(21, 8, 23, True), (21, 8, 7, True), (21, 8, 8, False),
                                                   (21, 8, 20, False), (13, 15, 14, True), (5, 5, 5, False)])
def test_quiet_hours_wrap_midnight(start, end, hour, quiet):
    assert QuietHours(start, end).holds(hour) is quiet


def test_budget_and_progress():
    assert D.affordable(1000, 0, 300, 10) == 3
    assert D.affordable(1000, 900, 300, 10) == 0
    assert D.affordable(None, 0, 300, 10) == 10 and D.affordable(1000, 0, 0, 10) == 10
    p = D.progress({"recipients": 9, "queued": 1, "sent": 4, "failed": 1, "skipped": {"no_consent": 2, "capped": 1}})
    assert (p["skipped"], p["done"], p["skipped_by_reason"]) == (3, 8, {"no_consent": 2, "capped": 1})


# --------------------------------------------------------------------------- templates

def test_personalization_with_defaults_and_nothing_unsafe():
    values = templates.variables({"contact": {"given_name": "", "display_name": "", "city": "Tehran"},
                                  "loyalty": {"member": True, "tier": "gold", "balance": 120}},
                                 {"first_name": "friend"}, {"campaign": "Spring"})
    assert templates.render("Hi {{ first_name }} from {{ city }}, {{ tier }} {{ points }} {{ nothing }}!", values) \
        == "Hi friend from Tehran, gold 120 !"
    assert templates.render("{{ given_name | default('you', true) }}", values) == "you"
    for attack in ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "{{ cycler.__init__.__globals__ }}",
                   "{% for x in range(10**9) %}{% endfor %}{{ 'a' * 10**7 }}"):
        with pytest.raises(InvalidArgument) as err:
            templates.render(attack, values, field="email.body_text")
        assert err.value.violations[0]["field"] == "email.body_text"
    with pytest.raises(InvalidArgument) as err:
        templates.check("Hello {{ first_name ", "email.subject")
    assert err.value.message.startswith("email.subject: template error on line 1")


def test_every_email_can_be_unsubscribed_from_and_its_links_are_tracked():
    content = {"subject": "Hi {{ first_name }}", "body_text": "See https://shop.example/a, and https://shop.example/b.",
               "body_html": "<html><body><a href='https://shop.example/a?x=1&amp;y=2'>A</a> {{ first_name }}</body>"
                            "</html>"}
    mail = templates.email(content, {"first_name": "<Sara>"}, unsubscribe_url="https://t/u/TOKEN",
                           track=lambda link: f"https://t/c/[{link}]", pixel_url="https://t/o/P")
    assert mail.subject == "Hi <Sara>"
    assert "https://t/c/[https://shop.example/a], and https://t/c/[https://shop.example/b]." in mail.text
    assert "Unsubscribe: https://t/u/TOKEN" in mail.text
    assert "&lt;Sara&gt;" in mail.html                      # HTML is escaped
    assert "https://t/c/[https://shop.example/a?x=1&amp;y=2]" in mail.html
    assert 'href="https://t/u/TOKEN"' in mail.html and 'src="https://t/o/P"' in mail.html
    assert mail.html.index("Unsubscribe") < mail.html.index("</body>")
    assert mail.links == ["https://shop.example/a", "https://shop.example/b", "https://shop.example/a?x=1&y=2"]
    placed = templates.email({"subject": "x", "body_text": "Leave: {{ unsubscribe_url }}"}, {},
                             unsubscribe_url="https://t/u/T2")
    assert placed.text.count("https://t/u/T2") == 1 and placed.html is None


# --------------------------------------------------------------------------- tokens

def test_tracking_tokens_verify_and_forgeries_do_not():
    token = tokens.mint(SECRET, "c", "msg_1", "https://shop.example/a")
    assert tokens.verify(SECRET, token) == tokens.Tracked("click", "msg_1", "https://shop.example/a")
    assert tokens.verify(SECRET, tokens.mint(SECRET, "u", "msg_1")).kind == "unsubscribe"
    header, payload, signature = token.split(".")
    forged = [
        tokens.mint("x" * 40, "c", "msg_1", "https://evil.example"),            # another key
        f"{header}.{tokens.mint(SECRET, 'c', 'msg_2', 'https://evil.example').split('.')[1]}.{signature}",   # swapped payload
        jwt.encode({"iss": tokens.ISSUER, "k": "c", "m": "msg_1", "u": "https://x"}, "y" * 32, algorithm="HS512"),
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        jwt.encode({"iss": tokens.ISSUER, "k": "c", "m": "msg_1"}, SECRET, algorithm="HS256"),   # a click without link
        jwt.encode({"iss": "other", "k": "o", "m": "msg_1"}, SECRET, algorithm="HS256"),
        "", "not-a-token", "x" * 5000,
    ]
    for bad in forged:
        with pytest.raises(InvalidArgument) as err:
            tokens.verify(SECRET, bad)
        assert err.value.violations[0]["field"] == "token"
    none_alg = jwt.encode({"iss": tokens.ISSUER, "k": "o", "m": "msg_1"}, None, algorithm="none")
    with pytest.raises(InvalidArgument):
        tokens.verify(SECRET, none_alg)


# --------------------------------------------------------------------------- contracts

CAMPAIGN = dict(name="Spring", channel="email", email={"subject": "Hi", "body_text": "Hello", "body_html": ""},
                sms=None, defaults={}, include_segment_ids=["seg_1"], exclude_segment_ids=[], schedule_at=None,
                budget=None, cost_per_message=None, idempotency_key="")


@pytest.mark.parametrize("change,path", [
    ({"channel": "fax"}, "channel"),
    ({"email": None}, "email"),
    ({"sms": {"text": "hi"}}, "channel"),
    ({"email": {"subject": "{% if %}", "body_text": "x"}}, "email.subject"),
    ({"email": {"subject": "x", "body_text": " "}}, "email.body_text"),
    ({"sms": {"text": "\n \n"}, "channel": "sms", "email": None}, "sms.text"),
    ({"include_segment_ids": []}, "include_segment_ids"),
    ({"include_segment_ids": ["seg_1"], "exclude_segment_ids": ["seg_1"]}, "exclude_segment_ids"),
    ({"include_segment_ids": [{"$ne": 1}]}, "include_segment_ids[0]"),
    ({"budget": {"amount_minor": 100, "currency": "EUR"}}, "cost_per_message"),
    ({"budget": {"amount_minor": 100, "currency": "EUR"}, "cost_per_message": {"amount_minor": 1, "currency": "USD"}},
     "cost_per_message"),
    ({"budget": {"amount_minor": -1, "currency": "EUR"}}, "budget"),
    ({"defaults": {"Bad Key": "x"}}, "defaults.Bad Key"),
    ({"schedule_at": "tomorrow"}, "schedule_at"),
])
def test_campaign_contract_names_the_field(change, path):
    with pytest.raises(InvalidArgument) as err:
        parse(C.CreateCampaign, {**CAMPAIGN, **change})
    assert err.value.violations[0]["field"] == path, err.value.violations


def test_a_subject_is_one_line_no_header_can_be_smuggled_in():
    email = {"subject": "Hi\r\nBcc: everyone@example.com", "body_text": "x"}
    assert parse(C.CreateCampaign, {**CAMPAIGN, "email": email}).email.subject == "Hi Bcc: everyone@example.com"


def test_segment_contracts():
    ok = parse(SC.CreateSegment, {"name": "Gold", "description": "", "kind": "dynamic", "idempotency_key": "",
                                  "rule": {"field": "tier", "op": "gte", "value": "gold"}})
    assert ok.rule == {"field": "tier", "op": "gte", "value": "gold"}
    for body, path in [({"kind": "dynamic", "rule": None}, "rule"), ({"kind": "static", "rule": ok.rule}, "rule"),
                       ({"kind": "dynamic", "rule": {"all": [{"$where": "1"}]}}, "rule.all[0].$where")]:
        with pytest.raises(InvalidArgument) as err:
            parse(SC.CreateSegment, {"name": "G", "description": "", "idempotency_key": "", **body})
        assert err.value.violations[0]["field"] == path
    with pytest.raises(InvalidArgument) as err:
        parse(SC.PreviewSegment, {"segment_id": "", "rule": None, "sample_size": 0})
    assert err.value.violations[0]["field"] == "rule"


# --------------------------------------------------------------------------- settings, email

def settings(**over):
    """The registry's defaults (what a process gets), with ``over``."""
    base = {**registry.load().service("marketing").settings, "MARKETING_TRACKING_URL": "http://t/",
            "CRM_INTERNAL_SECRET": "i" * 40, "MARKETING_SEND_RETRIES": "3"}
    return Settings.from_config({**base, **over})


def test_settings_parse_and_a_bad_one_names_itself():
    s = settings()
    assert (s.tracking_url, s.cap_window, s.quiet_hours) == ("http://t", timedelta(days=7), QuietHours(21, 8))
    assert len(s.tracking_secret) == 64 and settings(CRM_INTERNAL_SECRET="j" * 40).tracking_secret != s.tracking_secret
    for bad, name in [({"MARKETING_QUIET_HOURS": "late"}, "MARKETING_QUIET_HOURS"),
                      ({"MARKETING_SEND_BATCH": "0"}, "MARKETING_SEND_BATCH"),
                      ({"MARKETING_SEND_CONCURRENCY": "0"}, "MARKETING_SEND_CONCURRENCY"),
                      ({"MARKETING_MONETARY_BANDS": "*=1"}, "MARKETING_MONETARY_BANDS"),
                      ({"CRM_INTERNAL_SECRET": ""}, "MARKETING_TRACKING_SECRET")]:
        with pytest.raises(ValueError, match=name):
            settings(**bad)


def test_the_outgoing_email_and_the_smtp_url():
    msg = smtp.build(sender="CRM <m@crm.local>", to="sara@example.org", subject="Hi", text="t", html="<p>h</p>",
                     message_id="msg_1", campaign_id="cmp_1", unsubscribe_url="https://t/u/X")
    assert msg["List-Unsubscribe"] == "<https://t/u/X>" and msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["X-CRM-Message-Id"] == "msg_1" and "msg_1" in msg["Message-ID"]
    assert msg.get_body(("plain",)).get_content().strip() == "t" and msg.get_body(("html",)) is not None
    server = smtp.SmtpServer("smtps://us%40er:p%3Ass@mail.example:2465")
    assert (server.tls, server.host, server.port, server.user, server.password) == (
        True, "mail.example", 2465, "us@er", "p:ss")
    assert smtp.SmtpServer("smtp://h?starttls=true").starttls and smtp.SmtpServer("smtp://h").port == 25
    with pytest.raises(ValueError):
        smtp.SmtpServer("http://h")
