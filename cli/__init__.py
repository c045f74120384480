"""The ``nyc311`` command: one entry point for every producer, consumer and operator task."""

from __future__ import annotations

import functools
import itertools
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from nyc311.settings import DOCUMENTED, Settings, SettingsError, load_settings
from storage.roles import ANALYST, SERVICE_ROLES

if TYPE_CHECKING:
    from nyc311.metrics import Metrics

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
        self.log_level: str = "INFO"
        self.log_format: str | None = None

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

    level = (log_level or os.environ.get("NYC311_LOG_LEVEL") or "INFO").upper()
    setup_logging(level, log_format)
    obj = ctx.ensure_object(_Context)
    obj.log_level, obj.log_format = level, log_format  # for worker processes


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


@db.command("login")
@click.argument("role", type=click.Choice([*SERVICE_ROLES, ANALYST]))
@click.argument("user")
@click.option("--password-env", default="NYC311_LOGIN_PASSWORD", show_default=True,
              help="Environment variable holding the password (never an argument).")
@pass_ctx
def db_login(obj: _Context, role: str, user: str, password_env: str) -> None:
    """Create (or update) login USER as a member of ROLE, for one service's DATABASE_URL.

    Run as the owner, after `nyc311 db upgrade` created the roles.
    """
    import os

    from psycopg import sql

    from storage.db import connection

    password = os.environ.get(password_env, "")
    if len(password) < 12:
        raise click.ClickException(f"{password_env}: set it to a password of 12+ characters")
    with connection(obj.settings) as conn:
        conn.autocommit = True
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(user), sql.Literal(password)))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(user)))
    click.echo(f"login {user!r} is a member of {role}")


