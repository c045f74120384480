"""``make bench``: how fast the pipeline is, as ratios against what the machine can do.

Why ratios: an absolute figure (events/s) says as much about the machine, and whatever else runs
on it, as about the code. So every run measures, on the same services and the same data, the two
limits the projector cannot beat: reading and decoding the topics (a) and COPYing the same rows
into the same tables (b). The projector (c) is reported as a share of the slower of the two; the
target c ≥ 0.5 × min(a, b) says "the projector's own work costs no more than the work nobody can
avoid".

Everything happens in a fresh database and under a fresh topic prefix, removed at the end:

- produce a NYC-scale month: the simulator's requests and closures, plus the surveys the
  dispatcher would send (one per closure of a request with a contact) and the answers a realistic
  share of people give; the first half of the month first, then the rest;
- peak memory of the projector subprocess after the first half and after the whole month, to
  show that it does not grow with the topics;
- (a) raw consume + decode, (b) raw COPY, (c) the projector catching up from zero;
- (d) the month's aggregation and publication; (e) end-to-end latency at a steady rate;
- (f) a year's rebuild, extrapolated from (c), or measured with ``--year``;
- a pyinstrument profile of the projector when (c) or (f) misses its target.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import logging
import math
import os
import platform
import random
import re
import shlex
import signal
import site
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from confluent_kafka import libversion as librdkafka_version
from confluent_kafka.admin import AdminClient

from consumers.loop import ConsumeLoop
from nyc311.kafka import log_end_offsets
from consumers.projector import GROUP_ID, TABLES, Projector, _rows
from consumers.workers import worker_pids
from nyc311.kafka import EventProducer
from nyc311.settings import ENV_FILE_NAME, Settings, load_settings, read_env_file
from nyc311.topics import all_topics, default_partitions, ensure_topics
from producers.sealer import CHUNK as SEAL_CHUNK
from producers.sealer import ContactSealer
from producers.simulate import NEW_YORK, Weighted, month_days, simulate_month
from reports.output import build_site
from reports.publish import publish_month
from schemas.serde import BY_TOPIC, Serde
from storage.db import connect
from storage.migrate import upgrade
from survey.i18n.languages import resolve_language

log = logging.getLogger("benchmarks")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path("benchmarks") / "RESULTS.md"
#: A month that has ended, fixed so that two runs produce the same events.
DEFAULT_MONTH = "2026-10"
SEED = 311
#: NYC 311 takes about 3.2 million service requests a year.
YEAR_REQUESTS = 3_200_000
SMOKE_REQUESTS = 1_500

RATIO_TARGET = 0.5  # c >= 0.5 x min(a, b)
PUBLISH_TARGET_S = 10.0
LATENCY_P99_TARGET_S = 1.0
YEAR_TARGET_S = 300.0

#: The latency projector's NYC311_BATCH_TIMEOUT: a live service waits little to fill a batch.
LATENCY_BATCH_TIMEOUT = 0.05
#: Visibility is polled this often; the figure is at most this much late.
POLL_INTERVAL_S = 0.02
#: The latency records get request ids ``8`` + 10 digits; simulated ids start with ``9``.
LATENCY_ID_PREFIX = "8"

# Survey assumptions (documented in benchmarks/README.md). The dispatcher surveys every closure
# of a request that gave a contact, a few minutes after the closure; a minority answer, hours
# later, with the satisfaction mix of NYC's own survey (demo/answer_surveys.py).
SURVEY_DELAY_S = (60, 900)
ANSWER_SHARE = 0.15
ANSWER_DELAY_MEDIAN_S = 6 * 3600
ANSWER_DELAY_SIGMA = 1.2
SATISFACTION: Weighted[str] = Weighted({"STRONGLY_DISAGREE": 54, "STRONGLY_AGREE": 24,
                                        "AGREE": 9, "DISAGREE": 8, "NEUTRAL": 5})
REOPEN_SHARE = {"STRONGLY_DISAGREE": 0.45, "DISAGREE": 0.25, "NEUTRAL": 0.05}
FEEDBACK_SHARE = 0.3
FEEDBACK = ("Nobody came.", "Fixed quickly, thank you.", "The problem is back.",
            "Closed without any work done.", "Took too long.")

Event = tuple[str, dict[str, Any]]


# -- the data set ---------------------------------------------------------------------------------


def months_ending(month: str, count: int) -> list[str]:
    """``count`` consecutive months ending with ``month``, oldest first."""
    month_days(month)  # validates
    year, number = int(month[:4]), int(month[5:7])
    out = []
    for _ in range(count):
        out.append(f"{year:04d}-{number:02d}")
        year, number = (year - 1, 12) if number == 1 else (year, number - 1)
    return out[::-1]


def period_bounds(months: list[str]) -> tuple[datetime, datetime]:
    """First instant of the first month and of the month after the last, New York time, in UTC."""
    first = month_days(months[0])[0]
    after = month_days(months[-1])[-1] + timedelta(days=1)
    return (datetime(first.year, first.month, first.day, tzinfo=NEW_YORK).astimezone(UTC),
            datetime(after.year, after.month, after.day, tzinfo=NEW_YORK).astimezone(UTC))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _surveys(rng: random.Random, closure: dict[str, Any], channel: str,
             language: str) -> list[Event]:
    """The SurveySent the dispatcher would produce for ``closure``, and maybe its answer."""
    sent_at = closure["occurred_at"] + timedelta(seconds=rng.randrange(*SURVEY_DELAY_S))
    survey_id = _uuid(rng)
    out: list[Event] = [("survey_sent", {
        "event_id": _uuid(rng), "occurred_at": sent_at, "request_id": closure["request_id"],
        "survey_id": survey_id, "channel": channel, "language": language,
        "closure_event_id": closure["event_id"]})]
    if rng.random() < ANSWER_SHARE:
        delay = rng.lognormvariate(math.log(ANSWER_DELAY_MEDIAN_S), ANSWER_DELAY_SIGMA)
        level = SATISFACTION.pick(rng)
        out.append(("survey_answered", {
            "event_id": _uuid(rng), "occurred_at": sent_at + timedelta(seconds=round(delay)),
            "request_id": closure["request_id"], "survey_id": survey_id, "language": language,
            "satisfaction": level, "reopen_requested": rng.random() < REOPEN_SHARE.get(level, 0),
            "feedback": rng.choice(FEEDBACK) if rng.random() < FEEDBACK_SHARE else None}))
    return out


def with_surveys(events: Iterable[Event], seed: int) -> Iterator[Event]:
    """``events`` (sorted by ``occurred_at``) with survey events merged in, still sorted.

    Streams: only requests still open are remembered, so a year does not have to fit in memory.
    """
    rng = random.Random(f"bench-surveys/{seed}")
    open_requests: dict[str, tuple[str, str]] = {}  # request id -> (survey channel, language)
    pending: list[tuple[datetime, int, Event]] = []
    sequence = 0
    for name, record in events:
        while pending and pending[0][0] <= record["occurred_at"]:
            yield heapq.heappop(pending)[2]
        yield name, record
        if name == "request_created":
            contact = record["contact"] or {}
            if contact.get("email") or contact.get("phone"):
                open_requests[record["request_id"]] = (
                    "EMAIL" if contact.get("email") else "SMS",
                    resolve_language(record["language"]))
        elif name == "request_closed":
            survey = open_requests.pop(record["request_id"], None)
            if survey is not None:
                for event in _surveys(rng, record, *survey):
                    sequence += 1
                    heapq.heappush(pending, (event[1]["occurred_at"], sequence, event))
    while pending:
        yield heapq.heappop(pending)[2]


def dataset(months: list[str], requests: int, seed: int) -> Iterator[Event]:
    """Every event of ``months`` (``requests`` a month), sorted by ``occurred_at``; the same
    arguments give the same events, so (b) can regenerate what was produced."""
    streams = [simulate_month(month, requests, seed) for month in months]
    merged: Iterable[Event] = streams[0] if len(streams) == 1 else heapq.merge(
        *streams, key=lambda event: event[1]["occurred_at"])
    return with_surveys(merged, seed)


# -- measuring ------------------------------------------------------------------------------------


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def pid_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process (all its threads), or None when it is gone."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the machine since boot, all CPUs together."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal
    return (total - values[3] - values[4]) / CLOCK_TICKS, total / CLOCK_TICKS


def proc_status_kib(pid: int, key: str) -> int | None:
    """A ``/proc/<pid>/status`` memory line (``VmHWM``: peak RSS, ``VmRSS``: RSS), in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def broker_pid(bootstrap_servers: str) -> int | None:
    """The local Kafka broker's pid (``make services-up``), to count its CPU; None when the
    benchmark talks to another broker (testcontainers, a remote cluster)."""
    try:
        local = read_env_file(REPO / ENV_FILE_NAME).get("KAFKA_BOOTSTRAP_SERVERS")
        pid = int((REPO / ".services" / "kafka" / "kafka.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    if local != bootstrap_servers:
        return None
    return pid if pid_cpu_seconds(pid) is not None else None


@dataclass(frozen=True)
class CpuSample:
    at: float
    own: float
    pids: dict[str, float | None]
    busy: float
    total: float


class CpuMeter:
    """Who used the CPUs over a window: this process, named processes, everything else.

    Why: on two cores the projector, PostgreSQL and the broker compete; a rate means little
    without knowing whether the projector's process was saturated or waiting, and whether other
    work on the machine took cores away during the measurement.
    """

    def __init__(self, pids: dict[str, int | list[int] | None] | None = None) -> None:
        self.pids: dict[str, int | list[int] | None] = dict(pids or {})  # name -> pid(s)
        self.first: CpuSample | None = None
        self.last: CpuSample | None = None
        self._seen: dict[int, float] = {}  # a process that has exited keeps its last reading

    def _reading(self, pids: int | list[int] | None) -> float | None:
        """CPU seconds of a process, or summed over several; None if none was ever seen."""
        known = False
        total = 0.0
        for pid in pids if isinstance(pids, list) else [pids]:
            now = pid_cpu_seconds(pid)
            if pid is not None and now is not None:
                self._seen[pid] = now
            if pid in self._seen:
                total += self._seen[pid]
                known = True
        return total if known else None

    def sample(self) -> CpuSample:
        times = os.times()
        busy, total = machine_cpu_seconds()
        return CpuSample(time.perf_counter(), times.user + times.system,
                         {name: self._reading(pids) for name, pids in self.pids.items()},
                         busy, total)

    def start(self) -> None:
        self.first = self.last = self.sample()

    def stop(self) -> None:
        self.last = self.sample()

    def cores(self) -> dict[str, float]:
        """Cores used on average over the window, by user; ``other`` is everything else."""
        first, last = self.first, self.last
        if first is None or last is None or last.at - first.at <= 0:
            return {}
        wall = last.at - first.at
        out = {"this process": (last.own - first.own) / wall}
        for name in self.pids:
            before, after = first.pids.get(name), last.pids.get(name)
            if before is not None and after is not None:
                out[name] = (after - before) / wall
        busy = (last.busy - first.busy) / wall
        out["other (rest of the machine)"] = max(0.0, busy - sum(out.values()))
        out["idle"] = max(0.0, (last.total - first.total) / wall - busy)
        return out


@dataclass
class Throughput:
    """A run's events over its whole wall time and over its steady part.

    The steady part runs from the end of the first batch to the end of the last one: start-up
    (group join, first fetch) and the final lag check do not grow with the topics, so they are
    kept apart, and a year is extrapolated from the steady rate plus those fixed seconds.
    """

    events: int
    seconds: float
    steady_events: int
    steady_seconds: float
    batches: int

    @property
    def steady(self) -> bool:
        return self.batches >= 3 and self.steady_seconds > 0 and self.steady_events > 0

    @property
    def rate(self) -> float:
        if self.steady:
            return self.steady_events / self.steady_seconds
        return self.overall

    @property
    def overall(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def fixed_seconds(self) -> float:
        """The seconds of the run that the steady rate does not explain."""
        return max(0.0, self.seconds - self.events / self.rate) if self.rate > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        return {"events": self.events, "seconds": self.seconds, "rate": self.rate,
                "steady_events": self.steady_events,
                "overall_rate": self.overall, "steady_seconds": self.steady_seconds,
                "fixed_seconds": self.fixed_seconds, "batches": self.batches}


class Marks:
    """Batch end times and running totals, for :class:`Throughput`."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.points: list[tuple[float, int]] = []

    def mark(self, total: int) -> None:
        self.points.append((time.perf_counter(), total))

    def throughput(self, total: int, ended: float) -> Throughput:
        if not self.points:
            return Throughput(total, ended - self.started, total, ended - self.started, 0)
        (first_at, first_total), (last_at, last_total) = self.points[0], self.points[-1]
        return Throughput(total, ended - self.started, last_total - first_total,
                          last_at - first_at, len(self.points))


RAW_FETCH = {"fetch.max.bytes": 64 * 2**20, "max.partition.fetch.bytes": 8 * 2**20,
             "queued.max.messages.kbytes": 65536}


def loop_consumer_config(settings: Settings) -> dict[str, Any]:
    """The librdkafka configuration the projector's consume loop uses (fetch sizes included),
    so the raw consumer of (a) reads exactly as the projector does, whatever the loop sets."""
    loop = ConsumeLoop(settings, GROUP_ID, Projector(settings))  # no network until run()
    return dict(loop._consumer_config)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


# -- the profile ----------------------------------------------------------------------------------

#: (path fragment, function or "" for any, category). Every sample goes to the category of the
#: deepest frame on its stack that matches, so "validation" wins over "decode" under it.
PROFILE_RULES: tuple[tuple[str, str, str], ...] = (
    ("consumers/loop.py", "", "loop bookkeeping (Item per record, offsets, stats)"),
    ("consumers/loop.py", "_on_assign", "start-up (assignment, stored offsets)"),
    ("consumers/loop.py", "_caught_up", "lag check"),
    ("consumers/loop.py", "_commit_kafka", "Kafka offset commit"),
    ("consumers/loop.py", "_close", "close"),
    ("<built-in>", "Consumer.consume", "Kafka consume() (librdkafka: fetch, Message objects)"),
    ("consumers/projector.py", "decode", "decode: topic lookup, key check"),
    ("schemas/serde.py", "", "decode: Avro (fastavro)"),
    ("uuid.py", "", "decode: Avro (fastavro)"),
    ("schemas/validate.py", "", "decode: validation rules"),
    ("consumers/projector.py", "_rows", "decode: row mapping"),
    ("consumers/projector.py", "write", "write: grouping rows by table"),
    ("psycopg/_copy", "", "write: COPY to staging (formatting rows, sending)"),
    ("psycopg/cursor.py", "execute", "write: merge INSERT … ON CONFLICT (server)"),
    ("storage/offsets.py", "", "write: offsets upsert"),
    ("psycopg/transaction.py", "", "write: BEGIN / COMMIT (WAL flush)"),
    ("nyc311/metrics.py", "", "metrics"),
    ("prometheus_client", "", "metrics"),
)


@dataclass
class ProfileSummary:
    seconds: float
    records: int
    categories: list[tuple[str, float]]
    self_frames: list[tuple[str, float]]
    tree: str


def clean_paths(text: str) -> str:
    """``text`` with the repository's, the interpreter's and the home folder's paths cut off,
    so the report names files as the reader's checkout does and no machine path."""
    prefixes = {str(REPO), sys.prefix, sys.base_prefix, str(Path.home()),
                *site.getsitepackages(), sysconfig.get_paths()["stdlib"]}
    for prefix in sorted(prefixes, key=len, reverse=True):
        text = text.replace(prefix.rstrip("/") + "/", "")
    return text


def _frame_label(frame: Any) -> str:
    return clean_paths(f"{frame.function} ({frame.file_path_short}:{frame.line_no})")


def summarise_profile(root: Any, records: int, tree: str) -> ProfileSummary:
    """Fold pyinstrument's call tree into categories and the frames with the most self time."""
    categories: dict[str, float] = defaultdict(float)
    self_time: dict[str, float] = defaultdict(float)

    def walk(frame: Any, category: str, owner: str) -> None:
        if not frame.is_synthetic:
            path = str(frame.file_path or "")
            for fragment, function, name in PROFILE_RULES:
                if fragment in path and function in ("", frame.function):
                    category = name
            owner = _frame_label(frame)
        children = list(frame.children)
        own = frame.time - sum(child.time for child in children)
        if own > 0 or (frame.is_synthetic and not children):
            spent = own if own > 0 else frame.time
            categories[category] += spent
            self_time[owner] += spent
        for child in children:
            walk(child, category, owner)

    walk(root, "other", "other")
    return ProfileSummary(seconds=float(root.time), records=records,
                          categories=_largest(categories),
                          self_frames=_largest(self_time)[:15], tree=tree)


def _largest(values: dict[str, float]) -> list[tuple[str, float]]:
    return sorted(values.items(), key=lambda item: -item[1])


# -- the benchmark --------------------------------------------------------------------------------


def scalar(conn: psycopg.Connection, query: str, params: tuple[Any, ...] | None = None) -> Any:
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise RuntimeError(f"no row from {query}")
    return row[0]


def drop_database(admin: psycopg.Connection, name: str, attempts: int = 20) -> bool:
    """Drop ``name``; True once it is gone.

    ``WITH (FORCE)`` ends our own leftover sessions, but a role that is not a superuser may not
    end an autovacuum worker, which a bulk load invites, so FORCE then fails; a plain DROP asks
    autovacuum to stop by itself. Both are tried, a few times, before giving up.
    """
    for attempt in range(attempts):
        for statement in (f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                          f'DROP DATABASE IF EXISTS "{name}"'):
            try:
                admin.execute(statement)
                return True
            except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse) as exc:
                log.debug("drop %s, attempt %d: %s", name, attempt + 1, exc)
        time.sleep(0.5)
    return False


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
            mine = [t for t in admin_client.list_topics(timeout=10).topics
                    if t.startswith(self.settings.topic_prefix)]
            if mine:
                for future in admin_client.delete_topics(mine, operation_timeout=30).values():
                    future.result()
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
        """``python -m cli run projector`` on ``settings``' database and topics."""
        env = dict(os.environ)
        env.update({
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "DATABASE_URL": settings.database_url,
            "NYC311_DB_SCHEMA": settings.db_schema,
            "NYC311_TOPIC_PREFIX": settings.topic_prefix,
            "NYC311_BATCH_SIZE": str(settings.batch_size),
            "NYC311_BATCH_TIMEOUT": str(settings.batch_timeout if batch_timeout is None
                                        else batch_timeout),
            "NYC311_LOG_LEVEL": "WARNING",
            "NYC311_LOG_FORMAT": "text",
        })
        proc = subprocess.Popen([sys.executable, "-m", "cli", "run", "projector", *args],
                                cwd=REPO, env=env, text=True, stdout=output or subprocess.DEVNULL,
                                stderr=subprocess.STDOUT if output else subprocess.DEVNULL)
        self.children.append(proc)
        return proc

    def memory_run(self, label: str) -> dict[str, Any]:
        """Catch a projector subprocess up on the topics as they are; its peak RSS and time."""
        settings = self.database(f"mem_{label}")
        events = sum(self.produced.values())
        with tempfile.TemporaryFile("w+") as output:
            started = time.perf_counter()
            proc = self.projector_process(settings, "--until-caught-up", output=output)
            peak, cpu = 0, None
            deadline = started + max(600.0, events / 500)
            while proc.poll() is None:
                peak = max(peak, proc_status_kib(proc.pid, "VmHWM") or 0)
                cpu = pid_cpu_seconds(proc.pid) or cpu
                if time.perf_counter() > deadline:
                    proc.kill()
                    raise RuntimeError(f"the projector subprocess did not catch up on {events:,} "
                                       "events in time")
                time.sleep(0.05)
            seconds = time.perf_counter() - started
            output.seek(0)
            text = output.read()
        if proc.returncode != 0:
            raise RuntimeError(f"the projector subprocess failed ({proc.returncode}):\n{text}")
        found = re.search(r"projector: ([\d,]+) records", text)
        records = int(found[1].replace(",", "")) if found else -1
        if records != events:
            self.notes.append(f"memory run {label}: the projector reported {records:,} records "
                              f"for {events:,} events in the topics")
        return {"events": events, "records": records, "seconds": seconds,
                "rate": records / seconds if seconds else 0.0, "cpu_seconds": cpu or 0.0,
                "vmhwm_mib": peak / 1024}

    # -- (a) raw consume --------------------------------------------------------------------------

    def topic_partitions(self) -> list[tuple[str, int]]:
        topics = Projector(self.settings).topics
        metadata_ = AdminClient(self.settings.kafka_config()).list_topics(timeout=10)
        return [(t, p) for t in topics for p in sorted(metadata_.topics[t].partitions)]

    def raw_consume(self) -> tuple[Throughput, dict[str, float]]:
        """Read every projected topic in batches and decode every record: no database at all."""
        partitions = self.topic_partitions()
        ends = log_end_offsets(AdminClient(self.settings.kafka_config()), partitions)
        expected = sum(ends.values())
        names = {self.settings.topic(topic): event.name for topic, event in BY_TOPIC.items()}
        serde = Serde(logical_types=False)  # as the projector decodes
        # the raw limit: the loop's settings, but the largest fetches and local queue (the loop
        # keeps them small to bound its memory), so (a) is what the machine can do
        consumer = Consumer({**loop_consumer_config(self.settings),
                             **RAW_FETCH,
                             "group.id": self.settings.group("bench-raw-consume")})
        meter = CpuMeter({"Kafka broker": self.broker})
        marks = Marks()
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in partitions])
        count = 0
        deadline = time.monotonic() + max(600.0, expected / 1000)
        try:
            while count < expected and time.monotonic() < deadline:
                messages = consumer.consume(self.settings.batch_size, 1.0)
                for msg in messages:
                    if msg.error() is not None:
                        continue
                    serde.decode(names[str(msg.topic())], msg.value())
                    count += 1
                if messages:
                    marks.mark(count)
                    if len(marks.points) == 1:
                        meter.start()
                    else:
                        meter.stop()
        finally:
            consumer.close()
        if count < expected:
            raise RuntimeError(f"raw consume read {count:,} of {expected:,} records")
        return marks.throughput(count, marks.points[-1][0]), meter.cores()

    # -- (b) raw COPY -----------------------------------------------------------------------------

    def raw_copy(self) -> tuple[Throughput, int, dict[str, int], dict[str, float]]:
        """COPY the projector's own rows straight into the real tables of a scratch database,
        in transactions of one batch each: what PostgreSQL can take, with no merge at all.

        Only the COPY and COMMIT are timed, on a clock of their own; regenerating the events
        (the same deterministic data set) is not, so it needs no memory for a month of rows.
        """
        settings = self.database("raw")
        rows_by_table: Counter[str] = Counter()
        events = 0
        ends: list[tuple[float, int]] = []  # (COPY clock, events) at the end of each batch
        pg_cpu = 0.0
        buffer: dict[Any, list[tuple[Any, ...]]] = defaultdict(list)
        with connect(settings, autocommit=True) as conn:
            backend = conn.info.backend_pid

            def flush() -> None:
                nonlocal pg_cpu
                before = time.perf_counter()
                pg_before = pid_cpu_seconds(backend) or 0.0
                with conn.transaction(), conn.cursor() as cur:
                    for table in TABLES:
                        rows = buffer.get(table)
                        if not rows:
                            continue
                        with cur.copy(f"COPY {table.name} ({', '.join(table.columns)}) "
                                      "FROM STDIN") as copy:
                            for row in rows:
                                copy.write_row(row)
                        rows_by_table[table.name] += len(rows)
                pg_cpu += (pid_cpu_seconds(backend) or 0.0) - pg_before
                clock = (ends[-1][0] if ends else 0.0) + time.perf_counter() - before
                ends.append((clock, events))
                buffer.clear()

            for name, record in dataset(self.months, self.requests, self.seed):
                for table, row in _rows(name, record):
                    buffer[table].append(row)
                events += 1
                if events % self.settings.batch_size == 0:
                    flush()
            if buffer:
                flush()
        seconds = ends[-1][0] if ends else 0.0
        throughput = Throughput(events, seconds, events - ends[0][1] if ends else events,
                                seconds - ends[0][0] if ends else seconds, len(ends))
        cores = {"PostgreSQL backend": pg_cpu / seconds if seconds else 0.0}
        return throughput, sum(rows_by_table.values()), dict(rows_by_table), cores

    # -- (c) the projector ------------------------------------------------------------------------

    def catch_up(self, settings: Settings, max_seconds: float | None = None,
                 profiler: Any = None) -> tuple[Throughput, dict[str, float], dict[str, float]]:
        """The projector (ConsumeLoop + Projector) in this process, from zero until caught up.

        Also returns how this process's RSS and Python's allocated blocks grew during the run:
        RSS growing while the Python heap does not points at native memory (librdkafka).
        """
        meter = CpuMeter({"PostgreSQL backend": None, "Kafka broker": self.broker})
        pid = os.getpid()
        rss_before = proc_status_kib(pid, "VmRSS") or 0
        blocks_before = sys.getallocatedblocks()
        memory = {"rss_growth_mib": 0.0, "blocks_growth": 0.0}

        class Measured(Projector):
            """The projector, noting its database backend's pid so its CPU can be counted."""

            def setup(self, conn: psycopg.Connection) -> None:
                super().setup(conn)
                meter.pids["PostgreSQL backend"] = conn.info.backend_pid

        loop = ConsumeLoop(settings, GROUP_ID, Measured(settings))
        marks = Marks()

        def on_batch(current: ConsumeLoop) -> None:
            marks.mark(current.stats.records)
            rss = ((proc_status_kib(pid, "VmRSS") or 0) - rss_before) / 1024
            memory["rss_growth_mib"] = max(memory["rss_growth_mib"], rss)
            memory["blocks_growth"] = max(memory["blocks_growth"],
                                          sys.getallocatedblocks() - blocks_before)
            if len(marks.points) == 1:
                meter.start()
            else:
                meter.stop()

        if profiler is not None:
            profiler.start()
        try:
            stats = loop.run(until_caught_up=True, max_seconds=max_seconds or 3600.0,
                             on_batch=on_batch)
        finally:
            if profiler is not None:
                profiler.stop()
        ended = time.perf_counter()
        if stats.dead_lettered:
            self.notes.append(f"the projector dead-lettered {stats.dead_lettered:,} records")
        return marks.throughput(stats.records, ended), meter.cores(), memory

    def catch_up_processes(self, settings: Settings, processes: int
                           ) -> tuple[Throughput, dict[str, float]]:
        """``nyc311 run projector --until-caught-up --processes N`` from zero, as an operator
        runs it: progress is read from the offsets the workers store in PostgreSQL with their
        rows (polled every 50 ms), so a point counts only what is committed and visible."""
        expected = sum(self.produced.values())
        marks = Marks()
        started = time.perf_counter()
        proc = self.projector_process(settings, "--until-caught-up", "--processes",
                                      str(processes))
        meter = CpuMeter({"Kafka broker": self.broker})
        deadline = started + max(600.0, expected / 500)
        with connect(settings, autocommit=True) as conn:
            own_backend = conn.info.backend_pid
            done = 0
            while True:
                running = proc.poll() is None
                done = int(scalar(conn, "SELECT coalesce(sum(next_offset), 0) FROM "
                                        "consumer_offsets WHERE group_id = %s",
                                  (settings.group(GROUP_ID),)))
                if done and (not marks.points or done != marks.points[-1][1]):
                    marks.mark(done)
                    if meter.first is None:
                        # the CPU window opens once every worker is connected and committing
                        workers = worker_pids(proc.pid)
                        backends = [int(r[0]) for r in conn.execute(
                            "SELECT pid FROM pg_stat_activity WHERE datname = "
                            "current_database() AND pid <> %s", (own_backend,))]
                        if len(backends) >= processes or done >= expected:
                            meter.pids[f"projector processes ({len(workers)})"] = workers
                            meter.pids[f"PostgreSQL backends ({len(backends)})"] = backends
                            meter.start()
                    elif done < expected or running:
                        meter.stop()
                if not running:
                    break
                if time.perf_counter() > deadline:
                    proc.kill()
                    raise RuntimeError(f"the projector processes did not catch up on "
                                       f"{expected:,} events in time")
                time.sleep(0.05)
        ended = time.perf_counter()
        if proc.returncode != 0:
            raise RuntimeError(f"nyc311 run projector --processes {processes} failed "
                               f"({proc.returncode})")
        marks.started = started
        cores = meter.cores()
        return marks.throughput(done, ended), cores

    def table_counts(self, settings: Settings) -> dict[str, int]:
        with connect(settings, autocommit=True) as conn:
            return {t.name: int(scalar(conn, f"SELECT count(*) FROM {t.name}")) for t in TABLES}

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

    # -- (e) latency ------------------------------------------------------------------------------

    def latency(self, settings: Settings, rate: float, seconds: float) -> dict[str, Any]:
        """Produce RequestCreated at a steady ``rate`` with occurred_at = send time, to a live
        projector subprocess; per record: when it became visible in PostgreSQL (polled), and
        ``projected_at − created_at`` as PostgreSQL recorded it (its transaction's start)."""
        count = max(1, round(rate * seconds))
        after = period_bounds(self.months)[1]
        templates = [record for name, record in
                     simulate_month(f"{after:%Y-%m}", min(count, 5_000), self.seed + 1)
                     if name == "request_created"]
        with tempfile.TemporaryFile("w+") as output:
            proc = self.projector_process(settings, batch_timeout=LATENCY_BATCH_TIMEOUT,
                                          output=output)
            try:
                result = self._measure_latency(settings, templates, count, rate)
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            if result.get("error"):
                output.seek(0)
                result["projector_output"] = output.read()[-2000:]
        return result

    def _measure_latency(self, settings: Settings, templates: list[dict[str, Any]], count: int,
                         rate: float) -> dict[str, Any]:
        def record(number: int, at: float) -> dict[str, Any]:
            template = templates[number % len(templates)]
            return {**template, "event_id": str(uuid.uuid4()),
                    "request_id": f"{LATENCY_ID_PREFIX}{number:010d}",
                    "occurred_at": datetime.fromtimestamp(at, UTC)}

        sent: list[tuple[str, float]] = []
        done = threading.Event()
        with EventProducer(settings) as producer:
            # warm-up: one record, waited for, so the group join is not counted as latency
            warm = record(0, time.time())
            producer.send("request_created", warm)
            producer.flush()
            with connect(settings, autocommit=True) as conn:
                deadline = time.monotonic() + 120
                while not conn.execute("SELECT 1 FROM requests WHERE request_id = %s",
                                       (warm["request_id"],)).fetchone():
                    if time.monotonic() > deadline:
                        return {"error": "the projector did not project the warm-up record"}
                    time.sleep(0.1)
            watcher = Visibility(settings, sent, done)
            watcher.start()
            try:
                started = time.time()
                for number in range(1, count + 1):
                    delay = started + (number - 1) / rate - time.time()
                    if delay > 0:
                        time.sleep(delay)
                    at = time.time()
                    item = record(number, at)
                    producer.send("request_created", item)
                    sent.append((item["request_id"], at))
                finished = time.time()
                producer.flush()
            finally:
                done.set()
                watcher.join()
        visible = [watcher.seen[rid] - at for rid, at in sent if rid in watcher.seen]
        server = [watcher.server[rid] for rid, _ in sent if rid in watcher.server]
        if not visible:
            return {"error": "no record became visible"}
        return {"sent": len(sent), "visible": len(visible),
                "rate": len(sent) / (finished - started) if finished > started else 0.0,
                "visible_p50": percentile(visible, 50), "visible_p99": percentile(visible, 99),
                "visible_max": max(visible),
                "server_p50": percentile(server, 50), "server_p99": percentile(server, 99),
                "poll_interval": POLL_INTERVAL_S}

    # -- the profile ------------------------------------------------------------------------------

    def profile_projector(self, seconds: float) -> ProfileSummary | None:
        """pyinstrument over a projector catch-up from zero, ``seconds`` at most."""
        try:
            from pyinstrument import Profiler
        except ImportError:
            self.notes.append("no profile: pyinstrument is not installed "
                              "(.venv/bin/pip install pyinstrument)")
            return None
        profiler = Profiler(interval=0.001)
        throughput, _, _ = self.catch_up(self.database("profile"), max_seconds=seconds,
                                         profiler=profiler)
        session = profiler.last_session
        if session is None:
            return None
        root = session.root_frame()
        if root is None:
            return None
        # the call tree without pyinstrument's banner, which names the machine's paths
        lines = profiler.output_text(unicode=False, color=False).splitlines()
        start = next((n for n, line in enumerate(lines) if line[:1].isdigit()), 0)
        return summarise_profile(root, throughput.events, clean_paths("\n".join(lines[start:])))

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
        a, a_cores = self.raw_consume()
        self.figures["a"] = {**a.as_dict(), "cores": a_cores}
        say(f"  {a.rate:,.0f} events/s")

        say("(b) raw COPY …")
        b, rows, rows_by_table, b_cores = self.raw_copy()
        self.figures["b"] = {**b.as_dict(), "rows": rows, "rows_by_table": rows_by_table,
                             "pg_cpu_seconds": b_cores["PostgreSQL backend"] * b.seconds,
                             "rows_rate": rows / b.seconds if b.seconds else 0.0,
                             "cores": b_cores}
        say(f"  {rows / b.seconds:,.0f} rows/s ({b.rate:,.0f} events/s)")

        say("(c) projector catch-up, one process …")
        one = self.database("one")
        c1, c1_cores, c1_memory = self.catch_up(one)
        counts1 = self.table_counts(one)
        limit = min(a.rate, b.rate)
        self.figures["c1"] = {**c1.as_dict(), "cores": c1_cores, "table_rows": counts1,
                              "memory": c1_memory, "c_over_a": c1.rate / a.rate,
                              "c_over_b": c1.rate / b.rate}
        say(f"  {c1.rate:,.0f} events/s: c/a {c1.rate / a.rate:.2f}, c/b {c1.rate / b.rate:.2f}")

        processes = args.processes
        say(f"(c) projector catch-up, nyc311 run projector --processes {processes} …")
        main = self.database("main")
        c, c_cores = self.catch_up_processes(main, processes)
        counts = self.table_counts(main)
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
        e = self.latency(main, args.latency_rate, args.latency_seconds)
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


