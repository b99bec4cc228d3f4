"""Campaign rules as pure functions: who may receive a message now, and if not why or
when; frequency caps over a rolling window; budgets; the states a campaign moves through.

Decisions are made twice: when the send is queued (so progress shows every skip and its
reason at once) and again right before each message goes out (a consent withdrawn a
second ago, a cap another campaign just used up, quiet hours that began meanwhile). The
dry run asks the same question without sending.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..settings import QuietHours
from ..timezones import zone

DRAFT, SCHEDULED, RUNNING, COMPLETED, CANCELLED = "draft", "scheduled", "running", "completed", "cancelled"
STATES = (DRAFT, SCHEDULED, RUNNING, COMPLETED, CANCELLED)

# message statuses
QUEUED, DEFERRED, SENDING, SENT, FAILED, BOUNCED, SKIPPED = (
    "queued", "deferred", "sending", "sent", "failed", "bounced", "skipped")
FINAL = (SENT, FAILED, BOUNCED, SKIPPED)

# why a recipient gets nothing (skipped) or later (deferred)
NO_CONSENT, NO_ADDRESS, CAPPED, ERASED, EXCLUDED, BUDGET, CANCELLED_REASON = (
    "no_consent", "no_address", "capped", "erased", "excluded", "budget", "cancelled")
QUIET_HOURS, PREFERRED_TIME = "quiet_hours", "preferred_time"
SKIP_REASONS = (NO_CONSENT, NO_ADDRESS, CAPPED, ERASED, BUDGET, CANCELLED_REASON)
DEFER_REASONS = (QUIET_HOURS, PREFERRED_TIME)

#: Local hours of each preferred contact time, [start, end).
CONTACT_WINDOWS = {"morning": (8, 12), "afternoon": (12, 17), "evening": (17, 21)}
MAX_DEFERRAL = timedelta(hours=36)


@dataclass(frozen=True)
class Decision:
    action: str                  # send | defer | skip
    reason: str = ""
    detail: str = ""
    address: str | None = None
    not_before: datetime | None = None


@dataclass(frozen=True)
class Recipient:
    """What a decision needs to know of one contact: from its full read model at send time
    (:meth:`of_state`), from the compact facts of its page for the dry run and queueing
    (:meth:`of_facts`; the address is then only known to exist)."""

    contact_id: str
    erased: bool
    address: str | None
    consent: bool
    consent_withdrawn: bool = False
    tz: str | None = None
    preferred_time: str | None = None

    @classmethod
    def of_state(cls, contact_id: str, state: dict[str, Any], channel: str) -> "Recipient":
        contact = state.get("contact") or {}
        consent = (state.get("consents") or {}).get(channel) or {}
        expectations = state.get("expectations") or {}
        return cls(contact_id, bool(state.get("erased")),
                   contact.get("email") if channel == "email" else contact.get("phone"),
                   consent.get("granted") is True, consent.get("granted") is False and consent.get("at") is not None,
                   (expectations.get("timezone") or {}).get("value"),
                   (expectations.get("preferred_contact_time") or {}).get("value"))

    @classmethod
    def of_facts(cls, contact_id: str, f: dict[str, Any], channel: str) -> "Recipient":
        has = f.get("he") if channel == "email" else f.get("hp")
        return cls(contact_id, bool(f.get("x")), "(on file)" if has else None, channel in (f.get("cn") or ()),
                   False, f.get("tz"), f.get("pt"))


def decide(r: Recipient, channel: str, now: datetime, *, quiet: QuietHours, default_tz: str,
           sent_in_window: int = 0, cap: int = 0) -> Decision:
    """Whether one recipient gets the message now (``sent_in_window``: messages of any
    campaign it got within the cap's window; ``cap`` 0 = no cap)."""
    if r.erased:
        return Decision("skip", ERASED, "the contact was erased")
    if not r.address:
        return Decision("skip", NO_ADDRESS, f"no {'email address' if channel == 'email' else 'phone number'}")
    if not r.consent:
        detail = "consent withdrawn" if r.consent_withdrawn else "no consent"
        return Decision("skip", NO_CONSENT, f"{detail} for {channel}", r.address)
    if cap and sent_in_window >= cap:
        return Decision("skip", CAPPED, f"already got {sent_in_window} message(s) in the cap window (at most {cap})",
                        r.address)
    if channel == "sms":
        tz = r.tz or default_tz
        later = next_allowed(now, tz, quiet, r.preferred_time)
        if later is not None:
            reason = QUIET_HOURS if quiet.holds(now.astimezone(zone(tz)).hour) else PREFERRED_TIME
            local = later.astimezone(zone(tz)).strftime("%H:%M")
            return Decision("defer", reason, f"until {local} {tz}", r.address, later)
    return Decision("send", address=r.address)


def next_allowed(now: datetime, tz: str, quiet: QuietHours, preferred: str | None) -> datetime | None:
    """None when an SMS may go now; else the first whole local hour when it may: outside
    quiet hours and, if the customer said when they like to be contacted, inside that
    window (a preferred window entirely inside quiet hours is ignored)."""
    local_zone = zone(tz)
    window = CONTACT_WINDOWS.get(preferred or "")
    if window and all(quiet.holds(h) for h in range(*window)):
        window = None

    def allowed(hour: int) -> bool:
        return not quiet.holds(hour) and (window is None or window[0] <= hour < window[1])

    local = now.astimezone(local_zone)
    if allowed(local.hour):
        return None
    start = local.replace(minute=0, second=0, microsecond=0)
    for step in range(1, 49):
        candidate = (start + timedelta(hours=step)).astimezone(local_zone)
        if allowed(candidate.hour):
            return candidate.replace(minute=0, second=0, microsecond=0).astimezone(now.tzinfo)
    return None


def sends_in_window(sends: dict[str, datetime], now: datetime, window: timedelta) -> dict[str, datetime]:
    """The sends a frequency cap counts (and what a cap record keeps)."""
    return {m: at for m, at in sends.items() if at > now - window}


def affordable(budget_minor: int | None, spent_minor: int, cost_minor: int, wanted: int) -> int:
    """How many of ``wanted`` messages the budget still pays for (no budget or no cost: all)."""
    if budget_minor is None or not cost_minor:
        return wanted
    return max(0, min(wanted, (budget_minor - spent_minor) // cost_minor))


def progress(counts: dict[str, Any]) -> dict[str, Any]:
    """The progress of a send as GetCampaignProgress answers it, from the stored counters."""
    skipped = {k: int(v) for k, v in (counts.get("skipped") or {}).items() if v}
    deferred = {k: int(v) for k, v in (counts.get("deferred_by") or {}).items() if v}
    out = {k: max(0, int(counts.get(k) or 0)) for k in ("recipients", "queued", "deferred", "sending", "sent",
                                                       "failed", "bounced")}
    out["skipped"] = sum(skipped.values())
    out["skipped_by_reason"] = skipped
    out["deferred_by_reason"] = deferred
    out["done"] = out["sent"] + out["failed"] + out["bounced"] + out["skipped"]
    return out
