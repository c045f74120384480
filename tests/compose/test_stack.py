"""The stack of docker-compose.yml on a Docker engine, end to end (`make compose-test`).

The compose file runs as it is, with the local images in place of the registry's
(KAFKA_IMAGE=nyc311-kafka:local and so on, built by `make images`) and deploy/compose.check.yml
adding a mail catcher for the dispatcher. Every service is checked healthy; then the main job
runs through the containers: the preceding month simulated into the broker, projected, surveys
mailed to the catcher, one answered through survey-web's published port with a reopen request,
the reopen forwarded, the month published to the S3 server by `aggregator --once`, and the files
read back from S3 and compared with what the topics imply (tests/compose/topic_totals.py counts
the events themselves). Prometheus has lag series for every consumer group; a projector killed
mid-stream and started again loses and doubles nothing; two projector replicas share the
partitions and are both scraped; `down -v` leaves nothing behind.

The tests share one stack (module scope) and run in file order. They are skipped unless
NYC311_COMPOSE_TEST=1 (set by `make compose-test`), as they need a Docker engine and the images.
Published ports are bound to 127.0.0.1 on free ports, so the check runs beside anything else.
NYC311_COMPOSE_KEEP=1 leaves the stack up after a failure, to look at it.
"""

from __future__ import annotations

import email
import email.message
import json
import os
import re
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import boto3
import pytest
from botocore.config import Config

from tests.servers import free_ports

REPO = Path(__file__).resolve().parents[2]
TOTALS_SCRIPT = Path(__file__).with_name("topic_totals.py")
COMPOSE_VAR = "NYC311_COMPOSE_TEST"
NEW_YORK = ZoneInfo("America/New_York")

#: The image each third-party service runs in the check, unless the environment says otherwise.
LOCAL_IMAGES = {
    "KAFKA_IMAGE": "nyc311-kafka:local",
    "POSTGRES_IMAGE": "nyc311-postgres:local",
    "MINIO_IMAGE": "nyc311-s3:local",
    "MINIO_MC_IMAGE": "nyc311-s3:local",
    "PROMETHEUS_IMAGE": "nyc311-prometheus:local",
    "MAIL_IMAGE": "nyc311-mail:local",
}
APP_IMAGE = "nyc311-pipeline:local"
#: Services that run once and exit; every other one stays up with a healthcheck.
ONE_SHOT = {"migrate", "minio-setup"}
#: The services' database logins (docker-compose.yml's migrate makes them, one password each).
LOGINS = ("projector", "dispatcher", "survey_web", "forwarder", "aggregator", "purge", "producer")
CONSUMER_GROUPS = {"nyc311-projector", "nyc311-dispatcher", "nyc311-reopen-forwarder"}
BUCKET = "nyc311-site"
TABLES = ("requests_received", "closure_rates", "reopen_rates", "satisfaction")
LINK = re.compile(r"https?://[^\s<>\"']+/survey/[A-Za-z0-9_.\-]+")
FIRST_BATCH = 3000
SECOND_BATCH = 20000

pytestmark = pytest.mark.skipif(
    os.environ.get(COMPOSE_VAR) != "1",
    reason=f"the Docker stack check: `make compose-test` runs it ({COMPOSE_VAR}=1)",
)


def compose_command() -> list[str]:
    """`docker compose` (the plugin) where it answers, else the standalone `docker-compose`."""
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if plugin.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("neither `docker compose` nor `docker-compose` is installed")


def preceding_month(now: datetime) -> str:
    local = now.astimezone(NEW_YORK)
    year, month = (local.year, local.month - 1) if local.month > 1 else (local.year - 1, 12)
    return f"{year:04d}-{month:02d}"


