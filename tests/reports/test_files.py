"""The month's data files against the published contract (ARCHITECTURE §7).

The column lists below are copied from the contract, not read from reports.model, so a change
to the model that would change the published files fails here. The datapackage.json check is
structural (the Data Package v2 shape, and every declared field type, constraint, size and hash
checked against the CSV it describes); test_catalog.py validates it against the v2 JSON
Schemas, and when the frictionless package is installed the package is also validated by the
reference implementation.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import math
import re
from dataclasses import replace
from datetime import datetime
from decimal import Decimal

import pytest

from reports.files import data_files
from reports.model import BY_NAME
from tests.reports.publications import ACCENTED, CHANGE, SCRIPT, publication

CONTRACT = {
    "requests_received": ["month", "agency", "agency_name", "complaint_type", "received"],
    "closure_rates": ["month", "agency", "complaint_type", "received", "closed", "closure_rate",
                      "as_of", "closure_rate_ci_low", "closure_rate_ci_high", "reliability"],
    "reopen_rates": ["month", "complaint_type", "surveys_answered", "reopen_requested",
                     "reopen_rate", "reopen_rate_ci_low", "reopen_rate_ci_high", "reliability"],
    "satisfaction": ["month", "agency", "complaint_type", "responses", "strongly_agree", "agree",
                     "neutral", "disagree", "strongly_disagree", "share_satisfied",
                     "mean_score", "share_satisfied_ci_low", "share_satisfied_ci_high",
                     "mean_score_ci_low", "mean_score_ci_high", "reliability"],
    "survey_response_rates": ["month", "agency", "surveys_sent", "surveys_answered",
                              "response_rate", "response_rate_ci_low", "response_rate_ci_high",
                              "reliability", "reopen_requested"],
    # NYC's 311 Resolution Satisfaction Survey (Open Data 5ijn-vbdv), its headers as NYC writes them
    "survey_responses": ["Unique Key", "Agency Acronym", "Agency Name", "Complaint Type",
                         "Descriptor", "Borough", "Resolution Description", "Survey Year",
                         "Survey Month", "Satisfaction Response", "Dissatisfaction Reason"],
}
RATES = {"closure_rate", "reopen_rate", "share_satisfied", "response_rate"}
RATES |= {f"{rate}_ci_{bound}" for rate in RATES for bound in ("low", "high")}
DIR = "data/2025-01"


def read_csv(files: dict[str, bytes], table: str, folder: str = DIR) -> list[list[str]]:
    return list(csv.reader(io.StringIO(files[f"{folder}/{table}.csv"].decode("utf-8"),
                                       newline="")))


def cells(files: dict[str, bytes], table: str) -> list[dict[str, str]]:
    header, *rows = read_csv(files, table)
    return [dict(zip(header, row, strict=True)) for row in rows]


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return data_files(publication())


def test_the_month_folder_holds_exactly_the_contract_files(files):
    expected = {f"{DIR}/{t}.{ext}" for t in CONTRACT for ext in ("csv", "json")}
    assert set(files) == expected | {f"{DIR}/datapackage.json", f"{DIR}/revisions.json"}


@pytest.mark.parametrize("table", CONTRACT)
def test_csv_header_is_the_contract_and_lines_end_with_newline(files, table):
    body = files[f"{DIR}/{table}.csv"]
    assert body.decode("utf-8").split("\n")[0] == ",".join(CONTRACT[table])
    assert b"\r" not in body and body.endswith(b"\n")
    assert not body.startswith(b"\xef\xbb\xbf")  # no byte-order mark
    assert all(len(row) == len(CONTRACT[table]) for row in read_csv(files, table))


def test_numbers_are_formatted_as_the_contract_says(files):
    closure = {r["complaint_type"]: r for r in cells(files, "closure_rates")}
    assert closure["Street Condition"]["closure_rate"] == "0.7500"
    assert closure["HEAT/HOT WATER"]["closure_rate"] == "0.9397"  # 5000/5321 = 0.93967...
    assert closure[SCRIPT]["closure_rate"] == ""  # 3 received: suppressed, counts stay
    assert (closure[SCRIPT]["received"], closure[SCRIPT]["reliability"]) == ("3", "suppressed")
    assert closure["HEAT/HOT WATER"]["received"] == "5321"  # no thousands separator
    assert {r["as_of"] for r in closure.values()} == {"2025-02-01T00:00:00-05:00"}

    reopen = {r["complaint_type"]: r for r in cells(files, "reopen_rates")}
    assert reopen["Street Condition"]["reopen_rate"] == ""  # zero denominator: empty, not 0
    assert reopen[ACCENTED]["reopen_rate"] == ""  # 7 answered: suppressed
    assert reopen["HEAT/HOT WATER"]["reopen_rate"] == "0.1500"

    satisfaction = {r["agency"]: r for r in cells(files, "satisfaction")}
    assert satisfaction["HPD"]["mean_score"] == "73.13"  # half away from zero
    assert satisfaction["DOT"]["mean_score"] == "41.25"
    assert satisfaction["DOT"]["share_satisfied"] == "0.3000"
    assert satisfaction["NYPD"]["share_satisfied"] == satisfaction["NYPD"]["mean_score"] == ""


def test_as_of_carries_the_summer_offset_too():
    files = data_files(publication("2025-06", revision=1))
    rows = cells({k.replace("2025-06", "2025-01"): v for k, v in files.items()}, "closure_rates")
    assert {r["as_of"] for r in rows} == {"2025-07-01T00:00:00-04:00"}


def test_rounding_is_half_up_and_decimals_from_postgresql_format_alike():
    pub = publication(revision=1)
    rows = copy.deepcopy(pub.tables)
    rows["satisfaction"][0].update(share_satisfied=0.12345, mean_score=Decimal("62.505"))
    rows["closure_rates"][0].update(closure_rate=Decimal("0.75"), received=Decimal(1200))
    files = data_files(replace(pub, tables=rows))
    assert cells(files, "satisfaction")[0]["share_satisfied"] == "0.1235"
    assert cells(files, "satisfaction")[0]["mean_score"] == "62.51"
    assert cells(files, "closure_rates")[0]["closure_rate"] == "0.7500"
    assert cells(files, "closure_rates")[0]["received"] == "1200"


def test_text_is_utf8_and_published_verbatim(files):
    types = {r["complaint_type"] for r in cells(files, "requests_received")}
    assert {ACCENTED, SCRIPT} <= types  # a data file is not HTML: nothing is escaped
    assert ACCENTED.encode("utf-8") in files[f"{DIR}/requests_received.csv"]


@pytest.mark.parametrize("table", CONTRACT)
def test_json_holds_the_csv_rows_as_typed_values(files, table):
    text = files[f"{DIR}/{table}.json"].decode("utf-8")
    as_text = json.loads(text, parse_float=str, parse_int=str)
    as_csv = [{k: (None if v == "" else v) for k, v in row.items()} for row in cells(files, table)]
    assert as_text == as_csv
    assert all(list(row) == CONTRACT[table] for row in as_text)  # keys in column order

    typed = json.loads(text)
    spec = BY_NAME[table]
    for row in typed:
        for column in spec.columns:
            value = row[column.name]
            if column.type == "integer":
                assert type(value) is int
            elif column.type == "number":
                assert value is None or type(value) is float
            else:  # NYC's layout has empty text cells (a request without a descriptor)
                assert isinstance(value, str) or (value is None and column.field)


def test_json_numbers_keep_their_fixed_decimals(files):
    assert '"closure_rate": 0.7500' in files[f"{DIR}/closure_rates.json"].decode()
    assert '"reopen_rate": null' in files[f"{DIR}/reopen_rates.json"].decode()
    assert '"mean_score": 73.13' in files[f"{DIR}/satisfaction.json"].decode()


def test_an_empty_table_is_a_header_and_an_empty_array():
    pub = publication(revision=1)
    files = data_files(replace(pub, tables={**pub.tables, "reopen_rates": []}))
    assert files[f"{DIR}/reopen_rates.csv"] == (",".join(CONTRACT["reopen_rates"]) + "\n").encode()
    assert files[f"{DIR}/reopen_rates.json"] == b"[]\n"


def _check_value(field: dict, text: str) -> None:
    """One CSV cell against its Table Schema field (types and constraints)."""
    constraints = field.get("constraints", {})
    if text == "":
        assert not constraints.get("required"), field["name"]
        return
    if field["type"] == "integer":
        value: float = int(text)
    elif field["type"] == "number":
        value = float(text)
        assert math.isfinite(value)
    elif field["type"] == "datetime":
        assert datetime.fromisoformat(text).utcoffset() is not None
        return
    else:
        assert field["type"] == "string"
        if "pattern" in constraints:
            assert re.fullmatch(constraints["pattern"], text)
        return
    assert constraints.get("minimum", -math.inf) <= value <= constraints.get("maximum", math.inf)


def test_datapackage_describes_every_csv_in_the_data_package_v2_shape(files):
    package = json.loads(files[f"{DIR}/datapackage.json"])
    assert package["$schema"] == "https://datapackage.org/profiles/2.0/datapackage.json"
    assert "profile" not in package
    assert package["name"] == "nyc311-2025-01"
    assert re.fullmatch(r"[a-z0-9._/-]+", package["name"])
    assert package["title"] and package["description"]
    assert datetime.fromisoformat(package["created"]).utcoffset() is not None
    assert [r["name"] for r in package["resources"]] == list(CONTRACT)

    for resource in package["resources"]:
        table = resource["name"]
        assert re.fullmatch(r"[a-z0-9._/-]+", table)
        assert resource["path"] == f"{table}.csv"  # relative to datapackage.json
        assert (resource["type"], resource["format"], resource["mediatype"],
                resource["encoding"]) == ("table", "csv", "text/csv", "utf-8")
        assert "profile" not in resource
        body = files[f"{DIR}/{resource['path']}"]
        assert resource["bytes"] == len(body)
        assert resource["hash"] == "sha256:" + hashlib.sha256(body).hexdigest()
        assert resource["dialect"]["lineTerminator"] == "\n" and resource["dialect"]["header"]

        fields = resource["schema"]["fields"]
        assert [f["name"] for f in fields] == CONTRACT[table]
        spec = BY_NAME[table]
        assert [(f["type"], f["description"]) for f in fields] == [
            (c.type, c.description) for c in spec.columns]
        assert all(f["type"] in {"string", "integer", "number", "datetime"} for f in fields)
        assert all(f["constraints"]["maximum"] == 1 for f in fields if f["name"] in RATES)

        key = resource["schema"]["primaryKey"]
        assert set(key) <= set(CONTRACT[table])
        assert ("month" in key) == ("month" in CONTRACT[table])  # NYC's layout has none
        rows = cells(files, table)
        assert len({tuple(r[k] for k in key) for r in rows}) == len(rows)
        for row in rows:
            for field in fields:
                _check_value(field, row[field["name"]])


#: Each rate or score, and the cases whose number decides its suppression (below 10).
SUPPRESSED_BELOW_10 = {"closure_rate": "requests were received",
                       "reopen_rate": "surveys were answered",
                       "share_satisfied": "there are fewer than 10 responses",
                       "mean_score": "there are fewer than 10 responses",
                       "response_rate": "surveys were sent"}


def test_every_rate_and_score_says_when_it_is_suppressed(files):
    """The same words for every rate and the mean score: empty below 10 cases of its
    denominator, see reliability."""
    package = json.loads(files[f"{DIR}/datapackage.json"])
    described = {f["name"]: f["description"] for r in package["resources"]
                 for f in r["schema"]["fields"] if f["name"] in SUPPRESSED_BELOW_10}
    assert set(described) == set(SUPPRESSED_BELOW_10)
    for name, cases in SUPPRESSED_BELOW_10.items():
        words = (f"empty when {cases} (see reliability)." if cases.startswith("there")
                 else f"empty when fewer than 10 {cases} (see reliability).")
        assert described[name].endswith(words), (name, described[name])


def test_survey_response_rates_count_the_reopen_requests_after_the_old_columns(files):
    header, *rows = read_csv(files, "survey_response_rates")
    assert header[:8] == CONTRACT["survey_response_rates"][:8]  # the columns of before, in order
    assert header[8] == "reopen_requested"
    assert [(r[1], r[3], r[8]) for r in rows] == [("DOT", "20", "3"), ("HPD", "5", "1"),
                                                  ("NYPD", "0", "0")]
    package = json.loads(files[f"{DIR}/datapackage.json"])
    resource = next(r for r in package["resources"] if r["name"] == "survey_response_rates")
    field = resource["schema"]["fields"][8]
    assert field["constraints"] == {"minimum": 0}  # optional: empty in an older revision
    assert "reopen_rates" in field["description"]
    assert "published before this column existed" in field["description"]


def test_datapackage_validates_with_the_frictionless_reference_implementation(files, tmp_path):
    frictionless = pytest.importorskip("frictionless")
    for path, body in files.items():
        (tmp_path / path.rsplit("/", 1)[1]).write_bytes(body)
    report = frictionless.validate(str(tmp_path / "datapackage.json"))
    assert report.valid, report.flatten(["rowNumber", "fieldNumber", "type", "message"])
    assert [task.stats["rows"] for task in report.tasks] == [4, 4, 3, 3, 3, 3]


def test_revisions_lists_every_revision_with_its_changes(files):
    revisions = json.loads(files[f"{DIR}/revisions.json"])
    assert revisions["month"] == "2025-01" and revisions["revision"] == 2
    assert [(r["revision"], r["changes"]) for r in revisions["revisions"]] == [(1, []),
                                                                               (2, [CHANGE])]
    assert revisions["published_at"] == revisions["revisions"][-1]["published_at"]
    assert revisions["revisions"][0]["published_at"] == "2025-02-02T14:00:00+00:00"


def test_history_that_already_holds_the_current_revision_is_not_doubled(files):
    pub = publication()
    with_current = replace(pub, history=[*pub.history, (2, pub.published_at, list(pub.changes))])
    assert data_files(with_current) == files


def test_same_publication_same_bytes_whatever_the_dict_order(files):
    pub = publication()
    shuffled = {name: [dict(reversed(list(row.items()))) for row in rows]
                for name, rows in reversed(list(pub.tables.items()))}
    assert data_files(publication()) == files
    assert data_files(replace(pub, tables=shuffled)) == files


@pytest.mark.parametrize(("table", "change", "error"), [
    ("satisfaction", {"feedback": "call me at 555-0100"}, ValueError),  # unknown column
    ("closure_rates", {"as_of": datetime(2025, 2, 1)}, TypeError),  # no UTC offset
    ("closure_rates", {"closed": 3.0}, TypeError),
    ("closure_rates", {"closure_rate": "0.75"}, TypeError),
    ("closure_rates", {"closure_rate": float("nan")}, ValueError),
    ("closure_rates", {"month": "2025-02"}, ValueError),
])
def test_rows_that_break_the_contract_are_refused(table, change, error):
    pub = publication()
    tables = copy.deepcopy(pub.tables)
    tables[table][0].update(change)
    with pytest.raises(error):
        data_files(replace(pub, tables=tables))


def test_missing_columns_duplicate_groups_and_missing_tables_are_refused():
    pub = publication()
    tables = copy.deepcopy(pub.tables)
    del tables["requests_received"][0]["agency_name"]
    with pytest.raises(ValueError, match="agency_name"):
        data_files(replace(pub, tables=tables))

    tables = copy.deepcopy(pub.tables)
    tables["reopen_rates"].append(dict(tables["reopen_rates"][0]))
    with pytest.raises(ValueError, match="second row"):
        data_files(replace(pub, tables=tables))

    with pytest.raises(ValueError, match="satisfaction"):
        data_files(replace(pub, tables={k: v for k, v in pub.tables.items()
                                        if k != "satisfaction"}))
