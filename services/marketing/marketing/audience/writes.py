"""How a change reaches the audience: read the contact's document, apply the change
(pure, audience.state), re-evaluate the contact against every segment, write the facts,
the memberships and the events announcing them in ONE guarded write, page the facts,
publish. The same path serves every event handler, the static-list RPCs, surveys and the
full evaluations that fill a segment, so membership is decided in one place.

Retried on a version conflict (another replica wrote the contact first: read again,
apply again; every change is idempotent). After the write, the segments' revision is
read again: if a segment was created or changed meanwhile, the contact is evaluated
again with it (see segments.store).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from crm_common import clock
from crm_common.errors import VersionConflict
from crm_common.events import Event
from crm_common.ids import derived_id

from ..events import LeadQualified, SegmentEntered, SegmentLeft
from ..segments import membership as M
from ..segments.evaluate import Context
from ..segments.store import SegmentCache, SegmentStore
from ..settings import Settings
from . import facts as F
from .store import PAGED, AudienceStore, state_of

log = logging.getLogger(__name__)

ATTEMPTS = 6


@dataclass
class Outcome:
    """What a change asks for beyond its new state: reasons for the static memberships it
    made (``{segment_id: reason}``) and other events to stage with it."""

    state: dict[str, Any]
    reasons: dict[str, str] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)


Change = Callable[[dict[str, Any], datetime], "dict[str, Any] | Outcome"]


@dataclass
class Written:
    contact_id: str
    version: int
    state: dict[str, Any]
    changed: bool
    staged: list[dict[str, Any]] = field(default_factory=list)


class AudienceWrites:
    def __init__(self, audience: AudienceStore, segments: SegmentStore, outbox, settings: Settings):
        self.audience = audience
        self.segments = segments
        self.outbox = outbox
        self.settings = settings
        self.cache = SegmentCache.of(segments)

    def context(self, now: datetime | None = None) -> Context:
        return Context(now or clock.now(), self.settings.bands, self.settings.default_tz)

    def apply(self, contact_id: str, change: Change, *, create: bool = True, initial: bool = False,
              only: set[str] | None = None, recent_defs: bool = False) -> Written | None:
        """Apply ``change`` to the contact (``create``: also when marketing has not heard of
        it yet) and publish what it caused. ``initial``/``only``: a full evaluation filling
        the segments ``only`` (its entries are flagged initial). ``recent_defs``: segment
        definitions this process confirmed within the last second will do (a fact from an
        event: what it writes is evaluated again if a segment moved meanwhile, and what it
        does not write, a segment's full evaluation reads as it is); a fill or an RPC
        changing memberships reads the revision first, as it may have just moved it."""
        moved = not recent_defs
        for _ in range(ATTEMPTS):
            doc = self.audience.get(contact_id)
            if doc is None and not create:
                return None
            rev, defs = self.cache.current(self.segments, fresh=moved)
            try:
                written = self._once(contact_id, doc, change, defs, initial, only)
            except VersionConflict:
                continue
            if written.changed and self.cache.confirm(self.segments, self.segments.rev()) != rev:
                change, moved = unchanged, True   # a segment moved meanwhile: evaluate this contact again
                continue
            return written
        raise VersionConflict(f"audience {contact_id}: too many concurrent changes, retry")

    def _once(self, contact_id: str, doc: dict[str, Any] | None, change: Change, defs: dict[str, M.SegmentDef],
              initial: bool, only: set[str] | None) -> Written:
        now = clock.now()
        before = state_of(doc)
        got = change(before, now)
        outcome = got if isinstance(got, Outcome) else Outcome(got)
        state = dict(outcome.state)
        facts = F.project(state)
        current = state.get("segments") or {}
        evaluated = M.desired(facts, current, defs, self.context(now), only=only)
        state["segments"] = M.applied(current, evaluated, now)
        if not state["segments"]:
            state.pop("segments")
        if doc is not None and state == before and not outcome.events:
            return Written(contact_id, doc["version"], state, False)
        version = 1 if doc is None else doc["version"] + 1
        events = self._membership_events(contact_id, version, before.get("segments") or {},
                                         state.get("segments") or {}, evaluated, outcome.reasons, defs, initial, now)
        staged = [e for event in (*events, *outcome.events) for e in self.outbox.announce(
            event, event_id=_event_id(event, contact_id, version))]
        version = self.audience.write(contact_id, doc, state, staged, now)
        self._page(contact_id, version, state, staged)
        return Written(contact_id, version, state, True, staged)

    def _membership_events(self, contact_id: str, version: int, before: dict[str, Any], after: dict[str, Any],
                           evaluated: list[M.Change], reasons: dict[str, str], defs: dict[str, M.SegmentDef],
                           initial: bool, now: datetime) -> list[Event]:
        why = {c.segment_id: c.reasons for c in evaluated}
        out: list[Event] = []
        for sid in sorted(set(before) | set(after)):
            if (sid in before) == (sid in after):
                continue
            seg = defs.get(sid)
            name, kind = (seg.name, seg.kind) if seg else (sid, (after.get(sid) or before.get(sid) or {}).get("kind", "static"))
            if sid in after:
                out.append(SegmentEntered(contact_id=contact_id, segment_id=sid, segment_name=name, kind=kind,
                                          reasons=why.get(sid) or [reasons.get(sid, "added")], initial=initial,
                                          at=now))
            else:
                out.append(SegmentLeft(contact_id=contact_id, segment_id=sid, segment_name=name, kind=kind,
                                       reason=reasons.get(sid) or "; ".join(why.get(sid) or ["removed"]), at=now))
        return out

    def _page(self, contact_id: str, version: int, state: dict[str, Any], staged: list[dict[str, Any]]) -> None:
        """Page the facts, then publish and clear what the write staged (the page marker with them)."""
        self.audience.sync_page(contact_id, version, F.project(state), sorted(state.get("segments") or {}))
        self.outbox.publish(self.audience.audience, contact_id, staged, also={PAGED: [str(version)]})

    def repage(self, doc: dict[str, Any]) -> None:
        """After a crash between a write and its page: page the document as it is now."""
        state = state_of(doc)
        self.audience.sync_page(doc["_id"], doc["version"], F.project(state), sorted(state.get("segments") or {}))
        self.audience.paged(doc["_id"], list((doc.get(PAGED) or {}).keys()))


def unchanged(state: dict[str, Any], now: datetime) -> dict[str, Any]:
    return state


def _event_id(event: Event, contact_id: str, version: int) -> str | None:
    """Membership events are named by the audience version that made them (a relay, or a
    retry of the same write, repeats the id); others derive their own."""
    if isinstance(event, (SegmentEntered, SegmentLeft)):
        return derived_id("evt", event.type, contact_id, event.segment_id, str(version))
    if isinstance(event, LeadQualified):
        return derived_id("evt", event.type, contact_id, clock.to_iso(event.qualified_at))
    return None
