"""``nyc311 import-nyc-csv``: an NYC Open Data 311 export into Kafka, on every core.

The rules of a row are :mod:`producers.nyc_csv`'s; this module sends what they make, and makes
it in parallel. NYC's history since 2010 is about 40 million rows, and one Python process parses,
maps and encodes about 35,000 a second. With ``processes`` > 1:

* **Cutting.** This process reads the file in blocks of ``chunk_bytes`` and cuts each at the last
  line end outside quotes (an even number of ``"`` before it: exact for RFC 4180 CSV, where a
  quote inside a field is doubled).
* **Checking every cut.** A worker process parses its chunk with a sentinel line appended; the
  cut was a row boundary iff the sentinel comes back as the last row, alone. A file where the
  quote count misleads (a stray ``"`` inside an unquoted field), a bad byte or a CSV error
  makes the worker give the chunk back, and this process reads the rest of the file itself,
  from that chunk's first byte (a checked row boundary), exactly as one process would: the
  rows, verdicts, line numbers and error messages are the same either way.
* **Workers** map each row and encode its events (Avro, single-object) and return bytes; this
  process produces them **in file order**, so one request's events keep their order and the
  summary's example lines are the first ones of the file.
* **Duplicates.** A worker only knows its chunk's keys. This process holds every key imported
  so far (a :class:`~producers.nyc_csv.KeySet`) and turns a worker's verdict into "duplicate"
  when an earlier chunk imported that key, as a single pass would have found first.

Memory stays flat in the file's size: a few chunks in flight and the key set.
"""

from __future__ import annotations

import csv
import io
import itertools
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from producers.nyc_csv import (
    DUPLICATE,
    SNIFF_BYTES,
    WRONG_FIELDS,
    ImportSummary,
    KeySet,
    Layout,
    NycCsvFormatError,
    Record,
    StrPath,
    _map_row,
    _sniff,
    has_bad_bytes,
    read_header,
    read_nyc_csv,
    read_nyc_csv_from,
)

CHUNK_BYTES = 4 << 20  # ~7,500 rows of NYC's layout
PARENT_CHECK_SECONDS = 0.5
IN_FLIGHT_PER_WORKER = 2  # chunks queued per worker: enough to keep it busy, bounded memory
FORCED_CUT = 4  # chunks' worth of bytes with no line end outside quotes before a cut is forced
#: The last line of every chunk a worker parses; back alone as the last row iff the cut was right.
SENTINEL = "nyc311:end-of-chunk:8d0b1f6e-5b1e-4c55-9d8c-3f0f5c2a7e41"

# A worker's row: (line in its chunk, Unique Key or None, rejection, closure rejection,
# anomalies, RequestCreated value or None, RequestClosed value or None).
Row = tuple[int, str | None, str | None, str | None, tuple[str, ...], bytes | None, bytes | None]


class EventSink(Protocol):
    """What the importer needs of a producer (``nyc311.kafka.EventProducer`` fits)."""

    def send(self, name: str, record: Record) -> None: ...

    def flush(self) -> None: ...


class EncodedEventSink(EventSink, Protocol):
    """A producer that also takes events already encoded (for the parallel import)."""

    def send_encoded(self, name: str, key: bytes, value: bytes) -> None: ...


