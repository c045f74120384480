"""Backfill from NYC Open Data 311 CSV exports: each row becomes RequestCreated (+ RequestClosed).

Why a pure core: :func:`read_nyc_csv` turns rows into event records and verdicts without touching
Kafka, so the mapping rules (ARCHITECTURE §8) are tested on real exports in milliseconds;
:mod:`producers.nyc_import` adds the producer, worker processes, a progress bar and the final
flush.

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
import uuid
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any

from pyroaring import BitMap

from producers.nyc_time import parse_nyc_time

Record = dict[str, Any]
StrPath = str | os.PathLike[str]

#: Namespace of every event id this importer derives (from the dataset's Open Data address).
EVENT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://data.cityofnewyork.us/resource/erm2-nwe9")
REQUIRED_COLUMNS = ("Unique Key", "Created Date", "Agency", "Complaint Type", "Status")
USED_COLUMNS = (*REQUIRED_COLUMNS, "Closed Date", "Agency Name", "Descriptor", "Incident Zip",
                "Resolution Description", "Resolution Action Updated Date", "Borough",
                "Open Data Channel Type")  # every column a rule reads
CHANNELS = frozenset({"PHONE", "ONLINE", "MOBILE", "OTHER", "UNKNOWN"})
KNOWN_STATUSES = frozenset({"OPEN", "CLOSED", "PENDING", "ASSIGNED", "IN PROGRESS", "STARTED",
                            "EMAIL SENT", "UNASSIGNED", "DRAFT", "UNSPECIFIED"})
EXAMPLES_KEPT = 5
WRONG_FIELDS = "wrong number of fields"  # a rejection that comes before the duplicate check
DUPLICATE = "duplicate Unique Key within the file"
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
    processes: int = 1  # worker processes that parsed and encoded rows (1: none, in-process)
    one_process_from: int | None = None  # line from which a parallel import read in-process

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
        self.count(result.line, result.rejected, result.closure_rejected,
                   result.closed is not None, result.anomalies)

    def count(self, line: int, rejected: str | None, closure_rejected: str | None,
              closed: bool, anomalies: tuple[str, ...]) -> None:
        """One row's verdict (what :meth:`add` takes from a :class:`RowResult`)."""
        self.rows_read += 1
        if rejected is not None:
            self.rejected_rows.add(rejected, line)
        else:
            self.rows_imported += 1
        if closed:
            self.closures_imported += 1
        if closure_rejected is not None:
            self.rejected_closures.add(closure_rejected, line)
        for anomaly in anomalies:
            self.anomalies.add(anomaly, line)

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
        if self.processes > 1:
            lines.append(f"  rows parsed and encoded by {self.processes} worker processes")
            if self.one_process_from is not None:
                lines.append(f"  from line {self.one_process_from:,} on, in one process: the "
                             "chunk there did not end at a row boundary (a stray quote) or held "
                             "an error")
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


class KeySet:
    """The Unique Keys imported so far, exact, in memory that does not grow with the file.

    NYC's keys are decimal numbers below 2³² (eight digits today): those go in a Roaring bitmap,
    about a bit per number of the keys' range when dense (a few MB for the whole history since
    2010), where a set of strings takes ~40 B a key (1.6 GB for 40 million). Any other key (not
    canonical decimal, e.g. with a leading zero, or larger) goes in a set of strings."""

    __slots__ = ("_numbers", "_others")

    def __init__(self) -> None:
        self._numbers = BitMap()
        self._others: set[str] = set()

    @staticmethod
    def _number(key: str) -> int | None:
        try:
            number = int(key)
        except ValueError:
            return None
        # int() also reads " 7", "+7", "0_7", "٧" and "007": those are other keys than "7"
        return number if 0 <= number < 1 << 32 and str(number) == key else None

    def add(self, key: str) -> None:
        self.add_new(key)

    def add_new(self, key: str) -> bool:
        """Add ``key``; whether it was not there before."""
        number = self._number(key)
        if number is None:
            if key in self._others:
                return False
            self._others.add(key)
            return True
        try:
            self._numbers.add_checked(number)
        except KeyError:
            return False
        return True

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        number = self._number(key)
        return key in self._others if number is None else number in self._numbers

    def __len__(self) -> int:
        return len(self._numbers) + len(self._others)


