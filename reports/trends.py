"""Trends: every measure month by month over the published months, citywide and per agency.

From the newest revision of each published month (reports.site picks them), this computes

- ``closure_rate``: closed / received (closure_rates);
- ``reopen_rate``: reopen_requested / surveys_answered of the answers given in the month
  (reopen_rates, which is by complaint type only: there is no agency grain);
- ``reopen_rate_of_surveys_sent``: reopen_requested / surveys_answered of the surveys sent in
  the month and answered by as_of (survey_response_rates, by agency only): the agencies'
  reopen-request rate. The same reopen request, another cohort of answers, so it is a measure
  of its own rather than agency rows of ``reopen_rate`` (whose citywide figure would then not
  be the sum of its agencies');
- ``share_satisfied``: (strongly_agree + agree) / answers, and ``mean_score``: the mean of the
  answers' 0-100 scores, both from the five answer counts of satisfaction;
- ``response_rate``: surveys_answered / surveys_sent (survey_response_rates, by agency only),

at every grain the tables allow: citywide (agency empty, complaint_type empty), per agency
(complaint_type empty), and the published rows themselves (agency x complaint type, or
complaint type alone for reopen_rate). A coarser figure is always computed from the summed
counts of the rows it covers, never by averaging their rates, so an agency's closure rate is
its own closed over its own received. Every figure gets its 95% interval and its reliability
from reports.measures, exactly as the month files do: suppressed below 10 cases (value and
interval empty, n kept), unreliable below 20. Computed from the same counts and rounded the
same way, a published row's figures here carry the digits of the month's own files.

The citywide and per-agency series are complete grids: every published month has a row for
each, with n = 0 (suppressed) where there was nothing to count. The finer rows are the
published rows as they are. The one exception is a month whose revision has no count a
measure needs (an empty column: published before the column existed, like
survey_response_rates' reopen_requested before migration 0009): that measure has no row for
that month, and its charts show the month as not published, rather than as a rate of 0.

``trends.csv`` (and ``trends.json``, the same rows) is one long table with the columns of
:data:`TRENDS`, ordered by month, agency, complaint type and measure (the order of
:data:`MEASURES`), so the rows of a new month are appended at the end and a revision changes
only the rows of its month. The file is written by reports.files' writer (RFC 4180, text cells
that a spreadsheet would run as a formula neutralised).

The charts of the trends pages are laid out here, like reports.charts does for the month
pages: one line chart per measure, x the calendar months from the first published month to the
last, y 0-100% (or the 0-100 score), the value as a line with points, the 95% interval as a
band (a whisker where a month stands alone), suppressed or unpublished months as gaps, and
unreliable months as hollow points. Each chart carries its numbers as table rows.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import cached_property

from reports.files import format_value, table_csv, table_json
from reports.measures import (
    LEVEL_SCORES,
    SUPPRESS_BELOW,
    SUPPRESSED,
    UNRELIABLE,
    UNRELIABLE_BELOW,
    mean_interval,
    reliability,
    rounded,
    wilson,
)
from reports.model import BY_NAME, MONTH, Column, Publication, Row, TableSpec

# --- measures -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measure:
    name: str  # the value of the measure column of trends.csv
    title: str
    table: str  # the published table it is computed from
    denominator: str  # what n counts, as the pages say it
    numerator: str  # what the rate counts of n; "" for mean_score
    score: bool  # a 0-100 score (mean_score) rather than a 0-1 rate
    by_agency: bool  # the table has an agency column
    definition: str  # plain words, for the pages and the methodology
    #: the table's count columns summed for the numerator (k) of a rate; () for mean_score
    k: tuple[str, ...]
    #: the count columns summed for n: the five answer levels for the satisfaction measures
    n: tuple[str, ...]

    @property
    def counts(self) -> tuple[str, ...]:
        """Every column the measure is computed from."""
        return tuple(dict.fromkeys((*self.k, *self.n)))

    @property
    def column(self) -> Column:
        """The month table's column of this measure (its decimals are the value's); a
        measure the month table does not carry as a column is a rate of 4 decimals."""
        return _column(self.table, self.name)

    @property
    def low(self) -> Column:
        return _column(self.table, f"{self.name}_ci_low")

    @property
    def high(self) -> Column:
        return _column(self.table, f"{self.name}_ci_high")


def _column(table: str, name: str) -> Column:
    found = [c for c in BY_NAME[table].columns if c.name == name]
    return found[0] if found else Column(name, "number", "")


_LEVELS = tuple(level for level, _ in LEVEL_SCORES)


MEASURES: tuple[Measure, ...] = (
    Measure("closure_rate", "Closure rate", "closure_rates", "Requests received", "Closed",
            False, True,
            "Of the requests received in the month, the share closed by as_of.",
            ("closed",), ("received",)),
    Measure("reopen_rate", "Reopen-request rate", "reopen_rates", "Surveys answered",
            "Reopen requested", False, False,
            "Of the surveys answered in the month, the share that asked for the request to be "
            "reopened.",
            ("reopen_requested",), ("surveys_answered",)),
    Measure("reopen_rate_of_surveys_sent", "Reopen-request rate of surveys sent",
            "survey_response_rates", "Surveys answered", "Reopen requested", False, True,
            "Of the surveys sent in the month and answered by as_of, the share that asked for "
            "the request to be reopened: the same reopen request as the reopen-request rate, "
            "but counted in the month the survey was sent, like the response rate, which is "
            "how it is published for each agency.",
            ("reopen_requested",), ("surveys_answered",)),
    Measure("share_satisfied", "Share satisfied", "satisfaction", "Answers",
            "Agree or strongly agree", False, True,
            "Of the answers to the satisfaction question in the month, the share that agreed "
            "or strongly agreed.",
            ("strongly_agree", "agree"), _LEVELS),
    Measure("mean_score", "Mean satisfaction score", "satisfaction", "Answers", "", True, True,
            "The mean of the answers' scores, from 0 (strongly disagree) to 100 (strongly "
            "agree).",
            (), _LEVELS),
    Measure("response_rate", "Survey response rate", "survey_response_rates", "Surveys sent",
            "Surveys answered", False, True,
            "Of the surveys sent in the month, the share answered by as_of.",
            ("surveys_answered",), ("surveys_sent",)),
)
MEASURE = {m.name: m for m in MEASURES}
ORDER = {m.name: i for i, m in enumerate(MEASURES)}

#: table -> its measures, and the count columns summed for them
TABLE_MEASURES: dict[str, tuple[Measure, ...]] = {
    table: tuple(m for m in MEASURES if m.table == table)
    for table in dict.fromkeys(m.table for m in MEASURES)}
COUNTS: dict[str, tuple[str, ...]] = {
    table: tuple(dict.fromkeys(c for m in measures for c in m.counts))
    for table, measures in TABLE_MEASURES.items()}

TRENDS = TableSpec(
    "trends", "Trends",
    "Every measure of every published month (its newest revision), citywide, per agency and "
    "per published row, with its 95% interval, its number of cases and its reliability: one "
    "row per month, agency, complaint type and measure.",
    (MONTH,
     Column("agency", "string", "Agency acronym; empty for the whole city (every agency)."),
     Column("complaint_type", "string",
            "311 complaint type; empty for all complaint types together."),
     Column("measure", "string",
            "closure_rate, reopen_rate, reopen_rate_of_surveys_sent, share_satisfied, "
            "mean_score or response_rate."),
     Column("value", "number",
            "The measure, from the summed counts of the rows it covers: a rate 0-1 with 4 "
            "decimals, mean_score 0-100 with 2; empty when suppressed (see reliability)."),
     Column("ci_low", "number",
            "Lower bound of the value's 95% interval (Wilson score interval for a rate, normal "
            "approximation for mean_score), in the value's scale and decimals; empty when the "
            "value is."),
     Column("ci_high", "number", "Upper bound of the value's 95% interval; empty when the "
            "value is."),
     Column("n", "integer",
            "The cases the value rests on: requests received (closure_rate), surveys answered "
            "in the month (reopen_rate), surveys sent in the month and answered by as_of "
            "(reopen_rate_of_surveys_sent), answers (share_satisfied, mean_score), surveys "
            "sent (response_rate)."),
     Column("reliability", "string",
            "reliable, unreliable or suppressed, from n: suppressed below 10 (value and "
            "interval empty, n kept), unreliable below 20, reliable from 20.")),
    ("agency", "complaint_type", "measure"))
CSV_PATH = "trends.csv"
JSON_PATH = "trends.json"


# --- series ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One row of trends.csv, with the count the pages show next to it."""

    month: str
    agency: str  # "" for citywide
    complaint_type: str  # "" for all complaint types
    measure: str
    value: float | None  # rounded like the month files; None when suppressed
    ci_low: float | None
    ci_high: float | None
    n: int
    reliability: str
    k: int | None  # the numerator of a rate (None for mean_score)


