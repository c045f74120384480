"""The public website of the monthly metrics: an index of months, a page per month, methodology.

The site is a static file tree rendered from Publication objects, so it can be served from any
bucket or web server, written atomically to a folder, and tested without services. It is the
form most people see of the §23-306 publication, hence the constraints it is built under:

- it works with no JavaScript at all (full tables), and the small script only adds sorting and
  filtering on top;
- everything comes from the site itself: no CDN, font or script from another host, no inline
  script or style, so a strict Content Security Policy (default-src 'self') holds on every page;
- charts are SVG drawn here, in Python, each with a title, a label and its numbers as a table;
- links are relative, so the tree can live under any prefix.

The data files of every month are part of the tree (reports.files renders them), so every
download link on a page points at a file in the same tree.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cache
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined

from nyc311.settings import DATA_CONTACT_EMAIL
from reports import charts, trends
from reports.catalog import CATALOG, SiteEntry, catalog_file
from reports.files import data_files, format_value, history, month_dir
from reports.measures import RATES, SUPPRESSED
from reports.model import DISSATISFACTION_REASONS, TABLES, Column, Publication, TableSpec
from reports.trends import month_title

NEW_YORK = ZoneInfo("America/New_York")
ASSETS = ("site.css", "site.js", "favicon.svg")
#: Columns the page states once above the tables instead of repeating in every row.
PAGE_LEVEL_COLUMNS = frozenset({"month", "as_of"})
FILTERED = ("agency", "complaint_type")  # the row attributes the filter form matches
#: English month names, not strftime's %B, which follows the process locale (the trends
#: pages' names; one list for the whole site).
MONTHS = trends.MONTH_NAMES
LABELS = {"agency": "Agency", "agency_name": "Agency name", "complaint_type": "Complaint type"}
for _rate in (c.name.removesuffix("_ci_low") for spec in TABLES for c in spec.columns
              if c.name.endswith("_ci_low")):
    LABELS[f"{_rate}_interval"] = "95% interval"
    LABELS[f"{_rate}_ci_low"] = "95% interval (lower bound)"
    LABELS[f"{_rate}_ci_high"] = "95% interval (upper bound)"


@cache
def environment() -> Environment:
    env = Environment(loader=PackageLoader("reports", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                      keep_trailing_newline=True)
    env.filters["day"] = day
    return env


def day(at: datetime) -> str:
    """The calendar date in New York, e.g. 'February 3, 2025'."""
    local = at.astimezone(NEW_YORK)
    return f"{MONTHS[local.month - 1]} {local.day}, {local.year}"


def moment(at: datetime) -> str:
    """A date and time in New York, e.g. 'February 1, 2025, 00:00 New York time'."""
    return f"{day(at)}, {at.astimezone(NEW_YORK):%H:%M} New York time"


def label(column: Column) -> str:
    return LABELS.get(column.name, column.name.replace("_", " ").capitalize())


def size(n: int) -> str:
    return f"{n} bytes" if n < 1000 else f"{n / 1000:.1f} kB"


@dataclass(frozen=True)
class Cell:
    text: str  # what the page shows
    sort: str  # what the sorting script compares ("" sorts last)
    numeric: bool


@dataclass(frozen=True)
class HtmlTable:
    spec: TableSpec
    columns: list[Column]
    rows: list[tuple[dict[str, str], list[Cell]]]  # (filter attributes, cells)
    count: int = 0  # the table's rows, also those of a table not shown on the page


def _cell(column: Column, value: Any, row: dict[str, Any] | None = None,
          table: str = "") -> Cell:
    numeric = column.type in ("integer", "number", "interval")
    if column.type == "interval":  # a rate's two bounds in one cell
        rate = column.name.removesuffix("_interval")
        low = format_value(replace(column, name=f"{rate}_ci_low", type="number"),
                           (row or {}).get(f"{rate}_ci_low"))
        high = format_value(replace(column, name=f"{rate}_ci_high", type="number"),
                            (row or {}).get(f"{rate}_ci_high"))
        if low is None or high is None:
            return Cell(_empty(row, table), "", numeric)
        return Cell(f"{low}–{high}", low, numeric)
    text = format_value(column, value)
    if text is None:
        return Cell(_empty(row, table) if column.type == "number" else "n/a", "", numeric)
    shown = f"{int(text):,}" if column.type == "integer" else text
    return Cell(shown, text, numeric)


def _empty(row: dict[str, Any] | None, table: str) -> str:
    """What an empty rate cell says: "n/a" with no case at all, "suppressed" with 1 to 9."""
    if not row or row.get("reliability") != SUPPRESSED or table not in RATES:
        return "n/a"
    return "suppressed" if row.get(RATES[table].denominator) else "n/a"


def display_columns(spec: TableSpec) -> list[Column]:
    """The columns a page shows: as the file has them, less those stated once above the
    tables, with each rate's two interval bounds in one "95% interval" column."""
    out = []
    for c in spec.columns:
        if c.name in PAGE_LEVEL_COLUMNS or c.name.endswith("_ci_high"):
            continue
        if c.name.endswith("_ci_low"):
            rate = c.name.removesuffix("_ci_low")
            out.append(Column(f"{rate}_interval", "interval",
                              f"95% interval of {rate}: the two columns {rate}_ci_low and "
                              f"{rate}_ci_high of the file.", derived=True))
            continue
        out.append(c)
    return out


