"""Lead scoring as pure functions: configurable rules, demographic (what the lead is)
and behavioural (what the lead did: facts counted per kind), and grades by score.

A rule set is ``{"version", "rules": [...], "grades": [{"grade", "min_score"}]}`` (the
shape of SetScoringRules, leads/contracts.py). A score is recomputed from the lead as it
is stored (its fields and its ``behaviour`` counts), never accumulated, so scoring the
same lead twice gives the same answer and a rule change rescores cleanly.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any

DEFAULT_RULES: dict[str, Any] = {
    "version": 0,
    "rules": [
        {"id": "big_company", "description": "200 or more employees", "attribute": "company_size",
         "match": "at_least", "number": 200, "points": 20},
        {"id": "mid_company", "description": "50 or more employees", "attribute": "company_size",
         "match": "at_least", "number": 50, "points": 10},
        {"id": "decision_maker", "description": "a title that decides", "attribute": "job_title",
         "match": "contains_any", "points": 15,
         "values": ["ceo", "cto", "cfo", "coo", "founder", "owner", "director", "head", "vp", "manager",
                    "مدیر", "مالک", "بنیان‌گذار"]},
        {"id": "target_industry", "attribute": "industry", "match": "any_of", "points": 10,
         "values": ["retail", "software", "finance", "e-commerce", "manufacturing"]},
        {"id": "has_phone", "attribute": "has_phone", "match": "present", "points": 5},
        {"id": "has_company", "attribute": "has_company", "match": "present", "points": 5},
        {"id": "referral", "description": "referred by a customer", "attribute": "channel", "match": "equals",
         "values": ["referral"], "points": 10},
        {"id": "web_visits", "fact": "web_visit", "points": 2, "max_points": 10},
        {"id": "forms", "fact": "form_filled", "points": 10, "max_points": 20},
        {"id": "email_opens", "fact": "message_opened", "points": 3, "max_points": 15},
        {"id": "email_clicks", "fact": "message_clicked", "points": 7, "max_points": 21},
        {"id": "tickets", "description": "asked support something", "fact": "ticket_opened", "points": 5,
         "max_points": 10},
    ],
    "grades": [{"grade": "A", "min_score": 60}, {"grade": "B", "min_score": 40},
               {"grade": "C", "min_score": 20}, {"grade": "D", "min_score": -10_000}],
}

_WORD = re.compile(r"\w+", re.UNICODE)


def _fold(text: Any) -> str:
    return unicodedata.normalize("NFKC", str(text or "")).casefold().strip()


def attribute(lead: dict[str, Any], name: str) -> Any:
    """The value a demographic rule looks at."""
    attribution = lead.get("attribution") or {}
    if name == "has_email":
        return bool(lead.get("email"))
    if name == "has_phone":
        return bool(lead.get("phone"))
    if name == "has_company":
        return bool(lead.get("company_name"))
    if name in ("source", "medium", "campaign"):
        return attribution.get(name)
    return lead.get(name)


def rule_points(rule: dict[str, Any], lead: dict[str, Any]) -> int:
    """What one rule gives this lead (0 when it does not apply)."""
    if rule.get("fact"):
        count = int((lead.get("behaviour") or {}).get(rule["fact"], 0))
        points = count * int(rule["points"])
        cap = int(rule.get("max_points") or 0)
        return max(min(points, cap), -cap) if cap else points
    value = attribute(lead, rule["attribute"])
    match = rule.get("match")
    values = [_fold(v) for v in rule.get("values") or ()]
    if match == "present":
        hit = bool(value)
    elif match == "equals":
        hit = value is not None and _fold(value) == values[0]
    elif match == "any_of":
        hit = value is not None and _fold(value) in values
    elif match == "contains_any":
        words = set(_WORD.findall(_fold(value)))
        text = _fold(value)
        # a value of one word matches a word of the text; a phrase (or a word with a joiner,
        # as Persian writes "بنیان‌گذار") matches where it occurs
        hit = any(v in words if _WORD.fullmatch(v) else v in text for v in values)
    elif match in ("at_least", "at_most"):
        if not isinstance(value, int) or isinstance(value, bool) or not value:
            return 0
        hit = value >= int(rule.get("number") or 0) if match == "at_least" else value <= int(rule.get("number") or 0)
    else:
        return 0
    return int(rule["points"]) if hit else 0


def score(lead: dict[str, Any], rules: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    """The lead's score and the rules that gave it points (``[{"rule", "points"}]``).
    Demographic rules on one attribute do not add up: of several that match (a big and a
    mid-sized company), the one with the most points counts."""
    best: dict[str, dict[str, Any]] = {}
    details: list[dict[str, Any]] = []
    for rule in rules.get("rules") or ():
        points = rule_points(rule, lead)
        if not points:
            continue
        if rule.get("attribute"):
            kept = best.get(rule["attribute"])
            if kept is None or points > kept["points"]:
                best[rule["attribute"]] = {"rule": rule["id"], "points": points}
        else:
            details.append({"rule": rule["id"], "points": points})
    details = sorted([*best.values(), *details], key=lambda d: (-d["points"], d["rule"]))
    return sum(d["points"] for d in details), details


def grade(value: int, grades: list[dict[str, Any]]) -> str:
    """The grade of the highest ``min_score`` the score reaches (else the lowest grade)."""
    ordered = sorted(grades, key=lambda g: g["min_score"], reverse=True)
    for g in ordered:
        if value >= g["min_score"]:
            return g["grade"]
    return ordered[-1]["grade"] if ordered else ""


def rescored(lead: dict[str, Any], rules: dict[str, Any]) -> dict[str, Any]:
    """The scoring fields of ``lead`` under ``rules``: ``score, grade, score_details, scored_with``."""
    value, details = score(lead, rules)
    return {"score": value, "grade": grade(value, rules.get("grades") or []), "score_details": details,
            "scored_with": int(rules.get("version") or 0)}
