"""The audience read model as pure rules: every fact applies once whatever the order and
however often it arrives; what segments see of it; who is in which segment; the value of
a customer; the engagement score and the lead handoff."""
from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest

from crm_common import updates
from marketing.audience import facts as F
from marketing.audience import state as S
from marketing.audience import value as V
from marketing.engagement import scoring
from marketing.engagement.handoff import engaged
from marketing.events import LeadQualified
from marketing.segments import membership as M
from marketing.segments import rules
from marketing.segments.evaluate import Context, compile_rule

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
H = timedelta(hours=1)
DAY = timedelta(days=1)


def iso(at):
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def contact(version, **over):
    base = {"id": "con_1", "version": version, "given_name": "Sara", "family_name": "Ahmadi",
            "display_name": "Sara Ahmadi", "emails": [{"address": "sara@example.org", "primary": True}],
            "phones": [], "tags": [], "custom_fields": {}, "consents": {}, "created_at": iso(T0),
            "updated_at": iso(T0 + version * H)}
    base.update(over)
    return base


def apply_all(changes, start=None):
    state = start or {}
    for change in changes:
        state = change(state)
    return state


def in_every_order(changes):
    """The state each order of ``changes`` (each applied twice) ends in: all the same."""
    results = []
    for order in itertools.permutations(changes):
        results.append(apply_all([c for c in order for _ in (0, 1)]))
    return results


# --------------------------------------------------------------------------- contacts

def test_the_newest_contact_version_wins_whatever_the_order():
    changes = [lambda s: S.apply_contact(s, contact(1, tags=["a"])),
               lambda s: S.apply_contact(s, contact(2, tags=["b"])),
               lambda s: S.apply_contact(s, contact(3, tags=["c"], given_name="Sarah"))]
    for result in in_every_order(changes):
        assert result["contact"]["tags"] == ["c"] and result["contact"]["given_name"] == "Sarah"
        assert result["contact"]["version"] == 3


def test_consents_newest_decision_wins_from_events_and_snapshots():
    withdrawn = lambda s: S.apply_consent(s, "email", False, T0 + 2 * H)  # noqa: E731
    granted_before = lambda s: S.apply_contact(s, contact(  # noqa: E731
        1, consents={"email": {"granted": True, "at": iso(T0 + H)}}))
    regranted = lambda s: S.apply_consent(s, "email", True, T0 + 3 * H)  # noqa: E731
    for result in in_every_order([withdrawn, granted_before]):
        assert result["consents"]["email"] == {"granted": False, "at": T0 + 2 * H}
    for result in in_every_order([withdrawn, granted_before, regranted]):
        assert result["consents"]["email"]["granted"] is True
    assert S.apply_consent({}, "loyalty", True, T0) == {}      # not a channel marketing sends on


def test_expectations_from_custom_fields_and_surveys_newest_statement_wins():
    state = S.apply_contact({}, contact(1, custom_fields={"preferred_channel": "Email", "values": "price;SPEED, junk",
                                                          "timezone": "Asia/Tehran",
                                                          "preferred_contact_time": "at noon"}))
    assert S.expectation(state, "preferred_channel") == "email"
    assert S.expectation(state, "values") == ["price", "speed"]
    assert S.expectation(state, "timezone") == "Asia/Tehran"
    assert S.expectation(state, "preferred_contact_time") is None     # not a choice: ignored
    state = S.apply_survey(state, "spring", {"preferred_channel": "sms", "values": ["quality"]}, T0 + 5 * H)
    assert state["expectations"]["preferred_channel"] == {"value": "sms", "source": "survey:spring", "at": T0 + 5 * H}
    # an unrelated edit of the contact (tags) later does not undo what the customer said
    state = S.apply_contact(state, contact(6, tags=["x"], custom_fields={"preferred_channel": "Email",
                                                                          "values": "price;SPEED, junk"}))
    assert S.expectation(state, "preferred_channel") == "sms"
    # a change of the field itself, made after the survey, does
    state = S.apply_contact(state, contact(7, custom_fields={"preferred_channel": "phone"}))
    assert S.expectation(state, "preferred_channel") == "phone"
    assert S.expectation(state, "values") is None        # cleared in contacts after the survey: gone
    assert S.apply_contact(state, contact(1)) is state   # an old version changes nothing


