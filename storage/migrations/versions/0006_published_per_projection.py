"""Each projection publishes into a schema of its own, which records whose it is.

Until now one ``published`` schema per database was shared by every projection schema in it, so
two projections (``NYC311_DB_SCHEMA=nyc311`` and ``nyc311_b``) overwrote each other's monthly
revisions. The publication schema is now the projection's own (``NYC311_PUBLISHED_SCHEMA``,
passed by storage/migrate.py): ``published`` for the default projection ``nyc311``, so existing
deployments and the analyst role's queries keep their name, ``<schema>_published`` for any
other.

- A projection migrated while 0003 made the shared schema gets a schema of its own here, with the
  same tables (``LIKE published.<table> INCLUDING ALL``) and the analyst's read access. The
  revisions such a projection published into the shared schema stay there: nothing says which
  projection wrote them. Publish its months again (``nyc311 publish``) to fill its own.
- ``<published schema>.publication_owner`` records the projection the schema belongs to, on
  first migration. Migrating (or publishing from, reports/publish.py) another projection with
  the same publication schema is refused: two projections can never share one, however
  ``NYC311_PUBLISHED_SCHEMA`` is set. A rebuild migrates its fresh schema with the live
  projection's name and publication schema, so it finds the schema its own.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SHARED = "published"
ANALYST = "nyc311_analyst"
OWNER = "publication_owner"
TABLES = ("revisions", "requests_received", "closure_rates", "reopen_rates", "satisfaction")


def _names() -> tuple[str, str]:
    """(publication schema, projection it belongs to): the live projection's, in a rebuild too."""
    attributes = context.config.attributes
    schema = str(attributes.get("published_schema") or SHARED)
    projection = str(attributes.get("projection") or attributes["schema"])
    return schema, projection


def upgrade() -> None:
    schema, projection = _names()
    bind = op.get_bind()
    if not sa.inspect(bind).has_table("revisions", schema=schema):
        op.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        for table in TABLES:
            op.execute(f'CREATE TABLE "{schema}".{table} (LIKE {SHARED}.{table} INCLUDING ALL)')
        op.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO {ANALYST}')
        op.execute(f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{schema}" GRANT SELECT ON TABLES '
                   f"TO {ANALYST}")
    op.execute(f"""
        CREATE TABLE IF NOT EXISTS "{schema}".{OWNER} (
            only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
            projection text NOT NULL,
            claimed_at timestamptz NOT NULL DEFAULT now()
        )""")
    bind.execute(sa.text(f'INSERT INTO "{schema}".{OWNER} (projection) VALUES (:p) '
                         "ON CONFLICT (only_row) DO NOTHING"), {"p": projection})
    owner = bind.execute(sa.text(f'SELECT projection FROM "{schema}".{OWNER}')).scalar_one()
    if owner != projection:
        raise RuntimeError(
            f"schema {schema!r} holds the publication of projection {owner!r}; projection "
            f"{projection!r} needs a publication schema of its own: set NYC311_PUBLISHED_SCHEMA "
            "to another name (or leave it unset for the default)")
    op.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO {ANALYST}')


def downgrade() -> None:
    schema, _projection = _names()
    op.execute(f'DROP TABLE IF EXISTS "{schema}".{OWNER}')
