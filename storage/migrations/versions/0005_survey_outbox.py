"""The survey page's outbox of answers for Kafka, and the short survey links of SMS surveys.

Both tables belong to the survey loop, not the projection (the projector never writes them), so
a rebuild moves them across unchanged.

- survey_answer_outbox (survey page): one row per answered survey, written in the same short
  transaction as its claim in survey_submissions. It holds the SurveyAnswered event exactly as
  it goes to Kafka (the Avro bytes, their key, the event id), so the relay inside the survey page
  produces the same event however often it has to try, and marks the row sent once Kafka has
  acknowledged it. Unsent rows are what /healthz and the outbox metrics report on.
- survey_links (dispatcher, survey page): the short link of an SMS survey, ``<base>/s/<link_id>``.
  ``link_id`` is random (secrets, 12 base62 characters: 71 bits), looked up here; the row
  names the survey, its request and language, and when the link stops working.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "survey_answer_outbox",
        sa.Column("survey_id", sa.Uuid, primary_key=True),
        sa.Column("event_id", sa.Uuid, nullable=False),
        sa.Column("request_id", sa.Text, nullable=False),
        # the contract's event name (schemas.serde.EVENT_TYPES); the topic follows from it
        sa.Column("event", sa.Text, nullable=False, server_default="survey_answered"),
        sa.Column("key", sa.LargeBinary, nullable=False),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("created_at", TZ, nullable=False, server_default=sa.func.now()),
        # a relay leases a row by moving this forward; a failed attempt sets the next one
        sa.Column("next_attempt_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.Column("sent_at", TZ),
    )
    op.create_index("ix_survey_answer_outbox_unsent", "survey_answer_outbox",
                    ["next_attempt_at"], postgresql_where=sa.text("sent_at IS NULL"))

    op.create_table(
        "survey_links",
        sa.Column("link_id", sa.Text, primary_key=True),
        sa.Column("survey_id", sa.Uuid, nullable=False, unique=True),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("language", sa.Text, nullable=False),
        sa.Column("created_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("expires_at", TZ, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("survey_links")
    op.drop_index("ix_survey_answer_outbox_unsent", table_name="survey_answer_outbox")
    op.drop_table("survey_answer_outbox")
