"""The real NYC Open Data export, through Kafka and the projector, published for June 2018, and
compared with a separate reading of the CSV done here with nothing but the csv module."""

from __future__ import annotations

import csv
import math
from collections import Counter, defaultdict
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import pytest

from nyc311.kafka import EventProducer
from producers.nyc_import import import_nyc_csv
from reports.output import build_site
from reports.publish import publish_month
from tests.helpers import project

pytestmark = pytest.mark.integration

NY = ZoneInfo("America/New_York")
START, END = datetime(2018, 6, 1, tzinfo=NY), datetime(2018, 7, 1, tzinfo=NY)


def local(text: str) -> datetime:
    return datetime.strptime(text, "%m/%d/%Y %I:%M:%S %p").replace(tzinfo=NY)


def expected_from_csv(path) -> tuple[list[list[str]], list[list[str]]]:
    with path.open(newline="", encoding="utf-8") as f:
        june = [r for r in csv.DictReader(f) if START <= local(r["Created Date"]) < END]
    received: Counter[tuple[str, str]] = Counter()
    closed: Counter[tuple[str, str]] = Counter()
    names: dict[str, Counter[str]] = defaultdict(Counter)
    for r in june:
        key = (r["Agency"], r["Complaint Type"])
        received[key] += 1
        names[r["Agency"]][r["Agency Name"]] += 1
        when = r["Closed Date"] or r["Resolution Action Updated Date"]
        if r["Status"].lower() == "closed" and when and local(when) < END:
            closed[key] += 1
    top = {a: min(c, key=lambda n: (-c[n], n)) for a, c in names.items()}
    as_of = END.isoformat()
    requests_received = [["2018-06", a, top[a], ct, str(n)]
                         for (a, ct), n in sorted(received.items())]
    closure_rates = [["2018-06", a, ct, str(n), str(closed[(a, ct)]),
                      *rate_and_interval(closed[(a, ct)], n, as_of)]
                     for (a, ct), n in sorted(received.items())]
    return requests_received, closure_rates


def fixed(x: float) -> str:
    return str(Decimal(repr(x)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))


def rate_and_interval(k: int, n: int, as_of: str) -> list[str]:
    """closure_rate, as_of, the 95% Wilson interval in its closed form, and the reliability:
    suppressed below 10 (rate and interval empty), unreliable below 20."""
    if n < 10:
        return ["", as_of, "", "", "suppressed"]
    z = 1.959963984540054
    root = z * math.sqrt(z * z + 4 * k * (1 - k / n))
    low, high = ((2 * k + z * z + sign * root) / (2 * (n + z * z)) for sign in (-1, 1))
    return [f"{Decimal(k) / Decimal(n):.4f}", as_of, fixed(max(low, 0.0)), fixed(min(high, 1.0)),
            "reliable" if n >= 20 else "unreliable"]


def test_june_2018_matches_a_separate_reading_of_the_csv(settings, topics, db, shared_csv):
    with EventProducer(settings) as producer:
        import_nyc_csv(shared_csv, producer, progress=False)
    project(settings)
    pub, _ = publish_month(db, "2018-06")
    files = build_site(db)

    expected_received, expected_closure = expected_from_csv(shared_csv)
    assert len(expected_received) > 20  # the export has a busy June day
    received = list(csv.reader(files["data/2018-06/requests_received.csv"].decode().splitlines()))
    closure = list(csv.reader(files["data/2018-06/closure_rates.csv"].decode().splitlines()))
    assert received[0] == ["month", "agency", "agency_name", "complaint_type", "received"]
    assert closure[0] == ["month", "agency", "complaint_type", "received", "closed",
                          "closure_rate", "as_of", "closure_rate_ci_low", "closure_rate_ci_high",
                          "reliability"]
    assert sorted(received[1:]) == expected_received
    got = [[*r[:6], datetime.fromisoformat(r[6]).isoformat(), *r[7:]] for r in closure[1:]]
    want = [[*r[:6], datetime.fromisoformat(r[6]).astimezone(pub.as_of.tzinfo).isoformat(),
             *r[7:]] for r in expected_closure]
    assert sorted(got) == sorted(want)
    assert {r[-1] for r in closure[1:]} >= {"reliable", "suppressed"}
