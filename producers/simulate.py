"""A month of simulated NYC 311 traffic, as the events upstream systems would send.

Why: the survey and the monthly metrics need realistic load — requests with contacts and
languages, closures days or weeks later — and real 311 data carries no personal data. The
simulator draws agencies, complaint types, descriptors, channels, boroughs, ZIP codes and the hour
of day from ``data/nyc_mix.json`` (proportions measured on NYC Open Data exports by
``producers.data.build_mix``); the rest (weekday rhythm, contacts, languages, closure delays and
statuses) are documented assumptions below.

Deterministic: everything comes from ``random.Random(seed)`` — ids included — so one seed gives
the same events, byte for byte; the month is mixed into the seed, so two months never share an
id. Request ids are 11 digits, ``9`` + YYMM + a 6-digit number, which real 311 keys (8 digits)
never are, and which cannot collide between months. Contacts are fictional:
``@example.com/.org/.net`` addresses and NANP 555-01xx numbers, which are reserved for fiction.

Events stream in ``occurred_at`` order (a heap holds pending closures), so a large month does
not have to fit in memory. Closures may fall after the month — they are still emitted, as a real
backlog would be.
"""

from __future__ import annotations

import heapq
import json
import math
import random
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from itertools import accumulate
from pathlib import Path
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo

Record = dict[str, Any]
T = TypeVar("T")

MIX_PATH = Path(__file__).resolve().parent / "data" / "nyc_mix.json"
NEW_YORK = ZoneInfo("America/New_York")

#: Relative volume Monday..Sunday: 311 is busiest early in the week, quieter at weekends.
WEEKDAY_FACTOR = (1.15, 1.08, 1.04, 1.0, 0.95, 0.85, 0.8)
#: Closure delay per agency: (median hours, lognormal sigma).
CLOSURE_DELAY = {
    "NYPD": (3.0, 1.0), "DHS": (4.0, 0.8), "DSNY": (72.0, 0.9), "DEP": (96.0, 1.0),
    "DOT": (120.0, 1.1), "HPD": (144.0, 0.9), "HRA": (48.0, 0.7), "DOF": (168.0, 0.9),
    "DPR": (336.0, 1.0), "DOHMH": (336.0, 1.0), "DOB": (504.0, 0.8), "DCA": (504.0, 0.8),
    "TLC": (720.0, 0.7),
}
DEFAULT_DELAY = (168.0, 1.0)
NEVER_CLOSED = 0.08
STATUS_WEIGHTS = {"CLOSED": 60, "RESOLVED": 25, "COMPLETE": 15}
#: English, the ten designated citywide languages, and a few that surveys do not offer.
LANGUAGE_WEIGHTS = {
    "en": 75.0, "es": 11.0, "zh": 4.0, "ru": 2.0, "bn": 1.1, "ht": 1.0, "ko": 0.8, "ar": 0.6,
    "ur": 0.5, "fr": 0.6, "pl": 0.5, "yi": 1.2, "it": 0.6, "tl": 0.5, "he": 0.4,
}
#: Share of requests by the contact given: none, email only, phone only, both.
CONTACT_WEIGHTS = {"none": 20, "email": 55, "phone": 15, "both": 10}
EMAIL_DOMAINS = ("example.com", "example.org", "example.net")
EMAIL_NAMES = ("resident", "tenant", "neighbor", "driver", "parent", "owner", "newyorker")
AREA_CODES = ("212", "718", "917", "646", "347", "929")

_MONTH = re.compile(r"(\d{4})-(\d{2})")


class Weighted(Generic[T]):
    """Items with weights, drawn with the caller's random generator."""

    def __init__(self, weights: Mapping[T, float] | Sequence[tuple[T, float]]) -> None:
        pairs = list(weights.items()) if isinstance(weights, Mapping) else list(weights)
        pairs = [(item, w) for item, w in pairs if w > 0]
        if not pairs:
            raise ValueError("no items with a positive weight")
        self.items = [item for item, _ in pairs]
        self.cum = list(accumulate(float(w) for _, w in pairs))

    def pick(self, rng: random.Random) -> T:
        return rng.choices(self.items, cum_weights=self.cum)[0]


_LANGUAGES = Weighted(LANGUAGE_WEIGHTS)
_CONTACTS = Weighted(CONTACT_WEIGHTS)
_STATUSES = Weighted(STATUS_WEIGHTS)


@dataclass(frozen=True)
class AgencyMix:
    code: str
    name: str
    types: Weighted[str]
    descriptors: dict[str, Weighted[str] | None]
    resolutions: Weighted[str] | None


@dataclass(frozen=True)
class Mix:
    """The proportions table (``data/nyc_mix.json``), ready to draw from."""

    agencies: Weighted[AgencyMix]
    channels: Weighted[str]
    boroughs: Weighted[str]
    zips: dict[str, Weighted[str] | None]
    hours: Weighted[int]


def _maybe(weights: Mapping[str, float]) -> Weighted[str] | None:
    return Weighted(weights) if weights else None


def _agency(code: str, spec: Mapping[str, Any]) -> AgencyMix:
    types = spec["complaint_types"]
    return AgencyMix(code, spec["name"], Weighted({t: v["weight"] for t, v in types.items()}),
                     {t: _maybe(v["descriptors"]) for t, v in types.items()},
                     _maybe(spec.get("resolutions", {})))