def default_processes() -> int:
    """One worker per CPU this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def import_nyc_csv(path: StrPath, producer: EventSink, progress: bool = True,
                   processes: int = 1, chunk_bytes: int = CHUNK_BYTES) -> ImportSummary:
    """Send every event of the file through ``producer``, flush, and return the summary.

    With ``processes`` > 1 (and a producer with ``send_encoded``), rows are parsed and encoded
    by that many worker processes; a file of fewer than two chunks is read in this process.
    A delivery error raised by ``flush`` propagates: the import did not happen.
    """
    summary = ImportSummary(source=str(path))
    size = Path(path).stat().st_size
    parallel = (processes > 1 and size >= 2 * chunk_bytes
                and callable(getattr(producer, "send_encoded", None)))
    with tqdm(total=size, unit="B", unit_scale=True, desc=Path(path).name, file=sys.stderr,
              disable=not progress) as bar:

        started = time.monotonic()

        def advance(position: int) -> None:  # bytes drive the bar and its ETA; rows are shown
            bar.update(max(0, min(position, size) - bar.n))
            elapsed = max(time.monotonic() - started, 1e-9)
            bar.set_postfix_str(f"{summary.rows_read:,} rows, "
                                f"{summary.rows_read / elapsed:,.0f} rows/s", refresh=False)

        try:
            if parallel:
                _import_parallel(path, producer, summary, advance, processes,  # type: ignore[arg-type]
                                 chunk_bytes)
            else:
                _send_rows(read_nyc_csv(path, on_progress=advance), producer, summary)
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


def _send_rows(results: Iterator[Any], producer: EventSink, summary: ImportSummary) -> None:
    for result in results:
        if result.created is not None:
            producer.send("request_created", result.created)
        if result.closed is not None:
            producer.send("request_closed", result.closed)
        summary.add(result)


# --- the parallel import ------------------------------------------------------------------


def _import_parallel(path: StrPath, producer: EncodedEventSink, summary: ImportSummary,
                     advance: Callable[[int], None], processes: int, chunk_bytes: int) -> None:
    start = _header_end(path, chunk_bytes)
    if start is None:  # a header this process cannot cut after: read it all in one process
        _send_rows(read_nyc_csv(path, on_progress=advance), producer, summary)
        return
    header, offset, lines_before = start
    summary.processes = processes
    imported = KeySet()
    send = producer.send_encoded
    context = multiprocessing.get_context("spawn")  # librdkafka's threads do not survive fork
    pending: deque[tuple[int, int, Future[tuple[int, list[Row]] | None]]] = deque()
    fallback_at: int | None = None
    with ProcessPoolExecutor(processes, mp_context=context, initializer=_worker_init,
                             initargs=(os.getpid(),)) as pool:
        def submit(piece: tuple[int, bytes]) -> None:
            begin, data = piece
            pending.append((begin, begin + len(data), pool.submit(_map_chunk, data, header)))

        try:
            chunks = _chunks(path, offset, chunk_bytes)
            for piece in itertools.islice(chunks, processes * IN_FLIGHT_PER_WORKER):
                submit(piece)
            while pending:
                begin, end, future = pending.popleft()
                done = future.result()
                if done is None:  # not cut at a row boundary, or an error: one process from here
                    fallback_at = begin
                    break
                lines, rows = done
                _send_chunk(rows, lines_before, imported, send, summary)
                lines_before += lines
                advance(end)
                following = next(chunks, None)
                if following is not None:
                    submit(following)
        finally:
            for _, _, future in pending:
                future.cancel()
    if fallback_at is not None:
        summary.one_process_from = lines_before + 1
        _send_rows(read_nyc_csv_from(path, fallback_at, header, lines_before, imported,
                                     on_progress=advance), producer, summary)


def _send_chunk(rows: list[Row], lines_before: int, imported: KeySet,
                send: Callable[[str, bytes, bytes], None], summary: ImportSummary) -> None:
    """Produce one chunk's events in order, with verdicts made exact across chunks."""
    count = summary.count
    for line, key, rejected, closure_rejected, anomalies, created, closed in rows:
        if created is not None and key is not None:
            if imported.add_new(key):
                encoded_key = key.encode()
                send("request_created", encoded_key, created)
                if closed is not None:
                    send("request_closed", encoded_key, closed)
            else:  # an earlier chunk imported this key: what one pass would have said
                rejected, closure_rejected, anomalies, closed = DUPLICATE, None, (), None
        elif (key is not None and rejected is not None and rejected != DUPLICATE
              and not rejected.startswith(WRONG_FIELDS) and key in imported):
            # the duplicate check comes before the other rejections (not the field count)
            rejected, closure_rejected, anomalies = DUPLICATE, None, ()
        count(lines_before + line, rejected, closure_rejected, closed is not None, anomalies)


def _header_end(path: StrPath, chunk_bytes: int) -> tuple[list[str], int, int] | None:
    """(header, byte offset where the first row starts, lines the header spans), or None when
    the header is not cut cleanly from the file's first block. A file that is no export is
    refused here as a one-process read refuses it."""
    with open(path, "rb") as raw:
        head = raw.read(chunk_bytes)
        _sniff(path, head[:SNIFF_BYTES])  # the checks and messages of a one-process read
        raw.seek(0)
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
        try:
            header = read_header(path, csv.reader(text))
        finally:
            text.detach()
    end = head.find(b"\n")
    while end >= 0 and head.count(b'"', 0, end) % 2:
        end = head.find(b"\n", end + 1)
    if end < 0:
        return None
    parsed = _parse_checked(head[:end + 1].decode("utf-8-sig", "surrogateescape"))
    if parsed is None or len(parsed[1]) != 1:
        return None
    if [name.strip() for name in parsed[1][0][1]] != header:
        return None
    return header, end + 1, parsed[0]


