"""Entrypoints of pipelines, deals, the forecast and the sales reports."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from prometheus_client import Counter

from crm_common import audit, clock, contracts, paging
from crm_common.errors import InvalidArgument, NotFound, VersionConflict
from crm_common.ids import new_id
from crm_common.nameko.base import rpc
from crm_common.nameko.remote import call
from crm_common.retry import on_conflict

from ..events import DealCreated, DealLost, DealReopened, DealStageChanged, DealWon
from . import contracts as C
from . import domain, forecast
from .views import deal_view, pipeline_view

DEALS_CLOSED = Counter("crm_sales_deals_closed_total", "Deals won or lost", ["outcome"])
for _outcome in ("won", "lost"):
    DEALS_CLOSED.labels(_outcome)   # at zero from the start: increase() sees the first one
AUDITED = ("name", "amount", "expected_close_date", "products", "company_id", "owner", "team", "stage_id", "status",
           "won", "lost")


class DealEntrypoints:
    """Mixed into SalesService (service.py): ``self.store.deals`` is the DealStore."""

    # -- helpers --------------------------------------------------------------------------
    def _deal_view(self, doc: dict[str, Any]) -> dict[str, Any]:
        return deal_view(doc, self.store.deals.all_pipelines().get(doc["pipeline_id"]))

    def _write_deal(self, deal: dict[str, Any], sets: dict[str, Any], operation: str, announce) -> dict[str, Any]:
        """One guarded write of ``sets`` with the events ``announce(view_after)`` returns
        and the audit entry of what changed; then publish. Returns the view after."""
        now = clock.now()
        after = {**deal, **sets, "updated_at": now, "version": deal["version"] + 1}
        view = self._deal_view(after)
        staged = [e for event in announce(view) for e in self.outbox.announce(event)]
        staged += self.outbox.audit("deal", deal["_id"], operation,
                                    *audit.changed(self._deal_view(deal), view, AUDITED), contact_id=deal["contact_id"],
                                    owner=after.get("owner"), team=after.get("team"))
        self.store.deals.update(deal, sets, staged, now)
        self.outbox.publish(self.store.deals.deals, deal["_id"], staged)
        return view

    def _require_company(self, company_id: str, field: str) -> None:
        try:
            call(self.contacts_rpc, "get_company", company_id=company_id)
        except NotFound:
            raise NotFound(f"{field}: no company {company_id}", {"field": field, "company_id": company_id}) from None

    # -- pipelines ----------------------------------------------------------------------
    @rpc(C.CreatePipeline)
    def create_pipeline(self, req: C.CreatePipeline):
        now = clock.now()
        doc = {"_id": new_id("pip"), "name": req.name, "default": False,
               "stages": [s.model_dump() for s in req.stages], "created_at": now, "updated_at": now, "version": 1}
        staged = self.outbox.audit("pipeline", doc["_id"], "create", {}, pipeline_view(doc))
        if self.store.deals.insert_pipeline(doc, staged):
            self.outbox.publish(self.store.deals.pipelines, doc["_id"], staged)
        return pipeline_view(self.store.deals.pipeline(doc["_id"]))

    @rpc(C.GetPipeline)
    def get_pipeline(self, req: C.GetPipeline):
        return pipeline_view(self.store.deals.pipeline(req.pipeline_id))

    @rpc(C.ListPipelines)
    def list_pipelines(self, req: C.ListPipelines):
        docs = sorted(self.store.deals.all_pipelines().values(), key=lambda p: (not p.get("default"), p["_id"]))
        return {"pipelines": [pipeline_view(d) for d in docs]}

    # -- deals --------------------------------------------------------------------------
    @rpc(C.CreateDeal)
    def create_deal(self, req: C.CreateDeal):
        fields = contracts.dump(req.deal)
        self._require_contact(fields["contact_id"], "deal.contact_id")
        if fields.get("company_id"):
            self._require_company(fields["company_id"], "deal.company_id")
        return self._open_deal(fields, deal_id=new_id("deal"), owner=req.deal.owner, prefix="deal")

    def _open_deal(self, fields: dict[str, Any], *, deal_id: str, owner: str | None, prefix: str,
                   lead_id: str | None = None) -> dict[str, Any]:
        """Store a new deal (or find it, when ``deal_id`` exists already: a replay)."""
        pipeline = self.store.deals.pipeline(fields.get("pipeline_id"), f"{prefix}.pipeline_id")
        stage = domain.stage(pipeline, fields.get("stage_id"), f"{prefix}.stage_id")
        owner, team = self._owner_and_team(owner, f"{prefix}.owner")
        now = clock.now()
        doc = domain.new_deal(deal_id, {**fields, "lead_id": lead_id}, pipeline, stage["id"], owner, team, now,
                              self._by())
        view = deal_view(doc, pipeline)
        staged = self.outbox.announce(DealCreated(deal_id=deal_id, contact_id=doc["contact_id"], deal=view))
        staged += self.outbox.audit("deal", deal_id, "create", {}, view, contact_id=doc["contact_id"], owner=owner,
                                    team=team)
        if not self.store.deals.insert(doc, staged):
            return self._deal_view(self.store.deals.find(deal_id))
        self.outbox.publish(self.store.deals.deals, deal_id, staged)
        return view

    @rpc(C.GetDeal)
    def get_deal(self, req: C.GetDeal):
        return self._deal_view(self.store.deals.get(req.deal_id, self._scope()))

    @rpc(C.ListDeals)
    def list_deals(self, req: C.ListDeals):
        cursor = paging.decode(req.page_token, id=str)
        filters = {"status": req.status, "owner": req.owner, "pipeline_id": req.pipeline_id,
                   "stage_id": req.stage_id, "contact_id": req.contact_id}
        docs = self.store.deals.page(filters, self._scope(), cursor and cursor["id"], req.size + 1)
        page, token = paging.page(docs, req.size, lambda d: {"id": d["_id"]})
        return {"deals": [self._deal_view(d) for d in page], "next_page_token": token}

    @rpc(C.UpdateDeal)
    def update_deal(self, req: C.UpdateDeal):
        mask = list(dict.fromkeys(req.update_mask))
        changes = contracts.parse(C.DealChanges, {p: req.deal.get(p) for p in mask}, prefix="deal")
        for required in ("name", "amount"):
            if required in mask and getattr(changes, required) is None:
                raise InvalidArgument.field(f"deal.{required}", "is required")
        deal = self.store.deals.get(req.deal_id, self._scope())
        if deal["version"] != req.expected_version:
            raise self._stale(deal, req.expected_version)
        values = contracts.dump(changes)
        sets = {p: values[p] for p in mask if values[p] != deal.get(p)}
        if "owner" in sets:
            sets["owner"], sets["team"] = self._owner_and_team(changes.owner, "deal.owner")
        if sets.get("company_id"):
            self._require_company(sets["company_id"], "deal.company_id")
        if not sets:
            return self._deal_view(deal)
        return self._write_deal(deal, sets, "update", lambda view: [])

    def _stale(self, deal: dict[str, Any], expected: int) -> VersionConflict:
        return VersionConflict(f"deal {deal['_id']} is at version {deal['version']}, not {expected}; "
                               "reload it and apply your change again",
                               {"deal_id": deal["_id"], "current_version": deal["version"]})

    @rpc(C.MoveDeal)
    @on_conflict()
    def move_deal(self, req: C.MoveDeal):
        deal = self.store.deals.get(req.deal_id, self._scope())
        if req.expected_version and deal["version"] != req.expected_version:
            raise self._stale(deal, req.expected_version)
        pipeline = self.store.deals.pipeline(deal["pipeline_id"])
        sets = domain.move(deal, pipeline, req.stage_id, clock.now(), self._by())
        if not sets:
            return self._deal_view(deal)
        return self._write_deal(deal, sets, "move", lambda view: [DealStageChanged(
            deal_id=deal["_id"], contact_id=deal["contact_id"], deal=view, from_stage=deal["stage_id"],
            to_stage=req.stage_id, changed_at=clock.now())])

    @rpc(C.WinDeal)
    @on_conflict()
    def win_deal(self, req: C.WinDeal):
        deal = self.store.deals.get(req.deal_id, self._scope())
        if deal["status"] == domain.WON and (deal.get("won") or {}).get("order_id") == req.order_id:
            return self._deal_view(deal)   # a retry
        if req.order_id:
            self._require_order_of(req.order_id, deal["contact_id"], "order_id")
        now = clock.now()
        view = self._write_deal(deal, domain.win(deal, req.order_id, req.note, now, self._by()), "win",
                                lambda view: [DealWon(deal_id=deal["_id"], contact_id=deal["contact_id"], deal=view,
                                                      order_id=req.order_id, won_at=now)])
        DEALS_CLOSED.labels("won").inc()
        return view

    @rpc(C.LoseDeal)
    @on_conflict()
    def lose_deal(self, req: C.LoseDeal):
        deal = self.store.deals.get(req.deal_id, self._scope())
        if deal["status"] == domain.LOST and (deal.get("lost") or {}).get("reason") == req.reason:
            return self._deal_view(deal)   # a retry
        now = clock.now()
        view = self._write_deal(deal, domain.lose(deal, req.reason, req.note, now, self._by()), "lose",
                                lambda view: [DealLost(deal_id=deal["_id"], contact_id=deal["contact_id"], deal=view,
                                                       reason=req.reason, note=req.note or "", lost_at=now)])
        DEALS_CLOSED.labels("lost").inc()
        return view

    @rpc(C.ReopenDeal)
    @on_conflict()
    def reopen_deal(self, req: C.ReopenDeal):
        deal = self.store.deals.get(req.deal_id, self._scope())
        pipeline = self.store.deals.pipeline(deal["pipeline_id"])
        now = clock.now()
        sets = domain.reopen(deal, pipeline, req.stage_id, now, self._by())
        return self._write_deal(deal, sets, "reopen", lambda view: [DealReopened(
            deal_id=deal["_id"], contact_id=deal["contact_id"], deal=view, from_status=deal["status"],
            to_stage=sets["stage_id"], reopened_at=now)])

    # -- forecast and reports -----------------------------------------------------------
    @rpc(C.GetForecast)
    def get_forecast(self, req: C.GetForecast):
        first = req.from_month or forecast.this_month(clock.now())
        months = forecast.months_from(first, req.months or 6)
        deals = self.store.deals.matching({"status": domain.OPEN, "pipeline_id": req.pipeline_id,
                                           "owner": req.owner}, self._scope())
        return {"months": months, **forecast.forecast(deals, self.store.deals.all_pipelines(), months)}

    @rpc(C.GetSalesReport)
    def get_sales_report(self, req: C.GetSalesReport):
        today = clock.now().date()
        start = date.fromisoformat(req.from_date) if req.from_date else today - timedelta(days=364)
        end = date.fromisoformat(req.to_date) if req.to_date else today
        if end < start:
            raise InvalidArgument.field("to_date", "must not be before from_date")
        since = datetime.combine(start, time.min, tzinfo=timezone.utc)
        until = datetime.combine(end + timedelta(days=1), time.min, tzinfo=timezone.utc)
        deals = [d for d in self.store.deals.matching({"pipeline_id": req.pipeline_id, "owner": req.owner},
                                                      self._scope())
                 if since <= d["created_at"] < until]
        pipeline = self.store.deals.pipeline(req.pipeline_id)
        return {"from_date": start.isoformat(), "to_date": end.isoformat(), "pipeline_id": pipeline["_id"],
                **forecast.report(deals, pipeline)}
