"""Rules of the contacts service (no I/O): what its contracts accept and normalize
(contacts.contracts, crm_common.contact_points) and what the domain makes of it."""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

import pytest

from contacts import contracts as C
from contacts import domain as d
from contacts import search
from crm_common import contact_points, contracts
from crm_common.contact_points import normalize_email, normalize_phone
from crm_common.errors import InvalidArgument

NOW = datetime(2026, 11, 25, 20, 0, tzinfo=timezone.utc)
TODAY = date.today()


def contact_in(fields, default_country_code=None):
    return contracts.parse(C.ContactIn, fields, prefix="contact",
                           context={"default_country_code": default_country_code})


def new(**fields):
    return d.new_contact(contact_in(fields), NOW)


def changes(current, **fields):
    return d.changed_fields(current, contact_in(fields), list(fields))


def violation_fields(exc_info):
    return [v["field"].removeprefix("contact.") for v in exc_info.value.violations]


# --------------------------------------------------------------------------- phones

@pytest.mark.parametrize("raw, expected", [
    ("+98 912 123 4567", "+989121234567"),
    ("۰۰۹۸ ۹۱۲ ۱۲۳ ۴۵۶۷", "+989121234567"),            # Persian digits, 00 prefix
    ("+٩٧١ ٥٠ ١٢٣ ٤٥٦٧", "+971501234567"),             # Arabic-Indic digits
    ("+1 (415) 555-0100", "+14155550100"),
    ("0044.20.7946.0958", "+442079460958"),
    ("\u200e+98 912-123-4567\u200f", "+989121234567"),  # bidi marks from RTL editors
    ("+49\u00a030\u00a012345678", "+493012345678"),
])
def test_phone_normalization(raw, expected):
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize("raw, reason", [
    ("0912 123 4567", "country code"),
    ("912 123 4567", "country code"),
    ("+98 912 abc", "only digits"),
    ("+0912345678", "cannot start with 0"),
    ("+98 12", "8 to 15 digits"),
    ("+1234567890123456", "8 to 15 digits"),
    ("", "required"),
    (None, "string"),
])
def test_phone_rejections(raw, reason):
    with pytest.raises(ValueError, match=reason):
        normalize_phone(raw)


def test_default_country_code_applies_to_national_numbers_only():
    assert normalize_phone("۰۹۱۲ ۱۲۳ ۴۵۶۷", "98") == "+989121234567"
    assert normalize_phone("+44 20 7946 0958", "98") == "+442079460958"
    assert normalize_phone("0044 20 7946 0958", "98") == "+442079460958"
    with pytest.raises(ValueError):
        normalize_phone("912 123 4567", "98")  # no trunk 0: ambiguous


# --------------------------------------------------------------------------- emails

@pytest.mark.parametrize("raw, expected", [
    (" Sara.Ahmadi@Example.COM ", "sara.ahmadi@example.com"),
    ("a+tag@sub.example.co.uk", "a+tag@sub.example.co.uk"),
    ("user@xn--mgbh0fb.xn--kgbechtv", "user@xn--mgbh0fb.xn--kgbechtv"),
    ("سارا@مثال.ایران", "سارا@مثال.ایران"),
])
def test_email_normalization(raw, expected):
    assert normalize_email(raw) == expected


@pytest.mark.parametrize("raw", ["sara", "sara@", "@example.com", "sara@example", "sa ra@example.com",
                                 "a@@b.com", "a..b@example.com", ".a@example.com", "a@-x.com", "a@x.c0m",
                                 "a@example.com.", "x" * 65 + "@example.com"])
def test_email_rejections(raw):
    with pytest.raises(ValueError):
        normalize_email(raw)


def test_malformed_email_names_the_field():
    with pytest.raises(InvalidArgument) as exc:
        new(given_name="Sara", emails=[{"address": "ok@example.com"}, {"address": "not-an-email"}])
    assert violation_fields(exc) == ["emails[1].address"]
    assert "contact.emails[1].address" in exc.value.message


