"""Every table the migrations create, as SQLAlchemy 2 models: the migrations' target.

Three schemas, each named at run time, so each has a :class:`~sqlalchemy.MetaData` of its own:

- the projection and the survey loop's tables (:class:`Base`): no schema of their own, since every
  connection sets ``search_path`` to the configured ``NYC311_DB_SCHEMA``, so a whole projection
  can be built into a fresh schema and switched over;
- the contact vault (:data:`VAULT`, ``NYC311_VAULT_SCHEMA``), which a rebuild leaves as it is;
- the monthly publication (:data:`PUBLISHED`, ``NYC311_PUBLISHED_SCHEMA``).

The vault's and the publication's tables are written without a schema too; :func:`target_metadata`
places them in the configured ones. The migrations (storage/migrations/versions) make the tables
and the models follow them, column for column: tests/storage/test_models.py has Alembic's
autogenerate compare the two and requires no difference. Code that needs a table's columns takes
them from here (:func:`column_names`).

Each projection table is keyed so that writing the same event twice changes nothing, and every
conflict rule is a pure function of the events (the version with the greatest
``(occurred_at, event_id)`` wins, or for answers the earliest), so any interleaving of the topics
gives the same rows. Personal data lives only in ``contacts``, sealed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    false,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

TZ = DateTime(timezone=True)
VERSION_TABLE = "alembic_version"  # Alembic's, beside the projection's tables


class Base(DeclarativeBase):
    """The tables in the projection schema (the ``search_path``)."""


# -- the projection (0001, 0004): what the projector writes -----------------------------------


class Request(Base):
    """One row per 311 service request, from its RequestCreated event."""

    __tablename__ = "requests"

    request_id: Mapped[str] = mapped_column(Text, primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    created_at: Mapped[datetime] = mapped_column(TZ, nullable=False)
    agency: Mapped[str] = mapped_column(Text, nullable=False)
    agency_name: Mapped[str] = mapped_column(Text, nullable=False)
    complaint_type: Mapped[str] = mapped_column(Text, nullable=False)
    descriptor: Mapped[str | None] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(Text, nullable=False)
    borough: Mapped[str | None] = mapped_column(Text)
    incident_zip: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(Text)
    has_contact: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=false())
    projected_at: Mapped[datetime] = mapped_column(TZ, nullable=False, server_default=func.now())

    __table_args__ = (
        Index("ix_requests_created_at", "created_at"),
        Index("ix_requests_agency_type", "agency", "complaint_type"),
    )


class Contact(Base):
    """Personal data (email, mobile number) given when filing, sealed under a key that only the
    vault holds (nyc311/sealing.py); readable by the dispatcher and the purge only."""

    __tablename__ = "contacts"

    request_id: Mapped[str] = mapped_column(Text, primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    created_at: Mapped[datetime] = mapped_column(TZ, nullable=False)
    key_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    sealed: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class Closure(Base):
    """One row per RequestClosed event: a request may be closed, reopened and closed again."""

    __tablename__ = "closures"

    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    request_id: Mapped[str] = mapped_column(Text, nullable=False)
    closed_at: Mapped[datetime] = mapped_column(TZ, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False)
    resolution_description: Mapped[str | None] = mapped_column(Text)
    projected_at: Mapped[datetime] = mapped_column(TZ, nullable=False, server_default=func.now())

    __table_args__ = (Index("ix_closures_request_id", "request_id", "closed_at"),)


class Survey(Base):
    """One row per survey sent (SurveySent)."""

    __tablename__ = "surveys"

    survey_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    request_id: Mapped[str] = mapped_column(Text, nullable=False)
    sent_at: Mapped[datetime] = mapped_column(TZ, nullable=False)
    channel: Mapped[str] = mapped_column(Text, nullable=False)
    language: Mapped[str] = mapped_column(Text, nullable=False)
    closure_event_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)

    __table_args__ = (Index("ix_surveys_request_id", "request_id"),)


class SurveyAnswer(Base):
    """The one answer a survey gets (SurveyAnswered); the earliest answer wins."""

    __tablename__ = "survey_answers"

    survey_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    request_id: Mapped[str] = mapped_column(Text, nullable=False)
    answered_at: Mapped[datetime] = mapped_column(TZ, nullable=False)
    language: Mapped[str] = mapped_column(Text, nullable=False)
    satisfaction: Mapped[str | None] = mapped_column(Text)
    reopen_requested: Mapped[bool] = mapped_column(Boolean, nullable=False)
    feedback: Mapped[str | None] = mapped_column(Text)
    # one of NYC's reasons, asked of a person who disagreed (SurveyAnswered v2); optional
    dissatisfaction_reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_survey_answers_answered_at", "answered_at"),
        Index("ix_survey_answers_request_id", "request_id"),
    )


class ConsumerOffset(Base):
    """The next offset to read, per consumer group and partition, written in the same transaction
    as the rows it produced: the source of truth for where a consumer resumes."""

    __tablename__ = "consumer_offsets"

    group_id: Mapped[str] = mapped_column(Text, primary_key=True)
    topic: Mapped[str] = mapped_column(Text, primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    next_offset: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(TZ, nullable=False, server_default=func.now())


# -- the survey loop (0002, 0004, 0005): one service's own state each, moved across by a rebuild --


class SurveyDispatch(Base):
    """The dispatcher's queue: one row per closure, keyed by the RequestClosed event id, so a
    duplicated closed event or a replayed batch cannot send a second survey."""

    __tablename__ = "survey_dispatch"

    closure_event_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    survey_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    request_id: Mapped[str] = mapped_column(Text, nullable=False)
    closed_at: Mapped[datetime] = mapped_column(TZ, nullable=False)
    closure_status: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default="pending")
    channel: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(TZ, nullable=False,
                                                      server_default=func.now())
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(TZ)
    # SurveySent acknowledged by Kafka; a sent row without it is re-emitted (same event id)
    sent_event_emitted: Mapped[bool] = mapped_column(Boolean, nullable=False,
                                                     server_default=false())
    received_at: Mapped[datetime] = mapped_column(TZ, nullable=False, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TZ, nullable=False, server_default=func.now())

    __table_args__ = (
        UniqueConstraint("survey_id", name="survey_dispatch_survey_id_key"),
        CheckConstraint("status IN ('pending', 'sent', 'no_contact', 'too_old', 'failed')",
                        name="ck_survey_dispatch_status"),
        Index("ix_survey_dispatch_due", "status", "next_attempt_at"),
        Index("ix_survey_dispatch_request", "request_id"),
    )


class SurveySubmission(Base):
    """The survey page's claim: one row per answered survey, so a second visit is told the
    survey was already answered."""

    __tablename__ = "survey_submissions"

    survey_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    submitted_at: Mapped[datetime] = mapped_column(TZ, nullable=False, server_default=func.now())


class ReopenForward(Base):
    """The reopen forwarder's queue: one row per survey whose answer asked for a reopen."""

    __tablename__ = "reopen_forwards"

    survey_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    request_id: Mapped[str] = mapped_column(Text, nullable=False)
    answered_at: Mapped[datetime] = mapped_column(TZ, nullable=False)
    feedback: Mapped[str | None] = mapped_column(Text)
    agency: Mapped[str | None] = mapped_column(Text)
    complaint_type: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default="pending")
    forwarded_at: Mapped[datetime | None] = mapped_column(TZ)
    received_at: Mapped[datetime] = mapped_column(TZ, nullable=False, server_default=func.now())

    __table_args__ = (
        CheckConstraint("status IN ('pending', 'forwarded')", name="ck_reopen_forwards_status"),
        Index("ix_reopen_forwards_pending", "status"),
    )


