"""The open-data files of one month: CSV and JSON for each table, datapackage.json, revisions.json.

These files are the legal publication (Local Law 13 of 2025, Admin Code §23-306) and the thing
analysts script against, so they are rendered strictly from the contract in reports.model: the
header is exactly the TableSpec columns in order, a row with a missing or unknown column is an
error rather than a silently different file, and the same Publication always gives the same
bytes (no clock, no dict-order or locale dependence), so a re-run that changes nothing uploads
nothing and a revision's diff shows only what changed.

Numbers are written the way the contract states them: rates with exactly 4 decimals, mean_score
with 2, empty (CSV) or null (JSON) for a rate with a zero denominator. Rounding is half away from
zero on the value's shortest decimal form, like PostgreSQL's round(numeric, n), so the files
agree with the published schema in PostgreSQL.

CSV files are opened in spreadsheets, which take a cell starting with ``=``, ``+``, ``-``, ``@``,
a tab or a carriage return for a formula (``=HYPERLINK(...)`` in a complaint type would become a
live link, worse with DDE). Following OWASP's guidance on CSV injection, such a cell of a text
column (agency_name, complaint_type, ...) is written with a single quote in front, which
spreadsheets read as "this is text" (:func:`spreadsheet_safe`). Number, integer and datetime
columns are never touched, nor is a text cell that is a plain number (``-12``): neither can be a
formula. The JSON files keep the text exactly as it is: JSON is not opened as a spreadsheet, and
a program reading it must get the real value.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from reports.measures import RELIABILITY
from reports.model import (
    DISSATISFACTION_REASONS,
    SATISFACTION_RESPONSES,
    TABLES,
    UNIQUE_KEY_DIGITS,
    Column,
    Publication,
    TableSpec,
)

#: Decimals of every "number" column; a number column not listed here is a rate (4 decimals).
SCORES = ("mean_score", "mean_score_ci_low", "mean_score_ci_high")
DECIMALS: dict[str, int] = dict.fromkeys(SCORES, 2)
RATE_DECIMALS = 4
#: The bounds each number column is documented with in datapackage.json.
NUMBER_RANGE: dict[str, tuple[int, int]] = dict.fromkeys(SCORES, (0, 100))

DATA_DIR = "data"
#: What datapackage.json says a column of NYC's survey layout (survey_responses) can hold.
NYC_LAYOUT_CONSTRAINTS: dict[str, dict[str, Any]] = {
    "unique_key": {"pattern": f"[0-9a-f]{{{UNIQUE_KEY_DIGITS}}}"},
    "survey_month": {"minimum": 1, "maximum": 12},
    "satisfaction_response": {"enum": [text for _, text in SATISFACTION_RESPONSES]},
    "dissatisfaction_reason": {"enum": [text for _, text in DISSATISFACTION_REASONS]},
}

#: The keywords of every data package and every data set of the catalog (data.json).
KEYWORDS = ("NYC", "311", "service requests", "customer satisfaction")
#: The terms the tables are published under: the NYC Open Data Terms of Use, like the City's
#: open data (datapackage.json's licenses, data.json's license).
LICENSE = "https://opendata.cityofnewyork.us/overview/#termsofuse"
LICENSE_TITLE = "NYC Open Data Terms of Use"
DATAPACKAGE_PROFILE = "https://datapackage.org/profiles/2.0/datapackage.json"

#: First characters that make a spreadsheet read a cell as a formula (OWASP, CSV Injection).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def month_dir(month: str) -> str:
    """The folder of a month's files, relative to the site root."""
    return f"{DATA_DIR}/{month}"


def decimals(column: Column) -> int:
    return DECIMALS.get(column.name, RATE_DECIMALS)


