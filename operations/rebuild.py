"""Rebuild the projection from the topics' full history, beside the live one, then switch over.

Why: after a fix to the projector's rules or to validation, or to recover from a damaged schema,
the projection must become what the events say, without stopping the pipeline for the hours a
full replay can take. ``nyc311 rebuild``:

1. creates a fresh schema ``<schema>_rebuild_<ts>`` with the migrations;
2. runs the projector's consume loop into it, under a consumer group of its own
   (``nyc311-projector-rebuild-<ts>``, so the live projector's offsets are not touched), from the
   beginning of every topic until it has caught up, with a progress bar of records read against
   the topics' total; the live projector keeps running meanwhile. With ``processes`` N > 1, N
   worker processes of that group share the partitions (:mod:`consumers.workers`), see
   "Several processes" below;
3. waits until the live projector has stopped (its consumer group has no member: the operator
   stops it; the rebuild can run for hours before that);
4. switches over in one PostgreSQL transaction: the live schema becomes ``<schema>_old_<ts>``,
   the new one takes the live name;
5. leaves the old schema for the operator to compare and drop, and says how.

It refuses to start when a topic no longer holds its full history (a partition whose first
offset is not 0: retention or deleted records), since the rebuilt projection would silently
lack those events. A failure or an interrupt before the switch drops the unfinished schema and
leaves the live one as it was.

What the switch carries over, and why:

- **Operational state is moved, not rebuilt.** ``survey_dispatch``, ``survey_submissions`` and
  ``reopen_forwards`` (and any table the projector does not write) hold what the dispatcher, the
  survey page and the reopen forwarder *did*: surveys sent, answers claimed, reopens forwarded.
  No topic holds that, so a rebuild cannot recreate it; a copy could miss a write committed
  during the copy. So the switch moves the live tables into the new schema (``ALTER TABLE …
  SET SCHEMA``: the same tables, rows, indexes and grants, in O(1)), dropping the empty ones the
  migrations created there. With them go their services' offsets (every ``consumer_offsets``
  row of a group other than the projector's), so those services continue exactly where they
  were. The old schema keeps the old projection only.
- **The projector's offsets**: the new schema's ``consumer_offsets`` rows belong to the rebuild's
  group; the switch renames them to the live group (``nyc311-projector``), so the live projector,
  started again, resumes exactly where the rebuild stopped: events that arrived after the rebuild
  caught up are projected then, nothing is lost or applied twice. This is why the live projector
  must be stopped: a running one holds positions of the *old* projection in memory. The switch
  checks the group is empty after taking its locks, so a projector starting at that moment is
  caught too.
- **Services that keep running** (dispatcher, reopen forwarder, survey page) need not stop: the
  switch takes ACCESS EXCLUSIVE locks on the tables they write, so their transactions in flight
  finish first (and are moved with the tables) and the next ones wait, then find the new schema
  by name through ``search_path`` (PostgreSQL re-resolves names after the rename, prepared
  statements included).
- **The publication schema** is untouched: it holds what was published, not a projection.
  It is the live projection's own (``Settings.published_schema``: ``published`` for ``nyc311``,
  ``<schema>_published`` otherwise) and is carried in the settings, not derived from the schema
  being migrated, so the fresh schema is migrated with the live projection's publication schema
  (which exists already: migrations 0003 and 0006 leave it as it is) and, renamed to the live
  name at the switch, publishes into it: no ``<schema>_rebuild_<ts>_published`` is ever made.
- **The DLQ**: records the live projector dead-lettered fail again in the rebuild and are
  dead-lettered again (``consumer_group`` says the rebuild's group). ``nyc311 dlq replay``
  replays a source record once however often the DLQ holds it.
- A column of a projection table that another service writes would be lost by a rebuild; none
  exists. The contact vault (keys and erasures) is a schema of its own that the rebuild leaves as
  it is: the rebuilt projection opens the same sealed contacts and skips the erased ones.

Several processes (``nyc311 rebuild --processes N``):

- The workers are spawned processes of the rebuild's group, projecting into the fresh schema;
  the settings they are given (a dataclass, pickled) name that schema.
- Progress is what the workers committed: the sum of the next offsets the new schema's
  ``consumer_offsets`` holds for the rebuild's group, read about once a second (records and
  dead letters alike, as the one-process bar counts them).
- Each worker stops once *its* partitions have no lag; a partition moving between workers as
  they leave may be caught by none. So once every worker has ended normally, one last pass of
  the loop in this process joins the now empty group, is given every partition, resumes each
  from its stored offset and stops when none has lag: the rebuild is caught up on all
  partitions together, whatever the order the workers ended in.
- A worker that fails (an error, a SIGKILL) stops the others and fails the rebuild before the
  switch, so a partial projection is never switched to; SIGINT or SIGTERM stops the workers
  after their batch. Either way the unfinished schema is dropped, as with one process.

Going back: swap the names again and move the operational tables back, in one transaction.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

import psycopg
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import TopicPartition as KafkaTP
from confluent_kafka.admin import AdminClient, OffsetSpec
from psycopg import sql

from nyc311.settings import Settings
from nyc311.stop import StopFlag
from storage.db import connect, is_transient
from storage.migrate import current_revision, head_revision, upgrade
from storage.models import Base, column_names

log = logging.getLogger(__name__)

PROJECTOR_GROUP = "nyc311-projector"  # consumers.projector.GROUP_ID (no import: no cycle)
REBUILD_GROUP = "nyc311-projector-rebuild-{ts}"
PROJECTION_TABLES = ("requests", "contacts", "closures", "surveys", "survey_answers")
OFFSETS_TABLE = "consumer_offsets"
OFFSETS_COLUMNS = column_names(Base.metadata.tables[OFFSETS_TABLE])
VERSION_TABLE = "alembic_version"
SWITCH_LOCK_TIMEOUT = "60s"
PROGRESS_SECONDS = 1.0  # how often the progress of worker processes is read
MAX_IDENTIFIER = 63


class RebuildError(RuntimeError):
    """The rebuild cannot start or cannot switch over; the live schema is unchanged."""


class _ProjectorRunning(RuntimeError):
    pass


@dataclass
class RebuildResult:
    live: str
    old: str
    records: int = 0
    dead_lettered: int = 0
    seconds: float = 0.0
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # table: (old, new)

    def render(self) -> str:
        tables = ", ".join(f"{t} {old:,} -> {new:,}" for t, (old, new) in self.counts.items())
        return (f"rebuilt schema {self.live!r} from {self.records:,} records "
                f"({self.dead_lettered:,} dead-lettered) in {self.seconds:.0f} s: {tables}\n"
                f"the previous projection is kept as schema {self.old!r}; once satisfied, "
                f"drop it with:\n"
                f"    psql \"$DATABASE_URL\" -c 'DROP SCHEMA \"{self.old}\" CASCADE'\n"
                f"then start the projector again (nyc311 run projector).")


# -- migrating a fresh schema ---------------------------------------------------------------------


def migrate_fresh(settings: Settings, schema: str) -> None:
    """Migrate a new projection schema beside an existing one, with the live projection's
    publication schema (``settings`` are the live projection's), which is left as it is."""
    upgrade(settings, schema=schema)


# -- Kafka ----------------------------------------------------------------------------------------


def _group_members(admin: AdminClient, group: str) -> int:
    """Members of a consumer group now (0 when it does not exist)."""
    future = admin.describe_consumer_groups([group], request_timeout=30)[group]
    try:
        return len(future.result().members)
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND:
            return 0
        raise


def _full_history(settings: Settings, topics: list[str]) -> int:
    """The number of offsets in the topics now; refused when any partition has lost its oldest
    records (retention, deleted records): a projection built from it would lack them."""
    admin = AdminClient(settings.kafka_config())
    metadata = admin.list_topics(timeout=30).topics
    partitions = [KafkaTP(t, p) for t in topics if t in metadata for p in metadata[t].partitions]
    if not partitions:
        return 0

    def offsets(spec: OffsetSpec) -> dict[tuple[str, int], int]:
        futures = admin.list_offsets({tp: spec for tp in partitions}, request_timeout=30)
        return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}

    starts, ends = offsets(OffsetSpec.earliest()), offsets(OffsetSpec.latest())
    lost = sorted(f"{t}[{p}] from offset {o}" for (t, p), o in starts.items() if o > 0)
    if lost:
        raise RebuildError(f"the topics no longer hold their full history ({', '.join(lost[:5])}"
                           f"{' …' if len(lost) > 5 else ''}): a rebuild would lose those events")
    return sum(ends.values())


