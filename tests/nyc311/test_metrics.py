"""Metrics and health as an operator sees them: over HTTP, from services running on the real
Kafka broker, PostgreSQL server, SMTP server and SNS server; and the dashboard and scrape
configuration checked against the metrics the code really defines."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from consumers.channels import channels_from_settings
from consumers.dispatcher import GROUP_ID as DISPATCHER_GROUP
from consumers.dispatcher import Dispatcher
from consumers.loop import ConsumeLoop
from consumers.projector import GROUP_ID as PROJECTOR_GROUP
from consumers.projector import Projector
from nyc311.kafka import EventProducer
from nyc311.metrics import Metrics, MetricsServer, families, serve_metrics
from producers.survey_web import create_app
from survey.links import make_token
from tests.consumers.test_dispatcher import closed, created
from tests.helpers import produce, project, start_cli
from tests.servers import free_port, http_get, received

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "deploy" / "grafana" / "dashboards"
DATASOURCES = REPO / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROMETHEUS = REPO / "deploy" / "prometheus" / "prometheus.yml"
COMPOSE = REPO / "docker-compose.yml"

SECRET = "test-secret-0123456789abcdef"
WAIT = 60.0

# What the lag exporter (`nyc311 run lag-exporter`) documents (kafka-lag-exporter's names), and
# Prometheus's own series per scrape target: the names the dashboard may use beside ours.
LAG_EXPORTER_METRICS = {
    "kafka_consumergroup_group_offset",
    "kafka_consumergroup_group_lag",
    "kafka_consumergroup_group_lag_seconds",
    "kafka_consumergroup_group_max_lag",
    "kafka_consumergroup_group_max_lag_seconds",
    "kafka_consumergroup_group_sum_lag",
    "kafka_consumergroup_group_topic_sum_lag",
    "kafka_partition_latest_offset",
    "kafka_partition_earliest_offset",
    "nyc311_consumergroup_status",
}
PROMETHEUS_SERIES = {"up"}


# -- reading /metrics and /healthz --------------------------------------------------------------


def value(text: str, name: str, **labels: str) -> float | None:
    """The sample ``name`` with exactly these labels (among others) in an exposition, or None."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def wait_for(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class HeldAssignment(ConsumeLoop):
    """The projector's loop, holding its first partition assignment until the test lets go, so
    the test sees the service between "consuming" and "assigned" every time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.assigning = threading.Event()
        self.release = threading.Event()

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        self.assigning.set()
        self.release.wait(WAIT)
        super()._on_assign(consumer, partitions)


class Running:
    """A consume loop on a thread, with its metrics server on a free port."""

    def __init__(self, loop: ConsumeLoop, **run: Any) -> None:
        self.loop = loop
        self.server: MetricsServer = serve_metrics(0, loop.is_ready, loop.metrics,
                                                   host="127.0.0.1")
        self.url = f"http://127.0.0.1:{self.server.port}"
        self.errors: list[BaseException] = []
        self._run = run
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        try:
            self.loop.run(**self._run)
        except BaseException as exc:
            self.errors.append(exc)

    def start(self) -> Running:
        self.thread.start()
        return self

    def health(self) -> tuple[int, str]:
        return http_get(f"{self.url}/healthz")

    def metrics(self) -> str:
        status, text = http_get(f"{self.url}/metrics")
        assert status == 200
        return text

    def stop(self) -> None:
        self.loop.stop()
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the loop did not stop"
        assert not self.errors, self.errors

    def close(self) -> None:
        if self.thread.is_alive():
            self.loop.stop()
            self.thread.join(WAIT)
        self.server.close()


@pytest.fixture
def running() -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(loop: ConsumeLoop, **run: Any) -> Running:
        started.append(Running(loop, **run))
        return started[-1]

    yield start
    for each in started:
        each.close()


# -- the projector --------------------------------------------------------------------------------


def test_projector_health_follows_assignment_and_metrics_count_records(settings, topics,
                                                                        running):
    metrics = Metrics("projector", CollectorRegistry())
    loop = HeldAssignment(settings, PROJECTOR_GROUP, Projector(settings), metrics=metrics)
    service = running(loop)
    assert service.health() == (503, "not consuming\n")

    created_topic = settings.topic("nyc311.request-created")
    closed_topic = settings.topic("nyc311.request-closed")
    events = [created(f"70{i}", email=f"p{i}@example.com") for i in range(5)]
    events += [closed(f"70{i}") for i in range(3)]
    produce(settings, events)
    with EventProducer(settings) as producer:
        producer.produce_raw(created_topic, b"bad-key", b"not avro at all")

    started = time.time()
    service.start()
    assert loop.assigning.wait(WAIT), "no partitions were ever assigned"
    status, reason = service.health()
    assert (status, reason) == (503, "no partitions assigned\n")
    assert value(service.metrics(), "nyc311_ready", service="projector") == 0
    loop.release.set()

    status, reason = wait_for(lambda: (r := service.health())[0] == 200 and r, "/healthz 200")
    assert reason.startswith("ready") and "partitions assigned" in reason

    def counted() -> str | None:
        text = service.metrics()
        done = value(text, "nyc311_records_processed_total", service="projector",
                     topic=closed_topic) == 3
        return text if done and value(text, "nyc311_records_dead_lettered_total",
                                      service="projector", topic=created_topic) == 1 else None

    text = wait_for(counted, "the records to be counted")
    labels = {"service": "projector", "topic": created_topic}
    assert value(text, "nyc311_records_processed_total", **labels) == 5
    assert value(text, "nyc311_records_failed_total", reason="invalid", **labels) == 1
    assert value(text, "nyc311_records_failed_total", reason="refused", **labels) == 0
    assert value(text, "nyc311_records_dead_lettered_total", service="projector",
                 topic=closed_topic) == 0
    assert value(text, "nyc311_batch_duration_seconds_count", service="projector") >= 1
    assert value(text, "nyc311_last_commit_timestamp_seconds", service="projector") >= started
    assert value(text, "nyc311_db_retries_total", service="projector") == 0
    assert value(text, "nyc311_ready", service="projector") == 1
    assert value(text, "nyc311_build_info", service="projector") == 1
    with psycopg.connect(settings.libpq_url) as conn:  # the counts are the rows written
        rows = conn.execute(f"SELECT (SELECT count(*) FROM {settings.db_schema}.requests), "
                            f"(SELECT count(*) FROM {settings.db_schema}.closures)").fetchone()
    assert rows == (5, 3)

    service.stop()
    assert service.health() == (503, "not consuming\n")


def test_a_consumer_is_not_ready_while_its_database_refuses_connections(settings, topics,
                                                                      base_settings, running):
    metrics = Metrics("projector", CollectorRegistry())
    service = running(ConsumeLoop(settings, PROJECTOR_GROUP, Projector(settings),
                                  metrics=metrics)).start()
    wait_for(lambda: service.health()[0] == 200, "/healthz 200")
    database = settings.database_url.rpartition("/")[2]
    with psycopg.connect(base_settings.libpq_url, autocommit=True) as admin:
        try:
            admin.execute(f'ALTER DATABASE "{database}" CONNECTION LIMIT 0')
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()", (database,))
            produce(settings, [created("7101")])  # its batch finds the database away

            _, reason = wait_for(lambda: (r := service.health())[0] == 503 and r,
                                 "/healthz 503")
            assert reason.startswith("database unavailable")
            text = service.metrics()
            assert value(text, "nyc311_db_retries_total", service="projector") >= 1
            assert value(text, "nyc311_ready", service="projector") == 0
        finally:
            admin.execute(f'ALTER DATABASE "{database}" CONNECTION LIMIT -1')

    wait_for(lambda: service.health()[0] == 200, "/healthz 200 again")
    wait_for(lambda: value(service.metrics(), "nyc311_records_processed_total",
                           service="projector",
                           topic=settings.topic("nyc311.request-created")) == 1,
             "the batch to be written once the database is back")


class RawHandler:
    """A handler of one topic's records as raw bytes, with nothing to set up: what its ``write``
    does to the database is up to a subclass."""

    def __init__(self, topic: str) -> None:
        self.topics = [topic]

    def setup(self, conn: psycopg.Connection) -> None:
        pass

    def decode(self, msg: Any) -> bytes:
        return bytes(msg.value() or b"")


class RefusingHandler(RawHandler):
    """Writes nothing but asks PostgreSQL to divide by zero for records whose value is
    ``refuse``: a record the database refuses, whatever the batch around it."""

    def write(self, conn: psycopg.Connection, items: list[Any]) -> None:
        for item in items:
            conn.execute("SELECT 1 / %s", (0 if item.value == b"refuse" else 1,))


def test_records_the_database_refuses_are_failed_not_processed(settings, topics, running):
    topic = settings.topic("nyc311.request-created")
    with EventProducer(settings) as producer:
        for value_ in (b"ok", b"refuse", b"ok", b"ok"):
            producer.produce_raw(topic, b"k", value_)
    metrics = Metrics("refuser", CollectorRegistry())
    service = running(ConsumeLoop(settings, "nyc311-refuser", RefusingHandler(topic),
                                  metrics=metrics)).start()
    wait_for(lambda: value(service.metrics(), "nyc311_records_dead_lettered_total",
                           service="refuser", topic=topic) == 1,
             "the refused record to be dead-lettered")
    wait_for(lambda: value(service.metrics(), "nyc311_records_processed_total",
                           service="refuser", topic=topic) == 3, "the other three counted")
    text = service.metrics()
    assert value(text, "nyc311_records_failed_total", service="refuser", topic=topic,
                 reason="refused") == 1
    assert value(text, "nyc311_records_failed_total", service="refuser", topic=topic,
                 reason="invalid") == 0
    assert service.health()[0] == 200  # a refused record is not an unhealthy database


def test_the_command_serves_metrics_and_health_on_its_port(settings, topics, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    produce(settings, [created("7201"), closed("7201")])
    log = tmp_path / "projector.log"
    proc = start_cli(settings, "run", "projector", log=log,
                     env={"NYC311_METRICS_PORT": str(port)})

    def healthy() -> bool:
        assert proc.poll() is None, log.read_text()
        try:
            return http_get(f"{url}/healthz")[0] == 200
        except OSError:  # not listening yet
            return False

    def counted() -> str | None:
        text = http_get(f"{url}/metrics")[1]
        done = value(text, "nyc311_records_processed_total", service="projector",
                     topic=settings.topic("nyc311.request-closed")) == 1
        return text if done else None

    try:
        wait_for(healthy, "the command's /healthz 200")
        text = wait_for(counted, "its records counted")
        assert value(text, "process_cpu_seconds_total") is not None  # the process registry
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(WAIT)
    output = log.read_text()
    assert proc.returncode == 0, output
    assert "projector: 2 records" in output


# -- the dispatcher -------------------------------------------------------------------------------


@pytest.mark.usefixtures("aws_env")
def test_dispatcher_counts_surveys_by_channel(settings, topics, plain_smtp, moto_server,
                                              running):
    smtp = plain_smtp()
    surveyed = replace(settings, survey_secret=SECRET, smtp_host="127.0.0.1",
                       smtp_port=smtp.port, smtp_starttls=False, sms_provider="sns",
                       sns_endpoint_url=moto_server.url)
    produce(surveyed, [
        created("7301", email="ana@example.com"), closed("7301"),
        created("7302", email="bo@example.org", language="es"), closed("7302"),
        created("7303", phone="+12125550173"), closed("7303"),
        created("7304", email="nobody@localhost"), closed("7304"),  # refused: no domain
        created("7305"), closed("7305"),                            # no contact
    ])
    project(surveyed)

    metrics = Metrics("dispatcher", CollectorRegistry())
    dispatcher = Dispatcher(surveyed, lambda: channels_from_settings(surveyed), metrics=metrics)
    loop = ConsumeLoop(surveyed, DISPATCHER_GROUP, dispatcher, metrics=metrics)
    service = running(loop, on_tick=dispatcher.tick).start()
    try:
        def settled() -> str | None:
            text = service.metrics()
            total = sum(value(text, name, service="dispatcher", **labels) or 0
                        for name, labels in [("nyc311_surveys_sent_total", {"channel": "EMAIL"}),
                                             ("nyc311_surveys_sent_total", {"channel": "SMS"}),
                                             ("nyc311_surveys_failed_total", {}),
                                             ("nyc311_surveys_no_contact_total", {})])
            return text if total == 5 else None

        text = wait_for(settled, "all five closures to be settled")
        assert service.health()[0] == 200
    finally:
        service.stop()
        dispatcher.close()

    assert value(text, "nyc311_surveys_sent_total", service="dispatcher", channel="EMAIL") == 2
    assert value(text, "nyc311_surveys_sent_total", service="dispatcher", channel="SMS") == 1
    assert value(text, "nyc311_surveys_failed_total", service="dispatcher", channel="EMAIL") == 1
    assert value(text, "nyc311_surveys_no_contact_total", service="dispatcher") == 1
    assert value(text, "nyc311_records_processed_total", service="dispatcher",
                 topic=surveyed.topic("nyc311.request-closed")) == 5
    assert len(received(smtp.maildir)) == 2
    assert [m for m in moto_server.sms_messages() if m["phone_number"] == "+12125550173"]


# -- the survey page ------------------------------------------------------------------------------


def test_survey_page_metrics_count_answers_by_outcome(settings, topics):
    survey_settings = replace(settings, survey_secret=SECRET)
    registry = CollectorRegistry()
    app = create_app(survey_settings, metrics=Metrics("survey-web", registry))
    token = make_token(SECRET, str(uuid.uuid4()), "64123456", "en")
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post(f"/survey/{token}", data={"satisfaction": "AGREE"}).status_code == 200
        assert client.post(f"/survey/{token}", data={"satisfaction": "AGREE"}).status_code == 409
        other = make_token(SECRET, str(uuid.uuid4()), "64123457", "en")
        assert client.post(f"/survey/{other}", data={}).status_code == 400
        assert client.get("/healthz").status_code == 200
        page = client.get("/metrics")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/plain; version=")  # Prometheus text
    for outcome, count in [("recorded", 1), ("already_answered", 1), ("invalid", 1)]:
        assert value(page.text, "nyc311_survey_answers_total", service="survey-web",
                     outcome=outcome) == count
    assert value(page.text, "nyc311_survey_answers_total", outcome="not_recorded") is None
    assert value(page.text, "nyc311_ready", service="survey-web") == 1
    assert token not in page.text and "64123456" not in page.text


def test_survey_page_metrics_say_when_the_database_is_down(settings):
    gone = replace(settings, survey_secret=SECRET, database_url=settings.database_url + "_gone")
    app = create_app(gone, metrics=Metrics("survey-web", CollectorRegistry()))
    token = make_token(SECRET, str(uuid.uuid4()), "64123456", "en")
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post(f"/survey/{token}", data={"satisfaction": "AGREE"}).status_code == 503
        text = client.get("/metrics").text
    assert value(text, "nyc311_survey_answers_total", outcome="not_recorded") == 1
    assert value(text, "nyc311_ready", service="survey-web") == 0


# -- the server itself (no services needed) -------------------------------------------------------


def test_health_server_reports_the_reason_and_survives_a_failing_check():
    state: dict[str, Any] = {"answer": (False, "no partitions assigned")}

    def health() -> tuple[bool, str]:
        if isinstance(state["answer"], Exception):
            raise state["answer"]
        return state["answer"]

    metrics = Metrics("probe", CollectorRegistry())
    server = serve_metrics(0, health, metrics, host="127.0.0.1")
    url = f"http://127.0.0.1:{server.port}"
    try:
        assert http_get(f"{url}/healthz") == (503, "no partitions assigned\n")
        state["answer"] = (True, "")
        assert http_get(f"{url}/healthz") == (200, "ready\n")
        assert value(http_get(f"{url}/metrics")[1], "nyc311_ready", service="probe") == 1
        state["answer"] = RuntimeError("boom")
        assert http_get(f"{url}/healthz") == (503, "health check failed: RuntimeError\n")
        assert value(http_get(f"{url}/metrics")[1], "nyc311_ready", service="probe") == 0
        assert http_get(f"{url}/nowhere")[0] == 404
    finally:
        server.close()


# -- the dashboard and the scrape configuration ---------------------------------------------------


def defined_metric_names() -> set[str]:
    """Every series name nyc311/metrics.py exports, from the families it registers."""
    registry = CollectorRegistry()
    families(registry)
    suffixes = {"counter": ["_total", "_created"], "histogram": ["_bucket", "_count", "_sum",
                                                                 "_created"],
                "gauge": [""], "info": ["_info"]}
    return {family.name + suffix for family in registry.collect()
            for suffix in suffixes[family.type]}


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
                "or", "unless", "offset", "atan2"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (enough PromQL for a dashboard's)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values)
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges, Grafana's $__rate_interval among them
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if expr[match.end():].lstrip().startswith("("):
            continue  # a function or an aggregation
        if match.group(0) not in PROMQL_WORDS:
            names.add(match.group(0))
    return names


def test_promql_metric_names_are_found():
    assert promql_metric_names(
        'histogram_quantile(0.99, sum by (service, le) (rate(nyc311_batch_duration_seconds_'
        'bucket{service!="x"}[$__rate_interval])))') == {"nyc311_batch_duration_seconds_bucket"}
    assert promql_metric_names("time() - max by (service) (nyc311_last_commit_timestamp_seconds)"
                               " > bool 60") == {"nyc311_last_commit_timestamp_seconds"}


def dashboard_files() -> list[tuple[str, dict[str, Any]]]:
    """Every dashboard Grafana is provisioned with, by file name."""
    paths = sorted(DASHBOARDS.glob("*.json"))
    assert paths, f"no dashboard in {DASHBOARDS}"
    return [(path.name, json.loads(path.read_text(encoding="utf-8"))) for path in paths]


def dashboard_targets() -> list[tuple[str, dict[str, Any]]]:
    """(file: panel title, target) of every query of every dashboard."""
    targets = []
    for name, dashboard in dashboard_files():
        panels = list(dashboard["panels"])
        for panel in dashboard["panels"]:  # panels folded into rows
            panels.extend(panel.get("panels", []))
        targets += [(f"{name}: {panel['title']}", target) for panel in panels
                    for target in panel.get("targets", [])]
    return targets


def test_the_lag_exporter_exports_the_names_listed_here():
    from operations.lag.exporter import LagCollector

    assert {family.name for family in LagCollector("t").collect()} == LAG_EXPORTER_METRICS


def test_dashboard_uses_only_metrics_that_exist():
    targets = dashboard_targets()
    assert len(targets) >= 10
    allowed = defined_metric_names() | LAG_EXPORTER_METRICS | PROMETHEUS_SERIES
    used: set[str] = set()
    for title, target in targets:
        names = promql_metric_names(target["expr"])
        assert names, f"{title}: {target['expr']!r} selects no metric"
        unknown = names - allowed
        assert not unknown, f"{title}: {sorted(unknown)} defined neither in nyc311/metrics.py " \
                            f"nor by the lag exporter"
        used |= names
    for needed in ["kafka_consumergroup_group_lag", "kafka_consumergroup_group_lag_seconds",
                   "kafka_consumergroup_group_max_lag", "nyc311_records_processed_total",
                   "nyc311_records_dead_lettered_total", "nyc311_batch_duration_seconds_bucket",
                   "nyc311_surveys_sent_total", "nyc311_surveys_failed_total",
                   "nyc311_last_commit_timestamp_seconds", "nyc311_ready",
                   "nyc311_consumergroup_status"]:
        assert needed in used, f"the dashboard shows nothing of {needed}"


def test_dashboard_panels_use_the_provisioned_data_source():
    provisioned = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    uids = {source["uid"] for source in provisioned if source["type"] == "prometheus"}
    for name, dashboard in dashboard_files():
        assert dashboard["uid"] and dashboard["title"], name
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: panel ids must be unique"
    for title, target in dashboard_targets():
        assert target["datasource"]["uid"] in uids, title


def metrics_ports(compose: dict[str, Any]) -> dict[str, int]:
    """Compose service -> the port its metrics are served on, from its command."""
    ports = {}
    for name, spec in compose["services"].items():
        command = spec.get("command") or []
        if not isinstance(command, list) or command[:1] != ["nyc311"]:
            continue
        for flag in ("--metrics-port", "--port"):
            if flag in command:
                ports[name] = int(command[command.index(flag) + 1])
                break
    return ports


def test_prometheus_scrapes_every_service_on_its_metrics_port():
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    config = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    scraped: dict[str, int] = {}
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, _, port = target.partition(":")
                scraped[host] = int(port)
        for dns in job.get("dns_sd_configs", []):  # the consumers: every replica, by DNS
            assert dns["type"] == "A", job["job_name"]
            for host in dns["names"]:
                scraped[host] = int(dns["port"])
    expected = metrics_ports(compose)
    assert {"projector", "dispatcher", "reopen-forwarder", "aggregator", "survey-web",
            "lag-exporter"} <= set(expected)
    assert scraped == expected
    for name in ("prometheus", "grafana"):
        assert name in compose["services"]


def test_the_runbook_stall_alerts_use_only_metrics_that_exist():
    """The alert rules docs/RUNBOOK.md gives for a stalled consumer parse as Prometheus rules
    and select only series the services and the lag exporter export."""
    text = (REPO / "docs" / "RUNBOOK.md").read_text(encoding="utf-8")
    block = text.split("<!-- stall-alerts -->", 1)[1].split("<!-- /stall-alerts -->", 1)[0]
    rules = yaml.safe_load(block.strip().removeprefix("```yaml").removesuffix("```"))
    exprs = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    assert {"Nyc311ConsumerStalled", "Nyc311ConsumerNotReady"} <= set(exprs)
    known = defined_metric_names() | LAG_EXPORTER_METRICS | PROMETHEUS_SERIES
    used = {name for expr in exprs.values() for name in promql_metric_names(expr)}
    assert {"nyc311_stalled_seconds", "nyc311_ready", "nyc311_consumergroup_status"} <= used
    assert used <= known, used - known