@dataclass(frozen=True)
class Agency:
    code: str
    name: str  # the name its newest month gave, "" when none did
    slug: str  # the page is trends/<slug>.html

    @property
    def label(self) -> str:
        return f"{self.code} ({self.name})" if self.name else self.code


@dataclass(frozen=True)
class Trends:
    months: tuple[str, ...]  # the published months, oldest first
    points: tuple[Point, ...]  # in the order of trends.csv
    agencies: tuple[Agency, ...]  # by code

    def series(self, agency: str, measure: str, complaint_type: str = "") -> dict[str, Point]:
        """month -> point of one series."""
        return dict(self._series.get((agency, complaint_type, measure), {}))

    @cached_property
    def _series(self) -> dict[tuple[str, str, str], dict[str, Point]]:
        index: dict[tuple[str, str, str], dict[str, Point]] = {}
        for p in self.points:
            index.setdefault((p.agency, p.complaint_type, p.measure), {})[p.month] = p
        return index


def _ratio(k: int, n: int, places: int) -> float:
    """k / n rounded half away from zero on the exact quotient, like PostgreSQL's round."""
    exact = Decimal(k) / Decimal(n)
    return float(exact.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def rate_point(month: str, agency: str, complaint_type: str, measure: str, k: int,
               n: int) -> Point:
    """A rate k / n with its Wilson interval, suppressed below 10 cases."""
    flag = reliability(n)
    if flag == SUPPRESSED:
        return Point(month, agency, complaint_type, measure, None, None, None, n, flag, k)
    interval = wilson(k, n)
    assert interval is not None
    low, high = (rounded(b, 4) for b in interval)
    return Point(month, agency, complaint_type, measure, _ratio(k, n, 4), low, high, n, flag, k)


def score_point(month: str, agency: str, complaint_type: str, levels: Sequence[int]) -> Point:
    """The mean 0-100 score of answers counted per level, with its interval."""
    n = sum(levels)
    flag = reliability(n)
    interval = mean_interval(levels)
    if flag == SUPPRESSED or interval is None:
        return Point(month, agency, complaint_type, "mean_score", None, None, None, n, flag, None)
    total = sum(c * s for c, (_, s) in zip(levels, LEVEL_SCORES, strict=True))
    return Point(month, agency, complaint_type, "mean_score", _ratio(total, n, 2),
                 rounded(interval[1], 2), rounded(interval[2], 2), n, flag, None)


def _point(measure: Measure, month: str, agency: str, complaint_type: str,
           counts: dict[str, int]) -> Point:
    if measure.score:
        return score_point(month, agency, complaint_type, [counts[c] for c in measure.n])
    return rate_point(month, agency, complaint_type, measure.name,
                      sum(counts[c] for c in measure.k), sum(counts[c] for c in measure.n))


def _text(row: Row, column: str, where: str) -> str:
    value = row[column]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: {column} {value!r} (an empty one would read as 'all')")
    return value


def _groups(pub: Publication, table: str, agencies: Iterable[str]
            ) -> dict[tuple[str, str], dict[str, int]]:
    """(agency, complaint_type) -> summed counts by column, at every grain of one month's
    table."""
    key = BY_NAME[table].key
    fields = COUNTS[table]
    sums: dict[tuple[str, str], dict[str, int]] = {("", ""): dict.fromkeys(fields, 0)}
    if "agency" in key:
        for agency in agencies:
            sums[(agency, "")] = dict.fromkeys(fields, 0)
    for i, row in enumerate(pub.tables[table]):
        where = f"{pub.month} {table} row {i}"
        agency = _text(row, "agency", where) if "agency" in key else ""
        complaint_type = _text(row, "complaint_type", where) if "complaint_type" in key else ""
        for group in {("", ""), (agency, ""), (agency, complaint_type)}:
            totals = sums.setdefault(group, dict.fromkeys(fields, 0))
            for name in fields:
                totals[name] += int(row[name] or 0)
    return sums


def _counted(pub: Publication, measure: Measure) -> bool:
    """Whether the month's revision has every count the measure needs: a column published
    empty (the revision is older than the column) has none, which is no count of 0."""
    return all(row[c] is not None for row in pub.tables[measure.table] for c in measure.counts)


def compute(publications: Iterable[Publication]) -> Trends:
    """The trends of one publication per month (the newest revision of each)."""
    pubs = sorted(publications, key=lambda p: p.month)
    months = [p.month for p in pubs]
    if len(set(months)) != len(months):
        raise ValueError("one publication per month: pass the newest revision of each")
    codes = sorted({str(row["agency"]) for pub in pubs for m in MEASURES if m.by_agency
                    for row in pub.tables[m.table]})
    points: list[Point] = []
    for pub in pubs:
        for table, measures in TABLE_MEASURES.items():
            counted = [m for m in measures if _counted(pub, m)]
            for (agency, complaint_type), counts in _groups(pub, table, codes).items():
                points += [_point(m, pub.month, agency, complaint_type, counts) for m in counted]
    points.sort(key=lambda p: (p.month, p.agency, p.complaint_type, ORDER[p.measure]))
    names: dict[str, str] = {}
    for pub in reversed(pubs):  # newest month first: its name wins
        for row in pub.tables["requests_received"]:
            if row.get("agency_name"):
                names.setdefault(str(row["agency"]), str(row["agency_name"]))
    slugs = agency_slugs(codes)
    agencies = tuple(Agency(code, names.get(code, ""), slugs[code]) for code in codes)
    return Trends(tuple(months), tuple(points), agencies)


# --- file names -----------------------------------------------------------------------------

_PLAIN = re.compile(r"[A-Z0-9-]")
RESERVED = frozenset({"index"})  # trends/index.html is the citywide page
MAX_SLUG = 100


def slug(agency: str) -> str:
    """A file name for an agency's page: lower case letters, digits, ``-`` and ``_``.

    Capital letters, digits and ``-`` are kept (letters in lower case: "DOT" -> "dot"); every
    other character is written as ``_`` and the two hex digits of each of its UTF-8 bytes
    ("NYC H+H" -> "nyc_20h_2bh", "dot" -> "_64_6f_74"). Reading the name back gives the agency,
    so two agencies never share a page, on a file system that ignores case included, and a new
    agency never renames another's page. A name that would be a reserved page ("index") has its
    first character escaped; one longer than 100 characters is "_h" and the agency's SHA-256
    (an escape never produces "_h").
    """
    out = "".join(ch.lower() if _PLAIN.fullmatch(ch)
                  else "".join(f"_{b:02x}" for b in ch.encode("utf-8")) for ch in agency)
    if out in RESERVED or not out:
        out = "".join(f"_{b:02x}" for b in agency[:1].encode("utf-8")) + out[1:]
    if len(out) > MAX_SLUG:
        out = "_h" + hashlib.sha256(agency.encode("utf-8")).hexdigest()
    return out


def agency_slugs(agencies: Iterable[str]) -> dict[str, str]:
    slugs = {agency: slug(agency) for agency in agencies}
    if len(set(slugs.values())) != len(slugs):  # only a SHA-256 collision could do this
        raise ValueError("two agencies would share a trends page")
    return slugs


# --- files ----------------------------------------------------------------------------------


def _cells(point: Point) -> list[str | None]:
    measure = MEASURE[point.measure]
    return [point.month, point.agency, point.complaint_type, point.measure,
            format_value(measure.column, point.value), format_value(measure.low, point.ci_low),
            format_value(measure.high, point.ci_high), str(point.n), point.reliability]


def data_files(trends: Trends) -> dict[str, bytes]:
    """trends.csv and trends.json, at the site root."""
    cells = [_cells(p) for p in trends.points]
    return {CSV_PATH: table_csv(TRENDS, cells), JSON_PATH: table_json(TRENDS, cells)}


# --- charts ---------------------------------------------------------------------------------

MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August",
               "September", "October", "November", "December")
