"""``nyc311 lag``: consumer lag as a table an operator reads at a glance, or as JSON.

The table has the columns of ``kafka-consumer-groups --describe`` (so numbers can be compared
with Kafka's own tool line by line) plus the lag in seconds and a status per partition, under
one status line per group. Where the group never committed a partition, CURRENT-OFFSET is ``-``
as in Kafka's tool but LAG is the partition's backlog from its log start, which the group will
read, and is counted in the group's total (a note under the table says so). A one-shot run
samples a few times before it answers, because the status judges movement, which one sample
cannot show.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from nyc311.settings import Settings
from operations.lag.monitor import GroupLag, LagMonitor, PartitionLag, Status

COLUMNS = ("TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "LAG-SECONDS",
           "STATUS", "CONSUMER-ID", "HOST", "CLIENT-ID")
CLEAR_SCREEN = "\033[H\033[2J"


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def _row(p: PartitionLag) -> tuple[str, ...]:
    m = p.member
    seconds = None if p.lag_seconds is None else f"{p.lag_seconds:.1f}"
    status = p.status.name if p.committed is not None or p.lag is not None else "-"
    return (p.topic, str(p.partition), _cell(p.committed), _cell(p.log_end), _cell(p.lag),
            _cell(seconds), status, _cell(m and m.consumer_id), _cell(m and m.host),
            _cell(m and m.client_id))


def summary_line(groups: Sequence[GroupLag]) -> str:
    if not groups:
        return "no consumer groups"
    counts = Counter(g.status for g in groups)
    parts = ", ".join(f"{counts[s]} {s.name}" for s in Status if counts[s])
    return f"{len(groups)} consumer group(s): {parts}"


def render_text(groups: Sequence[GroupLag], sampled_at: datetime | None = None) -> str:
    """A status line and a table per group, like kafka-consumer-groups with lag seconds."""
    when = f" at {sampled_at.isoformat(timespec='seconds')}" if sampled_at else ""
    lines = [summary_line(groups) + when]
    for g in groups:
        lines += ["", f"GROUP {g.group}: {g.status.name} - {g.reason}"]
        if not g.exists:
            continue
        lines.append(f"  state {g.state}, {g.members} member(s), {g.samples} sample(s) over "
                     f"{g.span:.1f} s; total lag {g.sum_lag} record(s), max lag "
                     f"{g.max_lag_seconds:.1f} s")
        if not g.has_committed_offsets:
            lines.append(f"  Consumer group '{g.group}' has no committed offsets.")
        if not g.partitions:
            continue
        rows = [COLUMNS, *(_row(p) for p in g.partitions)]
        widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
        lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                  for r in rows]
        backlog = g.uncommitted_backlog
        if backlog:
            lines.append(f"  CURRENT-OFFSET -: never committed; LAG counts from the log start, "
                         f"where the group will read ({backlog} record(s) of the total)")
    return "\n".join(lines)


def to_json(groups: Sequence[GroupLag], sampled_at: datetime) -> dict[str, Any]:
    return {"sampled_at": sampled_at.isoformat(), "summary": summary_line(groups),
            "groups": [g.to_dict() for g in groups]}


class LagError(RuntimeError):
    """Kafka could not be asked (broker away, request timed out); the message says why."""


def _sample(monitor: LagMonitor) -> None:
    try:
        monitor.sample()
    except KafkaException as exc:
        err = exc.args[0] if exc.args else exc
        why = err.str() if isinstance(err, KafkaError) else str(err)
        raise LagError(f"cannot read consumer groups from Kafka: {why}") from None


def run_lag(settings: Settings, groups: Sequence[str], as_json: bool, watch: bool,
            interval: float, window: int, echo: Callable[[str], None]) -> int:
    """One-shot: ``window`` samples ``interval`` apart, then one report; the exit status is 1
    when a group asked for by name does not exist. ``watch``: sample and redraw until Ctrl-C
    (with ``as_json``, one JSON object per line instead of a redrawn screen); a failed sample
    is reported and the next one tried."""
    monitor = LagMonitor(settings, groups or None, window=window)
    if not watch:
        for i in range(window):
            if i:
                time.sleep(interval)
            _sample(monitor)
        report = monitor.report()
        now = datetime.now(UTC)
        echo(json.dumps(to_json(report, now), indent=2) if as_json else render_text(report, now))
        return 1 if any(not g.exists for g in report) else 0
    try:
        while True:
            started = time.monotonic()
            try:
                _sample(monitor)
                report, now = monitor.report(), datetime.now(UTC)
            except LagError as exc:
                echo(json.dumps({"error": str(exc)}) if as_json else f"{exc}; retrying")
            else:
                if as_json:
                    echo(json.dumps(to_json(report, now)))
                else:
                    echo(CLEAR_SCREEN + render_text(report, now)
                         + f"\n\nevery {interval:g} s, window {window} samples; Ctrl-C stops")
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    except KeyboardInterrupt:
        return 0