# -- the rebuild ----------------------------------------------------------------------------------


def rebuild(settings: Settings, *, progress: bool = True, wait_seconds: float = 600.0,
            install_signal_handlers: bool = False, stream: TextIO | None = None,
            processes: int = 1, log_level: str = "INFO",
            log_format: str | None = None) -> RebuildResult:
    """Rebuild ``settings.db_schema`` from Kafka and switch over (see the module doc).

    ``processes`` > 1 projects with that many worker processes (which log at ``log_level`` in
    ``log_format``); 1 projects in this process."""
    from consumers.loop import ConsumeLoop
    from consumers.projector import Projector
    from nyc311.topics import all_topics, ensure_topics

    started = time.monotonic()
    ts = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    live = settings.db_schema
    new, old = f"{live}_rebuild_{ts}", f"{live}_old_{ts}"
    if len(old) > MAX_IDENTIFIER or len(new) > MAX_IDENTIFIER:
        raise RebuildError(f"schema name {live!r} is too long to add a timestamp to")
    # SIGINT/SIGTERM: stop the projection run, or stop waiting; never mid-switch
    stop = StopFlag("stopping the rebuild; the live schema stays as it is", level=logging.WARNING,
                    logger=log)
    if install_signal_handlers:
        stop.install()

    with connect(settings, autocommit=True) as control:
        # one rebuild of a schema at a time; the lock lasts as long as this connection
        locked = control.execute("SELECT pg_try_advisory_lock(hashtext(%s))",
                                 (f"nyc311-rebuild:{live}",)).fetchone()
        if not locked or not locked[0]:
            raise RebuildError(f"another rebuild of schema {live!r} is running")
        _check_live(control, settings, live, new)
        result = RebuildResult(live=live, old=old)
        try:
            migrate_fresh(settings, new)
            target = dataclasses.replace(  # publishing, if anything did, stays the live one's
                settings, db_schema=new, published_schema_override=settings.published_schema)
            ensure_topics(settings, all_topics(settings))
            group = REBUILD_GROUP.format(ts=ts)
            if processes > 1:
                _project_processes(target, group, settings, processes, progress, stream, result,
                                   stop, log_level, log_format)
            else:
                projector = Projector(target)
                loop = ConsumeLoop(target, group, projector)
                stop.on_stop(loop.stop)
                if stop.is_set():
                    loop.stop()
                _project(loop, settings, list(projector.topics), progress, stream, result)
            if stop.is_set():
                raise RebuildError("interrupted before the switch")
            _wait_and_switch(control, settings, live, new, old, target.group(group),
                             wait_seconds, stop)
        except BaseException:
            _drop_quietly(control, new)
            raise
        _delete_group(settings, target.group(group))
        try:
            result.counts = _counts(control, old, live)
        except psycopg.Error as exc:  # switched all the same; the counts are only for show
            log.warning("could not count rows: %s", exc)
    result.seconds = time.monotonic() - started
    return result