WIDTH = 720
PLOT_X = 56  # y tick labels end just left of here
PLOT_RIGHT = 24
LEGEND = 16  # the legend row; the plot starts below it
PLOT_TOP = 36
PLOT_HEIGHT = 180
COMPACT_PLOT_HEIGHT = 110
X_LABELS = 40  # below the plot: month, then year
MIN_LABEL_SPACING = 48  # px between month labels; more months label every second, third, ...
Y_TICKS = (0, 25, 50, 75, 100)
SUPPRESSED_TEXT = f"suppressed: fewer than {SUPPRESS_BELOW}"
UNRELIABLE_TEXT = f"fewer than {UNRELIABLE_BELOW}: unreliable"


def month_title(month: str) -> str:
    """'2025-01' -> 'January 2025'."""
    year, number = month.split("-")
    return f"{MONTH_NAMES[int(number) - 1]} {year}"


def calendar(first: str, last: str) -> list[str]:
    """Every month from first to last, both included."""
    year, number = (int(part) for part in first.split("-"))
    out = []
    while (month := f"{year:04d}-{number:02d}") <= last:
        out.append(month)
        year, number = (year + 1, 1) if number == 12 else (year, number + 1)
    return out


@dataclass(frozen=True)
class YTick:
    y: float
    text: str


