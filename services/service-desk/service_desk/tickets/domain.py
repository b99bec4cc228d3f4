"""A ticket's lifecycle as pure functions (no I/O; ``now``, the caller and the calendar
are passed in). Each returns a :class:`Change`: the fields to set, the history entries
and events it causes, the conversation message it adds, and how it moves the open
ticket counts of agents. The service writes a Change in ONE version-guarded write.

Statuses: new → open → pending → resolved → closed.

* new: nobody works on it yet (no agent, no public reply); assigning an agent or a
  public agent reply makes it open.
* pending: waiting on the customer (``pending_reason`` customer: the resolution clock
  pauses) or on a third party (the clock runs: a carrier's delay is still ours).
* resolved: both clocks stop; a satisfaction request goes out; a customer reply within
  the reopen window reopens it (resolution counts on from what it had), after it the
  ticket is closed (timer) and a reply to it is refused: open a new ticket.
* closed: final.

Every write also settles the SLA (:func:`settle`): warnings and breaches that have
fallen due are marked in that write and announced once; a breach escalates (priority
one step up, the escalation group told).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from crm_common.errors import FailedPrecondition
from crm_common.events import Event

from ..events import (CsatReceived, SatisfactionRequested, TicketAssigned, TicketEscalated, TicketOpened,
                      TicketReplied, TicketResolved, TicketSlaBreached, TicketSlaChanged, TicketSlaWarning,
                      TicketStatusChanged)
from ..sla import policies
from ..sla.calendar import Calendar
from ..sla.clocks import FIRST_RESPONSE, RESOLUTION, WARNING, Clock, Sla

STATUSES = ("new", "open", "pending", "resolved", "closed")
ACTIVE = ("new", "open", "pending")          # being worked on: count toward an agent's cap
CATEGORIES = ("incorrect_repair", "late_delivery", "out_of_stock", "wrong_delivery", "poor_product_quality",
              "billing", "question", "other")
PRIORITIES = policies.PRIORITIES
CHANNELS = ("email", "phone", "chat", "web_form", "social", "bot")
PENDING_REASONS = ("customer", "third_party")
TRANSITIONS = {"new": {"open", "pending", "resolved"}, "open": {"pending", "resolved"},
               "pending": {"open", "resolved", "pending"}, "resolved": {"open", "closed"}, "closed": set()}
ERASED = "[erased]"


@dataclass(frozen=True)
class Customer:
    """What the read model knows of a ticket's contact (service_desk.customers)."""

    contact_id: str
    display_name: str = ""
    tier: str = ""
    segment: str = "none"
    erased: bool = False


@dataclass
class Change:
    sets: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    message: dict[str, Any] | None = None
    load: dict[str, int] = field(default_factory=dict)    # agent -> +1 / -1 open tickets

    def merge(self, other: "Change") -> "Change":
        load = dict(self.load)
        for agent, n in other.load.items():
            load[agent] = load.get(agent, 0) + n
        return Change({**self.sets, **other.sets}, self.events + other.events, self.history + other.history,
                      other.message or self.message, {a: n for a, n in load.items() if n})


@dataclass(frozen=True)
class Ctx:
    """Who acts, when, on which calendar (the ticket's policy's), with which settings."""

    now: datetime
    by: str                              # "user:agent-neda", "service:service-desk"
    cal: Calendar
    reopen_window: timedelta = timedelta(days=7)
    escalation_group: str = "escalations"


def _entry(ctx: Ctx, what: str, frm: Any, to: Any, **extra: Any) -> dict[str, Any]:
    return {"at": ctx.now, "by": ctx.by, "what": what, "from": frm, "to": to, **extra}


def sla_of(ticket: dict[str, Any]) -> Sla:
    return Sla.from_doc(ticket.get("sla"))


def _sla_sets(sla: Sla) -> dict[str, Any]:
    """The SLA and the two top-level fields the store indexes and counts on."""
    return {"sla": sla.to_doc(), "sla_due_at": sla.next_due(), "sla_breached": sla.breached}


def _due(sla: Sla, target: str) -> datetime | None:
    return sla.clock(target).due_at


# -- opening ------------------------------------------------------------------------------

