"""The NYC Open Data CSV importer on real exports and on hand-made broken files, without Kafka.

Counts that the importer must reproduce are computed here with the plain csv module, so a
mapping bug cannot hide behind its own arithmetic.
"""

from __future__ import annotations

import csv
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from producers.nyc_csv import (
    EVENT_NAMESPACE,
    ImportSummary,
    NycCsvFormatError,
    RowResult,
    closed_event_id,
    created_event_id,
    read_nyc_csv,
)
from producers.nyc_import import import_nyc_csv
from producers.nyc_time import NEW_YORK, parse_nyc_time
from schemas.serde import Serde

# tests/producers/<this file> -> parents[2] is the repository; shared/ sits beside it.
DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "nyc311"
HEADER = ["Unique Key", "Created Date", "Closed Date", "Agency", "Agency Name", "Complaint Type",
          "Descriptor", "Incident Zip", "Status", "Resolution Description",
          "Resolution Action Updated Date", "Borough", "Open Data Channel Type"]


def _data_file(name: str) -> Path:
    path = DATA_DIR / name
    if not path.is_file():
        pytest.skip(f"NYC 311 sample data {name} not found in {DATA_DIR} "
                    "(expected in shared/data/nyc311 beside the repository)")
    return path


@pytest.fixture(scope="module")
def real_csv() -> Path:
    return _data_file("311_Service_Requests.csv")


@pytest.fixture(scope="module")
def sample_csv() -> Path:
    return _data_file("311_sample.csv")


@pytest.fixture(scope="module")
def real_results(real_csv: Path) -> list[RowResult]:
    return list(read_nyc_csv(real_csv))


def _summary(results: list[RowResult], source: str = "test") -> ImportSummary:
    summary = ImportSummary(source)
    for result in results:
        summary.add(result)
    return summary


def _plain_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def _expected_closures(path: Path) -> int:
    return sum(1 for r in _plain_rows(path) if r["Status"].strip().lower() == "closed"
               and (r["Closed Date"].strip() or r["Resolution Action Updated Date"].strip()))


def _write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HEADER)
        writer.writeheader()
        for row in rows:
            writer.writerow({name: row.get(name, "") for name in HEADER})
    return path


def _row(key: str, **fields: str) -> dict[str, str]:
    base = {"Unique Key": key, "Created Date": "06/26/2018 10:58:54 AM", "Agency": "NYPD",
            "Agency Name": "New York City Police Department", "Complaint Type": "Noise",
            "Status": "Open", "Open Data Channel Type": "ONLINE", "Borough": "QUEENS"}
    return {**base, **{name.replace("_", " "): value for name, value in fields.items()}}


# --- the real 1,000-row export -------------------------------------------------------------


def test_real_file_accounts_for_every_row(real_csv: Path, real_results: list[RowResult]) -> None:
    summary = _summary(real_results)
    assert summary.rows_read == len(_plain_rows(real_csv)) == 1000
    assert summary.rows_read == summary.rows_imported + summary.rows_rejected
    assert summary.balanced
    assert summary.rows_rejected == 0
    assert sum(r.created is not None for r in real_results) == summary.rows_imported


def test_real_file_closures_match_an_independent_count(
        real_csv: Path, real_results: list[RowResult]) -> None:
    closures = [r.closed for r in real_results if r.closed is not None]
    assert len(closures) == _expected_closures(real_csv) == 969
    assert _summary(real_results).closures_imported == 969
    assert {c["status"] for c in closures} == {"CLOSED"}


def test_real_file_spot_check_39573567(real_results: list[RowResult]) -> None:
    result = next(r for r in real_results if r.request_id == "39573567")
    assert result.created is not None and result.closed is not None
    created, closed = result.created, result.closed
    assert created["occurred_at"] == datetime(2018, 6, 26, 14, 58, 54, tzinfo=UTC)
    assert closed["occurred_at"] == datetime(2018, 6, 26, 16, 50, 1, tzinfo=UTC)
    assert (created["agency"], created["channel"]) == ("NYPD", "PHONE")
    assert created["agency_name"] == "New York City Police Department"
    assert created["language"] is None and created["contact"] is None
    assert created["event_id"] == created_event_id("39573567")
    assert closed["event_id"] == closed_event_id("39573567", closed["occurred_at"])
    assert result.line == 2