@dataclass(frozen=True)
class XTick:
    x: float
    month: str  # "Jan"
    year: str  # shown under the first label and wherever the year changes, else ""


@dataclass(frozen=True)
class Mark:
    """One month's drawn value: the point and its interval."""

    x: float
    y: float
    low: float  # y of the lower bound (below the point: the larger y)
    high: float
    hollow: bool  # unreliable
    title: str  # tooltip


@dataclass(frozen=True)
class LegendEntry:
    x: float
    kind: str  # "point", "band" or "hollow"
    text: str


@dataclass(frozen=True)
class LineChart:
    id: str
    title: str
    summary: str  # the SVG <desc>
    note: str  # the months without a value, in words; "" when every month has one
    height: int
    plot_top: int
    plot_height: int
    y_ticks: tuple[YTick, ...]
    x_ticks: tuple[XTick, ...]
    legend: tuple[LegendEntry, ...]
    lines: tuple[str, ...]  # polyline points of each run of consecutive months with a value
    bands: tuple[str, ...]  # polygon points of the interval over each run of two months or more
    whiskers: tuple[Mark, ...]  # the interval of a month with no neighbour
    marks: tuple[Mark, ...]
    caption: str  # of the text-alternative table
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    width: int = WIDTH
    plot_x: int = PLOT_X
    plot_width: int = WIDTH - PLOT_X - PLOT_RIGHT

    @property
    def table_id(self) -> str:
        return f"{self.id}-table"

    @property
    def plot_bottom(self) -> int:
        return self.plot_top + self.plot_height


