"""A ticket's SLA clocks as pure values: first response and resolution, each counting
business seconds of the policy's calendar against its target.

A clock keeps what it counted so far (``elapsed``, up to ``running_since``) and, while
it runs, the instants its warning and its breach fall due (``warn_at``, ``due_at``,
computed with the calendar from what is left). Everything that happens to a ticket is
one of four moves, each taking ``now``:

* ``pause``  (pending on the customer: resolution only) banks the elapsed time and
  clears the due instants: nothing falls due while it waits;
* ``resume`` (the customer answered, the ticket reopened) counts on from ``now``;
* ``stop``   (first agent reply; resolution) banks the elapsed time for good: ``met``
  says whether it stayed within the target;
* ``retarget`` (another policy: the customer's tier or value changed, or the priority)
  banks the elapsed time and schedules the rest against the new target. Elapsed time
  is never restarted; a warning or breach already published stays published.

The store indexes ``Sla.next_due()`` (the earliest warning or breach not yet published):
the timer finds due tickets with one range query on it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from .calendar import Calendar, add_business_seconds, business_seconds

FIRST_RESPONSE = "first_response"
RESOLUTION = "resolution"
TARGETS = (FIRST_RESPONSE, RESOLUTION)
WARNING, BREACH = "warning", "breach"


@dataclass(frozen=True)
class Clock:
    target: float | None = None             # business seconds allowed; None: no target
    elapsed: float = 0.0                    # counted up to running_since (or to the stop)
    running_since: datetime | None = None   # None: paused, stopped or never started
    stopped_at: datetime | None = None
    warn_at: datetime | None = None
    due_at: datetime | None = None
    warned: bool = False                    # the warning was published (once)
    breached: bool = False                  # the breach was published (once)

    @property
    def running(self) -> bool:
        return self.running_since is not None

    @property
    def stopped(self) -> bool:
        return self.stopped_at is not None

    @property
    def met(self) -> bool | None:
        """Stopped within the target (None while it still counts, or without a target). A
        breach published stays a miss even if a looser target came later."""
        if not self.stopped or self.target is None:
            return None
        return not self.breached and self.elapsed <= self.target

    def elapsed_at(self, cal: Calendar, now: datetime) -> float:
        if not self.running:
            return self.elapsed
        return round(self.elapsed + business_seconds(cal, self.running_since, now), 3)

    def _banked(self, cal: Calendar, now: datetime) -> "Clock":
        return replace(self, elapsed=self.elapsed_at(cal, now), running_since=now if self.running else None)

    def scheduled(self, cal: Calendar, warning_share: float) -> "Clock":
        """Warn and due instants for a running clock with a target; none otherwise."""
        if not self.running or self.target is None:
            return replace(self, warn_at=None, due_at=None)
        start = self.running_since
        return replace(self, warn_at=add_business_seconds(cal, start, self.target * warning_share - self.elapsed),
                       due_at=add_business_seconds(cal, start, self.target - self.elapsed))

    # -- the moves ---------------------------------------------------------------------
    def start(self, cal: Calendar, now: datetime, warning_share: float) -> "Clock":
        return replace(self, running_since=now).scheduled(cal, warning_share)

    def pause(self, cal: Calendar, now: datetime) -> "Clock":
        if not self.running:
            return self
        return replace(self._banked(cal, now), running_since=None, warn_at=None, due_at=None)

    def resume(self, cal: Calendar, now: datetime, warning_share: float) -> "Clock":
        if self.running:
            return self
        return replace(self, running_since=now, stopped_at=None).scheduled(cal, warning_share)

    def stop(self, cal: Calendar, now: datetime) -> "Clock":
        if self.stopped:
            return self
        return replace(self._banked(cal, now), running_since=None, stopped_at=now, warn_at=None, due_at=None)

    def retarget(self, cal: Calendar, now: datetime, target: float | None, warning_share: float,
                 new_cal: Calendar | None = None) -> "Clock":
        """Bank what ``cal`` counted so far, then schedule the rest of ``target`` on
        ``new_cal`` (the new policy's calendar; default the same)."""
        return replace(self._banked(cal, now), target=target).scheduled(new_cal or cal, warning_share)

    # -- what is due ---------------------------------------------------------------------
    def next_due(self) -> datetime | None:
        due = [at for at, done in ((self.warn_at, self.warned), (self.due_at, self.breached))
               if at is not None and not done]
        return min(due) if due else None

    def alerts(self, now: datetime, warning_share: float) -> list[str]:
        """What has fallen due and is not published yet: by the scheduled instants while
        the clock runs, by the banked time when it does not (a stop after the due
        instant, or a paused clock given a tighter target)."""
        if self.target is None:
            return []
        if self.running:
            warn = self.warn_at is not None and self.warn_at <= now
            due = self.due_at is not None and self.due_at <= now
        else:
            warn, due = self.elapsed >= self.target * warning_share, self.elapsed > self.target
        return [kind for kind, hit, done in ((WARNING, warn or due, self.warned), (BREACH, due, self.breached))
                if hit and not done]

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any] | None) -> "Clock":
        return cls(**{k: v for k, v in (doc or {}).items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Sla:
    """The policy a ticket is served under and its two clocks."""

    policy_id: str | None = None
    policy_name: str = ""
    calendar_id: str | None = None
    warning_percent: int = 80
    priority: str = "normal"            # the priority the targets are for
    tier: str = ""
    segment: str = ""
    clocks: dict[str, Clock] = field(default_factory=lambda: {t: Clock() for t in TARGETS})

    @property
    def warning_share(self) -> float:
        return self.warning_percent / 100

    def clock(self, target: str) -> Clock:
        return self.clocks[target]

    def with_clock(self, target: str, clock: Clock) -> "Sla":
        return replace(self, clocks={**self.clocks, target: clock})

    def next_due(self) -> datetime | None:
        due = [at for c in self.clocks.values() if (at := c.next_due()) is not None]
        return min(due) if due else None

    def alerts(self, now: datetime) -> list[tuple[str, str]]:
        """``(target, WARNING|BREACH)`` due at ``now`` and not yet published, warnings first."""
        found = [(t, kind) for t in TARGETS for kind in self.clocks[t].alerts(now, self.warning_share)]
        return sorted(found, key=lambda tk: (tk[1] != WARNING, TARGETS.index(tk[0])))

    def mark(self, target: str, kind: str) -> "Sla":
        flag = {"warned": True} if kind == WARNING else {"breached": True}
        return self.with_clock(target, replace(self.clocks[target], **flag))

    @property
    def breached(self) -> bool:
        return any(c.breached for c in self.clocks.values())

    def to_doc(self) -> dict[str, Any]:
        return {"policy_id": self.policy_id, "policy_name": self.policy_name, "calendar_id": self.calendar_id,
                "warning_percent": self.warning_percent, "priority": self.priority, "tier": self.tier,
                "segment": self.segment, "clocks": {t: c.to_doc() for t, c in self.clocks.items()}}

    @classmethod
    def from_doc(cls, doc: dict[str, Any] | None) -> "Sla":
        doc = doc or {}
        clocks = {t: Clock.from_doc((doc.get("clocks") or {}).get(t)) for t in TARGETS}
        return cls(doc.get("policy_id"), doc.get("policy_name") or "", doc.get("calendar_id"),
                   int(doc.get("warning_percent") or 80), doc.get("priority") or "normal", doc.get("tier") or "",
                   doc.get("segment") or "", clocks)