@cache
def load_mix(path: Path = MIX_PATH) -> Mix:
    raw = json.loads(path.read_text(encoding="utf-8"))
    agencies = [(_agency(code, spec), spec["weight"]) for code, spec in raw["agencies"].items()]
    return Mix(
        agencies=Weighted(agencies),
        channels=Weighted(raw["channels"]),
        boroughs=Weighted({b: v["weight"] for b, v in raw["boroughs"].items()}),
        zips={b: _maybe(v["zips"]) for b, v in raw["boroughs"].items()},
        hours=Weighted([(h, max(w, 1)) for h, w in enumerate(raw["hours"])]),
    )


def month_days(month: str) -> list[date]:
    """The days of ``month`` ("YYYY-MM"); ValueError with the expected form otherwise."""
    match = _MONTH.fullmatch(month.strip()) if isinstance(month, str) else None
    if match is None or not 1 <= int(match[2]) <= 12 or not 1 <= int(match[1]) <= 9998:
        raise ValueError(f"month must be YYYY-MM with a month 01-12, e.g. 2025-07; got {month!r}")
    first = date(int(match[1]), int(match[2]), 1)
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return [first + timedelta(days=n) for n in range((following - first).days)]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _created_times(rng: random.Random, days: list[date], mix: Mix, n: int) -> list[datetime]:
    """n creation instants (UTC, whole seconds) with the weekly and daily rhythm, sorted."""
    day_pick = Weighted([(d, WEEKDAY_FACTOR[d.weekday()]) for d in days])
    times = []
    for _ in range(n):
        day, hour = day_pick.pick(rng), mix.hours.pick(rng)
        local = datetime(day.year, day.month, day.day, hour, rng.randrange(60), rng.randrange(60),
                         tzinfo=NEW_YORK)  # fold=0; a gap time lands an hour later, same day
        times.append(local.astimezone(UTC))
    return sorted(times)


def _contact(rng: random.Random) -> Record | None:
    kind = _CONTACTS.pick(rng)
    if kind == "none":
        return None
    email = phone = None
    if kind in ("email", "both"):
        email = (f"{rng.choice(EMAIL_NAMES)}.{rng.randrange(100_000):05d}"
                 f"@{rng.choice(EMAIL_DOMAINS)}")
    if kind in ("phone", "both"):
        phone = f"+1{rng.choice(AREA_CODES)}55501{rng.randrange(100):02d}"
    return {"email": email, "phone": phone}


def _request_id(rng: random.Random, used: set[str], prefix: str) -> str:
    while True:
        candidate = f"{prefix}{rng.randrange(1_000_000):06d}"
        if candidate not in used:
            used.add(candidate)
            return candidate


def _created(rng: random.Random, mix: Mix, agency: AgencyMix, request_id: str,
             at: datetime) -> Record:
    complaint_type = agency.types.pick(rng)
    descriptors = agency.descriptors.get(complaint_type)
    borough = mix.boroughs.pick(rng)
    zips = mix.zips.get(borough)
    known_borough = borough != "Unspecified"
    return {
        "event_id": _uuid(rng),
        "occurred_at": at,
        "request_id": request_id,
        "agency": agency.code,
        "agency_name": agency.name,
        "complaint_type": complaint_type,
        "descriptor": descriptors.pick(rng) if descriptors else None,
        "channel": mix.channels.pick(rng),
        "borough": borough if known_borough else None,
        "incident_zip": zips.pick(rng) if zips and known_borough else None,
        "language": _LANGUAGES.pick(rng),
        "contact": _contact(rng),
    }


def _closed(rng: random.Random, agency: AgencyMix, created: Record) -> Record | None:
    if rng.random() < NEVER_CLOSED:
        return None
    median, sigma = CLOSURE_DELAY.get(agency.code, DEFAULT_DELAY)
    hours = rng.lognormvariate(math.log(median), sigma)
    delay = timedelta(seconds=max(60, round(hours * 3600)))
    return {
        "event_id": _uuid(rng),
        "occurred_at": created["occurred_at"] + delay,
        "request_id": created["request_id"],
        "status": _STATUSES.pick(rng),
        "resolution_description": agency.resolutions.pick(rng) if agency.resolutions else None,
    }


def simulate_month(month: str, requests: int, seed: int,
                   mix: Mix | None = None) -> Iterator[tuple[str, Record]]:
    """(event name, record) for ``requests`` requests created in ``month`` (New York time).

    Sorted by ``occurred_at`` (a creation before a closure at the same instant); same arguments,
    same events. Bad arguments raise ValueError here, before any event is drawn.
    """
    days = month_days(month)
    if isinstance(requests, bool) or not isinstance(requests, int) or requests < 0:
        raise ValueError(f"requests must be a whole number >= 0; got {requests!r}")
    if requests > 1_000_000:
        raise ValueError(f"at most 1,000,000 requests a month; got {requests:,}")
    # the month is part of the seed: two months simulated with one seed share no event id
    rng = random.Random(f"{seed}/{month}")
    return _events(days, requests, rng, load_mix() if mix is None else mix)


def _events(days: list[date], requests: int, rng: random.Random,
            mix: Mix) -> Iterator[tuple[str, Record]]:
    used: set[str] = set()
    prefix = f"9{days[0]:%y%m}"  # 9 + YYMM: ids of different months never collide
    pending: list[tuple[datetime, int, Record]] = []
    for sequence, at in enumerate(_created_times(rng, days, mix, requests)):
        while pending and pending[0][0] < at:
            yield "request_closed", heapq.heappop(pending)[2]
        agency = mix.agencies.pick(rng)
        created = _created(rng, mix, agency, _request_id(rng, used, prefix), at)
        yield "request_created", created
        closed = _closed(rng, agency, created)
        if closed is not None:
            heapq.heappush(pending, (closed["occurred_at"], sequence, closed))
    while pending:
        yield "request_closed", heapq.heappop(pending)[2]