def _chunks(path: StrPath, offset: int, chunk_bytes: int) -> Iterator[tuple[int, bytes]]:
    """(byte offset, bytes) of the file from ``offset`` on, each cut after a line end with an
    even number of quotes before it; the last one is what is left."""
    with open(path, "rb") as raw:
        raw.seek(offset)
        carry = b""
        while True:
            block = raw.read(chunk_bytes)
            if not block:
                if carry:
                    yield offset, carry
                return
            data = carry + block if carry else block
            cut = _last_row_end(data)
            if cut is None and len(data) >= FORCED_CUT * chunk_bytes:
                # the quote count may be off (a stray quote): cut at a line end anyway, and
                # let the worker's check say whether it was a row boundary
                cut = data.rfind(b"\n") + 1 or None
            if cut is None:  # no line end outside quotes yet: a longer chunk
                carry = data
                continue
            yield offset, data[:cut]
            offset += cut
            carry = data[cut:]


def _last_row_end(data: bytes) -> int | None:
    """The index just past the last ``\\n`` of ``data`` with an even number of quotes before it."""
    quotes = data.count(b'"')
    position = len(data)
    while True:
        newline = data.rfind(b"\n", 0, position)
        if newline < 0:
            return None
        quotes -= data.count(b'"', newline + 1, position)
        if not quotes % 2:
            return newline + 1
        position = newline


def _parse_checked(text: str) -> tuple[int, list[tuple[int, list[str]]]] | None:
    """(lines, (line where it starts, fields) of each row, blank ones too) of ``text`` if it
    ends at a row boundary, else None: parsed with :data:`SENTINEL` appended, which must come
    back alone as the last row."""
    if text and not text.endswith(("\n", "\r")):
        text += "\n"
    reader = csv.reader(io.StringIO(text + SENTINEL + "\n", newline=""))
    rows: list[tuple[int, list[str]]] = []
    next_line = 1
    try:
        for fields in reader:
            rows.append((next_line, fields))
            next_line = reader.line_num + 1
    except csv.Error:
        return None
    if not rows or rows[-1][1] != [SENTINEL]:
        return None
    rows.pop()
    return reader.line_num - 1, rows


# --- in the worker processes --------------------------------------------------------------

def _worker_init(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the importing process's to handle
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """End this worker when the importing process ``parent`` is gone (killed, or ended by
    SIGTERM, which runs no clean-up), even before this worker started: a worker is then
    re-parented and would otherwise wait forever."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(1)


@cache
def _encoder() -> Callable[[str, Record], bytes]:
    from schemas.serde import Serde

    return Serde().encode


def _map_chunk(data: bytes, header: list[str]) -> tuple[int, list[Row]] | None:
    """(lines, rows) of one chunk, each row mapped and its events encoded; None when the chunk
    does not end at a row boundary or holds a bad byte or bad CSV (the importing process reads
    it itself, which finds and reports the error exactly)."""
    text = data.decode("utf-8", "surrogateescape")
    if has_bad_bytes(text):  # one scan of the chunk, not one per row
        return None
    checked = _parse_checked(text)
    if checked is None:
        return None
    lines, parsed = checked
    encode = _encoder()
    layout = Layout(header)
    imported: set[str] = set()  # this chunk's keys; the importing process knows the rest
    rows: list[Row] = []
    for line, fields in parsed:
        if not fields:
            continue
        result = _map_row(fields, layout, line, imported)
        created = closed = None
        if result.created is not None:
            imported.add(result.request_id)  # type: ignore[arg-type]
            created = encode("request_created", result.created)
            if result.closed is not None:
                closed = encode("request_closed", result.closed)
        rows.append((line, result.request_id, result.rejected, result.closure_rejected,
                     result.anomalies, created, closed))
    return lines, rows
