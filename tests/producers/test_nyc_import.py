"""The parallel import gives exactly what one pass gives: the same events in the same order, the
same verdicts and line numbers, the same errors; and it cuts, checks and falls back correctly.

The file-level tests run real worker processes (spawned) with small chunks, so one file of a
few hundred KB is dozens of chunks; the cutting itself is checked on generated CSV."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from producers.nyc_csv import (
    DUPLICATE,
    ImportSummary,
    KeySet,
    NycCsvFormatError,
)
from producers.nyc_import import _chunks, _parse_checked, import_nyc_csv
from schemas.serde import Serde

REPO = Path(__file__).resolve().parents[2]
SHARED_EXPORT = REPO.parent / "shared" / "data" / "nyc311" / "311_Service_Requests.csv"
CHUNK = 16 << 10  # ~30 rows of NYC's layout a chunk


class Recorder:
    """Every event as (name, key, value bytes), whichever way it was sent."""

    def __init__(self) -> None:
        self.serde = Serde()
        self.events: list[tuple[str, bytes, bytes]] = []
        self.flushes = 0

    def send(self, name: str, record: dict[str, Any]) -> None:
        self.events.append((name, str(record["request_id"]).encode(),
                            self.serde.encode(name, record)))

    def send_encoded(self, name: str, key: bytes, value: bytes) -> None:
        self.events.append((name, key, value))

    def flush(self) -> None:
        self.flushes += 1


def _export_rows() -> tuple[list[str], list[list[str]]]:
    if not SHARED_EXPORT.is_file():
        pytest.skip(f"NYC 311 sample data not found in {SHARED_EXPORT.parent}")
    with SHARED_EXPORT.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], [row for row in rows[1:] if row]


def _write(path: Path, header: list[str], rows: list[list[str]], newline: str = "\r\n") -> Path:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator=newline)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(out.getvalue().encode("utf-8"))
    return path


def _both(path: Path, chunk: int = CHUNK) -> tuple[tuple[Recorder, ImportSummary],
                                                   tuple[Recorder, ImportSummary]]:
    one, many = Recorder(), Recorder()
    first = import_nyc_csv(path, one, progress=False, processes=1)
    second = import_nyc_csv(path, many, progress=False, processes=2, chunk_bytes=chunk)
    return (one, first), (many, second)


def _same(first: ImportSummary, second: ImportSummary) -> None:
    assert second.as_dict() == first.as_dict()
    for name in ("rejected_rows", "rejected_closures", "anomalies"):
        assert getattr(second, name).examples == getattr(first, name).examples, name


def test_parallel_import_equals_one_pass_on_a_messy_export(tmp_path: Path) -> None:
    header, real = _export_rows()
    key, agency, status = (header.index(c) for c in ("Unique Key", "Agency", "Status"))
    descriptor = header.index("Descriptor")
    rows = [list(r) for r in real]
    rows += [list(r) for r in real]  # every key again, a thousand rows later: duplicates
    rows[10][agency] = ""  # rejected first (missing Agency) ...
    # ... so the key is imported by its repeat, a thousand rows (many chunks) later
    rows.append(list(real[10]))  # and a third time: a duplicate of that one
    rows[1200][agency] = ""  # a duplicate whose other fault comes second: still a duplicate
    rows[1300] = rows[1300][:5]  # wrong number of fields, with a key imported earlier
    rows[400][descriptor] = "line one\r\nline two, \"quoted\"\nthree"  # a field across lines
    rows[401][status] = "Closed"
    fresh = [list(r) for r in real[:200]]
    for n, row in enumerate(fresh):
        row[key] = str(4_000_000_000 + n * 97_000_000)  # beyond 2**32 for most: other keys
    rows += [*fresh, list(fresh[3])]
    path = _write(tmp_path / "messy.csv", header, rows)
    assert path.stat().st_size > 20 * CHUNK

    (one, first), (many, second) = _both(path)

    assert many.events == one.events
    _same(first, second)
    assert second.processes == 2 and second.one_process_from is None
    assert "rows parsed and encoded by 2 worker processes" in second.render()
    counts = second.rejected_rows.counts
    # the 1,000 repeats, less row 1010 (imported) and row 1300 (its field count comes first),
    # plus real[10]'s third copy and fresh[3]'s second
    assert counts[DUPLICATE] == 1000 - 2 + 2
    assert sum(v for r, v in counts.items() if r.startswith("wrong number of fields")) == 1
    assert second.rejected_rows.examples["missing Agency"] == [12]  # header + 10 rows before


def _with_stray_quote(tmp_path: Path, multiline_after: bool) -> Path:
    """The export with an unescaped quote in an unquoted field of row 100 (Python's reader
    takes it literally; the quote count is off by one from there), and, if ``multiline_after``,
    a field across lines in every tenth row after it."""
    header, real = _export_rows()
    descriptor = header.index("Descriptor")
    rows = [list(r) for r in real]
    rows[100][descriptor] = "an 18 inch pipe"
    if multiline_after:
        for row in rows[110::10]:
            row[descriptor] = "first line\nsecond line"
    path = _write(tmp_path / "stray.csv", header, rows, newline="\n")
    path.write_bytes(path.read_bytes().replace(b"an 18 inch pipe", b'an 18" pipe'))
    return path


def test_a_stray_quote_before_fields_across_lines_falls_back_to_one_process(
        tmp_path: Path) -> None:
    path = _with_stray_quote(tmp_path, multiline_after=True)
    (one, first), (many, second) = _both(path)
    assert many.events == one.events
    _same(first, second)
    # the first cut after row 100 lands inside a quoted field; the check finds it
    assert second.one_process_from is not None and 50 < second.one_process_from <= 160
    assert "in one process" in second.render()


def test_a_stray_quote_alone_still_cuts_at_row_ends(tmp_path: Path) -> None:
    path = _with_stray_quote(tmp_path, multiline_after=False)
    (one, first), (many, second) = _both(path)
    assert many.events == one.events
    _same(first, second)
    assert second.one_process_from is None  # no line end inside quotes: forced cuts check out


def test_a_bad_byte_deep_in_the_file_gives_the_one_pass_error(tmp_path: Path) -> None:
    header, real = _export_rows()
    path = _write(tmp_path / "bad.csv", header, real)
    data = bytearray(path.read_bytes())
    at = data.index(b"\n", len(data) * 2 // 3) + 5
    data[at] = 0xFF
    path.write_bytes(bytes(data))
    message, one, many = _same_error(path)
    assert "not UTF-8" in message and "were imported" in message
    assert many.flushes == one.flushes == 1


def test_a_csv_error_deep_in_the_file_gives_the_one_pass_error(tmp_path: Path) -> None:
    header, real = _export_rows()
    rows = [list(r) for r in real]
    rows[700][header.index("Descriptor")] = "x" * (csv.field_size_limit() + 1)
    path = _write(tmp_path / "huge_field.csv", header, rows)
    message, _, _ = _same_error(path)
    assert "line 702 is not valid CSV" in message


def _same_error(path: Path) -> tuple[str, Recorder, Recorder]:
    """Import ``path`` in one pass and by two workers: both fail with the same message, after
    sending the same events. Returns the message and both recorders."""
    one, many = Recorder(), Recorder()
    with pytest.raises(NycCsvFormatError) as expected:
        import_nyc_csv(path, one, progress=False, processes=1)
    with pytest.raises(NycCsvFormatError) as got:
        import_nyc_csv(path, many, progress=False, processes=2, chunk_bytes=CHUNK)
    assert str(got.value) == str(expected.value)
    assert many.events == one.events
    return str(got.value), one, many


def test_a_small_file_is_read_in_process(tmp_path: Path) -> None:
    header, real = _export_rows()
    path = _write(tmp_path / "small.csv", header, real[:50])
    summary = import_nyc_csv(path, Recorder(), progress=False, processes=4)
    assert summary.processes == 1 and summary.rows_imported == 50


# --- cutting and checking ------------------------------------------------------------------

_FIELD = st.one_of(
    st.text(st.sampled_from('ab,"\n\r x'), max_size=12),
    st.sampled_from(["", "plain", "a,b", 'say "hi"', "two\nlines", "crlf\r\nend", '"']))


def _render(rows: list[list[str]], newline: str, stray: bool) -> bytes:
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator=newline).writerows(rows)
    text = out.getvalue()
    if stray:  # a quote inside an unquoted field: legal for Python's reader, not RFC 4180
        text = text.replace("plain", 'pl"ain', 1)
    return text.encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_FIELD, min_size=1, max_size=4), max_size=25),
       st.sampled_from(["\n", "\r\n"]), st.integers(1, 64), st.booleans())
def test_verified_chunks_read_what_one_reader_reads(tmp_path_factory: pytest.TempPathFactory,
                                                    rows: list[list[str]], newline: str,
                                                    chunk: int, stray: bool) -> None:
    data = _render(rows, newline, stray)
    path = tmp_path_factory.mktemp("cut") / "f.csv"
    path.write_bytes(data)
    reader = csv.reader(io.StringIO(data.decode(), newline=""))
    try:
        expected = list(reader)
    except csv.Error:
        expected = None
    pieces = list(_chunks(path, 0, chunk))
    assert b"".join(p for _, p in pieces) == data  # lossless
    assert [o for o, _ in pieces] == [sum(len(p) for _, p in pieces[:i])
                                      for i in range(len(pieces))]
    got: list[list[str]] = []
    lines = 0
    for _, piece in pieces:
        checked = _parse_checked(piece.decode())
        if checked is None:
            break  # the import reads the rest in one process from here
        lines += checked[0]
        got += [fields for _, fields in checked[1]]
    else:
        if expected is not None:
            assert got == expected
            assert lines == len(io.StringIO(data.decode(), newline="").readlines())
    if expected is not None:
        assert got == expected[:len(got)]


@given(st.lists(st.one_of(st.integers(0, 2**33).map(str),
                          st.sampled_from(["007", "7", " 7", "+7", "7_0", "٧", "", "0", "00",
                                           "4294967295", "4294967296", "abc", "1e3"])),
                max_size=60))
def test_key_set_is_a_set_of_strings(keys: list[str]) -> None:
    seen: set[str] = set()
    kept = KeySet()
    for key in keys:
        assert (key in kept) == (key in seen)
        assert kept.add_new(key) == (key not in seen)
        seen.add(key)
        assert key in kept
    assert len(kept) == len(seen)
    assert all(k in kept for k in seen)
    assert "7" not in kept or "7" in seen


# --- the workers end with the importing process --------------------------------------------


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_import_leaves_no_worker_behind(tmp_path: Path, how: signal.Signals) -> None:
    header, real = _export_rows()
    rows = []
    for n in range(40):
        for row in real:
            row = list(row)
            row[0] = str(100_000_000 + n * 10_000 + len(rows) % 10_000)
            rows.append(row)
    path = _write(tmp_path / "big.csv", header, rows)
    env = {**os.environ, "NYC311_LOG_LEVEL": "WARNING",
           "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}  # nowhere: the import stays in flight
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_IMPORT, str(path)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    workers = [int(pid) for pid in proc.stdout.readline().split()]
    assert len(workers) == 2
    proc.send_signal(how)
    proc.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)


_SLOW_IMPORT = """
import sys, time
import multiprocessing
from producers import nyc_import

class Slow:
    def send(self, name, record): pass
    def send_encoded(self, name, key, value):
        time.sleep(0.01)
    def flush(self): pass

if __name__ == "__main__":
    original = nyc_import._send_chunk
    def announce(*args):
        children = multiprocessing.active_children()
        print(" ".join(str(c.pid) for c in children), flush=True)
        nyc_import._send_chunk = original
        original(*args)
    nyc_import._send_chunk = announce
    nyc_import.import_nyc_csv(sys.argv[1], Slow(), progress=False, processes=2,
                              chunk_bytes=64 << 10)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is gone, only not yet reaped
        return f.read().split()[2] != "Z"
