"""A role per service, with only the grants it needs (storage/roles.py holds the list).

Roles belong to the whole PostgreSQL cluster, so they are created only where missing; grants
belong to this database's objects: the projection schema being migrated, the vault and the
published schema. A rebuild migrates a fresh projection schema and gets the same grants.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _schemas() -> tuple[str, str, str]:
    attributes = context.config.attributes
    return (str(attributes["schema"]), str(attributes.get("vault_schema") or "nyc311_vault"),
            str(attributes.get("published_schema") or "published"))


def upgrade() -> None:
    from storage.roles import statements

    inspector = sa.inspect(op.get_bind())
    for statement in statements(*_schemas(),
                                exists=lambda s, t: inspector.has_table(t, schema=s)):
        op.execute(statement)


def downgrade() -> None:
    from storage.roles import GRANTS

    projection, vault, published = _schemas()
    schemas = {"": projection, "vault": vault, "published": published}
    inspector = sa.inspect(op.get_bind())
    for role, grants in GRANTS.items():
        for schema, table, _ in grants:
            if inspector.has_table(table, schema=schemas[schema]):
                op.execute(f'REVOKE ALL ON "{schemas[schema]}".{table} FROM {role}')
