"""Database connections and the classification of database errors.

The hot paths (projector, dispatcher) use psycopg 3 directly, for ``COPY`` and few round trips;
migrations and reports use SQLAlchemy. Both get ``search_path`` set to the configured schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import Engine, create_engine

from nyc311.settings import Settings

# SQLSTATE classes and codes worth retrying: the server or network went away, or the transaction
# lost a race and will succeed when run again.
_TRANSIENT_CLASSES = {"08", "53", "57"}  # connection, insufficient resources, operator action
_TRANSIENT_CODES = {"40001", "40P01", "55P03"}  # serialization, deadlock, lock not available


def is_transient(exc: BaseException) -> bool:
    """True for errors that a retry of the same transaction can cure."""
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        sqlstate = getattr(exc, "sqlstate", None)
        if sqlstate is None:  # lost connection, no server answer at all
            return True
        return sqlstate[:2] in _TRANSIENT_CLASSES or sqlstate in _TRANSIENT_CODES
    if isinstance(exc, psycopg.Error):
        sqlstate = exc.sqlstate or ""
        return sqlstate[:2] in _TRANSIENT_CLASSES or sqlstate in _TRANSIENT_CODES
    return isinstance(exc, ConnectionError | TimeoutError)


def _options(settings: Settings, schema: str | None) -> str:
    """``search_path`` after any ``options`` the URL gives (``?options=-c%20role%3D…`` makes a
    login act as one service's role, docs/RUNBOOK.md)."""
    given = conninfo_to_dict(settings.libpq_url).get("options") or ""
    return f"{given} -c search_path={schema or settings.db_schema}".strip()


def connect(settings: Settings, autocommit: bool = False,
            schema: str | None = None) -> psycopg.Connection:
    """A psycopg connection with ``search_path`` set to the projection schema."""
    return psycopg.connect(
        settings.libpq_url,
        autocommit=autocommit,
        options=_options(settings, schema),
        connect_timeout=10,
        application_name="nyc311",
    )


@contextmanager
def connection(settings: Settings, schema: str | None = None) -> Iterator[psycopg.Connection]:
    conn = connect(settings, schema=schema)
    try:
        yield conn
    finally:
        conn.close()


def engine(settings: Settings, schema: str | None = None) -> Engine:
    """A SQLAlchemy engine (psycopg 3 driver) with ``search_path`` set."""
    return create_engine(
        settings.sqlalchemy_url,
        connect_args={"options": _options(settings, schema)},
        pool_pre_ping=True,
    )


def database_health(settings: Settings) -> tuple[bool, str]:
    """The health of a service whose only dependency is PostgreSQL (the aggregator, the purge):
    a query."""
    try:
        with connect(settings, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return False, f"database unavailable: {type(exc).__name__}"
    return True, "database answers"
