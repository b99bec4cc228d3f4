"""Sales' lead rules without I/O: scoring, assignment, the status machine, merging."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from crm_common import contracts
from crm_common.errors import FailedPrecondition, InvalidArgument
from sales.leads import contracts as C
from sales.leads import domain, scoring
from sales.team import domain as team

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=timezone.utc)


def lead(**fields):
    base = {"_id": "lead_1", "status": "new", "email": "a@example.org", "phone": None, "company_name": None,
            "company_size": 0, "job_title": None, "industry": None, "country": None, "channel": "web_form",
            "attribution": {}, "behaviour": {}}
    return {**base, **fields}


# -- scoring ---------------------------------------------------------------------------------

def test_default_rules_score_what_a_lead_is_and_does():
    quiet = lead()
    assert scoring.score(quiet, scoring.DEFAULT_RULES) == (0, [])
    strong = lead(company_name="Acme", company_size=400, job_title="Head of Sales", industry="Retail",
                  phone="+4930123456", channel="referral")
    value, details = scoring.score(strong, scoring.DEFAULT_RULES)
    assert value == 20 + 15 + 10 + 5 + 5 + 10
    assert details[0] == {"rule": "big_company", "points": 20}


def test_rules_on_one_attribute_do_not_add_up_the_best_counts():
    value, details = scoring.score(lead(company_size=300), scoring.DEFAULT_RULES)
    assert (value, [d["rule"] for d in details]) == (20, ["big_company"])
    assert scoring.score(lead(company_size=60), scoring.DEFAULT_RULES)[0] == 10


def test_behaviour_counts_per_fact_up_to_the_cap():
    assert scoring.score(lead(behaviour={"web_visit": 3}), scoring.DEFAULT_RULES)[0] == 6
    assert scoring.score(lead(behaviour={"web_visit": 30}), scoring.DEFAULT_RULES)[0] == 10
    assert scoring.score(lead(behaviour={"unknown_fact": 9}), scoring.DEFAULT_RULES)[0] == 0


@pytest.mark.parametrize("title,hit", [("CEO", True), ("Chief Executive", False), ("Head of IT", True),
                                       ("Headhunter", False), ("مدیر فروش", True), ("بنیان‌گذار شرکت", True),
                                       ("", False)])
def test_contains_any_matches_words_and_phrases_in_any_script(title, hit):
    rule = next(r for r in scoring.DEFAULT_RULES["rules"] if r["id"] == "decision_maker")
    assert (scoring.rule_points(rule, lead(job_title=title or None)) == 15) is hit


def test_grades_take_the_highest_threshold_reached():
    grades = scoring.DEFAULT_RULES["grades"]
    assert [scoring.grade(v, grades) for v in (100, 60, 59, 40, 20, 0, -50)] == ["A", "A", "B", "B", "C", "D", "D"]
    assert scoring.rescored(lead(), scoring.DEFAULT_RULES) == {"score": 0, "grade": "D", "score_details": [],
                                                               "scored_with": 0}


def test_a_rule_needs_either_an_attribute_or_a_fact_and_never_an_operator():
    with pytest.raises(InvalidArgument) as err:
        contracts.parse(C.SetScoringRules, {"rules": [{"id": "x", "points": 1}], "grades": [
            {"grade": "A", "min_score": 0}]})
    assert err.value.violations[0]["field"] == "rules[0]"
    with pytest.raises(InvalidArgument) as err:
        contracts.parse(C.SetScoringRules, {"rules": [{"id": "x", "attribute": {"$where": "1"}, "match": "present",
                                                       "points": 1}], "grades": [{"grade": "A", "min_score": 0}]})
    assert err.value.violations[0]["field"] == "rules[0].attribute"
    with pytest.raises(InvalidArgument):
        contracts.parse(C.SetScoringRules, {"rules": [], "grades": [{"grade": "A", "min_score": 0},
                                                                    {"grade": "A", "min_score": 5}]})


# -- assignment --------------------------------------------------------------------------------

TERRITORIES = [{"_id": "iran", "countries": ["IR"], "team": "iran", "rank": 1},
               {"_id": "tehran", "countries": ["IR"], "regions": ["Tehran"], "team": "capital", "rank": 0},
               {"_id": "world", "countries": ["*"], "team": "intl", "rank": 9}]


@pytest.mark.parametrize("country,region,expected", [("IR", "Tehran", "tehran"), ("IR", "tehran ", "tehran"),
                                                     ("IR", "Shiraz", "iran"), ("IR", None, "iran"),
                                                     ("DE", None, "world"), (None, None, "world")])
def test_the_first_territory_by_rank_that_matches_wins(country, region, expected):
    assert team.territory_for(country, region, TERRITORIES)["_id"] == expected


def test_no_catch_all_means_no_territory():
    assert team.territory_for("JP", None, TERRITORIES[:2]) is None


def test_round_robin_rotates_over_active_reps_in_id_order():
    reps = [{"_id": "c"}, {"_id": "a"}, {"_id": "b", "active": False}, {"_id": "d"}]
    assert [r["_id"] for r in team.turn_order(reps, 0)] == ["a", "c", "d"]
    assert [r["_id"] for r in team.turn_order(reps, 4)] == ["c", "d", "a"]
    assert team.turn_order([], 3) == []
    assert team.capacity({"lead_capacity": 0}, 50) == 50 and team.capacity({"lead_capacity": 7}, 50) == 7


# -- leads -------------------------------------------------------------------------------------

def test_a_lead_holds_its_email_and_phone_while_open():
    doc = domain.new_lead("lead_1", {"email": "a@x.org", "phone": "+4930123"}, "web_form", {"source": "g"}, None, NOW)
    assert doc["dedup_keys"] == ["email:a@x.org", "phone:+4930123"]
    assert doc["touches"] == [{"channel": "web_form", "attribution": {"source": "g"}, "at": NOW}]
    assert [domain.is_open(s) for s in C.STATUSES] == [True, True, True, False, False]


def test_merging_fills_blanks_appends_notes_and_keeps_the_touch():
    existing = lead(given_name="Anna", notes="first call", dedup_keys=["email:a@example.org"], touches=[])
    touch = domain.touch("event", None, NOW)
    sets = domain.merged(existing, {"given_name": "Other", "phone": "+4930", "notes": "met at fair"}, touch,
                         "con_9", NOW)
    assert "given_name" not in sets                      # what the lead says wins
    assert sets["phone"] == "+4930" and sets["notes"] == "first call\nmet at fair"
    assert sets["touches"] == [touch] and sets["contact_id"] == "con_9"
    assert sets["dedup_keys"] == ["email:a@example.org", "phone:+4930"]


def test_statuses_move_only_along_the_road():
    domain.require(lead(status="working"), ("new", "working"), "qualified")
    with pytest.raises(FailedPrecondition) as err:
        domain.require(lead(status="converted"), ("new", "working"), "qualified")
    assert "converted" in str(err.value)
    assert domain.worked(lead(status="new")) == {"status": "working"}
    assert domain.worked(lead(status="qualified")) == {}


def test_facts_are_counted_and_the_history_is_bounded():
    doc = lead()
    for _ in range(domain.HISTORY_KEPT + 5):
        doc = {**doc, **domain.fact(doc, "web_visit", NOW, "/pricing", "api")}
    assert doc["behaviour"] == {"web_visit": domain.HISTORY_KEPT + 5}
    assert len(doc["history"]) == domain.HISTORY_KEPT


def test_an_assignment_is_recorded_with_who_had_it_before():
    sets = domain.assignment(lead(owner="rep-a"), "rep-b", "north", "manual", "user:boss", NOW)
    assert sets["owner"] == "rep-b" and sets["assignments"][-1]["previous_owner"] == "rep-a"


def test_a_capture_needs_a_way_to_reach_the_person():
    with pytest.raises(InvalidArgument) as err:
        contracts.parse(C.CaptureLead, {"lead": {"given_name": "X"}, "channel": "phone"})
    assert err.value.violations[0]["field"] == "lead"
    ok = contracts.parse(C.CaptureLead, {"lead": {"phone": "+98 912 ۱۲۳ ۴۵۶۷", "email": "", "country": "ir"},
                                         "channel": "phone", "owner": "", "contact_id": ""})
    assert ok.lead.phone == "+989121234567" and ok.lead.country == "IR" and ok.owner is None
