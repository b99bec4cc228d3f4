"""The ticket RPCs (open, read, converse, move, assign, rate) and the timer that
publishes due SLA warnings and breaches and closes resolved tickets. Mixed into
ServiceDeskService (service.py); the rules are tickets.domain, the write is
tickets.writes.

Scopes (access.toml): a ticket's owner is its ``assignee`` and its team its ``group``; a
support agent's grant is ``team`` (their group's queue and tickets), a lead's ``all``.
A ticket outside the caller's scope is not found, as if it did not exist.
"""
from __future__ import annotations

import logging
import random
from typing import Any

from nameko.timer import timer

from crm_common import clock, paging
from crm_common.errors import FailedPrecondition, InvalidArgument
from crm_common.ids import new_id
from crm_common.nameko.base import rpc

from ..settings import SLA_INTERVAL_SECONDS
from ..sla import policies
from ..sla.store import AGENTS, GROUPS, POLICIES
from ..views import customer_message_view, message_view, ticket_view
from . import assignment, contracts as C, domain
from .domain import Customer
from .writes import TicketWrites

log = logging.getLogger(__name__)
BATCH = 200   # due tickets a timer run reads at a time


class TicketEntrypoints:
    # -- helpers -------------------------------------------------------------------------
    def _writes(self) -> TicketWrites:
        return TicketWrites(self)

    def _scope(self) -> dict[str, Any]:
        access = self.caller.access
        return access.owner_filter("assignee", "group") if access else {}

    def _view(self, ticket: dict[str, Any]) -> dict[str, Any]:
        name = ticket.get("_customer_name")
        if name is None:
            name = self.store.customers.names([ticket["contact_id"]]).get(ticket["contact_id"], "")
        return ticket_view(ticket, name)

    def _who(self) -> str:
        principal = self.outbox.principal
        return principal.id if principal else "service-desk"

    def _policy_for(self, customer: Customer, priority: str) -> dict[str, Any] | None:
        return policies.choose(self.store.config.all(POLICIES), customer.tier, customer.segment, priority)

    def _route(self, category: str, channel: str, group: str | None = None) -> tuple[str, str, str, str | None]:
        """(group, assignee, reason, the agent whose slot was claimed): the group by the
        routing rules (unless given), then round-robin under the cap."""
        settings = self.settings()
        reason = "manual" if group else "routing"
        group = group or assignment.route(self.store.config.all(GROUPS), category, channel, settings.default_group)
        agents = self.store.config.all(AGENTS, {"groups": group})
        now = clock.now()
        for agent in assignment.candidates(agents, group, settings.max_open_per_agent):
            if self.store.config.claim_slot(agent["_id"], assignment.cap_of(agent, settings.max_open_per_agent), now):
                return group, agent["_id"], "round_robin", agent["_id"]
        return group, "", reason if reason == "manual" else "queued", None

    def _open(self, ticket_id: str, fields: dict[str, Any], contact_id: str) -> dict[str, Any]:
        """Open (or, replayed with the same id, return) a ticket; shared with the bot's handoff."""
        if self.store.customers.is_erased(contact_id):
            raise FailedPrecondition(f"contact {contact_id} was erased", {"contact_id": contact_id})
        writes = self._writes()
        customer = self.store.customers.get(contact_id)
        policy = self._policy_for(customer, fields["priority"])
        cal = writes.calendar((policy or {}).get("calendar_id"))
        ctx = domain.Ctx(clock.now(), self.outbox.principal.subject if self.outbox.principal else "service:service-desk",
                         cal, writes.settings.reopen_window, writes.settings.escalation_group)
        group, assignee, reason, claimed = self._route(fields["category"], fields["channel"])
        try:
            sla = domain.start_sla(policy, customer, fields["priority"], cal, ctx.now, writes.settings.warning_percent)
            doc, change = domain.new_ticket(ticket_id, fields, customer, sla, group, assignee, reason, ctx)
            staged = writes.stage(doc, change, 1, "open", created=True)
            inserted = self.store.tickets.insert(doc, staged)
        except BaseException:
            if claimed:
                self.store.config.add_load(claimed, -1)
            raise
        if not inserted:
            if claimed:
                self.store.config.add_load(claimed, -1)
            return self.store.tickets.get(ticket_id)
        writes.finish(doc, change, staged, claimed)
        if self.store.customers.is_erased(contact_id):   # an erasure raced the opening: it wins
            self._anonymize_tickets(contact_id)
            return self.store.tickets.get(ticket_id)
        return {**doc, "_customer_name": customer.display_name}

    # -- RPC -------------------------------------------------------------------------------
    @rpc(C.OpenTicket)
    def open_ticket(self, req: C.OpenTicket):
        fields = {"subject": req.subject, "description": req.description, "category": req.category,
                  "priority": req.priority, "channel": req.channel, "order_ref": req.order_ref}
        return self._view(self._open(new_id("tkt"), fields, req.contact_id))

    @rpc(C.GetTicket)
    def get_ticket(self, req: C.GetTicket):
        return self._view(self.store.tickets.get(req.ticket_id, self._scope()))

    @rpc(C.ListTickets)
    def list_tickets(self, req: C.ListTickets):
        cursor = paging.decode(req.page_token, id=str)
        query = {k: v for k, v in (("status", req.status), ("group", req.group), ("assignee", req.assignee),
                                   ("contact_id", req.contact_id), ("priority", req.priority)) if v}
        for key, value in self._scope().items():
            if query.setdefault(key, value) != value:
                return {"tickets": [], "next_page_token": ""}   # asks for what the scope hides
        docs = self.store.tickets.list(query, cursor and cursor["id"], req.size + 1)
        page, token = paging.page(docs, req.size, lambda d: {"id": d["_id"]})
        names = self.store.customers.names([d["contact_id"] for d in page])
        return {"tickets": [ticket_view(d, names.get(d["contact_id"], "")) for d in page], "next_page_token": token}

    @rpc(C.ReplyToTicket)
    def reply_to_ticket(self, req: C.ReplyToTicket):
        message_id, author = new_id("msg"), self._who()
        ticket, message = self._converse(req.ticket_id, lambda t, ctx: domain.agent_reply(
            t, message_id, author, req.body, req.internal, ctx), "note" if req.internal else "reply", self._scope())
        return {"ticket": self._view(ticket), "message": message_view(message)}

    @rpc(C.RecordCustomerReply)
    def record_customer_reply(self, req: C.RecordCustomerReply):
        message_id = new_id("msg")
        ticket, message = self._converse(req.ticket_id, lambda t, ctx: domain.customer_reply(
            t, message_id, req.body, ctx), "customer_reply", None)
        return {"ticket": self._view(ticket), "message": customer_message_view(message)}

    def _converse(self, ticket_id: str, rule, operation: str, scope) -> tuple[dict[str, Any], dict[str, Any]]:
        """Apply a rule that adds a message; the ticket and the message as written."""
        written: list[dict[str, Any]] = []

        def keeping(ticket, ctx):
            change = rule(ticket, ctx)
            written[:] = [change.message]
            return change
        return self._writes().apply(ticket_id, keeping, operation, scope=scope), written[-1]

    @rpc(C.ListMessages)
    def list_messages(self, req: C.ListMessages):
        self.store.tickets.get(req.ticket_id, self._scope())
        return self._messages(req, public_only=False, view=message_view)

    @rpc(C.ListCustomerMessages)
    def list_customer_messages(self, req: C.ListCustomerMessages):
        self.store.tickets.get(req.ticket_id)
        return self._messages(req, public_only=True, view=customer_message_view)

    def _messages(self, req, *, public_only: bool, view) -> dict[str, Any]:
        cursor = paging.decode(req.page_token, seq=int)
        docs = self.store.tickets.list_messages(req.ticket_id, cursor["seq"] if cursor else 0, req.size + 1,
                                                public_only=public_only)
        page, token = paging.page(docs, req.size, lambda d: {"seq": d["seq"]})
        return {"messages": [view(d) for d in page], "next_page_token": token}

    @rpc(C.ChangeTicketStatus)
    def change_ticket_status(self, req: C.ChangeTicketStatus):
        ticket = self._writes().apply(req.ticket_id, lambda t, ctx: domain.change_status(t, req.status,
                                                                                         req.pending_reason, ctx),
                                      "status", scope=self._scope())
        return self._view(ticket)

    @rpc(C.AssignTicket)
    def assign_ticket(self, req: C.AssignTicket):
        current = self.store.tickets.get(req.ticket_id, self._scope())
        if current["status"] not in domain.ACTIVE:
            raise FailedPrecondition(f"a {current['status']} ticket is not assigned any more; reopen it first",
                                     {"ticket_id": req.ticket_id})
        group = req.group or current.get("group")
        if req.group and self.store.config.find(GROUPS, req.group) is None and req.group != self.settings().default_group:
            raise InvalidArgument.field("group", f"no group {req.group}")
        claimed, reason, assignee = None, "manual", req.assignee
        if assignee:
            agent = self.store.config.find(AGENTS, assignee)
            if agent is None:
                raise InvalidArgument.field("assignee", f"no agent {assignee}")
            if group not in (agent.get("groups") or ()):
                raise FailedPrecondition(f"agent {assignee} does not work in group {group}",
                                         {"assignee": assignee, "group": group})
        else:
            group, assignee, reason, claimed = self._route(current["category"], current["channel"], group)
        ticket = self._writes().apply(req.ticket_id, lambda t, ctx: domain.assign(t, group, assignee, reason, ctx),
                                      "assign", scope=self._scope(), claimed=claimed)
        return self._view(ticket)

    @rpc(C.ChangeTicketPriority)
    def change_ticket_priority(self, req: C.ChangeTicketPriority):
        def rule(ticket, ctx):
            customer = self.store.customers.get(ticket["contact_id"])
            policy = self._policy_for(customer, req.priority)
            return domain.change_priority(ticket, req.priority, policy, customer, ctx, self.settings().warning_percent,
                                          self._writes().calendar((policy or {}).get("calendar_id")))
        return self._view(self._writes().apply(req.ticket_id, rule, "priority", scope=self._scope()))

    @rpc(C.RecordSatisfaction)
    def record_satisfaction(self, req: C.RecordSatisfaction):
        ticket = self._writes().apply(req.ticket_id, lambda t, ctx: domain.record_csat(t, req.score, req.comment, ctx),
                                      "satisfaction")
        return self._view(ticket)

    # -- the timer ------------------------------------------------------------------------------
    @rpc
    def run_due_timers(self):
        """Publish the SLA warnings and breaches that have fallen due and close resolved
        tickets whose reopen window ended. Safe with several replicas: each ticket's write
        is guarded by the version read, so one replica writes (and publishes) it; the
        other re-reads and finds nothing due. Returns what THIS call wrote."""
        alerts = closed = 0
        for field, rule in (("sla_due_at", lambda t, ctx: domain.Change()),
                            ("close_at", domain.close_expired)):
            while True:
                ids = self.store.tickets.due(field, clock.now(), BATCH)
                random.shuffle(ids)   # two replicas on one batch: start at different ends
                wrote = 0
                for ticket_id in ids:
                    writes = self._writes()
                    writes.apply(ticket_id, rule, "sla" if field == "sla_due_at" else "close")
                    wrote += writes.wrote
                alerts += wrote if field == "sla_due_at" else 0
                closed += wrote if field == "close_at" else 0
                if len(ids) < BATCH or not wrote:
                    break
        return {"tickets_alerted": alerts, "tickets_closed": closed}

    @timer(interval=SLA_INTERVAL_SECONDS)
    def sla_timer(self):
        result = self.run_due_timers()
        if result["tickets_closed"]:
            log.info("closed %(tickets_closed)d resolved tickets whose reopen window ended", result)

    # -- erasure (contacts.contact_erased) ------------------------------------------------------
    def _anonymize_tickets(self, contact_id: str) -> int:
        now = clock.now()
        n = 0
        for ticket in self.store.tickets.of_contact(contact_id):
            # the version moves too: a change racing this one re-reads and finds the ticket erased
            self.store.tickets.tickets.update_one({"_id": ticket["_id"]}, {"$set": domain.anonymized(ticket, now),
                                                                          "$inc": {"version": 1}})
            n += 1
        self.store.tickets.anonymize_messages(contact_id, now)
        return n