class Visibility(threading.Thread):
    """Polls PostgreSQL for the latency records: when each became visible, and the server's own
    ``projected_at − created_at``. Reads only the tail (``created_at`` from the oldest record
    not yet seen), so each poll is a short index range scan."""

    def __init__(self, settings: Settings, sent: list[tuple[str, float]],
                 done: threading.Event, grace: float = 30.0) -> None:
        super().__init__(daemon=True)
        self.settings, self.sent, self.done, self.grace = settings, sent, done, grace
        self.seen: dict[str, float] = {}
        self.server: dict[str, float] = {}

    def run(self) -> None:
        oldest = 0
        deadline: float | None = None
        with connect(self.settings, autocommit=True) as conn:
            while True:
                sent = len(self.sent)
                while oldest < sent and self.sent[oldest][0] in self.seen:
                    oldest += 1
                if self.done.is_set():
                    if oldest >= len(self.sent):
                        return
                    deadline = deadline or time.monotonic() + self.grace
                    if time.monotonic() > deadline:
                        return
                if oldest < sent:
                    low = datetime.fromtimestamp(self.sent[oldest][1] - 1.0, UTC)
                    rows = conn.execute(
                        "SELECT request_id, extract(epoch FROM projected_at - created_at) "
                        "FROM requests WHERE created_at >= %s AND request_id LIKE %s",
                        (low, f"{LATENCY_ID_PREFIX}%")).fetchall()
                    now = time.time()
                    for request_id, lag in rows:
                        if request_id not in self.seen:
                            self.seen[request_id] = now
                            self.server[request_id] = float(lag)
                time.sleep(POLL_INTERVAL_S)