def _percent(value: float) -> str:
    """A 0-1 rate as a percentage with one decimal, half away from zero."""
    return f"{Decimal(repr(value * 100)).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}%"


def shown(measure: Measure, value: float | None, point: Point | None = None) -> str:
    """A value as the pages show it: 75.0% for a rate (from its counts when known), 73.13 for
    a score, n/a when empty."""
    if value is None:
        return "n/a"
    if measure.score:
        return f"{value:.2f}"
    if point is not None and point.k is not None and point.n:
        share = Decimal(point.k * 100) / Decimal(point.n)
        return f"{share.quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}%"
    return _percent(value)


def interval_text(measure: Measure, point: Point) -> str:
    if point.ci_low is None or point.ci_high is None:
        return "n/a"
    return f"{shown(measure, point.ci_low)} to {shown(measure, point.ci_high)}"


def reliability_text(point: Point) -> str:
    if point.reliability == SUPPRESSED:
        return SUPPRESSED_TEXT
    if point.reliability == UNRELIABLE:
        return f"unreliable: fewer than {UNRELIABLE_BELOW}"
    return point.reliability


def _legend(measure: Measure) -> tuple[LegendEntry, ...]:
    entries, x = [], float(PLOT_X)
    for kind, text in (("point", measure.title), ("band", "95% interval"),
                       ("hollow", UNRELIABLE_TEXT)):
        entries.append(LegendEntry(x, kind, text))
        x += 22 + 7.5 * len(text) + 14
    return tuple(entries)


