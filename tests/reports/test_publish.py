"""The monthly tables against a hand-computed fixture, New York month boundaries, revisions,
the analyst role, and the absence of personal data in what is published."""

from __future__ import annotations

import math
import re
import statistics
import uuid
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import psycopg
import pytest

from nyc311.sealing import new_key, seal
from reports.aggregate import MonthError
from reports.output import build_site
from reports.publish import load_publication, publish_month

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 28, tzinfo=UTC)
HPD = "Department of Housing Preservation and Development"


def request(db, rid: str, created: datetime, agency: str = "HPD", agency_name: str = HPD,
            ctype: str = "HEAT/HOT WATER", email: str | None = None) -> None:
    db.execute(
        "INSERT INTO requests (request_id, event_id, created_at, agency, agency_name, "
        "complaint_type, channel, has_contact) VALUES (%s, %s, %s, %s, %s, %s, 'ONLINE', %s)",
        (rid, uuid.uuid4(), created, agency, agency_name, ctype, email is not None))
    if email:
        key, key_id = new_key(), str(uuid.uuid4())
        db.execute("INSERT INTO nyc311_vault.contact_keys (key_id, request_id, key) "
                   "VALUES (%s, %s, %s)", (key_id, rid, key))
        db.execute("INSERT INTO contacts (request_id, event_id, created_at, key_id, sealed) "
                   "VALUES (%s, %s, %s, %s, %s)", (rid, uuid.uuid4(), created, key_id,
                                                   seal(key, key_id, rid, email, "+12125550199")))


def closure(db, rid: str, closed: datetime) -> None:
    db.execute("INSERT INTO closures (event_id, request_id, closed_at, status) "
               "VALUES (%s, %s, %s, 'RESOLVED')", (uuid.uuid4(), rid, closed))


def answer(db, rid: str, at: datetime, level: str | None, reopen: bool = False,
           feedback: str | None = None) -> None:
    db.execute(
        "INSERT INTO survey_answers (survey_id, event_id, request_id, answered_at, language, "
        "satisfaction, reopen_requested, feedback) VALUES (%s, %s, %s, %s, 'en', %s, %s, %s)",
        (uuid.uuid4(), uuid.uuid4(), rid, at, level, reopen, feedback))


def t(day: int, hour: int = 12, month: int = 10) -> datetime:
    """A UTC instant in 2026 (October is EDT, UTC-4)."""
    return datetime(2026, month, day, hour, tzinfo=UTC)


@pytest.fixture
def fixture(db):
    """October 2026, small enough to compute by hand."""
    request(db, "1", t(3), email="one@example.com")
    request(db, "2", t(4))
    request(db, "3", t(5), agency_name="HPD")  # a minority spelling of the agency's name
    request(db, "4", t(6), agency="NYPD", agency_name="New York City Police Department",
            ctype="Noise - Residential")
    request(db, "0", t(20, month=9))  # September: not received in October
    closure(db, "1", t(4))
    closure(db, "1", t(9))  # closed twice: still one closed request
    closure(db, "2", t(30))
    closure(db, "3", datetime(2026, 11, 2, tzinfo=UTC))  # after as_of: not closed
    answer(db, "1", t(10), "STRONGLY_AGREE", feedback="Thanks — call me at 212-555-0199")
    answer(db, "2", t(11), "AGREE")
    answer(db, "3", t(12), "DISAGREE")
    answer(db, "0", t(13), None, reopen=True)  # unrated, September request, answered in October
    answer(db, "4", t(14), None, feedback="only words")  # no rating: zero responses for NYPD
    answer(db, "2", t(1, month=11), "NEUTRAL")  # answered in November: not in October
    return db


def rows(pub, table: str) -> list[tuple]:
    return [tuple(r.values()) for r in pub.tables[table]]


