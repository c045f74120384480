"""A PostgreSQL server that cannot be reached, or refuses the login, ends a command with one
line that says so, exit status 1: no traceback (cli.Nyc311)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.servers import free_port


def nyc311(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url,
           "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}", "NYC311_ENV_FILE": os.devnull}
    return subprocess.run([sys.executable, "-m", "cli", *args], env=env, text=True,
                          capture_output=True, timeout=60, check=False)


@pytest.mark.parametrize("args", [("db", "summary"), ("publish", "--month", "2026-11",
                                                      "--out", "unused-site"),
                                  ("run", "aggregator", "--once", "--out", "unused-site")])
def test_no_database_is_one_line_and_exit_1(args: tuple[str, ...]) -> None:
    port = free_port()  # nothing listens there
    done = nyc311(*args, database_url=f"postgresql://nyc311:secret-pw@127.0.0.1:{port}/nyc311")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    error = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert error == [error[0]] and f"port {port}" in error[0], done.stderr
    assert error[0].startswith("Error: PostgreSQL (DATABASE_URL): connection failed")
    assert "secret-pw" not in done.stderr  # the password is never printed


def test_other_errors_are_not_taken_for_a_database_failure() -> None:
    from cli import unreachable_database

    assert unreachable_database(ValueError("connection")) is None
    assert unreachable_database(RuntimeError("boom")) is None
