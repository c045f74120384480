"""Times as NYC Open Data exports them, to UTC (the rules are in :mod:`producers.nyc_csv`).

``MM/DD/YYYY hh:mm:ss AM/PM`` (or a spreadsheet's re-save as ``M/D/YY H:MM``) is New York wall
clock; ISO 8601 with an offset is taken as is. A wall-clock time in the spring-forward gap or
the fall-back overlap resolves with ``fold=0`` and is flagged (:attr:`NycTime.dst`), since the
export cannot say which instant was meant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
    if len(text) == 22:  # the export's own MM/DD/YYYY hh:mm:ss AM: the hour's offset, cached
        fast = _parse_export_time(text)
        if fast is not None:
            return fast
    match = _US_TIME.fullmatch(text)
    if match:
        return _localize(_us_naive(match))
    if re.match(r"\d{4}-\d{2}-\d{2}", text):
        value = datetime.fromisoformat(text)
        if value.tzinfo is not None:
            return NycTime(value.astimezone(UTC))
        return _localize(value)
    raise ValueError(f"not a recognised date/time: {text!r}")


def _parse_export_time(text: str) -> NycTime | None:
    """``MM/DD/YYYY hh:mm:ss AM`` from the hour's UTC start and DST verdict, computed once per
    wall-clock hour (New York's offset changes only on the hour since 1970); None when the text
    is not exactly that layout, for the general parser to judge."""
    if (text[2] != "/" or text[5] != "/" or text[10] != " " or text[13] != ":"
            or text[16] != ":" or text[19] != " "):
        return None
    minute, second = text[14:16], text[17:19]
    if not (minute.isdigit() and second.isdigit()) or minute > "59" or second > "59":
        return None
    hour = _HOURS.get(text[:13] + text[20:])
    if hour is None:
        hour = _hour(text[:13], text[20:])
        if hour is None:
            return None
    start, dst = hour
    utc = start + timedelta(minutes=int(minute), seconds=int(second))
    return NycTime(utc, dst) if dst else NycTime(utc)


_HOURS: dict[str, tuple[datetime, str | None]] = {}
_HOURS_KEPT = 200_000  # about 23 years of hours


def _hour(head: str, meridiem: str) -> tuple[datetime, str | None] | None:
    match = _US_TIME.fullmatch(f"{head}:00:00 {meridiem}")
    if match is None or int(match[3]) < 1970:
        return None
    parsed = _localize(_us_naive(match))  # ValueError for a date that does not exist
    if len(_HOURS) >= _HOURS_KEPT:
        _HOURS.clear()
    _HOURS[head + meridiem] = value = (parsed.utc, parsed.dst)
    return value


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
