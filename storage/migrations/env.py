"""Alembic environment: migrates the schema named by the caller (``NYC311_DB_SCHEMA``).

Run through ``nyc311 db upgrade`` (storage/migrate.py), which passes an open connection and the
schema name in ``config.attributes``; the tables are created unqualified under that
``search_path``, and the version table lives in the same schema, so several projections (a live
one and a rebuild) can sit side by side in one database.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from storage.models import Base

config = context.config
connection = config.attributes["connection"]
schema = config.attributes["schema"]

connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
connection.execute(text(f'SET search_path TO "{schema}"'))
connection.commit()

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table_schema=schema,
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
