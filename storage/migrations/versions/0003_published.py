"""The published schema: the four monthly tables, their revisions, and the analyst role.

``published`` holds the latest revision of every published month, exactly as the files show it;
``published.revisions`` keeps every revision with what changed. The ``nyc311_analyst`` role can
read this schema and nothing else (no grant on the projection, where personal data lives).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SCHEMA = "published"
ANALYST = "nyc311_analyst"
TZ = sa.DateTime(timezone=True)


def _counts(*names: str) -> list[sa.Column]:
    return [sa.Column(n, sa.Integer, nullable=False) for n in names]


def upgrade() -> None:
    # `published` is one per database, shared by every projection schema in it (a rebuild
    # migrates a second one beside the live one): create it only where it is not there yet.
    if sa.inspect(op.get_bind()).has_table("revisions", schema=SCHEMA):
        return
    op.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    op.create_table(
        "revisions",
        sa.Column("month", sa.Text, primary_key=True),
        sa.Column("revision", sa.Integer, primary_key=True),
        sa.Column("as_of", TZ, nullable=False),
        sa.Column("published_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("content_sha256", sa.Text, nullable=False),
        sa.Column("changes", JSONB, nullable=False, server_default="[]"),
        schema=SCHEMA,
    )
    op.create_table(
        "requests_received",
        sa.Column("month", sa.Text, primary_key=True),
        sa.Column("agency", sa.Text, primary_key=True),
        sa.Column("agency_name", sa.Text, nullable=False),
        sa.Column("complaint_type", sa.Text, primary_key=True),
        *_counts("received"),
        schema=SCHEMA,
    )
    op.create_table(
        "closure_rates",
        sa.Column("month", sa.Text, primary_key=True),
        sa.Column("agency", sa.Text, primary_key=True),
        sa.Column("complaint_type", sa.Text, primary_key=True),
        *_counts("received", "closed"),
        sa.Column("closure_rate", sa.Numeric(5, 4)),
        sa.Column("as_of", TZ, nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "reopen_rates",
        sa.Column("month", sa.Text, primary_key=True),
        sa.Column("complaint_type", sa.Text, primary_key=True),
        *_counts("surveys_answered", "reopen_requested"),
        sa.Column("reopen_rate", sa.Numeric(5, 4)),
        schema=SCHEMA,
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
        schema=SCHEMA,
    )
    op.execute(f"""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ANALYST}') THEN
                CREATE ROLE {ANALYST} NOLOGIN;
            END IF;
        END $$""")
    op.execute(f"GRANT USAGE ON SCHEMA {SCHEMA} TO {ANALYST}")
    op.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {SCHEMA} TO {ANALYST}")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {SCHEMA} GRANT SELECT ON TABLES TO {ANALYST}")


def downgrade() -> None:
    for table in ("satisfaction", "reopen_rates", "closure_rates", "requests_received",
                  "revisions"):
        op.drop_table(table, schema=SCHEMA)
    op.execute(f"REVOKE USAGE ON SCHEMA {SCHEMA} FROM {ANALYST}")