def start_sla(policy: dict[str, Any] | None, customer: Customer, priority: str, cal: Calendar, now: datetime,
              default_warning_percent: int) -> Sla:
    """The SLA of a ticket opened now: the policy's targets for ``priority``, both clocks
    counting from ``now`` (after hours, they count from the next opening by themselves)."""
    t = policies.targets(policy, priority) or {}
    warning = int((policy or {}).get("warning_percent") or default_warning_percent)
    sla = Sla(policy_id=policy["_id"] if policy else None, policy_name=(policy or {}).get("name") or "",
              calendar_id=(policy or {}).get("calendar_id") or None, warning_percent=warning, priority=priority,
              tier=customer.tier, segment=customer.segment)
    share = sla.warning_share
    return replace(sla, clocks={
        FIRST_RESPONSE: Clock(target=t.get("first_response_seconds")).start(cal, now, share),
        RESOLUTION: Clock(target=t.get("resolution_seconds")).start(cal, now, share)})


def new_ticket(ticket_id: str, fields: dict[str, Any], customer: Customer, sla: Sla, group: str, assignee: str,
               route_reason: str, ctx: Ctx) -> tuple[dict[str, Any], Change]:
    """The document of a new ticket and what opening it announces."""
    now = ctx.now
    status = "open" if assignee else "new"
    doc = {"_id": ticket_id, "contact_id": customer.contact_id, **fields, "status": status, "pending_reason": "",
           "group": group, "assignee": assignee or None, "opened_at": now, "first_response_at": None,
           "resolved_at": None, "closed_at": None, "close_at": None, "reopened_count": 0, "message_count": 0,
           "last_message_at": None, "escalated": False, "csat": None, "erased": False,
           "history": [_entry(ctx, "opened", None, status, group=group, assignee=assignee or "")],
           **_sla_sets(sla), "created_at": now, "updated_at": now, "version": 1}
    events: list[Event] = [
        TicketOpened(ticket_id=ticket_id, contact_id=customer.contact_id, ticket_subject=fields["subject"],
                     category=fields["category"], priority=fields["priority"], channel=fields["channel"], group=group,
                     order_ref=fields.get("order_ref"), tier=customer.tier, segment=customer.segment,
                     policy_id=sla.policy_id, first_response_due_at=_due(sla, FIRST_RESPONSE),
                     resolution_due_at=_due(sla, RESOLUTION), opened_at=now),
        TicketAssigned(ticket_id=ticket_id, contact_id=customer.contact_id, group=group, assignee=assignee or "",
                       previous_group="", previous_assignee="", reason=route_reason, assigned_at=now)]
    return doc, Change(events=events, load={assignee: 1} if assignee else {})


# -- the SLA ---------------------------------------------------------------------------------

def retarget(ticket: dict[str, Any], policy: dict[str, Any] | None, customer: Customer, priority: str,
             ctx: Ctx, default_warning_percent: int, new_cal: Calendar | None = None) -> Change:
    """Choose the SLA again (another policy, tier, segment or priority), keeping the time
    each clock has counted (on the ticket's calendar, ``ctx.cal``; the rest is scheduled
    on the new policy's, ``new_cal``); stopped clocks keep the target they were judged
    by. No change when nothing moved."""
    old = sla_of(ticket)
    t = policies.targets(policy, priority) or {}
    warning = int((policy or {}).get("warning_percent") or default_warning_percent)
    new = replace(old, policy_id=policy["_id"] if policy else None, policy_name=(policy or {}).get("name") or "",
                  calendar_id=(policy or {}).get("calendar_id") or None, warning_percent=warning,
                  priority=priority, tier=customer.tier, segment=customer.segment)
    for target, key in ((FIRST_RESPONSE, "first_response_seconds"), (RESOLUTION, "resolution_seconds")):
        clock = old.clock(target)
        if not clock.stopped and (clock.target != t.get(key) or warning != old.warning_percent
                                  or new.calendar_id != old.calendar_id):
            new = new.with_clock(target, clock.retarget(ctx.cal, ctx.now, t.get(key), new.warning_share, new_cal))
    if new == old:
        return Change()
    sets = _sla_sets(new)
    if (new.policy_id, new.clocks) == (old.policy_id, old.clocks):
        return Change(sets)      # only the customer's facts moved: no new targets to announce
    event = TicketSlaChanged(ticket_id=ticket["_id"], contact_id=ticket["contact_id"], policy_id=new.policy_id,
                             previous_policy_id=old.policy_id, tier=new.tier, segment=new.segment, priority=priority,
                             first_response_due_at=_due(new, FIRST_RESPONSE),
                             resolution_due_at=_due(new, RESOLUTION), changed_at=ctx.now)
    return Change(sets, [event], [_entry(ctx, "sla", old.policy_id, new.policy_id, tier=new.tier,
                                         segment=new.segment, priority=priority)])


