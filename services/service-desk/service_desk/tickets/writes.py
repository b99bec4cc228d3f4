"""How a ticket change is written, in one place: read the ticket, let a rule of
tickets.domain compute the Change, settle the SLA (warnings and breaches that fell due
are marked and announced in the same write), write it guarded by the version read
(a conflict re-reads and recomputes), add the message, publish, move the agents'
counters. Every RPC and timer that changes a ticket goes through :meth:`TicketWrites.apply`.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from crm_common import audit, clock
from crm_common.events import Event
from crm_common.ids import derived_id
from crm_common.retry import on_conflict

from ..events import TicketEscalated, TicketSlaBreached, TicketSlaWarning
from ..metrics import observe_events
from ..settings import Settings
from ..sla.calendar import Calendar
from ..sla.store import CALENDARS, GROUPS
from . import domain
from .domain import Change, Ctx
from .store import STAGED

log = logging.getLogger(__name__)

# What a ticket's audit entries show the before and after of.
AUDITED = ("status", "pending_reason", "group", "assignee", "priority", "escalated", "csat", "subject", "category")
# Alerts and their escalation are announced once per ticket and target, whoever writes them.
ONCE_PER_TARGET = {TicketSlaWarning.type, TicketSlaBreached.type, TicketEscalated.type}


def event_id(ticket_id: str, version: int, event: Event, n: int) -> str:
    if event.type in ONCE_PER_TARGET:
        return derived_id("evt", ticket_id, event.type, getattr(event, "target"))
    return derived_id("evt", ticket_id, str(version), event.type, str(n))


class TicketWrites:
    def __init__(self, service):
        self.service = service
        self.store = service.store
        self.outbox = service.outbox
        self.settings: Settings = service.settings()
        self.wrote = False          # whether the last apply wrote the ticket

    # -- what a rule needs ------------------------------------------------------------
    def calendar(self, calendar_id: str | None) -> Calendar:
        doc = self.store.config.find(CALENDARS, calendar_id)
        if calendar_id and doc is None:
            log.warning("calendar %s of a policy is gone: counting every hour", calendar_id)
        return Calendar.from_doc(doc)

    def ctx(self, ticket: dict[str, Any] | None, by: str | None = None) -> Ctx:
        sla = domain.sla_of(ticket) if ticket else None
        escalation = self.settings.escalation_group
        now = clock.now()
        if ticket and sla.alerts(now):
            group = self.store.config.find(GROUPS, ticket.get("group"))
            escalation = (group or {}).get("escalation_group") or escalation
        principal = self.outbox.principal
        return Ctx(now=now, by=by or (principal.subject if principal else "service:service-desk"),
                   cal=self.calendar(sla.calendar_id if sla else None), reopen_window=self.settings.reopen_window,
                   escalation_group=escalation)

    # -- the write ------------------------------------------------------------------------
    def apply(self, ticket_id: str, rule: Callable[[dict[str, Any], Ctx], Change], operation: str, *,
              scope: dict[str, Any] | None = None, claimed: str | None = None) -> dict[str, Any]:
        """Apply ``rule`` to the ticket; returns the ticket as written (or as it was, when
        the rule changed nothing). ``claimed``: an agent whose slot the caller already
        took for this change (round-robin), released if the change does not happen."""
        try:
            return self._apply(ticket_id, rule, operation, scope, claimed)
        except BaseException:
            if claimed:
                self.store.config.add_load(claimed, -1)
            raise

    @on_conflict()
    def _apply(self, ticket_id, rule, operation, scope, claimed) -> dict[str, Any]:
        ticket = self.store.tickets.get(ticket_id, scope)
        ctx = self.ctx(ticket)
        change = domain.settled(ticket, rule(ticket, ctx), ctx)
        if not (change.sets or change.events or change.message):
            if claimed:
                self.store.config.add_load(claimed, -1)
            return ticket
        version = ticket["version"] + 1
        staged = self.stage(ticket, change, version, operation)
        after = self.store.tickets.write(ticket, change, staged, ctx.now)
        self.wrote = True
        self.finish(after, change, staged, claimed)
        return after

    def stage(self, ticket: dict[str, Any], change: Change, version: int, operation: str, *,
              created: bool = False) -> list[dict[str, Any]]:
        """The envelopes a change stages: its events and its audit entry (a new ticket's
        entry has no before)."""
        staged = []
        for n, event in enumerate(change.events):
            staged += self.outbox.announce(event, event_id=event_id(ticket["_id"], version, event, n))
        if created:
            before, after = {}, {k: v for k, v in _audited(ticket).items() if v not in (None, "", False)}
        else:
            before, after = audit.changed(_audited(ticket), _audited({**ticket, **change.sets}))
        if change.message:
            after = {**after, "message_id": change.message["_id"], "internal": change.message["internal"]}
        if before or after:
            staged += self.outbox.audit("ticket", ticket["_id"], operation, before, after,
                                        contact_id=ticket["contact_id"])
        return staged

    def finish(self, ticket: dict[str, Any], change: Change, staged: list[dict[str, Any]],
               claimed: str | None = None) -> None:
        """After the write: the message into the conversation, the events out, the
        counters moved (a claimed slot is already counted)."""
        also = None
        if change.message:
            self.store.tickets.add_message(change.message)
            also = {STAGED: [change.message["_id"]]}
        self.outbox.publish(self.store.tickets.tickets, ticket["_id"], staged, also=also)
        observe_events(change.events, ticket)
        for agent, n in change.load.items():
            if agent == claimed:
                n -= 1
            if n:
                self.store.config.add_load(agent, n)


def _audited(ticket: dict[str, Any]) -> dict[str, Any]:
    out = {k: ticket.get(k) for k in AUDITED}
    if out.get("csat"):
        out["csat"] = {"score": out["csat"].get("score"), "comment": out["csat"].get("comment")}
    out["sla_policy"] = (ticket.get("sla") or {}).get("policy_id")
    return out