def test_email_primary_rules():
    c = new(emails=["b@example.com", {"address": "A@example.com", "label": "work"}])
    assert [e["primary"] for e in c["emails"]] == [True, False]
    assert c["emails"][1] == {"address": "a@example.com", "label": "work", "primary": False}
    c = new(emails=["b@example.com", {"address": "a@example.com", "primary": True}])
    assert [e["primary"] for e in c["emails"]] == [False, True]
    with pytest.raises(InvalidArgument) as exc:
        new(emails=[{"address": "a@example.com", "primary": True}, {"address": "b@example.com", "primary": True}])
    assert violation_fields(exc) == ["emails"]


def test_duplicate_address_within_contact_is_refused():
    with pytest.raises(InvalidArgument) as exc:
        new(emails=["a@example.com", "A@EXAMPLE.com"], phones=["+989121234567", "۰۰۹۸۹۱۲۱۲۳۴۵۶۷"])
    assert violation_fields(exc) == ["emails[1].address", "phones[1].number"]


# --------------------------------------------------------------------------- names

def test_names_are_nfc_trimmed_and_display_name_derived():
    decomposed = "Jose\u0301"  # José with a combining accent
    c = new(given_name=f"  {decomposed} ", family_name=" van   der Berg ")
    assert c["given_name"] == "Jos\u00e9"
    assert c["family_name"] == "van der Berg"
    assert c["display_name"] == "Jos\u00e9 van der Berg"


@pytest.mark.parametrize("given, family, display", [
    ("سارا", "احمدی", "سارا احمدی"),
    ("محمد", "العلي", "محمد العلي"),
    ("小明", "王", "王小明"),
    ("花子", "山田", "山田花子"),
    ("민준", "김", "김 민준"),
    ("Sara", None, "Sara"),
])
def test_display_name_by_script(given, family, display):
    assert new(given_name=given, family_name=family)["display_name"] == display


def test_explicit_display_name_wins_and_fallbacks():
    assert new(given_name="Sara", display_name="Dr. S. Ahmadi")["display_name"] == "Dr. S. Ahmadi"
    assert new(emails=["x@example.com"])["display_name"] == "x@example.com"
    assert new(phones=["+989121234567"])["display_name"] == "+989121234567"
    with pytest.raises(InvalidArgument, match="name, an email or a phone"):
        new(tags=["vip"])


def test_name_rejections():
    with pytest.raises(InvalidArgument) as exc:
        new(given_name="a" * 201, family_name="x\x07y", display_name=5)
    assert violation_fields(exc) == ["given_name", "family_name", "display_name"]


# --------------------------------------------------------------------------- other fields

def test_defaults():
    c = new(given_name="Sara")
    assert c["lifecycle_stage"] == "lead"
    assert c["tags"] == [] and c["custom_fields"] == {} and c["company_id"] is None
    assert c["consents"] == {ch: {"granted": False, "source": None, "at": None} for ch in C.CONSENT_CHANNELS}


def test_birthday_rules():
    assert new(given_name="S", birthday="1990-04-01")["birthday"] == "1990-04-01"
    assert new(given_name="S", birthday=TODAY.isoformat())["birthday"] == TODAY.isoformat()  # today is fine
    tomorrow = (TODAY + timedelta(days=1)).isoformat()
    for bad, reason in [(tomorrow, "future"), ("1990-02-30", "calendar"), ("01/04/1990", "YYYY-MM-DD"),
                        ("1850-01-01", "1900"), (19900401, "string")]:
        with pytest.raises(InvalidArgument, match=reason):
            new(given_name="S", birthday=bad)


def test_gender_set_or_free_text():
    assert new(given_name="S", gender="Female")["gender"] == "female"
    assert new(given_name="S", gender="Non-Binary")["gender"] == "non_binary"
    assert new(given_name="S", gender="Two-Spirit")["gender"] == "Two-Spirit"
    with pytest.raises(InvalidArgument, match="gender"):
        new(given_name="S", gender="x" * 41)


@pytest.mark.parametrize("raw, expected", [("fa-IR", "fa-IR"), ("fa_ir", "fa-IR"), ("EN", "en"),
                                           ("zh-hant-tw", "zh-Hant-TW"), ("es-419", "es-419")])
