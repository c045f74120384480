"""``python -m benchmarks.importer`` (part of ``make bench``): the history backfill's figures.

The backfill an operator runs first is NYC's whole 311 history (about 40 million requests since
2010): ``nyc311 import-nyc-csv`` on the exports, then ``nyc311 rebuild``. Measured in one run, on
the local services, in a fresh database and under a fresh topic prefix (both removed at the end),
on exports in NYC's standard layout made of the shared real rows repeated with new Unique Keys:

- (g) the raw limit of reading the export: every row parsed by Python's ``csv`` module (the
  reader the importer uses) and nothing else; pyarrow's multithreaded reader too when it is
  installed, for comparison;
- (h) ``nyc311 import-nyc-csv`` end to end, every event acknowledged by the broker, at two file
  sizes, with the importer's peak RSS at each (memory must not grow with the file);
- (i) ``nyc311 rebuild --processes N`` of the imported topics, events/s;
- (j) the history extrapolated: 40M requests imported at (h)'s rate plus their events rebuilt
  at (i)'s, in minutes;
- what bounds them: each stage's CPU a row, the broker's, and who used the cores during (h).

The section is printed, and with ``--append FILE`` added to the end of the report that
``python -m benchmarks`` wrote (``make bench`` does both).
"""

from __future__ import annotations

import argparse
import csv
import importlib
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from benchmarks.meters import broker_pid, machine_cpu_times, pid_cpu_seconds, proc_status_kib
from benchmarks.runner import _with_database, delete_topics, drop_database, say
from nyc311.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
SHARED_EXPORT = REPO.parent / "shared" / "data" / "nyc311" / "311_Service_Requests.csv"
HISTORY_REQUESTS = 40_000_000
IMPORT_TARGET_ROWS_S = 50_000
IMPORT_RATIO_TARGET = 0.5
HISTORY_TARGET_S = 30 * 60


def make_export(source: Path, rows: int, out: Path) -> None:
    """``rows`` rows of ``source`` (cycled), each with a new Unique Key, in NYC's layout."""
    with open(source, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader)
        real = [row for row in reader if row]
    key = header.index("Unique Key")
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i in range(rows):
            row = list(real[i % len(real)])
            row[key] = str(900_000_000 + i)
            writer.writerow(row)


def raw_read(path: Path) -> tuple[int, float]:
    """(g): rows and seconds of parsing every row with the csv module, nothing else."""
    started = time.perf_counter()
    rows = 0
    with open(path, newline="", encoding="utf-8-sig") as f:
        for _row in csv.reader(f):
            rows += 1
    return rows - 1, time.perf_counter() - started


def raw_read_arrow(path: Path) -> tuple[int, float] | None:
    try:  # not a dependency: measured when present
        pacsv = importlib.import_module("pyarrow.csv")
    except ImportError:
        return None
    started = time.perf_counter()
    table = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(newlines_in_values=True))
    return table.num_rows, time.perf_counter() - started


@dataclass
class Run:
    rows: int
    seconds: float  # the process's wall time, start-up included
    reported_rows_s: float  # what the import's summary says (start-up excluded)
    peak_rss_mib: float
    events: int
    cpu: dict[str, float] | None = None  # cores used over the run, by whom


@dataclass
class Profile:
    """CPU per row of each stage of the import, measured in this process on one sample."""

    rows: int
    csv_us: float  # the csv module's parse of a chunk
    map_us: float  # the rules: verdicts, times, event records
    encode_us: float  # the row's two events, Avro
    verdicts_us: float  # the importing process: a chunk's rows unpickled, keys, summary
    produce_us: float  # the importing process: its events produced (librdkafka's threads too)

    @property
    def worker_us(self) -> float:
        return self.csv_us + self.map_us + self.encode_us

    @property
    def main_us(self) -> float:
        return self.verdicts_us + self.produce_us


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NYC311_")}
    env.update(KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
               DATABASE_URL=settings.database_url, NYC311_TOPIC_PREFIX=settings.topic_prefix,
               NYC311_LOG_LEVEL="WARNING")
    return env


