"""The contact vault: per-request keys, the erasures, and the purge that destroys keys when due.

A resident's contact is kept only as long as the survey needs it (ARCHITECTURE §5, NYC's
Identifying Information Law). Contacts are sealed (nyc311/sealing.py) under keys that live only
here, in a schema of their own (``NYC311_VAULT_SCHEMA``) that rebuilds never replace:

- ``contact_keys (key_id, request_id, key, created_at)``: written by the producers that seal
  (``producers/sealer.py``) and by the projector when an upstream system sent a plain contact;
  read by the dispatcher; deleted by the purge.
- ``contact_erasures (request_id, erased_at, reason)``: what was erased. A record that carries an
  erased request's contact again (a replay, a rebuild, a re-import) is not projected or sealed.

When a contact is due (:data:`DUE`): ``NYC311_CONTACT_RETENTION_DAYS`` after the last survey of
the request was sent, or settled without sending (no usable contact, refused, too old); after its
last closure when no survey was queued for it; and for a request never closed, after
``NYC311_CONTACT_MAX_OPEN_DAYS`` from its creation. Never while a survey for it is pending.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from nyc311.sealing import SealError, new_key, open_sealed, seal
from nyc311.settings import Settings
from schemas.serde import Record

log = logging.getLogger(__name__)

PURGE_BATCH = 1000

# The instant each held request's contact falls due; NULL while a survey for it is pending.
DUE = """
WITH held AS (
    SELECT request_id, min(created_at) AS key_created, false AS orphan
    FROM {vault}.contact_keys GROUP BY 1
    UNION ALL  -- a sealed contact whose key is gone (replayed after an erasure): remove it now
    SELECT c.request_id, c.created_at, true FROM contacts c
    WHERE NOT EXISTS (SELECT 1 FROM {vault}.contact_keys k WHERE k.key_id = c.key_id)
), dispatch AS (
    SELECT d.request_id, bool_or(d.status = 'pending') AS pending,
           max(coalesce(d.sent_at, d.updated_at)) AS settled_at
    FROM survey_dispatch d JOIN held h USING (request_id) GROUP BY 1
), closed AS (
    SELECT c.request_id, max(c.closed_at) AS closed_at
    FROM closures c JOIN held h USING (request_id) GROUP BY 1
)
SELECT DISTINCT h.request_id,
       CASE WHEN e.request_id IS NOT NULL OR h.orphan THEN '-infinity'::timestamptz
            WHEN d.pending THEN NULL
            WHEN d.settled_at IS NOT NULL THEN d.settled_at + %(retention)s::interval
            WHEN cl.closed_at IS NOT NULL THEN cl.closed_at + %(retention)s::interval
            ELSE coalesce(r.created_at, h.key_created) + %(max_open)s::interval
                 + %(retention)s::interval
       END AS due_at
FROM held h
LEFT JOIN dispatch d USING (request_id)
LEFT JOIN closed cl USING (request_id)
LEFT JOIN requests r USING (request_id)
LEFT JOIN {vault}.contact_erasures e USING (request_id)
"""


def _q(settings: Settings, text: str) -> sql.Composed:
    return sql.SQL(text).format(vault=sql.Identifier(settings.vault_schema))


def erased(conn: psycopg.Connection, settings: Settings, request_ids: Sequence[str]) -> set[str]:
    """Which of ``request_ids`` had their contact erased."""
    if not request_ids:
        return set()
    rows = conn.execute(_q(settings, "SELECT request_id FROM {vault}.contact_erasures "
                                     "WHERE request_id = ANY(%s)"), (list(request_ids),))
    return {row[0] for row in rows}


def store_keys(conn: psycopg.Connection, settings: Settings,
               keys: Iterable[tuple[str, str, bytes]]) -> None:
    """(key_id, request_id, key) rows, in the caller's transaction."""
    with conn.cursor() as cur, cur.copy(_q(settings, "COPY {vault}.contact_keys "
                                                     "(key_id, request_id, key) FROM STDIN")) as cp:
        for row in keys:
            cp.write_row(row)


def seal_records(conn: psycopg.Connection, settings: Settings,
                 records: Sequence[Record]) -> list[Record]:
    """RequestCreated records with their plain ``contact`` replaced by ``sealed_contact``.

    The keys are written in ``conn``'s transaction, which the caller commits *before* producing,
    so no sealed record reaches Kafka without its key. A contact whose request was erased is
    dropped, not sealed again."""
    with_contact = [r for r in records if _plain(r) is not None]
    gone = erased(conn, settings, [r["request_id"] for r in with_contact])
    keys: list[tuple[str, str, bytes]] = []
    out: list[Record] = []
    for record in records:
        contact = _plain(record)
        if contact is None:
            out.append(record)
            continue
        sealed = None
        if record["request_id"] not in gone:
            key, key_id = new_key(), str(uuid.uuid4())
            keys.append((key_id, record["request_id"], key))
            sealed = {"key_id": key_id, "ciphertext": seal(key, key_id, record["request_id"],
                                                           contact[0], contact[1])}
        out.append({**record, "contact": None, "sealed_contact": sealed})
    store_keys(conn, settings, keys)
    return out


