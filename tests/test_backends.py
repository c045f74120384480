"""tests/backends.py's choices for the Docker backend, without Docker: which images, whether Ryuk
runs, which labelled containers count as a dead run's leftovers, SIGTERM turned into Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from tests import backends
from tests.backends import (
    LABEL,
    LABEL_HOST,
    LABEL_PID,
    LABEL_STARTED,
    LOCAL_KAFKA_IMAGE,
    LOCAL_POSTGRES_IMAGE,
    OFFICIAL_KAFKA_IMAGE,
    OFFICIAL_POSTGRES_IMAGE,
    choose_image,
    is_leftover,
    process_started,
    provision_statements,
    run_labels,
    ryuk_disabled_by_default,
)


def present(*images: str):
    return lambda image: image in images


@pytest.mark.parametrize(
    ("official", "local"),
    [(OFFICIAL_KAFKA_IMAGE, LOCAL_KAFKA_IMAGE), (OFFICIAL_POSTGRES_IMAGE, LOCAL_POSTGRES_IMAGE)],
)
def test_the_image_is_the_variable_then_the_official_then_the_local_stand_in(official, local):
    assert choose_image("my/kafka:1", official, local, present(official, local)) == "my/kafka:1"
    assert choose_image(" my/kafka:1 ", official, local, present()) == "my/kafka:1"
    assert choose_image(None, official, local, present(official, local)) == official
    assert choose_image("", official, local, present(local)) == local
    assert choose_image(None, official, local, present(local)) == local
    # neither is there: the official one, which testcontainers pulls
    assert choose_image(None, official, local, present()) == official


def test_ryuk_is_disabled_only_when_nothing_says_so_and_its_image_is_missing():
    reaper_calls = []

    def reaper(there: bool):
        def check() -> bool:
            reaper_calls.append(there)
            return there
        return check

    assert ryuk_disabled_by_default({}, {}, reaper(False)) is True
    assert ryuk_disabled_by_default({}, {}, reaper(True)) is False
    # an explicit setting, either way, is left to testcontainers
    for value in ("true", "false", "0"):
        assert ryuk_disabled_by_default({"TESTCONTAINERS_RYUK_DISABLED": value}, {},
                                        reaper(False)) is False
        assert ryuk_disabled_by_default({}, {"ryuk.disabled": value}, reaper(False)) is False
    assert reaper_calls == [False, True]
    assert ryuk_disabled_by_default({"TESTCONTAINERS_RYUK_DISABLED": " "}, {},
                                    reaper(False)) is True


def test_the_labels_name_this_process_and_its_start():
    labels = run_labels()
    assert labels[LABEL] == "1"
    assert labels[LABEL_HOST] == socket.gethostname()
    assert labels[LABEL_PID] == str(os.getpid())
    assert labels[LABEL_STARTED] == process_started(os.getpid())
    if sys.platform == "linux":
        assert labels[LABEL_STARTED].isdigit()


def test_a_process_that_is_gone_has_no_start_time():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert process_started(child.pid) is None
    assert process_started(os.getpid()) is not None


def labels(pid: int, started: str = "100", host: str | None = None) -> dict[str, str]:
    return {LABEL: "1", LABEL_HOST: host or socket.gethostname(), LABEL_PID: str(pid),
            LABEL_STARTED: started}


def test_leftovers_are_the_runs_of_this_host_whose_process_is_gone_or_another():
    host = socket.gethostname()
    gone = {4242: None}
    running = {4242: "100"}
    reused = {4242: "999"}
    unknown = {4242: ""}
    assert is_leftover(labels(4242), host, gone.get) is True
    assert is_leftover(labels(4242), host, reused.get) is True  # the pid was reused
    assert is_leftover(labels(4242), host, running.get) is False
    assert is_leftover(labels(4242), host, unknown.get) is False  # alive, start time unknown
    assert is_leftover(labels(4242, started=""), host, reused.get) is False
    # another host's runs, unlabelled or mislabelled containers are never touched
    assert is_leftover(labels(4242, host="elsewhere"), host, gone.get) is False
    assert is_leftover({**labels(4242), LABEL: "0"}, host, gone.get) is False
    assert is_leftover({**labels(4242), LABEL_PID: "x"}, host, gone.get) is False
    assert is_leftover({}, host, gone.get) is False


def test_this_process_is_never_a_leftover():
    assert is_leftover(run_labels(), socket.gethostname()) is False


class FakeItem:
    def __init__(self, name: str, item_labels: dict[str, str]) -> None:
        self.name = name
        self.labels = item_labels
        self.attrs = {"Labels": item_labels}
        self.removed = False

    def remove(self, **_: object) -> None:
        self.removed = True


class FakeCollection:
    def __init__(self, items: list[FakeItem]) -> None:
        self.items = items
        self.filters: list[object] = []

    def list(self, **kwargs: object) -> list[FakeItem]:
        self.filters.append(kwargs.get("filters"))
        return self.items


class FakeClient:
    def __init__(self, containers: list[FakeItem], networks: list[FakeItem]) -> None:
        self.containers = FakeCollection(containers)
        self.networks = FakeCollection(networks)


def test_remove_leftovers_removes_dead_runs_only():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = labels(child.pid, started="1")
    dead_kafka, dead_db, dead_net = (FakeItem(n, dead) for n in ("dead-kafka", "dead-db", "dead"))
    mine = FakeItem("mine-kafka", run_labels())
    mine_net = FakeItem("mine", run_labels())
    client = FakeClient([dead_kafka, mine, dead_db], [mine_net, dead_net])
    assert backends.remove_leftovers(client) == ["dead-kafka", "dead-db", "dead"]
    assert dead_kafka.removed and dead_db.removed and dead_net.removed
    assert not mine.removed and not mine_net.removed
    assert client.containers.filters == [{"label": "nyc311.test=1"}]
    assert client.networks.filters == [{"label": "nyc311.test=1"}]


def test_sigterm_stops_the_run_as_ctrl_c_does_unless_something_else_handles_it():
    before = signal.getsignal(signal.SIGTERM)
    containers = backends._Containers()
    containers._owner = os.getpid()
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        containers._stop_on_sigterm()
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            os.kill(os.getpid(), signal.SIGTERM)

        def mine(signum, frame):
            return None

        signal.signal(signal.SIGTERM, mine)
        containers._stop_on_sigterm()
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, before)


def test_the_containers_role_is_the_one_the_local_services_provision():
    services_sh = (backends.REPO_ROOT / "services" / "services.sh").read_text()
    role, database = provision_statements()
    assert role in services_sh
    assert database in services_sh
    assert "SUPERUSER" not in role.upper().replace("NOSUPERUSER", "")



@pytest.fixture
def resolve(monkeypatch):
    """resolve_services with a fake engine, container start and .env.services; returns a call
    that sets the backend and the engine's presence, and the record of container starts."""
    starts: list[str] = []
    env_file: dict[str, str] = {}
    monkeypatch.setattr(backends, "read_env_file", lambda *args: dict(env_file))
    monkeypatch.setattr(backends._containers, "start",
                        lambda: starts.append("start") or backends.Services("c:1", "postgresql://c"))
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "NYC311_TEST_BACKEND"):
        monkeypatch.delenv(name, raising=False)

    def call(backend: str | None, engine: bool) -> backends.Services:
        if backend is not None:
            monkeypatch.setenv("NYC311_TEST_BACKEND", backend)
        monkeypatch.setattr(backends, "docker_available", lambda *args: engine)
        return backends.resolve_services()

    call.starts = starts  # type: ignore[attr-defined]
    call.env_file = env_file  # type: ignore[attr-defined]
    return call