def say(text: str) -> None:
    print(text, flush=True)


# -- the report -----------------------------------------------------------------------------------


def _met(value: bool) -> str:
    return "**met**" if value else "**missed**"


def _cores(cores: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.2f}" for name, value in cores.items()) or "n/a"


def render(bench: Bench, command: str) -> str:
    """RESULTS.md: the command, the machine, every figure and ratio, each target met or not."""
    f = bench.figures
    m, p = f["machine"], f["produce"]
    a, b, c, c1, d, e, y = f["a"], f["b"], f["c"], f["c1"], f["d"], f["e"], f["f"]
    mem = f["memory"]
    pg = m["postgresql"]
    lines = [
        "# Benchmark results",
        "",
        f"- Command: `{command}`",
        f"- Date: {f['started']:%Y-%m-%d %H:%M} UTC (the run took "
        f"{(f['finished'] - f['started']).total_seconds() / 60:.0f} min)",
        f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']:.1f} GiB memory, "
        f"Linux {m['kernel']}",
        f"- Software: Python {m['python']}, Apache Kafka {m['kafka']} (one broker, KRaft), "
        f"confluent-kafka {m['confluent_kafka']} / librdkafka {m['librdkafka']}, fastavro "
        f"{m['fastavro']}, psycopg {m['psycopg']}, PostgreSQL {pg['server_version']} "
        f"(synchronous_commit {pg['synchronous_commit']}, fsync {pg['fsync']}, shared_buffers "
        f"{pg['shared_buffers']})",
        f"- Load before the run: load average {m['loadavg'][0]:.2f} / {m['loadavg'][1]:.2f} / "
        f"{m['loadavg'][2]:.2f}; {m['busy_cores_before']:.2f} of {m['nproc']} cores busy over "
        "2 s before the benchmark started",
        f"- Data: {', '.join(bench.months)}, {bench.requests:,} requests a month (seed "
        f"{bench.seed}), {p['partitions']} partitions a topic, batches of "
        f"{bench.settings.batch_size:,} records"
        + (f", synchronous_commit={bench.args.synchronous_commit} on the benchmark databases"
           if bench.args.synchronous_commit else ""),
        "",
    ]
    if m["busy_cores_before"] > 0.25 or m["loadavg"][0] > 0.5 * m["nproc"]:
        lines += ["> Other load was present on the machine (other test suites and services): "
                  "absolute rates are lower than on an idle machine; the ratios c/a and c/b "
                  "were taken under the same load. The CPU lines below show, per phase, what "
                  "the rest of the machine used.", ""]
    lines += [
        "## Targets",
        "",
        "| | figure | target | |",
        "|---|---|---|---|",
        f"| (c) projector catch-up, `--processes {c['processes']}` | {c['rate']:,.0f} events/s "
        f"= {c['c_over_a']:.2f} × a, {c['c_over_b']:.2f} × b | ≥ 0.5 × min(a, b) = "
        f"{c['target_rate']:,.0f} events/s | {_met(c['met'])} |",
        f"| (c) the same, one process | {c1['rate']:,.0f} events/s = {c1['c_over_a']:.2f} × a, "
        f"{c1['c_over_b']:.2f} × b | (for comparison) | |",
        f"| (d) aggregation + publication of {d['month']} | {d['seconds']:.2f} s | < "
        f"{PUBLISH_TARGET_S:.0f} s | {_met(d['met'])} |",
    ]
    if "visible_p99" in e:
        lines.append(
            f"| (e) end-to-end latency at {e['rate']:,.0f} events/s | p50 "
            f"{e['visible_p50'] * 1000:,.0f} ms, p99 {e['visible_p99'] * 1000:,.0f} ms | p99 < "
            f"{LATENCY_P99_TARGET_S * 1000:.0f} ms | {_met(e['met'])} |")
    else:
        lines.append(f"| (e) end-to-end latency | {e.get('error')} | p99 < 1 s | **missed** |")
    lines += [
        f"| (f) a year's rebuild ({y['events']:,} events) | {y['seconds']:,.0f} s "
        f"({y['seconds'] / 60:.1f} min){' measured' if y['measured'] else ', extrapolated'} | "
        f"< {YEAR_TARGET_S / 60:.0f} min | {_met(y['met'])} |",
        f"| memory | peak RSS {mem['half']['vmhwm_mib']:.0f} MiB at {mem['half']['events']:,} "
        f"events, {mem['full']['vmhwm_mib']:.0f} MiB at {mem['full']['events']:,} | flat with "
        f"topic size | {_met(mem['full']['vmhwm_mib'] < 1.25 * mem['half']['vmhwm_mib'] + 16)} |",
        "",
        "## Figures",
        "",
        "Rates are steady rates, from the end of the first batch to the end of the last one; "
        "the fixed seconds (group join, first fetch, final lag check) are shown apart.",
        "",
        f"**Produce**: {p['events']:,} events ("
        + ", ".join(f"{name} {count:,}" for name, count in sorted(p["by_event"].items()))
        + f") in {p['seconds']:.1f} s = **{p['rate']:,.0f} events/s** (simulation included: "
        f"{p['generate_seconds']:.1f} s of it), idempotent producer, lz4.",
        "",
        f"**(a) raw consume limit**: {a['events']:,} records read in batches of "
        f"{bench.settings.batch_size:,} and decoded as the projector decodes (Serde without "
        f"logical types) in {a['seconds']:.1f} s, one process: "
        f"**{a['rate']:,.0f} events/s** ({a['overall_rate']:,.0f} over the whole run). "
        f"CPU (cores): {_cores(a['cores'])}.",
        "",
        f"**(b) raw database limit**: {b['rows']:,} rows ("
        + ", ".join(f"{name} {count:,}" for name, count in b["rows_by_table"].items())
        + f") COPYed into the real tables, one transaction per {bench.settings.batch_size:,} "
        f"events, in {b['seconds']:.1f} s: **{b['rows_rate']:,.0f} rows/s = {b['rate']:,.0f} "
        f"events/s**. CPU (cores): {_cores(b['cores'])}.",
        "",
        f"**(c) projector catch-up from zero**, as an operator runs it: `nyc311 run projector "
        f"--until-caught-up --processes {c['processes']}` ({c['processes']} worker processes, "
        f"members of one consumer group; progress read from the offsets they commit with their "
        f"rows, the CPU window from when every worker has committed): "
        f"{c['events']:,} events in {c['seconds']:.1f} s ({c['fixed_seconds']:.1f} s of it "
        f"fixed: start-up, group join, the final lag check): **{c['rate']:,.0f} events/s** "
        f"({c['overall_rate']:,.0f} over the whole run). **c/a = {c['c_over_a']:.2f}, c/b = "
        f"{c['c_over_b']:.2f}**; target c ≥ 0.5 × min(a, b) = {c['target_rate']:,.0f} events/s: "
        f"{_met(c['met'])}. CPU during the steady part (cores): {_cores(c['cores'])}. The "
        f"projection holds the same rows as (b): {c['table_rows'] == b['rows_by_table']}.",
        "",
        f"**(c) in one process** (ConsumeLoop + Projector in the benchmark's process, as "
        f"`nyc311 rebuild` runs it): {c1['events']:,} events in {c1['seconds']:.1f} s "
        f"({c1['fixed_seconds']:.1f} s of it fixed): **{c1['rate']:,.0f} events/s** "
        f"({c1['overall_rate']:,.0f} over the whole run), c/a = {c1['c_over_a']:.2f}, c/b = "
        f"{c1['c_over_b']:.2f}. CPU during the steady part (cores): {_cores(c1['cores'])}. The "
        f"projection holds the same rows as (b): {c1['table_rows'] == b['rows_by_table']}.",
        "",
        f"**(d) publication** of {d['month']}: aggregation into the published schema "
        f"{d['aggregate_seconds']:.2f} s ({d['rows']:,} rows in the four tables), the whole "
        f"site built {d['site_seconds']:.2f} s ({d['files']:,} files, {d['bytes'] / 1e6:.1f} MB)"
        f": **{d['seconds']:.2f} s**.",
        "",
    ]
    if "visible_p99" in e:
        lines += [
            f"**(e) end-to-end latency**: {e['sent']:,} RequestCreated at {e['rate']:,.0f} "
            f"events/s to a live projector subprocess (NYC311_BATCH_TIMEOUT="
            f"{LATENCY_BATCH_TIMEOUT}); from send to visible in PostgreSQL (polled every "
            f"{e['poll_interval'] * 1000:.0f} ms): **p50 {e['visible_p50'] * 1000:,.0f} ms, p99 "
            f"{e['visible_p99'] * 1000:,.0f} ms**, max {e['visible_max'] * 1000:,.0f} ms; "
            f"`projected_at − occurred_at` (the transaction's start, before its commit): p50 "
            f"{e['server_p50'] * 1000:,.0f} ms, p99 {e['server_p99'] * 1000:,.0f} ms. "
            f"{e['visible']:,} of {e['sent']:,} seen.",
            "",
        ]
    lines += [
        f"**(f) a year**: {y['arithmetic']}. Target < 5 min: {_met(y['met'])}"
        + ("" if y["met"] else f"; it needs {y['needed_rate']:,.0f} events/s") + ".",
        "",
        "**Memory** (peak RSS, VmHWM, of `python -m cli run projector "
        "--until-caught-up`):",
        "",
        "| topics | events | peak RSS | wall | CPU | rate (start-up included) |",
        "|---|---|---|---|---|---|",
    ]
    for label, run in (("first half", mem["half"]), ("whole", mem["full"])):
        lines.append(f"| {label} | {run['events']:,} | {run['vmhwm_mib']:.0f} MiB | "
                     f"{run['seconds']:.1f} s | {run['cpu_seconds']:.1f} s | "
                     f"{run['rate']:,.0f} events/s |")
    lines.append("")
    standing = obstacles(bench)
    if standing:
        lines += ["## What stands in the way", "", *standing, ""]
    if bench.profile is not None:
        prof = bench.profile
        lines += [
            "## Profile of the projector",
            "",
            f"pyinstrument over {prof.seconds:.1f} s of a catch-up from zero ({prof.records:,} "
            "records). Time by what it was spent on (the deepest matching frame names the "
            "category; waits on PostgreSQL show as the psycopg call that waits):",
            "",
            "| spent on | seconds | share |",
            "|---|---|---|",
        ]
        for name, seconds in prof.categories:
            lines.append(f"| {name} | {seconds:.2f} | {seconds / prof.seconds:.0%} |")
        lines += ["", "Frames with the most self time:", "", "| frame | seconds | share |",
                  "|---|---|---|"]
        for name, seconds in prof.self_frames:
            lines.append(f"| `{name}` | {seconds:.2f} | {seconds / prof.seconds:.0%} |")
        tree = "\n".join(prof.tree.splitlines()[:80])
        lines += ["", "<details><summary>Call tree (pyinstrument, first 80 lines)</summary>", "",
                  "```", tree, "```", "", "</details>", ""]
    if bench.notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in bench.notes] + [""]
    return "\n".join(lines)


