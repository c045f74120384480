"""The two charts of a month page, laid out here in Python and drawn as inline SVG by templates.

Computing the geometry on the server keeps the page free of chart libraries and scripts (the
site has a strict Content Security Policy and must work without JavaScript), and makes the SVG
deterministic like the rest of the publication. Each chart also carries its numbers as table
rows: that table is the chart's text alternative on the page.

Both charts roll the agency x complaint type rows up to one bar per agency, from the counts
(never by averaging rates), so a bar is the agency's own rate for the month. Each bar carries
the 95% Wilson interval of its rate as a whisker, and the rules of reports.measures apply to the
agency's total: an agency with fewer than 10 cases has no bar (its counts stay in the table),
one with fewer than 20 has a hatched bar and an asterisk.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from reports import measures
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
class Whisker:
    """The 95% interval of a bar's rate: a line from x1 to x2 with end caps."""

    x1: float
    x2: float


@dataclass(frozen=True)
class Bar:
    agency: str
    label: str  # the agency as the axis shows it
    title: str  # tooltip: agency name and numbers
    y: float
    width: float  # closure chart only
    value: str  # right of the bar
    segments: tuple[Segment, ...] = ()
    whisker: Whisker | None = None
    reliability: str = measures.RELIABLE  # suppressed: no bar; unreliable: hatched, asterisk


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
    flagged: bool = False  # some bar is unreliable or suppressed: the chart explains the marks

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


def _x(share: float) -> float:
    return round(PLOT_X + PLOT_WIDTH * share, 2)