def _plain(record: Record) -> tuple[str | None, str | None] | None:
    contact = record.get("contact")
    if not contact or not (contact.get("email") or contact.get("phone")):
        return None
    return contact.get("email"), contact.get("phone")


def open_contact(request_id: str, key_id: uuid.UUID | str | None, sealed: bytes | None,
                 key: bytes | None) -> tuple[str | None, str | None]:
    """(email, phone) of a projected contact; (None, None) when there is none or it is erased.

    A contact that does not open with its key is logged by request id (never its bytes) and
    treated as absent."""
    if key_id is None or sealed is None or key is None:
        return None, None
    try:
        return open_sealed(bytes(key), str(key_id), request_id, bytes(sealed))
    except SealError as exc:
        log.error("the contact of request %s does not open: %s", request_id, exc,
                  extra={"request_id": request_id})
        return None, None


@dataclass
class PurgeReport:
    requests: int = 0
    keys: int = 0
    contacts: int = 0
    held: int = 0
    oldest_days: float | None = None

    def render(self) -> str:
        oldest = "-" if self.oldest_days is None else f"{self.oldest_days:.1f} days"
        return (f"erased the contacts of {self.requests:,} requests ({self.keys:,} keys destroyed, "
                f"{self.contacts:,} projected contacts removed); {self.held:,} contacts held, "
                f"the oldest {oldest}")


def _interval(days: int) -> str:
    return f"{days} days"


def due_requests(conn: psycopg.Connection, settings: Settings) -> list[str]:
    """Request ids whose contact is due for erasure now."""
    rows = conn.execute(_q(settings, f"SELECT DISTINCT request_id FROM ({DUE}) d "
                                     "WHERE due_at <= now() ORDER BY request_id"),
                        {"retention": _interval(settings.contact_retention_days),
                         "max_open": _interval(settings.contact_max_open_days)}).fetchall()
    return [row[0] for row in rows]


def erase(conn: psycopg.Connection, settings: Settings, request_ids: Sequence[str],
          reason: str) -> tuple[int, int]:
    """Destroy the keys and the projected contacts of ``request_ids`` and record the erasure,
    in one transaction; (keys destroyed, projected contacts removed)."""
    ids = list(request_ids)
    with conn.transaction():
        keys = conn.execute(_q(settings, "DELETE FROM {vault}.contact_keys "
                                         "WHERE request_id = ANY(%s)"), (ids,)).rowcount
        contacts = conn.execute("DELETE FROM contacts WHERE request_id = ANY(%s)",
                                (ids,)).rowcount
        conn.execute(_q(settings, "INSERT INTO {vault}.contact_erasures (request_id, reason) "
                                  "SELECT unnest(%s::text[]), %s ON CONFLICT DO NOTHING"),
                     (ids, reason))
    return keys, contacts


def held(conn: psycopg.Connection, vault_schema: str) -> tuple[int, float | None, int]:
    """(requests whose contact is held, age in days of the oldest held contact — from its
    request's creation, or its key's when the request is not projected —, requests erased)."""
    row = conn.execute(sql.SQL(
        "SELECT count(DISTINCT k.request_id), "
        "extract(epoch FROM now() - min(coalesce(r.created_at, k.created_at))) / 86400, "
        "(SELECT count(*) FROM {vault}.contact_erasures) "
        "FROM {vault}.contact_keys k LEFT JOIN requests r USING (request_id)").format(
            vault=sql.Identifier(vault_schema))).fetchone()
    assert row is not None
    return int(row[0]), None if row[1] is None else float(row[1]), int(row[2])


def purge(conn: psycopg.Connection, settings: Settings,
          progress: Callable[[int, int], None] | None = None) -> PurgeReport:
    """Erase every contact that is due, :data:`PURGE_BATCH` requests per transaction."""
    due = due_requests(conn, settings)
    report = PurgeReport()
    for start in range(0, len(due), PURGE_BATCH):
        batch = due[start:start + PURGE_BATCH]
        keys, contacts = erase(conn, settings, batch, "retention")
        report.requests += len(batch)
        report.keys += keys
        report.contacts += contacts
        if progress is not None:
            progress(len(batch), len(due))
    report.held, report.oldest_days, _ = held(conn, settings.vault_schema)
    return report


def find_requests(conn: psycopg.Connection, settings: Settings,
                  contacts: Iterable[str]) -> list[str]:
    """Request ids whose held contact is one of ``contacts`` (emails compared case-blind, numbers
    by their digits): a resident asking to be forgotten knows their address, not their request
    ids. Every held contact is opened in memory; none is logged."""
    wanted = {_normal(c) for c in contacts if c.strip()}
    rows = conn.execute(_q(settings, "SELECT c.request_id, c.key_id, c.sealed, k.key "
                                     "FROM contacts c JOIN {vault}.contact_keys k "
                                     "USING (key_id)")).fetchall()
    found = []
    for request_id, key_id, sealed, key in rows:
        email, phone = open_contact(request_id, key_id, sealed, key)
        if {_normal(v) for v in (email, phone) if v} & wanted:
            found.append(request_id)
    return sorted(found)


def _normal(contact: str) -> str:
    contact = contact.strip()
    if "@" in contact:
        return contact.lower()
    digits = "".join(ch for ch in contact if ch.isdigit())
    return digits[1:] if len(digits) == 11 and digits.startswith("1") else digits

