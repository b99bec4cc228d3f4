"""How a change to a member becomes durable and announced: the write pipeline of the
loyalty service (store.py says what is stored and why it is safe).

:meth:`MemberWrites.apply` takes a pure ``op`` (the member -> a domain Change, or a
typed error that is the answer) and makes it durable. Every request for a member queues
in the member's turn (crm_common.nameko.keylock); whoever holds the turn serves the
whole queue: at most one read, ONE guarded write for all the queued changes, one ledger
insert, the publishes. Uncontended that is a read and a write; a burst for one member
(a thousand redemptions at once) costs a write per batch instead of a storm of lost
races. Correctness never rests on the turn: the write is guarded by the version it
started from, so another replica's write makes it fail and the queue is served again
from a fresh read.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any, Callable

from crm_common import audit, clock
from crm_common.errors import CrmError, VersionConflict
from crm_common.ids import derived_id

from . import domain
from .events import ENTRY_EVENTS, MemberEnrolled, TierChanged
from .store import PENDING, LoyaltyStore, Member, Written
from .views import entry_view

# Another replica writing the same member makes a guarded write lose; the queue is
# served again from a fresh read, at most this many times.
WRITE_ATTEMPTS = 20

Op = Callable[[Member | None], "domain.Change | None"]


@dataclass(eq=False)
class _Queued:
    """One request waiting in a member's turn, and what became of it."""

    op: Op
    started: float
    principal: Any = None          # who asked, and in which request: for its audit entries
    request_id: str | None = None
    result: Written | None = None
    error: BaseException | None = None
    finished: bool = False

    def finish(self, result: Written | None = None, *, error: BaseException | None = None) -> None:
        self.result, self.error, self.finished = result, error, True


