"""Trends: the series from summed counts, trends.csv, and the trends pages.

The publications here are built from raw counts (closed of received, answers per level, ...),
and every expected figure is computed again in this file from those raw counts: sums per
agency and citywide, the rate as an exact fraction, the Wilson interval and the mean score's
interval from their textbook formulas, the reliability from the 10 / 20 thresholds. None of it
goes through reports.trends or reports.measures.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import statistics
from dataclasses import replace
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from reports import trends
from reports.files import data_files
from reports.measures import complete
from reports.model import Publication
from reports.site import site_files, write_tree
from tests.reports import test_site as site_rules
from tests.reports.publications import publication
from tests.reports.test_site import parse

NEW_YORK = ZoneInfo("America/New_York")
Z = 1.959963984540054
LEVELS = ("strongly_agree", "agree", "neutral", "disagree", "strongly_disagree")
SCORES = (100, 75, 50, 25, 0)
HEADER = ["month", "agency", "complaint_type", "measure", "value", "ci_low", "ci_high", "n",
          "reliability"]
FORMULA = '=HYPERLINK("evil","x")'
ODD = "NYC H+H"  # an acronym with characters a file name should not carry

#: Raw counts per month. closures: (agency, type, received, closed); reopens: (type,
#: answered, reopen requested); satisfaction: (agency, type, five level counts); responses:
#: (agency, sent, answered, of those answered: reopen requested). ODD appears in two of the
#: three months only; in 2024-12 HPD's answers are too few for a value (suppressed), in
#: 2025-01 DOT's rest on fewer than 20.
RAW: dict[str, dict[str, list[tuple[Any, ...]]]] = {
    "2024-11": {
        "closures": [("DOT", "Street Condition", 1000, 700), ("DOT", "Sidewalk", 10, 10),
                     ("HPD", "HEAT/HOT WATER", 4000, 3800), ("HPD", FORMULA, 5, 2),
                     (ODD, "Hospital", 30, 12)],
        "reopens": [("HEAT/HOT WATER", 50, 5), ("Street Condition", 25, 8), (FORMULA, 3, 1)],
        "satisfaction": [("DOT", "Street Condition", (5, 10, 5, 3, 2)),
                         ("DOT", "Sidewalk", (1, 1, 0, 0, 0)),
                         ("HPD", "HEAT/HOT WATER", (20, 15, 5, 5, 5)),
                         (ODD, "Hospital", (3, 3, 3, 3, 3))],
        "responses": [("DOT", 90, 27, 4), ("HPD", 150, 50, 9), (ODD, 8, 8, 2)],
    },
    "2024-12": {
        "closures": [("DOT", "Street Condition", 900, 810), ("HPD", "HEAT/HOT WATER", 5000, 4000)],
        "reopens": [("HEAT/HOT WATER", 15, 3), ("Street Condition", 0, 0)],
        "satisfaction": [("DOT", "Street Condition", (10, 10, 0, 0, 0)),
                         ("HPD", "HEAT/HOT WATER", (2, 2, 1, 1, 1))],
        "responses": [("DOT", 60, 20, 0), ("HPD", 100, 7, 3)],
    },
    "2025-01": {
        "closures": [("DOT", "Street Condition", 1100, 1000), ("HPD", "HEAT/HOT WATER", 6000, 5900),
                     ("HPD", "PLUMBING", 300, 150), (ODD, "Hospital", 40, 39)],
        "reopens": [("HEAT/HOT WATER", 70, 7), ("PLUMBING", 12, 6)],
        "satisfaction": [("DOT", "Street Condition", (4, 4, 4, 2, 1)),
                         ("HPD", "HEAT/HOT WATER", (30, 20, 10, 5, 5)),
                         ("HPD", "PLUMBING", (1, 2, 3, 4, 5)),
                         (ODD, "Hospital", (0, 0, 0, 0, 0))],
        "responses": [("DOT", 40, 15, 6), ("HPD", 200, 85, 17), (ODD, 0, 0, 0)],
    },
}
NAMES = {"DOT": "Department of Transportation",
         "HPD": "Department of Housing Preservation and Development",
         ODD: "NYC Health + Hospitals"}


def _next_month(month: str) -> datetime:
    year, number = (int(part) for part in month.split("-"))
    return datetime(year + number // 12, number % 12 + 1, 1, tzinfo=NEW_YORK)


def _share(k: int, n: int, places: int = 4) -> float | None:
    return round(k / n, places) if n else None


def build(month: str, revision: int = 1, raw: dict[str, list[tuple[Any, ...]]] | None = None
          ) -> Publication:
    """A publication whose every rate and score is consistent with its counts."""
    raw = raw or RAW[month]
    as_of = _next_month(month)
    requests = [{"month": month, "agency": a, "agency_name": NAMES[a], "complaint_type": t,
                 "received": received} for a, t, received, _ in raw["closures"]]
    closures = [{"month": month, "agency": a, "complaint_type": t, "received": received,
                 "closed": closed, "closure_rate": _share(closed, received), "as_of": as_of}
                for a, t, received, closed in raw["closures"]]
    reopens = [{"month": month, "complaint_type": t, "surveys_answered": answered,
                "reopen_requested": requested, "reopen_rate": _share(requested, answered)}
               for t, answered, requested in raw["reopens"]]
    satisfaction = []
    for a, t, counts in raw["satisfaction"]:
        n = sum(counts)
        mean = sum(c * s for c, s in zip(counts, SCORES, strict=True)) / n if n else None
        satisfaction.append({"month": month, "agency": a, "complaint_type": t, "responses": n,
                             **dict(zip(LEVELS, counts, strict=True)),
                             "share_satisfied": _share(counts[0] + counts[1], n),
                             "mean_score": mean})
    responses = [{"month": month, "agency": a, "surveys_sent": sent,
                  "surveys_answered": answered, "response_rate": _share(answered, sent),
                  "reopen_requested": reopens}
                 for a, sent, answered, reopens in raw["responses"]]
    tables = {"requests_received": requests, "closure_rates": closures, "reopen_rates": reopens,
              "satisfaction": satisfaction, "survey_response_rates": responses,
              "survey_responses": []}
    published = as_of.replace(day=2 + revision, hour=9).astimezone(UTC)
    return Publication(month=month, revision=revision, as_of=as_of, published_at=published,
                       tables={name: [complete(name, row) for row in rows]
                               for name, rows in tables.items()},
                       history=[(r, published, []) for r in range(1, revision)])


def publications() -> list[Publication]:
    return [build(month) for month in RAW]


@pytest.fixture(scope="module")
def site() -> dict[str, bytes]:
    return site_files(publications())


def read(body: bytes) -> list[dict[str, str]]:
    header, *rows = csv.reader(io.StringIO(body.decode("utf-8"), newline=""))
    assert header == HEADER
    return [dict(zip(header, row, strict=True)) for row in rows]


def keyed(site: dict[str, bytes]) -> dict[tuple[str, str, str, str], dict[str, str]]:
    rows = read(site["trends.csv"])
    out = {(r["month"], r["agency"], r["complaint_type"], r["measure"]): r for r in rows}
    assert len(out) == len(rows), "one row per month, agency, complaint type and measure"
    return out


def numbers(html: str, table_id: str) -> list[list[str]]:
    """The body rows of the trend table ``table_id``: the chart's numbers as the page shows
    them."""
    table = re.search(rf'<table class="trend-data" id="{table_id}">.*?</table>', html, re.S)
    assert table, table_id
    body = table.group(0).split("<tbody>", 1)[1]
    return [re.findall(r"<t[hd][^>]*>([^<]*)</t[hd]>", row)
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


# --- the independent computation ------------------------------------------------------------


def fixed(value: Fraction | float, places: int) -> str:
    exact = (Decimal(value.numerator) / Decimal(value.denominator)
             if isinstance(value, Fraction) else Decimal(repr(value)))
    return f"{exact.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP) + 0:.{places}f}"


def flag(n: int) -> str:
    return "suppressed" if n < 10 else "unreliable" if n < 20 else "reliable"


def expected_rate(k: int, n: int) -> tuple[str, float | None, float | None, str, str]:
    """(value, ci_low, ci_high, n, reliability) of k of n, as trends.csv must carry them."""
    if n < 10:
        return ("", None, None, str(n), "suppressed")
    p = k / n
    denominator = 1 + Z * Z / n
    centre = (p + Z * Z / (2 * n)) / denominator
    half = Z / denominator * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    return (fixed(Fraction(k, n), 4), max(0.0, centre - half), min(1.0, centre + half), str(n),
            flag(n))


def expected_score(counts: tuple[int, ...]) -> tuple[str, float | None, float | None, str, str]:
    scores = [s for c, s in zip(counts, SCORES, strict=True) for _ in range(c)]
    n = len(scores)
    if n < 10:
        return ("", None, None, str(n), "suppressed")
    mean = statistics.mean(scores)
    half = Z * statistics.stdev(scores) / math.sqrt(n)
    return (fixed(Fraction(sum(scores), n), 2), max(0.0, mean - half), min(100.0, mean + half),
            str(n), flag(n))


def sums(rows: list[tuple[Any, ...]], keep: Any, counts: Any) -> list[int]:
    """The element-wise sum of counts(row) over the rows keep(row) selects."""
    total: list[int] = []
    for row in rows:
        if keep(row):
            values = counts(row)
            total = [a + b for a, b in zip(total or [0] * len(values), values, strict=True)]
    return total


def expected(month: str, agency: str, complaint_type: str, measure: str
             ) -> tuple[str, float | None, float | None, str, str]:
    raw = RAW[month]

    def keep(a: str, t: str) -> bool:
        return (not agency or a == agency) and (not complaint_type or t == complaint_type)

    if measure == "closure_rate":
        got = sums(raw["closures"], lambda r: keep(r[0], r[1]), lambda r: [r[3], r[2]])
    elif measure == "reopen_rate":
        got = sums(raw["reopens"], lambda r: keep("", r[0]), lambda r: [r[2], r[1]])
    elif measure == "response_rate":
        got = sums(raw["responses"], lambda r: keep(r[0], ""), lambda r: [r[2], r[1]])
    elif measure == "reopen_rate_of_surveys_sent":  # reopen requested of the answered
        got = sums(raw["responses"], lambda r: keep(r[0], ""), lambda r: [r[3], r[2]])
    else:
        levels = sums(raw["satisfaction"], lambda r: keep(r[0], r[1]), lambda r: list(r[2]))
        levels = levels or [0] * 5
        if measure == "mean_score":
            return expected_score(tuple(levels))
        got = [levels[0] + levels[1], sum(levels)]
    k, n = got or [0, 0]
    return expected_rate(k, n)


def assert_row(row: dict[str, str], want: tuple[str, float | None, float | None, str, str],
               places: int) -> None:
    value, low, high, n, reliability = want
    assert (row["value"], row["n"], row["reliability"]) == (value, n, reliability), row
    for name, bound in (("ci_low", low), ("ci_high", high)):
        if bound is None:
            assert row[name] == "", row
        else:  # the last digit may differ by one where the two float formulas round apart
            assert re.fullmatch(rf"\d+\.\d{{{places}}}", row[name]), row
            assert abs(float(row[name]) - bound) <= 0.5 * 10 ** -places + 1e-9, (row, bound)


# --- the series and trends.csv --------------------------------------------------------------


def test_citywide_and_agency_series_come_from_summed_counts(site):
    rows = keyed(site)
    agencies = ["DOT", "HPD", ODD]
    checked = 0
    for month in RAW:
        for measure in ("closure_rate", "reopen_rate", "reopen_rate_of_surveys_sent",
                        "share_satisfied", "mean_score", "response_rate"):
            places = 2 if measure == "mean_score" else 4
            assert_row(rows[(month, "", "", measure)], expected(month, "", "", measure), places)
            checked += 1
            if measure == "reopen_rate":  # by complaint type only: no agency rows
                assert not [k for k in rows if k[3] == measure and k[1]]
                continue
            for agency in agencies:  # every agency every month, n = 0 where it had no row
                assert_row(rows[(month, agency, "", measure)],
                           expected(month, agency, "", measure), places)
                checked += 1
    assert checked == 3 * (6 + 5 * 3)


def test_a_coarser_rate_is_summed_counts_not_an_average_of_rates(site):
    rows = keyed(site)
    # DOT in 2024-11: 700 of 1000 and 10 of 10 closed. The mean of the two rates would be 0.85.
    assert rows[("2024-11", "DOT", "", "closure_rate")]["value"] == fixed(Fraction(710, 1010), 4)
    assert rows[("2024-11", "DOT", "", "closure_rate")]["value"] == "0.7030"
    # Citywide share satisfied 2025-01: 8 of 15, 50 of 70 and 3 of 15 answers: 61 of 100.
    assert rows[("2025-01", "", "", "share_satisfied")]["value"] == "0.6100"


def test_published_rows_carry_the_digits_of_the_month_files(site):
    rows = keyed(site)
    sources = {"closure_rates": ("closure_rate",), "reopen_rates": ("reopen_rate",),
               "satisfaction": ("share_satisfied", "mean_score")}
    compared = 0
    for month in RAW:
        for table, measures in sources.items():
            published = read_month(site, month, table)
            for row in published:
                for measure in measures:
                    got = rows[(month, row.get("agency", ""), row["complaint_type"], measure)]
                    assert (got["value"], got["ci_low"], got["ci_high"], got["reliability"]) == (
                        row[measure], row[f"{measure}_ci_low"], row[f"{measure}_ci_high"],
                        row["reliability"]), (table, row)
                    compared += 1
        for row in read_month(site, month, "survey_response_rates"):
            got = rows[(month, row["agency"], "", "response_rate")]
            assert (got["value"], got["ci_low"], got["ci_high"], got["n"]) == (
                row["response_rate"], row["response_rate_ci_low"],
                row["response_rate_ci_high"], row["surveys_sent"])
            # the agency's reopen-request rate rests on the row's answered surveys
            got = rows[(month, row["agency"], "", "reopen_rate_of_surveys_sent")]
            assert got["n"] == row["surveys_answered"] and row["reopen_requested"]
    assert compared > 20


def read_month(site: dict[str, bytes], month: str, table: str) -> list[dict[str, str]]:
    header, *rows = csv.reader(io.StringIO(site[f"data/{month}/{table}.csv"].decode(),
                                           newline=""))
    return [dict(zip(header, row, strict=True)) for row in rows]


def test_finer_rows_are_the_published_rows_and_nothing_else(site):
    rows = keyed(site)
    for month, raw in RAW.items():
        finer = {(a, t, m) for (mo, a, t, m) in rows if mo == month and t}
        want = ({(a, t, "closure_rate") for a, t, *_ in raw["closures"]}
                | {("", t, "reopen_rate") for t, *_ in raw["reopens"]}
                | {(a, t, m) for a, t, _ in raw["satisfaction"]
                   for m in ("share_satisfied", "mean_score")})
        assert finer == {(a, in_csv(t), m) for a, t, m in want}, month
        for agency, complaint_type, measure in want:
            places = 2 if measure == "mean_score" else 4
            assert_row(rows[(month, agency, in_csv(complaint_type), measure)],
                       expected(month, agency, complaint_type, measure), places)


def in_csv(text: str) -> str:
    """A text cell as the CSV files write it: a formula gets a quote in front."""
    return "'" + text if text.startswith("=") else text


def test_suppressed_rows_keep_n_and_unreliable_rows_keep_their_value(site):
    rows = keyed(site)
    suppressed = rows[("2024-12", "HPD", "", "share_satisfied")]  # 7 answers
    assert suppressed == {**suppressed, "value": "", "ci_low": "", "ci_high": "", "n": "7",
                          "reliability": "suppressed"}
    assert rows[("2024-12", "HPD", "", "mean_score")]["value"] == ""
    assert rows[("2024-12", "", "", "reopen_rate")]["n"] == "15"
    unreliable = rows[("2025-01", "DOT", "", "mean_score")]  # 15 answers
    assert unreliable["reliability"] == "unreliable" and unreliable["value"] == "63.33"
    assert unreliable["ci_low"] and unreliable["ci_high"]
    absent = rows[("2024-12", ODD, "", "closure_rate")]  # no row for the agency that month
    assert (absent["value"], absent["n"], absent["reliability"]) == ("", "0", "suppressed")
    empty = rows[("2025-01", ODD, "", "response_rate")]  # a row, but no survey sent
    assert (empty["value"], empty["n"], empty["reliability"]) == ("", "0", "suppressed")


def test_agencies_get_a_reopen_rate_from_their_surveys_sent(site):
    """Each agency's reopen-request rate: reopen requests of the surveys sent in the month
    and answered, from survey_response_rates; the citywide reopen_rate stays that of the
    answers given in the month (reopen_rates), a measure of its own."""
    rows = keyed(site)
    # HPD: 9 of 50 answered in November, 3 of 7 in December (suppressed), 17 of 85 in January
    for month, k, n in (("2024-11", 9, 50), ("2024-12", 3, 7), ("2025-01", 17, 85)):
        assert_row(rows[(month, "HPD", "", "reopen_rate_of_surveys_sent")],
                   expected_rate(k, n), 4)
    # DOT January: 6 of 15, unreliable but published
    dot = rows[("2025-01", "DOT", "", "reopen_rate_of_surveys_sent")]
    assert (dot["value"], dot["reliability"]) == ("0.4000", "unreliable")
    # citywide November: the surveys sent (4 + 9 + 2 of 27 + 50 + 8), beside the answers of
    # the month (5 + 8 + 1 of 50 + 25 + 3), each from its own table
    assert_row(rows[("2024-11", "", "", "reopen_rate_of_surveys_sent")], expected_rate(15, 85), 4)
    assert_row(rows[("2024-11", "", "", "reopen_rate")], expected_rate(14, 78), 4)
    # no complaint-type rows: survey_response_rates is by agency only
    assert not [key for key in rows if key[3] == "reopen_rate_of_surveys_sent" and key[2]]

    hpd = site["trends/hpd.html"].decode()
    table = numbers(hpd, "reopen_rate_of_surveys_sent-chart-table")
    assert [row[:4] for row in table] == [["November 2024", "50", "9", "18.0%"],
                                          ["December 2024", "7", "3", "n/a"],
                                          ["January 2025", "85", "17", "20.0%"]]
    assert table[1][-1] == "suppressed: fewer than 10"
    chart = chart_of(hpd, "reopen_rate_of_surveys_sent")
    assert "Reopen-request rate of surveys sent by month, HPD" in chart
    assert chart.count('<g class="trend-whisker">') == 2  # two lone months around the gap
    page = parse(site["trends/hpd.html"])
    assert {"index.html#reopen_rate", "index.html#reopen_rate_of_surveys_sent",
            "#reopen_rate_of_surveys_sent"} <= {a.get("href") for a in page.all("a")}


def test_a_month_published_without_the_agency_reopen_count_has_no_agency_reopen_rate(site):
    """A revision published before survey_response_rates had reopen_requested reads back with
    it empty: that month has no reopen_rate_of_surveys_sent (not a rate of 0), and nothing
    else changes."""
    older = build("2024-12")
    responses = [{**row, "reopen_requested": None}
                 for row in older.tables["survey_response_rates"]]
    older = replace(older, tables={**older.tables, "survey_response_rates": responses})
    pubs = [older if pub.month == "2024-12" else pub for pub in publications()]
    without = site_files(pubs)
    rows, full = keyed(without), keyed(site)
    gone = {key for key in full if key[0] == "2024-12" and key[3] == "reopen_rate_of_surveys_sent"}
    assert gone and set(full) - set(rows) == gone
    assert all(rows[key] == full[key] for key in rows)
    csv_rows = read_month(without, "2024-12", "survey_response_rates")
    assert {row["reopen_requested"] for row in csv_rows} == {""}
    table = numbers(without["trends/hpd.html"].decode(), "reopen_rate_of_surveys_sent-chart-table")
    assert table[1] == ["December 2024", "n/a", "n/a", "n/a", "n/a", "not published"]
    assert numbers(without["trends/hpd.html"].decode(), "response_rate-chart-table") == numbers(
        site["trends/hpd.html"].decode(), "response_rate-chart-table")


def test_trends_csv_is_ordered_rfc4180_and_formula_safe(site):
    body = site["trends.csv"]
    assert body.startswith(b"month,agency,complaint_type,measure,value,ci_low,ci_high,n,"
                           b"reliability\n")
    assert body.endswith(b"\n") and b"\r" not in body
    rows = read(body)
    order = [m.name for m in trends.MEASURES]
    keys = [(r["month"], r["agency"], r["complaint_type"], order.index(r["measure"]))
            for r in rows]
    assert keys == sorted(keys)
    assert rows[0]["agency"] == rows[0]["complaint_type"] == ""  # citywide first
    assert {r["measure"] for r in rows} == set(order)
    formula = [r for r in rows if "HYPERLINK" in r["complaint_type"]]
    assert formula and all(r["complaint_type"] == "'" + FORMULA for r in formula)
    assert '"\'=HYPERLINK(""evil"",""x"")"' in body.decode()


def test_trends_json_holds_the_same_rows_with_the_text_as_it_is(site):
    csv_rows = read(site["trends.csv"])
    json_rows = json.loads(site["trends.json"])
    assert len(json_rows) == len(csv_rows)
    for j, c in zip(json_rows, csv_rows, strict=True):
        assert list(j) == HEADER
        assert j["complaint_type"] == c["complaint_type"].removeprefix("'")
        assert j["n"] == int(c["n"])
        for name in ("value", "ci_low", "ci_high"):
            assert (j[name] is None) == (c[name] == "")
    assert b'"value": 0.7030' in site["trends.json"]  # fixed decimals, as in the CSV


def test_same_bytes_in_any_order_and_the_newest_revision_counts(site):
    again = site_files(list(reversed(publications())))
    assert {k: again[k] for k in ("trends.csv", "trends.json")} == {
        k: site[k] for k in ("trends.csv", "trends.json")}
    assert again == site
    # A second revision of 2025-01 with one more closure: trends.csv follows it.
    raw = {**RAW["2025-01"], "closures": [("DOT", "Street Condition", 1100, 1001),
                                          *RAW["2025-01"]["closures"][1:]]}
    revised = site_files([*publications(), build("2025-01", 2, raw)])
    rows = keyed(revised)
    assert rows[("2025-01", "DOT", "", "closure_rate")]["value"] == fixed(Fraction(1001, 1100), 4)
    assert revised["trends.csv"] != site["trends.csv"]
    before = site["trends.csv"].split(b"\n2025-01,", 1)[0]
    assert revised["trends.csv"].startswith(before)  # earlier months' rows unchanged


def test_compute_refuses_two_revisions_of_a_month_and_an_empty_agency():
    with pytest.raises(ValueError, match="one publication per month"):
        trends.compute([build("2025-01"), build("2025-01", 2)])
    pub = build("2025-01")
    rows = [dict(r) for r in pub.tables["closure_rates"]]
    rows[0]["agency"] = ""
    with pytest.raises(ValueError, match="read as 'all'"):
        trends.compute([replace(pub, tables={**pub.tables, "closure_rates": rows})])


def test_no_month_yet_gives_an_empty_trends_file():
    site = site_files([])
    assert site["trends.csv"] == (",".join(HEADER) + "\n").encode()
    assert site["trends.json"] == b"[]\n"
    page = parse(site["trends/index.html"])
    assert page.all("svg") == [] and "Nothing has been published yet." in "".join(page.text)
    assert b"trend-" not in site["index.html"]


# --- page names -----------------------------------------------------------------------------


@pytest.mark.parametrize("agency, name", [
    ("DOT", "dot"), ("DOHMH", "dohmh"), ("3-1-1", "3-1-1"), (ODD, "nyc_20h_2bh"),
    ("dot", "_64_6f_74"), ("../etc", "_2e_2e_2f_65_74_63"), ("INDEX", "_49ndex"), ("É", "_c3_89"),
])
def test_agency_page_names_are_safe_and_readable(agency, name):
    assert trends.slug(agency) == name
    assert re.fullmatch(r"[a-z0-9_-]+", name)


def test_agency_page_names_never_collide():
    agencies = ["DOT", "dot", "Dot", "D.O.T", "D/O/T", "D O T", "INDEX", "index", "Index",
                "a" * 200, "a" * 201, "NYC H+H", "NYC_H+H", "nyc_20h_2bh", "NYC-H-H"]
    slugs = trends.agency_slugs(agencies)
    assert len(set(slugs.values())) == len(agencies)
    assert all(len(s) <= trends.MAX_SLUG and s != "index" for s in slugs.values())
    assert all(re.fullmatch(r"[a-z0-9_-]+", s) for s in slugs.values())  # one case only


# --- pages ----------------------------------------------------------------------------------


def trend_pages(site: dict[str, bytes]) -> dict[str, bytes]:
    return {path: body for path, body in site.items() if path.startswith("trends/")}


def test_a_page_per_agency_and_a_citywide_page_listing_them(site):
    expected_pages = {"trends/index.html", "trends/dot.html", "trends/hpd.html",
                      "trends/nyc_20h_2bh.html"}
    assert set(trend_pages(site)) == expected_pages
    for path in expected_pages:
        page = parse(site[path])
        links = {a["href"] for a in page.all("a") if "href" in a}
        assert {"index.html", "dot.html", "hpd.html", "nyc_20h_2bh.html"} <= links, path
        assert {"../trends.csv", "../trends.json"} <= links, path
        current = [a["href"] for a in page.all("a") if a.get("aria-current") == "page"]
        assert current == [path.removeprefix("trends/")], path
    heading = parse(site["trends/nyc_20h_2bh.html"]).headings[0]
    assert heading == (1, "Trends: NYC H+H (NYC Health + Hospitals)")


def charts_of(page_html: str) -> list[str]:
    return re.findall(r"<svg .*?</svg>", page_html, re.S)


def chart_of(page_html: str, measure: str) -> str:
    (found,) = [c for c in charts_of(page_html) if c.startswith(f'<svg class="chart trend" '
                                                                 f'id="{measure}-chart"')]
    return found


@pytest.mark.parametrize("path, measures", [
    ("trends/index.html", ("closure_rate", "reopen_rate", "reopen_rate_of_surveys_sent",
                           "share_satisfied", "mean_score", "response_rate")),
    ("trends/hpd.html", ("closure_rate", "reopen_rate_of_surveys_sent", "share_satisfied",
                         "mean_score", "response_rate")),
    ("trends/nyc_20h_2bh.html", ("closure_rate", "reopen_rate_of_surveys_sent",
                                 "share_satisfied", "mean_score", "response_rate")),
])
def test_one_labelled_chart_per_measure_each_linked_to_its_table(site, path, measures):
    html = site[path].decode()
    page = parse(site[path])
    svgs = page.all("svg")
    assert [s["id"] for s in svgs] == [f"{m}-chart" for m in measures]
    ids = [attrs["id"] for _, attrs in page.elements if "id" in attrs]
    assert len(ids) == len(set(ids)), "ids are unique on the page"
    positions = {attrs.get("id"): i for i, (_, attrs) in enumerate(page.elements)}
    for svg, body in zip(svgs, charts_of(html), strict=True):
        assert svg["role"] == "img"
        title, desc = svg["aria-labelledby"], svg["aria-describedby"]
        assert re.search(rf'<title id="{title}">[^<]+ by month, ', body)
        assert re.search(rf'<desc id="{desc}">[^<]*table that follows the chart', body)
        table = f"{svg['id']}-table"
        assert f'<a href="#{table}">' in html  # the chart's link to its numbers
        assert [t for t in page.all("table") if t.get("id") == table]
        assert positions[svg["id"]] < positions[table]  # the table follows the chart
        assert ">fewer than 20: unreliable</text>" in body  # the legend entry
    # the numbers of each chart, one row a month, with the interval, n and reliability
    closure = re.search(r'<table class="trend-data" id="closure_rate-chart-table">.*?</table>',
                        html, re.S)
    assert closure
    assert closure.group(0).count("<tr>") == 1 + len(RAW)
    assert re.search(r"<th scope=\"col\">Month</th>.*95% interval.*Reliability", closure.group(0))


def test_values_are_drawn_where_they_belong(site):
    html = site["trends/dot.html"].decode()
    closure = charts_of(html)[0]
    # three months over a 640-pixel plot from x = 56: the middles of three equal bands
    xs = [float(x) for x in re.findall(r'<circle class="point[^"]*" cx="([\d.]+)"', closure)]
    assert xs == pytest.approx([56 + 640 / 6, 56 + 640 / 2, 56 + 640 * 5 / 6], abs=0.01)
    # DOT 2024-12: 810 of 900 closed = 0.9 -> 10% below the top of a 180-pixel plot at y = 36
    ys = [float(y) for y in re.findall(r'<circle class="point[^"]*" cx="[\d.]+" cy="([\d.]+)"',
                                       closure)]
    assert ys[1] == pytest.approx(36 + 180 * 0.1, abs=0.01)
    assert closure.count("<polyline") == 1 and closure.count('<polygon class="band"') == 1
    # HPD's share satisfied: suppressed in 2024-12, so two lone months with whiskers, a note
    hpd = site["trends/hpd.html"].decode()
    share = chart_of(hpd, "share_satisfied")
    assert "<polyline" not in share and share.count('<g class="trend-whisker">') == 2
    assert "No value for December 2024: fewer than 10 cases, suppressed" in share
    assert re.search(r'class="hint chart-note">No value for December 2024', hpd)
    # DOT's mean score of 2025-01 rests on 15 answers: a hollow point, and said in the table
    score = chart_of(html, "mean_score")
    assert score.count('class="point hollow"') == 1
    assert "<td>unreliable: fewer than 20</td>" in html


def test_a_single_published_month_still_draws_its_charts():
    site = site_files([build("2025-01")])
    for path in ("trends/index.html", "trends/dot.html", "index.html"):
        for body in charts_of(site[path].decode()):
            assert "<polyline" not in body
            assert body.count('<circle class="point') <= 1
            assert "January 2025" in body
    assert len(charts_of(site["trends/index.html"].decode())) == 6
    assert '<g class="trend-whisker">' in site["trends/index.html"].decode()


def test_unpublished_months_are_gaps_not_joined():
    site = site_files([build("2024-11"), build("2025-01")])  # no 2024-12
    html = site["trends/index.html"].decode()
    closure = charts_of(html)[0]
    assert closure.count('<circle class="point') == 2 and "<polyline" not in closure
    assert "December 2024: not published" in closure
    assert "<td>not published</td>" in html


INDEX_MEASURES = ("closure_rate", "reopen_rate", "share_satisfied", "mean_score")


def test_the_index_shows_the_four_citywide_measures_with_their_intervals(site):
    page = parse(site["index.html"])
    html = site["index.html"].decode()
    svgs = page.all("svg")
    assert [s["id"] for s in svgs] == [f"trend-{m}" for m in INDEX_MEASURES]
    titles = re.findall(r"<title id=\"[^\"]+\">([^<]+)</title>", html)
    assert titles == ["Closure rate by month, citywide", "Reopen-request rate by month, citywide",
                      "Share satisfied by month, citywide",
                      "Mean satisfaction score by month, citywide"]
    citywide = site["trends/index.html"].decode()
    for measure, body in zip(INDEX_MEASURES, charts_of(html), strict=True):
        # the interval is drawn (every citywide month has a value: one band over the three)
        assert body.count('<polygon class="band"') == 1, measure
        assert ">95% interval</text>" in body  # and named in the legend
        # the numbers are the trends page's, interval and reliability included
        rows = numbers(html, f"trend-{measure}-table")
        assert rows == numbers(citywide, f"{measure}-chart-table"), measure
        assert len(rows) == len(RAW) and all(" to " in row[-2] for row in rows), rows
    # the reopen-request rate is the citywide one of reopen_rates (answers given in the
    # month): 5 + 8 + 1 of 50 + 25 + 3 in November 2024
    assert numbers(html, "trend-reopen_rate-table")[0][:4] == ["November 2024", "78", "14",
                                                               "17.9%"]
    assert {"trends/index.html", "trends.csv"} <= {a.get("href") for a in page.all("a")}
    captions = re.findall(r"<caption[^>]*>([^<]*)</caption>", html)
    assert "Closure rate by month, citywide" in captions
    assert (2, "Citywide trend") in page.headings


def test_month_pages_and_the_site_nav_link_the_trends(site):
    for month in RAW:
        links = {a.get("href") for a in parse(site[f"{month}/index.html"]).all("a")}
        assert "../trends/index.html" in links
    assert "trends/index.html" in {a.get("href") for a in parse(site["methodology.html"]).all("a")}


def test_the_site_rules_hold_on_the_trends_pages(site):
    for rule in (site_rules.test_every_page_has_lang_csp_one_h1_and_headings_in_order,
                 site_rules.test_every_table_has_a_caption_and_scoped_headers,
                 site_rules.test_no_inline_script_style_or_event_handler,
                 site_rules.test_nothing_refers_to_another_host,
                 site_rules.test_every_link_and_fragment_resolves_within_the_tree):
        rule(site)


def test_the_hand_built_publications_of_the_site_tests_make_trends_too():
    site = site_files([publication("2024-12", revision=1), publication("2025-01", revision=2)])
    rows = keyed(site)
    # HPD 2025-01: 5,000 + 1 of 5,321 + 3 closed, summed; the markup complaint type suppressed
    assert rows[("2025-01", "HPD", "", "closure_rate")]["value"] == fixed(Fraction(5001, 5324), 4)
    assert rows[("2025-01", "HPD", "<script>alert(1)</script>", "closure_rate")]["value"] == ""


def test_methodology_describes_the_trends_the_response_rate_and_both_reopen_rates(site):
    text = " ".join("".join(parse(site["methodology.html"]).text).split())
    for column in trends.TRENDS.columns:
        assert column.name in text and " ".join(column.description.split()) in text
    for measure in trends.MEASURES:
        assert measure.name in text and measure.definition in text
    for statement in ("never an average of the rates", "95% interval", "has a gap",
                      "fewer than 10 cases", "surveys answered over surveys sent",
                      "who chose not to",
                      # the agencies' reopen-request rate, and how it differs from the other
                      "Two reopen-request rates.", "counts the answers given in the month",
                      "counts the answers to the surveys sent in the month",
                      "it is the reopen-request rate on each agency's trends page",
                      "they are not the same number", "has that column empty",
                      # the four measures of the site index
                      "The site's home page shows four of the citywide trends"):
        assert statement in text, statement
    assert 'id="reopen-rates"' in site["methodology.html"].decode()


def test_the_trends_pages_write_to_a_folder(tmp_path, site):
    write_tree(site, tmp_path)
    written = {str(p.relative_to(tmp_path)) for p in Path(tmp_path).rglob("*") if p.is_file()}
    assert {"trends.csv", "trends.json", "trends/nyc_20h_2bh.html"} <= written
    assert data_files(build("2025-01"))["data/2025-01/closure_rates.csv"] == (
        tmp_path / "data/2025-01/closure_rates.csv").read_bytes()