def _check_live(conn: psycopg.Connection, settings: Settings, live: str, new: str) -> None:
    exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (live,)).fetchone()
    if not exists:
        raise RebuildError(f"schema {live!r} does not exist; run `nyc311 db upgrade` first")
    revision, head = current_revision(settings), head_revision()
    if revision != head:
        raise RebuildError(f"schema {live!r} is at revision {revision}, not {head}: "
                           f"run `nyc311 db upgrade` first")
    if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (new,)).fetchone():
        raise RebuildError(f"schema {new!r} exists already")


def _project(loop: Any, settings: Settings, topics: list[str], progress: bool,
             stream: TextIO | None, result: RebuildResult) -> None:
    from tqdm import tqdm

    total = _full_history(settings, topics)
    log.info("rebuilding into %s from %d records of %d topics", loop.settings.db_schema,
             total, len(topics))
    with tqdm(total=total, unit="rec", desc="rebuild", disable=not progress,
              file=stream or sys.stderr, dynamic_ncols=True) as bar:
        def on_batch(_loop: Any) -> None:
            done = loop.stats.records + loop.stats.dead_lettered
            bar.update(max(0, min(done, bar.total or done) - bar.n))

        stats = loop.run(until_caught_up=True, on_batch=on_batch)
        bar.update(max(0, (bar.total or 0) - bar.n))
    result.records, result.dead_lettered = stats.records, stats.dead_lettered


