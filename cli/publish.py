"""`nyc311 publish`: one month's tables and website (the scheduled aggregator is `nyc311 run
aggregator`)."""

from __future__ import annotations

from datetime import datetime

import click

from cli.context import INSTANT, Context, pass_ctx


@click.command()
@click.option("--month", required=True, help="Month to publish, YYYY-MM (New York time).")
@click.option("--out", required=True, help="A folder, or s3://bucket/prefix.")
@click.option("--as-of", type=INSTANT, default=None,
              help="Count closures up to this instant (default: the first instant of the next "
                   "month, New York time). A month still in progress is published only with an "
                   "--as-of no later than now (a preliminary revision).")
@pass_ctx
def publish(obj: Context, month: str, out: str, as_of: datetime | None) -> None:
    """Publish the four monthly tables and the website for MONTH (§23-306 d).

    Aggregates in PostgreSQL into the projection's publication schema (`published` for the
    default projection nyc311, <NYC311_DB_SCHEMA>_published for another); when the numbers are
    the same as the month's published revision, the files come out identical; when late events
    changed them, a new revision is published and its page lists what changed. A folder or S3
    prefix holds one projection's site (marker file .nyc311-publication.json): publishing
    another projection there is refused.
    """
    from reports.aggregate import MonthError
    from reports.output import claim_site, write_site
    from reports.publish import PublicationError, publish_month
    from reports.s3 import PublishError
    from storage.db import connection

    settings = obj.settings
    with connection(settings) as conn:
        conn.autocommit = True
        try:
            claim_site(settings, conn, out)
            pub, new = publish_month(conn, month, as_of, schema=settings.published_schema)
            summary = write_site(settings, conn, out)
        except MonthError as exc:
            raise click.BadParameter(str(exc), param_hint="--month") from None
        except (PublicationError, PublishError) as exc:
            raise click.ClickException(str(exc)) from None
    state = "new revision" if new else "unchanged, revision"
    click.echo(f"{month}: {state} {pub.revision} (as of {pub.as_of.isoformat()}): "
               + ", ".join(f"{name} {len(rows):,} rows" for name, rows in pub.tables.items()))
    click.echo(summary)
