"""``nyc311 run lag-exporter``: consumer lag as Prometheus metrics.

Why kafka-lag-exporter's metric names and labels: the dashboards and alert rules written for it
work unchanged against this pipeline, with no JVM service to run beside it. One metric of our
own, ``nyc311_consumergroup_status``, carries the Burrow-style status (0 OK, 1 WARN, 2 STALL,
3 STOP, 4 ERR), so an alert can say "a consumer is not keeping up" without a lag threshold.

Samples are taken every ``--interval`` seconds in the main thread; each scrape reads the latest
report, so a group or partition that disappears takes its series with it, and a failed sample
clears them all (no stale numbers) and turns ``/healthz`` to 503 until the next good one.

A partition the group never committed has no ``_group_offset`` series, but its lag (log end
minus log start: the backlog the group will read) is exported and counted in ``_sum_lag``,
``_topic_sum_lag`` and ``_max_lag`` (:mod:`operations.lag.monitor`), where kafka-lag-exporter
leaves it out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from confluent_kafka import KafkaException
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from nyc311.settings import Settings
from nyc311.stop import StopFlag
from operations.lag.monitor import GroupLag, LagMonitor

log = logging.getLogger(__name__)

PARTITION_LABELS = ["cluster_name", "group", "topic", "partition", "member_host", "consumer_id",
                    "client_id"]
UNKNOWN = "unknown"  # member labels of a partition no member owns, as kafka-lag-exporter


class LagCollector(Collector):
    """Turns the latest lag report into metric families at scrape time."""

    def __init__(self, cluster_name: str) -> None:
        self.cluster_name = cluster_name
        self._groups: list[GroupLag] = []
        self._lock = threading.Lock()

    def update(self, groups: Sequence[GroupLag]) -> None:
        with self._lock:
            self._groups = list(groups)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            groups = list(self._groups)
        c = self.cluster_name
        offset = GaugeMetricFamily(
            "kafka_consumergroup_group_offset",
            "The last committed offset of this group for this topic partition.",
            labels=PARTITION_LABELS)
        lag = GaugeMetricFamily(
            "kafka_consumergroup_group_lag",
            "Log-end offset minus the group's committed offset for this topic partition.",
            labels=PARTITION_LABELS)
        lag_seconds = GaugeMetricFamily(
            "kafka_consumergroup_group_lag_seconds",
            "Age in seconds of the oldest record the group has not consumed (0 with no lag).",
            labels=PARTITION_LABELS)
        max_lag = GaugeMetricFamily(
            "kafka_consumergroup_group_max_lag", "The highest lag in offsets of the group.",
            labels=["cluster_name", "group", "is_simple_consumer"])
        max_lag_seconds = GaugeMetricFamily(
            "kafka_consumergroup_group_max_lag_seconds", "The highest lag in seconds of the group.",
            labels=["cluster_name", "group", "is_simple_consumer"])
        sum_lag = GaugeMetricFamily(
            "kafka_consumergroup_group_sum_lag",
            "The sum of the lag of all partitions of the group.",
            labels=["cluster_name", "group"])
        topic_sum_lag = GaugeMetricFamily(
            "kafka_consumergroup_group_topic_sum_lag",
            "The sum of the lag of the group's partitions of this topic.",
            labels=["cluster_name", "group", "topic"])
        latest = GaugeMetricFamily(
            "kafka_partition_latest_offset", "The log-end offset of the topic partition.",
            labels=["cluster_name", "topic", "partition"])
        earliest = GaugeMetricFamily(
            "kafka_partition_earliest_offset", "The earliest offset of the topic partition.",
            labels=["cluster_name", "topic", "partition"])
        status = GaugeMetricFamily(
            "nyc311_consumergroup_status",
            "Burrow-style status of the group: 0 OK, 1 WARN, 2 STALL, 3 STOP, 4 ERR.",
            labels=["cluster_name", "group"])
        partitions_seen: set[tuple[str, int]] = set()
        for g in groups:
            status.add_metric([c, g.group], int(g.status))
            if not g.exists or not g.partitions:
                continue
            simple = "true" if g.simple else "false"
            max_lag.add_metric([c, g.group, simple], g.max_lag)
            max_lag_seconds.add_metric([c, g.group, simple], g.max_lag_seconds)
            sum_lag.add_metric([c, g.group], g.sum_lag)
            per_topic: dict[str, int] = {}
            for p in g.partitions:
                if (p.topic, p.partition) not in partitions_seen:
                    partitions_seen.add((p.topic, p.partition))
                    if p.log_end is not None:
                        latest.add_metric([c, p.topic, str(p.partition)], p.log_end)
                    if p.log_start is not None:
                        earliest.add_metric([c, p.topic, str(p.partition)], p.log_start)
                m = p.member
                labels = [c, g.group, p.topic, str(p.partition), m.host if m else UNKNOWN,
                          m.consumer_id if m else UNKNOWN, m.client_id if m else UNKNOWN]
                if p.committed is not None:
                    offset.add_metric(labels, p.committed)
                if p.lag is not None:
                    lag.add_metric(labels, p.lag)
                    per_topic[p.topic] = per_topic.get(p.topic, 0) + max(0, p.lag)
                if p.lag_seconds is not None:
                    lag_seconds.add_metric(labels, p.lag_seconds)
            for topic, total in sorted(per_topic.items()):
                topic_sum_lag.add_metric([c, g.group, topic], total)
        yield from (offset, lag, lag_seconds, max_lag, max_lag_seconds, sum_lag, topic_sum_lag,
                    latest, earliest, status)


class LagExporter:
    """Samples on a timer and serves ``/metrics`` and ``/healthz`` over HTTP."""

    def __init__(self, settings: Settings, host: str = "0.0.0.0", port: int = 8000,
                 interval: float = 15.0, window: int = 10, groups: Sequence[str] = (),
                 cluster_name: str | None = None) -> None:
        self.interval = interval
        self.monitor = LagMonitor(settings, list(groups) or None, window=window)
        self.collector = LagCollector(cluster_name or settings.kafka_bootstrap_servers)
        self.registry = CollectorRegistry()
        self.registry.register(self.collector)
        self.stop = threading.Event()
        self._healthy_until = 0.0
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.server.daemon_threads = True

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def healthy(self) -> bool:
        return time.monotonic() < self._healthy_until

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._reply(200, generate_latest(exporter.registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    ok = exporter.healthy()
                    self._reply(200 if ok else 503, b"ok\n" if ok else b"no recent sample\n")
                else:
                    self._reply(404, b"not found: try /metrics or /healthz\n")

            def _reply(self, code: int, body: bytes,
                       content_type: str = "text/plain; charset=utf-8") -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("http: " + format, *args)

        return Handler

    def sample_once(self) -> None:
        try:
            self.monitor.sample()
            self.collector.update(self.monitor.report())
        except KafkaException as exc:  # broker away: no stale numbers, unhealthy until it is back
            log.warning("lag sample failed: %s", exc)
            self.collector.update([])
            return
        self._healthy_until = time.monotonic() + max(3 * self.interval, 30.0)

    def run(self) -> None:
        """Serve and sample until :attr:`stop` is set (SIGTERM, SIGINT), then shut down."""
        thread = threading.Thread(target=self.server.serve_forever, name="lag-exporter-http",
                                  daemon=True)
        thread.start()
        log.info("lag exporter on http://%s:%d/metrics, sampling every %g s",
                 self.server.server_address[0], self.port, self.interval)
        try:
            while not self.stop.is_set():
                started = time.monotonic()
                self.sample_once()
                self.stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
        finally:
            self.server.shutdown()
            self.server.server_close()
            thread.join(5)
            log.info("lag exporter stopped")


def serve(exporter: LagExporter) -> None:
    """Run ``exporter`` in the foreground; SIGTERM and SIGINT stop it cleanly."""

    with StopFlag(logger=log).on_stop(exporter.stop.set):
        exporter.run()
