"""Where the integration tests find their Kafka broker and PostgreSQL server.

:func:`resolve_services` picks, in this order:

1. ``KAFKA_BOOTSTRAP_SERVERS`` and ``DATABASE_URL`` from the environment (for a variable that is
   not set, the value in ``.env.services`` is used, as :mod:`nyc311.settings` does);
2. ``.env.services`` at the repository root, written by ``make services-up``
   (``services/services.sh up``);
3. throwaway containers started with testcontainers when ``NYC311_TEST_BACKEND`` is ``docker``,
   or when it is ``auto`` (the default) and a Docker engine answers;
4. otherwise a :class:`RuntimeError` that says how to get servers.

``NYC311_TEST_BACKEND=local`` never starts containers. Containers are started once per process
and removed at exit (or by :func:`stop_containers`). The database role can ``CREATE DATABASE``
in every case, since the tests create one database per test from a template.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import os
import tarfile
import threading
import time
import uuid
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_FILE = REPO_ROOT / ".env.services"

BACKEND_VAR = "NYC311_TEST_BACKEND"
KAFKA_IMAGE = os.environ.get("NYC311_TEST_KAFKA_IMAGE", "apache/kafka:4.1.1")
POSTGRES_IMAGE = os.environ.get("NYC311_TEST_POSTGRES_IMAGE", "postgres:16")
CONTAINER_START_TIMEOUT = 120.0

DB_USER = DB_PASSWORD = DB_NAME = "nyc311"


@dataclass(frozen=True)
class Services:
    """Addresses of the Kafka broker and the PostgreSQL database the tests use."""

    kafka_bootstrap_servers: str
    database_url: str


def read_env_file(path: Path = ENV_FILE) -> dict[str, str]:
    """``KEY=VALUE`` lines of ``path`` (blank lines and ``#`` comments skipped); {} if absent."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return values
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if sep and key.strip():
            values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def plain_postgres_url(url: str) -> str:
    """``postgresql+psycopg2://...`` -> ``postgresql://...`` (also for ``postgres://``)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    base = scheme.split("+", 1)[0]
    if base == "postgres":
        base = "postgresql"
    return f"{base}://{rest}"


def docker_available(timeout: float = 3.0) -> bool:
    """True when a Docker engine answers a ping (through the docker SDK testcontainers uses)."""
    try:
        import docker
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=max(1, int(timeout)))
    except Exception:  # no socket, no daemon, bad DOCKER_HOST ...
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


def resolve_services() -> Services:
    """The servers to test against; see the module docstring for the order of the choices."""
    backend = os.environ.get(BACKEND_VAR, "auto").strip().lower() or "auto"
    if backend not in {"auto", "docker", "local"}:
        raise RuntimeError(f"{BACKEND_VAR}={backend!r}: expected auto, docker or local")

    file_values = read_env_file()
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or file_values.get("KAFKA_BOOTSTRAP_SERVERS")
    database = os.environ.get("DATABASE_URL") or file_values.get("DATABASE_URL")
    if kafka and database:
        return Services(kafka, plain_postgres_url(database))

    if backend != "local" and docker_available():
        return _containers.start()

    if backend == "docker":
        raise RuntimeError(
            f"{BACKEND_VAR}=docker but no Docker engine answers: start Docker, or unset "
            f"{BACKEND_VAR} and run `make services-up`."
        )
    raise RuntimeError(
        "No Kafka broker and PostgreSQL server for the integration tests: "
        "run `make services-up` (services/services.sh up), "
        "or set KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL, "
        "or start Docker so the tests can run their own containers."
    )


def stop_containers() -> None:
    """Remove the containers :func:`resolve_services` started, if any (also runs at exit)."""
    _containers.stop()


# ------------------------------------------------------------------------------------------------
# Containers


def _kafka_container(image: str) -> Any:
    """A one-node KRaft broker from the official ``apache/kafka`` image.

    The broker has to advertise the host port Docker maps, which is known only once the
    container runs; so the container waits for a start script that is copied in after start
    (the approach of testcontainers-java's ``org.testcontainers.kafka.KafkaContainer``).
    """
    from testcontainers.core.container import DockerContainer

    class ApacheKafkaContainer(DockerContainer):
        PORT = 9092
        START_SCRIPT = "/tmp/nyc311_kafka_start.sh"

        def __init__(self) -> None:
            super().__init__(image)
            self.with_exposed_ports(self.PORT)
            settings = {
                # A KRaft cluster id is a UUID in URL-safe base64 (22 characters).
                "CLUSTER_ID": base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="),
                "KAFKA_NODE_ID": "1",
                "KAFKA_PROCESS_ROLES": "broker,controller",
                "KAFKA_LISTENERS": (
                    f"PLAINTEXT://0.0.0.0:{self.PORT},BROKER://0.0.0.0:9093,CONTROLLER://0.0.0.0:9094"
                ),
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": (
                    "PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT"
                ),
                "KAFKA_INTER_BROKER_LISTENER_NAME": "BROKER",
                "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
                "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9094",
                "KAFKA_LOG_DIRS": "/tmp/kraft-combined-logs",
                "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
                "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
                "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
                "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
                "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
                "KAFKA_NUM_PARTITIONS": "3",
                "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "true",
            }
            for key, value in settings.items():
                self.with_env(key, value)
            self.with_command(
                f'sh -c "while [ ! -s {self.START_SCRIPT} ]; do sleep 0.1; done; '
                f'exec {self.START_SCRIPT}"'
            )

        def get_bootstrap_server(self) -> str:
            return f"{self.get_container_host_ip()}:{self.get_exposed_port(self.PORT)}"

        def start(self) -> ApacheKafkaContainer:
            super().start()
            script = (
                "#!/bin/bash\n"
                "export KAFKA_ADVERTISED_LISTENERS="
                f"PLAINTEXT://{self.get_bootstrap_server()},BROKER://localhost:9093\n"
                "exec /etc/kafka/docker/run\n"
            ).encode()
            archive = BytesIO()
            with tarfile.open(fileobj=archive, mode="w") as tar:
                info = tarfile.TarInfo(self.START_SCRIPT.lstrip("/"))
                info.size = len(script)
                info.mode = 0o755
                info.mtime = int(time.time())
                tar.addfile(info, BytesIO(script))
            self.get_wrapped_container().put_archive("/", archive.getvalue())
            _wait_for_log(self, r"Kafka Server started", CONTAINER_START_TIMEOUT)
            return self

    return ApacheKafkaContainer()


def _confluent_kafka_container(image: str) -> Any:
    """testcontainers' own KafkaContainer (Confluent ``cp-kafka`` images only) in KRaft mode."""
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:  # testcontainers < 4.14
        from testcontainers.kafka import KafkaContainer
    return KafkaContainer(image).with_kraft()


def _postgres_container(image: str) -> Any:
    try:
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:  # testcontainers < 4.14
        from testcontainers.postgres import PostgresContainer
    # POSTGRES_USER is a superuser, so it can create the per-test databases.
    return PostgresContainer(image, username=DB_USER, password=DB_PASSWORD, dbname=DB_NAME)


def _wait_for_log(container: Any, pattern: str, timeout: float) -> None:
    try:
        from testcontainers.core.wait_strategies import LogMessageWaitStrategy
    except ImportError:  # testcontainers < 4.13
        from testcontainers.core.waiting_utils import wait_for_logs

        wait_for_logs(container, pattern, timeout=timeout)
        return
    LogMessageWaitStrategy(pattern).with_startup_timeout(int(timeout)).wait_until_ready(container)


class _Containers:
    """The containers of this process: started on first use, removed at exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started: list[Any] = []
        self._services: Services | None = None
        self._atexit_registered = False

    def start(self) -> Services:
        with self._lock:
            if self._services is not None:
                return self._services
            if not self._atexit_registered:
                atexit.register(self.stop)
                self._atexit_registered = True
            try:
                postgres = _postgres_container(POSTGRES_IMAGE)
                postgres.start()
                self._started.append(postgres)
                database_url = plain_postgres_url(postgres.get_connection_url())

                if "cp-kafka" in KAFKA_IMAGE:
                    kafka = _confluent_kafka_container(KAFKA_IMAGE)
                else:
                    kafka = _kafka_container(KAFKA_IMAGE)
                kafka.start()
                self._started.append(kafka)
                bootstrap = kafka.get_bootstrap_server()
            except BaseException:
                self._stop_locked()
                raise
            self._services = Services(bootstrap, database_url)
            return self._services

    def stop(self) -> None:
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        while self._started:
            container = self._started.pop()
            # Already gone is fine; the Ryuk reaper removes leftovers too.
            with contextlib.suppress(Exception):
                container.stop()
        self._services = None


_containers = _Containers()
