"""The ``nyc311`` command: one entry point for every producer, consumer and operator task."""

from __future__ import annotations

import functools
import itertools
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from nyc311.settings import DOCUMENTED, Settings, SettingsError, load_settings

log = logging.getLogger("nyc311")


def _env_help() -> str:
    rows = [f"  {name:<26} {text}" + (f" (default: {default})" if default else "")
            for name, (default, text) in DOCUMENTED.items()]
    return "\b\nEnvironment:\n" + "\n".join(rows)


class _Instant(click.ParamType):
    """An ISO 8601 instant (UTC when it has no offset), or ``now``."""

    name = "TIMESTAMP"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        if value == "now":
            return datetime.now(UTC)
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"expected ISO 8601 such as 2026-11-01T00:00:00-04:00, or 'now'; "
                      f"got {value!r}", param, ctx)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_INSTANT = _Instant()


class _Context:
    """Settings are loaded on first use, so `--help` works with nothing configured."""

    def __init__(self) -> None:
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings()
            except SettingsError as exc:
                raise click.ClickException(str(exc)) from None
        return self._settings


pass_ctx = click.make_pass_decorator(_Context, ensure=True)


@click.group(epilog=_env_help(), context_settings={"help_option_names": ["-h", "--help"],
                                                   "max_content_width": 100})
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

    setup_logging((log_level or os.environ.get("NYC311_LOG_LEVEL") or "INFO").upper(), log_format)
    ctx.ensure_object(_Context)


# -- database -------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """The PostgreSQL projection: migrations and a summary of what it holds."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@pass_ctx
def db_upgrade(obj: _Context, revision: str) -> None:
    """Create or migrate the projection schema (Alembic)."""
    from storage.migrate import upgrade

    head = upgrade(obj.settings, revision)
    click.echo(f"schema {obj.settings.db_schema!r} at revision {head}")


@db.command("summary")
@pass_ctx
def db_summary(obj: _Context) -> None:
    """Print counts of requests, closures, surveys and consumer offsets."""
    from storage.db import connection
    from storage.summary import summarize

    with connection(obj.settings) as conn:
        click.echo(summarize(conn).render())


# -- topics ---------------------------------------------------------------------------------------


@main.group()
def topics() -> None:
    """Kafka topics of the contract."""


@topics.command("create")
@click.option("--partitions", type=click.IntRange(1, 1000), default=None,
              help="Partitions per new topic (default: NYC311_TOPIC_PARTITIONS or 6).")
@pass_ctx
def topics_create(obj: _Context, partitions: int | None) -> None:
    """Create the event topics and their dead-letter topics where missing."""
    from nyc311.topics import all_topics, ensure_topics

    created = ensure_topics(obj.settings, all_topics(obj.settings), partitions)
    click.echo(f"created {len(created)} topic(s)" + (f": {', '.join(created)}" if created else ""))


# -- producers ------------------------------------------------------------------------------------


@main.command("import-nyc-csv")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--progress/--no-progress", default=True, show_default=True)
@pass_ctx
def import_nyc_csv_cmd(obj: _Context, file: Path, progress: bool) -> None:
    """Backfill from an NYC Open Data 311 CSV export (RequestCreated, RequestClosed).

    Every row is accounted for in the summary: imported, rejected (with reasons) or imported
    with an anomaly. Event ids are derived from the rows, so importing a file twice changes
    nothing in the projection.
    """
    from nyc311.topics import ensure_topics, event_topics
    from producers.nyc_csv import import_nyc_csv
    from producers.producer import EventProducer

    ensure_topics(obj.settings, event_topics(obj.settings))
    with EventProducer(obj.settings) as producer:
        summary = import_nyc_csv(file, producer, progress=progress)
    click.echo(summary.render())


@main.command()
@click.option("--month", required=True, help="Month to simulate, YYYY-MM (New York time).")
@click.option("--requests", "count", type=click.IntRange(1, 1_000_000), default=10_000,
              show_default=True, help="Service requests to create in the month.")
@click.option("--seed", type=int, default=311, show_default=True,
              help="Random seed; the same seed gives the same events.")