def html_table(pub: Publication, spec: TableSpec) -> HtmlTable:
    """A table's rows as the page shows them; none for a table not shown on the page
    (``TableSpec.on_page``: its files are linked and its rows counted)."""
    columns = display_columns(spec)
    rows = []
    for row in pub.tables[spec.name] if spec.on_page else ():
        attributes: dict[str, str] = {name: str(row[name]) for name in FILTERED if name in row}
        if row.get("reliability"):
            attributes["reliability"] = str(row["reliability"])
        rows.append((attributes, [_cell(c, row.get(c.name), row, spec.name) for c in columns]))
    return HtmlTable(spec, columns, rows, len(pub.tables[spec.name]))


def _links(month: str, files: dict[str, bytes], prefix: str) -> dict[str, Any]:
    folder = month_dir(month)

    def link(name: str) -> dict[str, Any]:
        path = f"{folder}/{name}"
        return {"href": prefix + path, "name": name, "size": size(len(files[path]))}

    return {
        "tables": [{"spec": spec, "csv": link(f"{spec.name}.csv"),
                    "json": link(f"{spec.name}.json")} for spec in TABLES],
        "datapackage": link("datapackage.json"),
        "revisions": link("revisions.json"),
    }


def _agency_names(pub: Publication) -> dict[str, str]:
    return {row["agency"]: row["agency_name"] for row in pub.tables["requests_received"]
            if row.get("agency_name")}


def _latest(publications: Iterable[Publication]) -> list[Publication]:
    """One publication per month, the newest revision, newest month first."""
    latest: dict[str, Publication] = {}
    for pub in publications:
        if pub.month not in latest or pub.revision > latest[pub.month].revision:
            latest[pub.month] = pub
    return [latest[month] for month in sorted(latest, reverse=True)]


def _page(template: str, root: str, **context: Any) -> bytes:
    html = environment().get_template(template).render(root=root, **context)
    return html.encode("utf-8")


def month_page(pub: Publication, files: dict[str, bytes], newer: Publication | None,
               older: Publication | None) -> bytes:
    names = _agency_names(pub)
    tables = [html_table(pub, spec) for spec in TABLES]
    agencies = sorted({a for t in tables for attrs, _ in t.rows if (a := attrs.get("agency"))})
    types = sorted({c for t in tables for attrs, _ in t.rows if (c := attrs.get("complaint_type"))})
    return _page(
        "month.html", "../", pub=pub, title=month_title(pub.month), tables=tables,
        agencies=[(a, names.get(a, "")) for a in agencies], complaint_types=types,
        as_of=moment(pub.as_of), published=day(pub.published_at),
        history=list(reversed(history(pub))), downloads=_links(pub.month, files, "../"),
        closure_chart=charts.closure_by_agency(pub, names, month_title(pub.month)),
        satisfaction_chart=charts.satisfaction_by_agency(pub, names, month_title(pub.month)),
        legend=charts.legend(),
        label=label,
        newer=newer and (newer.month, month_title(newer.month)),
        older=older and (older.month, month_title(older.month)),
    )


def index_page(publications: list[Publication], files: dict[str, bytes],
               trend: trends.Trends | None = None) -> bytes:
    months = [{"pub": pub, "title": month_title(pub.month),
               "downloads": _links(pub.month, files, "")} for pub in publications]
    if trend is None:
        trend = trends.compute(publications)
    return _page("index.html", "", months=months, catalog=CATALOG, trend=index_trend(trend))


def methodology_page() -> bytes:
    return _page("methodology.html", "", tables=TABLES, label=label,
                 page_level=PAGE_LEVEL_COLUMNS, scores=charts.LEVELS, catalog=CATALOG,
                 trends_table=trends.TRENDS, measures=trends.MEASURES,
                 reasons=DISSATISFACTION_REASONS)


def asset(name: str) -> bytes:
    return resources.files("reports").joinpath("templates", name).read_bytes()


