"""Backfill from NYC Open Data 311 CSV exports: each row becomes RequestCreated (+ RequestClosed).

Why a pure core: :func:`read_nyc_csv` turns rows into event records and verdicts without touching
Kafka, so the mapping rules (ARCHITECTURE §8) are tested on real exports in milliseconds;
:func:`import_nyc_csv` only adds the producer, a progress bar and the final flush.

Rules:

* A row yields RequestCreated at ``Created Date``. It yields RequestClosed (status ``CLOSED``)
  iff ``Status`` is ``Closed`` (any case), at ``Closed Date``, or at ``Resolution Action Updated
  Date`` when ``Closed Date`` is empty; with neither, the closure is rejected and counted, but the
  request is still imported.
* Every row is accounted for in an :class:`ImportSummary`: imported or rejected with a reason;
  rejected closures and anomalies (imported, but odd) are counted with example line numbers.
* Times are America/New_York wall-clock times as Open Data exports them
  (``MM/DD/YYYY hh:mm:ss AM/PM``; spreadsheet re-saves as ``M/D/YY H:MM``) or ISO 8601; an ISO
  time with an offset is taken as is. Everything is converted to UTC. A wall-clock time that does
  not exist (spring-forward gap) or exists twice (fall-back overlap) is resolved the way
  ``zoneinfo`` does with ``fold=0`` — the offset in force *before* the transition: the gap time
  02:30 reads as 02:30 EST (= 03:30 EDT) and the overlap time 01:30 as the first, EDT, one. It is
  deterministic and counted as an anomaly, since the export itself cannot say which was meant.
* Event ids are UUIDv5 of ``"<request id>:created"`` and ``"<request id>:closed:<closed_at UTC
  ISO 8601>"``, so importing the same file twice produces the same events and the idempotent
  projection ignores the repeats.
* ``Borough`` "Unspecified" and empty optional fields become None; an unrecognised channel is
  UNKNOWN. Open data has no personal data, so ``language`` and ``contact`` are None.

Blank lines are not rows and are skipped. A file that is not an export at all fails before
anything is sent, with one line saying why (:class:`NycCsvFormatError`): empty, binary (NUL
bytes, or a gzip/ZIP archive), not UTF-8 (the line and byte of the first bad byte), malformed
CSV (the line), or without the required columns. A bad byte or CSV line deep inside a large file
is found when the import reaches its row: the rows before it were sent, which is harmless since
a re-import of the fixed file sends the same events again.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import os
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from producers.nyc_time import parse_nyc_time

Record = dict[str, Any]
StrPath = str | os.PathLike[str]

#: Namespace of every event id this importer derives (from the dataset's Open Data address).
EVENT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://data.cityofnewyork.us/resource/erm2-nwe9")
REQUIRED_COLUMNS = ("Unique Key", "Created Date", "Agency", "Complaint Type", "Status")
CHANNELS = frozenset({"PHONE", "ONLINE", "MOBILE", "OTHER", "UNKNOWN"})
KNOWN_STATUSES = frozenset({"OPEN", "CLOSED", "PENDING", "ASSIGNED", "IN PROGRESS", "STARTED",
                            "EMAIL SENT", "UNASSIGNED", "DRAFT", "UNSPECIFIED"})
EXAMPLES_KEPT = 5
PROGRESS_EVERY = 1000  # lines between two progress updates



class NycCsvFormatError(ValueError):
    """The file is not an NYC Open Data 311 export: empty, binary, not UTF-8, not CSV, or a
    required column is missing. The message is one line naming the file and the reason."""


SNIFF_BYTES = 8192
_NOT_UTF8 = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of a non-UTF-8 byte
_ARCHIVES = ((b"\x1f\x8b", "a gzip archive: decompress it first (gunzip)"),
             (b"PK\x03\x04", "a ZIP archive: extract the CSV file from it first"))


def _sniff(path: StrPath, head: bytes) -> None:
    """Refuse, from the first bytes, what cannot be a CSV export."""
    if not head.strip():
        raise NycCsvFormatError(f"{path} is empty: expected an NYC Open Data 311 CSV export "
                                "with a header row")
    for magic, what in _ARCHIVES:
        if head.startswith(magic):
            raise NycCsvFormatError(f"{path} is not a CSV file but {what}")
    if b"\x00" in head:
        raise NycCsvFormatError(f"{path} is not a CSV file: it holds binary data (NUL bytes)")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:  # unless a character is only cut by the block's end
        if not (len(head) == SNIFF_BYTES and exc.reason == "unexpected end of data"):
            raise _not_utf8(path) from None


def _not_utf8(path: StrPath) -> NycCsvFormatError:
    """Where the first byte that is not UTF-8 is: line and offset, found by a second reading
    (only on this error path; the import itself reads the file once)."""
    offset = 0
    with open(path, "rb") as raw:
        for number, line in enumerate(raw, start=1):
            bom = len(codecs.BOM_UTF8) if number == 1 and line.startswith(codecs.BOM_UTF8) else 0
            try:
                line[bom:].decode("utf-8")
            except UnicodeDecodeError as exc:
                start = bom + exc.start
                return NycCsvFormatError(
                    f"{path} is not UTF-8 text: byte 0x{line[start]:02x} on line {number} "
                    f"(byte offset {offset + start}); save the export as UTF-8 and import it "
                    "again")
            offset += len(line)
    return NycCsvFormatError(f"{path} is not UTF-8 text; save the export as UTF-8 and import "
                             "it again")


_NAMESPACE_BYTES = EVENT_NAMESPACE.bytes


def _uuid5(name: str) -> str:
    """``str(uuid.uuid5(EVENT_NAMESPACE, name))`` (RFC 4122 §4.3), without the UUID object: the
    importer makes two per row, and this is a third of the cost."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def created_event_id(request_id: str) -> str:
    return _uuid5(f"{request_id}:created")


