"""Publish a month: aggregate, compare with the published revision, keep or add a revision.

Re-running a month whose numbers did not change keeps the revision and its ``published_at``, so
the files come out byte for byte the same. When late events changed anything (or another
``as_of`` was asked for), a new revision replaces the month's rows in the publication schema,
and its ``revisions`` table records what changed, which the month's page lists.

The publication schema is the projection's own (``Settings.published_schema``: ``published`` for
the default projection ``nyc311``, ``<schema>_published`` for another), and it records which
projection it belongs to (``publication_owner``, migration 0006): publishing refuses a schema that
belongs to another projection than the connection's (its ``search_path``), so two projections of
one database never overwrite each other's revisions.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from reports.aggregate import MonthError, aggregate, check_month, month_bounds
from reports.measures import complete
from reports.model import BY_NAME, TABLES, Publication, Row

SCHEMA = "published"  # the default projection's; every function takes ``schema``


class PublicationError(RuntimeError):
    """The publication cannot go where it was asked to: the message says why and what to do."""


def _value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    return value


def _rows(conn: psycopg.Connection, source: str, table: str, month: str) -> list[Row]:
    """The rows of ``table`` for ``month`` in ``source``, completed (reports.measures): the
    aggregated columns are read, the derived ones computed from them, in the published
    schema as in a fresh aggregation."""
    spec = BY_NAME[table]
    names = spec.aggregated_names
    order = ", ".join(spec.db_names(spec.key))
    cur = conn.execute(f"SELECT {', '.join(spec.db_names(names))} FROM {source} "
                       f"WHERE month = %s ORDER BY {order}", (month,))
    rows = [{c: _value(v) for c, v in zip(names, row, strict=True)} for row in cur.fetchall()]
    return [complete(table, {c: row.get(c) for c in spec.column_names}) for row in rows]


def _store(conn: psycopg.Connection, schema: str, month: str,
           tables: dict[str, list[Row]]) -> None:
    """Replace ``month``'s rows in the publication schema with ``tables`` (a table whose rows
    carry no month column gets ``month`` in its own)."""
    for spec in TABLES:
        fields = spec.db_names(spec.column_names)
        extra = [] if spec.has_month_column else [month]
        if extra:
            fields = ["month", *fields]
        marks = ", ".join(["%s"] * len(fields))
        conn.execute(f'DELETE FROM "{schema}".{spec.name} WHERE month = %s', (month,))
        with conn.cursor() as cur:
            cur.executemany(
                f'INSERT INTO "{schema}".{spec.name} ({", ".join(fields)}) VALUES ({marks})',
                [[*extra, *(row[c] for c in spec.column_names)] for row in tables[spec.name]])


def _digest(tables: dict[str, list[Row]]) -> str:
    canonical = json.dumps(tables, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _label(row: Row, key: tuple[str, ...]) -> str:
    return " / ".join(str(row[k]) for k in key)


def describe_changes(old: dict[str, list[Row]], new: dict[str, list[Row]],
                     examples: int = 5) -> list[str]:
    """Human-readable differences between two revisions, table by table."""
    out: list[str] = []
    for spec in TABLES:
        before = {tuple(r[k] for k in spec.key): r for r in old.get(spec.name, [])}
        after = {tuple(r[k] for k in spec.key): r for r in new.get(spec.name, [])}
        added = [after[k] for k in after.keys() - before.keys()]
        removed = [before[k] for k in before.keys() - after.keys()]
        changed = []
        for k in sorted(after.keys() & before.keys(), key=str):
            diffs = [f"{c} {before[k][c]} → {after[k][c]}" for c in spec.column_names
                     if before[k][c] != after[k][c]]
            if diffs:
                changed.append(f"{_label(after[k], spec.key)}: {', '.join(diffs)}")
        if not (added or removed or changed):
            continue
        counts = [f"{len(x)} row(s) {what}" for x, what in
                  ((changed, "changed"), (added, "added"), (removed, "removed")) if x]
        out.append(f"{spec.name}: {', '.join(counts)}")
        out += [f"  {line}" for line in changed[:examples]]
        out += [f"  added {_label(r, spec.key)}" for r in sorted(added, key=str)[:examples]]
        out += [f"  removed {_label(r, spec.key)}" for r in sorted(removed, key=str)[:examples]]
    return out


def default_as_of(conn: psycopg.Connection, month: str) -> datetime:
    """The first instant of the next month, New York time."""
    return month_bounds(conn, month)[1]


def check_owner(conn: psycopg.Connection, schema: str = SCHEMA) -> None:
    """PublicationError unless ``schema`` belongs to the connection's projection schema."""
    row = conn.execute("SELECT current_schema(), to_regclass(%s)::text",
                       (f'"{schema}".publication_owner',)).fetchone()
    projection, owner_table = row if row else (None, None)
    if owner_table is None:
        raise PublicationError(f"schema {schema!r} is not a publication schema at revision 0006 "
                               "or later: run `nyc311 db upgrade`")
    owner = conn.execute(f'SELECT projection FROM "{schema}".publication_owner').fetchone()
    if owner is None or owner[0] != projection:
        raise PublicationError(
            f"schema {schema!r} holds the publication of projection "
            f"{owner[0] if owner else None!r}, not of {projection!r}: publish each projection "
            "into its own (NYC311_PUBLISHED_SCHEMA unset gives each one its own)")


