"""Entrypoints of activities (tasks, calls, meetings) and their reminders."""
from __future__ import annotations

import logging
from typing import Any

from crm_common import audit, clock, paging
from crm_common.ids import derived_id, new_id
from crm_common.nameko.base import rpc
from crm_common.retry import on_conflict

from ..events import ActivityCompleted, ActivityDue
from . import contracts as C
from . import domain
from .views import activity_view

log = logging.getLogger(__name__)
AUDITED = ("kind", "subject", "notes", "due_at", "owner", "status", "outcome", "cancel_reason")


class ActivityEntrypoints:
    """Mixed into SalesService (service.py): ``self.store.activities`` is the ActivityStore."""

    def _regarding(self, regarding: dict[str, Any] | None) -> str | None:
        """Check what the activity is about (visible to the caller); its contact, if known."""
        if regarding is None:
            return None
        kind, ref = regarding["type"], regarding["id"]
        if kind == "lead":
            lead = self.store.leads.get(ref, self._scope())
            self._lead_worked(lead)
            return lead.get("contact_id") or None
        if kind == "deal":
            return self.store.deals.get(ref, self._scope(), field="activity.regarding.id")["contact_id"]
        self._require_contact(ref, "activity.regarding.id")
        return ref

    def _write_activity(self, activity: dict[str, Any], sets: dict[str, Any], operation: str,
                        events: list = ()) -> dict[str, Any]:
        now = clock.now()
        after = {**activity, **sets, "updated_at": now, "version": activity["version"] + 1}
        view = activity_view(after)
        staged = [e for event in events for e in self.outbox.announce(event)]
        staged += self.outbox.audit("activity", activity["_id"], operation,
                                    *audit.changed(activity_view(activity), view, AUDITED),
                                    contact_id=activity.get("contact_id"), owner=after.get("owner"),
                                    team=after.get("team"))
        self.store.activities.update(activity, sets, staged, now)
        self.outbox.publish(self.store.activities.activities, activity["_id"], staged)
        return view

    @rpc(C.CreateActivity)
    def create_activity(self, req: C.CreateActivity):
        a = req.activity
        fields = {"kind": a.kind, "subject": a.subject, "notes": a.notes, "due_at": a.due_at,
                  "regarding": a.regarding.model_dump() if a.regarding else None}
        owner, team = self._owner_and_team(req.activity.owner, "activity.owner")
        contact_id = self._regarding(fields.get("regarding"))
        doc = domain.new_activity(new_id("act"), fields, owner, team, contact_id, clock.now())
        view = activity_view(doc)
        staged = self.outbox.audit("activity", doc["_id"], "create", {}, view, contact_id=contact_id, owner=owner,
                                   team=team)
        if not self.store.activities.insert(doc, staged):
            return activity_view(self.store.activities.find(doc["_id"]))
        self.outbox.publish(self.store.activities.activities, doc["_id"], staged)
        return view

    @rpc(C.GetActivity)
    def get_activity(self, req: C.GetActivity):
        return activity_view(self.store.activities.get(req.activity_id, self._scope()))

    @rpc(C.ListActivities)
    def list_activities(self, req: C.ListActivities):
        access = self.caller.access
        owner = req.owner or (access.principal.id if access else "")
        rep = self.store.team.rep(owner) if owner else None
        zone = req.time_zone or (rep or {}).get("time_zone") or "UTC"
        now = clock.now()
        today = domain.day_bounds(now, zone)
        status = req.status if req.view == "all" else domain.OPEN
        docs = [d for d in self.store.activities.of_owner(owner, status, self._scope())
                if domain.in_view(d, req.view, now, today)]
        cursor = paging.decode(req.page_token, at=str, id=str)
        if cursor:
            docs = [d for d in docs if (clock.to_iso(d["due_at"]), d["_id"]) > (cursor["at"], cursor["id"])]
        page, token = paging.page(docs[:req.size + 1], req.size,
                                  lambda d: {"at": clock.to_iso(d["due_at"]), "id": d["_id"]})
        return {"activities": [activity_view(d) for d in page], "next_page_token": token, "time_zone": zone}

    @rpc(C.CompleteActivity)
    @on_conflict()
    def complete_activity(self, req: C.CompleteActivity):
        activity = self.store.activities.get(req.activity_id, self._scope())
        if activity["status"] == domain.DONE and activity.get("outcome") == req.outcome:
            return activity_view(activity)   # a retry
        now = clock.now()
        sets = domain.complete(activity, req.outcome, now)
        view = activity_view({**activity, **sets})
        event = ActivityCompleted(activity_id=activity["_id"], contact_id=activity.get("contact_id"),
                                  activity=view, completed_at=now)
        return self._write_activity(activity, sets, "complete", [event])

    @rpc(C.CancelActivity)
    @on_conflict()
    def cancel_activity(self, req: C.CancelActivity):
        activity = self.store.activities.get(req.activity_id, self._scope())
        if activity["status"] == domain.CANCELLED:
            return activity_view(activity)
        return self._write_activity(activity, domain.cancel(activity, req.reason, clock.now()), "cancel")

    @rpc(C.RescheduleActivity)
    @on_conflict()
    def reschedule_activity(self, req: C.RescheduleActivity):
        activity = self.store.activities.get(req.activity_id, self._scope())
        if activity["due_at"] == req.due_at and activity["status"] == domain.OPEN:
            return activity_view(activity)
        return self._write_activity(activity, domain.reschedule(activity, req.due_at), "reschedule")

    # -- the reminder timer (see service.py) -----------------------------------------------
    def _remind_due(self) -> int:
        """Publish the reminder of every open activity now due, once: each is claimed by
        a guarded write that clears ``reminder_at`` and stages the event; a replica whose
        write did not match does nothing. The event id is derived from the activity and
        its due time, so even a relayed copy is one reminder to consumers."""
        now, sent = clock.now(), 0
        for activity in self.store.activities.due(now):
            if activity["status"] != domain.OPEN:
                continue
            event = ActivityDue(activity_id=activity["_id"], contact_id=activity.get("contact_id"),
                                activity=activity_view(activity), due_at=activity["due_at"])
            staged = self.outbox.announce(event, event_id=derived_id(
                "evt", "activity_due", activity["_id"], clock.to_iso(activity["due_at"])))
            if self.store.activities.mark_reminded(activity, staged, now):
                self.outbox.publish(self.store.activities.activities, activity["_id"], staged)
                sent += 1
        return sent