@click.option("--until", type=_INSTANT, default=None,
              help="Leave out what happens after this instant (UTC unless it has an offset; "
                   "'now' works too): a month in progress.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@pass_ctx
def simulate(obj: _Context, month: str, count: int, seed: int, until: datetime | None,
             progress: bool) -> None:
    """Produce a realistic month of NYC-like 311 traffic (created and closed events).

    With --until, events after that instant are left out: the month so far, with the requests
    not closed by then still open.
    """
    from tqdm import tqdm

    from nyc311.topics import ensure_topics, event_topics
    from producers.producer import EventProducer
    from producers.simulate import simulate_month

    try:
        events = simulate_month(month, count, seed)
        first = next(events, None)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--month") from None
    ensure_topics(obj.settings, event_topics(obj.settings))
    counts: dict[str, int] = {}
    with EventProducer(obj.settings) as producer, \
            tqdm(desc="events", unit="ev", disable=not progress, file=sys.stderr) as bar:
        if first is not None:
            for name, record in itertools.chain([first], events):
                if until is not None and record["occurred_at"] > until:
                    continue
                producer.send(name, record)
                counts[name] = counts.get(name, 0) + 1
                bar.update()
    click.echo(f"produced {sum(counts.values()):,} events for {month} (seed {seed}): "
               + ", ".join(f"{n} {c:,}" for n, c in sorted(counts.items())))


# -- reports --------------------------------------------------------------------------------------


@main.command()
@click.option("--month", required=True, help="Month to publish, YYYY-MM (New York time).")
@click.option("--out", required=True, help="A folder, or s3://bucket/prefix.")
@click.option("--as-of", type=_INSTANT, default=None,
              help="Count closures up to this instant (default: the first instant of the next "
                   "month, New York time). A month still in progress is published only with an "
                   "--as-of no later than now (a preliminary revision).")
@pass_ctx
def publish(obj: _Context, month: str, out: str, as_of: datetime | None) -> None:
    """Publish the four monthly tables and the website for MONTH (§23-306 d).

    Aggregates in PostgreSQL into the `published` schema; when the numbers are the same as the
    month's published revision, the files come out identical; when late events changed them, a
    new revision is published and its page lists what changed.
    """
    from reports.aggregate import MonthError
    from reports.output import write_site
    from reports.publish import publish_month
    from storage.db import connection

    settings = obj.settings
    with connection(settings) as conn:
        conn.autocommit = True
        try:
            pub, new = publish_month(conn, month, as_of)
        except MonthError as exc:
            raise click.BadParameter(str(exc), param_hint="--month") from None
        summary = write_site(settings, conn, out)
    state = "new revision" if new else "unchanged, revision"
    click.echo(f"{month}: {state} {pub.revision} (as of {pub.as_of.isoformat()}): "
               + ", ".join(f"{name} {len(rows):,} rows" for name, rows in pub.tables.items()))
    click.echo(summary)


# -- consumers ------------------------------------------------------------------------------------


@main.group()
def run() -> None:
    """Run a long-lived service (stops cleanly on SIGTERM or Ctrl-C)."""


def _consumer_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--until-caught-up", is_flag=True,
        help="Stop once every assigned partition has no lag (batch jobs, demos).")(func)
    func = click.option("--max-seconds", type=float, default=None,
                        help="Stop after this many seconds at the latest.")(func)
    return func


@run.command("projector")
@_consumer_options
@pass_ctx
def run_projector(obj: _Context, until_caught_up: bool, max_seconds: float | None) -> None:
    """Project request and survey events into PostgreSQL (group nyc311-projector)."""
    from consumers.loop import ConsumeLoop
    from consumers.projector import GROUP_ID, Projector
    from nyc311.topics import all_topics, ensure_topics

    settings = obj.settings
    ensure_topics(settings, all_topics(settings))
    loop = ConsumeLoop(settings, GROUP_ID, Projector(settings))
    loop.install_signal_handlers()
    stats = loop.run(until_caught_up=until_caught_up, max_seconds=max_seconds)
    click.echo(f"projector: {stats.records:,} records in {stats.batches:,} batches, "
               f"{stats.dead_lettered:,} dead-lettered")


