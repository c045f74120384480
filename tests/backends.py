"""Where the integration tests find their Kafka broker and PostgreSQL server.

:func:`resolve_services` follows ``NYC311_TEST_BACKEND``. With ``docker``, always throwaway
containers started with testcontainers (whatever the environment or ``.env.services`` says, so
a run beside the local services still tests the containers), or a :class:`RuntimeError` when
no Docker engine answers. With ``auto`` (the default) or ``local``, in this order:

1. ``KAFKA_BOOTSTRAP_SERVERS`` and ``DATABASE_URL`` from the environment (for a variable that is
   not set, the value in ``.env.services`` is used, as :mod:`nyc311.settings` does);
2. ``.env.services`` at the repository root, written by ``make services-up``
   (``services/services.sh up``);
3. with ``auto``, containers when a Docker engine answers (``local`` never starts any);
4. otherwise a :class:`RuntimeError` that says how to get servers.

The database role can ``CREATE DATABASE`` in every case, since the tests create one database
per test from a template. In a container, as with ``make services-up``, it is the role
``nyc311`` with ``CREATEDB CREATEROLE`` (no superuser), owning the database ``nyc311``; the
container's superuser only provisions them.

Containers (see :func:`choose_image`): ``NYC311_TEST_KAFKA_IMAGE`` and
``NYC311_TEST_POSTGRES_IMAGE`` name the images when set. Otherwise each is the official image
(``apache/kafka:4.1.1``, ``postgres:16``) if the engine has it, else the local stand-in that
``deploy/docker.sh images`` builds with no registry (``nyc311-kafka:local``,
``nyc311-postgres:local``) if the engine has that, else the official one, pulled.
Unless ``TESTCONTAINERS_RYUK_DISABLED`` (or ``ryuk.disabled`` in
``~/.testcontainers.properties``) says otherwise, the Ryuk reaper is disabled when its image is
not in the engine, since pulling it would fail with no registry; the containers are removed
here instead.

Both containers run on a network of their own (engines started with ``--bridge=none``, as
``deploy/docker.sh engine-up`` does, publish no ports on the default one) and carry the labels
``nyc311.test=1``, ``nyc311.test.host``, ``nyc311.test.pid`` and ``nyc311.test.started`` (the
process's start time, so a reused pid is not mistaken for the owner). They are started once
per process and removed at exit (or by :func:`stop_containers`); SIGTERM, when nothing else
handles it, stops pytest as Ctrl-C does, so its exit removes them too. After a SIGKILL they are
left behind: the next start removes the labelled containers and networks of processes of this
host that are gone, as ``deploy/docker.sh test-clean`` does.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import os
import signal
import socket
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_FILE = REPO_ROOT / ".env.services"

BACKEND_VAR = "NYC311_TEST_BACKEND"
KAFKA_IMAGE_VAR = "NYC311_TEST_KAFKA_IMAGE"
POSTGRES_IMAGE_VAR = "NYC311_TEST_POSTGRES_IMAGE"
OFFICIAL_KAFKA_IMAGE = "apache/kafka:4.1.1"
OFFICIAL_POSTGRES_IMAGE = "postgres:16"
LOCAL_KAFKA_IMAGE = "nyc311-kafka:local"  # deploy/docker.sh kafka-image
LOCAL_POSTGRES_IMAGE = "nyc311-postgres:local"  # deploy/docker.sh postgres-image
RYUK_DISABLED_VAR = "TESTCONTAINERS_RYUK_DISABLED"
RYUK_DISABLED_PROPERTY = "ryuk.disabled"
CONTAINER_START_TIMEOUT = 120.0

# Labels of the containers and the network of a test run; deploy/docker.sh test-clean uses them.
LABEL = "nyc311.test"
LABEL_HOST = "nyc311.test.host"
LABEL_PID = "nyc311.test.pid"
LABEL_STARTED = "nyc311.test.started"

DB_USER = DB_PASSWORD = DB_NAME = "nyc311"
DB_SUPERUSER = "postgres"  # the container's POSTGRES_USER, used only to provision DB_USER


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


def choose_image(explicit: str | None, official: str, local: str,
                 present: Callable[[str], bool]) -> str:
    """The image to run: ``explicit`` when set, else ``official`` if the engine has it, else the
    local stand-in ``local`` if the engine has that, else ``official`` (to be pulled)."""
    if explicit and explicit.strip():
        return explicit.strip()
    if present(official):
        return official
    if present(local):
        return local
    return official


def ryuk_disabled_by_default(environ: Mapping[str, str], properties: Mapping[str, str],
                             reaper_present: Callable[[], bool]) -> bool:
    """Whether to disable the Ryuk reaper: only when neither ``TESTCONTAINERS_RYUK_DISABLED``
    nor the ``ryuk.disabled`` property says anything and the reaper image is not in the engine."""
    if environ.get(RYUK_DISABLED_VAR, "").strip():
        return False
    if properties.get(RYUK_DISABLED_PROPERTY, "").strip():
        return False
    return not reaper_present()


def process_started(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), "" where /proc cannot
    tell, None when no such process runs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        pass
    except OSError:
        return ""
    else:
        # Field 22; the command name (field 2, in parentheses) may hold spaces.
        fields = stat.rpartition(")")[2].split()
        return fields[19] if len(fields) > 19 else ""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return ""
    return ""


def run_labels(pid: int | None = None) -> dict[str, str]:
    """The labels of this process's containers and network."""
    pid = os.getpid() if pid is None else pid
    return {
        LABEL: "1",
        LABEL_HOST: socket.gethostname(),
        LABEL_PID: str(pid),
        LABEL_STARTED: process_started(pid) or "",
    }