def test_locale(raw, expected):
    assert new(given_name="S", locale=raw)["locale"] == expected


@pytest.mark.parametrize("raw", ["english", "e", "fa--IR", "fa IR", "fa-I", 7])
def test_locale_rejections(raw):
    with pytest.raises(InvalidArgument) as exc:
        new(given_name="S", locale=raw)
    assert violation_fields(exc) == ["locale"]


def test_address():
    c = new(given_name="S", address={"line1": " خیابان ولیعصر  ۱۲ ", "city": "تهران", "country": "ir"})
    assert c["address"] == {"line1": "خیابان ولیعصر ۱۲", "line2": "", "city": "تهران", "region": "",
                            "postal_code": "", "country": "IR"}
    with pytest.raises(InvalidArgument) as exc:
        new(given_name="S", address={"street": "x"})
    assert violation_fields(exc) == ["address.street"]
    with pytest.raises(InvalidArgument) as exc:
        new(given_name="S", address={"country": "Iran"})
    assert violation_fields(exc) == ["address.country"]


def test_tags_are_slugs():
    c = new(given_name="S", tags=["VIP", "Tea Lover", "vip", "مشتری-ویژه"])
    assert c["tags"] == ["vip", "tea-lover", "مشتری-ویژه"]
    with pytest.raises(InvalidArgument) as exc:
        new(given_name="S", tags=["ok", "-bad", "x" * 51, 3])
    assert violation_fields(exc) == ["tags[1]", "tags[2]", "tags[3]"]
    with pytest.raises(InvalidArgument, match="at most 50 items"):
        new(given_name="S", tags=[f"t{i}" for i in range(51)])


def test_lifecycle_stage():
    assert new(given_name="S", lifecycle_stage="customer")["lifecycle_stage"] == "customer"
    with pytest.raises(InvalidArgument, match="lifecycle_stage"):
        new(given_name="S", lifecycle_stage="vip")


def test_custom_fields_typed_values():
    c = new(given_name="S", custom_fields={"shoe_size": 42, "ratio": 0.5, "newsletter": True, "topic": " tea "})
    assert c["custom_fields"] == {"shoe_size": 42, "ratio": 0.5, "newsletter": True, "topic": "tea"}
    assert isinstance(c["custom_fields"]["newsletter"], bool)
    with pytest.raises(InvalidArgument) as exc:
        new(given_name="S", custom_fields={"Bad": 1, "1x": 1, "ok": [1], "big": 2 ** 63, "nan": float("nan"),
                                           "long": "x" * 1001, "a" * 41: 1})
    assert sorted(violation_fields(exc)) == sorted(
        ["custom_fields.Bad", "custom_fields.1x", "custom_fields.ok", "custom_fields.big", "custom_fields.nan",
         "custom_fields.long", "custom_fields." + "a" * 41])


def test_consents_on_create():
    c = new(given_name="S", consents={"email": {"granted": True, "source": "web-form"}, "sms": {"granted": False}})
    assert c["consents"]["email"] == {"granted": True, "source": "web-form", "at": NOW}
    assert c["consents"]["sms"] == {"granted": False, "source": None, "at": NOW}
    assert c["consents"]["phone"]["at"] is None
    with pytest.raises(InvalidArgument) as exc:
        new(given_name="S", consents={"fax": {"granted": True, "source": "x"}, "email": {"granted": "yes"}})
    assert violation_fields(exc) == ["consents.fax", "consents.email.granted"]
    with pytest.raises(InvalidArgument) as exc:  # a rule across fields: checked once the shapes are right
        new(given_name="S", consents={"sms": {"granted": True}})
    assert violation_fields(exc) == ["consents.sms.source"]


def test_unknown_fields_refused_read_only_ignored_on_create():
    with pytest.raises(InvalidArgument) as exc:
        new(given_name="S", nickname="x")
    assert violation_fields(exc) == ["nickname"]
    assert new(given_name="S", id="con_x", version=3, erased=False)["given_name"] == "S"