def settle(ticket: dict[str, Any], ctx: Ctx) -> Change:
    """Warnings and breaches of ``ticket`` (as it is after the write being prepared) that
    have fallen due at ``ctx.now`` and are not published: marked, announced, and each
    breach escalates the ticket one priority step."""
    sla = sla_of(ticket)
    alerts = sla.alerts(ctx.now)
    if not alerts:
        return Change()
    active = ticket.get("status") in ACTIVE
    events: list[Event] = []
    history: list[dict[str, Any]] = []
    priority = ticket["priority"]
    common = {"ticket_id": ticket["_id"], "contact_id": ticket["contact_id"], "policy_id": sla.policy_id,
              "group": ticket.get("group") or "", "assignee": ticket.get("assignee") or ""}
    for target, kind in alerts:
        clock = sla.clock(target)
        due = (clock.warn_at if kind == WARNING else clock.due_at) or ctx.now
        facts = {**common, "target": target, "target_seconds": clock.target,
                 "elapsed_seconds": clock.elapsed_at(ctx.cal, ctx.now), "due_at": due, "priority": priority}
        if kind == WARNING:
            events.append(TicketSlaWarning(**facts, warned_at=ctx.now))
        else:
            events.append(TicketSlaBreached(**facts, breached_at=ctx.now))
            if not active:      # missed, and found out as it was resolved: nothing left to escalate
                sla = sla.mark(target, kind)
                continue
            raised = PRIORITIES[min(PRIORITIES.index(priority) + 1, len(PRIORITIES) - 1)]
            events.append(TicketEscalated(ticket_id=ticket["_id"], contact_id=ticket["contact_id"], target=target,
                                          from_priority=priority, to_priority=raised, group=common["group"],
                                          assignee=common["assignee"], escalation_group=ctx.escalation_group,
                                          escalated_at=ctx.now))
            history.append(_entry(ctx, "escalated", priority, raised, target=target))
            priority = raised
        sla = sla.mark(target, kind)
    # Escalating raises the priority agents see; the targets stay those of the priority
    # the ticket was opened (or last set) with: re-targeting on a breach would only
    # breed breaches.
    escalated = bool(ticket.get("escalated")) or priority != ticket["priority"] or any(
        e.type == TicketEscalated.type for e in events)
    return Change({**_sla_sets(sla), "priority": priority, "escalated": escalated}, events, history)


def with_sets(ticket: dict[str, Any], change: Change) -> dict[str, Any]:
    return {**ticket, **change.sets}


def settled(ticket: dict[str, Any], change: Change, ctx: Ctx) -> Change:
    """``change`` plus what settling the SLA of the ticket after it adds."""
    return change.merge(settle(with_sets(ticket, change), ctx))


# -- the conversation -------------------------------------------------------------------------

def _message(ticket: dict[str, Any], message_id: str, author: str, author_type: str, body: str, internal: bool,
             ctx: Ctx) -> dict[str, Any]:
    return {"_id": message_id, "ticket_id": ticket["_id"], "contact_id": ticket["contact_id"],
            "seq": int(ticket.get("message_count") or 0) + 1, "author": author, "author_type": author_type,
            "internal": internal, "body": body, "at": ctx.now}


def _writable(ticket: dict[str, Any]) -> None:
    if ticket.get("erased"):
        raise FailedPrecondition(f"ticket {ticket['_id']} belongs to an erased contact",
                                 {"ticket_id": ticket["_id"]})


def agent_reply(ticket: dict[str, Any], message_id: str, author: str, body: str, internal: bool, ctx: Ctx) -> Change:
    """A public reply (the first one is the first response; a new ticket becomes open)
    or an internal note (never shown to the customer; touches no clock)."""
    _writable(ticket)
    if ticket["status"] == "closed":
        raise FailedPrecondition(f"ticket {ticket['_id']} is closed", {"ticket_id": ticket["_id"]})
    msg = _message(ticket, message_id, author, "agent", body, internal, ctx)
    sets: dict[str, Any] = {"message_count": msg["seq"], "last_message_at": ctx.now}
    history, first = [], False
    if not internal:
        sla = sla_of(ticket)
        if not sla.clock(FIRST_RESPONSE).stopped:
            first = True
            sla = sla.with_clock(FIRST_RESPONSE, sla.clock(FIRST_RESPONSE).stop(ctx.cal, ctx.now))
            sets.update(_sla_sets(sla), first_response_at=ctx.now)
        if ticket["status"] == "new":
            sets["status"] = "open"
            history.append(_entry(ctx, "status", "new", "open"))
    events: list[Event] = [_replied(ticket, msg, first, ctx)]
    if sets.get("status"):
        events.append(_status_event(ticket, "open", "", ctx))
    return Change(sets, events, history, msg)