def closed_event_id(request_id: str, closed_at: datetime) -> str:
    """``closed_at`` in UTC, as ``datetime.isoformat`` writes it: 2018-06-26T16:50:01+00:00."""
    return _uuid5(f"{request_id}:closed:{closed_at.isoformat()}")


@dataclass(frozen=True)
class RowResult:
    """What one CSV row became. ``line`` is where the row starts in the file (header = 1)."""

    line: int
    request_id: str | None
    created: Record | None  # None iff the row was rejected
    closed: Record | None = None
    rejected: str | None = None  # why the row was rejected
    closure_rejected: str | None = None  # why a Closed row yielded no RequestClosed
    anomalies: tuple[str, ...] = ()


@dataclass
class Tally:
    """Counts per reason, with the first few line numbers of each as examples."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[int]] = field(default_factory=dict)

    def add(self, reason: str, line: int) -> None:
        self.counts[reason] += 1
        kept = self.examples.setdefault(reason, [])
        if len(kept) < EXAMPLES_KEPT:
            kept.append(line)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def lines(self) -> list[str]:
        out = []
        for reason, count in self.counts.most_common():
            shown = ", ".join(map(str, self.examples[reason]))
            more = ", …" if count > len(self.examples[reason]) else ""
            label = "line" if count == 1 else "lines"
            out.append(f"    {count:>9,}  {reason}  ({label} {shown}{more})")
        return out


@dataclass
class ImportSummary:
    """Every row of one file, accounted for: rows_read == rows_imported + rows_rejected."""

    source: str
    rows_read: int = 0
    rows_imported: int = 0  # one RequestCreated each
    closures_imported: int = 0  # one RequestClosed each
    rejected_rows: Tally = field(default_factory=Tally)
    rejected_closures: Tally = field(default_factory=Tally)
    anomalies: Tally = field(default_factory=Tally)
    seconds: float | None = None  # the import's wall time, acknowledged by the broker

    @property
    def rows_rejected(self) -> int:
        return self.rejected_rows.total

    @property
    def closures_rejected(self) -> int:
        return self.rejected_closures.total

    @property
    def balanced(self) -> bool:
        return self.rows_read == self.rows_imported + self.rows_rejected

    def add(self, result: RowResult) -> None:
        self.rows_read += 1
        if result.rejected is not None:
            self.rejected_rows.add(result.rejected, result.line)
        else:
            self.rows_imported += 1
        if result.closed is not None:
            self.closures_imported += 1
        if result.closure_rejected is not None:
            self.rejected_closures.add(result.closure_rejected, result.line)
        for anomaly in result.anomalies:
            self.anomalies.add(anomaly, result.line)

    def render(self) -> str:
        lines = [
            f"NYC 311 CSV import: {self.source}",
            f"  rows read          {self.rows_read:>9,}",
            f"  rows imported      {self.rows_imported:>9,}  (RequestCreated events)",
            f"  rows rejected      {self.rows_rejected:>9,}",
            f"  closures imported  {self.closures_imported:>9,}  (RequestClosed events)",
            f"  closures rejected  {self.closures_rejected:>9,}  (status Closed, no usable time)",
        ]
        sections = (("Rejected rows (nothing imported)", self.rejected_rows),
                    ("Rejected closures (request imported, closure not)", self.rejected_closures),
                    ("Anomalies (imported; worth a look)", self.anomalies))
        for title, tally in sections:
            if tally.counts:
                lines += ["", f"  {title}:", *tally.lines()]
        if not self.balanced:
            lines += ["", "  WARNING: rows read != rows imported + rows rejected"]
        if self.seconds:
            lines += ["", f"  {self.seconds:.1f} s, {self.rows_read / self.seconds:,.0f} rows/s "
                          "(every event acknowledged by the broker)"]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        def tally(t: Tally) -> dict[str, Any]:
            return {r: {"count": n, "example_lines": t.examples[r]} for r, n in t.counts.items()}

        return {"source": self.source, "rows_read": self.rows_read,
                "rows_imported": self.rows_imported, "rows_rejected": self.rows_rejected,
                "closures_imported": self.closures_imported,
                "closures_rejected": self.closures_rejected,
                "rejected_rows": tally(self.rejected_rows),
                "rejected_closures": tally(self.rejected_closures),
                "anomalies": tally(self.anomalies)}


class _Row(dict[str, str]):
    """Column values by header name, stripped once; absent columns read as empty."""

    def __missing__(self, name: str) -> str:
        return ""

    def optional(self, name: str) -> str | None:
        return self[name] or None


def read_nyc_csv(path: StrPath, on_progress: Callable[[int], None] | None = None
                 ) -> Generator[RowResult, None, None]:
    """Stream a 311 export, yielding one :class:`RowResult` per row, in file order.

    ``on_progress`` gets the number of bytes read so far, every ``PROGRESS_EVERY`` lines and at
    the end. A row whose Unique Key an earlier imported row had is a duplicate; the keys seen are
    held in memory (a set of strings: fine for any single export of a few million rows).
    """
    with open(path, "rb") as raw:
        _sniff(path, raw.read(SNIFF_BYTES))
        raw.seek(0)
        # Bytes that are not UTF-8 become lone surrogates instead of failing the whole block
        # they are in, so the rows before the first one are read and the error names its line.
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape",
                                newline="")
        reader = csv.reader(text)
        try:
            header = [name.strip() for name in next(reader, [])]
            if _NOT_UTF8.search("".join(header)):
                raise _not_utf8(path)
            missing = [name for name in REQUIRED_COLUMNS if name not in header]
            if missing:
                raise NycCsvFormatError(f"{path}: not an NYC 311 export, missing column(s) "
                                        f"{', '.join(missing)}")
            imported: set[str] = set()
            next_line = reader.line_num + 1
            for fields in reader:
                line, next_line = next_line, reader.line_num + 1
                if not fields:
                    continue
                if _NOT_UTF8.search("".join(fields)):
                    raise _not_utf8(path)
                result = _map_row(fields, header, line, imported)
                if result.created is not None and result.request_id is not None:
                    imported.add(result.request_id)
                yield result
                if on_progress is not None and not line % PROGRESS_EVERY:
                    on_progress(raw.tell())
            if on_progress is not None:
                on_progress(raw.tell())
        except csv.Error as exc:
            raise NycCsvFormatError(f"{path}: line {reader.line_num} is not valid CSV "
                                    f"({exc})") from None
        finally:
            text.detach()  # the raw file is closed by its own with


def check_nyc_csv(path: StrPath) -> None:
    """Raise :class:`NycCsvFormatError` (or OSError) unless ``path`` starts like an export: a
    readable UTF-8 CSV file with the required columns. Reads the header and the first row."""
    rows = read_nyc_csv(path)
    try:
        next(rows, None)
    finally:
        rows.close()


def _map_row(fields: list[str], header: list[str], line: int, imported: set[str]) -> RowResult:
    row = _Row(zip(header, map(str.strip, fields), strict=False))  # short rows: rejected below
    request_id = row["Unique Key"]
    if len(fields) != len(header):
        return RowResult(line, request_id or None, None,
                         rejected=f"wrong number of fields (expected {len(header)})")
    anomalies: list[str] = []
    reason = _row_rejection(row, request_id, imported)
    created_at = None if reason else _time(row, "Created Date", anomalies)
    if created_at is None:
        return RowResult(line, request_id or None, None,
                         rejected=reason or "unparseable Created Date")
    created = _created_record(row, request_id, created_at, anomalies)
    closed, closure_rejected = _closure(row, request_id, created_at, anomalies)
    return RowResult(line, request_id, created, closed, None, closure_rejected, tuple(anomalies))


def _row_rejection(row: _Row, request_id: str, imported: set[str]) -> str | None:
    if not request_id:
        return "missing Unique Key"
    if request_id in imported:
        return "duplicate Unique Key within the file"
    for column in ("Created Date", "Agency", "Complaint Type"):
        if not row[column]:
            return f"missing {column}"
    return None


def _time(row: _Row, column: str, anomalies: list[str]) -> datetime | None:
    """The column's time in UTC, noting a DST-ambiguous wall clock; None if empty/unparseable."""
    try:
        parsed = parse_nyc_time(row[column])
    except ValueError:
        return None
    if parsed.dst == "nonexistent":
        anomalies.append(f"{column} in the spring-forward gap (nonexistent), read as standard time")
    elif parsed.dst == "ambiguous":
        anomalies.append(f"{column} in the fall-back hour (ambiguous), read as daylight time")
    return parsed.utc


