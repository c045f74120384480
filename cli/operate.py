"""The operator's commands: `nyc311 lag`, `nyc311 dlq`, `nyc311 rebuild`."""

from __future__ import annotations

import sys

import click

from cli.context import Context, pass_ctx


@click.command("lag")
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
def lag(obj: Context, groups: tuple[str, ...], as_json: bool, watch: bool, interval: float,
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


@click.group()
def dlq() -> None:
    """Dead-letter queues (<topic>.dlq): list them, replay them after a fix."""


@dlq.command("list")
@click.option("--topic", default=None,
              help="Only this topic's DLQ (e.g. nyc311.request-created); default: all.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Show at most N records.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_ctx
def dlq_list(obj: Context, topic: str | None, limit: int | None, as_json: bool) -> None:
    """Show dead letters: where each came from (topic, partition, offset), its error class and
    message, when it failed, and its key. Reads from the beginning; commits nothing."""
    import json

    from operations.dlq.letters import DlqError, list_dead_letters

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
def dlq_replay(obj: Context, topic: str, dry_run: bool, error_classes: tuple[str, ...],
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
    from operations.dlq.letters import DlqError
    from operations.dlq.replay import replay

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


@click.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--wait", "wait_seconds", type=click.FloatRange(0), default=600, show_default=True,
              help="Seconds to wait, once caught up, for the live projector to stop.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option("--processes", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes projecting into the new schema, all members of the "
                   "rebuild's group, each with its share of the partitions (as `nyc311 run "
                   "projector --processes`): one per core catches up fastest. 1 projects in "
                   "this process.")
@pass_ctx
def rebuild(obj: Context, yes: bool, wait_seconds: float, progress: bool,
            processes: int) -> None:
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

    With --processes N the progress bar counts the offsets the workers have committed to the
    new schema, read once a second. Once every worker has caught up on its partitions, one last
    pass in this process checks all partitions together. A worker that fails, like Ctrl-C or
    SIGTERM, stops the rebuild before the switch and drops the new schema.
    """
    from operations.rebuild import RebuildError
    from operations.rebuild import rebuild as run_rebuild

    settings = obj.settings
    if not yes:
        click.confirm(f"Rebuild schema {settings.db_schema!r} from Kafka and switch over to it?",
                      abort=True)
    try:
        result = run_rebuild(settings, progress=progress, wait_seconds=wait_seconds,
                             install_signal_handlers=True, processes=processes,
                             log_level=obj.log_level, log_format=obj.log_format)
    except RebuildError as exc:
        raise click.ClickException(f"{exc}; schema {settings.db_schema!r} is unchanged") from None
    click.echo(result.render())