def wait_for(what: str, condition: Callable[[], Any], timeout: float,
             diagnose: Callable[[], str] = lambda: "", interval: float = 1.0) -> Any:
    """Poll ``condition`` until it returns something true; fail after ``timeout`` s, saying
    what was awaited and what ``diagnose`` tells."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{diagnose()}")
        time.sleep(interval)


@dataclass
class Stack:
    """One compose project of docker-compose.yml + deploy/compose.check.yml."""

    project: str
    env: dict[str, str]
    ports: dict[str, int]
    month: str
    compose: list[str] = field(default_factory=compose_command)

    def command(self, *args: str) -> list[str]:
        """The compose command line of this project for ``args``."""
        return [*self.compose, "-p", self.project, "-f", str(REPO / "docker-compose.yml"),
                "-f", str(REPO / "deploy" / "compose.check.yml"), *args]

    def run(self, *args: str, input: str | None = None, timeout: float = 300,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        command = self.command(*args)
        done = subprocess.run(command, cwd=REPO, env=self.env, input=input, text=True,
                              capture_output=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            pytest.fail(f"`{' '.join(command[len(self.compose):])}` exited {done.returncode}:\n"
                        f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def logs(self, *services: str, tail: int = 40) -> str:
        done = self.run("logs", "--no-color", "--tail", str(tail), *services, check=False)
        return done.stdout[-6000:] + done.stderr[-2000:]

    def container(self, service: str) -> str:
        ids = self.run("ps", "-q", service).stdout.split()
        assert len(ids) == 1, f"{service}: expected one container, got {ids}"
        return ids[0]

    def docker(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(["docker", *args], env=self.env, text=True, capture_output=True,
                              timeout=timeout, check=False)
        assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr[-2000:]}"
        return done.stdout

    def state(self, service: str) -> dict[str, Any]:
        ids = self.run("ps", "-a", "-q", service).stdout.split()
        if not ids:
            return {}
        return dict(json.loads(self.docker("inspect", "-f", "{{json .State}}", ids[0])))

    def sql(self, query: str) -> str:
        """One value from PostgreSQL, as the owner, through the postgres container."""
        return self.run("exec", "-T", "postgres", "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1",
                        "-U", "nyc311", "-d", "nyc311", "-c", query).stdout.strip()

    def app(self, login: str | None, *command: str, service: str = "migrate",
            input: str | None = None, timeout: float = 600) -> str:
        """``command`` in a throwaway container of ``service`` (the app image, that service's
        environment) on the stack's network, connected to PostgreSQL as ``login`` (a service's
        login; None: the service's own DATABASE_URL, the owner's for migrate)."""
        env: list[str] = []
        if login:
            password = self.env[f"NYC311_{login.upper()}_DB_PASSWORD"]
            env = ["-e", f"DATABASE_URL=postgresql://{login}:{password}@postgres:5432/nyc311"]
        return self.run("run", "--rm", "--no-deps", "-T", *env, service, *command,
                        input=input, timeout=timeout).stdout

    def topic_totals(self) -> dict[str, Any]:
        out = self.app(None, "python", "-", self.month, input=TOTALS_SCRIPT.read_text())
        return dict(json.loads(out.strip().splitlines()[-1]))

    def url(self, port: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[port]}{path}"


def images_missing(env: dict[str, str]) -> list[str]:
    wanted = sorted({*(env[name] for name in LOCAL_IMAGES), APP_IMAGE})
    return [image for image in wanted
            if subprocess.run(["docker", "image", "inspect", image], env=env,
                              capture_output=True, check=False).returncode != 0]


def compose_labelled(env: dict[str, str], kind: str, project: str) -> list[str]:
    """The containers, networks or volumes compose made for ``project``."""
    args = {"container": ["ps", "-a", "-q"], "network": ["network", "ls", "-q"],
            "volume": ["volume", "ls", "-q"]}[kind]
    out = subprocess.run(["docker", *args, "--filter",
                          f"label=com.docker.compose.project={project}"],
                         env=env, text=True, capture_output=True, check=True).stdout
    return out.split()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    env = dict(os.environ)
    for name, image in LOCAL_IMAGES.items():
        env.setdefault(name, image)
    if subprocess.run(["docker", "info"], env=env, capture_output=True,
                      check=False).returncode != 0:
        pytest.fail("no Docker engine answers (DOCKER_HOST): `make compose-test` starts one")
    missing = images_missing(env)
    if missing:
        pytest.fail(f"images missing: {', '.join(missing)} (`make images` builds them)")

    names = ("survey_web", "s3", "s3_console", "prometheus")
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    env.update({
        "NYC311_BIND_ADDRESS": "127.0.0.1",
        "NYC311_SURVEY_WEB_PORT": str(ports["survey_web"]),
        "NYC311_S3_PORT": str(ports["s3"]),
        "NYC311_S3_CONSOLE_PORT": str(ports["s3_console"]),
        "NYC311_PROMETHEUS_PORT": str(ports["prometheus"]),
        "NYC311_SURVEY_BASE_URL": f"http://127.0.0.1:{ports['survey_web']}",
        "NYC311_SURVEY_SECRET": secrets.token_urlsafe(32),
        **{f"NYC311_{login.upper()}_DB_PASSWORD": secrets.token_urlsafe(16) for login in LOGINS},
        "MINIO_ROOT_USER": "nyc311check",
        "MINIO_ROOT_PASSWORD": secrets.token_urlsafe(16),
    })
    stack = Stack(f"nyc311-check-{secrets.token_hex(4)}", env, ports,
                  preceding_month(datetime.now(UTC)))
    try:
        stack.run("up", "-d", "--no-build", timeout=600)
        yield stack
    finally:
        if os.environ.get("NYC311_COMPOSE_KEEP") == "1":  # to look at a failure
            print(f"\nkept: {' '.join(stack.compose)} -p {stack.project} ... down -v")
        else:
            stack.run("down", "-v", "--remove-orphans", "-t", "20", timeout=300, check=False)


@pytest.fixture(scope="module")
def s3(stack: Stack) -> Any:
    return boto3.client(
        "s3", endpoint_url=stack.url("s3"), region_name="us-east-1",
        aws_access_key_id=stack.env["MINIO_ROOT_USER"],
        aws_secret_access_key=stack.env["MINIO_ROOT_PASSWORD"],
        config=Config(retries={"max_attempts": 3}))


def test_every_service_becomes_healthy(stack: Stack) -> None:
    declared = set(stack.run("config", "--services").stdout.split())
    services = sorted(set(stack.docker(
        "ps", "-a", "--filter", f"label=com.docker.compose.project={stack.project}",
        "--filter", "label=com.docker.compose.oneoff=False",
        "--format", '{{.Label "com.docker.compose.service"}}').split()))
    # grafana is behind a profile (no local stand-in); every other service runs
    assert set(services) == declared - {"grafana"}, services

    def unhealthy() -> list[str]:
        waiting = []
        for service in services:
            state = stack.state(service)
            if service in ONE_SHOT:
                if state.get("Status") != "exited" or state.get("ExitCode") != 0:
                    waiting.append(f"{service}: {state.get('Status')} {state.get('ExitCode')}")
            elif state.get("Health", {}).get("Status") != "healthy":
                waiting.append(f"{service}: {state.get('Status')} "
                               f"{state.get('Health', {}).get('Status')}")
        return waiting

    for service in ONE_SHOT:  # a one-shot service that failed fails the check at once
        state = stack.state(service)
        if state.get("Status") == "exited" and state.get("ExitCode") != 0:
            pytest.fail(f"{service} exited {state['ExitCode']}:\n{stack.logs(service)}")
    wait_for("every healthcheck", lambda: not unhealthy(), timeout=300,
             diagnose=lambda: "\n".join(unhealthy()) + "\n" + stack.logs(tail=15), interval=3)


def mails(stack: Stack) -> list[str]:
    """The names of the messages the mail catcher holds."""
    out = stack.run("exec", "-T", "mail", "ls", "/var/mail/catcher/new").stdout
    return sorted(out.split())


def test_main_job_end_to_end(stack: Stack, s3: Any) -> None:
    out = stack.app("producer", "nyc311", "simulate", "--month", stack.month, "--requests",
                    str(FIRST_BATCH), "--seed", "311", "--no-progress")
    assert f"events for {stack.month}" in out, out

    totals = stack.topic_totals()
    assert totals["requests"] == FIRST_BATCH
    assert sum(totals["received"].values()) == FIRST_BATCH
    wait_for(f"the projector to project {FIRST_BATCH:,} requests",
             lambda: stack.sql("SELECT count(*) FROM nyc311.requests") == str(FIRST_BATCH),
             timeout=180, diagnose=lambda: stack.logs("projector"))
    wait_for("the closures projected",
             lambda: stack.sql("SELECT count(*) FROM nyc311.closures") == str(totals["closures"]),
             timeout=120, diagnose=lambda: stack.logs("projector"))

    def settled() -> bool:
        return stack.sql("SELECT count(*) FILTER (WHERE status = 'pending'), count(*) "
                         "FROM nyc311.survey_dispatch") == f"0|{totals['closures']}"

    wait_for("the dispatcher to settle every closure", settled, timeout=300,
             diagnose=lambda: stack.sql("SELECT string_agg(status || '=' || n, ' ') FROM "
                                        "(SELECT status, count(*) n FROM nyc311.survey_dispatch "
                                        "GROUP BY 1) s") + "\n" + stack.logs("dispatcher"))
    emailed = int(stack.sql("SELECT count(*) FROM nyc311.survey_dispatch "
                            "WHERE status = 'sent' AND channel = 'EMAIL'"))
    assert emailed > 0, "no survey was emailed"
    names = wait_for(f"{emailed} messages at the mail catcher",
                     lambda: (found := mails(stack)) and len(found) >= emailed and found,
                     timeout=60, diagnose=lambda: stack.logs("mail", "dispatcher"))
    assert len(names) == emailed, "the mail catcher holds more messages than were sent"

    message = email.message_from_string(
        stack.run("exec", "-T", "mail", "cat", f"/var/mail/catcher/new/{names[0]}").stdout)
    link = survey_link(message)
    assert link and link.startswith(stack.url("survey_web", "/survey/")), link
    with urllib.request.urlopen(link, timeout=30) as page:
        assert page.status == 200
    answer = urllib.parse.urlencode({"satisfaction": "STRONGLY_DISAGREE", "reopen": "yes",
                                     "feedback": "Nothing was fixed."}).encode()
    with urllib.request.urlopen(urllib.request.Request(link, data=answer), timeout=30) as page:
        assert page.status == 200

    def reopen_forwarded() -> bool:
        return stack.sql("SELECT count(*) FROM nyc311.reopen_forwards "
                         "WHERE forwarded_at IS NOT NULL") == "1"

    wait_for("the reopen request forwarded", reopen_forwarded, timeout=120,
             diagnose=lambda: stack.logs("survey-web", "projector", "reopen-forwarder"))
    totals = stack.topic_totals()
    assert totals["answers"] == 1 and totals["reopens"] == 1, totals
    agency = stack.sql("SELECT agency FROM nyc311.reopen_forwards")
    assert totals["reopen_agencies"] == [agency], "forwarded, keyed by the request's agency"

    publish_preceding_month(stack)
    check_published(stack, s3, totals)


def publish_preceding_month(stack: Stack) -> None:
    """`nyc311 run aggregator --once` in the aggregator's environment (its login, the S3
    target): publishes the preceding month, as the service does on the 1st."""
    done = stack.run("run", "--rm", "--no-deps", "-T", "aggregator",
                     "nyc311", "run", "aggregator", "--once", timeout=600)
    assert f"published {stack.month} revision" in done.stderr, done.stderr[-3000:]
    assert f"s3://{BUCKET}/" in done.stderr, done.stderr[-3000:]


def survey_link(message: email.message.Message) -> str | None:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                match = LINK.search(payload.decode(part.get_content_charset() or "utf-8"))
                if match:
                    return match.group(0)
    return None


def check_published(stack: Stack, s3: Any, totals: dict[str, Any]) -> None:
    """The month's four CSVs and datapackage.json in S3 carry what the topics imply."""
    folder = f"data/{stack.month}"
    keys = {obj["Key"] for obj in s3.list_objects_v2(Bucket=BUCKET, Prefix=folder + "/")
            .get("Contents", [])}
    for name in (*(f"{t}.csv" for t in TABLES), "datapackage.json"):
        assert f"{folder}/{name}" in keys, f"{name} not published; found {sorted(keys)}"

    def table(name: str) -> list[dict[str, str]]:
        import csv
        body = s3.get_object(Bucket=BUCKET, Key=f"{folder}/{name}.csv")["Body"].read()
        return list(csv.DictReader(body.decode("utf-8").splitlines()))

    received = Counter({f"{r['agency']}|{r['complaint_type']}": int(r["received"])
                        for r in table("requests_received")})
    assert received == Counter(totals["received"])
    closure = table("closure_rates")
    closed = Counter({f"{r['agency']}|{r['complaint_type']}": int(r["closed"]) for r in closure})
    assert +closed == +Counter(totals["closed"])
    assert all(r["month"] == stack.month for r in closure)
    for r in closure:  # suppressed below 10 requests, unreliable below 20, as the counts say
        n = int(r["received"])
        flag = "suppressed" if n < 10 else "unreliable" if n < 20 else "reliable"
        assert (r["reliability"], r["closure_rate"] == "") == (flag, n < 10), r
        if n >= 10:
            assert float(r["closure_rate_ci_low"]) <= float(r["closure_rate"]) <= float(
                r["closure_rate_ci_high"]), r
    # the one answer was given today, so it belongs to this month, not the published one
    assert sum(int(r["surveys_answered"]) for r in table("reopen_rates")) == 0
    assert sum(int(r["responses"]) for r in table("satisfaction")) == 0

    package = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{folder}/datapackage.json")
                         ["Body"].read())
    resources = {r["name"]: r for r in package["resources"]}
    assert set(TABLES) <= set(resources), sorted(resources)
    for name in TABLES:
        assert resources[name]["path"] == f"{name}.csv"
    # the public site is readable without credentials, as on the city's website
    with urllib.request.urlopen(stack.url("s3", f"/{BUCKET}/{folder}/requests_received.csv"),
                                timeout=30) as anonymous:
        assert anonymous.status == 200


