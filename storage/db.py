"""Database connections and the classification of database errors.

The hot paths (projector, dispatcher) use psycopg 3 directly, for ``COPY`` and few round trips;
migrations and reports use SQLAlchemy. Both get ``search_path`` set to the configured schema.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import Engine, create_engine

from nyc311.settings import Settings

log = logging.getLogger(__name__)

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


#: What CREATE/DROP DATABASE raises while another session is in the database (or in the template
#: being cloned): ``ObjectInUse``, or ``InsufficientPrivilege`` when ``WITH (FORCE)`` would have
#: to end a session the role may not end.
DATABASE_BUSY = (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse)


def admin_statement(admin: Settings | psycopg.Connection, *statements: str, attempts: int = 50,
                    delay: float = 0.2) -> None:
    """Run a CREATE/DROP DATABASE, retried while another session holds the database.

    The session is usually an autovacuum worker, which a bulk load invites: a superuser process
    that a role which is not a superuser may not end (so ``WITH (FORCE)`` is refused), and which
    finishes, or stops for a plain ``DROP DATABASE``, in a moment. Each attempt tries
    ``statements`` in order until one succeeds, so a plain statement can follow a forced one;
    attempts are ``delay`` seconds apart. Once ``attempts`` are spent the last error is raised
    (one of :data:`DATABASE_BUSY`); any other error at once.

    ``admin`` is an open autocommit connection, or settings whose server is connected to (and
    disconnected from) for this statement alone.
    """
    if not statements or attempts < 1:
        raise ValueError("admin_statement needs a statement and at least one attempt")
    if isinstance(admin, Settings):
        with psycopg.connect(admin.libpq_url, autocommit=True) as conn:
            admin_statement(conn, *statements, attempts=attempts, delay=delay)
        return
    for attempt in range(attempts):
        for number, statement in enumerate(statements, 1):
            try:
                admin.execute(statement)
                return
            except DATABASE_BUSY as exc:
                log.debug("%s, attempt %d: %s", statement, attempt + 1, exc)
                if attempt == attempts - 1 and number == len(statements):
                    raise
        time.sleep(delay)
