"""Campaigns' entrypoints: define, dry-run, send, cancel, follow the progress; and the
timers that do the sending on whichever replicas run (campaigns.sending)."""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from nameko.timer import timer
from prometheus_client import Gauge

from crm_common import audit, clock, contracts, paging
from crm_common.errors import CrmError, InvalidArgument, NotFound, VersionConflict
from crm_common.ids import new_id
from crm_common.nameko.base import rpc

from ..common import Area
from ..segments.membership import ACTIVE
from . import contracts as C
from . import domain as D
from .recipients import dry_run
from .sending import progress_of
from .store import require_state
from .views import campaign_view, dry_run_entry_view, message_view

log = logging.getLogger(__name__)

CAMPAIGN_MESSAGES = Gauge("crm_marketing_campaign_messages",
                          "Messages of running campaigns (and of those that ended in the last day) by status",
                          ["campaign", "status"])
SCHEDULE_INTERVAL_SECONDS = 1
DELIVER_INTERVAL_SECONDS = 1
GAUGE_INTERVAL_SECONDS = 15
GAUGE_KEEPS_ENDED = timedelta(days=1)
AUDITED = ("name", "channel", "state", "email", "sms", "defaults", "include_segment_ids", "exclude_segment_ids",
           "schedule_at", "budget", "cost_per_message")