def test_every_violation_is_reported_at_once():
    with pytest.raises(InvalidArgument) as exc:
        new(emails=["bad"], phones=["0912"], birthday="x", lifecycle_stage="x")
    assert violation_fields(exc) == ["emails[0].address", "phones[0].number", "birthday", "lifecycle_stage"]
    assert "(and 3 more)" in exc.value.message


# --------------------------------------------------------------------------- update

def stored(**fields):
    c = new(**fields)
    return {**c, "_id": "con_X", "version": 1}


def test_changes_return_only_what_differs():
    cur = stored(given_name="Sara", family_name="Ahmadi", emails=["s@example.com"], tags=["vip"])
    assert changes(cur, tags=["VIP"], emails=["S@example.com"]) == {}
    assert changes(cur, tags=["vip", "tea"]) == {"tags": ["vip", "tea"]}


def test_derived_display_name_follows_name_changes_but_explicit_one_stays():
    cur = stored(given_name="Sara", family_name="Ahmadi")
    assert changes(cur, family_name="Karimi") == {"family_name": "Karimi", "display_name": "Sara Karimi"}
    cur = stored(given_name="Sara", family_name="Ahmadi", display_name="Dr. Ahmadi")
    assert changes(cur, family_name="Karimi") == {"family_name": "Karimi"}
    assert changes(cur, display_name=None) == {"display_name": "Sara Ahmadi"}
    assert changes(cur, display_name="") == {"display_name": "Sara Ahmadi"}


def test_the_update_mask_names_only_updatable_fields():
    base = {"contact_id": "con_1", "expected_version": 1, "contact": {}}
    with pytest.raises(InvalidArgument) as exc:
        contracts.parse(C.UpdateContact, {**base, "update_mask": ["given_name", "consents", "version", "colour"]})
    assert [v["field"] for v in exc.value.violations] == ["update_mask[1]", "update_mask[2]", "update_mask[3]"]
    with pytest.raises(InvalidArgument) as exc:
        contracts.parse(C.UpdateContact, {**base, "update_mask": [], "expected_version": 0})
    assert [v["field"] for v in exc.value.violations] == ["expected_version", "update_mask"]
    req = contracts.parse(C.UpdateContact, {**base, "contact": None, "update_mask": ["tags"]})
    assert req.contact == {}


def test_changes_use_create_rules():
    cur = stored(given_name="Sara")
    with pytest.raises(InvalidArgument) as exc:
        changes(cur, emails=[{"address": "nope"}])
    assert violation_fields(exc) == ["emails[0].address"]
    with pytest.raises(InvalidArgument, match="name, an email or a phone"):
        changes(cur, given_name=None)


# --------------------------------------------------------------------------- dedup keys

def test_dedup_keys():
    c = new(emails=["Sara@Example.com"], phones=["۰۰۹۸۹۱۲۱۲۳۴۵۶۷"])
    assert d.dedup_keys(c) == ["email:sara@example.com", "phone:+989121234567"]
    assert d.describe_key("phone:+989121234567") == "phone +989121234567"


# --------------------------------------------------------------------------- search

def test_a_contact_is_found_by_the_beginning_of_any_of_its_terms():
    c = new(given_name="علي", family_name="Karimi-Rad", emails=["Ali.K@Example.com"], phones=["+98 912 123 4567"])
    terms = search.terms(c)
    assert {"علی", "karimi-rad", "rad", "ali.k@example.com", "example.com",
            "989121234567", "9121234567", "4567"} <= set(terms)
    assert not {"karimi", "ali", "ali.k", "example"} & set(terms)   # each begins a longer term: redundant
    for query, hit in [("علي", True), ("علی", True), ("KARIMI", True), ("kar", True), ("rad", True),
                       ("karimi rad", True), ("ali karimi", True), ("ali.k@ex", True), ("example", True),
                       ("۹۱۲۱۲۳", True), ("0912 123 4567", True), ("+98 912", True), ("00989121234567", True),
                       ("4567", True), ("rimi", False), ("a.i", False), ("zzz", False), ("ali zzz", False)]:
        assert search.matches(search.query_words(query), terms) is hit, query


