"""Shared test code: produce events, run the projector, read the tables, and an oracle; run
the ``nyc311`` command as a process; capture the project's logs.

The oracle (:func:`expected_tables`) states the projection's rules in plain Python, apart from
the SQL that implements them, so a test compares two independent readings of the same events.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from consumers.loop import ConsumeLoop, LoopStats
from consumers.projector import GROUP_ID
from consumers.projector import Projector as ProjectionHandler
from nyc311.kafka import EventProducer
from nyc311.logs import setup_logging
from nyc311.settings import Settings
from storage.models import Base, column_names

REPO = Path(__file__).resolve().parents[1]

Event = tuple[str, dict[str, Any]]

_MODELS = Base.metadata.tables
# the columns the projector writes (projected_at is the database's); a contact opened with its key
TABLE_COLUMNS = {
    "requests": column_names(_MODELS["requests"], without=("projected_at",)),
    "contacts": (*column_names(_MODELS["contacts"], without=("key_id", "sealed")),
                 "email", "phone"),
    "closures": column_names(_MODELS["closures"], without=("projected_at",)),
    "surveys": column_names(_MODELS["surveys"]),
    "survey_answers": column_names(_MODELS["survey_answers"]),
}


def produce(settings: Settings, events: Iterable[Event]) -> int:
    count = 0
    with EventProducer(settings) as producer:
        for name, record in events:
            producer.send(name, record)
            count += 1
    return count


def project(settings: Settings, max_seconds: float = 120) -> LoopStats:
    """Run the projector in this process until it has no lag left."""
    loop = ConsumeLoop(settings, GROUP_ID, ProjectionHandler(settings))
    stats = loop.run(until_caught_up=True, max_seconds=max_seconds)
    return stats


def fetch_tables(conn: psycopg.Connection,
                 vault: str = "nyc311_vault") -> dict[str, set[tuple[Any, ...]]]:
    """The projection's rows; contacts opened with their keys from the vault (an erased one has
    none and reads as (None, None))."""
    out = {}
    for table, columns in TABLE_COLUMNS.items():
        if table == "contacts":
            out[table] = {tuple(_norm(v) for v in row) for row in fetch_contacts(conn, vault)}
            continue
        rows = conn.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall()
        out[table] = {tuple(_norm(v) for v in row) for row in rows}
    return out


def fetch_contacts(conn: psycopg.Connection,
                   vault: str = "nyc311_vault") -> list[tuple[Any, ...]]:
    """(request_id, event_id, created_at, email, phone) of every projected contact."""
    from storage.vault import open_contact

    rows = conn.execute(f"SELECT c.request_id, c.event_id, c.created_at, c.key_id, c.sealed, "
                        f"k.key FROM contacts c LEFT JOIN {vault}.contact_keys k "
                        f"USING (key_id)").fetchall()
    return [(r[0], r[1], r[2], *open_contact(r[0], r[3], r[4], r[5])) for r in rows]


def _norm(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return value


def _ms(dt: datetime) -> datetime:
    """Avro timestamp-millis keeps milliseconds; so does the oracle."""
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000).astimezone(UTC)


def expected_tables(events: Iterable[Event]) -> dict[str, set[tuple[Any, ...]]]:
    """The projection the rules in consumers/projector.py promise, computed in Python."""
    newest: dict[str, dict[str, Any]] = {}
    newest_contact: dict[str, dict[str, Any]] = {}
    closures: dict[str, dict[str, Any]] = {}
    surveys: dict[str, dict[str, Any]] = {}
    answers: dict[str, dict[str, Any]] = {}

    def version(r: dict[str, Any]) -> tuple[datetime, str]:
        return (_ms(r["occurred_at"]), str(r["event_id"]))

    for name, r in events:
        if name == "request_created":
            cur = newest.get(r["request_id"])
            if cur is None or version(r) > version(cur):
                newest[r["request_id"]] = r
            contact = r.get("contact") or {}
            if contact.get("email") or contact.get("phone"):
                cur = newest_contact.get(r["request_id"])
                if cur is None or version(r) > version(cur):
                    newest_contact[r["request_id"]] = r
        elif name == "request_closed":
            closures.setdefault(str(r["event_id"]), r)
        elif name == "survey_sent":
            cur = surveys.get(str(r["survey_id"]))
            if cur is None or version(r) < version(cur):
                surveys[str(r["survey_id"])] = r
        elif name == "survey_answered":
            cur = answers.get(str(r["survey_id"]))
            if cur is None or version(r) < version(cur):
                answers[str(r["survey_id"])] = r

    out: dict[str, set[tuple[Any, ...]]] = {t: set() for t in TABLE_COLUMNS}
    for r in newest.values():
        contact = r.get("contact") or {}
        has_contact = bool(contact.get("email") or contact.get("phone"))
        out["requests"].add((r["request_id"], str(r["event_id"]), _ms(r["occurred_at"]),
                             r["agency"], r["agency_name"], r["complaint_type"],
                             r.get("descriptor"), r["channel"], r.get("borough"),
                             r.get("incident_zip"), r.get("language"), has_contact))
    for r in newest_contact.values():  # the newest contact given, even if a later version has none
        out["contacts"].add((r["request_id"], str(r["event_id"]), _ms(r["occurred_at"]),
                             r["contact"].get("email"), r["contact"].get("phone")))
    for r in closures.values():
        out["closures"].add((str(r["event_id"]), r["request_id"], _ms(r["occurred_at"]),
                             r["status"], r.get("resolution_description")))
    for r in surveys.values():
        out["surveys"].add((str(r["survey_id"]), str(r["event_id"]), r["request_id"],
                            _ms(r["occurred_at"]), r["channel"], r["language"],
                            r.get("closure_event_id")))
    for r in answers.values():
        out["survey_answers"].add((str(r["survey_id"]), str(r["event_id"]), r["request_id"],
                                   _ms(r["occurred_at"]), r["language"], r.get("satisfaction"),
                                   r["reopen_requested"], r.get("feedback"),
                                   r.get("dissatisfaction_reason")))
    return out


def survey_events(created: list[Event], seed: int = 7) -> list[Event]:
    """SurveySent and SurveyAnswered events for some requests, so every table is exercised."""
    import random

    rng = random.Random(seed)
    out: list[Event] = []
    levels = ["STRONGLY_AGREE", "AGREE", "NEUTRAL", "DISAGREE", "STRONGLY_DISAGREE", None]
    for _name, r in created[: max(1, len(created) // 3)]:
        survey_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        sent_at = r["occurred_at"] + timedelta(days=1)
        out.append(("survey_sent", {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "occurred_at": sent_at, "request_id": r["request_id"], "survey_id": survey_id,
            "channel": rng.choice(["EMAIL", "SMS"]), "language": "en", "closure_event_id": None,
        }))
        if rng.random() < 0.6:
            satisfaction = rng.choice(levels)
            out.append(("survey_answered", {
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "occurred_at": sent_at + timedelta(hours=rng.randint(1, 48)),
                "request_id": r["request_id"], "survey_id": survey_id, "language": "en",
                "satisfaction": satisfaction, "reopen_requested": satisfaction is None,
                "feedback": "thanks" if rng.random() < 0.3 else None,
            }))
    return out


def conflicting_versions(events: list[Event], seed: int = 3) -> list[Event]:
    """Second versions that disagree with the first: a re-routed request (the newer wins) and a
    second answer to a survey (the earlier wins), so the merge rules have something to decide."""
    import random

    rng = random.Random(seed)
    out: list[Event] = []
    for name, r in events:
        if name == "request_created" and rng.random() < 0.2:
            out.append((name, dict(r, event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                                   occurred_at=r["occurred_at"] + timedelta(minutes=5),
                                   agency="DOT", complaint_type="Re-routed",
                                   contact=rng.choice([None, {"email": "second@example.com",
                                                              "phone": None}]))))
        elif name == "survey_answered" and rng.random() < 0.5:
            out.append((name, dict(r, event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                                   occurred_at=r["occurred_at"] + timedelta(hours=1),
                                   satisfaction="NEUTRAL", feedback="changed my mind")))
    return out


# -- the nyc311 command as a process --------------------------------------------------------------

CLI = (sys.executable, "-m", "cli")


def outside_env() -> dict[str, str]:
    """This process's environment without the project's own settings (``KAFKA_*``, ``NYC311_*``,
    ``DATABASE_URL``), so a child process sees only what a test gives it."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("KAFKA_", "NYC311_")) and k != "DATABASE_URL"}


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of an ``nyc311`` process pointed at ``settings``."""
    env = outside_env()
    env.update({
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url,
        "NYC311_DB_SCHEMA": settings.db_schema,
        "NYC311_TOPIC_PREFIX": settings.topic_prefix,
        "NYC311_BATCH_TIMEOUT": "0.2",
        # a killed member leaves the group in seconds, not 45
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        "NYC311_LOG_FORMAT": "text",
        **extra,
    })
    return env


def run_cli(settings: Settings, *args: str, timeout: float = 120,
            env: dict[str, str] | None = None,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``nyc311 ARGS`` to its end, its output captured."""
    return subprocess.run([*CLI, *args], env=cli_env(settings, **(env or {})), cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, input=stdin)