def test_every_column_of_the_four_tables_by_hand(fixture):
    pub, new = publish_month(fixture, "2026-10", now=NOW)
    assert new and pub.revision == 1
    as_of = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)  # midnight, New York (EDT)
    assert pub.as_of == as_of
    assert rows(pub, "requests_received") == [
        ("2026-10", "HPD", HPD, "HEAT/HOT WATER", 3),
        ("2026-10", "NYPD", "New York City Police Department", "Noise - Residential", 1),
    ]
    # every denominator is below 10: the rates are computed, then suppressed (the counts stay)
    suppressed = (None, None, "suppressed")
    assert rows(pub, "closure_rates") == [
        ("2026-10", "HPD", "HEAT/HOT WATER", 3, 2, None, as_of, *suppressed),
        ("2026-10", "NYPD", "Noise - Residential", 1, 0, None, as_of, *suppressed),
    ]
    assert rows(pub, "reopen_rates") == [
        ("2026-10", "HEAT/HOT WATER", 4, 1, None, *suppressed),
        ("2026-10", "Noise - Residential", 1, 0, None, *suppressed),
    ]
    assert rows(pub, "satisfaction") == [
        # responses 3: SA, A, D (the unrated answer is not a response)
        ("2026-10", "HPD", "HEAT/HOT WATER", 3, 1, 1, 0, 1, 0, None, None, None, None,
         *suppressed),
        # an answer without a rating: zero responses, so the rates are empty, not 0
        ("2026-10", "NYPD", "Noise - Residential", 0, 0, 0, 0, 0, 0, None, None, None, None,
         *suppressed),
    ]
    # what the aggregation computed before suppression: (1+1)/3, (100+75+25)/3
    assert fixture.execute("SELECT closure_rate FROM _new_closure_rates ORDER BY agency"
                           ).fetchall() == [(Decimal("0.6667"),), (Decimal("0.0000"),)]
    assert fixture.execute("SELECT reopen_rate FROM _new_reopen_rates ORDER BY complaint_type"
                           ).fetchall() == [(Decimal("0.2500"),), (Decimal("0.0000"),)]
    assert fixture.execute("SELECT share_satisfied, mean_score FROM _new_satisfaction "
                           "ORDER BY agency").fetchall() == [
        (Decimal("0.6667"), Decimal("66.67")), (None, None)]
    files = build_site(fixture)
    csv = files["data/2026-10/satisfaction.csv"].decode()
    assert csv.splitlines()[2].endswith(",0,0,0,0,0,0,,,,,,,suppressed")  # empty, not 0


def wilson(k: int, n: int) -> tuple[float, float]:
    """The Wilson score interval in its closed form (Newcombe 1998, method 3), 95%."""
    z = 1.959963984540054
    root = z * math.sqrt(z * z + 4 * k * (1 - k / n))
    return ((2 * k + z * z - root) / (2 * (n + z * z)),
            (2 * k + z * z + root) / (2 * (n + z * z)))


def four(x: float) -> float:
    return float(Decimal(str(x)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))