def customer_reply(ticket: dict[str, Any], message_id: str, body: str, ctx: Ctx, *,
                   author_type: str = "customer") -> Change:
    """The customer wrote: a pending ticket is open again (its resolution clock resumes);
    a resolved one reopens within the reopen window; a closed one refuses (a new
    ticket is the way)."""
    _writable(ticket)
    status = ticket["status"]
    if status == "closed" or status == "resolved" and ticket.get("close_at") and ctx.now >= ticket["close_at"]:
        raise FailedPrecondition(f"ticket {ticket['_id']} is closed: open a new ticket", {"ticket_id": ticket["_id"]})
    msg = _message(ticket, message_id, ticket["contact_id"], author_type, body, False, ctx)
    change = Change({"message_count": msg["seq"], "last_message_at": ctx.now},
                    [_replied(ticket, msg, False, ctx)], [], msg)
    if status in ("pending", "resolved"):
        change = change.merge(_move(ticket, "open", "", ctx))
    return change


def _replied(ticket, msg, first: bool, ctx: Ctx) -> TicketReplied:
    return TicketReplied(ticket_id=ticket["_id"], contact_id=ticket["contact_id"], message_id=msg["_id"],
                         author=msg["author"], author_type=msg["author_type"], internal=msg["internal"],
                         first_response=first, replied_at=ctx.now)


# -- status ------------------------------------------------------------------------------------

def change_status(ticket: dict[str, Any], to: str, reason: str, ctx: Ctx) -> Change:
    """An agent moves the ticket (FailedPrecondition for a move the lifecycle has not)."""
    _writable(ticket)
    status = ticket["status"]
    reason = reason if to == "pending" else ""
    if to == status and reason == (ticket.get("pending_reason") or ""):
        return Change()
    if to not in TRANSITIONS[status]:
        allowed = ", ".join(sorted(TRANSITIONS[status])) or "none (closed is final)"
        raise FailedPrecondition(f"a {status} ticket cannot become {to} (it can become: {allowed})",
                                 {"ticket_id": ticket["_id"], "status": status})
    return _move(ticket, to, reason, ctx)


def _move(ticket: dict[str, Any], to: str, reason: str, ctx: Ctx) -> Change:
    status, sla = ticket["status"], sla_of(ticket)
    share, assignee = sla.warning_share, ticket.get("assignee")
    sets: dict[str, Any] = {"status": to, "pending_reason": reason}
    events: list[Event] = [_status_event(ticket, to, reason, ctx)]
    load: dict[str, int] = {}
    res = sla.clock(RESOLUTION)
    if to == "pending" and reason == "customer":
        res = res.pause(ctx.cal, ctx.now)
    elif to in ("open", "pending"):
        res = res.resume(ctx.cal, ctx.now, share)          # back from waiting on the customer, or reopened
    if to == "resolved":
        res = res.stop(ctx.cal, ctx.now)
        fr = sla.clock(FIRST_RESPONSE).stop(ctx.cal, ctx.now)
        sla = sla.with_clock(FIRST_RESPONSE, fr)
        sets.update(resolved_at=ctx.now, close_at=ctx.now + ctx.reopen_window)
        events += [TicketResolved(ticket_id=ticket["_id"], contact_id=ticket["contact_id"],
                                  ticket_subject=ticket["subject"], category=ticket["category"],
                                  priority=ticket["priority"], channel=ticket["channel"],
                                  group=ticket.get("group") or "", assignee=assignee or "",
                                  first_response_met=fr.met, resolution_met=res.met, resolved_at=ctx.now),
                   SatisfactionRequested(ticket_id=ticket["_id"], contact_id=ticket["contact_id"],
                                         channel=ticket["channel"], assignee=assignee or "", requested_at=ctx.now)]
        if assignee:
            load[assignee] = -1
    elif status == "resolved":                             # reopened
        sets.update(resolved_at=None, close_at=None, reopened_count=int(ticket.get("reopened_count") or 0) + 1)
        if assignee:
            load[assignee] = 1
    if to == "closed":
        sets.update(closed_at=ctx.now, close_at=None)
    sla = sla.with_clock(RESOLUTION, res)
    sets.update(_sla_sets(sla))
    return Change(sets, events, [_entry(ctx, "status", status, to, pending_reason=reason)], load=load)


