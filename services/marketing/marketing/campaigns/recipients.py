"""Who a campaign is for: the members of its included segments who are in none of its
excluded segments, read from the audience pages (one pass over every contact's compact
facts and memberships); and the dry run, which answers for each of them what a send
would do now and why, without sending.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterator

from ..audience.store import AudienceStore
from ..settings import Settings
from . import domain as D
from .store import CampaignStore


@dataclass(frozen=True)
class Candidate:
    contact_id: str
    page: str
    facts: dict[str, Any]
    excluded: bool


def candidates(audience: AudienceStore, campaign: dict[str, Any], *, after: tuple[str, str] | None = None
               ) -> Iterator[Candidate]:
    """Every member of an included segment, in page order, flagged when an excluded
    segment holds it too; ``after``: resume behind ``(page, contact_id)``."""
    include, exclude = set(campaign["include"]), set(campaign.get("exclude") or ())
    for entry in audience.scan_from(after):
        held = set(entry.segments)
        if held & include:
            yield Candidate(entry.contact_id, entry.page, entry.facts, bool(held & exclude))


def recipients(audience: AudienceStore, campaign: dict[str, Any]) -> tuple[list[Candidate], int]:
    """The campaign's recipients (excluded ones left out, erased ones kept: they are
    skipped with their reason) and how many the exclusions removed."""
    found, excluded = [], 0
    for c in candidates(audience, campaign):
        if c.excluded:
            excluded += 1
        else:
            found.append(c)
    return found, excluded


def sent_in_window(campaigns: CampaignStore, contact_ids: list[str], now: datetime,
                   settings: Settings) -> dict[str, int]:
    """Messages each contact got within the frequency cap's window (0 for most: only
    contacts sent to recently have a record)."""
    if not settings.cap_messages:
        return {}
    out: dict[str, int] = {}
    for start in range(0, len(contact_ids), 1000):
        for cid, record in campaigns.sends_of(contact_ids[start:start + 1000]).items():
            out[cid] = len(D.sends_in_window(record.get("sends") or {}, now, settings.cap_window))
    return out


def dry_run(audience: AudienceStore, campaigns: CampaignStore, campaign: dict[str, Any], settings: Settings,
            now: datetime, *, decision: str | None, after: tuple[str, str] | None, size: int) -> dict[str, Any]:
    """The summary over every candidate, and one page of per-contact answers."""
    channel = campaign["channel"]
    every = list(candidates(audience, campaign))
    counts = sent_in_window(campaigns, [c.contact_id for c in every if not c.excluded], now, settings)
    budget = campaign.get("budget")
    cost = (campaign.get("cost_per_message") or {}).get("amount_minor") or 0
    payable = D.affordable(budget["amount_minor"] if budget else None, campaign.get("spent_minor") or 0, cost,
                           len(every))
    summary = {"audience": len(every), "would_send": 0, "would_defer": 0, "would_skip": 0, "by_reason": {}}
    entries: list[dict[str, Any]] = []
    next_after: tuple[str, str] | None = None
    for c in every:
        if c.excluded:
            answer = D.Decision("skip", D.EXCLUDED, "in an excluded segment")
        else:
            answer = D.decide(D.Recipient.of_facts(c.contact_id, c.facts, channel), channel, now,
                              quiet=settings.quiet_hours, default_tz=settings.default_tz,
                              sent_in_window=counts.get(c.contact_id, 0), cap=settings.cap_messages)
            if answer.action == "send":
                if payable <= 0:
                    answer = D.Decision("skip", D.BUDGET, "the budget is spent before this message")
                payable -= 1
        summary[f"would_{answer.action}"] += 1
        if answer.reason:
            summary["by_reason"][answer.reason] = summary["by_reason"].get(answer.reason, 0) + 1
        if after is not None and (c.page, c.contact_id) <= after:
            continue
        if decision and answer.action != decision:
            continue
        if len(entries) == size:
            next_after = next_after or (entries[-1]["_page"], entries[-1]["contact_id"])
            continue
        entries.append({"_page": c.page, "contact_id": c.contact_id, "decision": answer.action,
                        "reason": answer.reason, "detail": answer.detail,
                        "not_before": answer.not_before})
    return {"summary": summary, "entries": entries, "next": next_after}

