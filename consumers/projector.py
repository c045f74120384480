"""The projector (``nyc311 run projector``): every request and survey event into PostgreSQL.

A batch is copied into temporary staging tables with ``COPY`` (one round trip per table), then
merged into the projection with one ``INSERT … SELECT … ON CONFLICT`` per table. The merge
rules are commutative, so the tables end the same whatever the order or duplication of events:

- requests: the RequestCreated with the greatest ``(occurred_at, event_id)`` wins;
- contacts: likewise among the versions that carry a contact, so a later version without one
  does not erase the address the person gave;
- closures: one row per RequestClosed ``event_id`` (a request may be closed more than once),
  kept even when the request's created event has not arrived yet;
- surveys, survey_answers: the earliest ``(occurred_at, event_id)`` wins (one answer a survey).

Records are decoded without Avro's logical types (``Serde(logical_types=False)``): event ids stay
strings and ``occurred_at`` the milliseconds it is on the wire. The staging tables hold those
milliseconds in a ``bigint`` column and the merge turns them into ``timestamptz``; PostgreSQL
parses the uuids. A malformed uuid fails the batch's COPY, and the loop then writes the batch
record by record and dead-letters that record alone.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import psycopg
from confluent_kafka import Message
from psycopg import sql
from sqlalchemy import Column
from sqlalchemy.dialects import postgresql

from consumers.loop import Item
from nyc311.sealing import new_key, seal
from nyc311.settings import Settings
from schemas.serde import BY_TOPIC, DecodeError, Serde, registry_resolver
from schemas.validate import validate
from storage.models import Base, column_names, contact_keys

log = logging.getLogger(__name__)

GROUP_ID = "nyc311-projector"
PROJECTED_EVENTS = ("request_created", "request_closed", "survey_sent", "survey_answered")
SERVER_SET = ("projected_at",)  # columns the database fills in when the projector inserts a row


def _type(column: Column[Any]) -> str:
    return str(column.type.compile(dialect=postgresql.dialect()))


class _Table:
    """A projection table: its staging copy and its merge statement."""

    def __init__(self, name: str, key: str, newest_wins: bool, version: str, millis: str,
                 where: str = "") -> None:
        # the model's columns, less those the database fills in; a row is a tuple in this order
        model = Base.metadata.tables[name]
        self.name, self.columns, self.key = name, column_names(model, without=SERVER_SET), key
        cols = ", ".join(self.columns)
        # the event's time arrives as milliseconds since the epoch; the merge converts it
        select = ", ".join(f"to_timestamp({c}::float8 / 1000) AS {c}" if c == millis else c
                           for c in self.columns)
        self.stage = f"_stage_{name}"
        # column types from the model, not LIKE: LIKE needs SELECT on every column, and the
        # projector's role may not read a sealed contact (storage/roles.py)
        types = ", ".join(f"{c} " + ("bigint" if c == millis else _type(model.columns[c]))
                          for c in self.columns)
        self.create_stage = (f"CREATE TEMP TABLE IF NOT EXISTS {self.stage} ({types}) "
                             f"ON COMMIT DELETE ROWS")
        self.copy = f"COPY {self.stage} ({cols}) FROM STDIN"
        order = "DESC" if newest_wins else "ASC"
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in self.columns if c != key)
        cmp = ">" if newest_wins else "<"
        conflict = (
            f"DO UPDATE SET {updates} WHERE (EXCLUDED.{version}, EXCLUDED.event_id) {cmp} "
            f"(t.{version}, t.event_id)" if version else "DO NOTHING"
        )
        self.merge = (
            f"INSERT INTO {name} AS t ({cols}) "
            f"SELECT DISTINCT ON ({key}) {select} FROM {self.stage} s {where} "
            f"ORDER BY {key}, {version or 'event_id'} {order}, event_id {order} "
            f"ON CONFLICT ({key}) {conflict}; "
            f"DELETE FROM {self.stage}"  # the one-by-one fallback writes many times per transaction
        )


REQUESTS = _Table("requests", key="request_id", newest_wins=True, version="created_at",
                  millis="created_at")
# A contact is stored sealed, never in the clear; one whose request was erased is not stored again.
_NOT_ERASED = ("WHERE NOT EXISTS (SELECT 1 FROM {vault}.contact_erasures e "
               "WHERE e.request_id = s.request_id)")
CONTACTS = _Table("contacts", key="request_id", newest_wins=True, version="created_at",
                  millis="created_at", where=_NOT_ERASED)
CLOSURES = _Table("closures", key="event_id", newest_wins=True, version="", millis="closed_at")
SURVEYS = _Table("surveys", key="survey_id", newest_wins=False, version="sent_at",
                 millis="sent_at")
ANSWERS = _Table("survey_answers", key="survey_id", newest_wins=False, version="answered_at",
                 millis="answered_at")
TABLES = (REQUESTS, CONTACTS, CLOSURES, SURVEYS, ANSWERS)


class _Keys:
    """Keys the projector made for contacts an upstream system sent in the clear: written to the
    vault in the batch's transaction, beside the sealed contacts they open."""

    name = "contact_keys"
    columns = column_names(contact_keys, without=("created_at",))  # (key_id, request_id, key)
    _cols = ", ".join(columns)
    create_stage = ("CREATE TEMP TABLE IF NOT EXISTS _stage_contact_keys ("
                    + ", ".join(f"{c} {_type(contact_keys.columns[c])}" for c in columns)
                    + ") ON COMMIT DELETE ROWS")
    copy = f"COPY _stage_contact_keys ({_cols}) FROM STDIN"
    merge = (f"INSERT INTO {{vault}}.contact_keys ({_cols}) "
             f"SELECT {_cols} FROM _stage_contact_keys s " + _NOT_ERASED + "; "
             "DELETE FROM _stage_contact_keys")