def publish_month(conn: psycopg.Connection, month: str, as_of: datetime | None = None,
                  now: datetime | None = None, *,
                  schema: str = SCHEMA) -> tuple[Publication, bool]:
    """Aggregate ``month`` and publish it in the publication schema ``schema``, which must be
    the connection's projection's (:func:`check_owner`).

    Returns the publication and whether a new revision was made.
    """
    check_month(month)
    now = now or datetime.now(UTC)
    quoted = f'"{schema}"'
    with conn.transaction():
        check_owner(conn, schema)
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('nyc311-publish:' || %s))",
                     (f"{schema}:{month}",))
        _start, end = month_bounds(conn, month)
        if end > now and (as_of is None or as_of > now):
            raise MonthError(f"{month} has not ended yet (it ends {end.isoformat()}); give an "
                             "--as-of no later than now for a preliminary revision")
        as_of = as_of or end
        aggregate(conn, month, as_of, schema=schema)
        new = {t.name: _rows(conn, f"_new_{t.name}", t.name, month) for t in TABLES}
        digest = _digest(new)
        latest = conn.execute(
            f"SELECT revision, content_sha256 FROM {quoted}.revisions WHERE month = %s "
            "ORDER BY revision DESC LIMIT 1", (month,)).fetchone()
        if latest is not None and latest[1] == digest:
            return load_publication(conn, month, schema=schema), False
        old = {t.name: _rows(conn, f"{quoted}.{t.name}", t.name, month) for t in TABLES}
        if latest is not None and old == new:
            # Nothing a reader sees differs: the revision was published before a table or a
            # derived column existed (its digest covers fewer columns). Store the rows as they
            # are read now, with the digest that covers them, and keep the revision.
            _store(conn, schema, month, new)
            conn.execute(f"UPDATE {quoted}.revisions SET content_sha256 = %s "
                         "WHERE month = %s AND revision = %s", (digest, month, latest[0]))
            return load_publication(conn, month, schema=schema), False
        revision = 1 if latest is None else latest[0] + 1
        changes = describe_changes(old, new) if latest is not None else []
        _store(conn, schema, month, new)
        conn.execute(
            f"INSERT INTO {quoted}.revisions (month, revision, as_of, published_at, "
            "content_sha256, changes) VALUES (%s, %s, %s, %s, %s, %s)",
            (month, revision, as_of, now, digest, Jsonb(changes)))
    return load_publication(conn, month, schema=schema), True


def load_publication(conn: psycopg.Connection, month: str, *,
                     schema: str = SCHEMA) -> Publication:
    """The latest published revision of ``month``, from the publication schema ``schema``."""
    quoted = f'"{schema}"'
    history = conn.execute(
        f"SELECT revision, as_of, published_at, changes FROM {quoted}.revisions "
        "WHERE month = %s ORDER BY revision", (month,)).fetchall()
    if not history:
        raise MonthError(f"{month} has not been published")
    revision, as_of, published_at, changes = history[-1]
    tables = {t.name: _rows(conn, f"{quoted}.{t.name}", t.name, month) for t in TABLES}
    return Publication(month=month, revision=revision, as_of=as_of, published_at=published_at,
                       tables=tables, changes=list(changes),
                       history=[(r, p, list(c)) for r, _a, p, c in history])


def published_months(conn: psycopg.Connection, *, schema: str = SCHEMA) -> list[str]:
    quoted = f'"{schema}"'
    rows = conn.execute(f"SELECT DISTINCT month FROM {quoted}.revisions ORDER BY month DESC")
    return [m for (m,) in rows.fetchall()]