def test_real_file_anomalies(real_csv: Path, real_results: list[RowResult]) -> None:
    anomalies = _summary(real_results).anomalies
    expected = sum(1 for r in _plain_rows(real_csv)
                   if r["Closed Date"].strip() and r["Status"].strip().lower() != "closed")
    assert anomalies.counts["Closed Date on a row whose status is not Closed"] == expected == 17
    assert anomalies.counts["Closed Date before Created Date"] == 10
    assert len(anomalies.examples["Closed Date before Created Date"]) == 5


def test_every_record_fits_the_avro_schemas(real_results: list[RowResult]) -> None:
    serde = Serde()
    for result in real_results:
        for name, record in (("request_created", result.created),
                             ("request_closed", result.closed)):
            if record is not None:
                decoded = serde.decode(name, serde.encode(name, record))
                assert {**decoded, "event_id": str(decoded["event_id"])} == record


def test_reimport_gives_identical_event_ids(
        real_csv: Path, real_results: list[RowResult]) -> None:
    again = list(read_nyc_csv(real_csv))
    assert again == real_results
    ids = [rec["event_id"] for r in again for rec in (r.created, r.closed) if rec is not None]
    assert len(ids) == len(set(ids)) == 1969


def test_render_names_every_count(real_results: list[RowResult]) -> None:
    text = _summary(real_results, "311_Service_Requests.csv").render()
    assert "311_Service_Requests.csv" in text
    assert "1,000" in text and "969" in text
    assert "Closed Date on a row whose status is not Closed" in text


# --- the spreadsheet-saved export (BOM, M/D/YY H:MM) --------------------------------------


def test_sample_file_parses(sample_csv: Path) -> None:
    results = list(read_nyc_csv(sample_csv))
    summary = _summary(results)
    assert summary.rows_read == len(_plain_rows(sample_csv)) == 6765
    assert summary.balanced and summary.rows_rejected == 0
    assert summary.closures_imported == _expected_closures(sample_csv) == 2326
    used_rau = "status Closed without Closed Date, used Resolution Action Updated Date"
    assert summary.anomalies.counts[used_rau] == 2
    first = results[0].created
    assert first is not None and first["request_id"] == "40611598"  # no BOM in the key
    assert first["occurred_at"] == datetime(2018, 10, 21, 4, 0, tzinfo=UTC)  # 10/21/18 0:00 EDT


# --- malformed input ----------------------------------------------------------------------


def test_malformed_rows_are_rejected_with_reasons(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "bad.csv", [
        _row("1", Status="Closed", Closed_Date="06/26/2018 11:00:00 AM"),
        _row(""),
        _row("2", Created_Date="06/31/2018 10:00:00 AM"),
        _row("3", Created_Date="yesterday"),
        _row("4", Status="Frobnicated", Closed_Date="06/27/2018 09:00:00 AM"),
        _row("1"),
        _row("5", Agency=""),
        _row("6", Complaint_Type=""),
        _row("7", Status="CLOSED"),
        _row("8", Status="closed", Closed_Date="soon"),
        _row("9", Created_Date=""),
    ])
    results = list(read_nyc_csv(path))
    summary = _summary(results)
    assert summary.rows_read == 11 and summary.balanced
    assert summary.rows_imported == 4  # keys 1, 4, 7, 8
    assert dict(summary.rejected_rows.counts) == {
        "missing Unique Key": 1, "unparseable Created Date": 2,
        "duplicate Unique Key within the file": 1, "missing Agency": 1,
        "missing Complaint Type": 1, "missing Created Date": 1}
    assert summary.rejected_rows.examples["duplicate Unique Key within the file"] == [7]
    assert dict(summary.rejected_closures.counts) == {
        "status Closed without Closed Date or Resolution Action Updated Date": 1,
        "unparseable Closed Date": 1}
    assert summary.closures_imported == 1
    assert summary.anomalies.counts["unrecognised Status value"] == 1
    assert summary.anomalies.counts["Closed Date on a row whose status is not Closed"] == 1