KEYS = _Keys()


Rows = list[tuple["_Table | _Keys", tuple[Any, ...]]]


def event_rows(name: str, r: dict[str, Any]) -> Rows:
    """The table rows one event contributes."""
    if name == "request_created":
        return _created_rows(r)
    if name == "request_closed":
        return [(CLOSURES, (r["event_id"], r["request_id"], r["occurred_at"], r["status"],
                            r["resolution_description"]))]
    if name == "survey_sent":
        return [(SURVEYS, (r["survey_id"], r["event_id"], r["request_id"], r["occurred_at"],
                           r["channel"], r["language"], r["closure_event_id"]))]
    if name == "survey_answered":
        return [(ANSWERS, (r["survey_id"], r["event_id"], r["request_id"], r["occurred_at"],
                           r["language"], r["satisfaction"], r["reopen_requested"],
                           r["feedback"], r.get("dissatisfaction_reason")))]
    raise DecodeError(f"the projector does not project {name}")


def _created_rows(r: dict[str, Any]) -> Rows:
    """A request, and its contact sealed: as it came (``sealed_contact``) or, when an upstream
    system sent it in the clear (``contact``), sealed here under a new key."""
    sealed, contact = r.get("sealed_contact"), r["contact"]
    email, phone = (contact.get("email"), contact.get("phone")) if contact else (None, None)
    has_contact = sealed is not None or bool(email or phone)
    out: Rows = [(REQUESTS, (r["request_id"], r["event_id"], r["occurred_at"], r["agency"],
                             r["agency_name"], r["complaint_type"], r["descriptor"], r["channel"],
                             r["borough"], r["incident_zip"], r["language"], has_contact))]
    if sealed is not None:
        key_id, ciphertext = sealed["key_id"], sealed["ciphertext"]
    elif has_contact:
        key, key_id = new_key(), str(uuid.uuid4())
        ciphertext = seal(key, key_id, r["request_id"], email, phone)
        out.append((KEYS, (key_id, r["request_id"], key)))
    else:
        return out
    out.append((CONTACTS, (r["request_id"], r["event_id"], r["occurred_at"], key_id,
                           ciphertext)))
    return out


class Projector:
    """The projector's handler for :class:`consumers.loop.ConsumeLoop`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        resolver = registry_resolver(settings.schema_registry_url) \
            if settings.schema_registry_url else None
        self.serde = Serde(resolver, logical_types=False)
        self._names = {settings.topic(topic): event.name for topic, event in BY_TOPIC.items()
                       if event.name in PROJECTED_EVENTS}
        self.topics: Sequence[str] = sorted(self._names)
        vault = sql.Identifier(settings.vault_schema).as_string(None)
        self._merges = [(table, table.merge.replace("{vault}", vault))
                        for table in (*TABLES, KEYS)]

    def setup(self, conn: psycopg.Connection) -> None:
        for table in (*TABLES, KEYS):
            conn.execute(table.create_stage)

    def decode(self, msg: Message) -> Rows:
        name = self._names.get(str(msg.topic()))
        if name is None:
            raise DecodeError(f"no event is projected from topic {msg.topic()}")
        record = validate(name, self.serde.decode(name, msg.value()))
        key = msg.key()
        if key is not None and key.decode("utf-8", "replace") != record["request_id"]:
            raise DecodeError(f"{name}: key {key!r} is not the request id {record['request_id']!r}")
        return event_rows(name, record)

    def write(self, conn: psycopg.Connection, items: list[Item]) -> None:
        by_table: dict[_Table | _Keys, list[tuple[Any, ...]]] = defaultdict(list)
        for item in items:
            for table, row in item.value:
                by_table[table].append(row)
        if by_table.get(KEYS):
            log.warning("%d contacts arrived in the clear and were sealed here; their copies in "
                        "the topic stay readable (docs/RUNBOOK.md, \"Residents' data\")",
                        len(by_table[KEYS]))
        with conn.cursor() as cur:
            # fixed order: no lock-order deadlock between two projectors
            for table, merge in self._merges:
                rows = by_table.get(table)
                if not rows:
                    continue
                with cur.copy(table.copy) as copy:
                    for row in rows:
                        copy.write_row(row)
                cur.execute(merge)
