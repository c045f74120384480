"""Times as NYC Open Data exports them, to UTC (the rules are in :mod:`producers.nyc_csv`).

``MM/DD/YYYY hh:mm:ss AM/PM`` (or a spreadsheet's re-save as ``M/D/YY H:MM``) is New York wall
clock; ISO 8601 with an offset is taken as is. A wall-clock time in the spring-forward gap or
the fall-back overlap resolves with ``fold=0`` and is flagged (:attr:`NycTime.dst`), since the
export cannot say which instant was meant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")

_US_TIME = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})[ T]+(\d{1,2}):(\d{2})(?::(\d{2}))?"
                      r"(?:\.\d+)?\s*([AaPp][Mm])?")


@dataclass(frozen=True)
class NycTime:
    """A parsed export time in UTC; ``dst`` says whether the wall-clock time was ambiguous."""

    utc: datetime
    dst: str | None = None  # "nonexistent", "ambiguous" or None


def parse_nyc_time(text: str) -> NycTime:
    """Parse an export time (New York wall clock unless ISO with an offset); ValueError if not."""
    text = text.strip()
    match = _US_TIME.fullmatch(text)
    if match:
        return _localize(_us_naive(match))
    if re.match(r"\d{4}-\d{2}-\d{2}", text):
        value = datetime.fromisoformat(text)
        if value.tzinfo is not None:
            return NycTime(value.astimezone(UTC))
        return _localize(value)
    raise ValueError(f"not a recognised date/time: {text!r}")


def _us_naive(match: re.Match[str]) -> datetime:
    month, day, year, hour, minute = (int(match[i]) for i in range(1, 6))
    second = int(match[6] or 0)
    if year < 100:
        year += 2000
    meridiem = (match[7] or "").upper()
    if meridiem:
        if not 1 <= hour <= 12:
            raise ValueError(f"hour {hour} with {meridiem}")
        hour = hour % 12 + (12 if meridiem == "PM" else 0)
    return datetime(year, month, day, hour, minute, second)


def _localize(naive: datetime) -> NycTime:
    local = naive.replace(tzinfo=NEW_YORK, fold=0)
    utc = local.astimezone(UTC)
    if utc.astimezone(NEW_YORK).replace(tzinfo=None) != naive:
        return NycTime(utc, "nonexistent")
    if local.utcoffset() != local.replace(fold=1).utcoffset():
        return NycTime(utc, "ambiguous")
    return NycTime(utc)
