"""SLA and routing configuration RPCs (calendars, policies, groups, agents) and the
timer that publishes warnings and breaches and closes resolved tickets. Mixed into
ServiceDeskService (service.py)."""
from __future__ import annotations

import logging
import random

from nameko.timer import timer

from crm_common import audit, clock
from crm_common.errors import InvalidArgument, PermissionDenied
from crm_common.nameko.base import rpc

from .. import views
from ..settings import SLA_INTERVAL_SECONDS
from ..tickets import domain
from . import contracts as C
from .calendar import HORIZON_DAYS, Calendar, CalendarClosed, next_opening
from .store import AGENTS, CALENDARS, GROUPS, POLICIES

log = logging.getLogger(__name__)
BATCH = 200


class SlaEntrypoints:
    def _save(self, collection: str, record_type: str, doc: dict, **kw) -> dict:
        before = self.store.config.find(collection, doc["_id"]) or {}
        old, new = audit.changed({k: before.get(k) for k in doc if before}, doc)
        staged = self.outbox.audit(record_type, doc["_id"], "save", old, new)
        saved = self.store.config.save(collection, doc, staged, clock.now(), **kw)
        self.outbox.publish(self.store.db[collection], doc["_id"], staged)
        return saved

    @rpc(C.SaveCalendar)
    def save_calendar(self, req: C.SaveCalendar):
        c = req.calendar
        doc = {"_id": c.id, "name": c.name, "time_zone": c.time_zone, "hours": [h.model_dump() for h in c.hours],
               "holidays": sorted(set(c.holidays))}
        try:
            next_opening(Calendar.from_doc(doc), clock.now())
        except CalendarClosed:
            raise InvalidArgument.field("calendar.holidays", f"close the calendar for more than "
                                                             f"{HORIZON_DAYS} days: it would never open") from None
        return views.calendar_view(self._save(CALENDARS, "calendar", doc))

    @rpc(C.ListCalendars)
    def list_calendars(self, req: C.ListCalendars):
        return {"calendars": [views.calendar_view(d) for d in self.store.config.all(CALENDARS)]}

    @rpc(C.SaveSlaPolicy)
    def save_sla_policy(self, req: C.SaveSlaPolicy):
        p = req.policy
        if p.calendar_id and self.store.config.find(CALENDARS, p.calendar_id) is None:
            raise InvalidArgument.field("policy.calendar_id", f"no calendar {p.calendar_id}")
        doc = {"_id": p.id, "name": p.name, "tiers": sorted(set(p.tiers)), "segments": sorted(set(p.segments)),
               "calendar_id": p.calendar_id, "warning_percent": p.warning_percent,
               "targets": [t.model_dump() for t in sorted(p.targets, key=lambda t: domain.PRIORITIES.index(t.priority))]}
        return views.policy_view(self._save(POLICIES, "sla_policy", doc))

    @rpc(C.ListSlaPolicies)
    def list_sla_policies(self, req: C.ListSlaPolicies):
        return {"policies": [views.policy_view(d) for d in self.store.config.all(POLICIES)]}

    @rpc(C.SaveGroup)
    def save_group(self, req: C.SaveGroup):
        g = req.group
        doc = {"_id": g.id, "name": g.name, "categories": sorted(set(g.categories)),
               "channels": sorted(set(g.channels)), "escalation_group": g.escalation_group}
        return views.group_view(self._save(GROUPS, "group", doc))

    @rpc(C.ListGroups)
    def list_groups(self, req: C.ListGroups):
        return {"groups": [views.group_view(d) for d in self.store.config.all(GROUPS)]}

    @rpc(C.SaveAgent)
    def save_agent(self, req: C.SaveAgent):
        a = req.agent
        doc = {"_id": a.id, "name": a.name, "groups": sorted(set(a.groups)), "available": a.available,
               "max_open": a.max_open}
        return views.agent_view(self._save(AGENTS, "agent", doc, on_insert={"open_count": 0,
                                                                              "last_assigned_at": None}))

    @rpc(C.SetAgentAvailability)
    def set_agent_availability(self, req: C.SetAgentAvailability):
        access = self.caller.access
        if access and access.scope == "own" and req.agent_id != access.principal.id:
            raise PermissionDenied(f"you may set your own availability only (agent_id '{access.principal.id}')",
                                   {"agent_id": req.agent_id})
        agent = self.store.config.get(AGENTS, req.agent_id)
        return views.agent_view(self._save(AGENTS, "agent", {"_id": agent["_id"], "available": req.available}))

    @rpc(C.ListAgents)
    def list_agents(self, req: C.ListAgents):
        query = {"groups": req.group} if req.group else None
        return {"agents": [views.agent_view(d) for d in self.store.config.all(AGENTS, query)]}

    # -- timers ------------------------------------------------------------------------------
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