def _project_processes(target: Settings, group: str, settings: Settings, processes: int,
                       progress: bool, stream: TextIO | None, result: RebuildResult,
                       stop: StopFlag, log_level: str, log_format: str | None) -> None:
    """Project with ``processes`` workers of ``group`` into ``target``'s schema, then one last
    pass in this process over every partition (see "Several processes" in the module doc)."""
    from tqdm import tqdm

    from consumers.loop import ConsumeLoop
    from consumers.projector import Projector
    from consumers.workers import run_projector_processes

    topics = list(Projector(target).topics)
    total = _full_history(settings, topics)
    log.info("rebuilding into %s from %d records of %d topics with %d processes",
             target.db_schema, total, len(topics), processes)
    group_id = target.group(group)
    with tqdm(total=total, unit="rec", desc="rebuild", disable=not progress,
              file=stream or sys.stderr, dynamic_ncols=True) as bar:
        def show(done: int) -> None:
            bar.update(max(0, min(done, bar.total or done) - bar.n))

        poller = _ProgressPoller(target, group_id, show)
        poller.start()
        try:
            totals = run_projector_processes(
                target, processes, until_caught_up=True, max_seconds=None, metrics_port=0,
                log_level=log_level, log_format=log_format, group_id=group, stop=stop)
            if stop.is_set():
                raise RebuildError("interrupted before the switch")
            if totals.failed:
                raise RebuildError(f"{totals.failed} of {processes} projection workers failed "
                                   f"(their log says why)")
            if totals.unfinished:
                raise RebuildError(f"{totals.unfinished} of {processes} projection workers "
                                   f"stopped with work left")
            loop = ConsumeLoop(target, group, Projector(target))
            stop.on_stop(loop.stop)
            if stop.is_set():
                loop.stop()
            stats = loop.run(until_caught_up=True)
            if stop.is_set() or stats.abandoned:
                raise RebuildError("interrupted before the switch")
        finally:
            poller.stop()
        bar.update(max(0, (bar.total or 0) - bar.n))
    result.records = totals.records + stats.records
    result.dead_lettered = totals.dead_lettered + stats.dead_lettered
    log.info("the workers projected or dead-lettered %d records, the last pass over every "
             "partition %d", totals.records + totals.dead_lettered,
             stats.records + stats.dead_lettered)


class _ProgressPoller:
    """Reads what the workers committed (the sum of the group's next offsets in the new
    schema's ``consumer_offsets``) every :data:`PROGRESS_SECONDS` on a thread of its own, and
    hands it to ``show``. A failed read is skipped: the next one catches up."""

    def __init__(self, target: Settings, group_id: str,
                 show: Callable[[int], None]) -> None:
        self._target, self._group_id, self._show = target, group_id, show
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rebuild-progress", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join(10)

    def _run(self) -> None:
        conn: psycopg.Connection | None = None
        try:
            while not self._done.wait(PROGRESS_SECONDS):
                try:
                    if conn is None or conn.closed:
                        conn = connect(self._target, autocommit=True)
                    self._show(projected(conn, self._group_id))
                except (psycopg.Error, OSError) as exc:
                    log.debug("reading the rebuild's progress: %s", exc)
                    if conn is not None:
                        conn.close()
                    conn = None
        finally:
            if conn is not None:
                conn.close()


def projected(conn: psycopg.Connection, group_id: str) -> int:
    """Offsets committed by ``group_id`` in the connection's schema, summed over partitions:
    the records it has projected or dead-lettered, from a topic's start."""
    row = conn.execute(sql.SQL("SELECT coalesce(sum(next_offset), 0) FROM {} WHERE group_id = %s")
                       .format(sql.Identifier(OFFSETS_TABLE)), (group_id,)).fetchone()
    return int(row[0]) if row else 0


