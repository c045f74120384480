"""(c) the projector catching up from zero, measured three ways, and its memory.

- in this process (ConsumeLoop + Projector, as ``nyc311 rebuild`` runs it): the rate a year's
  rebuild is extrapolated from, and the run the profile samples;
- as an operator runs it, ``nyc311 run projector --until-caught-up --processes N``, its progress
  read from the offsets the workers commit with their rows;
- as one subprocess, for its peak memory (VmHWM) after half the topics and after all of them.

The subprocesses are started by a ``spawn`` callable (:meth:`benchmarks.runner.Bench.
projector_process`), which keeps them so the run's clean-up can stop them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import IO, Any

import psycopg

from benchmarks import REPO
from benchmarks.meters import CpuMeter, Marks, Throughput, pid_cpu_seconds, proc_status_kib, scalar
from consumers.loop import ConsumeLoop
from consumers.projector import GROUP_ID, TABLES, Projector
from consumers.workers import worker_pids
from nyc311.settings import Settings
from storage.db import connect

#: Starts ``python -m cli run projector`` (see :func:`projector_process`) and keeps the process.
Spawn = Callable[..., subprocess.Popen[str]]


def projector_process(settings: Settings, *args: str, batch_timeout: float | None = None,
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
    return subprocess.Popen([sys.executable, "-m", "cli", "run", "projector", *args],
                            cwd=REPO, env=env, text=True, stdout=output or subprocess.DEVNULL,
                            stderr=subprocess.STDOUT if output else subprocess.DEVNULL)


def memory_run(settings: Settings, events: int, spawn: Spawn) -> dict[str, Any]:
    """Catch a projector subprocess up on the ``events`` in the topics as they are; its peak RSS
    and time. ``records`` is what it reports having projected (-1 if it did not say)."""
    with tempfile.TemporaryFile("w+") as output:
        started = time.perf_counter()
        proc = spawn(settings, "--until-caught-up", output=output)
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
    return {"events": events, "records": records, "seconds": seconds,
            "rate": records / seconds if seconds else 0.0, "cpu_seconds": cpu or 0.0,
            "vmhwm_mib": peak / 1024}


def catch_up(settings: Settings, broker: int | None, max_seconds: float | None = None,
             profiler: Any = None
             ) -> tuple[Throughput, dict[str, float], dict[str, float], int]:
    """The projector (ConsumeLoop + Projector) in this process, from zero until caught up.

    Also returns how this process's RSS and Python's allocated blocks grew during the run
    (RSS growing while the Python heap does not points at native memory: librdkafka), and how
    many records the projector dead-lettered. ``broker`` is the local broker's pid, or None.
    """
    meter = CpuMeter({"PostgreSQL backend": None, "Kafka broker": broker})
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
    return marks.throughput(stats.records, ended), meter.cores(), memory, stats.dead_lettered


def catch_up_processes(settings: Settings, processes: int, expected: int, broker: int | None,
                       spawn: Spawn) -> tuple[Throughput, dict[str, float]]:
    """``nyc311 run projector --until-caught-up --processes N`` from zero, as an operator
    runs it: progress is read from the offsets the workers store in PostgreSQL with their
    rows (polled every 50 ms), so a point counts only what is committed and visible.
    ``expected`` is the number of events in the topics."""
    marks = Marks()
    started = time.perf_counter()
    proc = spawn(settings, "--until-caught-up", "--processes", str(processes))
    meter = CpuMeter({"Kafka broker": broker})
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


def table_counts(settings: Settings) -> dict[str, int]:
    """Rows in each projection table of ``settings``' database."""
    with connect(settings, autocommit=True) as conn:
        return {t.name: int(scalar(conn, f"SELECT count(*) FROM {t.name}")) for t in TABLES}