def test_intervals_and_reliability_from_the_counts(db):
    """25 requests (20 closed, all answered) are reliable; 15 (12 closed) unreliable."""
    levels = ["STRONGLY_AGREE"] * 8 + ["AGREE"] * 7 + ["NEUTRAL"] * 5 + ["DISAGREE"] * 3 + [
        "STRONGLY_DISAGREE"] * 2
    for i in range(25):
        request(db, f"r{i}", t(3))
        if i < 20:
            closure(db, f"r{i}", t(4))
        answer(db, f"r{i}", t(10), levels[i], reopen=i < 5)
    for i in range(15):
        request(db, f"u{i}", t(3), agency="DOT", agency_name="Transportation",
                ctype="Street Light Condition")
        if i < 12:
            closure(db, f"u{i}", t(4))
    pub, _ = publish_month(db, "2026-10", now=NOW)
    closures = {r["agency"]: r for r in pub.tables["closure_rates"]}
    hpd, dot = closures["HPD"], closures["DOT"]
    assert (hpd["closure_rate"], hpd["reliability"]) == (0.8, "reliable")
    assert (hpd["closure_rate_ci_low"], hpd["closure_rate_ci_high"]) == tuple(
        four(b) for b in wilson(20, 25))
    assert (dot["closure_rate"], dot["reliability"]) == (0.8, "unreliable")
    assert (dot["closure_rate_ci_low"], dot["closure_rate_ci_high"]) == tuple(
        four(b) for b in wilson(12, 15))
    (reopen,) = pub.tables["reopen_rates"]
    assert (reopen["reopen_rate"], reopen["reliability"]) == (0.2, "reliable")
    assert (reopen["reopen_rate_ci_low"], reopen["reopen_rate_ci_high"]) == tuple(
        four(b) for b in wilson(5, 25))
    (sat,) = pub.tables["satisfaction"]
    assert (sat["share_satisfied"], sat["reliability"]) == (0.6, "reliable")
    assert (sat["share_satisfied_ci_low"], sat["share_satisfied_ci_high"]) == tuple(
        four(b) for b in wilson(15, 25))
    scores = [{"STRONGLY_AGREE": 100, "AGREE": 75, "NEUTRAL": 50, "DISAGREE": 25,
               "STRONGLY_DISAGREE": 0}[level] for level in levels]
    half = 1.959963984540054 * statistics.stdev(scores) / math.sqrt(len(scores))
    mean = statistics.fmean(scores)
    assert sat["mean_score"] == round(mean, 2)
    assert (sat["mean_score_ci_low"], sat["mean_score_ci_high"]) == (
        float(Decimal(str(mean - half)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)),
        float(Decimal(str(mean + half)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)))
    # the publication schema keeps what the files show, for analysts
    stored = db.execute("SELECT closure_rate, closure_rate_ci_low, closure_rate_ci_high, "
                        "reliability FROM published.closure_rates WHERE agency = 'DOT'"
                        ).fetchone()
    assert stored == (Decimal("0.8000"), Decimal(str(dot["closure_rate_ci_low"])),
                      Decimal(str(dot["closure_rate_ci_high"])), "unreliable")


def test_a_month_published_before_the_intervals_keeps_its_revision(fixture):
    """A revision stored without the derived columns (as before migration 0008) is completed
    in place when its month is published again: no count changed, so no new revision."""
    first, _ = publish_month(fixture, "2026-10", now=NOW)
    fixture.execute("UPDATE published.closure_rates SET closure_rate = 0.6667, "
                    "closure_rate_ci_low = NULL, closure_rate_ci_high = NULL, reliability = NULL "
                    "WHERE agency = 'HPD'")
    fixture.execute("UPDATE published.revisions SET content_sha256 = 'before-0008'")
    again, new = publish_month(fixture, "2026-10", now=NOW + timedelta(days=1))
    assert not new and again.revision == 1 and again.published_at == first.published_at
    assert fixture.execute("SELECT closure_rate, reliability FROM published.closure_rates "
                           "WHERE agency = 'HPD'").fetchone() == (None, "suppressed")
    assert fixture.execute("SELECT content_sha256 FROM published.revisions").fetchone()[0] != (
        "before-0008")


@pytest.mark.parametrize(("month", "inside", "outside"), [
    # DST starts 2026-03-08: March opens at 05:00Z (EST) and ends at 04:00Z (EDT)
    ("2026-03", [datetime(2026, 3, 1, 5, 0), datetime(2026, 4, 1, 3, 30)],
     [datetime(2026, 3, 1, 4, 59), datetime(2026, 4, 1, 4, 0)]),
    # DST ends 2026-11-01: November opens at 04:00Z (EDT) and ends at 05:00Z (EST)
    ("2026-11", [datetime(2026, 11, 1, 4, 0), datetime(2026, 12, 1, 4, 30)],
     [datetime(2026, 11, 1, 3, 59), datetime(2026, 12, 1, 5, 0)]),
    # 23:30 on the last day of October, New York, is 03:30Z on November 1st
    ("2026-10", [datetime(2026, 11, 1, 3, 30)], [datetime(2026, 11, 1, 4, 0)]),
])
def test_month_boundaries_in_new_york_time(db, month, inside, outside):
    for i, created in enumerate(inside + outside):
        request(db, f"b{i}", created.replace(tzinfo=UTC))
    pub, _ = publish_month(db, month, now=datetime(2027, 1, 1, tzinfo=UTC))
    assert rows(pub, "requests_received")[0][-1] == len(inside)


