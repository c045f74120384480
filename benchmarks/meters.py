"""The meters a benchmark reads: CPU by process, peak and current memory, throughput.

Why meters of its own: on a shared machine a rate means little alone. The CPU meters read
``/proc`` (this process, named processes such as the broker and PostgreSQL backends, the whole
machine) so each phase can say whether the projector was saturated or waiting and what other
work took; the throughput meter keeps the steady part of a run apart from its fixed start-up
and final lag check, which do not grow with the topics.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import REPO
from nyc311.settings import ENV_FILE_NAME, read_env_file

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


def machine_cpu_times() -> tuple[float, float, float]:
    """(busy, idle, stolen) CPU seconds of the machine since boot, all CPUs together: busy is
    user, nice, system, irq and softirq; idle includes iowait; stolen is the hypervisor's."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = values
    return ((user + nice + system + irq + softirq) / CLOCK_TICKS, (idle + iowait) / CLOCK_TICKS,
            steal / CLOCK_TICKS)


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the machine since boot, all CPUs together (stolen time
    counts as busy: those cores were not free)."""
    busy, idle, stolen = machine_cpu_times()
    return busy + stolen, busy + idle + stolen


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


def scalar(conn: psycopg.Connection, query: str, params: tuple[Any, ...] | None = None) -> Any:
    """The one value of a query: a figure PostgreSQL holds (committed offsets, a setting)."""
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise RuntimeError(f"no row from {query}")
    return row[0]
