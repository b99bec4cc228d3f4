"""Entrypoints of the sales team directory: salespeople, territories, and the lead
assignment the rest of the service asks for (:meth:`TeamEntrypoints._assign`)."""
from __future__ import annotations

from typing import Any

from crm_common import audit, clock, paging
from crm_common.errors import InvalidArgument, NotFound
from crm_common.nameko.base import rpc
from crm_common.retry import on_conflict

from . import contracts as C
from . import domain
from .views import rep_view, territory_view


class TeamEntrypoints:
    """Mixed into SalesService (service.py): ``self.store.team`` is the TeamStore."""

    def _default_capacity(self) -> int:
        return int(self.config.get("SALES_DEFAULT_LEAD_CAPACITY") or domain.DEFAULT_CAPACITY)

    def _rep_view(self, doc: dict[str, Any]) -> dict[str, Any]:
        return rep_view(doc, self._default_capacity())

    # -- reps -------------------------------------------------------------------------
    @rpc(C.UpsertSalesRep)
    @on_conflict()
    def upsert_sales_rep(self, req: C.UpsertSalesRep):
        before = self.store.team.rep(req.rep_id)
        fields = {"_id": req.rep_id, "display_name": req.display_name, "team": req.team,
                  "lead_capacity": req.lead_capacity, "time_zone": req.time_zone, "active": True}
        now = clock.now()
        old = self._rep_view(before) if before else {}
        after = self._rep_view({**(before or {"open_leads": 0, "created_at": now, "version": 0}), **fields,
                                "updated_at": now, "version": (before or {"version": 0})["version"] + 1})
        changed = audit.changed(old, after, ("display_name", "team", "lead_capacity", "time_zone", "active"))
        if before is not None and not changed[1]:
            return old
        staged = self.outbox.audit("sales_rep", req.rep_id, "update" if before else "create", *changed)
        doc = self.store.team.save_rep(before, fields, staged, now)
        self.outbox.publish(self.store.team.reps, req.rep_id, staged)
        return self._rep_view(doc)

    @rpc(C.DeactivateSalesRep)
    def deactivate_sales_rep(self, req: C.DeactivateSalesRep):
        """Deactivates the rep, then hands what they own to others: open leads by the
        assignment rules, open deals and activities by their team's turn (the
        ``reassign_orphans`` timer finishes the job if this call is cut short)."""
        self._set_inactive(req.rep_id)
        moved = self._reassign_from(req.rep_id)
        return {"rep": self._rep_view(self.store.team.get_rep(req.rep_id)), **moved}

    @on_conflict()
    def _set_inactive(self, rep_id: str) -> dict[str, Any]:
        before = self.store.team.get_rep(rep_id)
        if not before.get("active"):
            return before
        now = clock.now()
        staged = self.outbox.audit("sales_rep", rep_id, "deactivate", {"active": True}, {"active": False})
        doc = self.store.team.save_rep(before, {"active": False, "deactivated_at": now}, staged, now)
        self.outbox.publish(self.store.team.reps, rep_id, staged)
        return doc

    @rpc(C.GetSalesRep)
    def get_sales_rep(self, req: C.GetSalesRep):
        return self._rep_view(self.store.team.get_rep(req.rep_id))

    @rpc(C.ListSalesReps)
    def list_sales_reps(self, req: C.ListSalesReps):
        cursor = paging.decode(req.page_token, id=str)
        docs = self.store.team.list_reps(req.team, cursor and cursor["id"], req.size + 1)
        page, token = paging.page(docs, req.size, lambda d: {"id": d["_id"]})
        return {"reps": [self._rep_view(d) for d in page], "next_page_token": token}

    # -- territories --------------------------------------------------------------------
    @rpc(C.SetTerritory)
    def set_territory(self, req: C.SetTerritory):
        before = self.store.team.territory(req.name)
        doc = {"_id": req.name, "countries": sorted(set(req.countries)), "regions": list(dict.fromkeys(req.regions)),
               "team": req.team, "rank": req.rank}
        old, new = audit.changed(territory_view(before) if before else {}, territory_view(doc))
        staged = self.outbox.audit("territory", req.name, "update" if before else "create", old, new)
        self.store.team.set_territory(doc, staged, clock.now())
        self.outbox.publish(self.store.team.territories, req.name, staged)
        return territory_view(doc)

    @rpc(C.DeleteTerritory)
    def delete_territory(self, req: C.DeleteTerritory):
        before = self.store.team.territory(req.name)
        if before is None:
            raise NotFound(f"no territory {req.name!r}", {"name": req.name})
        staged = self.outbox.audit("territory", req.name, "delete", territory_view(before), {})
        if self.store.team.delete_territory(req.name, staged, clock.now()):
            self.outbox.publish(self.store.team.territories, req.name, staged)
        return territory_view(before)

    @rpc(C.ListTerritories)
    def list_territories(self, req: C.ListTerritories):
        docs = sorted(self.store.team.all_territories(), key=lambda t: (t.get("rank", 0), t["_id"]))
        return {"territories": [territory_view(d) for d in docs]}

    # -- assignment (for leads) -----------------------------------------------------------
    def _assign(self, country: str | None, region: str | None, *, exclude: str | None = None
                ) -> tuple[str, str, str]:
        """``(owner, team, reason)`` for a lead from ``country``/``region``: the territory's
        team, then the first rep in the team's round-robin turn with room for one more open
        lead (the slot is taken: give it back if the lead is not stored). No territory, or
        nobody with room: no owner (the team's queue; the ``assign_waiting_leads`` timer
        tries again)."""
        territory = domain.territory_for(country, region, self.store.team.all_territories())
        if territory is None:
            return "", "", "no_territory"
        return self._next_in_team(territory["team"], exclude=exclude, reason="territory")

    def _next_in_team(self, team: str, *, exclude: str | None = None, reason: str,
                      take_slot: bool = True) -> tuple[str, str, str]:
        reps = [r for r in self.store.team.team_reps(team) if r["_id"] != exclude]
        order = domain.turn_order(reps, self.store.team.next_turn(team))
        for rep in order:
            if not take_slot or self.store.team.take_slot(rep, self._default_capacity()):
                return rep["_id"], team, reason
        return "", team, "no_capacity"

    def _manual_owner(self, owner: str) -> tuple[str, str]:
        """An owner given by hand must be an active rep; returns ``(owner, team)``."""
        rep = self.store.team.rep(owner)
        if rep is None or not rep.get("active"):
            raise InvalidArgument.field("owner", f"{owner} is not an active salesperson of the sales team directory")
        return owner, rep["team"]
