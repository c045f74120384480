"""The ``nyc311`` command: one entry point for every producer, consumer and operator task.

The top of the layers (docs/DESIGN.md, "Layers"): parsing, wiring and exit codes only; the work
is done by the packages below. One module per command group: ``db`` (and ``topics``),
``produce``, ``publish``, ``run`` (the services, started by ``service``), ``privacy``,
``operate`` (lag, dead letters, rebuilds) and ``survey``; ``context`` holds what they share.
"""

from __future__ import annotations

import click

from cli import db, operate, privacy, produce, publish, run, survey
from cli.context import Context, env_help


class Nyc311(click.Group):
    """The root group: a PostgreSQL server that cannot be reached, or refuses the login, ends
    a command with one line that says so (exit status 1), not a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            reason = unreachable_database(exc)
            if reason is None:
                raise
            raise click.ClickException(f"PostgreSQL (DATABASE_URL): {reason}") from None


def unreachable_database(exc: BaseException) -> str | None:
    """A connection failure's message on one line (psycopg's, or one SQLAlchemy wraps); None for
    anything else."""
    import psycopg
    from sqlalchemy.exc import OperationalError

    cause = exc.orig if isinstance(exc, OperationalError) else exc
    if not isinstance(cause, psycopg.OperationalError) or "connection" not in str(cause):
        return None
    return " ".join(str(cause).split()) or type(cause).__name__


@click.group(cls=Nyc311, epilog=env_help(),
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None,
              help="Log line format (default: text on a terminal, JSON otherwise).")
@click.pass_context
def main(ctx: click.Context, log_level: str | None, log_format: str | None) -> None:
    """NYC 311 satisfaction surveys and monthly service metrics (Admin Code §23-306).

    Events flow through Kafka topics as Avro; consumers project them into PostgreSQL; the
    monthly metrics are published from there. Settings come from the environment (below), or
    from .env.services written by `make services-up`.
    """
    import os

    from nyc311.logs import setup_logging

    level = (log_level or os.environ.get("NYC311_LOG_LEVEL") or "INFO").upper()
    setup_logging(level, log_format)
    obj = ctx.ensure_object(Context)
    obj.log_level, obj.log_format = level, log_format  # for worker processes


for command in (db.db, db.topics, produce.import_nyc_csv_cmd, produce.simulate, publish.publish,
                run.run, privacy.privacy, operate.lag, operate.dlq, operate.rebuild,
                survey.survey_web):
    main.add_command(command)
