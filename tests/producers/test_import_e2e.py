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