def _x_ticks(months: list[str], xs: list[float], plot_width: float) -> tuple[XTick, ...]:
    step = max(1, math.ceil(len(months) * MIN_LABEL_SPACING / plot_width))
    ticks, year = [], ""
    for i, month in enumerate(months):
        if (len(months) - 1 - i) % step:
            continue  # the newest month is always labelled
        name = MONTH_NAMES[int(month[5:]) - 1][:3]
        ticks.append(XTick(xs[i], name, month[:4] if month[:4] != year else ""))
        year = month[:4]
    return tuple(ticks)


def _runs(indexes: list[int]) -> list[list[int]]:
    """Consecutive indexes grouped: [0, 1, 3] -> [[0, 1], [3]]."""
    runs: list[list[int]] = []
    for i in indexes:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _table_row(measure: Measure, month: str, point: Point | None) -> tuple[str, ...]:
    counts = (1 if measure.score else 2)
    if point is None:
        return (month_title(month), *["n/a"] * counts, "n/a", "n/a", "not published")
    cells = [f"{point.n:,}"]
    if not measure.score:
        cells.append(f"{point.k or 0:,}")
    return (month_title(month), *cells, shown(measure, point.value, point),
            interval_text(measure, point), reliability_text(point))


def _summary(measure: Measure, where: str, months: list[str], series: dict[str, Point],
             gaps: str) -> str:
    span = (f"{month_title(months[0])} to {month_title(months[-1])}" if len(months) > 1
            else month_title(months[0]))
    valued = [series[m] for m in months if m in series and series[m].value is not None]
    text = f"{measure.title}, {where}, by month, {span}. "
    if valued:
        latest = valued[-1]
        text += (f"Latest, {month_title(latest.month)}: {shown(measure, latest.value, latest)} "
                 f"(95% interval {interval_text(measure, latest)}, n = {latest.n:,}). ")
        if len(valued) > 1:
            low = min(valued, key=lambda p: (p.value or 0, p.month))
            high = max(valued, key=lambda p: (p.value or 0, p.month))
            text += (f"Lowest: {shown(measure, low.value, low)} in {month_title(low.month)}; "
                     f"highest: {shown(measure, high.value, high)} in "
                     f"{month_title(high.month)}. ")
    else:
        text += "No month has enough cases for a value. "
    unreliable = sum(1 for p in valued if p.reliability == UNRELIABLE)
    if unreliable:
        text += (f"{unreliable} of the months rest on fewer than {UNRELIABLE_BELOW} cases "
                 "(hollow points): unreliable. ")
    if gaps:
        text += gaps + " "
    return text + "The numbers are in the table that follows the chart."