def _status_event(ticket, to: str, reason: str, ctx: Ctx) -> TicketStatusChanged:
    return TicketStatusChanged(ticket_id=ticket["_id"], contact_id=ticket["contact_id"], from_status=ticket["status"],
                               to_status=to, pending_reason=reason, by=ctx.by, changed_at=ctx.now)


def close_expired(ticket: dict[str, Any], ctx: Ctx) -> Change:
    """The reopen window of a resolved ticket has passed: it is closed."""
    if ticket["status"] != "resolved" or not ticket.get("close_at") or ticket["close_at"] > ctx.now:
        return Change()
    return _move(ticket, "closed", "", ctx)


# -- assignment and priority -----------------------------------------------------------------------

def assign(ticket: dict[str, Any], group: str, assignee: str, reason: str, ctx: Ctx) -> Change:
    """Give the ticket to ``group`` and ``assignee`` ("" = the group's queue)."""
    _writable(ticket)
    if ticket["status"] not in ACTIVE:
        raise FailedPrecondition(f"a {ticket['status']} ticket is not assigned any more; reopen it first",
                                 {"ticket_id": ticket["_id"]})
    old_group, old_assignee = ticket.get("group") or "", ticket.get("assignee") or ""
    if (group, assignee) == (old_group, old_assignee):
        return Change()
    sets: dict[str, Any] = {"group": group, "assignee": assignee or None}
    events: list[Event] = [TicketAssigned(ticket_id=ticket["_id"], contact_id=ticket["contact_id"], group=group,
                                          assignee=assignee, previous_group=old_group,
                                          previous_assignee=old_assignee, reason=reason, assigned_at=ctx.now)]
    history = [_entry(ctx, "assignment", f"{old_group}/{old_assignee}", f"{group}/{assignee}", reason=reason)]
    if ticket["status"] == "new" and assignee:
        sets["status"] = "open"
        events.append(_status_event(ticket, "open", "", ctx))
        history.append(_entry(ctx, "status", "new", "open"))
    load = {a: n for a, n in ((old_assignee, -1), (assignee, 1)) if a}
    return Change(sets, events, history, load=load)


def change_priority(ticket: dict[str, Any], priority: str, policy: dict[str, Any] | None, customer: Customer,
                    ctx: Ctx, default_warning_percent: int, new_cal: Calendar | None = None) -> Change:
    """A new priority; the SLA targets follow it (elapsed time kept)."""
    _writable(ticket)
    if ticket["status"] not in ACTIVE:
        raise FailedPrecondition(f"a {ticket['status']} ticket's priority does not change any more",
                                 {"ticket_id": ticket["_id"]})
    if priority == ticket["priority"]:
        return Change()
    change = Change({"priority": priority}, [], [_entry(ctx, "priority", ticket["priority"], priority)])
    return change.merge(retarget(ticket, policy, customer, priority, ctx, default_warning_percent, new_cal))


# -- satisfaction ---------------------------------------------------------------------------------------

def record_csat(ticket: dict[str, Any], score: int, comment: str, ctx: Ctx) -> Change:
    """The customer's answer to the satisfaction request (once per ticket)."""
    _writable(ticket)
    if ticket["status"] not in ("resolved", "closed"):
        raise FailedPrecondition(f"ticket {ticket['_id']} is {ticket['status']}: satisfaction is asked once it is "
                                 "resolved", {"ticket_id": ticket["_id"]})
    if ticket.get("csat"):
        raise FailedPrecondition(f"ticket {ticket['_id']} was rated already", {"ticket_id": ticket["_id"]})
    sla = sla_of(ticket)
    event = CsatReceived(ticket_id=ticket["_id"], contact_id=ticket["contact_id"], score=score, comment=comment,
                         assignee=ticket.get("assignee") or "", group=ticket.get("group") or "",
                         channel=ticket["channel"], tier=sla.tier, received_at=ctx.now)
    return Change({"csat": {"score": score, "comment": comment, "at": ctx.now}}, [event],
                  [_entry(ctx, "csat", None, score)])


# -- erasure ------------------------------------------------------------------------------------------------

def anonymized(ticket: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The fields to set on a ticket of an erased contact: what people wrote is gone, the
    facts (times, statuses, targets, scores) stay for the reports."""
    sets: dict[str, Any] = {"subject": ERASED, "description": ERASED, "order_ref": None, "erased": True,
                            "updated_at": now}
    if ticket.get("csat"):
        sets["csat"] = {**ticket["csat"], "comment": ERASED if ticket["csat"].get("comment") else ""}
    return sets