def site_files(publications: list[Publication], *, site_url: str = "",
               contact_email: str = DATA_CONTACT_EMAIL) -> dict[str, bytes]:
    """The whole site, keyed by path relative to its root: pages, assets and data files.

    For a month given in several revisions only the newest is published (the data folder of
    a month holds one revision; revisions.json keeps the history). ``data.json`` catalogues
    every data file (reports.catalog): ``site_url`` is the site's public address, ending in
    "/" (empty: the catalog's links are relative to it), ``contact_email`` its contact point.
    """
    pubs = _latest(publications)
    files: dict[str, bytes] = {}
    for pub in pubs:
        files.update(data_files(pub))
    trend = trends.compute(pubs)
    files.update(trends.data_files(trend))
    # Site-level data sets (files at the root covering every month) are catalogued from here:
    # one SiteEntry for each, after its files are in `files`.
    entries: list[SiteEntry] = [SiteEntry(
        "trends", "Trends: every measure month by month",
        "Closure rate, reopen-request rate (citywide and per complaint type, of the answers "
        "given in the month; and citywide and per agency, of the surveys sent in the month), "
        "share satisfied, mean score and survey response rate, citywide, per agency, per "
        "complaint type and per agency and complaint type, for every published month, in long "
        "format (month, agency, complaint_type, measure, value, ci_low, ci_high, n, "
        "reliability), each value computed from summed counts with its 95% interval.",
        (trends.CSV_PATH, trends.JSON_PATH), ("trends",))]
    files[CATALOG] = catalog_file(pubs, files, site_url=site_url, contact_email=contact_email,
                                  entries=entries)
    for name in ASSETS:
        files[f"assets/{name}"] = asset(name)
    for i, pub in enumerate(pubs):
        newer = pubs[i - 1] if i > 0 else None
        older = pubs[i + 1] if i + 1 < len(pubs) else None
        files[f"{pub.month}/index.html"] = month_page(pub, files, newer, older)
    files.update(trends_pages(trend, files))
    files["methodology.html"] = methodology_page()
    files["index.html"] = index_page(pubs, files, trend)
    return files


#: The measures the site index previews, citywide: the four headline measures, each with its
#: interval, drawn as on the trends pages (the trends page adds the response rate and the
#: reopen-request rate of the surveys sent).
INDEX_TREND = ("closure_rate", "reopen_rate", "share_satisfied", "mean_score")


def index_trend(trend: trends.Trends) -> list[trends.LineChart]:
    """The compact citywide charts of the site index; none before the first month."""
    if not trend.months:
        return []
    return [trends.line_chart(trend, "", name, "citywide", f"trend-{name}", compact=True)
            for name in INDEX_TREND]


def trends_page(trend: trends.Trends, agency: trends.Agency | None,
                files: dict[str, bytes]) -> bytes:
    """trends/index.html (agency None: citywide) or an agency's trends/<slug>.html."""
    code, where = (agency.code, agency.code) if agency else ("", "citywide")
    items = [{"measure": m,
              "chart": trends.line_chart(trend, code, m.name, where, f"{m.name}-chart")}
             for m in trends.measures_for(code)] if trend.months else []
    months = trend.months
    return _page(
        "trends.html", "../", agency=agency, where=where,
        heading=agency.label if agency else "citywide", charts=items, months=months,
        first=month_title(months[0]) if months else "",
        last=month_title(months[-1]) if months else "", agencies=trend.agencies,
        downloads={"csv": size(len(files[trends.CSV_PATH])),
                   "json": size(len(files[trends.JSON_PATH]))})


def trends_pages(trend: trends.Trends, files: dict[str, bytes]) -> dict[str, bytes]:
    """The citywide trends page and one page per agency; ``files`` already holds trends.csv
    and trends.json (``trends.data_files``), whose sizes the pages state."""
    pages = {"trends/index.html": trends_page(trend, None, files)}
    for agency in trend.agencies:
        pages[f"trends/{agency.slug}.html"] = trends_page(trend, agency, files)
    return pages


def _write_order(path: str) -> tuple[int, str]:
    """Data and assets first, month pages next, the site index last: a page never links to a
    file that is not there yet."""
    if path == "index.html":
        return (2, path)
    return (1 if path.endswith(".html") else 0, path)


def write_tree(files: dict[str, bytes], out_dir: Path) -> None:
    """Write the files under out_dir, each one atomically (temp file, then os.replace).

    A reader sees either the old or the new version of a file, never half of one. Files whose
    content is unchanged are left alone. Paths must stay inside out_dir.
    """
    out_dir = Path(out_dir)
    for relative in sorted(files, key=_write_order):
        parts = PurePosixPath(relative)
        if parts.is_absolute() or ".." in parts.parts or not parts.parts:
            raise ValueError(f"refusing to write {relative!r} outside {out_dir}")
        target = out_dir.joinpath(*parts.parts)
        body = files[relative]
        if target.is_file() and target.read_bytes() == body:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp, 0o644)  # mkstemp makes 0600; a web server must be able to read it
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
