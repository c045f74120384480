"""The projection's tables, as SQLAlchemy 2 models.

The tables have no schema of their own: every connection sets ``search_path`` to the configured
``NYC311_DB_SCHEMA``, so a whole projection can be built into a fresh schema and switched over.

Each table is keyed so that writing the same event twice changes nothing, and every conflict rule
is a pure function of the events (the version with the greatest ``(occurred_at, event_id)`` wins,
or for answers the earliest), so any interleaving of the topics gives the same rows.
Personal data lives only in ``contacts``.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    Text,
    Uuid,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Request(Base):
    """One row per 311 service request, from its RequestCreated event."""

    __tablename__ = "requests"

    request_id: Mapped[str] = mapped_column(Text, primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    agency: Mapped[str] = mapped_column(Text, nullable=False)
    agency_name: Mapped[str] = mapped_column(Text, nullable=False)
    complaint_type: Mapped[str] = mapped_column(Text, nullable=False)
    descriptor: Mapped[str | None] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(Text, nullable=False)
    borough: Mapped[str | None] = mapped_column(Text)
    incident_zip: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(Text)
    has_contact: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    projected_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    key_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    sealed: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class Closure(Base):
    """One row per RequestClosed event: a request may be closed, reopened and closed again."""

    __tablename__ = "closures"

    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    request_id: Mapped[str] = mapped_column(Text, nullable=False)
    closed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False)
    resolution_description: Mapped[str | None] = mapped_column(Text)
    projected_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    __table_args__ = (Index("ix_closures_request_id", "request_id", "closed_at"),)


class Survey(Base):
    """One row per survey sent (SurveySent)."""

    __tablename__ = "surveys"

    survey_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    request_id: Mapped[str] = mapped_column(Text, nullable=False)
    sent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
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
    answered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    language: Mapped[str] = mapped_column(Text, nullable=False)
    satisfaction: Mapped[str | None] = mapped_column(Text)
    reopen_requested: Mapped[bool] = mapped_column(Boolean, nullable=False)
    feedback: Mapped[str | None] = mapped_column(Text)

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
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