class CampaignEntrypoints(Area):
    def _campaign_audit(self, campaign_id: str, operation: str, before: dict[str, Any], after: dict[str, Any]):
        old, new = audit.changed(before, after, AUDITED)
        return self.outbox.audit("campaign", campaign_id, operation, old, new)

    def _check_segments(self, ids: list[str], field: str) -> None:
        for i, sid in enumerate(ids):
            try:
                seg = self.store.segments.get(sid)
            except NotFound:
                raise InvalidArgument.field(f"{field}[{i}]", f"no segment {sid}") from None
            if seg.get("state") != ACTIVE:
                raise InvalidArgument.field(f"{field}[{i}]", f"segment {sid} is archived")

    def _fields(self, c: C.CampaignIn) -> dict[str, Any]:
        self._check_segments(c.include_segment_ids, "include_segment_ids")
        self._check_segments(c.exclude_segment_ids, "exclude_segment_ids")
        return {"name": c.name, "name_key": c.name.casefold(), "channel": c.channel, "content": c.content(),
                "defaults": dict(c.defaults), "include": list(c.include_segment_ids),
                "exclude": list(c.exclude_segment_ids), "schedule_at": c.schedule_at,
                "budget": c.budget.to_wire() if c.budget else None,
                "cost_per_message": c.cost_per_message.to_wire() if c.cost_per_message else None}

    @rpc(C.CreateCampaign)
    def create_campaign(self, req: C.CreateCampaign):
        now = clock.now()
        doc = {"_id": new_id("cmp"), **self._fields(req), "state": D.DRAFT, "spent_minor": 0, "due_at": None,
               "version": 1, "created_at": now, "updated_at": now}
        staged = self._campaign_audit(doc["_id"], "create", {}, campaign_view(doc))
        stored = self.store.campaigns.insert(doc, staged)
        self.outbox.publish(self.store.campaigns.campaigns, stored["_id"], staged)
        return campaign_view(self.store.campaigns.get(stored["_id"]))

    @rpc(C.UpdateCampaign)
    def update_campaign(self, req: C.UpdateCampaign):
        doc = self.store.campaigns.get(req.campaign_id)
        require_state(doc, D.DRAFT, D.SCHEDULED, doing="change it once its send began")
        if doc["version"] != req.expected_version:
            raise VersionConflict(f"campaign {req.campaign_id} is at version {doc['version']}, not "
                                  f"{req.expected_version}", {"campaign_id": req.campaign_id})
        view = campaign_view(doc)
        merged = {k: view[k] for k in C.UPDATABLE if k not in ("email", "sms")}
        merged.update(channel=doc["channel"], email=view["email"], sms=view["sms"])
        merged.update({k: req.campaign.get(k) for k in req.update_mask})
        try:
            c = contracts.parse(C.CampaignIn, merged, prefix="campaign")
        except InvalidArgument as exc:   # a rule across fields names them without the prefix
            raise _prefixed(exc, "campaign") from None
        sets = {**self._fields(c), "updated_at": clock.now()}
        if doc["state"] == D.SCHEDULED:
            sets["due_at"] = c.schedule_at or clock.now()
        staged = self._campaign_audit(doc["_id"], "update", view, campaign_view({**doc, **sets}))
        self.store.campaigns.transition(doc["_id"], doc["version"], sets, staged, before=doc)
        self.outbox.publish(self.store.campaigns.campaigns, doc["_id"], staged)
        return campaign_view(self.store.campaigns.get(doc["_id"]))

    @rpc(C.GetCampaign)
    def get_campaign(self, req: C.GetCampaign):
        return campaign_view(self.store.campaigns.get(req.campaign_id))

    @rpc(C.ListCampaigns)
    def list_campaigns(self, req: C.ListCampaigns):
        page, token = paging.by_id(req.page_token, req.size, self.store.campaigns.page)
        return {"campaigns": [campaign_view(d) for d in page], "next_page_token": token}

    @rpc(C.DryRunCampaign)
    def dry_run_campaign(self, req: C.DryRunCampaign):
        campaign = self.store.campaigns.get(req.campaign_id)
        cursor = paging.decode(req.page_token, p=str, c=str)
        result = dry_run(self.store.audience, self.store.campaigns, campaign, self.settings(), clock.now(),
                         decision=req.decision, after=(cursor["p"], cursor["c"]) if cursor else None, size=req.size)
        docs = self.store.audience.get_many([e["contact_id"] for e in result["entries"]])
        names = {cid: (d.get("contact") or {}).get("display_name") or "" for cid, d in docs.items()}
        token = paging.encode(p=result["next"][0], c=result["next"][1]) if result["next"] else ""
        return {"campaign_id": campaign["_id"], "summary": result["summary"],
                "entries": [dry_run_entry_view(e, names.get(e["contact_id"], "")) for e in result["entries"]],
                "next_page_token": token}

    @rpc(C.SendCampaign)
    def send_campaign(self, req: C.SendCampaign):
        """Starts the send (now, or at ``schedule_at``); sending again changes nothing."""
        doc = self.store.campaigns.get(req.campaign_id)
        if doc["state"] != D.DRAFT:
            require_state(doc, D.SCHEDULED, D.RUNNING, D.COMPLETED, doing="send it")
            return campaign_view(doc)
        self._check_segments(doc["include"], "include_segment_ids")
        now = clock.now()
        later = doc.get("schedule_at") and doc["schedule_at"] > now
        sets = ({"state": D.SCHEDULED, "due_at": doc["schedule_at"]} if later else
                {"state": D.RUNNING, "queue": {"state": "pending", "lease": None}, "due_at": now})
        staged = self._campaign_audit(doc["_id"], "send", campaign_view(doc), campaign_view({**doc, **sets}))
        try:
            self.store.campaigns.transition(doc["_id"], doc["version"], sets, staged)
        except VersionConflict:
            return campaign_view(self.store.campaigns.get(doc["_id"]))   # a concurrent send did it
        self.outbox.publish(self.store.campaigns.campaigns, doc["_id"], staged)
        return campaign_view(self.store.campaigns.get(doc["_id"]))

    @rpc(C.CancelCampaign)
    def cancel_campaign(self, req: C.CancelCampaign):
        """Stops a campaign: what is not sent yet is skipped (``cancelled``)."""
        doc = self.store.campaigns.get(req.campaign_id)
        if doc["state"] == D.CANCELLED:
            return campaign_view(doc)
        require_state(doc, D.DRAFT, D.SCHEDULED, D.RUNNING, doing="cancel it")
        now = clock.now()
        sets: dict[str, Any] = {"state": D.CANCELLED, "updated_at": now}
        if doc["state"] != D.RUNNING:
            sets.update(completed_at=now, due_at=None)
        staged = self._campaign_audit(doc["_id"], "cancel", campaign_view(doc), campaign_view({**doc, **sets}))
        self.store.campaigns.transition(doc["_id"], doc["version"], sets, staged)
        self.outbox.publish(self.store.campaigns.campaigns, doc["_id"], staged)
        if doc["state"] == D.RUNNING:
            self.store.campaigns.batches.update_many({"campaign_id": doc["_id"], "state": "ready"},
                                                     {"$set": {"due_at": now}})
        return campaign_view(self.store.campaigns.get(doc["_id"]))

    @rpc(C.GetCampaignProgress)
    def get_campaign_progress(self, req: C.GetCampaignProgress):
        """Where a send stands, readable while it runs (each batch's counts, recounted from
        its messages whenever a worker is done with it)."""
        doc = self.store.campaigns.get(req.campaign_id)
        totals, _ = self.store.campaigns.batch_counts(doc["_id"])
        return {"campaign_id": doc["_id"], "state": doc["state"], **progress_of(doc, totals),
                "started_at": clock.to_iso(doc.get("started_at")),
                "completed_at": clock.to_iso(doc.get("completed_at"))}

    @rpc(C.ListCampaignMessages)
    def list_campaign_messages(self, req: C.ListCampaignMessages):
        self.store.campaigns.get(req.campaign_id)
        page, token = paging.by_id(req.page_token, req.size, lambda after, limit: self.store.campaigns.list_messages(
            req.campaign_id, req.status, after, limit))
        return {"messages": [message_view(d) for d in page], "next_page_token": token}

    # -- timers -----------------------------------------------------------------------------
    @timer(interval=SCHEDULE_INTERVAL_SECONDS)
    def run_campaigns(self):
        """Scheduled sends whose time came start; started sends are queued (leased)."""
        self.sending().run_due(clock.now())

    @timer(interval=DELIVER_INTERVAL_SECONDS)
    def deliver_messages(self):
        """Due batches are delivered by whichever replica leases them first."""
        self.sending().deliver()

    @timer(interval=GAUGE_INTERVAL_SECONDS, eager=True)
    def campaign_gauges(self):
        """Running campaigns, and those that ended in the last day (their final figures)."""
        CAMPAIGN_MESSAGES.clear()
        since = clock.now() - GAUGE_KEEPS_ENDED
        for doc in self.store.campaigns.campaigns.find({"state": {"$in": [D.RUNNING, D.COMPLETED, D.CANCELLED]}},
                                                       {"name": 1, "recipients": 1, "state": 1, "completed_at": 1}):
            if doc["state"] != D.RUNNING and (doc.get("completed_at") or since) < since:
                continue
            totals, _ = self.store.campaigns.batch_counts(doc["_id"])
            p = progress_of(doc, totals)
            for status in ("queued", "deferred", "sent", "failed", "bounced", "skipped"):
                CAMPAIGN_MESSAGES.labels(doc["name"], status).set(p[status])


def _prefixed(exc: InvalidArgument, prefix: str) -> CrmError:
    items = [{"field": v["field"] if v["field"].startswith(prefix) else f"{prefix}.{v['field']}",
              "description": v["description"]} for v in exc.violations]
    if not items:
        return exc
    return InvalidArgument(f"{items[0]['field']}: {items[0]['description']}", violations=items)