class SurveyAnswerOutbox(Base):
    """The survey page's outbox: the SurveyAnswered event exactly as it goes to Kafka, written
    with its claim, so the relay produces the same event however often it has to try."""

    __tablename__ = "survey_answer_outbox"

    survey_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    request_id: Mapped[str] = mapped_column(Text, nullable=False)
    # the contract's event name (schemas.serde.EVENT_TYPES); the topic follows from it
    event: Mapped[str] = mapped_column(Text, nullable=False, server_default="survey_answered")
    key: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    value: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = mapped_column(TZ, nullable=False, server_default=func.now())
    # a relay leases a row by moving this forward; a failed attempt sets the next one
    next_attempt_at: Mapped[datetime] = mapped_column(TZ, nullable=False,
                                                      server_default=func.now())
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(TZ)

    __table_args__ = (
        Index("ix_survey_answer_outbox_unsent", "next_attempt_at",
              postgresql_where=text("sent_at IS NULL")),
    )


class SurveyLink(Base):
    """The short link of an SMS survey, ``<base>/s/<link_id>``."""

    __tablename__ = "survey_links"

    link_id: Mapped[str] = mapped_column(Text, primary_key=True)
    survey_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    request_id: Mapped[str] = mapped_column(Text, nullable=False)
    language: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(TZ, nullable=False, server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(TZ, nullable=False)

    __table_args__ = (UniqueConstraint("survey_id", name="survey_links_survey_id_key"),)


# -- the contact vault (0004), in NYC311_VAULT_SCHEMA ------------------------------------------
# The constraint names are the ones PostgreSQL gives the unnamed ones of the migration's SQL.

VAULT = MetaData()

contact_keys = Table(
    "contact_keys", VAULT,
    Column("key_id", Uuid, primary_key=True),
    Column("request_id", Text, nullable=False),
    Column("key", LargeBinary, nullable=False),
    Column("created_at", TZ, nullable=False, server_default=func.now()),
    CheckConstraint("length(key) = 32", name="contact_keys_key_check"),
    Index("ix_contact_keys_request", "request_id"),
)

contact_erasures = Table(
    "contact_erasures", VAULT,
    Column("request_id", Text, primary_key=True),
    Column("erased_at", TZ, nullable=False, server_default=func.now()),
    Column("reason", Text, nullable=False),
    CheckConstraint("reason IN ('retention', 'request')", name="contact_erasures_reason_check"),
)


# -- the monthly publication (0003, 0006), in NYC311_PUBLISHED_SCHEMA --------------------------
# The monthly tables' columns are the published files' (reports/model.py), in the same order.

PUBLISHED = MetaData()


def _counts(*names: str) -> list[Column[Any]]:
    return [Column(name, Integer, nullable=False) for name in names]


revisions = Table(
    "revisions", PUBLISHED,
    Column("month", Text, primary_key=True),
    Column("revision", Integer, primary_key=True),
    Column("as_of", TZ, nullable=False),
    Column("published_at", TZ, nullable=False, server_default=func.now()),
    Column("content_sha256", Text, nullable=False),
    Column("changes", JSONB, nullable=False, server_default="[]"),
)

requests_received = Table(
    "requests_received", PUBLISHED,
    Column("month", Text, primary_key=True),
    Column("agency", Text, primary_key=True),
    Column("agency_name", Text, nullable=False),
    Column("complaint_type", Text, primary_key=True),
    *_counts("received"),
)

closure_rates = Table(
    "closure_rates", PUBLISHED,
    Column("month", Text, primary_key=True),
    Column("agency", Text, primary_key=True),
    Column("complaint_type", Text, primary_key=True),
    *_counts("received", "closed"),
    Column("closure_rate", Numeric(5, 4)),
    Column("as_of", TZ, nullable=False),
    Column("closure_rate_ci_low", Numeric(5, 4)),  # 0008: intervals and reliability
    Column("closure_rate_ci_high", Numeric(5, 4)),
    Column("reliability", Text),
)

reopen_rates = Table(
    "reopen_rates", PUBLISHED,
    Column("month", Text, primary_key=True),
    Column("complaint_type", Text, primary_key=True),
    *_counts("surveys_answered", "reopen_requested"),
    Column("reopen_rate", Numeric(5, 4)),
    Column("reopen_rate_ci_low", Numeric(5, 4)),
    Column("reopen_rate_ci_high", Numeric(5, 4)),
    Column("reliability", Text),
)

satisfaction = Table(
    "satisfaction", PUBLISHED,
    Column("month", Text, primary_key=True),
    Column("agency", Text, primary_key=True),
    Column("complaint_type", Text, primary_key=True),
    *_counts("responses", "strongly_agree", "agree", "neutral", "disagree", "strongly_disagree"),
    Column("share_satisfied", Numeric(5, 4)),
    Column("mean_score", Numeric(5, 2)),
    Column("share_satisfied_ci_low", Numeric(5, 4)),
    Column("share_satisfied_ci_high", Numeric(5, 4)),
    Column("mean_score_ci_low", Numeric(5, 2)),
    Column("mean_score_ci_high", Numeric(5, 2)),
    Column("reliability", Text),
)

survey_responses = Table(  # 0008: NYC's survey dataset layout (Open Data 5ijn-vbdv)
    "survey_responses", PUBLISHED,
    Column("month", Text, primary_key=True),
    Column("unique_key", Text, primary_key=True),
    Column("agency_acronym", Text, nullable=False),
    Column("agency_name", Text, nullable=False),
    Column("complaint_type", Text, nullable=False),
    Column("descriptor", Text),
    Column("borough", Text),
    Column("resolution_description", Text),
    Column("survey_year", Integer, nullable=False),
    Column("survey_month", Integer, nullable=False),
    Column("satisfaction_response", Text),
    Column("dissatisfaction_reason", Text),
)

survey_response_rates = Table(  # 0008: surveys sent in the month and how many were answered
    "survey_response_rates", PUBLISHED,
    Column("month", Text, primary_key=True),
    Column("agency", Text, primary_key=True),
    *_counts("surveys_sent", "surveys_answered"),
    Column("response_rate", Numeric(5, 4)),
    Column("response_rate_ci_low", Numeric(5, 4)),
    Column("response_rate_ci_high", Numeric(5, 4)),
    Column("reliability", Text),
    # 0009: of the answers, those asking for a reopen; NULL in a revision published before it
    Column("reopen_requested", Integer),
)

publication_key = Table(  # 0008: the secret survey_responses' keys are derived from; one row
    "publication_key", PUBLISHED,
    Column("only_row", Boolean, primary_key=True, server_default=true()),
    Column("key", LargeBinary, nullable=False),
    Column("created_at", TZ, nullable=False, server_default=func.now()),
    CheckConstraint("only_row", name="publication_key_only_row_check"),
    CheckConstraint("length(key) = 32", name="publication_key_key_check"),
)

publication_owner = Table(  # the projection the schema belongs to: one row
    "publication_owner", PUBLISHED,
    Column("only_row", Boolean, primary_key=True, server_default=true()),
    Column("projection", Text, nullable=False),
    Column("claimed_at", TZ, nullable=False, server_default=func.now()),
    CheckConstraint("only_row", name="publication_owner_only_row_check"),
)


# -- helpers ----------------------------------------------------------------------------------


def column_names(table: Table, *, without: Collection[str] = ()) -> tuple[str, ...]:
    """The names of ``table``'s columns, in the table's order, less those in ``without``."""
    return tuple(c.name for c in table.columns if c.name not in without)


def target_metadata(vault_schema: str, published_schema: str) -> MetaData:
    """Every table, the vault's and the publication's placed in their schemas: what the
    migrations make of a database (the projection's tables stay unqualified)."""
    out = MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(out)
    for metadata, schema in ((VAULT, vault_schema), (PUBLISHED, published_schema)):
        for table in metadata.sorted_tables:
            table.to_metadata(out, schema=schema)
    return out


def autogenerate_options(vault_schema: str, published_schema: str) -> dict[str, Any]:
    """Options for Alembic's ``context.configure`` / ``MigrationContext.configure`` that compare
    :func:`target_metadata` with a database migrated under ``search_path`` = the projection: its
    three schemas and nothing else in the database, and not Alembic's own version table."""
    schemas = {None, vault_schema, published_schema}  # None: the projection, the default schema

    def include_name(name: str | None, type_: str, parent_names: dict[str, Any]) -> bool:
        if type_ == "schema":
            return name in schemas
        if type_ == "table":
            return not (name == VERSION_TABLE and parent_names.get("schema_name") is None)
        return True

    include: Callable[[str | None, str, dict[str, Any]], bool] = include_name
    return {
        "target_metadata": target_metadata(vault_schema, published_schema),
        "include_schemas": True,
        "include_name": include,
        "compare_type": True,
        "compare_server_default": True,
    }
