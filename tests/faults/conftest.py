"""A private Kafka broker and PostgreSQL server per test module, for tests that break things.

Other people run tests against the shared local services, so a fault test never stops those:
it starts its own pair with ``services/services.sh`` in a temporary state directory on free
ports (``NYC311_SERVICES_DIR``, ``NYC311_ENV_OUT``, ``NYC311_*_PORT``), stops and restarts them
at will, and deletes them (``down --purge``) when the module is done. Each test still gets its
own database (cloned from a migrated template) and its own topic prefix.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg
import pytest

from nyc311.settings import Settings, load_settings, read_env_file
from tests.conftest import clone_database, drop_database
from tests.helpers import outside_env
from tests.servers import free_ports

REPO = Path(__file__).resolve().parents[2]
SERVICES = REPO / "services" / "services.sh"
SERVICES_TIMEOUT = 240.0  # one services.sh command, Maven's first run aside


@dataclass
class PrivateServices:
    """A Kafka + PostgreSQL pair of our own, driven through services/services.sh."""

    state_dir: Path
    env: dict[str, str]
    kafka_bootstrap_servers: str = ""
    database_url: str = ""

    def run(self, *args: str, timeout: float = SERVICES_TIMEOUT) -> str:
        done = subprocess.run(["bash", str(SERVICES), *args], env=self.env, timeout=timeout,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"services.sh {' '.join(args)} failed ({done.returncode}):\n"
                               f"{done.stdout}{done.stderr}")
        return done.stderr

    def stop_kafka(self) -> None:
        self.run("stop-kafka")

    def start_kafka(self) -> None:
        self.run("start-kafka")

    def stop_postgres(self) -> None:
        self.run("stop-postgres")

    def start_postgres(self) -> None:
        self.run("start-postgres")


def _services_env(state_dir: Path) -> dict[str, str]:
    env = outside_env()
    kafka, controller, pg = free_ports(3)
    env.update({
        "NYC311_SERVICES_DIR": str(state_dir),
        "NYC311_ENV_OUT": str(state_dir / "env"),
        "NYC311_KAFKA_PORT": str(kafka),
        "NYC311_KAFKA_CONTROLLER_PORT": str(controller),
        "NYC311_PG_PORT": str(pg),
        "NYC311_KAFKA_HEAP_OPTS": "-Xms256m -Xmx768m",
        "NYC311_STOP_TIMEOUT": "30",
    })
    for name in ("NYC311_CACHE_DIR", "NYC311_PG_BINDIR"):  # where the jars and binaries are
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


@pytest.fixture(scope="module")
def private_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateServices]:
    java_home = os.environ.get("JAVA_HOME")
    if not shutil.which("java") and not (java_home and Path(java_home, "bin", "java").exists()):
        pytest.skip("the fault tests run a Kafka broker of their own, which needs Java 17+")
    state_dir = tmp_path_factory.mktemp("services") / "state"
    services = PrivateServices(state_dir, _services_env(state_dir))
    try:
        services.run("up")
        values = read_env_file(state_dir / "env")
        services.kafka_bootstrap_servers = values["KAFKA_BOOTSTRAP_SERVERS"]
        services.database_url = values["DATABASE_URL"]
        yield services
    finally:
        services.run("down", "--purge")


@pytest.fixture(scope="module")
def private_base(private_services: PrivateServices) -> Iterator[tuple[Settings, str]]:
    """Settings for the private pair, and a database migrated to head to clone per test."""
    from storage.migrate import upgrade

    base = load_settings(
        {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "NYC311_"))},
        kafka_bootstrap_servers=private_services.kafka_bootstrap_servers,
        database_url=private_services.database_url, batch_timeout=0.2)
    template = f"nyc311_tmpl_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base.libpq_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{template}"')
    base_url, _, _ = base.database_url.rpartition("/")
    upgrade(replace(base, database_url=f"{base_url}/{template}"))
    yield base, template


@pytest.fixture
def private_settings(private_base: tuple[Settings, str]) -> Iterator[Settings]:
    """Settings of one test on the private pair: a migrated database and a topic prefix."""
    from nyc311.topics import all_topics, ensure_topics

    base, template = private_base
    settings = clone_database(base, template)
    ensure_topics(settings, all_topics(settings), partitions=3)
    yield settings
    try:
        drop_database(base, settings)
    except Exception as exc:  # the services may be down after a failed test; they go anyway
        print(f"teardown: {exc}", file=sys.stderr)
