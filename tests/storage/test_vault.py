"""Residents' contacts: sealed everywhere, erased when due, and never brought back.

Against the real Kafka broker and PostgreSQL: the simulator seals at the edge, the projector
seals what an upstream system sent in the clear, the purge destroys keys on schedule, and
neither a replay, a re-import nor a rebuild makes an erased contact readable again.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from nyc311.sealing import SealError, new_key, open_sealed, seal
from producers.sealer import ContactSealer
from schemas.serde import Serde
from storage.vault import due_requests, held
from tests.consumers.test_projector import read_all
from tests.helpers import fetch_contacts, produce, project, run_cli

NOW = datetime.now(UTC).replace(microsecond=0)


def created(request_id: str, at: datetime, email: str | None = None,
            phone: str | None = None) -> tuple[str, dict]:
    contact = {"email": email, "phone": phone} if (email or phone) else None
    return ("request_created", {
        "event_id": str(uuid.uuid4()), "occurred_at": at, "request_id": request_id,
        "agency": "HPD", "agency_name": "Department of Housing Preservation and Development",
        "complaint_type": "HEAT/HOT WATER", "descriptor": None, "channel": "ONLINE",
        "borough": "BRONX", "incident_zip": "10458", "language": "en", "contact": contact,
    })


def closed(request_id: str, at: datetime) -> tuple[str, dict]:
    return ("request_closed", {
        "event_id": str(uuid.uuid4()), "occurred_at": at, "request_id": request_id,
        "status": "RESOLVED", "resolution_description": None,
    })


def dispatched(db, request_id: str, closed_at: datetime, status: str,
               settled_at: datetime | None) -> None:
    """A survey_dispatch row as the dispatcher leaves it (sent or settled at ``settled_at``)."""
    db.execute(
        "INSERT INTO survey_dispatch (closure_event_id, survey_id, request_id, closed_at, "
        "closure_status, status, sent_at, updated_at) VALUES (%s, %s, %s, %s, 'RESOLVED', %s, "
        "%s, coalesce(%s, now()))",
        (uuid.uuid4(), uuid.uuid4(), request_id, closed_at, status,
         settled_at if status == "sent" else None, settled_at))


def readable(db, settings) -> dict[str, tuple]:
    return {r[0]: r[3:] for r in fetch_contacts(db, settings.vault_schema)
            if r[3] is not None or r[4] is not None}


def raw_topic(settings, expected: int) -> list[bytes]:
    return [m.value() for m in read_all(settings, settings.topic("nyc311.request-created"),
                                        expected=expected)]


def test_a_sealed_contact_opens_only_with_its_key_request_and_bytes():
    key, key_id = new_key(), str(uuid.uuid4())
    sealed = seal(key, key_id, "R1", "ana@example.com", "+12125550100")
    assert b"ana" not in sealed and b"555" not in sealed
    assert open_sealed(key, key_id, "R1", sealed) == ("ana@example.com", "+12125550100")
    with pytest.raises(SealError):
        open_sealed(new_key(), key_id, "R1", sealed)
    with pytest.raises(SealError):  # copied onto another request
        open_sealed(key, key_id, "R2", sealed)
    with pytest.raises(SealError):
        open_sealed(key, str(uuid.uuid4()), "R1", sealed)
    tampered = bytearray(sealed)
    tampered[20] ^= 1
    with pytest.raises(SealError):
        open_sealed(key, key_id, "R1", bytes(tampered))
    with pytest.raises(SealError):
        open_sealed(key, key_id, "R1", b"short")


def test_simulated_contacts_reach_kafka_sealed_and_the_projection_opens_them(settings, topics,
                                                                             db):
    result = run_cli(settings, "simulate", "--month", "2026-10", "--requests", "300",
                     "--seed", "5", "--no-progress")
    assert result.returncode == 0, result.stderr
    from producers.simulate import simulate_month

    plain = {r["request_id"]: (r["contact"]["email"], r["contact"]["phone"])
             for name, r in simulate_month("2026-10", 300, 5)
             if name == "request_created" and r["contact"]}
    assert len(plain) > 150
    values = raw_topic(settings, expected=300)
    assert len(values) == 300
    for email, phone in plain.values():  # no contact in the clear anywhere in the topic
        for text in (email, phone):
            if text:
                assert not any(text.encode() in v for v in values)
    decoded = [Serde().decode("request_created", v) for v in values]
    assert all(r["contact"] is None for r in decoded)
    assert sum(r["sealed_contact"] is not None for r in decoded) == len(plain)

    project(settings)
    assert readable(db, settings) == plain
    count, oldest, erased = held(db, settings.vault_schema)
    oldest_created = min(r["occurred_at"] for name, r in simulate_month("2026-10", 300, 5)
                         if name == "request_created" and r["contact"])
    assert (count, erased) == (len(plain), 0)
    assert oldest == pytest.approx((datetime.now(UTC) - oldest_created).total_seconds() / 86400,
                                   abs=0.01)


def test_the_purge_erases_what_is_due_and_keeps_what_the_survey_still_needs(settings, topics, db):
    settings = replace(settings, contact_retention_days=45, contact_max_open_days=90)
    day = timedelta(days=1)
    events = [
        created("sent-long-ago", NOW - 80 * day, email="a@example.com"),
        closed("sent-long-ago", NOW - 60 * day),
        created("sent-recently", NOW - 20 * day, email="b@example.com"),
        closed("sent-recently", NOW - 12 * day),
        created("pending", NOW - 300 * day, phone="+12125550101"),
        closed("pending", NOW - 290 * day),
        created("closed-unqueued", NOW - 70 * day, email="c@example.com"),
        closed("closed-unqueued", NOW - 50 * day),
        created("open-too-long", NOW - 140 * day, email="d@example.com"),
        created("open", NOW - 100 * day, email="e@example.com"),
        created("no-contact", NOW - 400 * day),
    ]
    produce(settings, events)
    project(settings)
    dispatched(db, "sent-long-ago", NOW - 60 * day, "sent", NOW - 46 * day)
    dispatched(db, "sent-recently", NOW - 12 * day, "sent", NOW - 11 * day)
    dispatched(db, "pending", NOW - 290 * day, "pending", None)
    assert set(readable(db, settings)) == {"sent-long-ago", "sent-recently", "pending",
                                           "closed-unqueued", "open-too-long", "open"}
    assert due_requests(db, settings) == ["closed-unqueued", "open-too-long", "sent-long-ago"]

    env_days = {"NYC311_CONTACT_RETENTION_DAYS": "45", "NYC311_CONTACT_MAX_OPEN_DAYS": "90"}
    result = run_cli(settings, "run", "privacy-purge", "--once", "--no-progress", env=env_days)
    assert result.returncode == 0, result.stderr
    assert "erased the contacts of 3 requests (3 keys destroyed, 3 projected contacts removed)" \
        in result.stdout
    assert "3 contacts held" in result.stdout
    assert set(readable(db, settings)) == {"sent-recently", "pending", "open"}
    erased = db.execute(f"SELECT request_id, reason FROM {settings.vault_schema}.contact_erasures "
                        "ORDER BY 1").fetchall()
    assert erased == [("closed-unqueued", "retention"), ("open-too-long", "retention"),
                      ("sent-long-ago", "retention")]

    again = run_cli(settings, "run", "privacy-purge", "--once", "--no-progress", env=env_days)
    assert "erased the contacts of 0 requests" in again.stdout

    summary = run_cli(settings, "db", "summary")
    assert summary.returncode == 0, summary.stderr
    line = next(x for x in summary.stdout.splitlines() if x.startswith("contacts held"))
    assert line.split()[2] == "3" and "(oldest 300." in line and "3 erased" in line

    # the erased contacts, sealed in the topic, have no key left anywhere
    keys = db.execute(f"SELECT request_id FROM {settings.vault_schema}.contact_keys").fetchall()
    assert {k for (k,) in keys} == {"sent-recently", "pending", "open"}


def test_nothing_brings_an_erased_contact_back(settings, topics, db):
    """A replay of the plain and the sealed record, a re-seal by a producer, and a rebuild."""
    with ContactSealer(settings) as sealer:
        sealed_events = [("request_created", r) for r in sealer.seal_many(
            [created("edge", NOW - timedelta(days=2), email="f@example.com")[1]])]
    plain_events = [created("upstream", NOW - timedelta(days=2), phone="+12125550102")]
    produce(settings, sealed_events + plain_events)
    project(settings)
    assert set(readable(db, settings)) == {"edge", "upstream"}

    result = run_cli(settings, "privacy", "erase", "--request-id", "edge", "--request-id",
                     "upstream")
    assert result.returncode == 0, result.stderr
    assert "erased the contacts of 2 requests (2 keys destroyed, 2 projected contacts removed)" \
        in result.stdout
    assert readable(db, settings) == {}

    # the same records again (a DLQ replay or an upstream retry), and a producer sealing anew
    produce(settings, sealed_events + plain_events)
    with ContactSealer(settings) as sealer:
        resealed = sealer.seal_many([created("edge", NOW, email="f@example.com")[1]])
    assert resealed[0]["contact"] is None and resealed[0]["sealed_contact"] is None
    produce(settings, [("request_created", resealed[0])])
    project(settings)
    assert db.execute("SELECT count(*) FROM contacts").fetchone()[0] == 0
    assert db.execute(f"SELECT count(*) FROM {settings.vault_schema}.contact_keys").fetchone()[0] \
        == 0

    rebuilt = run_cli(settings, "rebuild", "--yes", "--no-progress", "--wait", "30", timeout=300)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert db.execute("SELECT count(*) FROM requests").fetchone()[0] == 2
    assert db.execute("SELECT count(*) FROM contacts").fetchone()[0] == 0
    assert readable(db, settings) == {}


def test_erasing_on_request_finds_a_persons_requests_by_their_contact(settings, topics, db):
    produce(settings, [created("one", NOW, email="Gina@Example.com"),
                       created("two", NOW, phone="+12125550103", email="other@example.com"),
                       created("three", NOW, phone="+12125550104")])
    project(settings)
    proc = run_cli(settings, "privacy", "erase", "--contacts-from", "-", "--dry-run",
                   stdin="gina@example.com\n(212) 555-0103\n")
    assert "would erase the contacts of 2 requests" in proc.stdout, proc.stderr
    assert "gina" not in (proc.stdout + proc.stderr).lower()
    proc = run_cli(settings, "privacy", "erase", "--contacts-from", "-",
                   stdin="gina@example.com\n(212) 555-0103\n")
    assert proc.returncode == 0, proc.stderr
    assert set(readable(db, settings)) == {"three"}


def test_old_closures_are_not_surveyed(settings, topics, db, plain_smtp):
    from tests.consumers.test_dispatcher import dispatch

    server = plain_smtp()
    mail = replace(settings, survey_secret="test-secret-0123456789abcdef", smtp_host="127.0.0.1",
                   smtp_port=server.port, smtp_starttls=False, sms_provider="none",
                   survey_max_closure_age_days=7)
    produce(mail, [created("old", NOW - timedelta(days=30), email="h@example.com"),
                   closed("old", NOW - timedelta(days=8)),
                   created("new", NOW - timedelta(days=30), email="i@example.com"),
                   closed("new", NOW - timedelta(days=6))])
    project(mail)
    stats = dispatch(mail).stats
    assert (stats.sent, stats.too_old, stats.no_contact) == (1, 1, 0)
    rows = dict(db.execute("SELECT request_id, status FROM survey_dispatch").fetchall())
    assert rows == {"old": "too_old", "new": "sent"}


def test_the_migration_seals_contacts_projected_in_the_clear(base_settings):
    """A deployment that projected plain contacts before the vault existed: upgrading seals
    them in place, and the plain columns are gone."""
    import psycopg

    from storage.db import admin_statement
    from storage.migrate import upgrade
    from tests.conftest import _with_database

    name = f"nyc311_mig_{uuid.uuid4().hex[:8]}"
    admin_statement(base_settings, f'CREATE DATABASE "{name}"')
    settings = replace(base_settings,
                       database_url=_with_database(base_settings.database_url, name))
    try:
        upgrade(settings, "0003")
        with psycopg.connect(settings.libpq_url, autocommit=True,
                             options="-c search_path=nyc311") as conn:
            conn.execute("INSERT INTO contacts (request_id, event_id, created_at, email, phone) "
                         "VALUES ('old', %s, now(), 'j@example.com', '+12125550105')",
                         (uuid.uuid4(),))
            upgrade(settings)
            columns = {c for (c,) in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = 'nyc311' AND table_name = 'contacts'")}
            assert columns == {"request_id", "event_id", "created_at", "key_id", "sealed"}
            assert readable(conn, settings) == {"old": ("j@example.com", "+12125550105")}
    finally:
        admin_statement(base_settings, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