@run.command("dispatcher")
@_consumer_options
@pass_ctx
def run_dispatcher(obj: _Context, until_caught_up: bool, max_seconds: float | None) -> None:
    """Send a survey for every closure of a request with a contact (group nyc311-dispatcher).

    Email goes through SMTP_HOST, SMS through Amazon SNS (SMS_PROVIDER); the link points at
    NYC311_SURVEY_BASE_URL and is signed with NYC311_SURVEY_SECRET. With --until-caught-up it
    stops once no lag is left and no survey is due now.
    """
    from consumers.channels import channels_from_settings
    from consumers.dispatcher import GROUP_ID, Dispatcher
    from consumers.loop import ConsumeLoop
    from nyc311.settings import SettingsError
    from nyc311.topics import all_topics, ensure_topics

    settings = obj.settings
    if not channels_from_settings(settings):
        raise click.ClickException("no channel configured: set SMTP_HOST and/or SMS_PROVIDER=sns")
    try:
        dispatcher = Dispatcher(settings, functools.partial(channels_from_settings, settings))
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    ensure_topics(settings, all_topics(settings))
    loop = ConsumeLoop(settings, GROUP_ID, dispatcher)
    loop.install_signal_handlers()
    try:
        loop.run(until_caught_up=until_caught_up, max_seconds=max_seconds,
                 on_tick=dispatcher.tick)
    finally:
        dispatcher.close()
    s = dispatcher.stats
    click.echo(f"dispatcher: {s.sent:,} surveys sent "
               f"({', '.join(f'{k} {v:,}' for k, v in sorted(s.by_channel.items())) or 'none'}), "
               f"{s.no_contact:,} closures without a contact, {s.failed:,} failed, "
               f"{s.retried:,} retries scheduled")


@run.command("reopen-forwarder")
@_consumer_options
@pass_ctx
def run_reopen_forwarder(obj: _Context, until_caught_up: bool, max_seconds: float | None) -> None:
    """Forward every answer that asks for a reopen to nyc311.reopen-requested, keyed by agency."""
    from consumers.loop import ConsumeLoop
    from consumers.reopen_forwarder import GROUP_ID, ReopenForwarder
    from nyc311.topics import all_topics, ensure_topics

    settings = obj.settings
    ensure_topics(settings, all_topics(settings))
    forwarder = ReopenForwarder(settings)
    loop = ConsumeLoop(settings, GROUP_ID, forwarder)
    loop.install_signal_handlers()
    loop.run(until_caught_up=until_caught_up, max_seconds=max_seconds, on_tick=forwarder.tick)
    click.echo(f"reopen forwarder: {forwarder.stats.forwarded:,} reopen requests forwarded")


@run.command("aggregator")
@click.option("--once", is_flag=True,
              help="Publish the preceding month now and exit (for cron or a Kubernetes CronJob).")
@click.option("--at", "at_text", default=None,
              help="Time of day (New York) to publish on the 1st, HH:MM (default: "
                   "NYC311_PUBLISH_AT).")
@click.option("--out", default=None,
              help="A folder or s3://bucket/prefix (default: NYC311_PUBLISH_TARGET).")
@pass_ctx
def run_aggregator(obj: _Context, once: bool, at_text: str | None, out: str | None) -> None:
    """Publish the preceding month on the 1st of every month (New York time).

    On start it catches up on any month that came due while it was down; then it sleeps until
    the next 1st. Stops cleanly on SIGTERM or Ctrl-C.
    """
    import signal
    import threading
    from datetime import time as time_of_day

    from reports.output import write_site
    from reports.publish import publish_month, published_months
    from reports.schedule import preceding_month, run_scheduler
    from storage.db import connection

    settings = obj.settings
    target = out or settings.publish_target
    hour, _, minute = (at_text or settings.publish_at).partition(":")
    try:
        at = time_of_day(int(hour), int(minute))
    except ValueError:
        raise click.BadParameter("expected HH:MM", param_hint="--at") from None

    def publish_one(month: str) -> None:
        with connection(settings) as conn:
            conn.autocommit = True
            pub, new = publish_month(conn, month)
            summary = write_site(settings, conn, target)
        log.info("published %s revision %d (%s); %s", month, pub.revision,
                 "new" if new else "unchanged", summary, extra={"month": month})

    if once:
        publish_one(preceding_month(datetime.now(UTC)))
        return
    with connection(settings) as conn:
        done = published_months(conn)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    run_scheduler(publish_one, at, stop=stop, last_published=done[0] if done else None)


@main.command("survey-web")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8311, show_default=True)
@pass_ctx
def survey_web(obj: _Context, host: str, port: int) -> None:
    """Serve the survey page (the links in survey emails and texts point here)."""
    from nyc311.settings import SettingsError
    from producers.survey_web import serve

    try:
        obj.settings.require_survey_secret()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    serve(obj.settings, host=host, port=port)


if __name__ == "__main__":  # pragma: no cover
    main()