def _fixed(value: Any, places: int, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise TypeError(f"{where}: expected a number, got {value!r}")
    exact = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not exact.is_finite():
        raise ValueError(f"{where}: {value!r} is not a finite number")
    rounded = exact.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return f"{rounded + 0:.{places}f}"  # + 0 turns -0.0000 into 0.0000


def format_value(column: Column, value: Any, where: str = "") -> str | None:
    """The text of one cell as both CSV and JSON carry it; None means empty (CSV) / null (JSON).

    Strings stay strings, integers are plain digits, numbers have their fixed decimals, and
    datetimes are ISO 8601 with their UTC offset (a naive datetime is refused: as_of without an
    offset would be ambiguous around daylight-saving changes).
    """
    where = where or column.name
    if value is None:
        return None
    if column.type == "string":
        if not isinstance(value, str):
            raise TypeError(f"{where}: expected a string, got {value!r}")
        return value
    if column.type == "integer":
        if isinstance(value, Decimal) and value == value.to_integral_value():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{where}: expected an integer, got {value!r}")
        return str(value)
    if column.type == "number":
        return _fixed(value, decimals(column), where)
    if column.type == "datetime":
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if not isinstance(value, datetime) or value.utcoffset() is None:
            raise TypeError(f"{where}: expected a datetime with a UTC offset, got {value!r}")
        return value.isoformat()
    raise ValueError(f"{where}: unknown column type {column.type!r}")


def table_cells(pub: Publication, spec: TableSpec) -> list[list[str | None]]:
    """The rows of one table as formatted cells in column order, after checking them."""
    if spec.name not in pub.tables:
        raise ValueError(f"{pub.month} r{pub.revision}: table {spec.name} is missing")
    expected = set(spec.column_names)
    keys: set[tuple[Any, ...]] = set()
    out: list[list[str | None]] = []
    for i, row in enumerate(pub.tables[spec.name]):
        where = f"{spec.name} row {i}"
        if set(row) != expected:
            missing, unknown = sorted(expected - set(row)), sorted(set(row) - expected)
            raise ValueError(f"{where}: missing columns {missing}, unknown columns {unknown}")
        if spec.has_month_column and row["month"] != pub.month:
            raise ValueError(f"{where}: month {row['month']!r} in the {pub.month} publication")
        key = tuple(row[k] for k in spec.key)
        if key in keys:
            raise ValueError(f"{where}: a second row for {dict(zip(spec.key, key, strict=True))}")
        keys.add(key)
        out.append([format_value(c, row[c.name], f"{where}.{c.name}") for c in spec.columns])
    return out


def spreadsheet_safe(column: Column, text: str) -> str:
    """A text cell a spreadsheet would evaluate as a formula, with a single quote in front.

    Only ``string`` columns: numbers, integers and datetimes are written as they are, and a
    text cell that is a plain number (a negative one included) is no formula either.
    """
    if (column.type == "string" and text.startswith(FORMULA_TRIGGERS)
            and not _PLAIN_NUMBER.fullmatch(text)):
        return "'" + text
    return text


def _csv_field(text: str) -> str:
    """RFC 4180 quoting: a field with a comma, a quote or a line break goes in double quotes.

    Python's csv writer (3.11) leaves a lone carriage return unquoted when lines end with
    ``\n``, which splits the row for every reader; this quotes it like any line break.
    """
    if any(ch in text for ch in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def table_csv(spec: TableSpec, cells: list[list[str | None]]) -> bytes:
    """The CSV file of one table: the contract's header, then one line a row; text cells that
    would be formulas in a spreadsheet are neutralised (:func:`spreadsheet_safe`)."""
    lines = [",".join(_csv_field(name) for name in spec.column_names)]
    lines += [",".join("" if v is None else _csv_field(spreadsheet_safe(c, v))
                       for c, v in zip(spec.columns, row, strict=True)) for row in cells]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _json_literal(column: Column, text: str | None) -> str:
    if text is None:
        return "null"
    if column.type in ("integer", "number"):
        return text  # already a JSON number: digits, an optional sign and fixed decimals
    return json.dumps(text, ensure_ascii=False)


def table_json(spec: TableSpec, cells: list[list[str | None]]) -> bytes:
    """A JSON array of row objects, one row a line, keys in contract column order.

    Written by hand rather than by json.dumps so numbers keep their fixed decimals (0.5000, not
    0.5): the JSON and CSV files then carry the same text for every value.
    """
    if not cells:
        return b"[]\n"
    lines = []
    for row in cells:
        members = ", ".join(f"{json.dumps(c.name)}: {_json_literal(c, v)}"
                            for c, v in zip(spec.columns, row, strict=True))
        lines.append("  {" + members + "}")
    return ("[\n" + ",\n".join(lines) + "\n]\n").encode("utf-8")


def _dump(document: Any) -> bytes:
    return (json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode()


def _stamp(at: datetime) -> str | None:
    return format_value(Column("timestamp", "datetime", ""), at)


def _field(spec: TableSpec, column: Column) -> dict[str, Any]:
    field: dict[str, Any] = {"name": column.name, "type": column.type,
                             "description": column.description}
    constraints: dict[str, Any] = {}
    if column.name in spec.key or column.name == "month":
        constraints["required"] = True
    if column.name == "month":
        constraints["pattern"] = r"\d{4}-\d{2}"
    if column.type == "integer":
        constraints["minimum"] = 0
    if column.type == "number":
        low, high = NUMBER_RANGE.get(column.name, (0, 1))
        constraints.update(minimum=low, maximum=high)
    if column.name == "reliability":
        constraints["enum"] = list(RELIABILITY)
    if column.field:
        constraints.update(NYC_LAYOUT_CONSTRAINTS.get(column.field, {}))
    if column.type == "datetime":
        field["format"] = "any"  # ISO 8601 with a UTC offset; "default" would demand UTC "Z"
    if constraints:
        field["constraints"] = constraints
    return field


def _resource(spec: TableSpec, body: bytes) -> dict[str, Any]:
    return {
        "type": "table",
        "name": spec.name,
        "path": f"{spec.name}.csv",
        "title": spec.title,
        "description": (f"{spec.description} The same rows are in {spec.name}.json. A text "
                        "cell that a spreadsheet would run as a formula (it starts with =, +, "
                        "-, @, a tab or a carriage return) has a single quote in front of it in "
                        "this file only."),
        "format": "csv",
        "mediatype": "text/csv",
        "encoding": "utf-8",
        "bytes": len(body),
        "hash": "sha256:" + hashlib.sha256(body).hexdigest(),
        "dialect": {"delimiter": ",", "doubleQuote": True, "header": True,
                    "lineTerminator": "\n", "quoteChar": '"'},
        "schema": {"fields": [_field(spec, c) for c in spec.columns],
                   "primaryKey": [*(["month"] if spec.has_month_column else []), *spec.key],
                   "missingValues": [""]},
    }


def history(pub: Publication) -> list[tuple[int, datetime, list[str]]]:
    """Every revision up to this one, oldest first, this one included exactly once."""
    entries = {rev: (rev, at, list(changes)) for rev, at, changes in pub.history}
    entries[pub.revision] = (pub.revision, pub.published_at, list(pub.changes))
    return [entries[rev] for rev in sorted(entries) if rev <= pub.revision]


def datapackage(pub: Publication, csvs: dict[str, bytes]) -> dict[str, Any]:
    """The Data Package (v2) describing the month's CSV files, one tabular resource a table.

    Data Package v2 names the profile a descriptor conforms to with ``$schema`` (v1's
    ``profile: tabular-data-package`` is gone) and marks a tabular resource with ``type:
    table``; the resources, dialects and schemas inside the package take no ``$schema`` of
    their own (the spec gives one to a root-level descriptor only). Only the CSV files are
    resources: the JSON files hold the very same rows, and listing them too would make every
    Data Package tool load each table twice.
    """
    return {
        "$schema": DATAPACKAGE_PROFILE,
        "name": f"nyc311-{pub.month}",
        "title": f"NYC 311 service metrics, {pub.month}",
        "description": (
            f"Monthly 311 service metrics for {pub.month} (New York time) published under Local "
            "Law 13 of 2025 (Administrative Code §23-306): requests received, closure rates, "
            "reopen-request rates and satisfaction with the agency's response, with each rate's "
            "95% interval and a reliability flag, survey response rates, and each answered "
            "survey in the columns of NYC's 311 Resolution Satisfaction Survey dataset "
            "(survey_responses). Each table is also published as a JSON array of row objects "
            "beside its CSV file; revisions.json lists the revisions of this month and what "
            "each changed."
        ),
        # Each revision may change any number, which is a breaking change for a consumer.
        "version": f"{pub.revision}.0.0",
        "created": _stamp(pub.published_at),
        "keywords": list(KEYWORDS),
        "revision": pub.revision,
        "as_of": _stamp(pub.as_of),
        "licenses": [{"path": LICENSE, "title": LICENSE_TITLE}],
        "resources": [_resource(spec, csvs[spec.name]) for spec in TABLES],
    }


def revisions(pub: Publication) -> dict[str, Any]:
    """revisions.json: this month's revisions, oldest first, with what each one changed."""
    return {
        "month": pub.month,
        "revision": pub.revision,
        "as_of": _stamp(pub.as_of),
        "published_at": _stamp(pub.published_at),
        "revisions": [{"revision": rev, "published_at": _stamp(at), "changes": changes}
                      for rev, at, changes in history(pub)],
    }


def data_files(pub: Publication) -> dict[str, bytes]:
    """Every data file of one publication, keyed by path relative to the site root."""
    unknown = sorted(set(pub.tables) - {spec.name for spec in TABLES})
    if unknown:
        raise ValueError(f"{pub.month} r{pub.revision}: unknown tables {unknown}")
    folder = month_dir(pub.month)
    files: dict[str, bytes] = {}
    csvs: dict[str, bytes] = {}
    for spec in TABLES:
        cells = table_cells(pub, spec)
        csvs[spec.name] = files[f"{folder}/{spec.name}.csv"] = table_csv(spec, cells)
        files[f"{folder}/{spec.name}.json"] = table_json(spec, cells)
    files[f"{folder}/datapackage.json"] = _dump(datapackage(pub, csvs))
    files[f"{folder}/revisions.json"] = _dump(revisions(pub))
    return files
