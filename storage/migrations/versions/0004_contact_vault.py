"""Sealed contacts: the vault of per-request keys, and a maximum closure age for surveys.

- ``<vault>.contact_keys``: one AES-256 key per sealed contact (``key_id``), with its request
  id. Destroying a request's keys makes its contact unreadable in every copy the system keeps:
  the projection, the event log, the dead-letter queues (crypto-shredding, nyc311/sealing.py).
- ``<vault>.contact_erasures``: the requests whose contact was erased and why. No personal
  data; it keeps a replay, a rebuild or a re-import from bringing an erased contact back.
- The vault is a schema of its own (``NYC311_VAULT_SCHEMA``, default ``<schema>_vault``), not a
  part of the projection: a rebuild migrates a fresh projection schema beside the live one and
  must find the same keys and erasures, so this migration creates the vault only where it is
  missing.
- ``contacts`` keeps the sealed form only (``key_id``, ``sealed``); plain ``email``/``phone``
  columns are sealed in place and dropped. ``purge_after`` goes: the purge computes what is due
  from the survey dispatch and the closures (storage/vault.py).
- ``survey_dispatch.status`` gains ``too_old``: a closure older than
  ``NYC311_SURVEY_MAX_CLOSURE_AGE_DAYS`` gets no survey.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import context, op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _vault() -> str:
    return str(context.config.attributes.get("vault_schema") or "nyc311_vault")


def upgrade() -> None:
    from nyc311.sealing import new_key, seal

    vault = _vault()
    op.execute(f'CREATE SCHEMA IF NOT EXISTS "{vault}"')
    op.execute(f"""
        CREATE TABLE IF NOT EXISTS "{vault}".contact_keys (
            key_id uuid PRIMARY KEY,
            request_id text NOT NULL,
            key bytea NOT NULL CHECK (length(key) = 32),
            created_at timestamptz NOT NULL DEFAULT now())""")
    op.execute(f'CREATE INDEX IF NOT EXISTS ix_contact_keys_request '
               f'ON "{vault}".contact_keys (request_id)')
    op.execute(f"""
        CREATE TABLE IF NOT EXISTS "{vault}".contact_erasures (
            request_id text PRIMARY KEY,
            erased_at timestamptz NOT NULL DEFAULT now(),
            reason text NOT NULL CHECK (reason IN ('retention', 'request')))""")

    op.add_column("contacts", sa.Column("key_id", sa.Uuid))
    op.add_column("contacts", sa.Column("sealed", sa.LargeBinary))
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT request_id, email, phone FROM contacts")).fetchall()
    for request_id, email, phone in rows:  # a contact projected before sealing: seal it now
        key, key_id = new_key(), str(uuid.uuid4())
        bind.execute(sa.text(f'INSERT INTO "{vault}".contact_keys (key_id, request_id, key) '
                             "VALUES (:k, :r, :key)"), {"k": key_id, "r": request_id, "key": key})
        bind.execute(sa.text("UPDATE contacts SET key_id = :k, sealed = :s WHERE request_id = :r"),
                     {"k": key_id, "s": seal(key, key_id, request_id, email, phone),
                      "r": request_id})
    op.alter_column("contacts", "key_id", nullable=False)
    op.alter_column("contacts", "sealed", nullable=False)
    for column in ("email", "phone", "purge_after"):
        op.drop_column("contacts", column)

    op.drop_constraint("ck_survey_dispatch_status", "survey_dispatch")
    op.create_check_constraint("ck_survey_dispatch_status", "survey_dispatch",
                               "status IN ('pending', 'sent', 'no_contact', 'too_old', 'failed')")


def downgrade() -> None:
    from nyc311.sealing import open_sealed

    vault = _vault()
    op.execute("UPDATE survey_dispatch SET status = 'no_contact' WHERE status = 'too_old'")
    op.drop_constraint("ck_survey_dispatch_status", "survey_dispatch")
    op.create_check_constraint("ck_survey_dispatch_status", "survey_dispatch",
                               "status IN ('pending', 'sent', 'no_contact', 'failed')")
    op.add_column("contacts", sa.Column("email", sa.Text))
    op.add_column("contacts", sa.Column("phone", sa.Text))
    op.add_column("contacts", sa.Column("purge_after", sa.DateTime(timezone=True)))
    bind = op.get_bind()
    rows = bind.execute(sa.text(
        f'SELECT c.request_id, c.key_id, c.sealed, k.key FROM contacts c '
        f'LEFT JOIN "{vault}".contact_keys k USING (key_id)')).fetchall()
    for request_id, key_id, sealed, key in rows:
        if key is None:  # erased: nothing to bring back
            bind.execute(sa.text("DELETE FROM contacts WHERE request_id = :r"), {"r": request_id})
            continue
        email, phone = open_sealed(bytes(key), str(key_id), request_id, bytes(sealed))
        bind.execute(sa.text("UPDATE contacts SET email = :e, phone = :p WHERE request_id = :r"),
                     {"e": email, "p": phone, "r": request_id})
    op.drop_column("contacts", "sealed")
    op.drop_column("contacts", "key_id")