class MemberWrites:
    """One worker's view of the pipeline (the store, the outbox, this process's turns)."""

    def __init__(self, store: LoyaltyStore, outbox, locks, policy: domain.Policy):
        self.store, self.outbox, self.locks, self.policy = store, outbox, locks, policy

    def _events(self, contact_id: str, change: domain.Change, version: int):
        """The envelopes announcing a change: those about the member, and per ledger
        entry its own (ids derived from what they announce, so a relay repeats them)."""
        st, member_events = change.state, []
        if change.enrolled:
            member_events += self.outbox.announce(MemberEnrolled(
                contact_id=contact_id, member_id=st.member_id, tier=st.tier, enrolled_at=st.enrolled_at),
                event_id=derived_id("evt", "enrolled", contact_id))
        if change.tier_changed:
            now = clock.now()
            member_events += self.outbox.announce(TierChanged(
                contact_id=contact_id, from_tier=change.tier_from, to_tier=st.tier,
                points_earned_12m=domain.points_earned_12m(st.lots, now), changed_at=now),
                event_id=derived_id("evt", "tier", contact_id, str(version)))
        entry_events = {entry["_id"]: self.outbox.announce(ENTRY_EVENTS[entry["kind"]](
            contact_id=contact_id, entry=entry_view(entry), balance=entry["balance_after"]),
            event_id=derived_id("evt", entry["_id"])) for entry in change.entries}
        return member_events, entry_events

    def _enrolment_audit(self, contact_id: str, change: domain.Change, applied) -> list[dict[str, Any]]:
        """The audit entry of an enrolment, by the request that enrolled (points changes
        are audited in the ledger itself: each entry names who asked)."""
        enroller = next((q for q, c in applied if c.enrolled), None)
        if enroller is None:
            return []
        st = change.state
        return [audit.envelope(source=self.outbox.source, record_type="member", record_id=contact_id,
                               operation="enroll", principal=enroller.principal, before={},
                               after={"member_id": st.member_id, "tier": st.tier,
                                      "enrolled_at": clock.to_iso(st.enrolled_at)},
                               correlation_id=enroller.request_id, contact_id=contact_id)]

    def apply(self, contact_id: str, op: Op) -> Written:
        """Apply ``op`` (pure: the member -> a domain Change; a typed error is the answer;
        None or a no-op change writes nothing) to the member, durably, and publish what
        it announces. Every request for a member queues in its turn (KeyLocks); whoever
        holds the turn serves the whole queue (_serve): one read at most, one guarded
        write for all the changes, one ledger insert, the publishes. Uncontended, that is
        a read and a write; a burst for one member costs a write per batch, not a storm
        of lost races."""
        me = _Queued(op, time.monotonic(), self.outbox.principal, self.outbox.correlation_id)
        with self.locks.hold(contact_id, me) as turn:
            attempts = 0
            while not me.finished:
                try:
                    self._serve(contact_id, turn)
                except VersionConflict:   # another replica wrote the member: the queue goes again
                    attempts += 1
                    if attempts >= WRITE_ATTEMPTS:
                        raise
                    time.sleep(random.uniform(0, 0.005 * attempts))
        if me.error is not None:
            raise me.error
        return me.result

    def _serve(self, contact_id: str, turn) -> None:
        """Serve every request queued in the turn, in arrival order, on the running state.

        The turn remembers the member as it was last read or written here, and from when:
        a state that held after every queued request began is as good as a new read (they
        may all take effect at that instant); else it is read. The combined change is
        written once, guarded by the version it started from: if another replica wrote
        meanwhile, VersionConflict, and the applied requests go back to the queue. The
        write also drops the staged copies of entries earlier writes put in the ledger."""
        batch = [q for q in turn.queue if not q.finished]
        if turn.last is not None and all(turn.last[1] >= q.started for q in batch):
            before = turn.last[0]
        else:
            at = time.monotonic()
            before = self.store.member(contact_id)
            turn.last = (before, at)
        member, applied = before, []
        for q in batch:
            try:
                change = q.op(member)
            except CrmError as exc:
                q.finish(error=exc)
                continue
            if change is None or change.is_noop:
                q.finish(Written(change, member))
                continue
            for entry in change.entries:   # the ledger is the points' audit trail: who asked, in which request
                entry["principal"] = q.principal.subject if q.principal else ""
                entry["request_id"] = q.request_id or ""
            applied.append((q, change))
            member = Member(contact_id, member.version if member else 0, change.state,
                            member.display_name if member else None, member.erased if member else False)
        turn.queue[:] = [q for q in turn.queue if not q.finished and q not in {a for a, _ in applied}]
        if not applied:
            return
        at, forget = time.monotonic(), self.locks.take_carried(contact_id)
        combined = domain.combine([c for _, c in applied])
        member_events, entry_events = self._events(contact_id, combined, (before.version if before else 0) + 1)
        member_events += self._enrolment_audit(contact_id, combined, applied)
        try:
            after = self.store.write(contact_id, before, combined, member_events, entry_events, clock.now(),
                                     forget=forget)
        except VersionConflict:
            turn.last = None
            self.locks.carry(contact_id, forget)
            turn.queue[:0] = [q for q, _ in applied]   # served again, from a fresh read
            raise
        turn.last = (after, at)
        written = Written(combined, after, member_events, entry_events, before=before)
        collided = {e["_id"] for e in self.store.materialize(contact_id, combined.entries, entry_events)}
        if collided:
            self._take_back(contact_id, turn, written, collided)
        self._publish(contact_id, written, skip=collided)
        # in the ledger now: the member's next write here drops their staged copies
        self.locks.carry(contact_id, [e["_id"] for e in combined.entries if e["_id"] not in collided])
        for i, (q, change) in enumerate(applied):
            ids = {e["_id"] for e in change.entries}
            if ids & collided:
                refused = change.result_entry_id if change.result_entry_id in collided else sorted(ids & collided)[0]
                q.finish(Written(domain.collided(before.state, change, refused), before, None))
            else:
                q.finish(Written(change, Member(contact_id, after.version, change.state, after.display_name,
                                                after.erased), member_events if i == 0 else [],
                                 {k: v for k, v in entry_events.items() if k in ids}, before=before))

    def _take_back(self, contact_id: str, turn, written: Written, collided: set[str]) -> None:
        """Entries the ledger refused (their id was taken: a purchase that earned before):
        the write is undone when it was theirs alone, else they are voided in a write of
        their own. Either way their events never leave."""
        entries = [e for e in written.change.entries if e["_id"] in collided]
        if len(entries) == len(written.change.entries) and written.before is not None:
            try:
                self.store.undo(contact_id, written.member, written.change, written.before, written.staged,
                                clock.now())
                turn.last = (written.before, time.monotonic())
                return
            except VersionConflict:
                pass
        self.store.forget_entries(contact_id, sorted(collided))
        for _ in range(WRITE_ATTEMPTS):
            member = self.store.member(contact_id)
            change = domain.void(member.state, contact_id, clock.now(), self.policy, entries)
            try:
                after = self.store.write(contact_id, member, change, [], {}, clock.now())
            except VersionConflict:
                continue
            turn.last = (after, time.monotonic())
            return
        raise VersionConflict(f"member {contact_id} is too busy to take back a refused entry, retry",
                              {"contact_id": contact_id})

    def _publish(self, contact_id: str, written: Written, skip: set[str] = frozenset()) -> None:
        """Publish what a write staged: the member's events (cleared from its outbox) and
        each entry's (cleared from the entry's, in the ledger). The staged copies of the
        entries on the member are dropped by its next write, or by the relay timer
        (repair_leftovers)."""
        if written.staged and not skip:
            self.outbox.publish(self.store.members, contact_id, written.staged)
        self.outbox.publish_many(self.store.ledger, {entry_id: events for entry_id, events in
                                                     written.entry_events.items() if entry_id not in skip})

    def repair_leftovers(self) -> int:
        """Entries staged on a member for a while: insert them (after a crash between the
        member write and the ledger that is what repairs it; otherwise they are there and
        the insert is a no-op), then drop the staged copies. One whose id turned out to
        be taken is voided; its events never leave (they went with it)."""
        done = 0
        for doc in self.store.leftovers():
            contact_id = doc["_id"]
            staged = list((doc.get(PENDING) or {}).values())
            entries = [s["entry"] for s in staged]
            collided = {e["_id"] for e in self.store.materialize(
                contact_id, entries, {s["entry"]["_id"]: s["events"] for s in staged})}
            self.store.forget_entries(contact_id, [e["_id"] for e in entries])
            if collided:
                refused = [e for e in entries if e["_id"] in collided]
                self.apply(contact_id, lambda member: None if member is None else
                           domain.void(member.state, contact_id, clock.now(), self.policy, refused))
            done += len(entries)
        return done
