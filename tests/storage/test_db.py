"""admin_statement: CREATE/DROP DATABASE retried while another session holds the database."""

from __future__ import annotations

import psycopg
import pytest

from storage.db import admin_statement


class Busy:
    """A connection whose statements fail ``busy`` times with the given error, then succeed."""

    def __init__(self, busy: int, error: type[Exception] = psycopg.errors.ObjectInUse) -> None:
        self.busy, self.error = busy, error
        self.executed: list[str] = []

    def execute(self, statement: str) -> None:
        self.executed.append(statement)
        if len(self.executed) <= self.busy:
            raise self.error("database is being accessed by other users")


def test_retries_until_the_database_is_free():
    conn = Busy(2, psycopg.errors.InsufficientPrivilege)
    admin_statement(conn, "DROP DATABASE x", attempts=3, delay=0)  # type: ignore[arg-type]
    assert conn.executed == ["DROP DATABASE x"] * 3


def test_each_attempt_tries_the_fallbacks_in_order():
    conn = Busy(3)
    admin_statement(conn, "FORCE", "PLAIN", attempts=5, delay=0)  # type: ignore[arg-type]
    assert conn.executed == ["FORCE", "PLAIN", "FORCE", "PLAIN"]


def test_raises_the_last_error_once_the_attempts_are_spent():
    conn = Busy(10)
    with pytest.raises(psycopg.errors.ObjectInUse):
        admin_statement(conn, "FORCE", "PLAIN", attempts=2, delay=0)  # type: ignore[arg-type]
    assert conn.executed == ["FORCE", "PLAIN", "FORCE", "PLAIN"]


def test_other_errors_are_not_retried():
    conn = Busy(1, psycopg.errors.DuplicateDatabase)
    with pytest.raises(psycopg.errors.DuplicateDatabase):
        admin_statement(conn, "CREATE DATABASE x", attempts=5, delay=0)  # type: ignore[arg-type]
    assert conn.executed == ["CREATE DATABASE x"]