def start_cli(settings: Settings, *args: str, log: Path | None = None,
              env: dict[str, str] | None = None, **popen: Any) -> subprocess.Popen[str]:
    """``nyc311 ARGS`` in the background: its output (stdout and stderr) in ``log`` when given,
    else where ``popen`` (``stdout=``, ``stderr=``) says."""
    command, child_env = [*CLI, *args], cli_env(settings, **(env or {}))
    if log is None:
        return subprocess.Popen(command, env=child_env, cwd=REPO, text=True, **popen)
    with log.open("w") as out:
        return subprocess.Popen(command, env=child_env, cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT, text=True, **popen)


@dataclass
class Projector:
    """``nyc311 run projector`` as a real process, its output in a file."""

    proc: subprocess.Popen[str]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        """The exit code once it has ended by itself; killed, and TimeoutExpired, if it has not
        within ``timeout`` s."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, and the exit code once it has finished its batch and closed."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


def start_projector(settings: Settings, log: Path, batch_size: int = 100,
                    *args: str) -> Projector:
    proc = start_cli(settings, "run", "projector", *args, log=log,
                     env={"NYC311_BATCH_SIZE": str(batch_size)})
    return Projector(proc, log)


def stored_offsets(settings: Settings, group: str = GROUP_ID) -> int:
    """Sum of the next offsets PostgreSQL holds for ``group``: records the group has done."""
    with psycopg.connect(settings.libpq_url, connect_timeout=5,
                         options=f"-c search_path={settings.db_schema}") as conn:
        row = conn.execute("SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets "
                           "WHERE group_id = %s", (settings.group(group),)).fetchone()
    return int(row[0]) if row else 0


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               while_alive: list[Projector] | None = None, interval: float = 0.2) -> float:
    """Poll ``condition`` until true; fail after ``timeout`` s (or when a projector dies)."""
    started = time.monotonic()
    while True:
        for projector in while_alive or []:
            assert projector.alive(), f"the projector died:\n{projector.output()[-4000:]}"
        try:
            if condition():
                return time.monotonic() - started
        except psycopg.OperationalError:
            pass  # the database is coming back
        if time.monotonic() - started > timeout:
            outputs = "\n".join(p.output()[-3000:] for p in while_alive or [])
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{outputs}")
        time.sleep(interval)


# -- logs -----------------------------------------------------------------------------------------


@contextmanager
def captured_logging(level: str, fmt: str) -> Iterator[io.StringIO]:
    """The project's own logging set-up (``fmt``: text or json) into a buffer; the root logger
    as it was afterwards."""
    root = logging.getLogger()
    handlers, root_level = root.handlers[:], root.level
    buffer = io.StringIO()
    setup_logging(level, fmt, stream=buffer)
    try:
        yield buffer
    finally:
        root.handlers[:] = handlers
        root.setLevel(root_level)
