"""Consumer lag: how far each consumer group is behind, and whether it is keeping up.

Operators need one answer per consumer: is it keeping up? A fixed lag threshold answers badly
(a busy topic is always a few thousand records behind; a quiet one is stuck at 3), so the status
follows LinkedIn Burrow's evaluation rules over a sliding window of samples instead: what the
committed offsets and the lag *did* over the window, not how big the lag is.

The numbers are the ones ``kafka-consumer-groups --describe`` prints: Kafka's committed offset
for the group (the consume loop commits there after each PostgreSQL transaction, so lag tools
see the group; PostgreSQL stays the source of truth), the log-end offset (high watermark), and
their difference. Lag in seconds is the age of the oldest unconsumed record, read at the
committed offset by a short-lived consumer that joins no group and commits nothing.

One departure from Kafka's tool, which leaves out (or shows ``-`` for) the partitions a group
never committed: those are counted too. A group reads every partition of the topics it
consumes, and one it never committed from its earliest offset, so its lag there is the whole
backlog, log end minus log start; it is shown, summed and judged like any other (a stopped
projector's backlog is all of it, not only the partitions it happened to commit). The topics a
group consumes are those it committed or its members own, and, for the pipeline's own groups,
the ones it is built to read (:data:`GROUP_TOPICS`), so a group that never committed one of its
topics is still accountable for it.

:func:`evaluate` is pure (samples in, verdict out), so the rules are tested without a broker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, KafkaException
from confluent_kafka import TopicPartition as KafkaTP
from confluent_kafka.admin import AdminClient, OffsetSpec

from nyc311.settings import Settings
from operations.lag.window import Sample, Status, Verdict, Window, evaluate

log = logging.getLogger(__name__)

TP = tuple[str, int]
__all__ = ["GroupLag", "LagMonitor", "Member", "PartitionLag", "Sample", "Status", "Verdict",
           "Window", "evaluate", "record_timestamps"]

PROBE_GROUP = "nyc311-lag-probe"  # required by librdkafka; the probe never joins nor commits

# The topics each of the pipeline's consumer groups reads (contract names, without the prefix);
# tests/operations/test_lag.py checks them against the consumers themselves.
GROUP_TOPICS: dict[str, tuple[str, ...]] = {
    "nyc311-projector": ("nyc311.request-closed", "nyc311.request-created",
                         "nyc311.survey-answered", "nyc311.survey-sent"),
    "nyc311-dispatcher": ("nyc311.request-closed",),
    "nyc311-reopen-forwarder": ("nyc311.survey-answered",),
}


# -- what a report holds -------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    consumer_id: str
    host: str
    client_id: str


@dataclass
class PartitionLag:
    topic: str
    partition: int
    committed: int | None
    log_start: int | None
    log_end: int | None
    lag: int | None
    lag_seconds: float | None
    status: Status
    reason: str
    member: Member | None

    def to_dict(self) -> dict[str, Any]:
        m = self.member
        return {"topic": self.topic, "partition": self.partition, "committed": self.committed,
                "log_start": self.log_start, "log_end": self.log_end, "lag": self.lag,
                "lag_seconds": self.lag_seconds, "status": self.status.name,
                "reason": self.reason, "consumer_id": m.consumer_id if m else None,
                "host": m.host if m else None, "client_id": m.client_id if m else None}


@dataclass
class GroupLag:
    group: str
    exists: bool
    state: str
    simple: bool
    members: int
    status: Status
    reason: str
    samples: int
    span: float
    partitions: list[PartitionLag] = field(default_factory=list)

    @property
    def has_committed_offsets(self) -> bool:
        return any(p.committed is not None for p in self.partitions)

    @property
    def uncommitted_backlog(self) -> int:
        """The lag of the partitions the group never committed (counted from the log start)."""
        return sum(p.lag for p in self.partitions
                   if p.committed is None and p.lag is not None and p.lag > 0)

    @property
    def sum_lag(self) -> int:
        return sum(p.lag for p in self.partitions if p.lag is not None and p.lag > 0)

    @property
    def max_lag(self) -> int:
        return max((p.lag for p in self.partitions if p.lag is not None), default=0)

    @property
    def max_lag_seconds(self) -> float:
        return max((p.lag_seconds for p in self.partitions if p.lag_seconds is not None),
                   default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "exists": self.exists, "state": self.state,
                "simple": self.simple, "members": self.members, "status": self.status.name,
                "reason": self.reason, "has_committed_offsets": self.has_committed_offsets,
                "samples": self.samples, "span_seconds": round(self.span, 3),
                "sum_lag": self.sum_lag, "max_lag": self.max_lag,
                "max_lag_seconds": self.max_lag_seconds,
                "partitions": [p.to_dict() for p in self.partitions]}


@dataclass
class _GroupInfo:
    exists: bool = True
    state: str = "Unknown"
    simple: bool = False
    members: int = 0
    error: str = ""
    owners: dict[TP, Member] = field(default_factory=dict)


# -- reading Kafka -------------------------------------------------------------------------------


def _state_name(state: Any) -> str:
    name = getattr(state, "name", str(state))
    return name.replace("_", " ").title().replace(" ", "")


class LagMonitor:
    """Samples groups' committed and log-end offsets and keeps a window per partition.

    ``groups``: these group ids (a missing one is reported as ERR); None: every consumer group
    whose name starts with the topic prefix (all groups when there is no prefix).
    """

    def __init__(self, settings: Settings, groups: Sequence[str] | None = None,
                 window: int = 3, timeout: float = 10.0) -> None:
        self.settings = settings
        self.requested = list(dict.fromkeys(groups)) if groups else None  # no duplicates
        self.window_size = window
        self.timeout = timeout
        self.admin = AdminClient(settings.kafka_config())
        self._windows: dict[tuple[str, str, int], Window] = {}
        self._groups: dict[str, _GroupInfo] = {}
        self._log_start: dict[TP, int | None] = {}
        self._log_end: dict[TP, int | None] = {}

    def group_ids(self) -> list[str]:
        if self.requested is not None:
            return self.requested
        listing = self.admin.list_consumer_groups(request_timeout=self.timeout).result()
        if listing.errors and not listing.valid:  # nothing answered: say so, not "no groups"
            raise KafkaException(listing.errors[0])
        for error in listing.errors:
            log.warning("listing consumer groups: %s", error)
        prefix = self.settings.topic_prefix
        return sorted(g.group_id for g in listing.valid if g.group_id.startswith(prefix))

    def sample(self) -> None:
        """One sample of every group: committed offsets first, then the log ends, so a log end
        is never older than the committed offset it is compared with."""
        at = time.time()
        ids = self.group_ids()
        infos = self._describe(ids)
        committed = self._committed(ids, infos)
        layout = self._topic_partitions()
        per_group = {group: self._group_partitions(group, committed[group], infos[group], layout)
                     for group in ids}
        partitions = sorted({tp for tps in per_group.values() for tp in tps})
        self._log_end = self._list_offsets(partitions, OffsetSpec.latest())
        self._log_start = self._list_offsets(partitions, OffsetSpec.earliest())
        seen: set[tuple[str, str, int]] = set()
        for group in ids:
            info = infos[group]
            for tp in per_group[group]:
                key = (group, *tp)
                seen.add(key)
                window = self._windows.setdefault(key, Window(self.window_size))
                window.add(Sample(at, committed[group].get(tp), self._log_end.get(tp),
                                  tp in info.owners, self._log_start.get(tp)))
        for key in set(self._windows) - seen:  # gone from the group: forget its history
            del self._windows[key]
        self._groups = infos

    def _topic_partitions(self) -> dict[str, list[int]]:
        """Every topic's partitions, from one metadata request."""
        meta = self.admin.list_topics(timeout=self.timeout)
        return {name: sorted(t.partitions) for name, t in meta.topics.items()
                if t.error is None}

    def _group_partitions(self, group: str, committed: dict[TP, int | None], info: _GroupInfo,
                          layout: dict[str, list[int]]) -> list[TP]:
        """Every partition of every topic the group consumes: the topics it committed, its
        members own, or (the pipeline's own groups) it is built to read."""
        own = set(committed) | set(info.owners)
        topics = {t for t, _ in own}
        prefix = self.settings.topic_prefix
        if info.exists and group.startswith(prefix):
            topics.update(self.settings.topic(t)
                          for t in GROUP_TOPICS.get(group[len(prefix):], ()))
        for topic in topics:
            own.update((topic, p) for p in layout.get(topic, ()))
        return sorted(own)

    def report(self, lag_seconds: bool = True) -> list[GroupLag]:
        """The groups as of the latest sample, each partition judged over its window."""
        ages = self._ages() if lag_seconds else {}
        windows: dict[str, list[tuple[TP, Window]]] = {g: [] for g in self._groups}
        for (group, topic, partition), window in sorted(self._windows.items()):
            windows[group].append(((topic, partition), window))
        return [self._group_lag(group, info, windows[group], ages)
                for group, info in self._groups.items()]

    def _group_lag(self, group: str, info: _GroupInfo, windows: list[tuple[TP, Window]],
                   ages: dict[tuple[str, str, int], float]) -> GroupLag:
        parts = []
        for (topic, partition), window in windows:
            last, verdict = window.latest, window.evaluate()
            lag = last.lag
            age = 0.0 if lag is not None and lag <= 0 else ages.get((group, topic, partition))
            parts.append(PartitionLag(topic, partition, last.committed,
                                      self._log_start.get((topic, partition)), last.log_end, lag,
                                      age, verdict.status, verdict.reason,
                                      info.owners.get((topic, partition))))
        span = max((w.latest.at - w.samples[0].at for _, w in windows), default=0.0)
        count = max((len(w.samples) for _, w in windows), default=0)
        result = GroupLag(group, info.exists, info.state, info.simple, info.members, Status.OK,
                          "", count, span, parts)
        if info.error:
            result.status, result.reason = Status.ERR, info.error
        elif not info.exists:
            result.status, result.reason = Status.ERR, "group not found"
        else:
            worst = max(parts, key=lambda p: (p.status, p.lag or 0), default=None)
            if worst is not None and worst.status > Status.OK:
                result.status = worst.status
                result.reason = f"{worst.topic}[{worst.partition}]: {worst.reason}"
            elif not result.has_committed_offsets:
                backlog = result.uncommitted_backlog
                result.reason = "no committed offsets yet" + (
                    f"; {backlog} record(s) to read from the log start" if backlog else "")
            else:
                result.reason = "every partition keeps up"
        return result

    def _describe(self, ids: list[str]) -> dict[str, _GroupInfo]:
        infos = {g: _GroupInfo() for g in ids}
        if not ids:
            return infos
        futures = self.admin.describe_consumer_groups(ids, request_timeout=self.timeout)
        for group, future in futures.items():
            info = infos[group]
            try:
                desc = future.result()
            except KafkaException as exc:
                if exc.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND:
                    info.exists, info.state = False, "Dead"
                else:
                    info.error = f"describe failed: {exc.args[0].str()}"
                continue
            info.state = _state_name(desc.state)
            info.simple = bool(desc.is_simple_consumer_group)
            info.members = len(desc.members)
            info.exists = info.state != "Dead"
            for m in desc.members:
                member = Member(m.member_id, m.host, m.client_id)
                for tp in m.assignment.topic_partitions:
                    info.owners[(tp.topic, tp.partition)] = member
        return infos

    def _committed(self, ids: list[str],
                   infos: dict[str, _GroupInfo]) -> dict[str, dict[TP, int | None]]:
        """Kafka's committed offsets per group (one request per group, all in flight at once)."""
        futures = {g: self.admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(g)], request_timeout=self.timeout)[g] for g in ids}
        out: dict[str, dict[TP, int | None]] = {}
        for group, future in futures.items():
            offsets: dict[TP, int | None] = {}
            try:
                for tp in future.result().topic_partitions:
                    offsets[(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else None
            except KafkaException as exc:
                infos[group].error = f"committed offsets unavailable: {exc.args[0].str()}"
            if offsets and not infos[group].exists:  # offsets but no group: committed by hand
                infos[group].exists, infos[group].state = True, "Empty"
            out[group] = offsets
        return out

    def _list_offsets(self, partitions: list[TP], spec: OffsetSpec) -> dict[TP, int | None]:
        """One ListOffsets request for all partitions; a partition that fails maps to None."""
        if not partitions:
            return {}
        futures = self.admin.list_offsets({KafkaTP(t, p): spec for t, p in partitions},
                                          request_timeout=self.timeout)
        out: dict[TP, int | None] = {}
        for tp, future in futures.items():
            try:
                out[(tp.topic, tp.partition)] = future.result().offset
            except KafkaException as exc:
                log.info("offsets of %s[%d] unavailable: %s", tp.topic, tp.partition, exc)
                out[(tp.topic, tp.partition)] = None
        return out

    def _ages(self) -> dict[tuple[str, str, int], float]:
        """Age of the record at each lagging partition's position (committed offset, else log
        start), per group."""
        wanted: dict[tuple[str, str, int], tuple[TP, int, float]] = {}
        for key, window in self._windows.items():
            last = window.latest
            if last.position is not None and last.lag is not None and last.lag > 0:
                wanted[key] = ((key[1], key[2]), last.position, last.at)
        stamps = record_timestamps(self.settings, {(tp, off) for tp, off, _ in wanted.values()},
                                   timeout=self.timeout)
        return {key: max(0.0, at - stamps[(tp, off)])
                for key, (tp, off, at) in wanted.items() if (tp, off) in stamps}


def record_timestamps(settings: Settings, wanted: Iterable[tuple[TP, int]],
                      timeout: float = 10.0) -> dict[tuple[TP, int], float]:
    """Timestamp (Unix seconds) of the first record at or after each (partition, offset).

    A short-lived consumer assigns the partitions at those offsets and reads one record from
    each; it joins no group and commits nothing. Several offsets of one partition (groups at
    different positions) are read in rounds. A partition with no record there is left out.
    """
    rounds: list[dict[TP, int]] = []
    for tp, offset in sorted(set(wanted)):
        for round_ in rounds:
            if tp not in round_:
                round_[tp] = offset
                break
        else:
            rounds.append({tp: offset})
    if not rounds:
        return {}
    consumer = Consumer(settings.kafka_config(**{
        "group.id": settings.group(PROBE_GROUP), "enable.auto.commit": False,
        "enable.auto.offset.store": False, "auto.offset.reset": "earliest",
        "enable.partition.eof": True, "max.partition.fetch.bytes": 65536,
        "fetch.max.bytes": 1048576,
        "queued.max.messages.kbytes": 1024,
    }))
    found: dict[tuple[TP, int], float] = {}
    deadline = time.monotonic() + timeout
    try:
        for round_ in rounds:
            consumer.assign([KafkaTP(t, p, o) for (t, p), o in round_.items()])
            pending = dict(round_)
            while pending and time.monotonic() < deadline:
                for msg in consumer.consume(len(pending), 0.2):
                    tp = (str(msg.topic()), int(msg.partition() or 0))
                    if tp not in pending:
                        continue
                    err = msg.error()
                    if err is not None and err.code() != KafkaError._PARTITION_EOF:
                        log.info("reading %s[%d]: %s", tp[0], tp[1], err)
                        continue
                    if err is None:
                        _kind, stamp = msg.timestamp()
                        if stamp >= 0:
                            found[(tp, pending[tp])] = stamp / 1000.0
                    del pending[tp]
                    consumer.pause([KafkaTP(*tp)])
            consumer.unassign()
    finally:
        consumer.close()
    return found
