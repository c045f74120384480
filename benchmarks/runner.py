"""One benchmark run, :class:`Bench`: its set-up and clean-up, and every phase in turn.

A run works in a fresh database template and under a fresh topic prefix: it produces the data
set, clones a database for each measurement that writes the projection (so no phase sees
another's rows, indexes or statistics), runs (a) to (f) and the profile, and keeps the figures
for the report. Its clean-up stops the subprocesses, drops the databases and deletes the topics
and the consumer group whatever happened.

The measurements themselves are in ``limits``, ``catchup`` and ``latency``; this module orders
them and prints each phase's figures as it ends (:func:`say`), so a long run shows its progress.
RESULTS.md is written afterwards, by ``report``, from the figures kept here.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import platform
import re
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import psycopg
from confluent_kafka import KafkaException
from confluent_kafka import libversion as librdkafka_version
from confluent_kafka.admin import AdminClient

from benchmarks import REPO, catchup
from benchmarks.dataset import Event, dataset, months_ending, period_bounds
from benchmarks.latency import latency
from benchmarks.limits import raw_consume, raw_copy
from benchmarks.meters import CpuMeter, Throughput, broker_pid, scalar
from benchmarks.profile import ProfileSummary, new_profiler, summarise_run
from consumers.projector import GROUP_ID
from nyc311.kafka import EventProducer
from nyc311.settings import Settings, load_settings
from nyc311.topics import all_topics, default_partitions, ensure_topics
from producers.sealer import CHUNK as SEAL_CHUNK
from producers.sealer import ContactSealer
from reports.output import build_site
from reports.publish import publish_month
from storage.db import DATABASE_BUSY, admin_statement, connect
from storage.migrate import upgrade

log = logging.getLogger("benchmarks")

#: NYC 311 takes about 3.2 million service requests a year.
YEAR_REQUESTS = 3_200_000

RATIO_TARGET = 0.5  # c >= 0.5 x min(a, b)
PUBLISH_TARGET_S = 10.0
LATENCY_P99_TARGET_S = 1.0
YEAR_TARGET_S = 300.0


def say(text: str) -> None:
    print(text, flush=True)


def drop_database(admin: psycopg.Connection, name: str, attempts: int = 20) -> bool:
    """Drop ``name``; True once it is gone.

    ``WITH (FORCE)`` ends our own leftover sessions, but a role that is not a superuser may not
    end an autovacuum worker, which a bulk load invites, so FORCE then fails; a plain DROP asks
    autovacuum to stop by itself. Both are tried, a few times, before giving up.
    """
    try:
        admin_statement(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                        f'DROP DATABASE IF EXISTS "{name}"', attempts=attempts, delay=0.5)
    except DATABASE_BUSY:
        return False
    return True


def delete_topics(admin: AdminClient, prefix: str) -> None:
    """Delete every topic whose name starts with ``prefix``; KafkaException if one is not."""
    mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    if mine:
        for future in admin.delete_topics(mine, operation_timeout=30).values():
            future.result()


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def _read_meminfo_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _kafka_version() -> str:
    """The broker version the local services run (services/kafka/pom.xml)."""
    try:
        pom = (REPO / "services" / "kafka" / "pom.xml").read_text()
    except OSError:
        return "unknown"
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom)
    return found[1] if found else "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


class Bench:
    """One benchmark run: its database clones, topic prefix, child processes and figures."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        overrides: dict[str, Any] = {}
        if args.batch_size:
            overrides["batch_size"] = args.batch_size
        self.base = load_settings(**overrides)
        self.tag = uuid.uuid4().hex[:8]
        self.settings = replace(self.base, topic_prefix=f"bench{self.tag}.")
        self.months = months_ending(args.month, 12 if args.year else 1)
        self.requests: int = args.requests
        self.seed: int = args.seed
        self.template = f"nyc311_bench_{self.tag}_template"
        self.databases: list[str] = []
        self.children: list[subprocess.Popen[str]] = []
        self.figures: dict[str, Any] = {"tag": self.tag, "prefix": self.settings.topic_prefix}
        self.notes: list[str] = []
        self.produced: Counter[str] = Counter()
        self.produce_seconds = 0.0
        self.generate_seconds = 0.0
        self.broker = broker_pid(self.base.kafka_bootstrap_servers)
        self.partitions = default_partitions()
        self.profile: ProfileSummary | None = None

    # -- set-up and clean-up ----------------------------------------------------------------------

    def setup(self) -> None:
        with psycopg.connect(self.base.libpq_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.template}"')
        self.databases.append(self.template)
        upgrade(replace(self.settings,
                        database_url=_with_database(self.base.database_url, self.template)))
        ensure_topics(self.settings, all_topics(self.settings), partitions=self.partitions)

    def database(self, role: str) -> Settings:
        """A fresh migrated database (a clone of the template) for one measurement."""
        name = f"nyc311_bench_{self.tag}_{role}"
        with psycopg.connect(self.base.libpq_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
            self.databases.append(name)
            if self.args.synchronous_commit:
                admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = '
                              f"{self.args.synchronous_commit}")
        return replace(self.settings, database_url=_with_database(self.base.database_url, name))

    def cleanup(self) -> list[str]:
        """Stop the children, drop the databases, delete the topics and the consumer group.

        Never raises: every step is tried, and what could not be removed is returned.
        """
        left: list[str] = []
        for proc in self.children:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        try:
            with psycopg.connect(self.base.libpq_url, autocommit=True) as admin:
                for name in reversed(self.databases):
                    if not drop_database(admin, name):
                        left.append(f"database {name}")
        except psycopg.Error as exc:
            left.append(f"databases {', '.join(self.databases)} ({exc})")
        admin_client = AdminClient(self.settings.kafka_config())  # no network until asked
        try:
            delete_topics(admin_client, self.settings.topic_prefix)
        except KafkaException as exc:
            left.append(f"topics {self.settings.topic_prefix}* ({exc})")
        try:
            futures = admin_client.delete_consumer_groups([self.settings.group(GROUP_ID)],
                                                          request_timeout=10)
            for future in futures.values():
                future.result()
        except KafkaException as exc:  # never joined, or already gone: nothing to remove
            log.debug("consumer group not deleted: %s", exc)
        return left

    # -- produce ----------------------------------------------------------------------------------

    def produce(self, events: Iterator[Event], until: datetime | None) -> Event | None:
        """Produce ``events`` up to (not including) ``until``; return the first one left over."""
        leftover: Event | None = None
        started = time.perf_counter()
        # contacts are sealed at the edge, as the pipeline's own producers do (producers/sealer.py),
        # their keys written to the template, so that every measurement's clone of it has them
        vault = replace(self.settings,
                        database_url=_with_database(self.base.database_url, self.template))
        with EventProducer(self.settings) as producer, ContactSealer(vault) as sealer:
            chunk: list[Event] = []

            def send_chunk() -> None:
                for name, record in sealer.sealed(chunk):
                    producer.send(name, record)
                    self.produced[name] += 1
                chunk.clear()

            while True:
                before = time.perf_counter()
                try:
                    name, record = next(events)
                except StopIteration:
                    break
                self.generate_seconds += time.perf_counter() - before
                if until is not None and record["occurred_at"] >= until:
                    leftover = (name, record)
                    break
                chunk.append((name, record))
                if len(chunk) >= SEAL_CHUNK:
                    send_chunk()
            send_chunk()
        self.produce_seconds += time.perf_counter() - started
        return leftover

    # -- the projector as a subprocess ------------------------------------------------------------

    def projector_process(self, settings: Settings, *args: str,
                          batch_timeout: float | None = None,
                          output: IO[str] | None = None) -> subprocess.Popen[str]:
        """``python -m cli run projector`` on ``settings``' database and topics, kept for the
        clean-up to stop."""
        proc = catchup.projector_process(settings, *args, batch_timeout=batch_timeout,
                                         output=output)
        self.children.append(proc)
        return proc

    def memory_run(self, label: str) -> dict[str, Any]:
        """Catch a projector subprocess up on the topics as they are; its peak RSS and time."""
        settings = self.database(f"mem_{label}")
        events = sum(self.produced.values())
        figures = catchup.memory_run(settings, events, self.projector_process)
        records = figures["records"]
        if records != events:
            self.notes.append(f"memory run {label}: the projector reported {records:,} records "
                              f"for {events:,} events in the topics")
        return figures

    # -- (c) the projector in this process --------------------------------------------------------

    def catch_up(self, settings: Settings, max_seconds: float | None = None,
                 profiler: Any = None) -> tuple[Throughput, dict[str, float], dict[str, float]]:
        """:func:`benchmarks.catchup.catch_up`, noting records dead-lettered."""
        throughput, cores, memory, dead_lettered = catchup.catch_up(
            settings, self.broker, max_seconds, profiler)
        if dead_lettered:
            self.notes.append(f"the projector dead-lettered {dead_lettered:,} records")
        return throughput, cores, memory

    # -- (d) publication --------------------------------------------------------------------------

    def publish(self, settings: Settings) -> dict[str, Any]:
        """Aggregate and publish the period's last month, then build the whole site in memory."""
        month = self.months[-1]
        now = period_bounds([month])[1] + timedelta(days=45)
        with connect(settings, autocommit=True) as conn:
            started = time.perf_counter()
            publication, _new = publish_month(conn, month, now=now)
            aggregated = time.perf_counter()
            files = build_site(conn)
            built = time.perf_counter()
        return {"month": month, "aggregate_seconds": aggregated - started,
                "site_seconds": built - aggregated, "seconds": built - started,
                "rows": sum(len(rows) for rows in publication.tables.values()),
                "files": len(files), "bytes": sum(len(b) for b in files.values())}

    # -- the profile ------------------------------------------------------------------------------

    def profile_projector(self, seconds: float) -> ProfileSummary | None:
        """pyinstrument over a projector catch-up from zero, ``seconds`` at most."""
        profiler = new_profiler()
        if profiler is None:
            self.notes.append("no profile: pyinstrument is not installed "
                              "(.venv/bin/pip install pyinstrument)")
            return None
        throughput, _, _ = self.catch_up(self.database("profile"), max_seconds=seconds,
                                         profiler=profiler)
        return summarise_run(profiler, throughput.events)

    # -- the whole run ----------------------------------------------------------------------------

    def run(self) -> None:
        args = self.args
        self.figures["started"] = datetime.now(UTC)
        self.figures["machine"] = self.machine()
        say(f"benchmark {self.tag}: {', '.join(self.months)}, {self.requests:,} requests a month")
        self.setup()

        start, end = period_bounds(self.months)
        middle = start + (end - start) / 2
        events = dataset(self.months, self.requests, self.seed)
        say("producing the first half …")
        leftover = self.produce(events, middle)
        say(f"  {sum(self.produced.values()):,} events; projector subprocess on them …")
        memory_half = self.memory_run("half")
        say(f"  peak RSS {memory_half['vmhwm_mib']:.0f} MiB; producing the rest …")
        self.produce(itertools.chain([leftover] if leftover else [], events), None)
        total = sum(self.produced.values())
        self.figures["produce"] = {
            "events": total, "by_event": dict(self.produced), "seconds": self.produce_seconds,
            "generate_seconds": self.generate_seconds,
            "rate": total / self.produce_seconds if self.produce_seconds else 0.0,
            "requests": self.requests * len(self.months), "partitions": self.partitions}
        say(f"  {total:,} events at {self.figures['produce']['rate']:,.0f}/s")

        say("(a) raw consume + decode …")
        a, a_cores = raw_consume(self.settings, self.broker)
        self.figures["a"] = {**a.as_dict(), "cores": a_cores}
        say(f"  {a.rate:,.0f} events/s")

        say("(b) raw COPY …")
        b, rows, rows_by_table, b_cores = raw_copy(self.database("raw"), self.months,
                                                   self.requests, self.seed)
        self.figures["b"] = {**b.as_dict(), "rows": rows, "rows_by_table": rows_by_table,
                             "pg_cpu_seconds": b_cores["PostgreSQL backend"] * b.seconds,
                             "rows_rate": rows / b.seconds if b.seconds else 0.0,
                             "cores": b_cores}
        say(f"  {rows / b.seconds:,.0f} rows/s ({b.rate:,.0f} events/s)")

        say("(c) projector catch-up, one process …")
        one = self.database("one")
        c1, c1_cores, c1_memory = self.catch_up(one)
        counts1 = catchup.table_counts(one)
        limit = min(a.rate, b.rate)
        self.figures["c1"] = {**c1.as_dict(), "cores": c1_cores, "table_rows": counts1,
                              "memory": c1_memory, "c_over_a": c1.rate / a.rate,
                              "c_over_b": c1.rate / b.rate}
        say(f"  {c1.rate:,.0f} events/s: c/a {c1.rate / a.rate:.2f}, c/b {c1.rate / b.rate:.2f}")

        processes = args.processes
        say(f"(c) projector catch-up, nyc311 run projector --processes {processes} …")
        main = self.database("main")
        c, c_cores = catchup.catch_up_processes(main, processes, sum(self.produced.values()),
                                                self.broker, self.projector_process)
        counts = catchup.table_counts(main)
        for label, found in (("one process", counts1), (f"{processes} processes", counts)):
            if found != rows_by_table:
                self.notes.append(f"projection rows ({label}) {found} differ from the raw "
                                  f"COPY's {rows_by_table}")
        self.figures["c"] = {**c.as_dict(), "cores": c_cores, "table_rows": counts,
                             "processes": processes,
                             "c_over_a": c.rate / a.rate, "c_over_b": c.rate / b.rate,
                             "limit": limit, "target_rate": RATIO_TARGET * limit,
                             "met": c.rate >= RATIO_TARGET * limit}
        say(f"  {c.rate:,.0f} events/s: c/a {c.rate / a.rate:.2f}, c/b {c.rate / b.rate:.2f}, "
            f"target ≥ {RATIO_TARGET * limit:,.0f}/s "
            f"({'met' if self.figures['c']['met'] else 'missed'})")

        say("memory: projector subprocess on the whole topics …")
        memory_full = self.memory_run("full")
        self.figures["memory"] = {"half": memory_half, "full": memory_full}
        say(f"  peak RSS {memory_full['vmhwm_mib']:.0f} MiB "
            f"(half: {memory_half['vmhwm_mib']:.0f} MiB)")

        say("(d) aggregation and publication …")
        d = self.publish(main)
        d["met"] = d["seconds"] < PUBLISH_TARGET_S
        self.figures["d"] = d
        say(f"  {d['seconds']:.2f} s")

        say(f"(e) latency at {args.latency_rate:,.0f} events/s for {args.latency_seconds:.0f} s …")
        e = latency(main, args.latency_rate, args.latency_seconds, self.months, self.seed,
                    self.projector_process)
        if "visible_p99" in e:
            e["met"] = e["visible_p99"] < LATENCY_P99_TARGET_S
            say(f"  p50 {e['visible_p50'] * 1000:.0f} ms, p99 {e['visible_p99'] * 1000:.0f} ms")
        else:
            e["met"] = False
            self.notes.append(f"latency: {e.get('error')}")
        self.figures["e"] = e

        self.figures["f"] = self.year(c1)  # `nyc311 rebuild` projects in one process
        say(f"(f) a year: {self.figures['f']['seconds']:.0f} s")

        missed = not self.figures["c"]["met"] or not self.figures["f"]["met"]
        if args.profile == "always" or (args.profile == "auto" and missed):
            say(f"profiling the projector ({args.profile_seconds:.0f} s) …")
            self.profile = self.profile_projector(args.profile_seconds)
        self.figures["finished"] = datetime.now(UTC)

    def year(self, c: Throughput) -> dict[str, Any]:
        """A year's rebuild: (c) extrapolated linearly in events, or, with --year, (c) itself
        (twelve months caught up) scaled to exactly YEAR_REQUESTS."""
        produced = sum(self.produced.values())
        requests = self.requests * len(self.months)
        events = round(produced * YEAR_REQUESTS / requests)
        measured = len(self.months) == 12
        if measured:
            seconds = c.seconds * YEAR_REQUESTS / requests
            arithmetic = (
                f"measured: {produced:,} events ({requests:,} requests, twelve months) caught up "
                f"in {c.seconds:,.0f} s; scaled to {YEAR_REQUESTS:,} requests: {c.seconds:,.0f} s "
                f"× {YEAR_REQUESTS:,} / {requests:,} = {seconds:,.0f} s ({seconds / 60:.1f} min)")
        else:
            seconds = c.fixed_seconds + events / c.rate if c.rate else float("inf")
            arithmetic = (
                f"{produced:,} events for {requests:,} requests × {YEAR_REQUESTS:,} / "
                f"{requests:,} = {events:,} events a year; {events:,} ÷ {c.rate:,.0f} events/s "
                f"+ {c.fixed_seconds:.1f} s start-up = {seconds:,.0f} s "
                f"({seconds / 60:.1f} min)")
        needed = events / max(1.0, YEAR_TARGET_S - c.fixed_seconds)
        return {"measured": measured, "events": events, "seconds": seconds,
                "arithmetic": arithmetic, "needed_rate": needed,
                "met": seconds < YEAR_TARGET_S}

    def machine(self) -> dict[str, Any]:
        load = os.getloadavg()
        meter = CpuMeter()
        meter.start()
        time.sleep(2)
        meter.stop()
        cores = meter.cores()
        with psycopg.connect(self.base.libpq_url, autocommit=True) as conn:
            pg = {name: str(scalar(conn, f"SHOW {name}")) for name in
                  ("server_version", "synchronous_commit", "fsync", "shared_buffers")}
        return {
            "nproc": len(os.sched_getaffinity(0)), "memory_gib": _read_meminfo_gib(),
            "cpu": _cpu_model(), "kernel": platform.release(),
            "python": platform.python_version(), "kafka": _kafka_version(),
            "confluent_kafka": _version("confluent-kafka"), "librdkafka": librdkafka_version()[0],
            "fastavro": _version("fastavro"), "psycopg": _version("psycopg"), "postgresql": pg,
            "loadavg": load,
            "busy_cores_before": (cores.get("other (rest of the machine)", 0.0)
                                  + cores.get("this process", 0.0)),
        }