def test_erasure_keeps_no_personal_data_and_ignores_later_snapshots():
    state = S.apply_contact({}, contact(1, birthday="1990-01-01", phones=[{"number": "+98912"}],
                                        custom_fields={"preferred_channel": "sms"}))
    state = S.apply_engagement(state, kind="clicked", message_id="msg_1", campaign_id="cmp_1", channel="email",
                               at=T0, link="https://shop.example/?email=sara@example.org")
    erased = S.apply_erased(state)
    flat = repr(erased)
    assert "Sara" not in flat and "sara@example.org" not in flat and "+98912" not in flat and "1990" not in flat
    assert erased["erased"] is True and "expectations" not in erased
    assert erased["engagement"]["clicked"] == {"cmp_1": T0}        # behaviour stays, anonymous
    assert S.apply_contact(erased, contact(9)) is erased
    assert F.project(erased)["x"] is True


# --------------------------------------------------------------------------- sales, loyalty, service desk

def test_orders_paid_and_refunded_commute_and_count_once():
    paid = lambda s: S.apply_order_paid(s, "ord_1", T0, {"amount_minor": 5000, "currency": "EUR"})  # noqa: E731
    other = lambda s: S.apply_order_paid(s, "ord_2", T0 + H, {"amount_minor": 700, "currency": "USD"})  # noqa: E731
    refunded = lambda s: S.apply_order_refunded(s, "ord_1", T0 + 2 * H)  # noqa: E731
    for result in in_every_order([paid, other, refunded]):
        f = F.project(result)
        assert [(o["c"], o["a"]) for o in f["ro"]] == [("USD", 700)]
        assert V.spent(f) == {"USD": 700}


def test_old_orders_fall_out_of_the_recent_window():
    state = S.apply_order_paid({}, "ord_old", T0, {"amount_minor": 100, "currency": "EUR"})
    state = S.apply_order_paid(state, "ord_new", T0 + 500 * DAY, {"amount_minor": 100, "currency": "EUR"})
    assert list(state["orders"]) == ["ord_new"]


@pytest.mark.parametrize("summary,totals", [
    ({"total_spent": [{"amount_minor": 100, "currency": "EUR"}, {"amount_minor": 5, "currency": "IRR"}]},
     {"EUR": 100, "IRR": 5}),
    ({"totals": {"EUR": 100, "bogus": 1}}, {"EUR": 100}),
    ({"total_spent": {"amount_minor": 7, "currency": "USD"}}, {"USD": 7}),
    ({}, {}),
])
def test_purchase_summaries_are_read_tolerantly_and_never_summed(summary, totals):
    state = S.apply_summary({}, {"order_count": 3, **summary}, T0)
    assert state["purchases"]["totals"] == totals
    assert state["purchases"]["order_count"] == 3


def test_the_newest_summary_wins():
    new = lambda s: S.apply_summary(s, {"order_count": 5}, T0 + H)  # noqa: E731
    old = lambda s: S.apply_summary(s, {"order_count": 4}, T0)  # noqa: E731
    for result in in_every_order([new, old]):
        assert result["purchases"]["order_count"] == 5


def test_loyalty_tier_and_balance_by_their_own_clocks():
    changes = [lambda s: S.apply_member_enrolled(s, "bronze", T0),
               lambda s: S.apply_tier(s, "silver", T0 + H),
               lambda s: S.apply_tier(s, "gold", T0 + 2 * H),
               lambda s: S.apply_balance(s, 100, T0 + H),
               lambda s: S.apply_balance(s, 40, T0 + 3 * H)]
    for result in in_every_order(changes):
        assert (result["loyalty"]["tier"], result["loyalty"]["balance"], result["loyalty"]["member"]) == ("gold", 40, True)


