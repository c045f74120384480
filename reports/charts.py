"""The two charts of a month page, laid out here in Python and drawn as inline SVG by templates.

Computing the geometry on the server keeps the page free of chart libraries and scripts (the
site has a strict Content Security Policy and must work without JavaScript), and makes the SVG
deterministic like the rest of the publication. Each chart also carries its numbers as table
rows: that table is the chart's text alternative on the page.

Both charts roll the agency x complaint type rows up to one bar per agency, from the counts
(never by averaging rates), so a bar is the agency's own rate for the month.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from reports.model import Publication, Row

WIDTH = 720
PLOT_X = 112  # agency labels end just left of here
PLOT_WIDTH = 520  # what is right of the plot holds the value label
ROW = 26
BAR = 16
TICKS = (0, 25, 50, 75, 100)
MAX_LABEL = 13

#: The five answers, in the order the stacked bars show them, with their score and colour
#: (ColorBrewer RdBu, neutral darkened so it shows on white); `dark` colours take white text.
LEVELS: tuple[tuple[str, str, int, str, bool], ...] = (
    ("strongly_agree", "Strongly agree", 100, "#0571b0", True),
    ("agree", "Agree", 75, "#92c5de", False),
    ("neutral", "Neutral", 50, "#cfcfcf", False),
    ("disagree", "Disagree", 25, "#f4a582", False),
    ("strongly_disagree", "Strongly disagree", 0, "#ca0020", True),
)
MIN_SEGMENT_LABEL = 34  # px: narrower segments keep their share in the tooltip and the table


def percent(part: int, whole: int) -> str:
    """'85.3%': one decimal, half away from zero."""
    share = Decimal(part * 100) / Decimal(whole)
    return f"{share.quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}%"


def short(agency: str) -> str:
    return agency if len(agency) <= MAX_LABEL else agency[: MAX_LABEL - 1] + "…"


@dataclass(frozen=True)
class Tick:
    x: float
    text: str


@dataclass(frozen=True)
class Segment:
    x: float
    width: float
    color: str
    dark: bool
    text: str  # the share shown inside the segment, "" when it is too narrow
    title: str


@dataclass(frozen=True)
class Bar:
    agency: str
    label: str  # the agency as the axis shows it
    title: str  # tooltip: agency name and numbers
    y: float
    width: float  # closure chart only
    value: str  # right of the bar
    segments: tuple[Segment, ...] = ()


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    summary: str  # the SVG <desc>, read out with the title
    height: int
    top: int  # y of the first bar row
    ticks: tuple[Tick, ...]
    bars: tuple[Bar, ...]
    header: tuple[str, ...]  # the text-alternative table
    rows: tuple[tuple[str, ...], ...]

    width: int = WIDTH
    plot_x: int = PLOT_X
    plot_width: int = PLOT_WIDTH
    row: int = ROW
    bar: int = BAR


def _ticks() -> tuple[Tick, ...]:
    return tuple(Tick(round(PLOT_X + PLOT_WIDTH * t / 100, 2), f"{t}%") for t in TICKS)


def _totals(rows: list[Row], fields: tuple[str, ...]) -> dict[str, list[int]]:
    totals: dict[str, list[int]] = {}
    for row in rows:
        sums = totals.setdefault(str(row["agency"]), [0] * len(fields))
        for i, name in enumerate(fields):
            sums[i] += int(row[name] or 0)
    return totals


def _name(agency: str, names: dict[str, str]) -> str:
    name = names.get(agency)
    return f"{agency} ({name})" if name else agency


def closure_by_agency(pub: Publication, names: dict[str, str], month: str) -> Chart:
    """Horizontal bars: closed / received per agency, highest first."""
    totals = _totals(pub.tables["closure_rates"], ("received", "closed"))
    order = sorted(totals, key=lambda a: (-(totals[a][1] / totals[a][0]) if totals[a][0] else 1,
                                           a))
    top = 24
    bars, rows = [], []
    for i, agency in enumerate(order):
        received, closed = totals[agency]
        share = percent(closed, received) if received else "n/a"
        width = round(PLOT_WIDTH * closed / received, 2) if received else 0.0
        bars.append(Bar(agency, short(agency),
                        f"{_name(agency, names)}: {closed:,} of {received:,} closed, {share}",
                        top + i * ROW, width, share))
        rows.append((agency, f"{received:,}", f"{closed:,}", share))
    summary = (f"{len(bars)} agencies. " + (f"Highest: {bars[0].agency}, {bars[0].value}. "
               f"Lowest: {bars[-1].agency}, {bars[-1].value}. " if bars else "")
               + "The numbers are in the table that follows the chart.")
    return Chart("closure-chart", f"Closure rate by agency, {month}", summary,
                 top + len(bars) * ROW + 4, top, _ticks(), tuple(bars),
                 ("Agency", "Received", "Closed", "Closure rate"), tuple(rows))


def _segments(agency: str, counts: list[int], total: int) -> tuple[Segment, ...]:
    segments, done = [], 0
    for (_, level, _, color, dark), count in zip(LEVELS, counts, strict=True):
        if not count:
            continue
        x = round(PLOT_X + PLOT_WIDTH * done / total, 2)
        done += count
        width = round(PLOT_X + PLOT_WIDTH * done / total, 2) - x
        share = percent(count, total)
        segments.append(Segment(x, round(width, 2), color, dark,
                                share if width >= MIN_SEGMENT_LABEL else "",
                                f"{agency}, {level}: {count:,} of {total:,} ({share})"))
    return tuple(segments)


def satisfaction_by_agency(pub: Publication, names: dict[str, str], month: str) -> Chart:
    """100% stacked bars of the five answers per agency, most satisfied first."""
    fields = tuple(level[0] for level in LEVELS)
    totals = _totals(pub.tables["satisfaction"], fields)
    answered = {a: sum(c) for a, c in totals.items() if sum(c)}

    def satisfied(agency: str) -> float:
        return (totals[agency][0] + totals[agency][1]) / answered[agency]

    order = sorted(answered, key=lambda a: (-satisfied(a), a))
    top = 48  # legend, then the tick labels
    bars, rows = [], []
    for i, agency in enumerate(order):
        counts, total = totals[agency], answered[agency]
        good = percent(counts[0] + counts[1], total)
        bars.append(Bar(agency, short(agency),
                        f"{_name(agency, names)}: {total:,} answers, {good} satisfied",
                        top + i * ROW, 0.0, f"n = {total:,}", _segments(agency, counts, total)))
        rows.append((agency, f"{total:,}",
                     *(f"{c:,} ({percent(c, total)})" for c in counts), good))
    summary = (f"{len(bars)} agencies, bars split by answer from Strongly agree to Strongly "
               "disagree. " + (f"Most satisfied: {bars[0].agency}, "
                               f"{rows[0][-1]} agree or strongly agree. " if bars else "")
               + "The numbers are in the table that follows the chart.")
    return Chart("satisfaction-chart", f"Satisfaction by agency, {month}", summary,
                 top + len(bars) * ROW + 4, top, _ticks(), tuple(bars),
                 ("Agency", "Answers", *(level[1] for level in LEVELS), "Satisfied"),
                 tuple(rows))


def legend() -> list[tuple[float, str, str]]:
    """(x, colour, label) of each legend entry, laid out in one row from the plot's left edge."""
    entries, x = [], float(PLOT_X)
    for _, level, _, color, _ in LEVELS:
        entries.append((x, color, level))
        x += 22 + 7.5 * len(level) + 14
    return entries
