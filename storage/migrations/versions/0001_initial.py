"""The projection: requests, contacts, closures, surveys, answers and consumer offsets.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "requests",
        sa.Column("request_id", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Uuid, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("agency", sa.Text, nullable=False),
        sa.Column("agency_name", sa.Text, nullable=False),
        sa.Column("complaint_type", sa.Text, nullable=False),
        sa.Column("descriptor", sa.Text),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("borough", sa.Text),
        sa.Column("incident_zip", sa.Text),
        sa.Column("language", sa.Text),
        sa.Column("has_contact", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("projected_at", TZ, nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_requests_created_at", "requests", ["created_at"])
    op.create_index("ix_requests_agency_type", "requests", ["agency", "complaint_type"])

    op.create_table(
        "contacts",
        sa.Column("request_id", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Uuid, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("email", sa.Text),
        sa.Column("phone", sa.Text),
        sa.Column("purge_after", TZ),
    )

    op.create_table(
        "closures",
        sa.Column("event_id", sa.Uuid, primary_key=True),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("closed_at", TZ, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("resolution_description", sa.Text),
        sa.Column("projected_at", TZ, nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_closures_request_id", "closures", ["request_id", "closed_at"])

    op.create_table(
        "surveys",
        sa.Column("survey_id", sa.Uuid, primary_key=True),
        sa.Column("event_id", sa.Uuid, nullable=False),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("sent_at", TZ, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("language", sa.Text, nullable=False),
        sa.Column("closure_event_id", sa.Uuid),
    )
    op.create_index("ix_surveys_request_id", "surveys", ["request_id"])

    op.create_table(
        "survey_answers",
        sa.Column("survey_id", sa.Uuid, primary_key=True),
        sa.Column("event_id", sa.Uuid, nullable=False),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("answered_at", TZ, nullable=False),
        sa.Column("language", sa.Text, nullable=False),
        sa.Column("satisfaction", sa.Text),
        sa.Column("reopen_requested", sa.Boolean, nullable=False),
        sa.Column("feedback", sa.Text),
    )
    op.create_index("ix_survey_answers_answered_at", "survey_answers", ["answered_at"])
    op.create_index("ix_survey_answers_request_id", "survey_answers", ["request_id"])

    op.create_table(
        "consumer_offsets",
        sa.Column("group_id", sa.Text, primary_key=True),
        sa.Column("topic", sa.Text, primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
        sa.Column("updated_at", TZ, nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    for table in ("consumer_offsets", "survey_answers", "surveys", "closures", "contacts",
                  "requests"):
        op.drop_table(table)
