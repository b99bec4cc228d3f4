"""The segment rule language: what it accepts, what it refuses (with the path), and what
each condition means over a contact's facts."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from crm_common.errors import InvalidArgument
from marketing.audience import facts as F
from marketing.audience import state as S
from marketing.segments import rules
from marketing.segments.evaluate import Context, compile_rule, evaluate_all

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)


def refused(rule) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as err:
        rules.parse(rule)
    return err.value


# --------------------------------------------------------------------------- parsing

@pytest.mark.parametrize("rule,path,says", [
    ({"$where": "sleep(1000)"}, "rule.$where", "'$' are not part of the rule language"),
    ({"all": [{"field": "tier", "op": {"$gt": "gold"}, "value": 1}]}, "rule.all[0].op.$gt", "'$'"),
    ({"all": [{"field": "tags", "op": "contains_any", "value": [{"$ne": 1}]}]}, "rule.all[0].value[0].$ne", "'$'"),
    ({"any": [{"not": {"field": "points", "op": "gt", "value": "x"}}]}, "rule.any[0].not.value", "takes an integer"),
    ({"all": [{"field": "nope", "op": "eq", "value": 1}]}, "rule.all[0]", "unknown field 'nope'"),
    ({"all": [{"foo": 1}]}, "rule.all[0]", "must be {\"all\""),
    ({"all": []}, "rule.all", "is required"),
    ({"all": [1]}, "rule.all[0]", "must be an object"),
    ({"all": [{"field": "tier", "op": "gte", "value": "diamond"}]}, "rule.all[0].value", "'diamond' is not one of"),
    ({"all": [{"field": "tier", "op": "gte"}]}, "rule.all[0].value", "is required"),
    ({"all": [{"field": "tier", "op": "around", "value": "gold"}]}, "rule.all[0].op", "must be one of"),
    ({"all": [{"field": "consent", "op": "is", "value": True}]}, "rule.all[0].channel", "is required"),
    ({"all": [{"field": "orders_in_last_days", "op": "gte", "value": 2}]}, "rule.all[0].days", "is required"),
    ({"field": "total_spent", "op": "gte", "value": {"amount_minor": 1, "currency": "eur"}}, "rule.value.currency",
     "3-letter"),
    ({"field": "points", "op": "between", "value": [10, 5]}, "rule.value", "low <= high"),
    ({"field": "created_at", "op": "after", "value": "yesterday"}, "rule.value", "ISO-8601"),
    ({"field": "custom_field", "key": "Bad Key", "op": "eq", "value": "x"}, "rule.key", "invalid format"),
    ({"field": "birthday", "op": "in_month", "value": 13}, "rule.value", "1-12"),
    ({"field": "tags", "op": "contains_any", "value": "vip"}, "rule.value", "list of strings"),
    ({"field": "last_order", "op": "never", "value": 3}, "rule.value", "takes no value"),
    ({"field": "tier", "op": "in", "value": "gold"}, "rule.value", "list"),
    ({"field": "tier", "op": "eq", "value": "gold", "extra": 1}, "rule.extra", "unknown field"),
])
def test_malformed_rules_name_the_path(rule, path, says):
    err = refused(rule)
    assert err.violations[0]["field"] == path, err.violations
    assert says in err.violations[0]["description"], err.violations


def test_not_an_object_and_too_deep_and_too_big():
    assert refused([]).violations[0]["field"] == "rule"
    deep = {"field": "points", "op": "gt", "value": 1}
    for _ in range(8):
        deep = {"all": [deep]}
    assert "nested too deeply" in refused(deep).message
    wide = {"any": [{"field": "points", "op": "gt", "value": i} for i in range(50)]}
    assert "at most 100 nodes" in refused({"all": [wide, wide, wide]}).message


def test_struct_numbers_arrive_as_doubles_and_are_taken_as_integers():
    rule = rules.parse({"all": [{"field": "orders_in_last_days", "days": 30.0, "op": "gte", "value": 1.0},
                                {"field": "total_spent", "op": "gte",
                                 "value": {"amount_minor": 50000.0, "currency": "EUR"}}]})
    dumped = rules.dump(rule)
    assert dumped["all"][0] == {"field": "orders_in_last_days", "op": "gte", "value": 1, "days": 30}
    assert dumped["all"][1]["value"] == {"amount_minor": 50000, "currency": "EUR"}
    assert rules.parse(dumped) == rule      # what is stored parses back the same
    assert "takes an integer" in refused({"field": "points", "op": "gt", "value": 1.5}).message


def test_time_relative_rules_are_known():
    assert not rules.is_time_relative(rules.parse({"field": "tier", "op": "gte", "value": "gold"}))
    for rule in ({"field": "last_order", "op": "more_than_days_ago", "value": 90},
                 {"field": "birthday", "op": "this_month"},
                 {"field": "orders_in_last_days", "days": 30, "op": "gte", "value": 1},
                 {"not": {"field": "rfm_recency", "op": "gte", "value": 4}}):
        assert rules.is_time_relative(rules.parse(rule)), rule


# --------------------------------------------------------------------------- evaluation

def contact(**over):
    base = {"id": "con_1", "version": 1, "given_name": "Sara", "display_name": "Sara Ahmadi",
            "emails": [{"address": "sara@Example.org", "primary": True}], "phones": [{"number": "+989121234567"}],
            "tags": ["vip", "newsletter"], "lifecycle_stage": "customer", "locale": "fa-IR", "gender": "female",
            "owner": "agent-neda", "birthday": "1990-03-21", "address": {"country": "IR", "city": "Tehran"},
            "custom_fields": {"industry": "retail", "employees": 40, "preferred_channel": "SMS",
                              "values": "Price, quality", "preferred_contact_time": "evening"},
            "consents": {"email": {"granted": True, "at": "2026-01-01T00:00:00Z"},
                         "sms": {"granted": False, "at": "2026-02-01T00:00:00Z"}},
            "created_at": "2026-03-05T00:00:00Z", "updated_at": "2026-03-05T00:00:00Z"}
    base.update(over)
    return base


@pytest.fixture
def sara():
    doc = S.apply_contact({}, contact())
    doc = S.apply_tier(doc, "gold", NOW - DAY)
    doc = S.apply_balance(doc, 1200, NOW - DAY)
    doc = S.apply_order_paid(doc, "ord_1", NOW - 3 * DAY, {"amount_minor": 12000, "currency": "EUR"})
    doc = S.apply_order_paid(doc, "ord_2", NOW - 40 * DAY, {"amount_minor": 800000, "currency": "IRR"})
    doc = S.apply_summary(doc, {"order_count": 7, "total_spent": [{"amount_minor": 150000, "currency": "EUR"},
                                                                   {"amount_minor": 800000, "currency": "IRR"}],
                                "first_purchase_at": "2025-01-01T00:00:00Z",
                                "last_purchase_at": clock_iso(NOW - 3 * DAY)}, NOW - 3 * DAY)
    doc = S.apply_engagement(doc, kind="opened", message_id="msg_1", campaign_id="cmp_a", channel="email",
                             at=NOW - 2 * DAY)
    return F.project(doc)


def clock_iso(at):
    return at.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def holds(rule, f, now=NOW) -> bool:
    return compile_rule(rules.parse(rule)).matches(f, Context(now))


@pytest.mark.parametrize("rule,expected", [
    ({"field": "lifecycle_stage", "op": "eq", "value": "customer"}, True),
    ({"field": "lifecycle_stage", "op": "ne", "value": "customer"}, False),
    ({"field": "country", "op": "in", "value": ["ir", "DE"]}, True),        # case as the facts keep it
    ({"field": "city", "op": "eq", "value": "TEHRAN"}, True),
    ({"field": "language", "op": "eq", "value": "FA"}, True),
    ({"field": "email_domain", "op": "eq", "value": "example.org"}, True),
    ({"field": "gender", "op": "exists", "value": False}, False),
    ({"field": "owner", "op": "not_in", "value": ["agent-jonas"]}, True),
    ({"field": "tags", "op": "contains_all", "value": ["vip", "newsletter"]}, True),
    ({"field": "tags", "op": "contains_none", "value": ["vip"]}, False),
    ({"field": "tags", "op": "is_empty", "value": False}, True),
    ({"field": "has_email", "op": "is", "value": True}, True),
    ({"field": "has_phone", "op": "is", "value": False}, False),
    ({"field": "consent", "channel": "email", "op": "is", "value": True}, True),
    ({"field": "consent", "channel": "sms", "op": "is", "value": True}, False),
    ({"field": "custom_field", "key": "industry", "op": "eq", "value": "retail"}, True),
    ({"field": "custom_field", "key": "employees", "op": "gte", "value": 50}, False),
    ({"field": "custom_field", "key": "employees", "op": "eq", "value": "40"}, False),   # types are not coerced
    ({"field": "custom_field", "key": "missing", "op": "exists", "value": False}, True),
    ({"field": "created_at", "op": "within_last_days", "value": 7}, True),
    ({"field": "created_at", "op": "before", "value": "2026-03-01T00:00:00Z"}, False),
    ({"field": "birthday", "op": "this_month"}, True),
    ({"field": "birthday", "op": "within_next_days", "value": 11}, True),
    ({"field": "birthday", "op": "within_next_days", "value": 10}, False),
    ({"field": "birthday", "op": "today"}, False),
    ({"field": "preferred_channel", "op": "eq", "value": "sms"}, True),
    ({"field": "preferred_contact_time", "op": "eq", "value": "evening"}, True),
    ({"field": "values", "op": "contains_any", "value": ["price"]}, True),
    ({"field": "values", "op": "contains_any", "value": ["speed"]}, False),
    ({"field": "tier", "op": "gte", "value": "gold"}, True),
    ({"field": "tier", "op": "gt", "value": "gold"}, False),
    ({"field": "tier", "op": "in", "value": ["silver", "gold"]}, True),
    ({"field": "loyalty_member", "op": "is", "value": True}, True),
    ({"field": "points", "op": "between", "value": [1000, 1200]}, True),
    ({"field": "order_count", "op": "gte", "value": 7}, True),
    ({"field": "total_spent", "op": "gte", "value": {"amount_minor": 150000, "currency": "EUR"}}, True),
    ({"field": "total_spent", "op": "gt", "value": {"amount_minor": 150000, "currency": "EUR"}}, False),
    ({"field": "total_spent", "op": "gte", "value": {"amount_minor": 1, "currency": "USD"}}, False),   # none in USD
    ({"field": "last_order", "op": "within_last_days", "value": 3}, True),
    ({"field": "last_order", "op": "more_than_days_ago", "value": 90}, False),
    ({"field": "first_order", "op": "before", "value": "2025-06-01T00:00:00Z"}, True),
    ({"field": "orders_in_last_days", "days": 30, "op": "eq", "value": 1}, True),
    ({"field": "orders_in_last_days", "days": 60, "op": "eq", "value": 2}, True),
    ({"field": "spent_in_last_days", "days": 30, "op": "gte", "value": {"amount_minor": 12000, "currency": "EUR"}},
     True),
    ({"field": "spent_in_last_days", "days": 30, "op": "gt", "value": {"amount_minor": 0, "currency": "IRR"}},
     False),
    ({"field": "rfm_recency", "op": "eq", "value": 5}, True),
    ({"field": "rfm_frequency", "op": "eq", "value": 3}, True),
    ({"field": "rfm_monetary", "op": "eq", "value": 5}, True),     # IRR 800,000 >= the default t4 (500,000)
    ({"field": "value_band", "op": "eq", "value": "top"}, True),
    ({"field": "open_tickets", "op": "eq", "value": 0}, True),
    ({"field": "last_csat", "op": "eq", "value": 0}, True),
    ({"field": "opened", "op": "is", "value": True}, True),
    ({"field": "opened", "campaign_id": "cmp_b", "op": "is", "value": True}, False),
    ({"field": "clicked", "op": "is", "value": False}, True),
    ({"field": "engagement_score", "op": "eq", "value": 0}, True),
    ({"field": "last_opened", "op": "within_last_days", "value": 2}, True),
    ({"field": "last_clicked", "op": "never"}, True),
])
def test_every_kind_of_condition(sara, rule, expected):
    assert holds(rule, sara) is expected


def test_groups_and_why_a_contact_matched(sara):
    rule = rules.parse({"all": [{"field": "tier", "op": "gte", "value": "gold"},
                                {"any": [{"field": "country", "op": "eq", "value": "DE"},
                                         {"field": "birthday", "op": "this_month"}]},
                                {"not": {"field": "consent", "channel": "sms", "op": "is", "value": True}}]})
    compiled = compile_rule(rule)
    assert compiled.explain(sara, Context(NOW)) == [
        "tier gte gold (is gold)", "birthday this_month (is 03-21)", "not (consent[sms] is True)"]
    assert compiled.explain({**sara, "ti": 2}, Context(NOW)) is None


def test_relative_dates_follow_now(sara):
    lapsed = {"field": "last_order", "op": "more_than_days_ago", "value": 90}
    assert not holds(lapsed, sara)
    assert holds(lapsed, sara, NOW + 100 * DAY)
    assert not holds({"field": "birthday", "op": "this_month"}, sara, NOW + 30 * DAY)


def test_birthdays_across_the_year_end_and_on_29_february():
    f = {"bd": "01-02"}
    assert holds({"field": "birthday", "op": "within_next_days", "value": 5}, f, datetime(2026, 12, 30, tzinfo=timezone.utc))
    leap = {"bd": "02-29"}
    assert holds({"field": "birthday", "op": "within_next_days", "value": 0}, leap,
                 datetime(2027, 2, 28, 12, tzinfo=timezone.utc))
    assert holds({"field": "birthday", "op": "today"}, leap, datetime(2028, 2, 29, 12, tzinfo=timezone.utc))


def test_the_contacts_own_time_zone_decides_its_date():
    late = datetime(2026, 3, 31, 22, 0, tzinfo=timezone.utc)          # 1 April 01:30 in Tehran
    rule = {"field": "birthday", "op": "in_month", "value": 3}
    assert compile_rule(rules.parse({"field": "birthday", "op": "today"})).matches({"bd": "04-01", "tz": "Asia/Tehran"},
                                                                                  Context(late))
    assert holds({"field": "birthday", "op": "this_month"}, {"bd": "03-05"}, late)                 # UTC: still March
    assert not holds({"field": "birthday", "op": "this_month"}, {"bd": "03-05", "tz": "Asia/Tehran"}, late)
    assert holds(rule, {"bd": "03-05", "tz": "Asia/Tehran"}, late)


def test_a_contact_with_nothing_known_is_handled_by_every_condition():
    empty = F.project({})
    for name, spec in rules.FIELDS.items():
        for op in rules.OPS[spec.kind]:
            rule = _example(name, spec, op)
            compile_rule(rules.parse(rule)).matches(empty, Context(NOW))   # no exception


def _example(name, spec, op):
    values = {"text": "x", "texts": ["x"], "number": 1, "window_number": 1, "bool": True, "consent": True,
              "engaged": True, "rank": spec.choices[-1] if spec.choices else "x",
              "money": {"amount_minor": 1, "currency": "EUR"}, "window_money": {"amount_minor": 1, "currency": "EUR"},
              "time": 5, "birthday": 3, "custom": "x"}
    value = values[spec.kind]
    if spec.choices and spec.kind in ("text", "texts"):
        value = [spec.choices[0]] if spec.kind == "texts" else spec.choices[0]
    if op in ("in", "not_in", "contains_any", "contains_all", "contains_none"):
        value = value if isinstance(value, list) else [value]
    if op in ("exists", "is_empty"):
        value = True
    if op == "between":
        value = [0, 5]
    if op in ("before", "after"):
        value = "2026-01-01T00:00:00Z"
    if op in ("never", "this_month", "today"):
        value = None
    if op in ("gt", "gte", "lt", "lte") and spec.kind == "custom":
        value = 3
    rule = {"field": name, "op": op, "value": value}
    if spec.param == "days":
        rule["days"] = 30
    elif spec.param == "channel":
        rule["channel"] = "email"
    elif spec.param == "key":
        rule["key"] = "k"
    return {k: v for k, v in rule.items() if v is not None}


def test_erased_contacts_never_match_a_full_evaluation(sara):
    compiled = compile_rule(rules.parse({"field": "tier", "op": "gte", "value": "gold"}))
    found = evaluate_all(compiled, {"con_1": sara, "con_2": {**sara, "x": True}}, Context(NOW))
    assert found == ["con_1"]
