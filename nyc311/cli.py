"""The ``nyc311`` command: one entry point for every producer, consumer and operator task."""

from __future__ import annotations

import functools
import itertools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from nyc311.settings import DOCUMENTED, Settings, SettingsError, load_settings

log = logging.getLogger("nyc311")


def _env_help() -> str:
    rows = [f"  {name:<26} {text}" + (f" (default: {default})" if default else "")
            for name, (default, text) in DOCUMENTED.items()]
    return "\b\nEnvironment:\n" + "\n".join(rows)


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
@click.option("--requests", "count", type=click.IntRange(1, 10_000_000), default=10_000,
              show_default=True, help="Service requests to create in the month.")
@click.option("--seed", type=int, default=311, show_default=True,
              help="Random seed; the same seed gives the same events.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@pass_ctx
def simulate(obj: _Context, month: str, count: int, seed: int, progress: bool) -> None:
    """Produce a realistic month of NYC-like 311 traffic (created and closed events)."""
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
                producer.send(name, record)
                counts[name] = counts.get(name, 0) + 1
                bar.update()
    click.echo(f"produced {sum(counts.values()):,} events for {month} (seed {seed}): "
               + ", ".join(f"{n} {c:,}" for n, c in sorted(counts.items())))


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
