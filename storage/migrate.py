"""Run the Alembic migrations programmatically (``nyc311 db upgrade``), no alembic.ini needed."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from nyc311.settings import Settings
from storage.db import engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(settings: Settings, revision: str = "head", schema: str | None = None) -> str:
    """Migrate ``schema`` (default: the configured one) to ``revision``; return the new head."""
    schema = schema or settings.db_schema
    config = _config()
    eng = engine(settings, schema=schema)
    try:
        with eng.connect() as conn:
            # One migrator at a time per schema, so two services starting together do not race.
            conn.execute(text("SELECT pg_advisory_lock(hashtext(:s))"), {"s": schema})
            try:
                config.attributes["connection"] = conn
                config.attributes["schema"] = schema
                config.attributes["vault_schema"] = settings.vault_schema
                # the live projection's publication, also when a rebuild migrates a fresh schema
                config.attributes["projection"] = settings.db_schema
                config.attributes["published_schema"] = settings.published_schema
                command.upgrade(config, revision)
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(hashtext(:s))"), {"s": schema})
                conn.commit()
        return current_revision(settings, schema) or "base"
    finally:
        eng.dispose()


def current_revision(settings: Settings, schema: str | None = None) -> str | None:
    schema = schema or settings.db_schema
    eng = engine(settings, schema=schema)
    try:
        with eng.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"version_table_schema": schema})
            return ctx.get_current_revision()
    finally:
        eng.dispose()


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head