def _channel(row: _Row, anomalies: list[str]) -> str:
    value = row["Open Data Channel Type"].upper()
    if value in CHANNELS:
        return value
    if value:
        anomalies.append("unrecognised Open Data Channel Type, used UNKNOWN")
    return "UNKNOWN"


def _created_record(row: _Row, request_id: str, created_at: datetime,
                    anomalies: list[str]) -> Record:
    agency = row["Agency"]
    agency_name = row["Agency Name"]
    if not agency_name:
        anomalies.append("missing Agency Name, used Agency")
        agency_name = agency
    borough = row["Borough"].upper()
    return {
        "event_id": created_event_id(request_id),
        "occurred_at": created_at,
        "request_id": request_id,
        "agency": agency,
        "agency_name": agency_name,
        "complaint_type": row["Complaint Type"],
        "descriptor": row.optional("Descriptor"),
        "channel": _channel(row, anomalies),
        "borough": borough if borough and borough != "UNSPECIFIED" else None,
        "incident_zip": row.optional("Incident Zip"),
        "language": None,
        "contact": None,
        "sealed_contact": None,
    }


def _closure(row: _Row, request_id: str, created_at: datetime,
             anomalies: list[str]) -> tuple[Record | None, str | None]:
    """(RequestClosed or None, reason a Closed row's closure was rejected or None)."""
    status = row["Status"].upper()
    if status != "CLOSED":
        if not status:
            anomalies.append("missing Status")
        elif status not in KNOWN_STATUSES:
            anomalies.append("unrecognised Status value")
        if row["Closed Date"]:
            anomalies.append("Closed Date on a row whose status is not Closed")
            _check_order(row, "Closed Date", created_at, anomalies)
        return None, None
    column = "Closed Date" if row["Closed Date"] else "Resolution Action Updated Date"
    if not row[column]:
        return None, "status Closed without Closed Date or Resolution Action Updated Date"
    closed_at = _time(row, column, anomalies)
    if closed_at is None:
        return None, f"unparseable {column}"
    if column != "Closed Date":
        anomalies.append("status Closed without Closed Date, used Resolution Action Updated Date")
    if closed_at < created_at:
        anomalies.append(f"{column} before Created Date")
    return {
        "event_id": closed_event_id(request_id, closed_at),
        "occurred_at": closed_at,
        "request_id": request_id,
        "status": "CLOSED",
        "resolution_description": row.optional("Resolution Description"),
    }, None