def test_prometheus_has_lag_for_every_consumer_group(stack: Stack) -> None:
    query = urllib.parse.urlencode({"query": "kafka_consumergroup_group_lag"})

    def groups() -> set[str]:
        try:
            with urllib.request.urlopen(stack.url("prometheus", f"/api/v1/query?{query}"),
                                        timeout=10) as answer:
                data = json.load(answer)
        except (urllib.error.URLError, OSError):
            return set()
        return {series["metric"].get("group", "") for series in data["data"]["result"]}

    found = wait_for("lag series of every consumer group in Prometheus",
                     lambda: (seen := groups()) >= CONSUMER_GROUPS and seen, timeout=120,
                     diagnose=lambda: f"groups seen: {sorted(groups())}\n"
                                      + stack.logs("lag-exporter", "prometheus"), interval=5)
    assert found >= CONSUMER_GROUPS
    with urllib.request.urlopen(stack.url("prometheus", "/api/v1/targets"), timeout=10) as answer:
        targets = json.load(answer)["data"]["activeTargets"]
    down = [t["labels"]["job"] for t in targets if t["health"] != "up"]
    assert not down, f"scrape targets not up: {down}"
    # what an operator runs by hand (docs/RUNBOOK.md, "Running in containers")
    lag = stack.app(None, "nyc311", "lag", *(arg for group in sorted(CONSUMER_GROUPS)
                                             for arg in ("--group", group)),
                    service="lag-exporter")
    for group in CONSUMER_GROUPS:
        assert group in lag, lag


