"""The service desk's SLA rules, pure: business-hours arithmetic (time zones, daylight
saving, holidays, weekends, after-hours openings), the clocks (pause, resume, stop,
retarget with the elapsed time kept, warnings and breaches once), the policy choice and
value segments."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from service_desk.sla import policies as P
from service_desk.sla.calendar import (Calendar, CalendarClosed, add_business_seconds, business_seconds,
                                       next_opening, parse_clock)
from service_desk.sla.clocks import BREACH, FIRST_RESPONSE, RESOLUTION, WARNING, Clock, Sla

H = 3600
UTC = timezone.utc
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday")


def cal(time_zone="Europe/Berlin", days=WEEKDAYS, opens="09:00", closes="17:00", holidays=()):
    return Calendar.from_doc({"time_zone": time_zone, "holidays": list(holidays),
                              "hours": [{"day": d, "opens": opens, "closes": closes} for d in days]})


def at(text):  # a UTC instant
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def local(text, zone="Europe/Berlin"):
    from zoneinfo import ZoneInfo
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)


# -- business hours ------------------------------------------------------------------------

def test_a_ticket_opened_friday_evening_counts_from_monday_morning():
    c = cal()
    friday_evening = local("2026-11-27T19:30")          # a Friday
    saturday_noon, monday_nine = local("2026-11-28T12:00"), local("2026-11-30T09:00")
    assert business_seconds(c, friday_evening, saturday_noon) == 0           # not a second counted on the weekend
    assert business_seconds(c, friday_evening, monday_nine) == 0
    assert next_opening(c, friday_evening) == monday_nine
    assert add_business_seconds(c, friday_evening, 4 * H) == local("2026-11-30T13:00")
    # 8 business hours from Friday 15:00 = 2 h Friday + 6 h Monday
    assert add_business_seconds(c, local("2026-11-27T15:00"), 8 * H) == local("2026-11-30T15:00")
    assert business_seconds(c, local("2026-11-27T15:00"), local("2026-11-30T15:00")) == 8 * H


def test_opened_before_opening_and_within_hours():
    c = cal()
    assert add_business_seconds(c, local("2026-11-24T06:00"), 30 * 60) == local("2026-11-24T09:30")
    assert add_business_seconds(c, local("2026-11-24T10:00"), H) == local("2026-11-24T11:00")
    assert add_business_seconds(c, local("2026-11-24T16:30"), H) == local("2026-11-25T09:30")   # overnight
    assert add_business_seconds(c, local("2026-11-24T10:00"), 0) == local("2026-11-24T10:00")
    assert business_seconds(c, local("2026-11-24T10:00"), local("2026-11-24T09:00")) == 0


def test_holidays_are_closed_all_day():
    c = cal(holidays=["2026-12-24", "2026-12-25"])     # Thursday, Friday
    wednesday_four = local("2026-12-23T16:00")
    assert add_business_seconds(c, wednesday_four, 2 * H) == local("2026-12-28T10:00")      # Monday
    assert business_seconds(c, local("2026-12-24T00:00"), local("2026-12-26T00:00")) == 0


@pytest.mark.parametrize("zone, day, hours", [
    ("Europe/Berlin", "2026-03-29", 23), ("Europe/Berlin", "2026-10-25", 25),     # spring forward, fall back
    ("America/New_York", "2026-03-08", 23), ("America/New_York", "2026-11-01", 25),
    ("Asia/Tehran", "2026-03-22", 24),                                              # Iran keeps no DST since 2022
])
def test_a_whole_day_counts_the_hours_it_really_has(zone, day, hours):
    c = cal(zone, days=(*WEEKDAYS, "saturday", "sunday"), opens="00:00", closes="24:00")
    d = date.fromisoformat(day)
    start = local(f"{day}T00:00", zone)
    end = local(f"{(d + timedelta(days=1)).isoformat()}T00:00", zone)
    assert business_seconds(c, start, end) == hours * H


def test_opening_hours_stay_local_across_daylight_saving():
    c = cal("Europe/Berlin")
    # 9-17 local is 08-16 UTC in winter and 07-15 UTC in summer
    assert next_opening(c, at("2026-03-27T20:00")) == at("2026-03-30T07:00")
    assert next_opening(c, at("2026-03-26T20:00")) == at("2026-03-27T08:00")
    # 8 business hours from Friday 17:00 (winter) end Monday 17:00 (summer): 15:00 UTC
    assert add_business_seconds(c, local("2026-03-27T17:00"), 8 * H) == at("2026-03-30T15:00")


def test_an_interval_opening_in_the_spring_forward_gap_opens_when_the_clocks_jump():
    c = cal("Europe/Berlin", days=("sunday",), opens="02:30", closes="04:00")
    # 2026-03-29 02:00 CET jumps to 03:00 CEST: open from 03:00 CEST (01:00 UTC) to 04:00 CEST
    assert next_opening(c, at("2026-03-28T12:00")) == at("2026-03-29T01:00")
    assert business_seconds(c, at("2026-03-28T12:00"), at("2026-03-29T12:00")) == H


def test_iran_calendar_saturday_to_wednesday_in_tehran():
    c = cal("Asia/Tehran", days=("saturday", "sunday", "monday", "tuesday", "wednesday"), opens="08:00", closes="16:00")
    thursday = local("2026-11-26T10:00", "Asia/Tehran")
    assert next_opening(c, thursday) == local("2026-11-28T08:00", "Asia/Tehran")   # Saturday


def test_always_open_and_a_calendar_that_never_opens():
    c = Calendar.from_doc(None)
    assert c.is_always_open
    assert add_business_seconds(c, at("2026-11-28T03:00"), 90) == at("2026-11-28T03:01:30")
    closed = cal(holidays=[(date(2026, 1, 1) + timedelta(days=i)).isoformat() for i in range(1200)])
    with pytest.raises(CalendarClosed):
        add_business_seconds(closed, at("2026-01-01T00:00"), 60)


def test_clock_times_parse():
    assert parse_clock("09:30") == 9 * H + 1800 and parse_clock("24:00", end=True) == 24 * H
    for bad in ("24:00", "9", "25:00", "09:60", "ab:cd", "9:5"):
        with pytest.raises(ValueError):
            parse_clock(bad)


# -- clocks ------------------------------------------------------------------------------

ALWAYS = Calendar.from_doc(None)
T0 = at("2026-11-24T10:00")


def test_pending_pauses_resolution_and_resume_continues_with_the_time_kept():
    c = Clock(target=8 * H).start(ALWAYS, T0, 0.8)
    assert (c.warn_at, c.due_at) == (T0 + timedelta(seconds=6.4 * H), T0 + timedelta(hours=8))
    paused = c.pause(ALWAYS, T0 + timedelta(hours=2))
    assert (paused.elapsed, paused.running, paused.due_at, paused.next_due()) == (2 * H, False, None, None)
    assert paused.elapsed_at(ALWAYS, T0 + timedelta(days=3)) == 2 * H          # waiting does not count
    assert paused.alerts(T0 + timedelta(days=3), 0.8) == []
    back = paused.resume(ALWAYS, T0 + timedelta(days=3), 0.8)
    assert back.due_at == T0 + timedelta(days=3, hours=6)                      # 6 h left, from the reply
    assert back.elapsed_at(ALWAYS, T0 + timedelta(days=3, hours=1)) == 3 * H


def test_pausing_over_a_weekend_in_business_hours():
    c = cal()
    clock = Clock(target=8 * H).start(c, local("2026-11-27T13:00"), 0.8)       # Friday 13:00, due Monday 13:00
    assert clock.due_at == local("2026-11-30T13:00")
    paused = clock.pause(c, local("2026-11-27T15:00"))                         # 2 h counted
    back = paused.resume(c, local("2026-11-30T11:00"), 0.8)                    # Monday 11:00, 6 h left
    assert back.due_at == local("2026-11-30T17:00")


def test_stop_records_whether_the_target_was_met():
    c = Clock(target=H).start(ALWAYS, T0, 0.8)
    assert c.stop(ALWAYS, T0 + timedelta(minutes=59)).met is True
    late = c.stop(ALWAYS, T0 + timedelta(minutes=61))
    assert late.met is False and late.alerts(T0 + timedelta(minutes=61), 0.8) == [WARNING, BREACH]
    assert Clock().start(ALWAYS, T0, 0.8).stop(ALWAYS, T0 + timedelta(days=9)).met is None   # no target


def test_retarget_keeps_the_elapsed_time():
    c = Clock(target=8 * H).start(ALWAYS, T0, 0.8)
    tighter = c.retarget(ALWAYS, T0 + timedelta(hours=3), 4 * H, 0.8)
    assert tighter.elapsed == 3 * H and tighter.due_at == T0 + timedelta(hours=4)
    looser = c.retarget(ALWAYS, T0 + timedelta(hours=3), 24 * H, 0.8)
    assert looser.due_at == T0 + timedelta(hours=24)
    # a paused clock keeps its pause: retargeting schedules nothing until it resumes
    paused = c.pause(ALWAYS, T0 + timedelta(hours=1)).retarget(ALWAYS, T0 + timedelta(hours=5), 4 * H, 0.8)
    assert (paused.elapsed, paused.due_at) == (H, None)
    assert paused.resume(ALWAYS, T0 + timedelta(hours=6), 0.8).due_at == T0 + timedelta(hours=9)
    # a paused clock given a target it already exceeds is due at once
    assert c.pause(ALWAYS, T0 + timedelta(hours=5)).retarget(ALWAYS, T0 + timedelta(hours=6), 4 * H, 0.8) \
        .alerts(T0 + timedelta(hours=6), 0.8) == [WARNING, BREACH]


def test_warning_then_breach_each_once():
    sla = Sla(policy_id="p", warning_percent=50, clocks={
        FIRST_RESPONSE: Clock(target=100).start(ALWAYS, T0, 0.5),
        RESOLUTION: Clock(target=1000).start(ALWAYS, T0, 0.5)})
    assert sla.next_due() == T0 + timedelta(seconds=50)
    assert sla.alerts(T0 + timedelta(seconds=49)) == []
    assert sla.alerts(T0 + timedelta(seconds=50)) == [(FIRST_RESPONSE, WARNING)]
    warned = sla.mark(FIRST_RESPONSE, WARNING)
    assert warned.alerts(T0 + timedelta(seconds=60)) == [] and warned.next_due() == T0 + timedelta(seconds=100)
    # a timer that comes late finds both; warnings first
    assert sla.alerts(T0 + timedelta(seconds=600)) == [(FIRST_RESPONSE, WARNING), (RESOLUTION, WARNING),
                                                       (FIRST_RESPONSE, BREACH)]
    done = warned.mark(FIRST_RESPONSE, BREACH)
    assert done.next_due() == T0 + timedelta(seconds=500) and done.breached
    assert Sla.from_doc(done.to_doc()) == done


# -- policies and segments ---------------------------------------------------------------

def policy(pid, fr, res, tiers=(), segments=()):
    return {"_id": pid, "tiers": list(tiers), "segments": list(segments),
            "targets": [{"priority": p, "first_response_seconds": fr, "resolution_seconds": res}
                        for p in P.PRIORITIES]}


POLICIES = [policy("default", 8 * H, 40 * H), policy("gold", 2 * H, 16 * H, tiers=["gold", "platinum"]),
            policy("platinum", H, 8 * H, tiers=["platinum"]), policy("high-value", 2 * H, 12 * H, segments=["high"]),
            policy("gold-high", 1800, 4 * H, tiers=["gold"], segments=["high"])]


@pytest.mark.parametrize("tier, segment, chosen", [
    ("bronze", "none", "default"), ("", "none", "default"), ("gold", "low", "gold"),
    ("platinum", "low", "platinum"), ("bronze", "high", "high-value"), ("gold", "high", "gold-high"),
    ("platinum", "high", "platinum"),
])
def test_the_tightest_policy_that_applies(tier, segment, chosen):
    assert P.choose(POLICIES, tier, segment, "normal")["_id"] == chosen


def test_no_policy_no_targets():
    assert P.choose([policy("gold", H, H, tiers=["gold"])], "bronze", "none", "normal") is None
    assert P.targets(None, "normal") is None


def test_value_segments_never_add_currencies():
    bands = P.parse_bands("EUR:50000:500000, USD:60000:600000")
    assert bands == {"EUR": (50000, 500000), "USD": (60000, 600000)}
    seg = lambda *totals: P.segment_for([{"amount_minor": a, "currency": c} for a, c in totals], bands)
    assert seg() == "none" and seg((0, "EUR")) == "none"
    assert seg((49_999, "EUR")) == "low" and seg((50_000, "EUR")) == "medium" and seg((500_000, "EUR")) == "high"
    assert seg((400_000, "EUR"), (400_000, "USD")) == "medium"     # 8,000 in two currencies is not "high"
    assert seg((10**9, "JPY")) == "low"                            # a currency without bands
    for bad in ("EU:1:2", "EUR:2:1", "EUR:0:5", "EUR:1"):
        with pytest.raises(ValueError):
            P.parse_bands(bad)