def obstacles(bench: Bench) -> list[str]:
    """What stands in the way of a missed target, from this run's own numbers."""
    f = bench.figures
    a, b, c, c1, y, mem = f["a"], f["b"], f["c"], f["c1"], f["f"], f["memory"]
    lines: list[str] = []
    if (not c["met"] or not y["met"]) and c1["cores"] and a["cores"] and c1["rate"] > 0:
        wall = 1e6 / c1["rate"]
        own = c1["cores"]["this process"] * wall
        pg = c1["cores"].get("PostgreSQL backend", 0.0) * wall
        decode = a["cores"]["this process"] * 1e6 / a["rate"]
        pg_raw = b["pg_cpu_seconds"] * 1e6 / b["events"]
        client = (b["seconds"] - b["pg_cpu_seconds"]) * 1e6 / b["events"]
        target = 1e6 / c["target_rate"]
        lines += [
            f"- **A serial loop.** Per event, over one process's steady part: {wall:.1f} µs of "
            "wall time; "
            f"the projector's process used {own:.1f} µs of CPU and its PostgreSQL backend "
            f"{pg:.1f} µs (together {own + pg:.1f} µs). The loop decodes a batch, then writes "
            "it, then decodes the next: the two never overlap, and "
            f"{c1['cores'].get('idle', 0.0):.2f} of {f['machine']['nproc']} cores stayed idle; "
            f"with --processes {c['processes']}: {_cores(c['cores'])}.",
            f"- **The process's Python is the larger part.** Of its {own:.1f} µs, consuming and "
            f"decoding take {decode:.1f} µs (process CPU per event in (a)) and formatting and "
            f"sending rows for COPY about {client:.1f} µs ((b)'s client side); the remaining "
            f"{own - decode - client:.1f} µs are the projector's own: validation, row mapping, "
            "per-record bookkeeping (the profile below splits them). PostgreSQL spends "
            f"{pg:.1f} µs an event against {pg_raw:.1f} µs for (b)'s direct COPY: staging and "
            f"merging add {pg - pg_raw:.1f} µs.",
            f"- **The target** c ≥ {c['target_rate']:,.0f} events/s is {target:.1f} µs an event: "
            f"{wall - target:.1f} µs less than one process takes now.",
        ]
    half, full = mem["half"], mem["full"]
    if full["vmhwm_mib"] >= 1.25 * half["vmhwm_mib"] + 16:
        grown = c1.get("memory", {})
        config = loop_consumer_config(bench.settings)
        lines.append(
            f"- **Memory grows with the topics** ({half['vmhwm_mib']:.0f} MiB at "
            f"{half['events']:,} events, {full['vmhwm_mib']:.0f} MiB at {full['events']:,}). "
            f"During (c) this process's RSS grew by {grown.get('rss_growth_mib', 0.0):.0f} MiB "
            f"while Python's allocated blocks grew by {grown.get('blocks_growth', 0.0):,.0f}: "
            "the growth is native memory, librdkafka's fetched and queued records, which the "
            "consumer's fetch sizes bound (consumers/loop.py: fetch.max.bytes "
            f"{int(config.get('fetch.max.bytes', 0)) // 2**20} MiB, max.partition.fetch.bytes "
            f"{int(config.get('max.partition.fetch.bytes', 0)) // 2**20} MiB).")
    return lines


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, ProfileSummary):
        return {"seconds": value.seconds, "records": value.records,
                "categories": value.categories, "self_frames": value.self_frames}
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench",
        description="Benchmark the pipeline on the local services, in a fresh database and "
                    "topic prefix (both removed at the end).")
    parser.add_argument("--requests", type=int, default=None,
                        help="requests a month (default 270000; 1500 with --smoke)")
    parser.add_argument("--month", default=DEFAULT_MONTH,
                        help=f"the month to simulate, or the last of --year's (default "
                             f"{DEFAULT_MONTH})")
    parser.add_argument("--year", action="store_true",
                        help="twelve months, so (f) is measured rather than extrapolated")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", type=Path, default=None,
                        help=f"the report (default {DEFAULT_OUT}; with --smoke: stdout only)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    parser.add_argument("--smoke", action="store_true",
                        help="a few thousand events: checks the harness, not the speed")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="NYC311_BATCH_SIZE for (b), (c) and the subprocesses")
    parser.add_argument("--synchronous-commit", choices=("on", "off"), default=None,
                        help="set synchronous_commit on the benchmark databases (what-if)")
    parser.add_argument("--latency-rate", type=float, default=None,
                        help="events/s in (e) (default 1000; 200 with --smoke)")
    parser.add_argument("--latency-seconds", type=float, default=None,
                        help="seconds of (e) (default 20; 3 with --smoke)")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                        help="worker processes of the projector in (c) (default: one per CPU, "
                             "%(default)s here); (c) is also measured with one")
    parser.add_argument("--profile", choices=("auto", "always", "never"), default="always",
                        help="pyinstrument one projector process's catch-up: always (the "
                             "default), auto (only when a target is missed) or never")
    parser.add_argument("--profile-seconds", type=float, default=None,
                        help="seconds of catch-up to profile (default 30; 5 with --smoke)")
    args = parser.parse_args(argv)
    smoke = args.smoke
    args.requests = args.requests or (SMOKE_REQUESTS if smoke else 270_000)
    args.latency_rate = args.latency_rate or (200.0 if smoke else 1000.0)
    args.latency_seconds = args.latency_seconds or (3.0 if smoke else 20.0)
    args.profile_seconds = args.profile_seconds or (5.0 if smoke else 30.0)
    if args.out is None and not smoke:
        args.out = DEFAULT_OUT
    if args.requests < 100:
        parser.error("--requests: at least 100")
    return args


