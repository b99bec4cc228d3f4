"""Segments' entrypoints: define, preview, list; static lists' members; and the timers
that keep memberships right beside the events (fills after a definition changed, periodic
re-checks of rules that depend on time alone, the size gauges)."""
from __future__ import annotations

import json
import logging
from typing import Any

from nameko.timer import timer
from prometheus_client import Gauge

from crm_common import audit, clock, paging
from crm_common.errors import FailedPrecondition, VersionConflict
from crm_common.ids import new_id
from crm_common.nameko.base import rpc

from ..common import Area
from . import contracts as C
from . import filling, rules
from .evaluate import compile_rule
from .membership import ACTIVE, ARCHIVED, DYNAMIC, STATIC
from .store import rule_of
from .views import member_view, segment_view

log = logging.getLogger(__name__)

SEGMENT_MEMBERS = Gauge("crm_marketing_segment_members", "Contacts in each active segment", ["segment", "kind"])
FILL_INTERVAL_SECONDS = 1
RECHECK_INTERVAL_SECONDS = 30
GAUGE_INTERVAL_SECONDS = 60
MEMBERS_PAGE_CHUNK = 16


class SegmentEntrypoints(Area):
    def _segment_audit(self, segment_id: str, operation: str, before: dict[str, Any], after: dict[str, Any]):
        old, new = audit.changed(before, after, ("name", "description", "kind", "rule", "state"))
        return self.outbox.audit("segment", segment_id, operation, old, new)

    @rpc(C.CreateSegment)
    def create_segment(self, req: C.CreateSegment):
        now = clock.now()
        rule = rules.parse(req.rule) if req.rule else None
        doc = {"_id": new_id("seg"), "name": req.name, "name_key": req.name.casefold(),
               "description": req.description, "kind": req.kind, "rule": _text(req.rule), "state": ACTIVE,
               "time_relative": bool(rule and rules.is_time_relative(rule)), "members": 0,
               "fill": "pending" if req.kind == DYNAMIC else "done", "fill_lease": None,
               "version": 1, "created_at": now, "updated_at": now}
        staged = self._segment_audit(doc["_id"], "create", {}, segment_view(doc))
        stored = self.store.segments.insert(doc, staged)
        self.outbox.publish(self.store.segments.segments, stored["_id"], staged)
        return segment_view(stored)

    @rpc(C.UpdateSegment)
    def update_segment(self, req: C.UpdateSegment):
        doc = self.store.segments.get(req.segment_id)
        if doc["version"] != req.expected_version:
            raise VersionConflict(f"segment {req.segment_id} is at version {doc['version']}, not "
                                  f"{req.expected_version}", {"segment_id": req.segment_id})
        sets: dict[str, Any] = {}
        if "name" in req.update_mask:
            sets.update(name=req.name, name_key=req.name.casefold())
        if "description" in req.update_mask:
            sets["description"] = req.description
        if "rule" in req.update_mask and _text(req.rule) != doc.get("rule"):
            if doc["kind"] != DYNAMIC:
                raise FailedPrecondition(f"segment {req.segment_id} is a static list: it has no rule",
                                         {"segment_id": req.segment_id})
            sets.update(rule=_text(req.rule), time_relative=rules.is_time_relative(rules.parse(req.rule)),
                        fill="pending", fill_lease=None)
        if not sets:
            return segment_view(doc)
        staged = self._segment_audit(doc["_id"], "update", segment_view(doc), segment_view({**doc, **sets}))
        updated = self.store.segments.update(doc["_id"], doc["version"], sets, staged)
        self.outbox.publish(self.store.segments.segments, doc["_id"], staged)
        return segment_view(updated)

    @rpc(C.GetSegment)
    def get_segment(self, req: C.GetSegment):
        return segment_view(self.store.segments.get(req.segment_id))

    @rpc(C.ListSegments)
    def list_segments(self, req: C.ListSegments):
        page, token = paging.by_id(req.page_token, req.size, self.store.segments.page)
        return {"segments": [segment_view(d) for d in page], "next_page_token": token}

    @rpc(C.ArchiveSegment)
    def archive_segment(self, req: C.ArchiveSegment):
        """Archived: its members leave it (segment_left, by the fill), no campaign can use it."""
        doc = self.store.segments.get(req.segment_id)
        if doc.get("state") == ARCHIVED:
            return segment_view(doc)
        sets = {"state": ARCHIVED, "fill": "pending", "fill_lease": None}
        staged = self._segment_audit(doc["_id"], "archive", segment_view(doc), segment_view({**doc, **sets}))
        updated = self.store.segments.update(doc["_id"], doc["version"], sets, staged)
        self.outbox.publish(self.store.segments.segments, doc["_id"], staged)
        return segment_view(updated)

    @rpc(C.PreviewSegment)
    def preview_segment(self, req: C.PreviewSegment):
        rule = req.rule or rule_of(self.store.segments.get(req.segment_id))
        if rule is None:
            raise FailedPrecondition(f"segment {req.segment_id} is a static list: it has no rule to preview",
                                     {"segment_id": req.segment_id or ""})
        compiled = compile_rule(rules.parse(rule))
        found = filling.preview(self.store.audience, compiled, self.writes().context(), req.sample_size or 10)
        docs = self.store.audience.get_many([cid for cid, _ in found.sample])
        return {"count": found.count, "evaluated": found.evaluated, "took_ms": round(found.seconds * 1000, 1),
                "sample": [{"contact_id": cid, "display_name": ((docs.get(cid) or {}).get("contact") or {})
                            .get("display_name") or "", "reasons": reasons} for cid, reasons in found.sample]}

    # -- static lists ---------------------------------------------------------------------------
    def _static(self, segment_id: str) -> dict[str, Any]:
        doc = self.store.segments.get(segment_id)
        if doc["kind"] != STATIC or doc.get("state") != ACTIVE:
            raise FailedPrecondition(f"segment {segment_id} is {'archived' if doc.get('state') == ARCHIVED else 'dynamic'}"
                                     ": members are added to active static lists only", {"segment_id": segment_id})
        return doc

    @rpc(C.AddSegmentMembers)
    def add_segment_members(self, req: C.AddSegmentMembers):
        self._static(req.segment_id)
        sid, added = req.segment_id, 0
        for cid in dict.fromkeys(req.contact_ids):
            self.store.segments.add_to_list(sid, cid, clock.now())
            written = self.writes().apply(cid, _join(sid))
            added += bool(written and written.changed and sid in (written.state.get("segments") or {}))
        return {"added": added, "already": len(set(req.contact_ids)) - added}

    @rpc(C.RemoveSegmentMembers)
    def remove_segment_members(self, req: C.RemoveSegmentMembers):
        self._static(req.segment_id)
        sid, removed = req.segment_id, 0
        for cid in dict.fromkeys(req.contact_ids):
            self.store.segments.remove_from_list(sid, cid)
            written = self.writes().apply(cid, _leave(sid), create=False)
            removed += bool(written and written.changed)
        return {"removed": removed, "absent": len(set(req.contact_ids)) - removed}

    @rpc(C.ListSegmentMembers)
    def list_segment_members(self, req: C.ListSegmentMembers):
        """Members in page order (stable while they do not change); from the pages, so a
        page of members costs a few page reads however large the segment."""
        self.store.segments.get(req.segment_id)
        cursor = paging.decode(req.page_token, p=str, c=str)
        after = (cursor["p"], cursor["c"]) if cursor else None
        found = []
        for entry in self.store.audience.scan_from(after, chunk=MEMBERS_PAGE_CHUNK):
            if req.segment_id in entry.segments:
                found.append(entry)
                if len(found) > req.size:
                    break
        page, token = paging.page(found, req.size, lambda e: {"p": e.page, "c": e.contact_id})
        docs = self.store.audience.get_many([e.contact_id for e in page])
        return {"members": [member_view(e.contact_id, docs.get(e.contact_id), req.segment_id) for e in page],
                "next_page_token": token}

    # -- timers ---------------------------------------------------------------------------------
    @timer(interval=FILL_INTERVAL_SECONDS)
    def fill_segments(self):
        """Reconcile segments whose definition changed (one at a time per replica, leased)."""
        while True:
            doc = self.store.segments.take_fill(self.owner, filling.FILL_LEASE, clock.now())
            if doc is None:
                return
            members, fixed = filling.fill(self.store.segments, self.store.audience, self.writes(), doc, self.owner)
            log.info("segment %s filled: %d members, %d memberships corrected", doc["_id"], members, fixed)
            if doc.get("state") == ACTIVE:
                SEGMENT_MEMBERS.labels(doc["name"], doc["kind"]).set(members)

    @timer(interval=RECHECK_INTERVAL_SECONDS)
    def recheck_segments(self):
        """Rules that depend on time alone (``no order for 90 days``, ``birthday this month``)
        are re-checked every MARKETING_RECHECK_MINUTES: the fill timer does the work."""
        now = clock.now()
        for doc in self.store.segments.due_recheck(now, self.settings().recheck):
            self.store.segments.recheck(doc["_id"], doc.get("checked_at"), now)

    @timer(interval=GAUGE_INTERVAL_SECONDS, eager=True)
    def count_segments(self):
        counts = filling.count_members(self.store.audience)
        docs = self.store.segments.all()
        self.store.segments.set_members({d["_id"]: counts.get(d["_id"], 0) for d in docs
                                         if d.get("fill") == "done" and d.get("members") != counts.get(d["_id"], 0)})
        SEGMENT_MEMBERS.clear()
        for d in docs:
            if d.get("state") == ACTIVE:
                SEGMENT_MEMBERS.labels(d["name"], d["kind"]).set(counts.get(d["_id"], 0))


def _text(rule: dict[str, Any] | None) -> str | None:
    return json.dumps(rule, sort_keys=True, separators=(",", ":")) if rule else None


def _join(segment_id: str):
    def change(state, now):
        if segment_id in (state.get("segments") or {}) or state.get("erased"):
            return state
        return {**state, "segments": {**(state.get("segments") or {}), segment_id: {"since": now, "kind": STATIC}}}
    return change


def _leave(segment_id: str):
    def change(state, now):
        if segment_id not in (state.get("segments") or {}):
            return state
        return {**state, "segments": {k: v for k, v in state["segments"].items() if k != segment_id}}
    return change

