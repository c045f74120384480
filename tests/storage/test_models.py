"""The models (storage/models.py) are what the migrations make, table for table, column for column.

Alembic's autogenerate compares the models with a freshly migrated database, as
``alembic revision --autogenerate`` would (storage/migrations/env.py), types and server
defaults included, and must find nothing to do: a table, column, index or unique constraint
that one side has and the other lacks, or a type, nullability or default that differs, is a
difference. What autogenerate leaves out (check constraints, a partial index's WHERE, column order,
constraint names) is compared in PostgreSQL's catalog, the models' tables created beside the
migrated ones. The code that spells out a table's columns takes them from the models; the last
tests check that it still lines up with them.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from nyc311.settings import Settings
from storage.db import engine
from storage.models import (
    PUBLISHED,
    VERSION_TABLE,
    autogenerate_options,
    column_names,
    target_metadata,
)


def differences(settings: Settings) -> list[Any]:
    """What autogenerate would put in a new revision, against ``settings``' database."""
    options = autogenerate_options(settings.vault_schema, settings.published_schema)
    eng = engine(settings)
    try:
        with eng.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={**options, "version_table_schema": settings.db_schema})
            return list(compare_metadata(context, options["target_metadata"]))
    finally:
        eng.dispose()


def test_the_models_are_what_the_migrations_make(settings: Settings) -> None:
    assert differences(settings) == []


@pytest.mark.parametrize(("schema", "table", "column"), [
    ("", "survey_links", "expires_at"),
    ("vault", "contact_erasures", "reason"),
    ("published", "publication_owner", "claimed_at"),
])
def test_a_column_on_one_side_only_is_a_difference(settings: Settings, schema: str, table: str,
                                                   column: str) -> None:
    """The comparison sees every schema: a column the database lacks is one to add."""
    name = {"": settings.db_schema, "vault": settings.vault_schema,
            "published": settings.published_schema}[schema]
    with psycopg.connect(settings.libpq_url, autocommit=True) as conn:
        conn.execute(f'ALTER TABLE "{name}".{table} DROP COLUMN {column}')
    diff = differences(settings)
    assert [(d[0], d[2], d[3].name) for d in diff] == [("add_column", table, column)]


def catalog(conn: psycopg.Connection, schema: str) -> dict[str, Any]:
    """What PostgreSQL says of a schema's tables: their columns in order (type, NOT NULL,
    default), their constraints and their indexes, as it prints their definitions."""
    tables = [t for (t,) in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename <> %s "
        "ORDER BY tablename", (schema, VERSION_TABLE))]
    out: dict[str, Any] = {}
    for table in tables:
        relation = f'"{schema}".{table}'
        columns = conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
            "pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a "
            "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum", (relation,)).fetchall()
        constraints = conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass ORDER BY conname", (relation,)).fetchall()
        indexes = conn.execute(
            "SELECT indexname, replace(indexdef, %s, '') FROM pg_indexes "
            "WHERE schemaname = %s AND tablename = %s ORDER BY indexname",
            (f"{schema}.", schema, table)).fetchall()
        out[table] = {"columns": columns, "constraints": constraints, "indexes": indexes}
    return out


def test_the_models_create_the_same_tables(settings: Settings) -> None:
    """What autogenerate does not compare (check constraints, a partial index's WHERE, column
    order, constraint names): the models' DDL in scratch schemas, next to the migrations'."""
    scratch = {"": "models", "vault": "models_vault", "published": "models_published"}
    migrated = {"": settings.db_schema, "vault": settings.vault_schema,
                "published": settings.published_schema}
    eng = engine(settings, schema=scratch[""])
    try:
        with eng.begin() as conn:
            for schema in scratch.values():
                conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
            target_metadata(scratch["vault"], scratch["published"]).create_all(conn)
    finally:
        eng.dispose()
    with psycopg.connect(settings.libpq_url, autocommit=True) as conn:
        for part in scratch:
            assert catalog(conn, scratch[part]) == catalog(conn, migrated[part]), part


def test_the_published_tables_are_the_published_files() -> None:
    from reports.model import TABLES

    for spec in TABLES:
        # a table without a month column in its files (NYC's layout) has one in PostgreSQL,
        # first; the other columns are the files' in their order, by their database names
        month = () if spec.has_month_column else ("month",)
        assert column_names(PUBLISHED.tables[spec.name]) == (
            *month, *spec.db_names(spec.column_names))


def test_the_projectors_rows_follow_the_model_columns() -> None:
    """Rows are tuples in the order of the columns the projector takes from the models."""
    from consumers.projector import ANSWERS, CLOSURES, CONTACTS, KEYS, REQUESTS, SURVEYS, event_rows

    def record(*names: str) -> dict[str, Any]:
        return {name: f"<{name}>" for name in names}

    def expected(table: Any, r: dict[str, Any], **computed: Any) -> tuple[Any, ...]:
        # the event's time is the table's millis column: occurred_at
        times = {"created_at", "closed_at", "sent_at", "answered_at"}
        return tuple(computed[c] if c in computed else r["occurred_at" if c in times else c]
                     for c in table.columns)

    created = record("request_id", "event_id", "occurred_at", "agency", "agency_name",
                     "complaint_type", "descriptor", "channel", "borough", "incident_zip",
                     "language")
    created.update(contact=None, sealed_contact={"key_id": "<key>", "ciphertext": "<sealed>"})
    assert event_rows("request_created", created) == [
        (REQUESTS, expected(REQUESTS, created, has_contact=True)),
        (CONTACTS, expected(CONTACTS, created, key_id="<key>", sealed="<sealed>")),
    ]
    clear = dict(created, sealed_contact=None, contact={"email": "j@example.com", "phone": None})
    (requests, request), (keys, key), (contacts, contact) = event_rows("request_created", clear)
    assert (requests, keys, contacts) == (REQUESTS, KEYS, CONTACTS)
    assert request == expected(REQUESTS, clear, has_contact=True)
    assert key[KEYS.columns.index("request_id")] == "<request_id>"
    assert key[KEYS.columns.index("key_id")] == contact[CONTACTS.columns.index("key_id")]
    assert len(key[KEYS.columns.index("key")]) == 32
    closed = record("event_id", "request_id", "occurred_at", "status", "resolution_description")
    assert event_rows("request_closed", closed) == [(CLOSURES, expected(CLOSURES, closed))]
    sent = record("survey_id", "event_id", "request_id", "occurred_at", "channel", "language",
                  "closure_event_id")
    assert event_rows("survey_sent", sent) == [(SURVEYS, expected(SURVEYS, sent))]
    answered = record("survey_id", "event_id", "request_id", "occurred_at", "language",
                      "satisfaction", "reopen_requested", "feedback", "dissatisfaction_reason")
    assert event_rows("survey_answered", answered) == [(ANSWERS, expected(ANSWERS, answered))]