@db.command("summary")
@pass_ctx
def db_summary(obj: _Context) -> None:
    """Print counts of requests, closures, surveys and consumer offsets."""
    from operations.summary import summarize
    from storage.db import connection

    with connection(obj.settings) as conn:
        click.echo(summarize(conn, obj.settings.vault_schema).render())


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
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--progress/--no-progress", default=True, show_default=True)
@pass_ctx
def import_nyc_csv_cmd(obj: _Context, file: Path, progress: bool) -> None:
    """Backfill from an NYC Open Data 311 CSV export (RequestCreated, RequestClosed).

    Every row is accounted for in the summary: imported, rejected (with reasons) or imported
    with an anomaly. Event ids are derived from the rows, so importing a file twice changes
    nothing in the projection. A file that is missing, a directory, empty, binary, not UTF-8,
    not CSV or without the export's required columns is refused with one line saying why
    (exit status 1) before anything is sent.
    """
    from nyc311.kafka import EventProducer
    from nyc311.topics import ensure_topics, event_topics
    from producers.nyc_csv import NycCsvFormatError, check_nyc_csv, import_nyc_csv

    def refuse(exc: Exception) -> click.ClickException:
        if isinstance(exc, IsADirectoryError):
            return click.ClickException(f"{file} is a directory, not a CSV file")
        if isinstance(exc, OSError):
            return click.ClickException(f"cannot read {file}: {exc.strerror or exc}")
        return click.ClickException(str(exc))

    try:
        check_nyc_csv(file)
    except (NycCsvFormatError, OSError) as exc:
        raise refuse(exc) from None
    ensure_topics(obj.settings, event_topics(obj.settings))
    with EventProducer(obj.settings) as producer:
        try:
            summary = import_nyc_csv(file, producer, progress=progress)
        except (NycCsvFormatError, OSError) as exc:  # found deep inside the file
            raise refuse(exc) from None
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

    Contacts are sealed under keys kept in the vault (the database), as producers should.

    With --until, events after that instant are left out: the month so far, with the requests
    not closed by then still open.
    """
    from tqdm import tqdm

    from nyc311.kafka import EventProducer
    from nyc311.topics import ensure_topics, event_topics
    from producers.sealer import ContactSealer
    from producers.simulate import simulate_month

    try:
        events = simulate_month(month, count, seed)
        first = next(events, None)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--month") from None
    ensure_topics(obj.settings, event_topics(obj.settings))
    counts: dict[str, int] = {}
    with EventProducer(obj.settings) as producer, ContactSealer(obj.settings) as sealer, \
            tqdm(desc="events", unit="ev", disable=not progress, file=sys.stderr) as bar:
        if first is not None:
            wanted = ((name, record) for name, record in itertools.chain([first], events)
                      if until is None or record["occurred_at"] <= until)
            for name, record in sealer.sealed(wanted):
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


# -- operations -----------------------------------------------------------------------------------


@main.command("lag")
@click.option("--group", "groups", multiple=True,
              help="A consumer group id as Kafka knows it (repeatable). Default: every group "
                   "whose name starts with NYC311_TOPIC_PREFIX (all groups without a prefix).")
@click.option("--json", "as_json", is_flag=True,
              help="Machine-readable output (with --watch: one JSON object per line).")
@click.option("--watch", is_flag=True, help="Keep sampling and redraw until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Seconds between samples.")
@click.option("--window", type=click.IntRange(1, 1000), default=3, show_default=True,
              help="Samples a status is judged over (Burrow's sliding window).")
@pass_ctx
def lag(obj: _Context, groups: tuple[str, ...], as_json: bool, watch: bool, interval: float,
        window: int) -> None:
    """Lag and status of every consumer group: does each consumer keep up?

    Per partition: Kafka's committed offset, the log-end offset and the lag, as
    kafka-consumer-groups --describe prints them, the age in seconds of the oldest unconsumed
    record, and a status after LinkedIn Burrow's rules: OK, WARN (lag not shrinking while
    offsets move), STALL (a consumer owns it, offset stuck, lag > 0: alive but stuck, e.g.
    retrying its batch while the database is down), STOP (nobody owns it, offset stuck, lag >
    0), ERR (committed beyond the log end, offset moved back, group missing). Unlike Kafka's
    tool, every partition of the topics a group reads is shown: one it never committed ("-")
    has as lag its backlog from the log start, where the group will read, and is counted and
    judged like the others. A group's status is its worst partition's. A one-shot run takes
    --window samples --interval seconds apart (default 3 samples 1 s apart, about 2 s) to judge
    movement; exit status 1 when a --group does not exist.
    """
    from operations.lag.report import LagError, run_lag

    try:
        sys.exit(run_lag(obj.settings, groups, as_json, watch, interval, window, click.echo))
    except LagError as exc:
        raise click.ClickException(str(exc)) from None


# -- consumers ------------------------------------------------------------------------------------


@main.group()
def run() -> None:
    """Run a long-lived service (stops cleanly on SIGTERM or Ctrl-C).

    A consumer stopped (SIGTERM, Ctrl-C, --max-seconds) while the database or the dead-letter
    queue is unavailable leaves the batch in hand uncommitted, to be read again on the next
    start, says so in one log line and exits with status 75 (EX_TEMPFAIL).
    """


def _metrics_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--metrics-port", type=click.IntRange(0, 65535), default=0, show_default=True,
        envvar="NYC311_METRICS_PORT", show_envvar=True,
        help="Serve Prometheus /metrics and /healthz (200 when ready, else 503 and why) on "
             "this port, all interfaces; 0: off.")(func)


def _serve_metrics(port: int, health: Callable[[], tuple[bool, str]], metrics: Metrics) -> None:
    """Start the metrics server for the life of the process, if a port was given."""
    if port:
        from nyc311.metrics import serve_metrics

        try:
            serve_metrics(port, health, metrics)
        except OSError as exc:
            raise click.ClickException(f"--metrics-port {port}: {exc.strerror or exc}") from None


def _consumer_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--until-caught-up", is_flag=True,
        help="Stop once every assigned partition has no lag (batch jobs, demos).")(func)
    func = click.option("--max-seconds", type=float, default=None,
                        help="Stop after this many seconds at the latest, within seconds even "
                             "while the database or Kafka is unavailable (exit status 75 when "
                             "work was left uncommitted: it is read again on the next "
                             "start).")(func)
    return _metrics_option(func)


def _ensure_topics(settings: Settings, max_seconds: float | None) -> None:
    """Create the topics a consumer needs, as it starts; Kafka unreachable is a clear error
    (within --max-seconds when it is shorter than the usual 30 s), not a traceback."""
    from confluent_kafka import KafkaException

    from nyc311.topics import all_topics, ensure_topics

    timeout = 30.0 if max_seconds is None else max(1.0, min(30.0, max_seconds))
    try:
        ensure_topics(settings, all_topics(settings), timeout=timeout)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else exc
        raise click.ClickException(
            f"Kafka unavailable at {settings.kafka_bootstrap_servers}: "
            f"{getattr(error, 'str', lambda: str(error))()}") from None


def _exit_unfinished(unfinished: bool) -> None:
    """Exit status 75 (EX_TEMPFAIL) for a consumer that stopped with uncommitted work (its log
    said why); nothing is lost, the work is read again on the next start."""
    if unfinished:
        from consumers.loop import EX_TEMPFAIL

        sys.exit(EX_TEMPFAIL)


@run.command("projector")
@_consumer_options
@click.option("--processes", type=click.IntRange(1, 64), default=1, show_default=True,
              envvar="NYC311_PROJECTOR_PROCESSES", show_envvar=True,
              help="Worker processes, all members of the group, each projecting its share of "
                   "the partitions: one per core catches up fastest. With --metrics-port P, "
                   "worker i serves on P + i.")
@pass_ctx
def run_projector(obj: _Context, until_caught_up: bool, max_seconds: float | None,
                  metrics_port: int, processes: int) -> None:
    """Project request and survey events into PostgreSQL (group nyc311-projector)."""
    from consumers.loop import ConsumeLoop
    from consumers.projector import GROUP_ID, Projector

    settings = obj.settings
    _ensure_topics(settings, max_seconds)
    if processes > 1:
        from consumers.workers import run_projector_processes

        totals = run_projector_processes(
            settings, processes, until_caught_up=until_caught_up, max_seconds=max_seconds,
            metrics_port=metrics_port, log_level=obj.log_level, log_format=obj.log_format)
        click.echo(f"projector: {totals.records:,} records in {totals.batches:,} batches, "
                   f"{totals.dead_lettered:,} dead-lettered ({processes} processes)")
        if totals.failed:
            raise click.ClickException(f"{totals.failed} of {processes} workers failed")
        _exit_unfinished(totals.unfinished > 0)
        return
    loop = ConsumeLoop(settings, GROUP_ID, Projector(settings))
    loop.install_signal_handlers()
    _serve_metrics(metrics_port, loop.is_ready, loop.metrics)
    stats = loop.run(until_caught_up=until_caught_up, max_seconds=max_seconds)
    click.echo(f"projector: {stats.records:,} records in {stats.batches:,} batches, "
               f"{stats.dead_lettered:,} dead-lettered")
    _exit_unfinished(bool(stats.abandoned))


@run.command("dispatcher")
@_consumer_options
@pass_ctx
def run_dispatcher(obj: _Context, until_caught_up: bool, max_seconds: float | None,
                   metrics_port: int) -> None:
    """Send a survey for every closure of a request with a contact (group nyc311-dispatcher).

    Email goes through SMTP_HOST, SMS through Amazon SNS (SMS_PROVIDER); the link points at
    NYC311_SURVEY_BASE_URL and is signed with NYC311_SURVEY_SECRET, or, in a text message, is a
    short link (NYC311_SURVEY_BASE_URL/s/<id>, kept in survey_links) so the text fits one SMS
    segment. With --until-caught-up it stops once no lag is left and no survey is due now.
    """
    from consumers.channels import channels_from_settings
    from consumers.dispatcher import GROUP_ID, Dispatcher
    from consumers.loop import ConsumeLoop
    from nyc311.settings import SettingsError

    settings = obj.settings
    if not channels_from_settings(settings):
        raise click.ClickException("no channel configured: set SMTP_HOST and/or SMS_PROVIDER=sns")
    try:
        dispatcher = Dispatcher(settings, functools.partial(channels_from_settings, settings))
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    _ensure_topics(settings, max_seconds)
    loop = ConsumeLoop(settings, GROUP_ID, dispatcher, metrics=dispatcher.metrics)
    loop.install_signal_handlers()
    _serve_metrics(metrics_port, loop.is_ready, loop.metrics)
    try:
        stats = loop.run(until_caught_up=until_caught_up, max_seconds=max_seconds,
                         on_tick=dispatcher.tick)
    finally:
        dispatcher.close()
    s = dispatcher.stats
    click.echo(f"dispatcher: {s.sent:,} surveys sent "
               f"({', '.join(f'{k} {v:,}' for k, v in sorted(s.by_channel.items())) or 'none'}), "
               f"{s.no_contact:,} closures without a contact, {s.too_old:,} too old, "
               f"{s.failed:,} failed, "
               f"{s.retried:,} retries scheduled")
    _exit_unfinished(bool(stats.abandoned))


@run.command("reopen-forwarder")
@_consumer_options
@pass_ctx
def run_reopen_forwarder(obj: _Context, until_caught_up: bool, max_seconds: float | None,
                         metrics_port: int) -> None:
    """Forward every answer that asks for a reopen to nyc311.reopen-requested, keyed by agency."""
    from consumers.loop import ConsumeLoop
    from consumers.reopen_forwarder import GROUP_ID, ReopenForwarder

    settings = obj.settings
    _ensure_topics(settings, max_seconds)
    forwarder = ReopenForwarder(settings)
    loop = ConsumeLoop(settings, GROUP_ID, forwarder, metrics=forwarder.metrics)
    loop.install_signal_handlers()
    _serve_metrics(metrics_port, loop.is_ready, loop.metrics)
    stats = loop.run(until_caught_up=until_caught_up, max_seconds=max_seconds,
                     on_tick=forwarder.tick)
    click.echo(f"reopen forwarder: {forwarder.stats.forwarded:,} reopen requests forwarded")
    _exit_unfinished(bool(stats.abandoned))


@run.command("aggregator")
@click.option("--once", is_flag=True,
              help="Publish the preceding month now and exit (for cron or a Kubernetes CronJob).")
@click.option("--at", "at_text", default=None,
              help="Time of day (New York) to publish on the 1st, HH:MM (default: "
                   "NYC311_PUBLISH_AT).")
@click.option("--out", default=None,
              help="A folder or s3://bucket/prefix (default: NYC311_PUBLISH_TARGET).")
@_metrics_option
@pass_ctx
def run_aggregator(obj: _Context, once: bool, at_text: str | None, out: str | None,
                   metrics_port: int) -> None:
    """Publish the preceding month on the 1st of every month (New York time).

    On start it catches up on any month that came due while it was down; then it sleeps until
    the next 1st. Stops cleanly on SIGTERM or Ctrl-C. Like `nyc311 publish`, it publishes into
    the projection's own publication schema and refuses a target that holds another
    projection's site.
    """
    import signal
    import threading
    from datetime import time as time_of_day

    from nyc311.metrics import PUBLISH_FAILED, PUBLISHED_NEW, PUBLISHED_UNCHANGED, Metrics
    from reports.output import claim_site, write_site
    from reports.publish import PublicationError, publish_month, published_months
    from reports.schedule import preceding_month, run_scheduler
    from storage.db import connection, database_health

    settings = obj.settings
    target = out or settings.publish_target
    hour, _, minute = (at_text or settings.publish_at).partition(":")
    try:
        at = time_of_day(int(hour), int(minute))
    except ValueError:
        raise click.BadParameter("expected HH:MM", param_hint="--at") from None

    metrics = Metrics("aggregator")
    _serve_metrics(metrics_port, lambda: database_health(settings), metrics)

    def publish_one(month: str) -> None:
        try:
            with connection(settings) as conn:
                conn.autocommit = True
                claim_site(settings, conn, target)
                pub, new = publish_month(conn, month, schema=settings.published_schema)
                summary = write_site(settings, conn, target)
        except Exception:
            metrics.publication(PUBLISH_FAILED)
            raise
        metrics.publication(PUBLISHED_NEW if new else PUBLISHED_UNCHANGED)
        log.info("published %s revision %d (%s); %s", month, pub.revision,
                 "new" if new else "unchanged", summary, extra={"month": month})

    if once:
        try:
            publish_one(preceding_month(datetime.now(UTC)))
        except PublicationError as exc:
            raise click.ClickException(str(exc)) from None
        return
    with connection(settings) as conn:
        done = published_months(conn, schema=settings.published_schema)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    run_scheduler(publish_one, at, stop=stop, last_published=done[0] if done else None)


@run.command("privacy-purge")
@click.option("--once", is_flag=True,
              help="Erase what is due now and exit (for cron or a Kubernetes CronJob).")
@click.option("--every", type=click.FloatRange(min=1), default=None,
              help="Seconds between runs (default: NYC311_PURGE_INTERVAL).")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar (default: on a terminal).")
@_metrics_option
@pass_ctx
def run_privacy_purge(obj: _Context, once: bool, every: float | None, progress: bool | None,
                      metrics_port: int) -> None:
    """Erase residents' contacts once the survey no longer needs them.

    A contact is due NYC311_CONTACT_RETENTION_DAYS after its request's last survey was sent (or
    settled without one), after its last closure when no survey was queued, or, for a request
    never closed, NYC311_CONTACT_MAX_OPEN_DAYS after creation. Erasing destroys the contact's
    keys in the vault, which makes every copy unreadable (the projection, the topics, their
    dead-letter queues) and removes the projected copy; each run prints what it erased and what
    is still held. Stops cleanly on SIGTERM or Ctrl-C.
    """
    import signal
    import threading

    from tqdm import tqdm

    from nyc311.metrics import Metrics
    from storage.db import connection, database_health
    from storage.vault import purge

    settings = obj.settings
    metrics = Metrics("privacy-purge")
    _serve_metrics(metrics_port, lambda: database_health(settings), metrics)
    show = sys.stderr.isatty() if progress is None else progress

    def purge_once() -> None:
        with connection(settings) as conn, \
                tqdm(desc="requests erased", unit="req", disable=not show, file=sys.stderr) as bar:
            conn.autocommit = True

            def step(done: int, total: int) -> None:
                bar.total = total
                bar.update(done)

            report = purge(conn, settings, progress=step)
        metrics.contacts_purged(report.requests, report.held, report.oldest_days)
        click.echo(f"privacy-purge: {report.render()}")

    if once:
        purge_once()
        return
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    interval = every or settings.purge_interval
    while not stop.is_set():
        try:
            purge_once()
        except Exception:  # the database may be away: say so, and try again next time
            log.exception("privacy-purge: this run failed; trying again in %.0f s", interval)
        stop.wait(interval)


@main.group()
def privacy() -> None:
    """Residents' contacts: erase one person's on request."""


@privacy.command("erase")
@click.option("--request-id", "request_ids", multiple=True,
              help="Erase the contact given with this request (repeatable).")
@click.option("--contacts-from", type=click.File("r", encoding="utf-8"), default=None,
              help="Erase every request whose contact is one of the email addresses or phone "
                   "numbers in this file, one a line ('-': standard input). Read from a file so "
                   "the contact stays out of shell history and process lists.")
@click.option("--dry-run", is_flag=True, help="Count what would be erased; erase nothing.")
@pass_ctx
def privacy_erase(obj: _Context, request_ids: tuple[str, ...], contacts_from: Any,
                  dry_run: bool) -> None:
    """Erase contacts now, whatever the retention: the keys are destroyed (every copy becomes
    unreadable) and the request is recorded as erased, so no replay brings the contact back."""
    from storage.db import connection
    from storage.vault import erase, find_requests

    if not request_ids and contacts_from is None:
        raise click.UsageError("give --request-id or --contacts-from")
    with connection(obj.settings) as conn:
        conn.autocommit = True
        ids = set(request_ids)
        if contacts_from is not None:
            ids.update(find_requests(conn, obj.settings, contacts_from.read().splitlines()))
        if dry_run:
            click.echo(f"would erase the contacts of {len(ids):,} requests")
            return
        keys, contacts = erase(conn, obj.settings, sorted(ids), "request") if ids else (0, 0)
    click.echo(f"erased the contacts of {len(ids):,} requests ({keys:,} keys destroyed, "
               f"{contacts:,} projected contacts removed)")


@run.command("lag-exporter")
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port of /metrics and /healthz (0: any free port).")
@click.option("--interval", type=click.FloatRange(min=0.1), default=15.0, show_default=True,
              help="Seconds between samples.")
@click.option("--window", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="Samples a status is judged over (Burrow's sliding window).")
@click.option("--group", "groups", multiple=True,
              help="Only this consumer group (repeatable; a missing one reports ERR). Default: "
                   "every group whose name starts with NYC311_TOPIC_PREFIX.")
@click.option("--cluster-name", envvar="NYC311_KAFKA_CLUSTER_NAME", show_envvar=True,
              help="Value of the cluster_name label (default: the bootstrap servers).")
@pass_ctx
def run_lag_exporter(obj: _Context, host: str, port: int, interval: float, window: int,
                     groups: tuple[str, ...], cluster_name: str | None) -> None:
    """Serve consumer lag as Prometheus metrics (kafka-lag-exporter's names and labels).

    kafka_consumergroup_group_offset, _lag, _lag_seconds, _max_lag, _max_lag_seconds, _sum_lag,
    _topic_sum_lag, kafka_partition_latest_offset and _earliest_offset, plus
    nyc311_consumergroup_status per group (0 OK, 1 WARN, 2 STALL, 3 STOP, 4 ERR; see `nyc311
    lag --help`). A partition a group never committed has no _group_offset series, but its lag
    is its backlog from the log start, counted in the sums. /healthz is 503 when no sample
    succeeded lately. Stops cleanly on SIGTERM.
    """
    from operations.lag.exporter import LagExporter, serve

    try:
        exporter = LagExporter(obj.settings, host, port, interval, window, groups, cluster_name)
    except OSError as exc:
        raise click.ClickException(f"--port {port}: {exc.strerror or exc}") from None
    serve(exporter)


# -- operator tools -------------------------------------------------------------------------------


@main.group()
def dlq() -> None:
    """Dead-letter queues (<topic>.dlq): list them, replay them after a fix."""


@dlq.command("list")
@click.option("--topic", default=None,
              help="Only this topic's DLQ (e.g. nyc311.request-created); default: all.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Show at most N records.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_ctx
def dlq_list(obj: _Context, topic: str | None, limit: int | None, as_json: bool) -> None:
    """Show dead letters: where each came from (topic, partition, offset), its error class and
    message, when it failed, and its key. Reads from the beginning; commits nothing."""
    import json

    from operations.dlq_tools import DlqError, list_dead_letters

    count = 0
    try:
        for letter in list_dead_letters(obj.settings, topic, limit):
            click.echo(json.dumps(letter.as_json(), ensure_ascii=False) if as_json
                       else letter.render())
            count += 1
    except DlqError as exc:
        raise click.ClickException(str(exc)) from None
    if not as_json:
        click.echo(f"{count:,} dead letter(s)", err=True)


@dlq.command("replay")
@click.option("--topic", required=True,
              help="Replay this topic's DLQ (e.g. nyc311.request-created).")
@click.option("--dry-run", is_flag=True, help="Show what would be replayed; change nothing.")
@click.option("--where-error-class", "error_classes", multiple=True, metavar="CLASS",
              help="Only dead letters of this error class (e.g. ValidationError); repeatable.")
@click.option("--limit", type=click.IntRange(1), default=None,
              help="Replay at most N records.")
@pass_ctx
def dlq_replay(obj: _Context, topic: str, dry_run: bool, error_classes: tuple[str, ...],
               limit: int | None) -> None:
    """Send dead letters back to their source topic (original key, value and headers), once
    each, for the consumers to process again after a fix.

    What was replayed is remembered (topic nyc311.dlq-replays, written in the same Kafka
    transaction as the records; consumer group nyc311-dlq-replay keeps the position), so a
    second run, or a run after a crash, replays nothing twice. A record that fails again is
    dead-lettered again, with new headers and a replay_of header. A truncated copy (a record
    too large for its DLQ, kept with its original size and SHA-256) is refused, never replayed
    as if it were the record; each refusal is printed with where the record itself is.
    """
    from operations.dlq_tools import DlqError, replay

    try:
        result = replay(obj.settings, topic, error_classes=error_classes, limit=limit,
                        dry_run=dry_run)
    except DlqError as exc:
        raise click.ClickException(str(exc)) from None
    for letter in result.records:
        click.echo(letter.render())
    for line in result.refusals():
        click.echo(line, err=True)
    click.echo(result.render())


@main.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--wait", "wait_seconds", type=click.FloatRange(0), default=600, show_default=True,
              help="Seconds to wait, once caught up, for the live projector to stop.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@pass_ctx
def rebuild(obj: _Context, yes: bool, wait_seconds: float, progress: bool) -> None:
    """Rebuild the projection from the topics' full history and switch over to it.

    The projection is rebuilt into a fresh schema (<schema>_rebuild_<timestamp>) while the live
    projector keeps running. The live projector must be STOPPED for the switch: once caught up,
    the rebuild waits (--wait) until group nyc311-projector has no member, then in one
    transaction renames the live schema to <schema>_old_<timestamp> and the new one to the live
    name, moving the survey tables (survey_dispatch, survey_submissions, survey_answer_outbox,
    survey_links, reopen_forwards) and the other services' offsets across unchanged. Start the
    projector again afterwards: it resumes where the rebuild stopped. The dispatcher, reopen
    forwarder and survey page may keep running. The projection's publication schema is not
    touched, and the rebuilt projection publishes into it as before. The old schema is kept
    until you drop it.
    """
    from operations.rebuild import RebuildError
    from operations.rebuild import rebuild as run_rebuild

    settings = obj.settings
    if not yes:
        click.confirm(f"Rebuild schema {settings.db_schema!r} from Kafka and switch over to it?",
                      abort=True)
    try:
        result = run_rebuild(settings, progress=progress, wait_seconds=wait_seconds,
                             install_signal_handlers=True)
    except RebuildError as exc:
        raise click.ClickException(f"{exc}; schema {settings.db_schema!r} is unchanged") from None
    click.echo(result.render())


@main.command("survey-web")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8311, show_default=True)
@pass_ctx
def survey_web(obj: _Context, host: str, port: int) -> None:
    """Serve the survey page (the links in survey emails and texts point here).

    Signed links (/survey/<token>, in emails) and short links (/s/<id>, in texts) show the same
    form. An answer is stored in PostgreSQL with its SurveyAnswered event (the outbox) in one
    short transaction; a thread of this process produces the stored events to Kafka, so answers
    given while Kafka is down are accepted and sent once it is back. /healthz is 503 when
    PostgreSQL does not answer or an answer has waited longer than NYC311_SURVEY_OUTBOX_MAX_AGE;
    /metrics has nyc311_outbox_backlog. SIGTERM: finishes the requests in hand, relays what is
    due for up to 10 s, stops.
    """
    from nyc311.settings import SettingsError
    from producers.survey_web import serve

    try:
        obj.settings.require_survey_secret()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    serve(obj.settings, host=host, port=port)
