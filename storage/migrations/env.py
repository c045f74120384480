"""Alembic environment: migrates the schema named by the caller (``NYC311_DB_SCHEMA``).

Run through ``nyc311 db upgrade`` (storage/migrate.py), which passes an open connection and the
schema names in ``config.attributes``; the tables are created unqualified under that
``search_path``, and the version table lives in the same schema, so several projections (a live
one and a rebuild) can sit side by side in one database.

The target of ``alembic revision --autogenerate`` (``alembic.command.revision(config,
autogenerate=True)`` with the attributes storage/migrate.py sets) is every table of
storage/models.py: the projection's unqualified, the vault's and the publication's in the schemas
named here; nothing else in the database is compared. A generated revision names those two
schemas as they are here: a migration takes them from ``config.attributes`` instead (0004, 0006).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from storage.models import autogenerate_options

config = context.config
connection = config.attributes["connection"]
schema = config.attributes["schema"]
vault_schema = str(config.attributes.get("vault_schema") or "nyc311_vault")
published_schema = str(config.attributes.get("published_schema") or "published")

connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
connection.execute(text(f'SET search_path TO "{schema}"'))
connection.commit()

context.configure(
    connection=connection,
    version_table_schema=schema,
    transaction_per_migration=True,
    **autogenerate_options(vault_schema, published_schema),
)
with context.begin_transaction():
    context.run_migrations()
