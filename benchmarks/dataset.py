"""The data set a benchmark run produces: a simulated NYC month (or year) with its surveys.

The requests and closures come from :func:`producers.simulate.simulate_month`; this module adds
what the survey loop would produce from them (the dispatcher's SurveySent, a share of answers),
deterministically, so the same arguments give the same events and (b) can regenerate what was
produced instead of holding it in memory. Its assumptions are documented in
benchmarks/README.md ("The data set").
"""

from __future__ import annotations

import heapq
import math
import random
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from producers.simulate import NEW_YORK, Weighted, month_days, simulate_month
from survey.i18n.languages import resolve_language

#: A month that has ended, fixed so that two runs produce the same events.
DEFAULT_MONTH = "2026-10"
SEED = 311

# Survey assumptions (documented in benchmarks/README.md). The dispatcher surveys every closure
# of a request that gave a contact, a few minutes after the closure; a minority answer, hours
# later, with the satisfaction mix of NYC's own survey (demo/answer_surveys.py).
SURVEY_DELAY_S = (60, 900)
ANSWER_SHARE = 0.15
ANSWER_DELAY_MEDIAN_S = 6 * 3600
ANSWER_DELAY_SIGMA = 1.2
SATISFACTION: Weighted[str] = Weighted({"STRONGLY_DISAGREE": 54, "STRONGLY_AGREE": 24,
                                        "AGREE": 9, "DISAGREE": 8, "NEUTRAL": 5})
REOPEN_SHARE = {"STRONGLY_DISAGREE": 0.45, "DISAGREE": 0.25, "NEUTRAL": 0.05}
FEEDBACK_SHARE = 0.3
FEEDBACK = ("Nobody came.", "Fixed quickly, thank you.", "The problem is back.",
            "Closed without any work done.", "Took too long.")

Event = tuple[str, dict[str, Any]]


def months_ending(month: str, count: int) -> list[str]:
    """``count`` consecutive months ending with ``month``, oldest first."""
    month_days(month)  # validates
    year, number = int(month[:4]), int(month[5:7])
    out = []
    for _ in range(count):
        out.append(f"{year:04d}-{number:02d}")
        year, number = (year - 1, 12) if number == 1 else (year, number - 1)
    return out[::-1]


def period_bounds(months: list[str]) -> tuple[datetime, datetime]:
    """First instant of the first month and of the month after the last, New York time, in UTC."""
    first = month_days(months[0])[0]
    after = month_days(months[-1])[-1] + timedelta(days=1)
    return (datetime(first.year, first.month, first.day, tzinfo=NEW_YORK).astimezone(UTC),
            datetime(after.year, after.month, after.day, tzinfo=NEW_YORK).astimezone(UTC))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _surveys(rng: random.Random, closure: dict[str, Any], channel: str,
             language: str) -> list[Event]:
    """The SurveySent the dispatcher would produce for ``closure``, and maybe its answer."""
    sent_at = closure["occurred_at"] + timedelta(seconds=rng.randrange(*SURVEY_DELAY_S))
    survey_id = _uuid(rng)
    out: list[Event] = [("survey_sent", {
        "event_id": _uuid(rng), "occurred_at": sent_at, "request_id": closure["request_id"],
        "survey_id": survey_id, "channel": channel, "language": language,
        "closure_event_id": closure["event_id"]})]
    if rng.random() < ANSWER_SHARE:
        delay = rng.lognormvariate(math.log(ANSWER_DELAY_MEDIAN_S), ANSWER_DELAY_SIGMA)
        level = SATISFACTION.pick(rng)
        out.append(("survey_answered", {
            "event_id": _uuid(rng), "occurred_at": sent_at + timedelta(seconds=round(delay)),
            "request_id": closure["request_id"], "survey_id": survey_id, "language": language,
            "satisfaction": level, "reopen_requested": rng.random() < REOPEN_SHARE.get(level, 0),
            "feedback": rng.choice(FEEDBACK) if rng.random() < FEEDBACK_SHARE else None}))
    return out


def with_surveys(events: Iterable[Event], seed: int) -> Iterator[Event]:
    """``events`` (sorted by ``occurred_at``) with survey events merged in, still sorted.

    Streams: only requests still open are remembered, so a year does not have to fit in memory.
    """
    rng = random.Random(f"bench-surveys/{seed}")
    open_requests: dict[str, tuple[str, str]] = {}  # request id -> (survey channel, language)
    pending: list[tuple[datetime, int, Event]] = []
    sequence = 0
    for name, record in events:
        while pending and pending[0][0] <= record["occurred_at"]:
            yield heapq.heappop(pending)[2]
        yield name, record
        if name == "request_created":
            contact = record["contact"] or {}
            if contact.get("email") or contact.get("phone"):
                open_requests[record["request_id"]] = (
                    "EMAIL" if contact.get("email") else "SMS",
                    resolve_language(record["language"]))
        elif name == "request_closed":
            survey = open_requests.pop(record["request_id"], None)
            if survey is not None:
                for event in _surveys(rng, record, *survey):
                    sequence += 1
                    heapq.heappush(pending, (event[1]["occurred_at"], sequence, event))
    while pending:
        yield heapq.heappop(pending)[2]


def dataset(months: list[str], requests: int, seed: int) -> Iterator[Event]:
    """Every event of ``months`` (``requests`` a month), sorted by ``occurred_at``; the same
    arguments give the same events, so (b) can regenerate what was produced."""
    streams = [simulate_month(month, requests, seed) for month in months]
    merged: Iterable[Event] = streams[0] if len(streams) == 1 else heapq.merge(
        *streams, key=lambda event: event[1]["occurred_at"])
    return with_surveys(merged, seed)
