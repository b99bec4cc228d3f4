"""Who is in which segment, as pure rules: the memberships a contact should have given
its facts and the segments that exist, and the changes from the ones it has.

A contact's memberships live in its audience document (``segments``: ``{segment_id:
{"since", "kind"}}``), so a change of the contact's facts, the membership changes it
causes and the ``segment_entered`` / ``segment_left`` events announcing them are ONE
guarded write. Dynamic memberships follow the rule; static ones change only by
add/remove (and go when the contact is erased or the segment archived).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .evaluate import Compiled, Context

DYNAMIC, STATIC = "dynamic", "static"
ACTIVE, ARCHIVED = "active", "archived"


@dataclass(frozen=True)
class SegmentDef:
    """A segment as membership needs it (segments.store keeps the documents)."""

    id: str
    name: str
    kind: str
    state: str = ACTIVE
    compiled: Compiled | None = None


@dataclass(frozen=True)
class Change:
    segment_id: str
    segment_name: str
    kind: str
    entered: bool
    reasons: list[str] = field(default_factory=list)


def desired(facts: dict[str, Any], current: dict[str, Any], segments: dict[str, SegmentDef], ctx: Context,
            *, only: set[str] | None = None) -> list[Change]:
    """What changes: dynamic segments the contact matches and is not in (enter), those it
    is in and no longer matches (leave), memberships of archived segments (leave), and
    everything when the contact was erased. ``only``: consider these segments alone (a
    full evaluation of one segment); memberships of unknown segments are left alone (a
    segment created a moment ago by another replica)."""
    changes: list[Change] = []
    erased = bool(facts.get("x"))
    for sid, seg in segments.items():
        if only is not None and sid not in only:
            continue
        member = sid in current
        if seg.state != ACTIVE or erased:
            if member:
                changes.append(Change(sid, seg.name, seg.kind, False, ["erased" if erased else "segment archived"]))
            continue
        if seg.kind != DYNAMIC or seg.compiled is None:
            continue
        reasons = seg.compiled.explain(facts, ctx)
        if reasons is not None and not member:
            changes.append(Change(sid, seg.name, seg.kind, True, reasons))
        elif reasons is None and member:
            changes.append(Change(sid, seg.name, seg.kind, False, ["no longer matches"]))
    return changes


def applied(current: dict[str, Any], changes: list[Change], now: datetime) -> dict[str, Any]:
    """The memberships after ``changes``."""
    out = dict(current)
    for c in changes:
        if c.entered:
            out[c.segment_id] = {"since": now, "kind": c.kind}
        else:
            out.pop(c.segment_id, None)
    return out
