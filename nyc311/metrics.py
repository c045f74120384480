"""Prometheus metrics and health for the long-lived services, so an operator can see each one.

Every service exports the same metric families, told apart by a ``service`` label (projector,
dispatcher, reopen-forwarder, aggregator, survey-web), so one dashboard and one set of alerts
cover them all. A :class:`Metrics` is one service's handle on those families; the code that does
the work counts through it and never touches prometheus_client directly, so the names and
labels live in this one file.

:func:`serve_metrics` starts a small HTTP server on a thread beside a service's main loop:

- ``/metrics``: the registry in the Prometheus text format;
- ``/healthz``: 200 ``ready`` when the service's own health check passes (for a consumer:
  connected, partitions assigned, the last database operation succeeded, not stalled for
  ``NYC311_STALL_SECONDS``), else 503 with the reason, so an orchestrator or a person with curl
  sees *why* a service is not ready.

The families are registered once per registry: the process-wide default registry (which also
carries the process and Python collectors) in production, a fresh one per test.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import Counter as TopicCounts
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

Health = Callable[[], tuple[bool, str]]

# Batches take milliseconds when all is well and minutes while the database is away.
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                 120.0, 300.0)

# reasons of nyc311_records_failed_total
FAILED_INVALID = "invalid"  # undecodable, or breaks a validation rule
FAILED_REFUSED = "refused"  # the database refused the record

# outcomes of nyc311_survey_answers_total
ANSWER_RECORDED = "recorded"
ANSWER_ALREADY_ANSWERED = "already_answered"
ANSWER_INVALID = "invalid"  # a form to fix (nothing chosen, too long, unreadable)
ANSWER_NOT_RECORDED = "not_recorded"  # PostgreSQL unavailable: an error on our side

# outcomes of nyc311_publications_total
PUBLISHED_NEW = "new_revision"
PUBLISHED_UNCHANGED = "unchanged"
PUBLISH_FAILED = "failed"

NO_CHANNEL = "none"  # channel label of a survey no channel would take


@dataclass(frozen=True)
class _Families:
    """The metric families of one registry."""

    build_info: Info
    ready: Gauge
    stalled: Gauge
    records_processed: Counter
    records_failed: Counter
    records_dead_lettered: Counter
    batch_duration: Histogram
    last_commit: Gauge
    db_retries: Counter
    surveys_sent: Counter
    surveys_failed: Counter
    surveys_no_contact: Counter
    surveys_too_old: Counter
    contacts_erased: Counter
    contacts_held: Gauge
    oldest_contact: Gauge
    reopen_forwarded: Counter
    publications: Counter
    survey_answers: Counter
    server_errors: Counter
    outbox_backlog: Gauge
    outbox_oldest: Gauge
    outbox_relayed: Counter
    outbox_relay_failures: Counter


def _define(registry: CollectorRegistry) -> _Families:
    def counter(name: str, text: str, *labels: str) -> Counter:
        return Counter(name, text, ["service", *labels], registry=registry)

    return _Families(
        build_info=Info("nyc311_build", "Version of the running nyc311 code.", ["service"],
                        registry=registry),
        ready=Gauge("nyc311_ready", "1 while the service's health check passes (/healthz 200).",
                    ["service"], registry=registry),
        stalled=Gauge(
            "nyc311_stalled_seconds", "Seconds a consumer's work in hand has waited without "
            "progress (retrying the database or the dead-letter queue, or a batch not committed "
            "after NYC311_STALL_SECONDS); 0 while it makes progress.", ["service"],
            registry=registry),
        records_processed=counter(
            "nyc311_records_processed", "Records consumed and committed to PostgreSQL.", "topic"),
        records_failed=counter(
            "nyc311_records_failed", "Records that could not be processed: invalid (undecodable "
            "or breaking a rule) or refused (by the database).", "topic", "reason"),
        records_dead_lettered=counter(
            "nyc311_records_dead_lettered", "Records produced to <topic>.dlq and acknowledged.",
            "topic"),
        batch_duration=Histogram(
            "nyc311_batch_duration_seconds", "Time from a batch's arrival to its commit "
            "(decode, dead letters, database transaction, retries).", ["service"],
            buckets=BATCH_BUCKETS, registry=registry),
        last_commit=Gauge(
            "nyc311_last_commit_timestamp_seconds", "Unix time of the last batch committed.",
            ["service"], registry=registry),
        db_retries=counter(
            "nyc311_db_retries", "Database operations retried after a transient error."),
        surveys_sent=counter(
            "nyc311_surveys_sent", "Surveys the provider accepted, by channel.", "channel"),
        surveys_failed=counter(
            "nyc311_surveys_failed", "Surveys recorded as failed (refused, or out of attempts), "
            "by the last channel tried ('none': no channel would take it).", "channel"),
        surveys_no_contact=counter(
            "nyc311_surveys_no_contact", "Closures settled without a survey: no contact or "
            "no channel for it."),
        contacts_erased=counter(
            "nyc311_contacts_erased", "Requests whose contact the purge erased (keys destroyed)."),
        contacts_held=Gauge(
            "nyc311_contacts_held", "Requests whose contact the vault holds, after the last purge.",
            ["service"], registry=registry),
        oldest_contact=Gauge(
            "nyc311_oldest_contact_age_seconds", "Age of the oldest contact key held, after the "
            "last purge (0 when none).", ["service"], registry=registry),
        surveys_too_old=counter(
            "nyc311_surveys_too_old", "Closures settled without a survey because they are older "
            "than NYC311_SURVEY_MAX_CLOSURE_AGE_DAYS (a backfill or a replay)."),
        reopen_forwarded=counter(
            "nyc311_reopen_forwarded", "ReopenRequested events produced and acknowledged."),
        publications=counter(
            "nyc311_publications", "Monthly publications, by outcome (new_revision, unchanged, "
            "failed).", "outcome"),
        survey_answers=counter(
            "nyc311_survey_answers", "Survey form submissions, by outcome (recorded, "
            "already_answered, invalid, not_recorded).", "outcome"),
        server_errors=counter(
            "nyc311_server_errors", "Requests answered with an error page after an unexpected "
            "exception (the log has it)."),
        outbox_backlog=Gauge(
            "nyc311_outbox_backlog", "Survey answers stored in the outbox and not yet "
            "acknowledged by Kafka.", ["service"],
            registry=registry),
        outbox_oldest=Gauge(
            "nyc311_outbox_oldest_age_seconds", "Age of the oldest survey answer the outbox still "
            "holds unsent (0 when none).", ["service"], registry=registry),
        outbox_relayed=counter(
            "nyc311_outbox_relayed", "Survey answers the outbox relay produced and Kafka "
            "acknowledged."),
        outbox_relay_failures=counter(
            "nyc311_outbox_relay_failures", "Survey answers the outbox relay tried to produce "
            "and Kafka did not acknowledge (tried again with backoff)."),
    )


_families: weakref.WeakKeyDictionary[CollectorRegistry, _Families] = weakref.WeakKeyDictionary()
_families_lock = threading.Lock()


def families(registry: CollectorRegistry) -> _Families:
    """The nyc311 metric families in ``registry``, registered on first use."""
    with _families_lock:
        found = _families.get(registry)
        if found is None:
            found = _families[registry] = _define(registry)
        return found


def _version() -> str:
    try:
        return metadata.version("nyc311-pipeline")
    except metadata.PackageNotFoundError:
        return "unknown"


class Metrics:
    """One service's metrics (its ``service`` label) in ``registry`` (default: the process's).

    Thread-safe: the dispatcher's sending threads and the metrics server share it.
    """

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.service = service
        self.registry = registry if registry is not None else REGISTRY
        self._f = families(self.registry)
        self._f.build_info.labels(service).info({"version": _version()})

    # -- consumers -------------------------------------------------------------------------------

    def consuming(self, topics: Iterable[str]) -> None:
        """Create the per-topic series at zero, so rates and alerts work from the first scrape."""
        for topic in topics:
            self._f.records_processed.labels(self.service, topic)
            self._f.records_dead_lettered.labels(self.service, topic)
            for reason in (FAILED_INVALID, FAILED_REFUSED):
                self._f.records_failed.labels(self.service, topic, reason)
        self._f.db_retries.labels(self.service)

    def batch_committed(self, decoded: Iterable[str], invalid: Iterable[str],
                        refused: Iterable[str], seconds: float, at: float) -> None:
        """A batch committed at Unix time ``at`` after ``seconds``; the topic of each record
        decoded (the refused among them are not counted as processed), invalid and refused."""
        refused_by_topic = TopicCounts(refused)
        processed = TopicCounts(decoded)
        processed.subtract(refused_by_topic)
        for topic, count in processed.items():
            if count > 0:
                self._f.records_processed.labels(self.service, topic).inc(count)
        for reason, failed in ((FAILED_INVALID, TopicCounts(invalid)),
                               (FAILED_REFUSED, refused_by_topic)):
            for topic, count in failed.items():
                self._f.records_failed.labels(self.service, topic, reason).inc(count)
        self._f.batch_duration.labels(self.service).observe(seconds)
        self._f.last_commit.labels(self.service).set(at)

    def dead_lettered(self, topics: Iterable[str]) -> None:
        """Records produced to their DLQ and acknowledged, one topic per record."""
        for topic, count in TopicCounts(topics).items():
            self._f.records_dead_lettered.labels(self.service, topic).inc(count)

    def db_retry(self) -> None:
        self._f.db_retries.labels(self.service).inc()

    # -- the survey loop -------------------------------------------------------------------------

    def survey_sent(self, channel: str) -> None:
        self._f.surveys_sent.labels(self.service, channel).inc()

    def survey_failed(self, channel: str | None) -> None:
        self._f.surveys_failed.labels(self.service, channel or NO_CHANNEL).inc()

    def survey_no_contact(self) -> None:
        self._f.surveys_no_contact.labels(self.service).inc()

    def survey_too_old(self) -> None:
        self._f.surveys_too_old.labels(self.service).inc()

    def contacts_purged(self, erased: int, held: int, oldest_days: float | None) -> None:
        self._f.contacts_erased.labels(self.service).inc(erased)
        self._f.contacts_held.labels(self.service).set(held)
        self._f.oldest_contact.labels(self.service).set((oldest_days or 0) * 86400)

    def reopen_forwarded(self, count: int = 1) -> None:
        self._f.reopen_forwarded.labels(self.service).inc(count)

    def survey_answer(self, outcome: str) -> None:
        self._f.survey_answers.labels(self.service, outcome).inc()

    def server_error(self) -> None:
        self._f.server_errors.labels(self.service).inc()

    def watch_outbox(self, status: Callable[[], tuple[int, float | None]]) -> None:
        """Export the outbox from ``status``, read at each scrape: the unsent answers and the
        Unix time the oldest of them was stored (``None`` when there is none)."""
        self._f.outbox_backlog.labels(self.service).set_function(lambda: float(status()[0]))

        def oldest_age() -> float:
            since = status()[1]
            return 0.0 if since is None else max(0.0, time.time() - since)

        self._f.outbox_oldest.labels(self.service).set_function(oldest_age)
        self._f.outbox_relayed.labels(self.service)
        self._f.outbox_relay_failures.labels(self.service)

    def outbox_relayed(self, sent: int, failed: int) -> None:
        self._f.outbox_relayed.labels(self.service).inc(sent)
        self._f.outbox_relay_failures.labels(self.service).inc(failed)

    # -- the publication -------------------------------------------------------------------------

    def publication(self, outcome: str) -> None:
        self._f.publications.labels(self.service, outcome).inc()

    # -- exposition ------------------------------------------------------------------------------

    def watch_stall(self, stalled_seconds: Callable[[], float]) -> None:
        """Export ``nyc311_stalled_seconds`` from ``stalled_seconds``, read at each scrape."""
        def seconds() -> float:
            try:
                return float(stalled_seconds())
            except Exception:
                return 0.0

        self._f.stalled.labels(self.service).set_function(seconds)

    def watch(self, health: Health) -> None:
        """Export ``nyc311_ready`` from ``health``, evaluated at each scrape."""
        def ready() -> float:
            try:
                return 1.0 if health()[0] else 0.0
            except Exception:
                return 0.0

        self._f.ready.labels(self.service).set_function(ready)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


class MetricsServer:
    """The running ``/metrics`` and ``/healthz`` server; :meth:`close` stops it."""

    def __init__(self, httpd: ThreadingHTTPServer, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


def check_health(health: Health) -> tuple[bool, str]:
    """``health()``, with an exception taken as not ready (its class as the reason)."""
    try:
        ok, reason = health()
    except Exception as exc:
        log.warning("health check raised %s: %s", type(exc).__name__, exc)
        return False, f"health check failed: {type(exc).__name__}"
    return ok, reason


def _handler(registry: CollectorRegistry, health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "nyc311-metrics"
        sys_version = ""

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok, reason = check_health(health)
                text = (f"ready: {reason}" if ok and reason else "ready") if ok else reason
                self._reply(200 if ok else 503, f"{text}\n".encode(), "text/plain; charset=utf-8")
            else:
                self._reply(404, b"not found: try /metrics or /healthz\n",
                            "text/plain; charset=utf-8")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # scrapes are not news
            log.debug("metrics server: " + format, *args)

    return Handler


def serve_metrics(port: int, health: Health, metrics: Metrics | None = None,
                  host: str = "0.0.0.0") -> MetricsServer:
    """Serve ``/metrics`` and ``/healthz`` on ``host:port`` (port 0: any free port) from a daemon
    thread, until :meth:`MetricsServer.close` or the end of the process.

    ``health`` says whether the service is ready and, if not, why. With ``metrics``, its registry
    is served and ``nyc311_ready{service}`` follows ``health``; without, the process registry.
    """
    registry = REGISTRY
    if metrics is not None:
        metrics.watch(health)
        registry = metrics.registry
    httpd = ThreadingHTTPServer((host, port), _handler(registry, health))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="metrics-server", daemon=True)
    thread.start()
    log.info("metrics on http://%s:%d/metrics, health on /healthz", host, httpd.server_address[1])
    return MetricsServer(httpd, thread)
