"""SLA and routing configuration RPCs: calendars, policies, groups, agents. Mixed into
ServiceDeskService (service.py)."""
from __future__ import annotations

from crm_common import audit, clock
from crm_common.errors import InvalidArgument, PermissionDenied
from crm_common.nameko.base import rpc

from .. import views
from . import contracts as C
from .policies import PRIORITIES
from .calendar import HORIZON_DAYS, Calendar, CalendarClosed, next_opening
from .store import AGENTS, CALENDARS, GROUPS, POLICIES



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
               "targets": [t.model_dump() for t in sorted(p.targets, key=lambda t: PRIORITIES.index(t.priority))]}
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
