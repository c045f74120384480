"""The survey loop's own tables: dispatch queue, one-answer claims, reopen forwards.

These are not the projection (the projector never writes them): each is owned by one service
and makes that service's effect happen once.

- survey_dispatch (dispatcher): one row per closure, keyed by the RequestClosed event id, so a
  duplicated closed event or a replayed batch cannot send a second survey.
- survey_submissions (survey page): one row per answered survey, claimed in the same request
  that produces SurveyAnswered, so a second visit is told the survey was already answered.
- reopen_forwards (reopen forwarder): one row per survey whose answer asked for a reopen.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "survey_dispatch",
        sa.Column("closure_event_id", sa.Uuid, primary_key=True),
        sa.Column("survey_id", sa.Uuid, nullable=False, unique=True),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("closed_at", TZ, nullable=False),
        sa.Column("closure_status", sa.Text, nullable=False),
        # pending -> sent | no_contact | failed
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("channel", sa.Text),
        sa.Column("language", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("last_error", sa.Text),
        sa.Column("sent_at", TZ),
        # SurveySent acknowledged by Kafka; a sent row without it is re-emitted (same event id)
        sa.Column("sent_event_emitted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("received_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("status IN ('pending', 'sent', 'no_contact', 'failed')",
                           name="ck_survey_dispatch_status"),
    )
    op.create_index("ix_survey_dispatch_due", "survey_dispatch", ["status", "next_attempt_at"])
    op.create_index("ix_survey_dispatch_request", "survey_dispatch", ["request_id"])

    op.create_table(
        "survey_submissions",
        sa.Column("survey_id", sa.Uuid, primary_key=True),
        sa.Column("event_id", sa.Uuid, nullable=False),
        sa.Column("submitted_at", TZ, nullable=False, server_default=sa.func.now()),
    )

    op.create_table(
        "reopen_forwards",
        sa.Column("survey_id", sa.Uuid, primary_key=True),
        sa.Column("event_id", sa.Uuid, nullable=False),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("answered_at", TZ, nullable=False),
        sa.Column("feedback", sa.Text),
        sa.Column("agency", sa.Text),
        sa.Column("complaint_type", sa.Text),
        # pending (waiting for the request's agency) -> forwarded
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("forwarded_at", TZ),
        sa.Column("received_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("status IN ('pending', 'forwarded')", name="ck_reopen_forwards_status"),
    )
    op.create_index("ix_reopen_forwards_pending", "reopen_forwards", ["status"])


def downgrade() -> None:
    op.drop_table("reopen_forwards")
    op.drop_table("survey_submissions")
    op.drop_table("survey_dispatch")