def test_docker_means_containers_even_beside_configured_services(resolve, monkeypatch):
    resolve.env_file.update(KAFKA_BOOTSTRAP_SERVERS="localhost:9092",
                            DATABASE_URL="postgresql://nyc311:nyc311@localhost:5432/nyc311")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "env:9092")
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg2://env/nyc311")
    assert resolve("docker", engine=True).kafka_bootstrap_servers == "c:1"
    assert resolve.starts == ["start"]
    with pytest.raises(RuntimeError, match="no Docker engine answers"):
        resolve("docker", engine=False)


def test_auto_and_local_use_the_configured_services_first(resolve, monkeypatch):
    resolve.env_file.update(KAFKA_BOOTSTRAP_SERVERS="localhost:9092",
                            DATABASE_URL="postgresql+psycopg2://nyc311@localhost/nyc311")
    for backend in (None, "auto", "local"):
        services = resolve(backend, engine=True)
        assert services == backends.Services("localhost:9092",
                                             "postgresql://nyc311@localhost/nyc311")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "env:9092")
    assert resolve("auto", engine=True).kafka_bootstrap_servers == "env:9092"
    assert resolve.starts == []


def test_with_no_services_auto_starts_containers_and_local_says_how_to_get_them(resolve):
    assert resolve("auto", engine=True).kafka_bootstrap_servers == "c:1"
    assert resolve.starts == ["start"]
    with pytest.raises(RuntimeError, match="make services-up"):
        resolve("auto", engine=False)
    with pytest.raises(RuntimeError, match="make services-up"):
        resolve("local", engine=True)
    with pytest.raises(RuntimeError, match="expected auto, docker or local"):
        resolve("podman", engine=True)
    assert resolve.starts == ["start"]