def test_row_with_wrong_field_count_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_text(",".join(HEADER) + "\n10,06/26/2018 10:58:54 AM,,NYPD\n\n", encoding="utf-8")
    summary = _summary(list(read_nyc_csv(path)))
    assert summary.rows_read == 1 and summary.rows_rejected == 1
    assert next(iter(summary.rejected_rows.counts)).startswith("wrong number of fields")


def test_optional_fields_and_channels(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "opt.csv", [
        _row("1", Borough="Unspecified", Open_Data_Channel_Type="", Agency_Name=""),
        _row("2", Open_Data_Channel_Type="pigeon", Descriptor="Loud Music/Party",
             Incident_Zip="11201"),
    ])
    first, second = (r.created for r in read_nyc_csv(path))
    assert first is not None and second is not None
    assert (first["borough"], first["channel"], first["agency_name"]) == (None, "UNKNOWN", "NYPD")
    assert (first["descriptor"], first["incident_zip"]) == (None, None)
    assert (second["channel"], second["descriptor"], second["incident_zip"]) == (
        "UNKNOWN", "Loud Music/Party", "11201")


def test_not_a_311_export(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("a,b,c\n1,2,3\n", encoding="utf-8")
    with pytest.raises(NycCsvFormatError, match="Unique Key"):
        list(read_nyc_csv(path))


# --- time parsing and DST -----------------------------------------------------------------


@pytest.mark.parametrize(("text", "utc"), [
    ("06/26/2018 10:58:54 AM", datetime(2018, 6, 26, 14, 58, 54, tzinfo=UTC)),
    ("06/26/2018 12:00:00 AM", datetime(2018, 6, 26, 4, 0, tzinfo=UTC)),
    ("06/26/2018 12:30:00 PM", datetime(2018, 6, 26, 16, 30, tzinfo=UTC)),
    ("1/2/19 13:05", datetime(2019, 1, 2, 18, 5, tzinfo=UTC)),
    ("2018-06-26T10:58:54.000", datetime(2018, 6, 26, 14, 58, 54, tzinfo=UTC)),
    ("2018-06-26T10:58:54+02:00", datetime(2018, 6, 26, 8, 58, 54, tzinfo=UTC)),
    ("2018-06-26T10:58:54Z", datetime(2018, 6, 26, 10, 58, 54, tzinfo=UTC)),
])
def test_parse_formats(text: str, utc: datetime) -> None:
    assert parse_nyc_time(text).utc == utc


@pytest.mark.parametrize("text", ["", "13/01/2018 10:00:00 AM", "02/30/2018 10:00:00 AM",
                                  "06/26/2018 00:30:00 AM", "06/26/2018", "2018-13-01T00:00"])
def test_parse_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_nyc_time(text)


def test_dst_gap_and_overlap_are_deterministic(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "dst.csv", [
        _row("1", Created_Date="03/11/2018 02:30:00 AM"),  # spring forward: does not exist
        _row("2", Created_Date="11/04/2018 01:30:00 AM"),  # fall back: happens twice
    ])
    gap, overlap = list(read_nyc_csv(path))
    assert gap.created is not None and overlap.created is not None
    assert gap.created["occurred_at"] == datetime(2018, 3, 11, 7, 30, tzinfo=UTC)  # 02:30 EST
    assert overlap.created["occurred_at"] == datetime(2018, 11, 4, 5, 30, tzinfo=UTC)  # EDT
    assert gap.anomalies == (
        "Created Date in the spring-forward gap (nonexistent), read as standard time",)
    assert overlap.anomalies == (
        "Created Date in the fall-back hour (ambiguous), read as daylight time",)
    assert list(read_nyc_csv(path)) == [gap, overlap]


@given(st.datetimes(min_value=datetime(2010, 1, 1), max_value=datetime(2030, 12, 31)))
def test_export_format_round_trips(local: datetime) -> None:
    local = local.replace(microsecond=0)
    parsed = parse_nyc_time(local.strftime("%m/%d/%Y %I:%M:%S %p"))
    back = parsed.utc.astimezone(NEW_YORK).replace(tzinfo=None)
    if parsed.dst == "nonexistent":
        assert back == local + timedelta(hours=1)
    else:
        assert back == local


@given(st.datetimes(min_value=datetime(2010, 1, 1), max_value=datetime(2030, 12, 31)))
def test_the_cached_hour_agrees_with_the_general_parser(local: datetime) -> None:
    """The export's own layout is parsed from a per-hour cache; the spreadsheet layout of the
    same wall clock goes through the general path, which must give the same instant and verdict."""
    local = local.replace(microsecond=0)
    fast = parse_nyc_time(local.strftime("%m/%d/%Y %I:%M:%S %p"))
    general = parse_nyc_time(local.strftime("%m/%d/%Y %H:%M:%S").lstrip("0"))
    assert (fast.utc, fast.dst) == (general.utc, general.dst)


@given(st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40))
def test_event_ids_are_rfc_4122_uuid5(request_id: str) -> None:
    assert created_event_id(request_id) == str(uuid.uuid5(EVENT_NAMESPACE,
                                                          f"{request_id}:created"))
    at = datetime(2018, 6, 26, 16, 50, 1, tzinfo=UTC)
    assert closed_event_id(request_id, at) == str(uuid.uuid5(
        EVENT_NAMESPACE, f"{request_id}:closed:2018-06-26T16:50:01+00:00"))


