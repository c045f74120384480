"""`services.sh up` (and so `make demo`) refuses a port another process holds, in one line.

Each case runs the real script with a private state directory, env file and ports, one of them
taken by a plain Python socket; the check fires before anything starts, so no server is ever
launched here. The shared local services are only asked, read-only, whether they run; when
they do, `up` against them must succeed and change nothing.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import outside_env
from tests.servers import free_port, free_ports

REPO = Path(__file__).resolve().parents[2]
SERVICES = REPO / "services" / "services.sh"


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SERVICES), *args], env=env, cwd=REPO, timeout=300,
                          capture_output=True, text=True)


def private_env(tmp_path: Path) -> dict[str, str]:
    env = outside_env()
    kafka, controller, pg = free_ports(3)
    env.update({"NYC311_SERVICES_DIR": str(tmp_path / "state"),
                "NYC311_ENV_OUT": str(tmp_path / "env"),
                "NYC311_KAFKA_PORT": str(kafka), "NYC311_KAFKA_CONTROLLER_PORT": str(controller),
                "NYC311_PG_PORT": str(pg)})
    return env


@contextmanager
def taken(port: int, listening: bool) -> Iterator[None]:
    """Another process's socket on the port: listening, or only bound (which a server's bind
    fails on all the same)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    if listening:
        sock.listen()
    try:
        yield
    finally:
        sock.close()


@pytest.mark.parametrize(("variable", "what", "listening"), [
    ("NYC311_KAFKA_PORT", "Kafka broker", True),
    ("NYC311_KAFKA_CONTROLLER_PORT", "Kafka controller", False),
    ("NYC311_PG_PORT", "PostgreSQL", True),
])
def test_up_refuses_a_port_another_process_holds(tmp_path: Path, variable: str, what: str,
                                                  listening: bool) -> None:
    env = private_env(tmp_path)
    port = int(env[variable])
    with taken(port, listening):
        done = run(env, "up")
    try:
        assert done.returncode == 1, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith(f"services: error: port {port} ({what}) is already in use by "
                               "another process")
        assert last.endswith(f"stop it, or set {variable} to a free port")
        assert not Path(env["NYC311_ENV_OUT"]).exists()  # nothing written, nothing started
        assert not (tmp_path / "state" / "kafka" / "kafka.pid").exists()
    finally:
        if done.returncode == 0:  # the check failed to fire: do not leave servers behind
            run(env, "down", "--purge")


def test_check_port_names_the_demos_variable(tmp_path: Path) -> None:
    env = private_env(tmp_path)
    port = free_port()
    assert run(env, "check-port", "DEMO_SMTP_PORT", str(port), "mail", "catcher").returncode == 0
    with taken(port, listening=True):
        done = run(env, "check-port", "DEMO_SMTP_PORT", str(port), "mail", "catcher")
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"services: error: port {port} (mail catcher) is already in use by "
                           "another process")
    assert line.endswith("; stop it, or set DEMO_SMTP_PORT to a free port")


@pytest.mark.parametrize("variable", ["DEMO_SMTP_PORT", "DEMO_SNS_PORT", "DEMO_WEB_PORT"])
def test_the_demo_stops_at_a_taken_port(tmp_path: Path, variable: str) -> None:
    """demo/run.sh, run from a copy of the two scripts (no virtualenv there: had the check not
    fired, the demo could not start anything), with one of its ports taken."""
    for script in ("demo/run.sh", "services/services.sh"):
        (tmp_path / script).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / script).write_bytes((REPO / script).read_bytes())
    env = private_env(tmp_path)
    ports = {name: free_port() for name in ("DEMO_SMTP_PORT", "DEMO_SNS_PORT", "DEMO_WEB_PORT")}
    env.update({name: str(port) for name, port in ports.items()}, DEMO_MONTH="2026-10")
    with taken(ports[variable], listening=True):
        done = subprocess.run(["bash", str(tmp_path / "demo" / "run.sh")], env=env,
                              cwd=tmp_path, timeout=120, capture_output=True, text=True)
    assert done.returncode == 1, done.stdout + done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"services: error: port {ports[variable]} (")
    assert last.endswith(f"set {variable} to a free port")
    assert not (tmp_path / "outbox").exists()  # stopped before doing anything


def test_up_while_our_own_services_run_still_succeeds() -> None:
    """The checkout's own running servers hold the default ports: `up` is idempotent."""
    env = outside_env()
    if run(env, "status").returncode != 0:
        pytest.skip("this checkout's local services are not running (make services-up)")
    env_file = REPO / ".env.services"
    before = env_file.read_bytes() if env_file.exists() else None
    done = run(env, "up")
    assert done.returncode == 0, done.stderr
    assert "Kafka already running" in done.stderr
    assert "PostgreSQL already running" in done.stderr
    assert (env_file.read_bytes() if env_file.exists() else None) == before
