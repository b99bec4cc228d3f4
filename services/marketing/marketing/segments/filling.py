"""Full evaluations: a rule over every contact's page entry (previews), and the fill that
reconciles one segment's memberships with its rule after it was created, changed or
archived, or when time alone moved its members (a periodic re-check).

A fill reads the pages once, evaluates, and hands every contact whose membership is wrong
to the audience write path (audience.writes), which decides again from that contact's
current document and publishes segment_entered / segment_left. A lease keeps the fill on
one replica; the events path keeps working meanwhile and both converge (the write path
is the same, guarded, idempotent).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from prometheus_client import Counter, Histogram

from crm_common import clock

from ..audience.store import AudienceStore
from ..audience.writes import AudienceWrites, unchanged
from .evaluate import Compiled, Context
from .membership import ACTIVE, DYNAMIC, SegmentDef
from .store import SegmentStore, definition

EVALUATION_SECONDS = Histogram("crm_marketing_segment_evaluation_seconds",
                               "Full evaluations of a rule over every contact (previews and fills)", ["kind"],
                               buckets=(.05, .1, .25, .5, 1, 2, 5, 10, 30, 60))
FILL_CHANGES = Counter("crm_marketing_fill_changes_total", "Memberships a fill or re-check corrected",
                       ["direction"])
FILL_LEASE = timedelta(minutes=2)
RENEW_EVERY = 200


@dataclass
class Preview:
    count: int = 0
    evaluated: int = 0
    sample: list[tuple[str, list[str]]] = field(default_factory=list)
    seconds: float = 0.0


def preview(audience: AudienceStore, compiled: Compiled, ctx: Context, sample_size: int) -> Preview:
    started = time.perf_counter()
    out = Preview()
    test = compiled.test
    for entry in audience.scan():
        out.evaluated += 1
        f = entry.facts
        if f.get("x") or not test(f, ctx):
            continue
        out.count += 1
        if len(out.sample) < sample_size:
            out.sample.append((entry.contact_id, compiled.explain(f, ctx) or []))
    out.seconds = time.perf_counter() - started
    EVALUATION_SECONDS.labels("preview").observe(out.seconds)
    return out


def should_hold(seg: SegmentDef, facts: dict[str, Any], member: bool, ctx: Context) -> bool:
    if seg.state != ACTIVE or facts.get("x"):
        return False
    if seg.kind == DYNAMIC:
        return seg.compiled is not None and seg.compiled.test(facts, ctx)
    return member


def fill(segments: SegmentStore, audience: AudienceStore, writes: AudienceWrites, doc: dict[str, Any],
         owner: str) -> tuple[int, int]:
    """Reconcile one (leased) segment; returns (members, corrections)."""
    started = time.perf_counter()
    seg = definition(doc)
    ctx = writes.context()
    wrong: list[tuple[str, bool]] = []
    members = 0
    for entry in audience.scan():
        member = seg.id in entry.segments
        hold = should_hold(seg, entry.facts, member, ctx)
        members += hold
        if hold != member:
            wrong.append((entry.contact_id, hold))
    initial = not doc.get("recheck")
    for i, (cid, hold) in enumerate(wrong):
        writes.apply(cid, unchanged, create=False, initial=initial, only={seg.id})
        FILL_CHANGES.labels("entered" if hold else "left").inc()
        if i % RENEW_EVERY == RENEW_EVERY - 1:
            segments.renew_fill(seg.id, owner, FILL_LEASE, clock.now())
    took = time.perf_counter() - started
    EVALUATION_SECONDS.labels("recheck" if doc.get("recheck") else "fill").observe(took)
    segments.filled(seg.id, doc["version"], owner, members, took, clock.now())
    return members, len(wrong)


def count_members(audience: AudienceStore) -> dict[str, int]:
    """Every segment's members, from the pages (for the size gauges)."""
    counts: dict[str, int] = {}
    for entry in audience.scan():
        for sid in entry.segments:
            counts[sid] = counts.get(sid, 0) + 1
    return counts

