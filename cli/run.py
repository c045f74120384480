"""`nyc311 run …`: the long-lived services, each started by :mod:`cli.service`."""

from __future__ import annotations

import functools
import logging
import sys

import click

from cli.context import Context, pass_ctx
from cli.service import (
    consumer_options,
    ensure_topics_or_fail,
    exit_unfinished,
    metrics_option,
    run_consumer,
    serve_metrics,
)
from nyc311.stop import StopFlag

log = logging.getLogger("nyc311")


@click.group()
def run() -> None:
    """Run a long-lived service (stops cleanly on SIGTERM or Ctrl-C).

    A consumer stopped (SIGTERM, Ctrl-C, --max-seconds) while the database or the dead-letter
    queue is unavailable leaves the batch in hand uncommitted, to be read again on the next
    start, says so in one log line and exits with status 75 (EX_TEMPFAIL).
    """


@run.command("projector")
@consumer_options
@click.option("--processes", type=click.IntRange(1, 64), default=1, show_default=True,
              envvar="NYC311_PROJECTOR_PROCESSES", show_envvar=True,
              help="Worker processes, all members of the group, each projecting its share of "
                   "the partitions: one per core catches up fastest. With --metrics-port P, "
                   "worker i serves on P + i.")
@pass_ctx
def run_projector(obj: Context, until_caught_up: bool, max_seconds: float | None,
                  metrics_port: int, processes: int) -> None:
    """Project request and survey events into PostgreSQL (group nyc311-projector)."""
    from consumers.projector import GROUP_ID, Projector

    settings = obj.settings
    if processes > 1:
        from consumers.workers import run_projector_processes

        ensure_topics_or_fail(settings, max_seconds)
        totals = run_projector_processes(
            settings, processes, until_caught_up=until_caught_up, max_seconds=max_seconds,
            metrics_port=metrics_port, log_level=obj.log_level, log_format=obj.log_format)
        click.echo(f"projector: {totals.records:,} records in {totals.batches:,} batches, "
                   f"{totals.dead_lettered:,} dead-lettered ({processes} processes)")
        if totals.failed:
            raise click.ClickException(f"{totals.failed} of {processes} workers failed")
        exit_unfinished(totals.unfinished > 0)
        return
    stats = run_consumer(settings, GROUP_ID, Projector(settings), until_caught_up=until_caught_up,
                         max_seconds=max_seconds, metrics_port=metrics_port)
    click.echo(f"projector: {stats.records:,} records in {stats.batches:,} batches, "
               f"{stats.dead_lettered:,} dead-lettered")
    exit_unfinished(bool(stats.abandoned))


@run.command("dispatcher")
@consumer_options
@pass_ctx
def run_dispatcher(obj: Context, until_caught_up: bool, max_seconds: float | None,
                   metrics_port: int) -> None:
    """Send a survey for every closure of a request with a contact (group nyc311-dispatcher).

    Email goes through SMTP_HOST, SMS through Amazon SNS (SMS_PROVIDER); the link points at
    NYC311_SURVEY_BASE_URL and is signed with NYC311_SURVEY_SECRET, or, in a text message, is a
    short link (NYC311_SURVEY_BASE_URL/s/<id>, kept in survey_links) so the text fits one SMS
    segment. With --until-caught-up it stops once no lag is left and no survey is due now.
    """
    from consumers.channels import channels_from_settings
    from consumers.dispatcher import GROUP_ID, Dispatcher
    from nyc311.settings import SettingsError

    settings = obj.settings
    if not channels_from_settings(settings):
        raise click.ClickException("no channel configured: set SMTP_HOST and/or SMS_PROVIDER=sns")
    try:
        dispatcher = Dispatcher(settings, functools.partial(channels_from_settings, settings))
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        stats = run_consumer(settings, GROUP_ID, dispatcher, until_caught_up=until_caught_up,
                             max_seconds=max_seconds, metrics_port=metrics_port,
                             metrics=dispatcher.metrics, on_tick=dispatcher.tick)
    finally:
        dispatcher.close()
    s = dispatcher.stats
    click.echo(f"dispatcher: {s.sent:,} surveys sent "
               f"({', '.join(f'{k} {v:,}' for k, v in sorted(s.by_channel.items())) or 'none'}), "
               f"{s.no_contact:,} closures without a contact, {s.too_old:,} too old, "
               f"{s.failed:,} failed, "
               f"{s.retried:,} retries scheduled")
    exit_unfinished(bool(stats.abandoned))