def interval_text(k: int, n: int) -> str:
    """'71.2%–84.9%': the 95% Wilson interval of k of n, in percent with one decimal."""
    bounds = measures.wilson(k, n)
    if bounds is None:
        return "n/a"
    low, high = (Decimal(repr(b * 100)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
                 for b in bounds)
    return f"{low}%–{high}%"


def _whisker(k: int, n: int) -> Whisker | None:
    bounds = measures.wilson(k, n)
    return Whisker(_x(bounds[0]), _x(bounds[1])) if bounds else None


RELIABILITY_TEXT = {
    measures.RELIABLE: "reliable",
    measures.UNRELIABLE: "unreliable: fewer than 20",
    measures.SUPPRESSED: "suppressed: fewer than 10",
}


def _shown(share: str, flag: str) -> str:
    return f"{share}*" if flag == measures.UNRELIABLE else share


def _summary(bars: list[Bar], what: str) -> str:
    shown = [b for b in bars if b.reliability != measures.SUPPRESSED]
    hidden = len(bars) - len(shown)
    text = f"{len(bars)} agencies. "
    if shown:
        text += (f"Highest {what}: {shown[0].agency}, {shown[0].value}. Lowest: "
                 f"{shown[-1].agency}, {shown[-1].value}. ")
    if any(b.reliability == measures.UNRELIABLE for b in bars):
        text += "An asterisk marks a rate from fewer than 20 cases, which is unreliable. "
    if hidden:
        text += f"{hidden} with fewer than 10 cases have no bar. "
    return text + "Whiskers show 95% intervals. The numbers are in the table that follows."


def _rank(k: int, n: int, agency: str) -> tuple[int, float, str]:
    """Order: rates that are shown, highest first, then suppressed agencies by name."""
    if measures.reliability(n) == measures.SUPPRESSED:
        return (1, 0.0, agency)
    return (0, -k / n, agency)


def closure_by_agency(pub: Publication, names: dict[str, str], month: str) -> Chart:
    """Horizontal bars: closed / received per agency, highest first, with 95% intervals."""
    totals = _totals(pub.tables["closure_rates"], ("received", "closed"))
    order = sorted((a for a in totals if totals[a][0]),
                   key=lambda a: _rank(totals[a][1], totals[a][0], a))
    top = 24
    bars, rows = [], []
    for i, agency in enumerate(order):
        received, closed = totals[agency]
        flag = measures.reliability(received)
        share = percent(closed, received)
        interval = interval_text(closed, received)
        if flag == measures.SUPPRESSED:
            bars.append(Bar(agency, short(agency),
                            f"{_name(agency, names)}: {received:,} received, too few for a "
                            "rate", top + i * ROW, 0.0, f"suppressed (n = {received:,})",
                            reliability=flag))
            rows.append((agency, f"{received:,}", f"{closed:,}", "suppressed", "",
                         RELIABILITY_TEXT[flag]))
            continue
        bars.append(Bar(agency, short(agency),
                        f"{_name(agency, names)}: {closed:,} of {received:,} closed, {share} "
                        f"(95% interval {interval})", top + i * ROW,
                        round(PLOT_WIDTH * closed / received, 2), _shown(share, flag),
                        whisker=_whisker(closed, received), reliability=flag))
        rows.append((agency, f"{received:,}", f"{closed:,}", share, interval,
                     RELIABILITY_TEXT[flag]))
    return Chart("closure-chart", f"Closure rate by agency, {month}",
                 _summary(bars, "closure rate"), top + len(bars) * ROW + 4, top, _ticks(),
                 tuple(bars), ("Agency", "Received", "Closed", "Closure rate", "95% interval",
                               "Reliability"), tuple(rows),
                 flagged=any(b.reliability != measures.RELIABLE for b in bars))


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
    """100% stacked bars of the five answers per agency, most satisfied first; the whisker is
    the 95% interval of the share satisfied (agree or strongly agree)."""
    fields = tuple(level[0] for level in LEVELS)
    totals = _totals(pub.tables["satisfaction"], fields)
    answered = {a: sum(c) for a, c in totals.items() if sum(c)}
    order = sorted(answered,
                   key=lambda a: _rank(totals[a][0] + totals[a][1], answered[a], a))
    top = 48  # legend, then the tick labels
    bars, rows = [], []
    for i, agency in enumerate(order):
        counts, total = totals[agency], answered[agency]
        flag = measures.reliability(total)
        good_count = counts[0] + counts[1]
        if flag == measures.SUPPRESSED:
            bars.append(Bar(agency, short(agency),
                            f"{_name(agency, names)}: {total:,} answers, too few for shares",
                            top + i * ROW, 0.0, f"suppressed (n = {total:,})",
                            reliability=flag))
            rows.append((agency, f"{total:,}", *(f"{c:,}" for c in counts), "suppressed", "",
                         RELIABILITY_TEXT[flag]))
            continue
        good = percent(good_count, total)
        interval = interval_text(good_count, total)
        bars.append(Bar(agency, short(agency),
                        f"{_name(agency, names)}: {total:,} answers, {good} satisfied (95% "
                        f"interval {interval})", top + i * ROW, 0.0,
                        _shown(f"n = {total:,}", flag), _segments(agency, counts, total),
                        whisker=_whisker(good_count, total), reliability=flag))
        rows.append((agency, f"{total:,}",
                     *(f"{c:,} ({percent(c, total)})" for c in counts), good, interval,
                     RELIABILITY_TEXT[flag]))
    shown = [(b, r) for b, r in zip(bars, rows, strict=True)
             if b.reliability != measures.SUPPRESSED]
    summary = (f"{len(bars)} agencies, bars split by answer from Strongly agree to Strongly "
               "disagree. " + (f"Most satisfied: {shown[0][0].agency}, {shown[0][1][-3]} agree "
                               "or strongly agree. " if shown else ""))
    if any(b.reliability == measures.UNRELIABLE for b in bars):
        summary += "An asterisk marks fewer than 20 answers, which is unreliable. "
    if len(shown) < len(bars):
        summary += f"{len(bars) - len(shown)} with fewer than 10 answers have no bar. "
    summary += ("Whiskers show the 95% interval of the share satisfied. The numbers are in the "
                "table that follows.")
    return Chart("satisfaction-chart", f"Satisfaction by agency, {month}", summary,
                 top + len(bars) * ROW + 4, top, _ticks(), tuple(bars),
                 ("Agency", "Answers", *(level[1] for level in LEVELS), "Satisfied",
                  "95% interval", "Reliability"), tuple(rows),
                 flagged=any(b.reliability != measures.RELIABLE for b in bars))


def legend() -> list[tuple[float, str, str]]:
    """(x, colour, label) of each legend entry, laid out in one row from the plot's left edge."""
    entries, x = [], float(PLOT_X)
    for _, level, _, color, _ in LEVELS:
        entries.append((x, color, level))
        x += 22 + 7.5 * len(level) + 14
    return entries
