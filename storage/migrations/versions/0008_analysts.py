"""What analysts get beside the four tables: intervals and reliability, NYC's survey layout,
survey response rates, and the dissatisfaction reason that fills that layout.

Projection schema:

- ``survey_answers.dissatisfaction_reason``: the reason a person who disagreed chose from
  NYC's list (SurveyAnswered v2, optional; empty for every answer before it).

Publication schema:

- ``closure_rates``, ``reopen_rates`` and ``satisfaction`` get each rate's 95% interval and the
  row's ``reliability`` (reports/measures.py computes them from the counts, so a month published
  before this revision shows them as soon as the site is rebuilt, without a new revision: no
  count changed).
- ``survey_responses``: one row per answered survey in the columns of NYC's 311 Resolution
  Satisfaction Survey dataset (Open Data 5ijn-vbdv), coarsened: the month, the borough, a key
  that cannot be traced back to a request.
- ``survey_response_rates``: surveys sent in the month per agency, and how many were answered.
- ``publication_key``: the random secret the untraceable keys are derived from. It is made
  here, once per publication schema, and stays with it, so a key is stable from revision to
  revision; the analyst role cannot read it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import context, op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

ANALYST = "nyc311_analyst"
RATE = "numeric(5,4)"
SCORE = "numeric(5,2)"
#: published table -> the columns this revision adds, after the existing ones
INTERVALS: dict[str, tuple[tuple[str, str], ...]] = {
    "closure_rates": (("closure_rate_ci_low", RATE), ("closure_rate_ci_high", RATE),
                      ("reliability", "text")),
    "reopen_rates": (("reopen_rate_ci_low", RATE), ("reopen_rate_ci_high", RATE),
                     ("reliability", "text")),
    "satisfaction": (("share_satisfied_ci_low", RATE), ("share_satisfied_ci_high", RATE),
                     ("mean_score_ci_low", SCORE), ("mean_score_ci_high", SCORE),
                     ("reliability", "text")),
}


def _schemas() -> tuple[str, str, str]:
    attributes = context.config.attributes
    return (str(attributes["schema"]), str(attributes.get("vault_schema") or "nyc311_vault"),
            str(attributes.get("published_schema") or "published"))


def upgrade() -> None:
    from storage.roles import statements

    projection, vault, published = _schemas()
    op.execute(f'ALTER TABLE "{projection}".survey_answers '
               "ADD COLUMN IF NOT EXISTS dissatisfaction_reason text")
    # A rebuild migrates a fresh projection schema with the live publication schema, which has
    # these already: every statement on it is idempotent.
    for table, columns in INTERVALS.items():
        adds = ", ".join(f"ADD COLUMN IF NOT EXISTS {name} {kind}" for name, kind in columns)
        op.execute(f'ALTER TABLE "{published}".{table} {adds}')
    op.execute(f"""
        CREATE TABLE IF NOT EXISTS "{published}".survey_responses (
            month text NOT NULL,
            unique_key text NOT NULL,
            agency_acronym text NOT NULL,
            agency_name text NOT NULL,
            complaint_type text NOT NULL,
            descriptor text,
            borough text,
            resolution_description text,
            survey_year integer NOT NULL,
            survey_month integer NOT NULL,
            satisfaction_response text,
            dissatisfaction_reason text,
            PRIMARY KEY (month, unique_key)
        )""")
    op.execute(f"""
        CREATE TABLE IF NOT EXISTS "{published}".survey_response_rates (
            month text NOT NULL,
            agency text NOT NULL,
            surveys_sent integer NOT NULL,
            surveys_answered integer NOT NULL,
            response_rate {RATE},
            response_rate_ci_low {RATE},
            response_rate_ci_high {RATE},
            reliability text,
            PRIMARY KEY (month, agency)
        )""")
    op.execute(f"""
        CREATE TABLE IF NOT EXISTS "{published}".publication_key (
            only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
            key bytea NOT NULL CHECK (length(key) = 32),
            created_at timestamptz NOT NULL DEFAULT now()
        )""")
    op.get_bind().execute(
        sa.text(f'INSERT INTO "{published}".publication_key (key) VALUES (:key) '
                "ON CONFLICT (only_row) DO NOTHING"), {"key": os.urandom(32)})
    op.execute(f'GRANT SELECT ON "{published}".survey_responses, '
               f'"{published}".survey_response_rates TO {ANALYST}')
    # the schema's default privileges give the analyst SELECT on every new table: not this one
    op.execute(f'REVOKE ALL ON "{published}".publication_key FROM {ANALYST}')
    inspector = sa.inspect(op.get_bind())
    for statement in statements(projection, vault, published,
                                exists=lambda s, t: inspector.has_table(t, schema=s)):
        op.execute(statement)


def downgrade() -> None:
    projection, _vault, published = _schemas()
    for table in ("publication_key", "survey_response_rates", "survey_responses"):
        op.execute(f'DROP TABLE IF EXISTS "{published}".{table}')
    for table, columns in INTERVALS.items():
        drops = ", ".join(f"DROP COLUMN IF EXISTS {name}" for name, _ in columns)
        op.execute(f'ALTER TABLE "{published}".{table} {drops}')
    op.execute(f'ALTER TABLE "{projection}".survey_answers '
               "DROP COLUMN IF EXISTS dissatisfaction_reason")