def _wait_and_switch(control: psycopg.Connection, settings: Settings, live: str, new: str,
                     old: str, rebuild_group: str, wait_seconds: float, stop: StopFlag) -> None:
    admin = AdminClient(settings.kafka_config())
    live_group = settings.group(PROJECTOR_GROUP)
    deadline = time.monotonic() + wait_seconds
    told = False
    while True:
        if stop.is_set():
            raise RebuildError("interrupted before the switch")
        members = _group_members(admin, live_group)
        if members == 0:
            try:
                _switch(control, admin, live, new, old, live_group, rebuild_group)
                log.info("switched: %s is the rebuilt projection, %s the previous one", live, old)
                return
            except _ProjectorRunning:
                members = 1
            except psycopg.Error as exc:  # a lock not granted in time, a deadlock: again
                if not is_transient(exc):
                    raise
                log.warning("switch postponed: %s", str(exc).strip()[:200])
        if time.monotonic() > deadline:
            raise RebuildError(f"the live projector (group {live_group}) was still running after "
                               f"{wait_seconds:.0f} s; stop it and run the rebuild again")
        if not told:
            log.warning("rebuild caught up; waiting for the live projector (group %s, %d "
                        "member(s)) to stop before switching over", live_group, members)
            told = True
        time.sleep(1.0)


def _switch(conn: psycopg.Connection, admin: AdminClient, live: str, new: str, old: str,
            live_group: str, rebuild_group: str) -> None:
    """One transaction: move operational state and offsets, then swap the schema names."""
    live_id, new_id = sql.Identifier(live), sql.Identifier(new)
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(
            sql.Literal(SWITCH_LOCK_TIMEOUT)))
        operational = [name for (name,) in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s AND NOT tablename = ANY(%s) "
            "ORDER BY tablename",
            (live, [*PROJECTION_TABLES, OFFSETS_TABLE, VERSION_TABLE])).fetchall()]
        conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.SQL(", ").join(
            sql.Identifier(live, t) for t in [OFFSETS_TABLE, *operational])))
        # a projector that joined before the locks could hold old positions: not now
        if _group_members(admin, live_group):
            raise _ProjectorRunning
        for table in operational:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(new, table)))
            conn.execute(sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                sql.Identifier(live, table), new_id))
        offsets = sql.Identifier(new, OFFSETS_TABLE)
        conn.execute(sql.SQL("DELETE FROM {} WHERE group_id <> %s").format(offsets),
                     (rebuild_group,))
        conn.execute(sql.SQL("UPDATE {} SET group_id = %s WHERE group_id = %s").format(offsets),
                     (live_group, rebuild_group))
        columns = sql.SQL(", ".join(OFFSETS_COLUMNS))
        conn.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} WHERE group_id <> %s").format(
            offsets, columns, columns, sql.Identifier(live, OFFSETS_TABLE)), (live_group,))
        conn.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(live_id, sql.Identifier(old)))
        conn.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(new_id, live_id))


def _counts(conn: psycopg.Connection, old: str, live: str) -> dict[str, tuple[int, int]]:
    out = {}
    for table in PROJECTION_TABLES:
        before, after = (conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            sql.Identifier(schema, table))).fetchone() for schema in (old, live))
        out[table] = (before[0] if before else 0, after[0] if after else 0)
    return out


def _drop_quietly(conn: psycopg.Connection, schema: str) -> None:
    try:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        log.info("dropped the unfinished schema %s", schema)
    except psycopg.Error as exc:
        log.error("could not drop the unfinished schema %s (%s); drop it with: "
                  "DROP SCHEMA \"%s\" CASCADE", schema, exc, schema)


def _delete_group(settings: Settings, group: str) -> None:
    """The rebuild's consumer group is done with; leave no stale group in lag tools."""
    admin = AdminClient(settings.kafka_config())
    try:
        for future in admin.delete_consumer_groups([group], request_timeout=30).values():
            future.result()
    except KafkaException as exc:
        log.info("could not delete consumer group %s: %s", group, exc)