def is_leftover(labels: Mapping[str, str], host: str,
                started: Callable[[int], str | None] = process_started) -> bool:
    """True for a test run's container or network whose process, on this host, is gone (or its
    pid now belongs to a process started at another time). Another host's are never touched."""
    if labels.get(LABEL) != "1" or labels.get(LABEL_HOST) != host:
        return False
    try:
        pid = int(labels.get(LABEL_PID, ""))
    except ValueError:
        return False
    now = started(pid)
    if now is None:
        return True
    then = labels.get(LABEL_STARTED, "")
    return bool(now and then and now != then)


def remove_leftovers(client: Any) -> list[str]:
    """Remove the containers and networks of test runs of this host whose process is gone
    (killed before its exit could remove them); returns their names."""
    host = socket.gethostname()
    removed: list[str] = []
    for container in client.containers.list(all=True, filters={"label": f"{LABEL}=1"}):
        if is_leftover(container.labels, host):
            with contextlib.suppress(Exception):
                container.remove(force=True, v=True)
                removed.append(container.name)
    for network in client.networks.list(filters={"label": f"{LABEL}=1"}):
        if is_leftover(network.attrs.get("Labels") or {}, host):
            with contextlib.suppress(Exception):
                network.remove()
                removed.append(network.name)
    return removed


def resolve_services() -> Services:
    """The servers to test against; see the module docstring for the order of the choices."""
    backend = os.environ.get(BACKEND_VAR, "auto").strip().lower() or "auto"
    if backend not in {"auto", "docker", "local"}:
        raise RuntimeError(f"{BACKEND_VAR}={backend!r}: expected auto, docker or local")

    if backend == "docker":
        if docker_available():
            return _containers.start()
        raise RuntimeError(
            f"{BACKEND_VAR}=docker but no Docker engine answers: start Docker, or unset "
            f"{BACKEND_VAR} and run `make services-up`."
        )

    file_values = read_env_file()
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or file_values.get("KAFKA_BOOTSTRAP_SERVERS")
    database = os.environ.get("DATABASE_URL") or file_values.get("DATABASE_URL")
    if kafka and database:
        return Services(kafka, plain_postgres_url(database))

    if backend == "auto" and docker_available():
        return _containers.start()

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


def _kafka_container(image: str, **kwargs: Any) -> Any:
    """A one-node KRaft broker from the official ``apache/kafka`` image (or a stand-in with its
    layout, as ``nyc311-kafka:local``); ``kwargs`` go to ``DockerContainer`` (name, labels...).

    The broker has to advertise the host port Docker maps, which is known only once the
    container runs; so the container waits for a start script that is copied in after start
    (the approach of testcontainers-java's ``org.testcontainers.kafka.KafkaContainer``).
    """
    from testcontainers.core.container import DockerContainer

    class ApacheKafkaContainer(DockerContainer):
        PORT = 9092
        START_SCRIPT = "/tmp/nyc311_kafka_start.sh"

        def __init__(self) -> None:
            super().__init__(image, **kwargs)
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


def _confluent_kafka_container(image: str, **kwargs: Any) -> Any:
    """testcontainers' own KafkaContainer (Confluent ``cp-kafka`` images only) in KRaft mode."""
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:  # testcontainers < 4.14
        from testcontainers.kafka import KafkaContainer
    return KafkaContainer(image, **kwargs).with_kraft()


def _postgres_container(image: str, **kwargs: Any) -> Any:
    try:
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:  # testcontainers < 4.14
        from testcontainers.postgres import PostgresContainer
    return PostgresContainer(image, username=DB_SUPERUSER, password=DB_PASSWORD,
                             dbname=DB_SUPERUSER, **kwargs)


def provision_statements() -> list[str]:
    """The tests' role and database, as ``services/services.sh up`` provisions them: a role that
    can create databases and roles but is no superuser (a superuser would pass, for one, the
    ``CONNECTION LIMIT 0`` the outage tests set), owning its database."""
    return [
        f"CREATE ROLE {DB_USER} LOGIN CREATEDB CREATEROLE PASSWORD '{DB_PASSWORD}'",
        f"CREATE DATABASE {DB_NAME} OWNER {DB_USER}",
    ]