def read_nyc_csv(path: StrPath, on_progress: Callable[[int], None] | None = None
                 ) -> Generator[RowResult, None, None]:
    """Stream a 311 export, yielding one :class:`RowResult` per row, in file order.

    ``on_progress`` gets the number of bytes read so far, every ``PROGRESS_EVERY`` lines and at
    the end. A row whose Unique Key an earlier imported row had is a duplicate; the keys seen are
    held in a :class:`KeySet`.
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
            header = read_header(path, reader)
            yield from _rows(path, raw, reader, header, 0, KeySet(), on_progress)
        except csv.Error as exc:
            raise csv_error(path, reader.line_num, exc) from None
        finally:
            text.detach()  # the raw file is closed by its own with


def read_nyc_csv_from(path: StrPath, offset: int, header: list[str], lines_before: int,
                      imported: KeySet, on_progress: Callable[[int], None] | None = None
                      ) -> Generator[RowResult, None, None]:
    """The rows of an export from byte ``offset`` on, which must be where a row starts: as
    :func:`read_nyc_csv` yields them, the header and the ``lines_before`` lines before ``offset``
    already read and ``imported`` holding the keys imported there."""
    with open(path, "rb") as raw:
        raw.seek(offset)
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")
        reader = csv.reader(text)
        try:
            yield from _rows(path, raw, reader, header, lines_before, imported, on_progress)
        except csv.Error as exc:
            raise csv_error(path, lines_before + reader.line_num, exc) from None
        finally:
            text.detach()


def read_header(path: StrPath, reader: Any) -> list[str]:
    """The header row of ``reader`` (a csv reader at the file's start), checked."""
    header = [name.strip() for name in next(reader, [])]
    if has_bad_bytes("".join(header)):
        raise _not_utf8(path)
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise NycCsvFormatError(f"{path}: not an NYC 311 export, missing column(s) "
                                f"{', '.join(missing)}")
    return header


def csv_error(path: StrPath, line: int, exc: csv.Error) -> NycCsvFormatError:
    return NycCsvFormatError(f"{path}: line {line} is not valid CSV ({exc})")


def has_bad_bytes(text: str) -> bool:
    """Whether text read with ``surrogateescape`` held bytes that are not UTF-8."""
    return _NOT_UTF8.search(text) is not None


def _rows(path: StrPath, raw: Any, reader: Any, header: list[str], lines_before: int,
          imported: KeySet, on_progress: Callable[[int], None] | None
          ) -> Generator[RowResult, None, None]:
    layout = Layout(header)
    next_line = reader.line_num + 1
    for fields in reader:
        line, next_line = lines_before + next_line, reader.line_num + 1
        if not fields:
            continue
        if has_bad_bytes("".join(fields)):
            raise _not_utf8(path)
        result = _map_row(fields, layout, line, imported)
        if result.created is not None and result.request_id is not None:
            imported.add(result.request_id)
        yield result
        if on_progress is not None and not line % PROGRESS_EVERY:
            on_progress(raw.tell())
    if on_progress is not None:
        on_progress(raw.tell())


def check_nyc_csv(path: StrPath) -> None:
    """Raise :class:`NycCsvFormatError` (or OSError) unless ``path`` starts like an export: a
    readable UTF-8 CSV file with the required columns. Reads the header and the first row."""
    rows = read_nyc_csv(path)
    try:
        next(rows, None)
    finally:
        rows.close()


class Layout:
    """Where the columns the rules read are in a header: each row keeps only those (13 of an
    export's 41), stripped once."""

    def __init__(self, header: list[str]) -> None:
        self.header = header
        position = {name: i for i, name in enumerate(header)}  # a repeated name: its last
        columns = [(name, position[name]) for name in USED_COLUMNS if name in position]
        self.names = [name for name, _ in columns]
        pick = itemgetter(*(i for _, i in columns), 0)  # always a tuple (index 0: a spare)
        self._pick: Callable[[list[str]], tuple[str, ...]] = pick

    def row(self, fields: list[str]) -> _Row:
        if len(fields) != len(self.header):  # short or long: only its key matters (rejected)
            return _Row(zip(self.header, map(str.strip, fields), strict=False))
        # the spare index 0 at the end is dropped: zip stops at the names
        return _Row(zip(self.names, map(str.strip, self._pick(fields)), strict=False))


def _map_row(fields: list[str], layout: Layout, line: int,
             imported: KeySet | set[str]) -> RowResult:
    row = layout.row(fields)
    request_id = row["Unique Key"]
    if len(fields) != len(layout.header):
        return RowResult(line, request_id or None, None,
                         rejected=f"{WRONG_FIELDS} (expected {len(layout.header)})")
    anomalies: list[str] = []
    reason = _row_rejection(row, request_id, imported)
    created_at = None if reason else _time(row, "Created Date", anomalies)
    if created_at is None:
        return RowResult(line, request_id or None, None,
                         rejected=reason or "unparseable Created Date")
    created = _created_record(row, request_id, created_at, anomalies)
    closed, closure_rejected = _closure(row, request_id, created_at, anomalies)
    return RowResult(line, request_id, created, closed, None, closure_rejected, tuple(anomalies))


def _row_rejection(row: _Row, request_id: str, imported: KeySet | set[str]) -> str | None:
    if not request_id:
        return "missing Unique Key"
    if request_id in imported:
        return DUPLICATE
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