def _check_order(row: _Row, column: str, created_at: datetime, anomalies: list[str]) -> None:
    """Note a time on a non-Closed row that precedes creation (it yields no event)."""
    try:
        if parse_nyc_time(row[column]).utc < created_at:
            anomalies.append(f"{column} before Created Date")
    except ValueError:
        anomalies.append(f"unparseable {column}")


class EventSink(Protocol):
    """What the importer needs of a producer (``nyc311.kafka.EventProducer`` fits)."""

    def send(self, name: str, record: Record) -> None: ...

    def flush(self) -> None: ...


def import_nyc_csv(path: StrPath, producer: EventSink, progress: bool = True) -> ImportSummary:
    """Send every event of the file through ``producer``, flush, and return the summary.

    A delivery error raised by ``flush`` propagates: the import did not happen.
    """
    summary = ImportSummary(source=str(path))
    size = Path(path).stat().st_size
    with tqdm(total=size, unit="B", unit_scale=True, desc=Path(path).name, file=sys.stderr,
              disable=not progress) as bar:

        started = time.monotonic()

        def advance(position: int) -> None:  # bytes drive the bar and its ETA; rows are shown
            bar.update(max(0, min(position, size) - bar.n))
            elapsed = max(time.monotonic() - started, 1e-9)
            bar.set_postfix_str(f"{summary.rows_read:,} rows, "
                                f"{summary.rows_read / elapsed:,.0f} rows/s", refresh=False)

        try:
            for result in read_nyc_csv(path, on_progress=advance):
                if result.created is not None:
                    producer.send("request_created", result.created)
                if result.closed is not None:
                    producer.send("request_closed", result.closed)
                summary.add(result)
        except NycCsvFormatError as exc:
            if not summary.rows_read:
                raise
            producer.flush()  # what was read is sent whole; a re-import repeats the same events
            rows = f"{summary.rows_read:,} row{'' if summary.rows_read == 1 else 's'}"
            raise NycCsvFormatError(f"{exc}; the {rows} before it were imported (importing "
                                    "the fixed file again changes nothing for them)") from None
    producer.flush()
    summary.seconds = time.monotonic() - started
    return summary