def _provision_postgres(container: Any) -> str:
    """Create the tests' role and database in ``container``; returns their URL."""
    import psycopg

    superuser_url = plain_postgres_url(container.get_connection_url())
    with psycopg.connect(superuser_url, autocommit=True) as admin:
        for statement in provision_statements():
            admin.execute(statement)
    host = container.get_container_host_ip()
    port = container.get_exposed_port(container.port)
    return f"postgresql://{DB_USER}:{DB_PASSWORD}@{host}:{port}/{DB_NAME}"


def _wait_for_log(container: Any, pattern: str, timeout: float) -> None:
    try:
        from testcontainers.core.wait_strategies import LogMessageWaitStrategy
    except ImportError:  # testcontainers < 4.13
        from testcontainers.core.waiting_utils import wait_for_logs

        wait_for_logs(container, pattern, timeout=timeout)
        return
    LogMessageWaitStrategy(pattern).with_startup_timeout(int(timeout)).wait_until_ready(container)


def _image_present(client: Any, image: str) -> bool:
    try:
        client.images.get(image)
    except Exception:  # docker.errors.ImageNotFound, or an engine that cannot tell
        return False
    return True


class _Containers:
    """The containers of this process: started on first use, removed at exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started: list[Any] = []
        self._network: Any = None
        self._services: Services | None = None
        self._owner: int | None = None

    def start(self) -> Services:
        with self._lock:
            if self._services is not None:
                return self._services
            if self._owner is None:
                atexit.register(self.stop)
                self._owner = os.getpid()
                self._stop_on_sigterm()
            import docker
            from testcontainers.core.config import testcontainers_config
            from testcontainers.core.network import Network

            client = docker.from_env()
            try:
                remove_leftovers(client)
                kafka_image = choose_image(os.environ.get(KAFKA_IMAGE_VAR), OFFICIAL_KAFKA_IMAGE,
                                           LOCAL_KAFKA_IMAGE, lambda i: _image_present(client, i))
                postgres_image = choose_image(
                    os.environ.get(POSTGRES_IMAGE_VAR), OFFICIAL_POSTGRES_IMAGE,
                    LOCAL_POSTGRES_IMAGE, lambda i: _image_present(client, i))
                reaper = testcontainers_config.ryuk_image
                if ryuk_disabled_by_default(os.environ, testcontainers_config.tc_properties,
                                            lambda: _image_present(client, reaper)):
                    testcontainers_config.ryuk_disabled = True
            finally:
                client.close()

            labels = run_labels()
            name = f"nyc311-pytest-{os.getpid()}-{uuid.uuid4().hex[:6]}"
            try:
                self._network = Network(docker_network_kw={"labels": labels})
                self._network.name = name
                self._network.create()
                common = {"network": self._network, "labels": labels}

                postgres = _postgres_container(postgres_image, name=f"{name}-postgres", **common)
                self._started.append(postgres)
                postgres.start()
                database_url = _provision_postgres(postgres)

                if "cp-kafka" in kafka_image:
                    kafka = _confluent_kafka_container(kafka_image, name=f"{name}-kafka", **common)
                else:
                    kafka = _kafka_container(kafka_image, name=f"{name}-kafka", **common)
                self._started.append(kafka)
                kafka.start()
                bootstrap = kafka.get_bootstrap_server()
            except BaseException as exc:
                self._stop_locked()
                if isinstance(exc, Exception) and not isinstance(exc, RuntimeError):
                    raise RuntimeError(
                        f"Could not start the test containers ({postgres_image}, {kafka_image}): "
                        f"{exc}. Build the local images with `make images` "
                        f"(deploy/docker.sh images), or name others with {KAFKA_IMAGE_VAR} and "
                        f"{POSTGRES_IMAGE_VAR}."
                    ) from exc
                raise
            self._services = Services(bootstrap, database_url)
            return self._services

    def stop(self) -> None:
        if self._owner is not None and self._owner != os.getpid():
            return  # a child process that inherited the atexit hook: the containers are not its
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        while self._started:
            container = self._started.pop()
            # Never started, or already gone, is fine.
            with contextlib.suppress(Exception):
                container.stop()
        if self._network is not None:
            with contextlib.suppress(Exception):
                self._network.remove()
            self._network = None
        self._services = None

    def _stop_on_sigterm(self) -> None:
        """SIGTERM (a CI timeout, `kill`) stops pytest as Ctrl-C does, so the exit removes the
        containers; only when nothing else handles SIGTERM, in the main thread."""
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        if os.getpid() != self._owner:  # a forked child: die as it would have
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


_containers = _Containers()
