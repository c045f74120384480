"""The aggregator's schedule: New York months, DST-correct run times, catch-up, and the loop."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from reports.schedule import (
    MAX_SLEEP_SECONDS,
    due_months,
    latest_due_month,
    next_run,
    preceding_month,
    run_scheduler,
)

NY = ZoneInfo("America/New_York")
SIX = time(6, 0)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(("now", "month"), [
    ("2027-01-01T05:00:00", "2026-12"),   # New Year in New York (00:00 EST)
    ("2027-01-01T04:59:59", "2026-11"),   # still Dec 31 in New York
    ("2026-12-01T03:30:00", "2026-10"),   # Dec 1 in UTC, still Nov 30 in New York
    ("2026-12-01T05:00:00", "2026-11"),
    ("2026-04-01T03:59:59", "2026-02"),   # EDT: midnight is 04:00Z
    ("2026-04-01T04:00:00", "2026-03"),
    ("2026-01-15T12:00:00", "2025-12"),
])
def test_preceding_month_is_new_york_time(now: str, month: str) -> None:
    assert preceding_month(utc(now)) == month


def test_preceding_month_in_another_zone_and_naive_refused() -> None:
    assert preceding_month(utc("2026-12-01T03:30:00"), tz="UTC") == "2026-11"
    with pytest.raises(ValueError, match="timezone-aware"):
        preceding_month(datetime(2026, 12, 1))


@pytest.mark.parametrize(("now", "expected"), [
    # winter (EST, UTC-5): 06:00 local is 11:00Z
    ("2026-01-15T00:00:00", "2026-02-01T11:00:00"),
    # across the March change (Mar 8, 2026): April 1st is in EDT, 06:00 local is 10:00Z
    ("2026-03-01T11:00:00", "2026-04-01T10:00:00"),
    ("2026-03-01T10:59:59", "2026-03-01T11:00:00"),
    # summer (EDT, UTC-4)
    ("2026-07-01T09:59:59", "2026-07-01T10:00:00"),
    ("2026-07-01T10:00:00", "2026-08-01T10:00:00"),  # strictly after now
    # across the November change (Nov 1, 2026, itself a Sunday of DST's end)
    ("2026-10-01T10:00:00", "2026-11-01T11:00:00"),
    ("2026-11-01T11:00:00", "2026-12-01T11:00:00"),
    # New Year
    ("2026-12-01T11:00:01", "2027-01-01T11:00:00"),
])
def test_next_run_is_the_first_at_six_new_york_time(now: str, expected: str) -> None:
    run = next_run(utc(now), SIX)
    assert run == utc(expected)
    local = run.astimezone(NY)
    assert (local.day, local.hour, local.minute) == (1, 6, 0)


def test_next_run_accepts_any_zone_for_now_and_answers_in_utc() -> None:
    now = datetime(2026, 10, 31, 23, 0, tzinfo=ZoneInfo("Asia/Tokyo"))  # Oct 31 10:00 in NY
    run = next_run(now, SIX)
    assert run == utc("2026-11-01T11:00:00")
    assert run.utcoffset() == timedelta(0)


def test_next_run_takes_an_ambiguous_time_at_its_first_occurrence() -> None:
    # 2026-11-01 01:30 happens twice in New York: 05:30Z (EDT), then 06:30Z (EST).
    at = time(1, 30)
    assert next_run(utc("2026-10-20T00:00:00"), at) == utc("2026-11-01T05:30:00")
    # Between the two occurrences (01:00 EST), this month's run is over: December's is next.
    assert next_run(utc("2026-11-01T06:00:00"), at) == utc("2026-12-01T06:30:00")


def test_next_run_refuses_a_zoned_time() -> None:
    with pytest.raises(ValueError, match="wall-clock"):
        next_run(utc("2026-01-01T00:00:00"), time(6, 0, tzinfo=UTC))


def test_latest_due_month_waits_for_the_run_time_on_the_first() -> None:
    assert latest_due_month(utc("2026-11-01T10:59:59"), SIX) == "2026-09"
    assert latest_due_month(utc("2026-11-01T11:00:00"), SIX) == "2026-10"


@pytest.mark.parametrize(("last", "now", "expected"), [
    # published on time: nothing to do until the next 1st
    ("2026-10", "2026-11-20T12:00:00", []),
    # down on Nov 1st, started on the 3rd: October
    ("2026-09", "2026-11-03T12:00:00", ["2026-10"]),
    # down for three 1sts: all three, oldest first
    ("2026-07", "2026-11-03T12:00:00", ["2026-08", "2026-09", "2026-10"]),
    # before 06:00 on the 1st, October is not due yet
    ("2026-09", "2026-11-01T10:30:00", []),
    ("2026-08", "2026-11-01T10:30:00", ["2026-09"]),
    # across New Year
    ("2026-11", "2027-01-02T00:00:00", ["2026-12"]),
    # nothing published yet: the latest due month only
    (None, "2026-11-03T12:00:00", ["2026-10"]),
    # a month ahead of the clock (clock set back): nothing
    ("2026-12", "2026-11-03T12:00:00", []),
])
def test_due_months(last: str | None, now: str, expected: list[str]) -> None:
    assert due_months(last, utc(now), SIX) == expected


def test_due_months_never_includes_the_current_month() -> None:
    now = utc("2026-11-30T23:00:00")
    assert "2026-11" not in due_months("2025-01", now, SIX)
    assert "2026-11" not in due_months(None, now, SIX)


def test_due_months_catches_up_at_most_a_year() -> None:
    months = due_months("2020-01", utc("2026-11-03T12:00:00"), SIX)
    assert months == [f"2025-{m:02d}" for m in (11, 12)] + [f"2026-{m:02d}" for m in range(1, 11)]
    assert due_months("2020-01", utc("2026-11-03T12:00:00"), SIX, limit=2) == ["2026-09",
                                                                               "2026-10"]


@pytest.mark.parametrize("bad", ["2026-13", "2026-1", "26-10", "2026/10", "2026-00", ""])
def test_due_months_refuses_a_malformed_month(bad: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        due_months(bad, utc("2026-11-03T12:00:00"), SIX)


class FakeClock:
    """A clock that only moves when the scheduler sleeps; stops the loop at ``until``."""

    def __init__(self, start: datetime, until: datetime, stop: threading.Event) -> None:
        self.current = start
        self.until = until
        self.stop = stop
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self.current

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.current += timedelta(seconds=seconds)
        if self.current >= self.until:
            self.stop.set()


def test_scheduler_publishes_each_month_once_in_order_and_stops() -> None:
    stop = threading.Event()
    # Down since before September's publication; runs from Oct 15 to Jan 2.
    clock = FakeClock(utc("2026-10-15T12:00:00"), utc("2027-01-02T00:00:00"), stop)
    published: list[tuple[str, datetime]] = []

    run_scheduler(lambda month: published.append((month, clock.now())), SIX,
                  stop=stop, last_published="2026-07", now=clock.now, sleep=clock.sleep)

    assert [m for m, _ in published] == ["2026-08", "2026-09", "2026-10", "2026-11", "2026-12"]
    # the catch-up at start, then each month on the 1st at 06:00 New York time
    assert [t for _, t in published[2:]] == [
        utc("2026-11-01T11:00:00"), utc("2026-12-01T11:00:00"), utc("2027-01-01T11:00:00")]
    assert published[0][1] == published[1][1] == utc("2026-10-15T12:00:00")
    assert stop.is_set()
    assert max(clock.sleeps) <= MAX_SLEEP_SECONDS


def test_scheduler_notices_a_clock_jump_within_a_minute() -> None:
    stop = threading.Event()
    clock = FakeClock(utc("2026-10-15T12:00:00"), utc("2026-12-01T00:00:00"), stop)
    published: list[str] = []

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.sleeps) == 3:  # the machine wakes from suspend two weeks later
            clock.current = utc("2026-11-02T09:00:00")

    run_scheduler(published.append, SIX, stop=stop, last_published="2026-09",
                  now=clock.now, sleep=sleep)
    assert published == ["2026-10"]
    assert len(clock.sleeps) > 3


def test_scheduler_retries_a_failed_month_before_the_next() -> None:
    stop = threading.Event()
    clock = FakeClock(utc("2026-11-03T12:00:00"), utc("2026-11-04T00:00:00"), stop)
    attempts: list[tuple[str, datetime]] = []

    def publish(month: str) -> None:
        attempts.append((month, clock.now()))
        if len(attempts) == 1:
            raise RuntimeError("database down")

    run_scheduler(publish, SIX, stop=stop, last_published="2026-08", now=clock.now,
                  sleep=clock.sleep, retry_seconds=120)
    assert [m for m, _ in attempts] == ["2026-09", "2026-09", "2026-10"]
    assert attempts[1][1] - attempts[0][1] == timedelta(seconds=120)


def test_scheduler_stops_promptly_with_the_real_sleep() -> None:
    stop = threading.Event()
    published: list[str] = []
    thread = threading.Thread(target=run_scheduler, args=(published.append, SIX),
                              kwargs={"stop": stop, "last_published": "2999-12"}, daemon=True)
    thread.start()
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert published == []
