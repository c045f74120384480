"""The real NYC Open Data export, imported through Kafka and projected into PostgreSQL."""

from __future__ import annotations

import csv
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from cli import main
from tests.helpers import cli_env, project

pytestmark = pytest.mark.integration


def test_import_the_real_export_end_to_end(settings, topics, db, shared_csv):
    runner = CliRunner()
    result = runner.invoke(main, ["import-nyc-csv", str(shared_csv), "--no-progress"],
                           env=cli_env(settings), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "1,000" in result.output or "1000" in result.output

    stats = project(settings)
    assert stats.dead_lettered == 0

    with shared_csv.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    keys = {r["Unique Key"] for r in rows}
    closed = {r["Unique Key"] for r in rows if r["Status"].lower() == "closed"
              and (r["Closed Date"] or r["Resolution Action Updated Date"])}

    projected = {k for (k,) in db.execute("SELECT request_id FROM requests").fetchall()}
    assert projected == keys
    closed_ids = {k for (k,) in db.execute("SELECT request_id FROM closures").fetchall()}
    assert closed_ids == closed
    assert db.execute("SELECT count(*) FROM closures").fetchone()[0] == len(closed)
    assert db.execute("SELECT count(*) FROM contacts").fetchone()[0] == 0  # open data has none

    row = db.execute(
        "SELECT r.created_at, r.agency, r.channel, r.complaint_type, c.closed_at, c.status "
        "FROM requests r JOIN closures c USING (request_id) WHERE request_id = '39573567'"
    ).fetchone()
    assert row == (datetime(2018, 6, 26, 14, 58, 54, tzinfo=UTC), "NYPD", "PHONE",
                   "Non-Emergency Police Matter", datetime(2018, 6, 26, 16, 50, 1, tzinfo=UTC),
                   "CLOSED")


def test_importing_twice_changes_nothing(settings, topics, db, shared_csv):
    runner = CliRunner()
    env = cli_env(settings)
    for _ in range(2):
        result = runner.invoke(main, ["import-nyc-csv", str(shared_csv), "--no-progress"], env=env)
        assert result.exit_code == 0, result.output
    stats = project(settings)
    assert stats.records == 2 * (1000 + 969)
    assert db.execute("SELECT count(*) FROM requests").fetchone()[0] == 1000
    assert db.execute("SELECT count(*) FROM closures").fetchone()[0] == 969


def test_a_missing_file_is_a_clear_error(settings):
    result = CliRunner().invoke(main, ["import-nyc-csv", "/nonexistent/file.csv"],
                                env=cli_env(settings))
    assert result.exit_code == 1
    assert "cannot read /nonexistent/file.csv: No such file or directory" in result.output


def test_a_large_export_imported_by_worker_processes_then_by_one(settings, topics, db,
                                                                 shared_csv, tmp_path):
    """20,000 rows (11 MB: in chunks, by two workers), then the same file in one process: the
    projection equals the file, and the second import sends the very same events."""
    with shared_csv.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader)
        real = [row for row in reader if row]
    key, status = header.index("Unique Key"), header.index("Status")
    path = tmp_path / "history.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for n in range(20_000):
            row = list(real[n % len(real)])
            row[key] = str(70_000_000 + n)
            writer.writerow(row)
    closed = sum(1 for n in range(20_000) if real[n % len(real)][status].lower() == "closed")
    env = cli_env(settings)
    runner = CliRunner()
    first = runner.invoke(main, ["import-nyc-csv", str(path), "--no-progress", "--processes",
                                 "2"], env=env, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert "rows parsed and encoded by 2 worker processes" in first.output
    assert "rows imported         20,000" in first.output
    second = runner.invoke(main, ["import-nyc-csv", str(path), "--no-progress", "--processes",
                                  "1"], env=env, catch_exceptions=False)
    assert second.exit_code == 0, second.output
    assert "worker processes" not in second.output

    stats = project(settings)
    assert stats.dead_lettered == 0
    assert stats.records == 2 * (20_000 + closed)
    assert db.execute("SELECT count(*), min(request_id), max(request_id) FROM requests"
                      ).fetchone() == (20_000, "70000000", "70019999")
    assert db.execute("SELECT count(*) FROM closures").fetchone()[0] == closed


def test_processes_must_be_positive(settings):
    result = CliRunner().invoke(main, ["import-nyc-csv", "x.csv", "--processes", "0"],
                                env=cli_env(settings))
    assert result.exit_code == 2
    assert "--processes" in result.output and "0 is not in the range" in result.output
