"""The month charts with small numbers: whiskers for the 95% interval, an asterisk and a hatched
bar below 20 cases, no bar below 10, and a text alternative that says all of it."""

from __future__ import annotations

import math
import re
from dataclasses import replace

from reports import charts
from reports.measures import complete
from reports.site import site_files
from tests.reports.publications import publication


def small() -> object:
    """January 2025 with three agencies: 400 requests (reliable), 15 (unreliable), 4."""
    pub = publication(revision=1)
    month, as_of = pub.month, pub.as_of
    closures = [
        {"month": month, "agency": "BIG", "complaint_type": "A", "received": 300, "closed": 240,
         "closure_rate": 0.8, "as_of": as_of},
        {"month": month, "agency": "BIG", "complaint_type": "B", "received": 100, "closed": 60,
         "closure_rate": 0.6, "as_of": as_of},
        {"month": month, "agency": "MID", "complaint_type": "A", "received": 15, "closed": 9,
         "closure_rate": 0.6, "as_of": as_of},
        {"month": month, "agency": "ONE", "complaint_type": "A", "received": 4, "closed": 4,
         "closure_rate": 1.0, "as_of": as_of},
    ]
    levels = ("strongly_agree", "agree", "neutral", "disagree", "strongly_disagree")
    satisfaction = [
        {"month": month, "agency": agency, "complaint_type": "A", "responses": sum(counts),
         **dict(zip(levels, counts, strict=True)), "share_satisfied": None, "mean_score": None}
        for agency, counts in (("BIG", (10, 20, 5, 3, 2)), ("MID", (3, 3, 3, 3, 3)),
                               ("ONE", (0, 0, 0, 0, 1)))]
    tables = {**pub.tables, "closure_rates": [complete("closure_rates", r) for r in closures],
              "satisfaction": [complete("satisfaction", r) for r in satisfaction]}
    return replace(pub, tables=tables)


def wilson(k: int, n: int) -> tuple[float, float]:
    z = 1.959963984540054
    root = z * math.sqrt(z * z + 4 * k * (1 - k / n))
    return ((2 * k + z * z - root) / (2 * (n + z * z)),
            (2 * k + z * z + root) / (2 * (n + z * z)))


def test_closure_bars_carry_their_interval_and_reliability() -> None:
    chart = charts.closure_by_agency(small(), {}, "January 2025")
    bars = {b.agency: b for b in chart.bars}
    assert [b.agency for b in chart.bars] == ["BIG", "MID", "ONE"]  # shown first, suppressed last
    big, mid, one = bars["BIG"], bars["MID"], bars["ONE"]
    low, high = wilson(300, 400)  # the agency's totals, not an average of its rows
    assert big.whisker is not None
    assert (big.whisker.x1, big.whisker.x2) == (
        round(charts.PLOT_X + charts.PLOT_WIDTH * low, 2),
        round(charts.PLOT_X + charts.PLOT_WIDTH * high, 2))
    assert (big.reliability, big.value) == ("reliable", "75.0%")
    assert (mid.reliability, mid.value) == ("unreliable", "60.0%*")
    assert (one.reliability, one.whisker, one.width) == ("suppressed", None, 0.0)
    assert one.value == "suppressed (n = 4)"
    rows = {r[0]: r for r in chart.rows}
    assert rows["BIG"][3:] == ("75.0%", f"{low * 100:.1f}%–{high * 100:.1f}%", "reliable")
    assert rows["ONE"][1:] == ("4", "4", "suppressed", "", "suppressed: fewer than 10")
    assert chart.flagged
    assert "asterisk" in chart.summary and "1 with fewer than 10" in chart.summary


def test_satisfaction_bars_hide_one_answer_and_flag_fifteen() -> None:
    chart = charts.satisfaction_by_agency(small(), {}, "January 2025")
    bars = {b.agency: b for b in chart.bars}
    assert bars["ONE"].segments == () and bars["ONE"].value == "suppressed (n = 1)"
    assert bars["MID"].reliability == "unreliable" and bars["MID"].value == "n = 15*"
    low, high = wilson(30, 40)
    whisker = bars["BIG"].whisker
    assert whisker is not None
    assert whisker.x1 < charts.PLOT_X + charts.PLOT_WIDTH * 0.75 < whisker.x2
    assert dict((r[0], r[-2:]) for r in chart.rows)["BIG"] == (
        f"{low * 100:.1f}%–{high * 100:.1f}%", "reliable")


def test_the_month_page_draws_whiskers_and_explains_the_marks() -> None:
    page = site_files([small()])["2025-01/index.html"].decode()
    closure = page[page.index('id="closure-chart"'):page.index("</svg>", page.index(
        'id="closure-chart"'))]
    assert closure.count('class="whisker"') == 2  # BIG and MID; ONE has no bar
    assert 'fill="url(#closure-chart-hatch)"' in closure  # MID
    assert re.search(r"suppressed \(n = 4\)</text>", closure)
    assert "Fewer than 20 requests: unreliable" in page
    assert "Fewer than 20 answers: unreliable" in page
    assert 'href="../methodology.html#reliability"' in page
