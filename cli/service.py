"""Starting a `nyc311 run` service the same way every time: its options, its metrics and health
server, its topics, and its exit status."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from nyc311.settings import Settings

if TYPE_CHECKING:
    import psycopg

    from consumers.loop import Handler, LoopStats
    from nyc311.metrics import Metrics


def metrics_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--metrics-port", type=click.IntRange(0, 65535), default=0, show_default=True,
        envvar="NYC311_METRICS_PORT", show_envvar=True,
        help="Serve Prometheus /metrics and /healthz (200 when ready, else 503 and why) on "
             "this port, all interfaces; 0: off.")(func)


def serve_metrics(port: int, health: Callable[[], tuple[bool, str]], metrics: Metrics) -> None:
    """Start the metrics server for the life of the process, if a port was given."""
    if port:
        from nyc311.metrics import serve_metrics

        try:
            serve_metrics(port, health, metrics)
        except OSError as exc:
            raise click.ClickException(f"--metrics-port {port}: {exc.strerror or exc}") from None


def consumer_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--until-caught-up", is_flag=True,
        help="Stop once every assigned partition has no lag (batch jobs, demos).")(func)
    func = click.option("--max-seconds", type=float, default=None,
                        help="Stop after this many seconds at the latest, within seconds even "
                             "while the database or Kafka is unavailable (exit status 75 when "
                             "work was left uncommitted: it is read again on the next "
                             "start).")(func)
    return metrics_option(func)


def ensure_topics_or_fail(settings: Settings, max_seconds: float | None) -> None:
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


def exit_unfinished(unfinished: bool) -> None:
    """Exit status 75 (EX_TEMPFAIL) for a consumer that stopped with uncommitted work (its log
    said why); nothing is lost, the work is read again on the next start."""
    if unfinished:
        from consumers.loop import EX_TEMPFAIL

        sys.exit(EX_TEMPFAIL)


def run_consumer(settings: Settings, group_id: str, handler: Handler, *,
                 until_caught_up: bool, max_seconds: float | None, metrics_port: int,
                 metrics: Metrics | None = None,
                 on_tick: Callable[[psycopg.Connection], bool] | None = None) -> LoopStats:
    """Run one consumer service as every `nyc311 run` consumer runs: its topics created, SIGTERM
    and Ctrl-C handled, /metrics and /healthz served when a port is given, then the loop."""
    from consumers.loop import ConsumeLoop

    ensure_topics_or_fail(settings, max_seconds)
    loop = ConsumeLoop(settings, group_id, handler, metrics=metrics)
    loop.install_signal_handlers()
    serve_metrics(metrics_port, loop.is_ready, loop.metrics)
    return loop.run(until_caught_up=until_caught_up, max_seconds=max_seconds, on_tick=on_tick)