def test_projector_killed_mid_stream_loses_and_doubles_nothing(stack: Stack, s3: Any) -> None:
    before = int(stack.sql("SELECT count(*) FROM nyc311.requests"))
    producer = subprocess.Popen(
        stack.command("run", "--rm", "--no-deps", "-T", "-e", "DATABASE_URL=postgresql://producer:"
                      f"{stack.env['NYC311_PRODUCER_DB_PASSWORD']}@postgres:5432/nyc311",
                      "migrate", "nyc311", "simulate", "--month", stack.month, "--requests",
                      str(SECOND_BATCH), "--seed", "312", "--no-progress"),
        cwd=REPO, env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        projector = stack.container("projector")
        wait_for("the projector to be mid-stream",
                 lambda: int(stack.sql("SELECT count(*) FROM nyc311.requests")) > before + 500,
                 timeout=300, interval=0.2, diagnose=lambda: stack.logs("projector"))
        stack.docker("kill", "-s", "KILL", projector)
        projected_at_kill = int(stack.sql("SELECT count(*) FROM nyc311.requests"))
        stack.docker("start", projector)
        output, _ = producer.communicate(timeout=600)
    finally:
        if producer.poll() is None:
            producer.kill()
    assert producer.returncode == 0, output
    assert projected_at_kill < before + SECOND_BATCH, "the kill came after the projection"

    totals = stack.topic_totals()
    assert totals["created_events"] == FIRST_BATCH + SECOND_BATCH
    wait_for("the restarted projector to catch up",
             lambda: stack.sql("SELECT count(*) FROM nyc311.requests")
             == str(totals["requests"])
             and stack.sql("SELECT count(*) FROM nyc311.closures") == str(totals["closures"]),
             timeout=300, diagnose=lambda: stack.logs("projector"))
    # loses nothing, doubles nothing: every request and closure once, none twice
    assert stack.sql("SELECT count(DISTINCT request_id) = count(*) FROM nyc311.requests") == "t"
    assert stack.sql("SELECT count(*) FROM nyc311.survey_answers") == str(totals["answers"])
    dead_letters = stack.app(None, "nyc311", "dlq", "list")
    assert dead_letters.strip() == "", f"dead letters:\n{dead_letters}"

    publish_preceding_month(stack)
    check_published(stack, s3, totals)


def test_projector_scales_out_across_partitions(stack: Stack) -> None:
    """docs/RUNBOOK.md, "Running in containers": `--scale projector=2` shares the partitions
    between two replicas, Prometheus scrapes each, and together they project every event."""
    stack.run("up", "-d", "--no-deps", "--no-recreate", "--scale", "projector=2", "projector")
    replicas = stack.run("ps", "-q", "projector").stdout.split()
    assert len(replicas) == 2, replicas

    def healthy() -> bool:
        return all(json.loads(stack.docker("inspect", "-f", "{{json .State.Health.Status}}",
                                           replica)) == "healthy" for replica in replicas)

    # healthy = connected with partitions assigned: each replica holds some of them
    wait_for("both projector replicas healthy", healthy, timeout=180, interval=3,
             diagnose=lambda: stack.logs("projector"))
    query = urllib.parse.urlencode({"query": 'up{job="projector"} == 1'})

    def scraped() -> int:
        with urllib.request.urlopen(stack.url("prometheus", f"/api/v1/query?{query}"),
                                    timeout=10) as answer:
            return len(json.load(answer)["data"]["result"])

    wait_for("Prometheus scraping both replicas", lambda: scraped() == 2, timeout=120,
             interval=5, diagnose=lambda: f"{scraped()} projector target(s) up")

    stack.app("producer", "nyc311", "simulate", "--month", stack.month, "--requests", "2000",
              "--seed", "313", "--no-progress")
    totals = stack.topic_totals()
    wait_for("the two replicas to project every request",
             lambda: stack.sql("SELECT count(*) FROM nyc311.requests") == str(totals["requests"])
             and stack.sql("SELECT count(*) FROM nyc311.closures") == str(totals["closures"]),
             timeout=300, diagnose=lambda: stack.logs("projector"))


def test_down_removes_every_container_network_and_volume(stack: Stack) -> None:
    containers = compose_labelled(stack.env, "container", stack.project)
    assert containers
    # named volumes carry the project's label; anonymous ones (an image's VOLUME) do not
    volumes = {mount["Name"] for container in containers
               for mount in json.loads(stack.docker("inspect", "-f", "{{json .Mounts}}",
                                                    container))
               if mount["Type"] == "volume"}
    assert volumes
    stack.run("down", "-v", "--remove-orphans", "-t", "20", timeout=300)
    for kind in ("container", "network", "volume"):
        assert compose_labelled(stack.env, kind, stack.project) == [], f"a {kind} was left"
    left = [name for name in volumes
            if subprocess.run(["docker", "volume", "inspect", name], env=stack.env,
                              capture_output=True, check=False).returncode == 0]
    assert not left, f"volumes left: {left}"