def test_republishing_gives_identical_files_and_a_late_event_a_new_revision(fixture):
    first, _ = publish_month(fixture, "2026-10", now=NOW)
    files = build_site(fixture)
    again, new = publish_month(fixture, "2026-10", now=NOW + timedelta(days=1))
    assert not new and again.revision == 1 and again.published_at == first.published_at
    assert build_site(fixture) == files

    closure(fixture, "4", t(20))  # a late closure event for October's NYPD request
    late, new = publish_month(fixture, "2026-10", now=NOW + timedelta(days=2))
    assert new and late.revision == 2
    assert late.changes[0] == "closure_rates: 1 row(s) changed"
    assert "NYPD / Noise - Residential: closed 0 → 1" in late.changes[1]
    assert [h[0] for h in load_publication(fixture, "2026-10").history] == [1, 2]
    after = build_site(fixture)
    assert after["data/2026-10/closure_rates.csv"] != files["data/2026-10/closure_rates.csv"]
    assert after["data/2026-10/requests_received.csv"] == files[
        "data/2026-10/requests_received.csv"]


def test_a_month_in_progress_needs_an_explicit_as_of(db):
    with pytest.raises(MonthError, match="has not ended"):
        publish_month(db, "2026-11", now=NOW)
    pub, _ = publish_month(db, "2026-11", as_of=NOW, now=NOW)
    assert pub.as_of == NOW
    with pytest.raises(MonthError, match="YYYY-MM"):
        publish_month(db, "2026-13", now=NOW)


def test_nothing_personal_is_published(fixture):
    publish_month(fixture, "2026-10", now=NOW)
    for path, content in build_site(fixture).items():
        text = content.decode("utf-8", "replace")
        assert "@example.com" not in text, path
        assert not re.search(r"\+?1?[ -]?\(?212\)?[ -]?555[ -]?01\d\d", text), path
        assert "Thanks" not in text and "only words" not in text, path


def test_the_analyst_role_reads_the_published_tables_and_nothing_else(settings, fixture):
    publish_month(fixture, "2026-10", now=NOW)
    login = f"analyst_{uuid.uuid4().hex[:8]}"
    fixture.execute(f"CREATE ROLE {login} LOGIN PASSWORD 'pw' IN ROLE nyc311_analyst")
    try:
        url = settings.libpq_url.replace("nyc311:nyc311@", f"{login}:pw@")
        with psycopg.connect(url, autocommit=True) as analyst:
            count = analyst.execute("SELECT count(*) FROM published.closure_rates").fetchone()
            assert count == (2,)
            for table in ("nyc311.contacts", "nyc311.requests", "nyc311.survey_answers"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    analyst.execute(f"SELECT 1 FROM {table} LIMIT 1")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                analyst.execute("DELETE FROM published.closure_rates")
    finally:
        fixture.execute(f"DROP ROLE {login}")


def test_a_second_projection_schema_migrates_beside_the_published_one(settings, db):
    from dataclasses import replace

    from storage.migrate import current_revision, head_revision, upgrade

    assert upgrade(replace(settings, db_schema="nyc311_second")) == head_revision()
    assert current_revision(settings, schema="nyc311_second") == head_revision()
    tables = {t for (t,) in db.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'nyc311_second'")}
    assert {"requests", "closures", "survey_dispatch", "consumer_offsets"} <= tables
