"""``nyc311 import-nyc-csv`` on files that are not exports: one clear line, exit status 1.

Every such file is refused before anything is sent; a bad byte deep inside a large file stops
the import where it is, saying what was sent.

The real command runs as a subprocess, with the settings of the test's Kafka and PostgreSQL.
"""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

from tests.helpers import project, run_cli

HEADER = "Unique Key,Created Date,Closed Date,Agency,Agency Name,Complaint Type,Status\n"


def row(i: int, complaint: str = "Noise - Residential") -> str:
    return (f"{70000000 + i},06/26/2018 02:58:54 PM,06/26/2018 04:50:01 PM,NYPD,"
            f"New York City Police Department,{complaint},Closed\n")


def import_cli(settings, path: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(settings, "import-nyc-csv", str(path), "--no-progress")


def refused(done: subprocess.CompletedProcess[str], only_line: bool = True) -> str:
    """The line the command ended with, after checking it failed cleanly."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1 or not only_line, done.stderr
    assert done.stdout == ""
    assert lines[-1].startswith("Error: ")
    return lines[-1]


def test_files_that_are_no_export_are_refused_in_one_line(settings, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    binary = tmp_path / "picture.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00" + bytes(range(256)))
    archive = tmp_path / "export.csv.gz"
    archive.write_bytes(gzip.compress((HEADER + row(1)).encode()))
    columns = tmp_path / "columns.csv"
    columns.write_text("Unique Key,Agency\n1,NYPD\n", encoding="utf-8")
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes((HEADER + row(1) + row(2, "Café Noise")).encode("latin-1"))
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    missing = tmp_path / "missing.csv"

    expected = {
        empty: f"{empty} is empty",
        binary: f"{binary} is not a CSV file: it holds binary data (NUL bytes)",
        archive: f"{archive} is not a CSV file but a gzip archive: decompress it first",
        columns: f"{columns}: not an NYC 311 export, missing column(s) Created Date, "
                 "Complaint Type, Status",
        latin1: f"{latin1} is not UTF-8 text: byte 0xe9 on line 3 (byte offset "
                f"{len((HEADER + row(1)).encode()) + row(2).index('Noise') + 3}); save the "
                "export as UTF-8",
        folder: f"{folder} is a directory, not a CSV file",
        missing: f"cannot read {missing}: No such file or directory",
    }
    for path, message in expected.items():
        assert message in refused(import_cli(settings, path)), path


def test_a_bad_byte_deep_in_a_file_stops_the_import_cleanly(settings, topics, db,
                                                             tmp_path: Path) -> None:
    good = [row(i) for i in range(400)]  # more than the first block the command checks
    path = tmp_path / "late.csv"
    path.write_bytes((HEADER + "".join(good)).encode() + row(400, "Caf\xe9").encode("latin-1"))
    line = refused(import_cli(settings, path), only_line=False)  # after the log of the start
    assert f"{path} is not UTF-8 text: byte 0xe9 on line 402" in line
    assert "the 400 rows before it were imported" in line
    project(settings)  # what was sent is whole, and a re-import would repeat the same events
    assert db.execute("SELECT count(*) FROM requests").fetchone()[0] == 400