def _gaps(months: list[str], series: dict[str, Point]) -> str:
    suppressed = [month_title(m) for m in months if m in series and series[m].value is None]
    missing = [month_title(m) for m in months if m not in series]
    parts = []
    if suppressed:
        parts.append(f"No value for {', '.join(suppressed)}: fewer than {SUPPRESS_BELOW} "
                     "cases, suppressed (a gap in the line).")
    if missing:
        parts.append(f"{', '.join(missing)}: not published (a gap in the line).")
    return " ".join(parts)


def line_chart(trends: Trends, agency: str, measure_name: str, where: str, chart_id: str,
               compact: bool = False) -> LineChart:
    """One measure's series month by month, laid out for the trend-chart template."""
    measure = MEASURE[measure_name]
    series = trends.series(agency, measure_name)
    months = calendar(trends.months[0], trends.months[-1]) if trends.months else []
    if not months:
        raise ValueError("no published month: nothing to chart")
    plot_height = COMPACT_PLOT_HEIGHT if compact else PLOT_HEIGHT
    plot_width = WIDTH - PLOT_X - PLOT_RIGHT
    scale = 100.0 if measure.score else 1.0

    def y(value: float) -> float:
        return round(PLOT_TOP + plot_height * (1 - value / scale), 2)

    xs = [round(PLOT_X + plot_width * (i + 0.5) / len(months), 2) for i in range(len(months))]
    marks: dict[int, Mark] = {}
    for i, month in enumerate(months):
        point = series.get(month)
        if point is None or point.value is None:
            continue
        low = point.ci_low if point.ci_low is not None else point.value
        high = point.ci_high if point.ci_high is not None else point.value
        title = (f"{month_title(month)}: {shown(measure, point.value, point)}, 95% interval "
                 f"{interval_text(measure, point)}, n = {point.n:,}"
                 + (f" ({UNRELIABLE_TEXT})" if point.reliability == UNRELIABLE else ""))
        marks[i] = Mark(xs[i], y(point.value), y(low), y(high),
                        point.reliability == UNRELIABLE, title)
    lines, bands, whiskers = [], [], []
    for run in _runs(sorted(marks)):
        if len(run) == 1:
            whiskers.append(marks[run[0]])
            continue
        lines.append(" ".join(f"{marks[i].x},{marks[i].y}" for i in run))
        upper = [f"{marks[i].x},{marks[i].high}" for i in run]
        lower = [f"{marks[i].x},{marks[i].low}" for i in reversed(run)]
        bands.append(" ".join(upper + lower))
    y_ticks = tuple(YTick(y(t * scale / 100), f"{t}" if measure.score else f"{t}%")
                    for t in Y_TICKS)
    gaps = _gaps(months, series)
    title = f"{measure.title} by month, {where}"
    header = ("Month", measure.denominator,
              *((measure.numerator,) if measure.numerator else ()),
              measure.title, "95% interval", "Reliability")
    return LineChart(
        chart_id, title, _summary(measure, where, months, series, gaps), gaps,
        PLOT_TOP + plot_height + X_LABELS, PLOT_TOP, plot_height, y_ticks,
        _x_ticks(months, xs, plot_width), _legend(measure), tuple(lines), tuple(bands),
        tuple(whiskers), tuple(marks[i] for i in sorted(marks)), title, header,
        tuple(_table_row(measure, m, series.get(m)) for m in months))


def measures_for(agency: str) -> tuple[Measure, ...]:
    """The measures with a series for the agency ("" for citywide: all of them)."""
    return tuple(m for m in MEASURES if not agency or m.by_agency)
