"""Reopen requests per agency: ``survey_response_rates.reopen_requested``.

Publication schema:

- ``survey_response_rates`` gets ``reopen_requested``, after its existing columns: of the
  surveys sent in the month and answered by as_of, those whose answer asked for the request to
  be reopened (the same reopen request ``reopen_rates`` counts). It gives each agency a
  reopen-request rate, which ``reopen_rates`` (by complaint type) cannot.

The column is nullable and nothing fills it here: a month published before this revision has
no such count (the answers it would be counted from may have changed since), so it stays empty,
and the trends leave that month out of the agency reopen-request rate, until the month is
published again; if the month's counts are still the same, that publication is a new revision
whose changes list the filled counts, and no number published before changes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import context, op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _published() -> str:
    return str(context.config.attributes.get("published_schema") or "published")


def upgrade() -> None:
    # A rebuild migrates a fresh projection schema with the live publication schema, which
    # has the column already: idempotent.
    op.execute(f'ALTER TABLE "{_published()}".survey_response_rates '
               "ADD COLUMN IF NOT EXISTS reopen_requested integer")


def downgrade() -> None:
    op.execute(f'ALTER TABLE "{_published()}".survey_response_rates '
               "DROP COLUMN IF EXISTS reopen_requested")