def describe_command(argv: list[str]) -> str:
    """The command line for the report: file options by their names only (no machine paths),
    and ``make bench`` when make ran it."""
    shown, hide_next = [], False
    for arg in argv:
        shown.append(Path(arg).name if hide_next else arg)
        hide_next = arg in ("--out", "--json")
    command = " ".join(["python -m benchmarks.bench", shlex.join(shown)]).strip()
    return f"make bench ({command})" if os.environ.get("MAKELEVEL") else command


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    command = describe_command(sys.argv[1:] if argv is None else argv)
    bench = Bench(args)

    def on_sigterm(_signum: int, _frame: Any) -> None:  # clean up as after Ctrl-C
        raise SystemExit(128 + signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        bench.run()
    finally:
        say("cleaning up …")
        left = bench.cleanup()
        for item in left:
            print(f"not removed: {item}", file=sys.stderr)
    bench.notes += [f"not removed at the end of the run: {item}" for item in left]
    report = clean_paths(render(bench, command))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report + "\n", encoding="utf-8")
        say(f"wrote {args.out}")
    else:
        print(report)
    if args.json is not None:
        args.json.write_text(json.dumps({**bench.figures, "profile": bench.profile,
                                         "notes": bench.notes}, default=_json_default,
                                        indent=2) + "\n", encoding="utf-8")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