def _tree_rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and every process below it (the import's workers), MiB."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += proc_status_kib(current, "VmRSS") or 0  # 0: it ended meanwhile
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    todo += [int(child) for child in f.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1024


def _run(settings: Settings, *args: str) -> tuple[str, float, float, dict[str, float]]:
    """Output, wall seconds, peak RSS (MiB) of ``python -m cli ARGS`` and the cores used while
    it ran (by it and its workers, by the broker, by the rest, idle, stolen); raises on failure.

    The peak is of the command's processes together (itself and its workers), sampled every
    0.1 s, or its own peak from wait4 where that is larger."""
    broker = broker_pid(settings.kafka_bootstrap_servers)
    broker_before = pid_cpu_seconds(broker)
    machine_before = machine_cpu_times()
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=REPO, env=_env(settings),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            peak[0] = max(peak[0], _tree_rss_mib(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = proc.stdout.read()
    done.set()
    sampler.join()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage: its peak RSS
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise RuntimeError(f"python -m cli {' '.join(args)} failed ({proc.returncode}):\n{out}")
    machine = [after - before for before, after in zip(machine_before, machine_cpu_times(),
                                                         strict=True)]
    cpu = {"the command and its workers": (usage.ru_utime + usage.ru_stime) / seconds}
    broker_after = pid_cpu_seconds(broker)
    if broker_before is not None and broker_after is not None:
        cpu["Kafka broker"] = (broker_after - broker_before) / seconds
    busy, idle, steal = (v / seconds for v in machine)
    cpu["other (rest of the machine)"] = max(0.0, busy - sum(cpu.values()))
    cpu["idle"] = idle
    cpu["stolen by the hypervisor"] = steal
    return out, seconds, max(peak[0], usage.ru_maxrss / 1024), cpu


def import_file(settings: Settings, path: Path, rows: int, processes: int) -> Run:
    out, seconds, rss, cpu = _run(settings, "import-nyc-csv", "--no-progress", "--processes",
                                  str(processes), str(path))
    rate = re.search(r"([\d.]+) s, ([\d,]+) rows/s", out)
    created = re.search(r"rows imported\s+([\d,]+)", out)
    closed = re.search(r"closures imported\s+([\d,]+)", out)
    if not (rate and created and closed):
        raise RuntimeError(f"unexpected import summary:\n{out}")
    events = sum(int(m[1].replace(",", "")) for m in (created, closed))
    return Run(rows, seconds, float(rate[2].replace(",", "")), rss, events, cpu)


def rebuild(settings: Settings, processes: int) -> tuple[int, float, float]:
    """(i): records rebuilt, the rebuild's own seconds (its result line) and the command's
    wall seconds."""
    _run(settings, "db", "upgrade")
    out, wall, _, _ = _run(settings, "rebuild", "--yes", "--no-progress", "--wait", "0",
                           "--processes", str(processes))
    found = re.search(r"from ([\d,]+) records .* in (\d+) s", out)
    if not found:
        raise RuntimeError(f"unexpected rebuild output:\n{out}")
    return int(found[1].replace(",", "")), float(found[2]), wall


def month_catch_up(report: Path | None) -> float | None:
    """(c) of the report ``python -m benchmarks`` wrote, events/s, if there is one."""
    if report is None or not report.is_file():
        return None
    found = re.search(r"^\| \(c\) projector catch-up, `--processes \d+` \| ([\d,]+) events/s",
                      report.read_text(encoding="utf-8"), re.MULTILINE)
    return float(found[1].replace(",", "")) if found else None


def profile(settings: Settings, path: Path, rows: int = 40_000) -> Profile:
    """Each stage's CPU per row on the first ``rows`` rows (whole chunks) of ``path``, in this
    process, as the import runs them; the produce stage to the broker, in ``settings``' topics
    (this process's CPU, librdkafka's threads included, until every event is acknowledged)."""
    import io
    import pickle

    from nyc311.kafka import BULK_OVERRIDES, EventProducer
    from nyc311.topics import ensure_topics, event_topics
    from producers.nyc_csv import ImportSummary, KeySet, Layout, _map_row
    from producers.nyc_import import CHUNK_BYTES, _chunks, _header_end, _map_chunk, _send_chunk
    from schemas.serde import Serde

    start = _header_end(path, CHUNK_BYTES)
    if start is None:
        raise RuntimeError(f"{path}: the header could not be cut")
    header, offset, _ = start
    chunks: list[bytes] = []
    for _, data in _chunks(path, offset, CHUNK_BYTES):
        chunks.append(data)
        if sum(c.count(b"\n") for c in chunks) >= rows:
            break
    texts = [c.decode("utf-8") for c in chunks]
    began = time.process_time()
    parsed = [row for text in texts for row in csv.reader(io.StringIO(text, newline="")) if row]
    csv_s = time.process_time() - began
    layout, seen = Layout(header), set[str]()
    began = time.process_time()
    results = [_map_row(fields, layout, line, seen) for line, fields in enumerate(parsed)]
    map_s = time.process_time() - began
    serde = Serde()
    began = time.process_time()
    for result in results:
        if result.created is not None:
            serde.encode("request_created", result.created)
        if result.closed is not None:
            serde.encode("request_closed", result.closed)
    encode_s = time.process_time() - began
    blobs = []
    for data in chunks:
        done = _map_chunk(data, header)
        if done is None:
            raise RuntimeError(f"{path}: a chunk did not check out")
        blobs.append(pickle.dumps(done, protocol=pickle.HIGHEST_PROTOCOL))
    keys, summary = KeySet(), ImportSummary(str(path))
    events: list[tuple[str, bytes, bytes]] = []
    began = time.process_time()
    for blob in blobs:
        _, chunk_rows = pickle.loads(blob)
        _send_chunk(chunk_rows, 0, keys, lambda *event: None, summary)
    verdicts_s = time.process_time() - began
    for blob in blobs:
        for _, key, _, _, _, created, closed in pickle.loads(blob)[1]:
            events += [("request_created", key.encode(), created)] if created else []
            events += [("request_closed", key.encode(), closed)] if closed else []
    ensure_topics(settings, event_topics(settings))
    producer = EventProducer(settings, **BULK_OVERRIDES)  # as the import's
    producer.producer.list_topics(timeout=30)  # connected before the clock starts
    began = time.process_time()  # this process's CPU, librdkafka's threads included
    for name, key, value in events:
        producer.send_encoded(name, key, value)
    producer.flush()
    produce_s = time.process_time() - began
    n = len(parsed)
    return Profile(n, *(seconds / n * 1e6 for seconds in (csv_s, map_s, encode_s, verdicts_s,
                                                         produce_s)))


def cleanup(base: Settings, settings: Settings, database: str) -> list[str]:
    left = []
    try:
        with psycopg.connect(base.libpq_url, autocommit=True) as admin:
            if not drop_database(admin, database):
                left.append(f"database {database}")
    except psycopg.Error as exc:
        left.append(f"database {database} ({exc})")
    try:
        delete_topics(AdminClient(settings.kafka_config()), settings.topic_prefix)
    except KafkaException as exc:
        left.append(f"topics {settings.topic_prefix}* ({exc})")
    return left


def render(g: tuple[int, float], arrow: tuple[int, float] | None, runs: list[Run],
           rebuilt: tuple[int, float, float], processes: int, prof: Profile | None = None,
           smaller: tuple[int, float, float] | None = None, c: float | None = None) -> str:
    g_rate = g[0] / g[1]
    big = runs[-1]
    h = big.reported_rows_s
    i = rebuilt[0] / rebuilt[1]
    steady = None  # the larger rebuild's extra records over its extra seconds: no fixed part
    if smaller is not None and rebuilt[0] > smaller[0] and rebuilt[2] > smaller[2]:
        steady = (rebuilt[0] - smaller[0]) / (rebuilt[2] - smaller[2])
        if steady < i:  # the difference is noise, not a fixed part: no better than i itself
            steady = None
    events_per_row = big.events / big.rows
    j = HISTORY_REQUESTS / h + HISTORY_REQUESTS * events_per_row / i

    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**missed**"

    lines = [
        "## The history backfill (`python -m benchmarks.importer`)",
        "",
        f"Exports in NYC's layout: the {SHARED_EXPORT.name} rows cycled with new Unique Keys, "
        f"{', '.join(f'{r.rows:,}' for r in runs)} rows.",
        "",
        "| | figure | target | |",
        "|---|---|---|---|",
        f"| (g) raw read, csv module, one core | {g_rate:,.0f} rows/s | | |",
        f"| (h) `nyc311 import-nyc-csv --processes {processes}`, acknowledged "
        f"| {h:,.0f} rows/s = {h / g_rate:.2f} × g "
        f"| ≥ {IMPORT_TARGET_ROWS_S:,} rows/s and ≥ {IMPORT_RATIO_TARGET} × g | "
        f"{verdict(h >= IMPORT_TARGET_ROWS_S and h >= IMPORT_RATIO_TARGET * g_rate)} |",
        f"| (i) `nyc311 rebuild --processes {processes}` | {i:,.0f} events/s "
        f"({rebuilt[0]:,} records in {rebuilt[1]:.0f} s, start-up and switch included)"
        + (f"; {steady:,.0f} events/s steady (the larger rebuild's records beyond the "
           f"smaller's, over its seconds beyond the smaller's)" if steady else "")
        + (f" | ≥ (c) = {c:,.0f} events/s | {verdict((steady or i) >= c)} |" if c else
           " | ≥ (c) above | |"),
        f"| (j) 40M requests imported + rebuilt | {j / 60:.1f} min "
        f"({events_per_row:.2f} events a request) | < 30 min | {verdict(j < HISTORY_TARGET_S)} |",
        "| memory | " + ", ".join(f"{r.peak_rss_mib:.0f} MiB at {r.rows:,} rows" for r in runs)
        + " | flat in file size | "
        + verdict(runs[-1].peak_rss_mib < 1.25 * runs[0].peak_rss_mib) + " |",
        "",
    ]
    if arrow:
        lines += [f"For comparison, pyarrow's multithreaded CSV reader parses the same file at "
                  f"{arrow[0] / arrow[1]:,.0f} rows/s.", ""]
    lines += ["Import runs (wall time includes the interpreter's start-up and the final flush; "
              "the rate is the summary's own; peak RSS is of the importing process and its "
              "workers together):", "",
              "| rows | events | wall | rows/s | peak RSS |", "|---|---|---|---|---|"]
    lines += [f"| {r.rows:,} | {r.events:,} | {r.seconds:.1f} s | {r.reported_rows_s:,.0f} | "
              f"{r.peak_rss_mib:.0f} MiB |" for r in runs]
    if prof is not None:
        lines += ["", *_bounds(prof, big, h, g_rate, i, processes, steady, c)]
    return "\n".join(lines)


def _bounds(prof: Profile, big: Run, h: float, g_rate: float, i: float, processes: int,
            steady: float | None = None, c: float | None = None) -> list[str]:
    """What bounds (h) and (j): each stage's CPU a row, who used the cores during (h)."""
    cpu = big.cpu or {}
    cores = os.cpu_count() or 1
    broker_us = cpu.get("Kafka broker", 0.0) / h * 1e6
    total_us = prof.worker_us + prof.main_us + broker_us
    used = sum(v for k, v in cpu.items() if k not in ("idle", "stolen by the hypervisor"))
    ratio_budget = cores * 1e6 / (0.5 * g_rate)
    floor = broker_us + prof.csv_us
    import_min = HISTORY_REQUESTS / h / 60
    rebuild_min = HISTORY_REQUESTS * big.events / big.rows / i / 60
    ratio_note = (f", less than the broker and the CSV parse alone take ({floor:.0f} µs)"
                  if ratio_budget < floor else "")
    lines = [
        "### What bounds (h) and (j)",
        "",
        f"Each stage of the import, timed in one process on {prof.rows:,} rows of the larger "
        "export (CPU time; the produce stage is wall time, acknowledged by the broker):",
        "",
        "| stage | runs in | µs a row |",
        "|---|---|---|",
        f"| CSV parse (csv module) | worker | {prof.csv_us:.1f} |",
        f"| the rules: verdicts, NYC times to UTC, event records, ids | worker | "
        f"{prof.map_us:.1f} |",
        f"| Avro, the row's two events (compiled writer) | worker | {prof.encode_us:.1f} |",
        f"| a chunk's rows unpickled, keys checked, summary | importing process | "
        f"{prof.verdicts_us:.1f} |",
        f"| events produced, to acknowledged | importing process, librdkafka | "
        f"{prof.produce_us:.1f} |",
        f"| Kafka broker, during (h) | broker | {broker_us:.1f} |",
        "",
        f"During the {big.rows:,}-row import ({big.seconds:.1f} s), cores used: "
        + ", ".join(f"{name} {value:.2f}" for name, value in cpu.items()) + ".",
        "",
        f"A worker spends {prof.worker_us:.0f} µs a row, {prof.worker_us / total_us:.0%} of "
        f"the {total_us:.0f} µs of CPU a row costs in all. {processes} workers with a core each "
        f"would reach {processes * 1e6 / prof.worker_us:,.0f} rows/s; sharing this machine's "
        f"{cores} cores with the importing process and the broker, all of it can reach "
        f"{cores * 1e6 / total_us:,.0f} rows/s, and the run used {used:.2f} cores. (h) is "
        "bound by the CPU of the per-row Python work: 50,000 rows/s on this machine needs "
        f"{cores * 1e6 / 50_000:.0f} µs a row in all, 0.5 × g "
        f"{cores * 1e6 / (0.5 * g_rate):.0f} µs{ratio_note}.",
        "",
        "Tried, and kept: worker processes on chunks (the import's `--processes`); an Avro "
        "writer compiled from the schema (fastavro checks every union branch it tries); "
        "delivery reports only for failed records; New York times from a per-hour cache; only "
        "the 13 columns the rules read; one scan of a chunk for bytes that are not UTF-8. "
        "Measured and not kept: pyarrow's multithreaded CSV reader (above: no faster than the "
        "csv module on two cores, and it reads whole columns where the rules work a row at a "
        "time).",
        "",
        "(i) runs the projector's loop and merge, whose costs are (c)'s profile above; the "
        "rebuild adds its start-up, last pass and switch"
        + (f", and its steady rate on the imported history (RequestCreated and RequestClosed "
           f"only) is {steady / c:.2f} × (c) on the month's four event types" if steady and c
           else "") + f". (j) = 40M ÷ (h) "
        f"({import_min:.1f} min) + 40M × {big.events / big.rows:.2f} events ÷ "
        f"(i) ({rebuild_min:.1f} min): the "
        f"{'rebuild' if rebuild_min > import_min else 'import'} is the larger part.",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.importer",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000,
                        help="rows of the larger export (the smaller has half; default 1000000)")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                        help="worker processes of the import and of the rebuild, 1 to 64 "
                             "(default: one per CPU)")
    parser.add_argument("--source", type=Path, default=SHARED_EXPORT,
                        help="the real export whose rows are cycled")
    parser.add_argument("--append", type=Path, default=None,
                        help="add the section to the end of this report")
    args = parser.parse_args(argv)
    if args.rows < 1000:
        parser.error("--rows: at least 1000")
    if not 1 <= args.processes <= 64:  # what `nyc311 rebuild --processes` takes
        parser.error("--processes: 1 to 64")
    if not args.source.is_file():
        parser.error(f"--source: no file {args.source}")
    if args.append is not None and not args.append.parent.is_dir():  # known before the work
        parser.error(f"--append: no directory {args.append.parent}")
    tag = uuid.uuid4().hex[:8]
    base = load_settings()
    database = f"nyc311_bench_import_{tag}"
    settings = replace(base, topic_prefix=f"benchimport{tag}.",
                       database_url=_with_database(base.database_url, database))
    say(f"importer benchmark {tag}: database {database}, topics benchimport{tag}*")
    with psycopg.connect(base.libpq_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    try:
        with tempfile.TemporaryDirectory(prefix="nyc311-bench-import-") as tmp:
            sizes = (args.rows // 2, args.rows)
            files = []
            for rows in sizes:
                path = Path(tmp) / f"export-{rows}.csv"
                say(f"making an export of {rows:,} rows …")
                make_export(args.source, rows, path)
                files.append(path)
            runs = []  # first: a child's peak RSS starts from this process's at the fork
            for rows, path in zip(sizes, files, strict=True):
                say(f"(h) import of {rows:,} rows …")
                prefix = f"benchimport{tag}h{rows}."
                runs.append(import_file(replace(settings, topic_prefix=prefix), path, rows,
                                        args.processes))
            say("(g) raw read …")
            g = raw_read(files[-1])
            say(f"(i) rebuilds with {args.processes} processes, of both imports …")
            smaller = rebuild(replace(settings, topic_prefix=f"benchimport{tag}h{sizes[0]}."),
                              args.processes)
            rebuilt = rebuild(replace(settings, topic_prefix=f"benchimport{tag}h{args.rows}."),
                              args.processes)
            say("profile of the import's stages …")
            prof = profile(replace(settings, topic_prefix=f"benchimport{tag}p."), files[-1])
            arrow = raw_read_arrow(files[-1])  # last: it holds the whole file in memory
    finally:
        say("cleaning up …")
        left = cleanup(base, replace(settings, topic_prefix=f"benchimport{tag}"), database)
        for item in left:
            print(f"not removed: {item}", file=sys.stderr)
    section = render(g, arrow, runs, rebuilt, args.processes, prof, smaller,
                     month_catch_up(args.append))
    print(section)
    if args.append is not None:
        with open(args.append, "a", encoding="utf-8") as f:
            f.write("\n" + section + "\n")
        say(f"added to {args.append}")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
