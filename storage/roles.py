"""Least privilege: one PostgreSQL role per service, with the grants it needs and no more.

The owner of the schemas (``DATABASE_URL`` of ``nyc311 db upgrade`` and ``nyc311 rebuild``) is
used by migrations only. Every service connects as a login user that is a member of its role
(docs/RUNBOOK.md, "Database roles"); the roles are ``NOLOGIN`` groups created here.

Residents' contacts: only the dispatcher (to send) and the purge (to erase) can read a key, and
without its key a sealed contact is unreadable. A producer that seals at the edge writes keys
and reads erasures, nothing more. The projector writes sealed contacts and the keys of contacts
that arrive in the clear; it can read the sealed bytes (PostgreSQL wants SELECT
on every column an ``ON CONFLICT DO UPDATE`` sets) but no key, and cannot delete either. The
survey page reads no projection table at all. :data:`GRANTS` is the one list of who may do
what; migrations that add a table add it here and call :func:`apply` again.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from psycopg import sql

PROJECTOR = "nyc311_projector"
DISPATCHER = "nyc311_dispatcher"
SURVEY_WEB = "nyc311_survey_web"
FORWARDER = "nyc311_forwarder"
AGGREGATOR = "nyc311_aggregator"
PURGE = "nyc311_purge"
PRODUCER = "nyc311_producer"
ANALYST = "nyc311_analyst"
SERVICE_ROLES = (PROJECTOR, DISPATCHER, SURVEY_WEB, FORWARDER, AGGREGATOR, PURGE, PRODUCER)

OFFSETS = ("consumer_offsets", "SELECT, INSERT, UPDATE")

# role -> [(schema, table, privileges)]; schema "" is the projection, "vault" and "published"
# the schemas of those names in the settings.
GRANTS: dict[str, list[tuple[str, str, str]]] = {
    PROJECTOR: [
        *(("", t, "SELECT, INSERT, UPDATE")
          for t in ("requests", "closures", "surveys", "survey_answers")),
        ("", "contacts", "SELECT, INSERT, UPDATE"),
        ("", *OFFSETS),
        ("vault", "contact_keys", "INSERT"),
        ("vault", "contact_erasures", "SELECT"),
    ],
    DISPATCHER: [
        ("", "survey_dispatch", "SELECT, INSERT, UPDATE"),
        ("", "survey_links", "SELECT, INSERT, UPDATE"),
        ("", "requests", "SELECT"),
        ("", "contacts", "SELECT"),
        ("", *OFFSETS),
        ("vault", "contact_keys", "SELECT"),
    ],
    SURVEY_WEB: [
        ("", "survey_submissions", "SELECT, INSERT"),
        ("", "survey_answer_outbox", "SELECT, INSERT, UPDATE, DELETE"),  # DELETE: sent rows
        ("", "survey_links", "SELECT"),
    ],
    FORWARDER: [
        ("", "reopen_forwards", "SELECT, INSERT, UPDATE"),
        ("", "requests", "SELECT"),
        ("", *OFFSETS),
    ],
    AGGREGATOR: [
        *(("", t, "SELECT") for t in ("requests", "closures", "surveys", "survey_answers")),
        *(("published", t, "SELECT, INSERT, UPDATE, DELETE")
          for t in ("revisions", "requests_received", "closure_rates", "reopen_rates",
                    "satisfaction", "survey_responses", "survey_response_rates")),
        ("published", "publication_owner", "SELECT"),  # whose publication it is (0006)
        ("published", "publication_key", "SELECT"),  # survey_responses' untraceable keys (0008)
    ],
    PURGE: [
        *(("", t, "SELECT") for t in ("requests", "closures", "survey_dispatch")),
        ("", "contacts", "SELECT, DELETE"),
        ("vault", "contact_keys", "SELECT, DELETE"),
        ("vault", "contact_erasures", "SELECT, INSERT"),
    ],
    # a producer that seals contacts at the edge (producers/sealer.py: the simulator, an
    # upstream system linking it): new keys, and which requests were erased; nothing else
    PRODUCER: [
        ("vault", "contact_keys", "INSERT"),
        ("vault", "contact_erasures", "SELECT"),
    ],
}


def statements(projection: str, vault: str, published: str,
               exists: Callable[[str, str], bool]) -> list[str]:
    """The SQL that creates the roles (where missing) and grants :data:`GRANTS`, for tables
    that ``exists(schema, table)``."""
    out = [f"""DO $$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
            CREATE ROLE {role} NOLOGIN;
        END IF;
    END $$""" for role in SERVICE_ROLES]
    schemas = {"": projection, "vault": vault, "published": published}
    for role, grants in GRANTS.items():
        used = {schemas[s] for s, table, _ in grants if exists(schemas[s], table)}
        out += [f'GRANT USAGE ON SCHEMA "{name}" TO {role}' for name in sorted(used)]
        for schema, table, privileges in grants:
            if exists(schemas[schema], table):
                out.append(f'GRANT {privileges} ON "{schemas[schema]}".{table} TO {role}')
    return out


def make_login(conn: psycopg.Connection, role: str, user: str, password: str) -> None:
    """Create login ``user`` (or set its password, when it exists) as a member of ``role``."""
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
    verb = "ALTER" if exists else "CREATE"
    conn.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
        sql.Identifier(user), sql.Literal(password)))
    conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(user)))