def test_tickets_open_resolve_reopen_and_satisfaction():
    # tkt_1 opened, resolved, reopened by the customer's reply; tkt_2 open
    changes = [lambda s: S.apply_ticket(s, "tkt_1", True, T0), lambda s: S.apply_ticket(s, "tkt_1", False, T0 + H),
               lambda s: S.apply_ticket(s, "tkt_1", True, T0 + 2 * H), lambda s: S.apply_ticket(s, "tkt_2", True, T0),
               lambda s: S.apply_csat(s, 2, T0 + H), lambda s: S.apply_csat(s, 5, T0 + 2 * H)]
    for result in in_every_order(changes):
        assert (F.project(result)["ot"], F.project(result)["cq"]) == (2, 5)
    resolved = S.apply_ticket(S.apply_ticket({}, "tkt_1", True, T0), "tkt_1", False, T0 + H)
    assert F.project(resolved)["ot"] == 0
    assert S.apply_ticket(resolved, "tkt_1", False, T0 + H) is resolved      # the same fact twice
    assert S.apply_ticket(resolved, "tkt_1", True, T0) is resolved           # a late, older fact
    assert S.apply_csat({}, 9, T0) == {}


# --------------------------------------------------------------------------- engagement, scoring, handoff

def test_an_engagement_counts_once_per_message_kind_and_link():
    state = {}
    for _ in range(3):
        state = S.apply_engagement(state, kind="opened", message_id="msg_1", campaign_id="cmp_1", channel="email",
                                   at=T0)
    state = S.apply_engagement(state, kind="clicked", message_id="msg_1", campaign_id="cmp_1", channel="email",
                               at=T0 + H, link="https://a")
    state = S.apply_engagement(state, kind="clicked", message_id="msg_1", campaign_id="cmp_1", channel="email",
                               at=T0 + H, link="https://b")
    assert [e["kind"] for e in state["engagement"]["history"]] == ["clicked", "clicked", "opened"]
    f = F.project(state)
    assert f["op"] == {"cmp_1": int(T0.timestamp())} and list(f["ck"]) == ["cmp_1"]


def test_the_score_counts_the_window_and_an_open_once_per_message():
    policy = scoring.ScoringPolicy(threshold=10, window=timedelta(days=90))
    history = [{"at": T0, "kind": "opened", "message_id": "m1"}, {"at": T0, "kind": "opened", "message_id": "m1"},
               {"at": T0, "kind": "clicked", "message_id": "m1"}, {"at": T0 - 100 * DAY, "kind": "replied",
                                                                   "message_id": "m0"}]
    assert scoring.score(history, T0, policy) == 4


def test_crossing_the_threshold_hands_over_once_per_cooldown():
    policy = scoring.ScoringPolicy(threshold=10, cooldown=timedelta(days=30))
    assert scoring.crossed(9, 10, None, T0, policy)
    assert not scoring.crossed(10, 12, None, T0, policy)          # it was over already
    assert not scoring.crossed(9, 12, T0 - DAY, T0, policy)       # handed over yesterday
    assert scoring.crossed(9, 12, T0 - 31 * DAY, T0, policy)


def test_the_engagement_that_crosses_the_threshold_stages_lead_qualified_with_the_history():
    policy = scoring.ScoringPolicy(threshold=6)
    state = S.apply_contact({}, contact(1, phones=[{"number": "+98912"}]))
    outcomes = []
    for i, kind in enumerate(["opened", "clicked", "clicked", "clicked"]):
        data = {"contact_id": "con_1", "message_id": "msg_1", "campaign_id": "cmp_1", "channel": "email",
                "link": f"https://x/{i}" if kind == "clicked" else None}
        out = engaged(kind, data, T0 + i * H, policy)(state, T0 + i * H)
        state = out.state
        outcomes.append(out)
    leads = [e for o in outcomes for e in o.events]
    assert len(leads) == 1 and isinstance(leads[0], LeadQualified)
    assert (leads[0].score, leads[0].email, leads[0].phone, leads[0].given_name) == (7, "sara@example.org", "+98912", "Sara")
    assert [h["kind"] for h in leads[0].history] == ["clicked", "clicked", "opened"]
    assert state["engagement"]["score"] == 10 and state["engagement"]["qualified_at"] == T0 + 2 * H
    replay = engaged("opened", {"contact_id": "con_1", "message_id": "msg_9", "campaign_id": "cmp_1",
                                "channel": "email"}, T0, policy, handoff=False)({}, T0)
    assert not getattr(replay, "events", [])


