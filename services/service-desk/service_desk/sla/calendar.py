"""Business hours: when an SLA clock counts. Pure functions over a :class:`Calendar`
(weekly opening hours in an IANA time zone, plus holidays), with ``zoneinfo``.

Opening hours are local wall-clock times, so an interval is turned into UTC instants
day by day: across a daylight-saving change 09:00-17:00 stays 09:00-17:00 local (a
different UTC span), and a day whose clocks jump forward or back in an open interval
is that much shorter or longer (00:00-24:00 on the spring-forward day counts 23 hours).
A local time that does not exist (in the gap) counts from the moment the clocks jump;
an ambiguous one (the repeated hour) is its first occurrence.

Instants are aware UTC datetimes; durations are seconds (float, millisecond precision).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from typing import Any, Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crm_common.errors import FailedPrecondition

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DAY_SECONDS = 86_400
# How far ahead an instant is looked for: a calendar whose holidays close it for longer
# than this has no next opening (CalendarClosed), rather than a loop without end.
HORIZON_DAYS = 3 * 366


class CalendarClosed(FailedPrecondition):
    """The calendar opens no time within the horizon (SaveCalendar refuses such a
    calendar; one whose holidays later close it for years answers this)."""


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ValueError when there is none by that name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def parse_clock(text: str, *, end: bool = False) -> int:
    """``"09:30"`` -> seconds after local midnight; ``"24:00"`` only as an ``end``."""
    hours, sep, minutes = text.partition(":")
    if not (sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2 and 1 <= len(hours) <= 2):
        raise ValueError("must be a time of day HH:MM")
    value = int(hours) * 3600 + int(minutes) * 60
    if int(minutes) > 59 or value > DAY_SECONDS or (value == DAY_SECONDS and not end):
        raise ValueError("must be a time of day 00:00-23:59 (24:00 only to close)")
    return value


def format_clock(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


@dataclass(frozen=True)
class Calendar:
    """``week[d]``: the open intervals of weekday ``d`` (0 = Monday) in seconds after local
    midnight, sorted and disjoint; ``holidays``: local dates that are closed all day."""

    time_zone: str = "UTC"
    week: tuple[tuple[tuple[int, int], ...], ...] = field(default_factory=lambda: ((),) * 7)
    holidays: frozenset[date] = frozenset()

    @classmethod
    def always_open(cls, time_zone: str = "UTC") -> "Calendar":
        return cls(time_zone, tuple(((0, DAY_SECONDS),) for _ in DAYS))

    @property
    def is_always_open(self) -> bool:
        return not self.holidays and all(day == ((0, DAY_SECONDS),) for day in self.week)

    @classmethod
    def from_doc(cls, doc: dict[str, Any] | None) -> "Calendar":
        """A stored calendar (``{time_zone, hours: [{day, opens, closes}], holidays}``);
        None is a calendar that never closes (a policy without one counts every hour)."""
        if not doc:
            return cls.always_open()
        week: list[list[tuple[int, int]]] = [[] for _ in DAYS]
        for slot in doc.get("hours") or ():
            week[DAYS.index(slot["day"])].append((parse_clock(slot["opens"]), parse_clock(slot["closes"], end=True)))
        return cls(doc.get("time_zone") or "UTC", tuple(tuple(merge(day)) for day in week),
                   frozenset(date.fromisoformat(d) for d in doc.get("holidays") or ()))

    def is_open(self, at: datetime) -> bool:
        return any(a <= at < b for a, b in self._intervals_of(self._local_date(at)))

    # -- the open intervals, as UTC instants -----------------------------------------
    def _local_date(self, at: datetime) -> date:
        return at.astimezone(zone(self.time_zone)).date()

    def _intervals_of(self, day: date) -> list[tuple[datetime, datetime]]:
        if day in self.holidays:
            return []
        tz = zone(self.time_zone)
        out = []
        for opens, closes in self.week[day.weekday()]:
            out.append((_instant(day, opens, tz), _instant(day, closes, tz)))
        return [(a, b) for a, b in out if b > a]

    def intervals(self, start: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Open intervals that end after ``start``, in order (the first one clipped to
        start at ``start``), until the horizon."""
        day = self._local_date(start) - timedelta(days=1)
        for _ in range(HORIZON_DAYS + 2):
            for a, b in self._intervals_of(day):
                if b > start:
                    yield max(a, start), b
            day += timedelta(days=1)


def _instant(day: date, seconds: int, tz: ZoneInfo) -> datetime:
    """Local ``day`` at ``seconds`` after midnight (24:00 = the next day's midnight), in UTC."""
    if seconds == DAY_SECONDS:
        day, seconds = day + timedelta(days=1), 0
    local = datetime.combine(day, time(seconds // 3600, seconds % 3600 // 60), tzinfo=tz)
    instant = local.astimezone(timezone.utc)
    # A nonexistent local time (the spring-forward gap) starts when the clocks jump.
    if instant.astimezone(tz).replace(tzinfo=None) != local.replace(tzinfo=None):
        instant = _gap_end(local, tz)
    return instant


def _gap_end(local: datetime, tz: ZoneInfo) -> datetime:
    """The first instant after a spring-forward gap that contains ``local``."""
    before = local.replace(fold=0).astimezone(timezone.utc)
    after = local.replace(fold=1).astimezone(timezone.utc)
    low, high = min(before, after), max(before, after)
    # the offset changes somewhere in [low, high]: find the change, to the second
    offset = low.astimezone(tz).utcoffset()
    while high - low > timedelta(seconds=1):
        mid = low + (high - low) / 2
        if mid.astimezone(tz).utcoffset() == offset:
            low = mid
        else:
            high = mid
    return high.replace(microsecond=0)


def merge(intervals) -> list[tuple[int, int]]:
    """Sorted, overlapping or touching intervals joined."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


# -- the two questions an SLA clock asks ------------------------------------------------

def business_seconds(cal: Calendar, start: datetime, end: datetime) -> float:
    """Open time between ``start`` and ``end`` (0 when end <= start)."""
    if end <= start:
        return 0.0
    if cal.is_always_open:
        return _seconds(end - start)
    total = timedelta()
    for a, b in cal.intervals(start):
        if a >= end:
            break
        total += min(b, end) - a
    return _seconds(total)


def add_business_seconds(cal: Calendar, start: datetime, seconds: float) -> datetime:
    """The instant at which ``seconds`` of open time have passed since ``start``: counting
    begins at the next opening when ``start`` is after hours. ``seconds`` <= 0 is
    ``start`` itself. CalendarClosed when the calendar never opens enough."""
    if seconds <= 0:
        return start
    if cal.is_always_open:
        return start + timedelta(seconds=seconds)
    remaining = timedelta(seconds=seconds)
    for a, b in cal.intervals(start):
        if remaining <= b - a:
            return _ms(a + remaining)
        remaining -= b - a
    raise CalendarClosed(f"the calendar does not open {seconds:g} s of business time within {HORIZON_DAYS} days")


def next_opening(cal: Calendar, at: datetime) -> datetime:
    """``at`` if the calendar is open then, else when it opens next."""
    for a, _ in cal.intervals(at):
        return a
    raise CalendarClosed(f"the calendar does not open within {HORIZON_DAYS} days")


def _seconds(delta: timedelta) -> float:
    return round(delta.total_seconds(), 3)


def _ms(at: datetime) -> datetime:
    return at.replace(microsecond=at.microsecond // 1000 * 1000)