def test_query_words_are_folded_longest_first_and_become_escaped_anchored_patterns():
    assert search.query_words("  Sara   AHMADI ") == ["ahmadi", "sara"]
    assert search.query_words("") == [] and search.query_words("   ") == []
    assert search.prefix_pattern(".*") == "^" + re.escape(".*")
    assert re.match(search.prefix_pattern("a+b"), "a+bc") and not re.match(search.prefix_pattern("a+b"), "aab")
    with pytest.raises(InvalidArgument):
        contracts.parse(C.SearchContacts, {"text": {"$ne": 1}})
    with pytest.raises(InvalidArgument):
        contracts.parse(C.SearchContacts, {"text": "x" * 201})


# --------------------------------------------------------------------------- consent

def test_consent_change_validation():
    req = contracts.parse(C.SetConsent, {"contact_id": "con_1", "channel": "sms", "granted": True, "source": " pos "})
    assert (req.channel, req.granted, req.source) == ("sms", True, "pos")
    with pytest.raises(InvalidArgument) as exc:
        contracts.parse(C.SetConsent, {"contact_id": "con_1", "channel": "fax", "granted": "yes", "source": ""})
    assert [v["field"] for v in exc.value.violations] == ["channel", "granted", "source"]


def test_consent_history_is_bounded():
    history = []
    for i in range(d.CONSENT_HISTORY_MAX + 5):
        history = d.consent_history_after(history, {"n": i})
    assert len(history) == d.CONSENT_HISTORY_MAX
    assert history[0] == {"n": 5} and history[-1] == {"n": d.CONSENT_HISTORY_MAX + 4}


# --------------------------------------------------------------------------- timeline

def interaction(**fields):
    req = contracts.parse(C.LogInteraction, {"contact_id": "con_1", **fields})
    return d.interaction_entry(req, NOW)


def test_interaction_validation():
    e = interaction(channel="phone", direction="inbound", summary=" Called about order ")
    assert e["summary"] == "Called about order" and e["occurred_at"] == NOW and e["source"] == "manual"
    e = interaction(channel="email", direction="outbound", summary="x", occurred_at="2026-11-20T10:00:00+03:30")
    assert e["occurred_at"] == datetime(2026, 11, 20, 6, 30, tzinfo=timezone.utc)
    with pytest.raises(InvalidArgument) as exc:
        interaction(channel="fax", direction="sideways", summary="x" * 2001, occurred_at="not a time")
    assert [v["field"] for v in exc.value.violations] == ["channel", "direction", "summary", "occurred_at"]
    with pytest.raises(InvalidArgument, match="future"):
        interaction(channel="email", direction="inbound", summary="x", occurred_at=(NOW + timedelta(days=1)).isoformat())


# --------------------------------------------------------------------------- erase

def test_anonymized_fields_clear_personal_data_and_keep_business_fields():
    a = d.anonymized_fields(NOW)
    for personal in ("given_name", "family_name", "birthday", "gender", "locale", "address"):
        assert a[personal] is None
    assert a["emails"] == [] and a["phones"] == [] and a["custom_fields"] == {}
    assert a["display_name"] == d.ERASED_DISPLAY_NAME and a["erased"] is True
    assert a["search_terms"] == [] and a["dedup_keys"] == []
    assert all(c["granted"] is False for c in a["consents"].values())
    for kept in ("tags", "lifecycle_stage", "owner", "company_id"):
        assert kept not in a


def test_normalize_domain():
    assert contact_points.normalize_domain("https://www.Example.com/about") == "example.com"
    with pytest.raises(ValueError):
        contact_points.normalize_domain("localhost")


def test_phones_without_country_code_use_the_configured_default():
    assert d.new_contact(contact_in({"phones": ["0912 123 4567"]}, "98"), NOW)["phones"][0]["number"] == "+989121234567"
    with pytest.raises(InvalidArgument) as exc:
        new(phones=["0912 123 4567"])
    assert violation_fields(exc) == ["phones[0].number"]
