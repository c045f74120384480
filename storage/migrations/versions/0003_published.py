"""The published schema: the four monthly tables, their revisions, and the analyst role.

``published`` holds the latest revision of every published month, exactly as the files show it;
``published.revisions`` keeps every revision with what changed. The ``nyc311_analyst`` role can
read this schema and nothing else (no grant on the projection, where personal data lives).

The schema is the projection's own (``NYC311_PUBLISHED_SCHEMA``, passed by storage/migrate.py):
``published`` for the default projection ``nyc311``, as it always was, ``<schema>_published``
for any other. (This revision first created one ``published`` schema shared by every projection
of the database; 0006 gives a projection migrated then a schema of its own.) A rebuild migrates
a fresh projection schema with the live projection's publication schema, which exists already
and is left as it is.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ANALYST = "nyc311_analyst"
TZ = sa.DateTime(timezone=True)


def _counts(*names: str) -> list[sa.Column]:
    return [sa.Column(n, sa.Integer, nullable=False) for n in names]


def _schema() -> str:
    return str(context.config.attributes.get("published_schema") or "published")


def upgrade() -> None:
    schema = _schema()
    # A rebuild migrates a fresh projection schema beside the live one, which publishes into
    # the same schema: create it only where it is not there yet.
    if sa.inspect(op.get_bind()).has_table("revisions", schema=schema):
        return
    op.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    op.create_table(
        "revisions",
        sa.Column("month", sa.Text, primary_key=True),
        sa.Column("revision", sa.Integer, primary_key=True),
        sa.Column("as_of", TZ, nullable=False),
        sa.Column("published_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("content_sha256", sa.Text, nullable=False),
        sa.Column("changes", JSONB, nullable=False, server_default="[]"),
        schema=schema,
    )
    op.create_table(
        "requests_received",
        sa.Column("month", sa.Text, primary_key=True),
        sa.Column("agency", sa.Text, primary_key=True),
        sa.Column("agency_name", sa.Text, nullable=False),
        sa.Column("complaint_type", sa.Text, primary_key=True),
        *_counts("received"),
        schema=schema,
    )
    op.create_table(
        "closure_rates",
        sa.Column("month", sa.Text, primary_key=True),
        sa.Column("agency", sa.Text, primary_key=True),
        sa.Column("complaint_type", sa.Text, primary_key=True),
        *_counts("received", "closed"),
        sa.Column("closure_rate", sa.Numeric(5, 4)),
        sa.Column("as_of", TZ, nullable=False),
        schema=schema,
    )
    op.create_table(
        "reopen_rates",
        sa.Column("month", sa.Text, primary_key=True),
        sa.Column("complaint_type", sa.Text, primary_key=True),
        *_counts("surveys_answered", "reopen_requested"),
        sa.Column("reopen_rate", sa.Numeric(5, 4)),
        schema=schema,
    )
    op.create_table(
        "satisfaction",
        sa.Column("month", sa.Text, primary_key=True),
        sa.Column("agency", sa.Text, primary_key=True),
        sa.Column("complaint_type", sa.Text, primary_key=True),
        *_counts("responses", "strongly_agree", "agree", "neutral", "disagree",
                 "strongly_disagree"),
        sa.Column("share_satisfied", sa.Numeric(5, 4)),
        sa.Column("mean_score", sa.Numeric(5, 2)),
        schema=schema,
    )
    op.execute(f"""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ANALYST}') THEN
                CREATE ROLE {ANALYST} NOLOGIN;
            END IF;
        END $$""")
    op.execute(f"GRANT USAGE ON SCHEMA {schema} TO {ANALYST}")
    op.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {ANALYST}")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO {ANALYST}")


def downgrade() -> None:
    schema = _schema()
    for table in ("satisfaction", "reopen_rates", "closure_rates", "requests_received",
                  "revisions"):
        op.drop_table(table, schema=schema)
    op.execute(f"REVOKE USAGE ON SCHEMA {schema} FROM {ANALYST}")
