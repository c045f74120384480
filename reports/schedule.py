"""When the aggregator publishes: the 1st of every month, for the month before, in New York time.

The law's month is a calendar month in America/New_York, so the schedule is computed there and
compared in UTC: the 1st at 06:00 is 10:00Z in summer and 11:00Z in winter, and a wall-clock
time that occurs twice (the night DST ends) is taken at its first occurrence.

A service that was down on the 1st catches up when it starts: every month since the last one
published that is due by now is published, oldest first, up to a year back. Publication is
idempotent, so publishing a month twice (after a crash, say) does no harm.

The loop sleeps in chunks of at most a minute and looks at the clock again after each, so a
clock that jumps (suspend, NTP correction) is noticed, and a stop event ends it promptly. The
functions take ``now`` and ``sleep`` as arguments so tests drive them with a fake clock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

log = logging.getLogger(__name__)

NEW_YORK = "America/New_York"
MAX_CATCH_UP_MONTHS = 12
MAX_SLEEP_SECONDS = 60.0
RETRY_SECONDS = 300.0


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware datetime, got {now.isoformat()}")
    return now


def _index(month: str) -> int:
    """``YYYY-MM`` -> months since year 0, so month arithmetic is integer arithmetic."""
    year, sep, number = month.partition("-")
    if not (sep and len(year) == 4 and len(number) == 2 and year.isdigit() and number.isdigit()
            and 1 <= int(number) <= 12):
        raise ValueError(f"expected a month as YYYY-MM, got {month!r}")
    return int(year) * 12 + int(number) - 1


def _month(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def preceding_month(now: datetime, tz: str = NEW_YORK) -> str:
    """``YYYY-MM`` of the month before the one ``now`` falls in, in local time ``tz``."""
    local = _aware(now).astimezone(ZoneInfo(tz))
    return _month(local.year * 12 + local.month - 2)


def run_time(month: str, at: time, tz: str = NEW_YORK) -> datetime:
    """When ``month`` is published: the 1st of the next month at local time ``at``, in UTC."""
    if at.tzinfo is not None:
        raise ValueError(f"`at` is a local wall-clock time in {tz}; got one with a zone: {at}")
    following = _index(month) + 1
    local = datetime(following // 12, following % 12 + 1, 1, at.hour, at.minute, at.second,
                     at.microsecond, tzinfo=ZoneInfo(tz), fold=0)
    # fold=0: a time that occurs twice is its first occurrence; a time skipped by DST is read
    # with the offset before the change, i.e. an hour later on the wall clock.
    return local.astimezone(UTC)


def next_run(now: datetime, at: time, tz: str = NEW_YORK) -> datetime:
    """The next 1st-of-month at local time ``at`` (in ``tz``) strictly after ``now``, in UTC.

    UTC rather than local time because Python never finds a local time that occurs twice equal
    to the same instant in another zone (PEP 495), which would surprise a caller comparing it.
    """
    current = _aware(now).astimezone(UTC)
    local = current.astimezone(ZoneInfo(tz))
    this_month = local.year * 12 + local.month - 1
    for month in (this_month - 1, this_month):  # the run on this month's 1st, else next month's
        when = run_time(_month(month), at, tz)
        if when > current:
            return when
    raise AssertionError("unreachable: next month's run is always after now")


def latest_due_month(now: datetime, at: time, tz: str = NEW_YORK) -> str:
    """The newest month whose publication time has come: the preceding month once the 1st's
    run time has passed, the one before it earlier on the 1st."""
    month = preceding_month(now, tz)
    if run_time(month, at, tz) > _aware(now).astimezone(UTC):
        return _month(_index(month) - 1)
    return month


def due_months(last_published: str | None, now: datetime, at: time, *, tz: str = NEW_YORK,
               limit: int = MAX_CATCH_UP_MONTHS) -> list[str]:
    """Months due by ``now`` and not yet published, oldest first; never the current month.

    ``last_published`` is the newest month already published (None: nothing yet, and then only
    the latest due month is published: older months are a backfill, done on purpose with the
    publish command). At most ``limit`` months, the newest ones.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    latest = _index(latest_due_month(now, at, tz))
    if last_published is None:
        return [_month(latest)]
    first = max(_index(last_published) + 1, latest - limit + 1)
    return [_month(i) for i in range(first, latest + 1)]


def run_scheduler(publish_month: Callable[[str], None], at: time, *,
                  stop: threading.Event,
                  last_published: str | None = None,
                  now: Callable[[], datetime] = lambda: datetime.now(UTC),
                  sleep: Callable[[float], object] | None = None,
                  tz: str = NEW_YORK,
                  retry_seconds: float = RETRY_SECONDS) -> None:
    """Publish due months, oldest first, then sleep until the next run; until ``stop`` is set.

    ``sleep`` defaults to ``stop.wait``, so setting the event wakes the loop at once. A month
    whose publication raises is logged and tried again after ``retry_seconds``; the months after
    it wait, so months are always published in order.
    """
    pause = sleep if sleep is not None else stop.wait
    last = last_published
    announced: datetime | None = None
    while not stop.is_set():
        due = due_months(last, now(), at, tz=tz)
        if due:
            month = due[0]
            log.info("publishing %s", month, extra={"month": month})
            try:
                publish_month(month)
            except Exception:
                log.exception("publishing %s failed; trying again in %.0f s", month,
                              retry_seconds, extra={"month": month})
                _sleep_until(now() + timedelta(seconds=retry_seconds), now, pause, stop)
                continue
            last = month
            continue
        wake = next_run(now(), at, tz)
        if wake != announced:
            local = wake.astimezone(ZoneInfo(tz))
            log.info("next publication at %s", local.isoformat(),
                     extra={"next_run": wake.isoformat(), "month": preceding_month(wake, tz)})
            announced = wake
        _sleep_until(wake, now, pause, stop, chunks=1)


def _sleep_until(deadline: datetime, now: Callable[[], datetime],
                 pause: Callable[[float], object], stop: threading.Event,
                 chunks: int | None = None) -> None:
    """Sleep towards ``deadline`` in chunks of at most a minute, looking at the clock after
    each; ``chunks`` bounds how many before returning to the caller (None: until the deadline)."""
    done = 0
    while not stop.is_set() and (chunks is None or done < chunks):
        remaining = (deadline - now()).total_seconds()
        if remaining <= 0:
            return
        pause(min(remaining, MAX_SLEEP_SECONDS))
        done += 1
