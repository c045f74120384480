"""`nyc311 db` (migrations, service logins, the summary) and `nyc311 topics`."""

from __future__ import annotations

import click

from cli.context import Context, pass_ctx
from storage.roles import ANALYST, SERVICE_ROLES


@click.group()
def db() -> None:
    """The PostgreSQL projection: migrations and a summary of what it holds."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@pass_ctx
def db_upgrade(obj: Context, revision: str) -> None:
    """Create or migrate the projection schema (Alembic)."""
    from storage.migrate import upgrade

    head = upgrade(obj.settings, revision)
    click.echo(f"schema {obj.settings.db_schema!r} at revision {head}")


@db.command("login")
@click.argument("role", type=click.Choice([*SERVICE_ROLES, ANALYST]))
@click.argument("user")
@click.option("--password-env", default="NYC311_LOGIN_PASSWORD", show_default=True,
              help="Environment variable holding the password (never an argument).")
@pass_ctx
def db_login(obj: Context, role: str, user: str, password_env: str) -> None:
    """Create (or update) login USER as a member of ROLE, for one service's DATABASE_URL.

    Run as the owner, after `nyc311 db upgrade` created the roles.
    """
    import os

    from storage.db import connection
    from storage.roles import make_login

    password = os.environ.get(password_env, "")
    if len(password) < 12:
        raise click.ClickException(f"{password_env}: set it to a password of 12+ characters")
    with connection(obj.settings) as conn:
        conn.autocommit = True
        make_login(conn, role, user, password)
    click.echo(f"login {user!r} is a member of {role}")


@db.command("summary")
@pass_ctx
def db_summary(obj: Context) -> None:
    """Print counts of requests, closures, surveys and consumer offsets."""
    from operations.summary import summarize
    from storage.db import connection

    with connection(obj.settings) as conn:
        click.echo(summarize(conn, obj.settings.vault_schema).render())


@click.group()
def topics() -> None:
    """Kafka topics of the contract."""


@topics.command("create")
@click.option("--partitions", type=click.IntRange(1, 1000), default=None,
              help="Partitions per new topic (default: NYC311_TOPIC_PARTITIONS or 6).")
@pass_ctx
def topics_create(obj: Context, partitions: int | None) -> None:
    """Create the event topics and their dead-letter topics where missing."""
    from nyc311.topics import all_topics, ensure_topics

    created = ensure_topics(obj.settings, all_topics(obj.settings), partitions)
    click.echo(f"created {len(created)} topic(s)" + (f": {', '.join(created)}" if created else ""))