# --------------------------------------------------------------------------- value

def test_rfm_and_value_bands_per_currency():
    bands = V.parse_bands("*=5000,20000,100000,500000;IRR=5000000,20000000,100000000,500000000")
    now_s = int(T0.timestamp())
    f = {"lo": now_s - 45 * 86400, "oc": 12, "ts": {"EUR": 30000, "IRR": 6000000}}
    assert (V.recency(f, now_s), V.frequency(f), V.monetary(f, bands)) == (4, 4, 3)
    assert V.value_band(f, bands) == "medium"
    assert V.monetary({"ts": {"IRR": 30000}}, bands) == 1       # IRR judged against its own bands
    assert (V.recency({}, now_s), V.frequency({}), V.value_band({}, bands)) == (0, 0, "none")
    with pytest.raises(ValueError):
        V.parse_bands("EUR=3,2,1,0")


# --------------------------------------------------------------------------- membership

def seg(sid, rule=None, kind="dynamic", state="active"):
    return M.SegmentDef(sid, sid.upper(), kind, state, compile_rule(rules.parse(rule)) if rule else None)


def test_memberships_follow_the_facts():
    gold = {"field": "tier", "op": "gte", "value": "gold"}
    defs = {"seg_gold": seg("seg_gold", gold), "seg_list": seg("seg_list", kind="static"),
            "seg_old": seg("seg_old", gold, state="archived")}
    ctx = Context(T0)
    current = {"seg_list": {"since": T0, "kind": "static"}, "seg_old": {"since": T0, "kind": "dynamic"},
               "seg_unknown": {"since": T0, "kind": "dynamic"}}
    changes = M.desired({"ti": 3}, current, defs, ctx)
    assert [(c.segment_id, c.entered) for c in changes] == [("seg_gold", True), ("seg_old", False)]
    assert changes[0].reasons == ["tier gte gold (is gold)"]
    after = M.applied(current, changes, T0)
    assert set(after) == {"seg_gold", "seg_list", "seg_unknown"}     # a segment we do not know yet is left alone
    assert M.desired({"ti": 3}, after, defs, ctx) == []
    gone = M.desired({"ti": 1, "x": True}, after, defs, ctx)
    assert {(c.segment_id, c.entered) for c in gone} == {("seg_gold", False), ("seg_list", False)}
    only = M.desired({"ti": 1}, after, defs, ctx, only={"seg_list"})
    assert only == []


# --------------------------------------------------------------------------- crm_common.updates

def test_updates_set_only_changed_leaves_and_unset_removed_ones():
    before = {"counts": {"queued": 5}, "segments": {"a": {"since": 1}}, "tags": ["x"], "n": 1, "gone": 2,
              "consents": None}
    after = {"counts": {"sent": 5}, "segments": {"b": {"since": 1}, "a": {"since": 1}}, "tags": ["x", "y"], "n": 1,
             "consents": {"email": {"granted": True}}}
    sets, unsets = updates.changes(before, after)
    assert sets == {"counts.sent": 5, "segments.b": {"since": 1}, "tags": ["x", "y"],
                    "consents": {"email": {"granted": True}}}
    assert unsets == {"counts.queued": "", "gone": ""}
    assert updates.update(before, before, **{"$inc": {"v": 1}}) == {"$inc": {"v": 1}}
    assert updates.changes({"a": {"x": 1}}, {"a": {}}) == ({"a": {}}, {})
    assert updates.changes({"a": 1}, {"a": True}) == ({"a": True}, {})