# --- import through a producer ------------------------------------------------------------


class FakeProducer:
    def __init__(self, fail_flush: bool = False) -> None:
        self.sent: list[tuple[str, dict[str, object]]] = []
        self.flushed = False
        self.fail_flush = fail_flush

    def send(self, name: str, record: dict[str, object]) -> None:
        self.sent.append((name, record))

    def flush(self) -> None:
        self.flushed = True
        if self.fail_flush:
            from nyc311.kafka import DeliveryError
            raise DeliveryError(["nyc311.request-created key=b'1': broker down"])


def test_import_sends_every_event_and_flushes(
        real_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    producer = FakeProducer()
    summary = import_nyc_csv(real_csv, producer, progress=True)
    names = [name for name, _ in producer.sent]
    assert names.count("request_created") == summary.rows_imported == 1000
    assert names.count("request_closed") == summary.closures_imported == 969
    assert producer.flushed
    assert capsys.readouterr().err  # the progress bar went to stderr


def test_delivery_error_propagates(tmp_path: Path) -> None:
    from nyc311.kafka import DeliveryError

    path = _write_csv(tmp_path / "one.csv", [_row("1")])
    with pytest.raises(DeliveryError):
        import_nyc_csv(path, FakeProducer(fail_flush=True), progress=False)


@pytest.mark.parametrize("name", ["311_Service_Requests.csv", "311_sample.csv"])
def test_rows_keep_every_column_a_rule_reads(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading only USED_COLUMNS gives what reading all 41 gives, on both real exports."""
    from producers import nyc_csv

    path = _data_file(name)
    kept = list(read_nyc_csv(path))
    with path.open(encoding="utf-8-sig", newline="") as f:
        every = tuple(name.strip() for name in next(csv.reader(f)))
    monkeypatch.setattr(nyc_csv, "USED_COLUMNS", every)
    assert list(read_nyc_csv(path)) == kept
