"""Fixtures: one real Kafka broker and one real PostgreSQL server per session, isolated per test.

Where the servers come from is decided once, in tests/backends.py: the environment, the local
services that `make services-up` started, or testcontainers when a Docker engine answers.
Each test gets its own topic prefix (so its own topics and consumer groups) and its own
database, cloned from a migrated template in a few milliseconds.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from nyc311.settings import Settings, load_settings
from storage.db import admin_statement
from tests.backends import Services, resolve_services

pytest_plugins = ["tests.servers"]  # SMTP and SNS server fixtures

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "nyc311"
SURVEY_SECRET = "x" * 32  # the survey links' signing key in the survey web tests


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def services() -> Services:
    try:
        return resolve_services()
    except RuntimeError as exc:
        pytest.exit(str(exc), returncode=3)


@pytest.fixture(scope="session")
def base_settings(services: Services) -> Settings:
    return load_settings(
        {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "NYC311_"))},
        kafka_bootstrap_servers=services.kafka_bootstrap_servers,
        database_url=services.database_url,
        batch_timeout=0.2,
        # the tests' events happen on fixed past dates; the one that checks the age limit sets it
        survey_max_closure_age_days=36500,
    )


@pytest.fixture(scope="session")
def template_database(base_settings: Settings) -> Iterator[str]:
    """A database migrated to head once per session; every test clones it."""
    from storage.migrate import upgrade

    name = f"nyc311_tmpl_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base_settings.libpq_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    upgrade(replace(base_settings, database_url=_with_database(base_settings.database_url, name)))
    yield name
    admin_statement(base_settings, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def clone_database(base: Settings, template: str) -> Settings:
    name = f"nyc311_t_{uuid.uuid4().hex[:12]}"
    admin_statement(base, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return replace(base, database_url=_with_database(base.database_url, name),
                   topic_prefix=f"t{uuid.uuid4().hex[:10]}.")


def drop_database(base: Settings, settings: Settings) -> None:
    """Drop the test's database and delete its topics, so runs do not pile up on the broker."""
    name = settings.database_url.rpartition("/")[2]
    admin_statement(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if settings.topic_prefix:
        from confluent_kafka.admin import AdminClient

        admin_client = AdminClient(settings.kafka_config())
        mine = [t for t in admin_client.list_topics(timeout=10).topics
                if t.startswith(settings.topic_prefix)]
        if mine:
            for future in admin_client.delete_topics(mine, operation_timeout=30).values():
                future.result()


@pytest.fixture
def settings(base_settings: Settings, template_database: str) -> Iterator[Settings]:
    """Settings for one test: a fresh migrated database and a topic prefix of its own."""
    test_settings = clone_database(base_settings, template_database)
    yield test_settings
    drop_database(base_settings, test_settings)


@pytest.fixture
def db(settings: Settings) -> Iterator[psycopg.Connection]:
    from storage.db import connect

    conn = connect(settings, autocommit=True)
    yield conn
    conn.close()


@pytest.fixture
def topics(settings: Settings) -> list[str]:
    from nyc311.topics import all_topics, ensure_topics

    ensure_topics(settings, all_topics(settings), partitions=3)
    return all_topics(settings)


@pytest.fixture
def survey_settings(settings: Settings, topics: list[str]) -> Settings:
    """A test's settings with a survey signing key, its topics created: for the survey web app."""
    return replace(settings, survey_secret=SURVEY_SECRET)


@pytest.fixture
def shared_csv() -> Path:
    path = SHARED_DATA / "311_Service_Requests.csv"
    if not path.is_file():
        pytest.skip(f"the NYC Open Data sample is not beside the repository ({path})")
    return path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use the real services are marked `integration` without saying so each time."""
    for item in items:
        if {"settings", "services", "base_settings"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