@run.command("reopen-forwarder")
@consumer_options
@pass_ctx
def run_reopen_forwarder(obj: Context, until_caught_up: bool, max_seconds: float | None,
                         metrics_port: int) -> None:
    """Forward every answer that asks for a reopen to nyc311.reopen-requested, keyed by agency."""
    from consumers.reopen_forwarder import GROUP_ID, ReopenForwarder

    settings = obj.settings
    forwarder = ReopenForwarder(settings)
    stats = run_consumer(settings, GROUP_ID, forwarder, until_caught_up=until_caught_up,
                         max_seconds=max_seconds, metrics_port=metrics_port,
                         metrics=forwarder.metrics, on_tick=forwarder.tick)
    click.echo(f"reopen forwarder: {forwarder.stats.forwarded:,} reopen requests forwarded")
    exit_unfinished(bool(stats.abandoned))


@run.command("aggregator")
@click.option("--once", is_flag=True,
              help="Publish the preceding month now and exit (for cron or a Kubernetes CronJob).")
@click.option("--at", "at_text", default=None,
              help="Time of day (New York) to publish on the 1st, HH:MM (default: "
                   "NYC311_PUBLISH_AT).")
@click.option("--out", default=None,
              help="A folder or s3://bucket/prefix (default: NYC311_PUBLISH_TARGET).")
@metrics_option
@pass_ctx
def run_aggregator(obj: Context, once: bool, at_text: str | None, out: str | None,
                   metrics_port: int) -> None:
    """Publish the preceding month on the 1st of every month (New York time).

    On start it catches up on any month that came due while it was down; then it sleeps until
    the next 1st. Stops cleanly on SIGTERM or Ctrl-C. Like `nyc311 publish`, it publishes into
    the projection's own publication schema and refuses a target that holds another
    projection's site.
    """
    from datetime import time as time_of_day

    from nyc311.metrics import Metrics
    from reports.publish import PublicationError
    from reports.service import run_aggregator as aggregate
    from storage.db import database_health

    settings = obj.settings
    target = out or settings.publish_target
    hour, _, minute = (at_text or settings.publish_at).partition(":")
    try:
        at = time_of_day(int(hour), int(minute))
    except ValueError:
        raise click.BadParameter("expected HH:MM", param_hint="--at") from None

    metrics = Metrics("aggregator")
    serve_metrics(metrics_port, lambda: database_health(settings), metrics)
    if once:
        try:
            aggregate(settings, target, at, metrics, once=True)
        except PublicationError as exc:
            raise click.ClickException(str(exc)) from None
        return
    with StopFlag(logger=log) as stop:
        aggregate(settings, target, at, metrics, once=False, stop=stop.event)


@run.command("privacy-purge")
@click.option("--once", is_flag=True,
              help="Erase what is due now and exit (for cron or a Kubernetes CronJob).")
@click.option("--every", type=click.FloatRange(min=1), default=None,
              help="Seconds between runs (default: NYC311_PURGE_INTERVAL).")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar (default: on a terminal).")
@metrics_option
@pass_ctx
def run_privacy_purge(obj: Context, once: bool, every: float | None, progress: bool | None,
                      metrics_port: int) -> None:
    """Erase residents' contacts once the survey no longer needs them.

    A contact is due NYC311_CONTACT_RETENTION_DAYS after its request's last survey was sent (or
    settled without one), after its last closure when no survey was queued, or, for a request
    never closed, NYC311_CONTACT_MAX_OPEN_DAYS after creation. Erasing destroys the contact's
    keys in the vault, which makes every copy unreadable (the projection, the topics, their
    dead-letter queues) and removes the projected copy; each run prints what it erased and what
    is still held. Stops cleanly on SIGTERM or Ctrl-C.
    """
    from nyc311.metrics import Metrics
    from operations.privacy import purge_once, run_purge
    from storage.db import database_health

    settings = obj.settings
    metrics = Metrics("privacy-purge")
    serve_metrics(metrics_port, lambda: database_health(settings), metrics)
    show = sys.stderr.isatty() if progress is None else progress
    if once:
        purge_once(settings, metrics, click.echo, progress=show)
        return
    with StopFlag(logger=log) as stop:
        run_purge(settings, metrics, click.echo, progress=show,
                  interval=every or settings.purge_interval, stop=stop.event)


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
def run_lag_exporter(obj: Context, host: str, port: int, interval: float, window: int,
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
