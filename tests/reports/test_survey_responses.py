"""survey_responses, NYC's survey layout, from events that went through Kafka and the projector,
against a computation of its rows in plain Python from the same events.

The expectation reads the events, not the projection: the month filter in New York time, the
newest version of a request, the closure the survey was sent for (or the request's latest up to
the answer), NYC's labels and reasons, and the Unique Key as HMAC-SHA256 of the survey id under
the publication schema's key, computed here with Python's hmac module. Some answers are written
with SurveyAnswered v1, as answers from before the reason question were.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import math
import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fastavro import parse_schema, schemaless_writer

from nyc311.kafka import EventProducer
from producers.simulate import simulate_month
from reports.files import data_files
from reports.model import TABLES
from reports.output import build_site
from reports.publish import load_publication, publish_month
from reports.site import site_files
from schemas.serde import SCHEMA_DIR, SINGLE_OBJECT_MAGIC, _schema_fingerprint
from tests.helpers import Event, produce, project
from tests.reports.publications import publication

NEW_YORK = ZoneInfo("America/New_York")
MONTH = "2026-10"
NOW = datetime(2026, 11, 28, tzinfo=UTC)
HEADER = ["Unique Key", "Agency Acronym", "Agency Name", "Complaint Type", "Descriptor",
          "Borough", "Resolution Description", "Survey Year", "Survey Month",
          "Satisfaction Response", "Dissatisfaction Reason"]
LABELS = {"STRONGLY_AGREE": "Strongly Agree", "AGREE": "Agree", "NEUTRAL": "Neutral",
          "DISAGREE": "Disagree", "STRONGLY_DISAGREE": "Strongly Disagree"}
REASONS = {
    "NOT_CORRECTED": "The Agency did not correct the issue.",
    "NOT_CORRECTED_REOPEN": "The Agency did not correct the issue and this Service Request "
                            "should be reopened.",
    "CORRECTED_TOO_LATE": "The Agency corrected the issue, but they took too long to respond.",
    "CORRECTED_UNSATISFACTORY": "The Agency corrected the issue, but the work they did was "
                                "unsatisfactory.",
    "TOO_FEW_UPDATES": "The Agency did not provide enough status updates.",
    "UNHELPFUL_UPDATES": "Status updates were unhelpful, inaccurate, incomplete, and/or "
                         "confusing.",
    "INFORMATION_DISPUTED": "The Agency said I did not provide complete or accurate "
                            "information, but I did.",
    "OTHER": "Other",
}
EMAIL, PHONE = "rosa.survey@example.com", "+12125550147"
#: a complaint type whose answers are all without a reason (half of them SurveyAnswered v1)
PLAIN_TYPE = "No Reason Asked"


def _id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def month_events(seed: int = 13) -> tuple[list[Event], list[dict[str, Any]]]:
    """Requests and closures of October 2026 (the simulator), and surveys and answers of our
    own: (events to produce as the current schema, answers to produce as SurveyAnswered v1)."""
    rng = random.Random(seed)
    events: list[Event] = list(simulate_month(MONTH, 400, seed))
    created = {r["request_id"]: r for name, r in events if name == "request_created"}
    # a contact on a few requests: it must reach the projection and nothing published
    for r in list(created.values())[:5]:
        r["contact"] = {"email": EMAIL, "phone": PHONE}
    closures: dict[str, list[dict[str, Any]]] = {}
    for name, r in events:
        if name == "request_closed":
            closures.setdefault(r["request_id"], []).append(r)
    old_answers: list[dict[str, Any]] = []
    levels = [*LABELS, None]
    for n, (rid, closed) in enumerate(sorted(closures.items())):
        if n % 3 == 2:
            continue  # no survey for this one
        closure = closed[0]
        plain = n % 5 == 0  # answers from before the reason question (some as v1 records)
        if plain:
            events.append(("request_created", dict(
                created[rid], event_id=_id(rng), complaint_type=PLAIN_TYPE,
                occurred_at=created[rid]["occurred_at"] + timedelta(minutes=1))))
        sent_at = closure["occurred_at"] + timedelta(hours=1)
        names_closure = n % 4 != 1
        survey_id = _id(rng)
        events.append(("survey_sent", {
            "event_id": _id(rng), "occurred_at": sent_at, "request_id": rid,
            "survey_id": survey_id, "channel": "EMAIL", "language": "es",
            "closure_event_id": closure["event_id"] if names_closure else None}))
        answered_at = sent_at + timedelta(hours=rng.randint(1, 120))
        if not names_closure:  # a later closure before the answer, and one after it
            events.append(("request_closed", dict(
                closure, event_id=_id(rng), occurred_at=answered_at - timedelta(minutes=30),
                resolution_description=f"Closed again before the answer ({n}).")))
            events.append(("request_closed", dict(
                closure, event_id=_id(rng), occurred_at=answered_at + timedelta(minutes=30),
                resolution_description=f"Closed after the answer ({n}).")))
        satisfaction = rng.choice(levels)
        reason = None
        if not plain and satisfaction in ("DISAGREE", "STRONGLY_DISAGREE") and rng.random() < 0.8:
            reason = rng.choice(list(REASONS))
        box = rng.random() < 0.3
        answer = {
            "event_id": _id(rng), "occurred_at": answered_at, "request_id": rid,
            "survey_id": survey_id, "language": "es", "satisfaction": satisfaction,
            "reopen_requested": box or reason == "NOT_CORRECTED_REOPEN",
            "feedback": f"SECRET-FEEDBACK-{n} llame al 212-555-0147",
        }
        if plain and n % 2 == 0:
            old_answers.append(answer)
        else:
            events.append(("survey_answered", {**answer, "dissatisfaction_reason": reason}))
    # an answer to a request the projection never hears of, in October: not published
    events.append(("survey_answered", {
        "event_id": _id(rng), "occurred_at": datetime(2026, 10, 20, 15, tzinfo=UTC),
        "request_id": "10000001", "survey_id": _id(rng), "language": "en",
        "satisfaction": "DISAGREE", "reopen_requested": False, "feedback": None,
        "dissatisfaction_reason": "OTHER"}))
    return events, old_answers


def produce_v1(settings, answers: list[dict[str, Any]]) -> None:
    """SurveyAnswered records as a v1 writer encodes them (single-object encoding)."""
    v1 = parse_schema(json.loads(
        (SCHEMA_DIR / "history" / "survey_answered" / "v1.avsc").read_text()))
    with EventProducer(settings) as producer:
        for answer in answers:
            body = io.BytesIO()
            schemaless_writer(body, v1, answer)
            producer.produce_raw(settings.topic("nyc311.survey-answered"),
                                 answer["request_id"].encode(),
                                 SINGLE_OBJECT_MAGIC + _schema_fingerprint(v1) + body.getvalue())


def in_month(at: datetime, month: str = MONTH) -> bool:
    return at.astimezone(NEW_YORK).strftime("%Y-%m") == month


def unique_key(key: bytes, survey_id: str) -> str:
    return hmac.new(key, survey_id.encode(), hashlib.sha256).hexdigest()[:16]


def expected_rows(events: list[Event], old_answers: list[dict[str, Any]],
                  key: bytes) -> list[dict[str, Any]]:
    """survey_responses as the contract defines it, from the events."""
    requests: dict[str, dict[str, Any]] = {}
    closures: dict[str, dict[str, Any]] = {}
    surveys: dict[str, dict[str, Any]] = {}
    answers = [dict(a, dissatisfaction_reason=None) for a in old_answers]
    for name, r in events:
        if name == "request_created":
            current = requests.get(r["request_id"])
            if current is None or (r["occurred_at"], r["event_id"]) > (
                    current["occurred_at"], current["event_id"]):
                requests[r["request_id"]] = r
        elif name == "request_closed":
            closures[r["event_id"]] = r
        elif name == "survey_sent":
            surveys[r["survey_id"]] = r
        elif name == "survey_answered":
            answers.append(r)
    rows = []
    for a in answers:
        request = requests.get(a["request_id"])
        if request is None or not in_month(a["occurred_at"]):
            continue
        survey = surveys.get(a["survey_id"])
        if survey is not None and survey["closure_event_id"] is not None:
            closure = closures.get(survey["closure_event_id"])
        else:
            before = [c for c in closures.values() if c["request_id"] == a["request_id"]
                      and c["occurred_at"] <= a["occurred_at"]]
            closure = max(before, key=lambda c: (c["occurred_at"], c["event_id"]), default=None)
        rows.append({
            "Unique Key": unique_key(key, a["survey_id"]),
            "Agency Acronym": request["agency"], "Agency Name": request["agency_name"],
            "Complaint Type": request["complaint_type"], "Descriptor": request["descriptor"],
            "Borough": request["borough"],
            "Resolution Description": closure and closure["resolution_description"],
            "Survey Year": 2026, "Survey Month": 10,
            "Satisfaction Response": LABELS.get(a["satisfaction"]),
            "Dissatisfaction Reason": REASONS.get(a["dissatisfaction_reason"]),
        })
    return sorted(rows, key=lambda row: row["Unique Key"])


def publication_key(db) -> bytes:
    return bytes(db.execute("SELECT key FROM published.publication_key").fetchone()[0])


@pytest.fixture
def projected(settings, topics, db):
    events, old_answers = month_events()
    produce(settings, events)
    produce_v1(settings, old_answers)
    stats = project(settings)
    assert stats.dead_lettered == 0
    assert db.execute("SELECT count(*) FROM survey_answers WHERE dissatisfaction_reason "
                      "IS NOT NULL").fetchone()[0] > 10
    return events, old_answers


def csv_rows(body: bytes) -> tuple[list[str], list[dict[str, str]]]:
    header, *rows = csv.reader(io.StringIO(body.decode("utf-8"), newline=""))
    return header, [dict(zip(header, row, strict=True)) for row in rows]


def test_one_row_per_answer_of_the_month_as_computed_from_the_events(projected, db):
    events, old_answers = projected
    pub, new = publish_month(db, MONTH, now=NOW)
    assert new
    expected = expected_rows(events, old_answers, publication_key(db))
    answered = [a for name, a in events if name == "survey_answered"] + old_answers
    known = {r["request_id"] for name, r in events if name == "request_created"}
    assert len(expected) == sum(1 for a in answered
                                if in_month(a["occurred_at"]) and a["request_id"] in known)
    assert pub.tables["survey_responses"] == expected
    # every kind of row is there: reasons (the reopen one too), unrated, no closure found
    assert {r["Dissatisfaction Reason"] for r in expected} == {*REASONS.values(), None}
    assert None in {r["Satisfaction Response"] for r in expected}
    assert any(r["Resolution Description"].startswith("Closed again before the answer")
               for r in expected if r["Resolution Description"])

    files = build_site(db)
    header, rows = csv_rows(files[f"data/{MONTH}/survey_responses.csv"])
    assert header == HEADER
    assert rows == [{k: "" if v is None else str(v) for k, v in row.items()} for row in expected]
    assert json.loads(files[f"data/{MONTH}/survey_responses.json"]) == expected
    assert [r["Unique Key"] for r in rows] == sorted(r["Unique Key"] for r in rows)


def test_nothing_that_leads_to_a_request_or_a_person_is_published(projected, db):
    events, old_answers = projected
    publish_month(db, MONTH, now=NOW)
    files = build_site(db)
    body = files[f"data/{MONTH}/survey_responses.csv"]
    answers = [a for name, a in events if name == "survey_answered"] + old_answers
    survey_ids = {a["survey_id"] for a in answers}
    request_ids = {r["request_id"] for name, r in events if name == "request_created"}
    assert len(request_ids) == 400
    for path, content in files.items():
        for secret in (EMAIL, PHONE, "2125550147", "555-0147", "SECRET-FEEDBACK", "llame"):
            assert secret.encode() not in content, (path, secret)
    for content in (body, files[f"data/{MONTH}/survey_responses.json"]):
        for rid in request_ids:
            assert rid.encode() not in content, rid
        for survey_id in survey_ids:
            assert survey_id.encode() not in content
            assert survey_id.replace("-", "")[:16].encode() not in content
    # nor anything an unkeyed hash of an id would give
    keys = {row["Unique Key"] for row in csv_rows(body)[1]}
    for value in survey_ids | request_ids:
        for digest in (hashlib.sha256, hashlib.md5, hashlib.sha1):
            assert digest(value.encode()).hexdigest()[:16] not in keys


def test_the_unique_key_is_stable_across_revisions_and_changes_with_the_key(projected, db):
    events, _ = projected
    first, _ = publish_month(db, MONTH, now=NOW)
    before = build_site(db)[f"data/{MONTH}/survey_responses.csv"]
    again, new = publish_month(db, MONTH, now=NOW + timedelta(days=1))
    assert not new and again.revision == 1
    assert build_site(db)[f"data/{MONTH}/survey_responses.csv"] == before

    # a late answer: a new revision, one row more, every earlier key unchanged
    rid = next(r["request_id"] for name, r in events if name == "request_created")
    late_survey = str(uuid.uuid4())
    db.execute("INSERT INTO survey_answers (survey_id, event_id, request_id, answered_at, "
               "language, satisfaction, reopen_requested, feedback, dissatisfaction_reason) "
               "VALUES (%s, %s, %s, %s, 'ko', 'STRONGLY_DISAGREE', true, NULL, "
               "'NOT_CORRECTED_REOPEN')",
               (late_survey, uuid.uuid4(), rid, datetime(2026, 10, 31, 12, tzinfo=UTC)))
    late, new = publish_month(db, MONTH, now=NOW + timedelta(days=2))
    assert new and late.revision == 2
    keys = [r["Unique Key"] for r in first.tables["survey_responses"]]
    later = {r["Unique Key"]: r for r in late.tables["survey_responses"]}
    assert set(keys) < set(later) and len(later) == len(keys) + 1
    added = later[unique_key(publication_key(db), late_survey)]
    assert (added["Satisfaction Response"], added["Dissatisfaction Reason"]) == (
        "Strongly Disagree", REASONS["NOT_CORRECTED_REOPEN"])  # English, answered in Korean
    assert "survey_responses: 1 row(s) added" in late.changes

    # another publication key (another publication schema has its own): no key in common
    db.execute("UPDATE published.publication_key SET key = %s", (bytes(range(32)),))
    other, _ = publish_month(db, MONTH, now=NOW + timedelta(days=3))
    other_keys = {r["Unique Key"] for r in other.tables["survey_responses"]}
    assert len(other_keys) == len(later) and not other_keys & set(later)
    assert other_keys == {unique_key(bytes(range(32)), sid) for sid in
                          {str(s) for (s,) in db.execute(
                              "SELECT survey_id FROM survey_answers a JOIN requests USING "
                              "(request_id) WHERE answered_at >= '2026-10-01 04:00Z' "
                              "AND answered_at < '2026-11-01 04:00Z'").fetchall()}}


def test_the_reopen_rate_of_answers_without_a_reason_is_counted_as_before(projected, db):
    """Answers without a reason (v1 records among them) count exactly as their reopen box
    says; an answer with the reopen reason counts as a reopen request."""
    events, old_answers = projected
    pub, _ = publish_month(db, MONTH, now=NOW)
    requests: dict[str, dict[str, Any]] = {}
    for name, r in events:
        if name == "request_created" and (
                r["request_id"] not in requests
                or r["occurred_at"] > requests[r["request_id"]]["occurred_at"]):
            requests[r["request_id"]] = r
    answers = [dict(a, dissatisfaction_reason=None) for a in old_answers] + [
        a for name, a in events if name == "survey_answered"]
    counted: dict[str, list[int]] = {}
    for a in answers:
        if a["request_id"] in requests and in_month(a["occurred_at"]):
            ctype = requests[a["request_id"]]["complaint_type"]
            tally = counted.setdefault(ctype, [0, 0])
            tally[0] += 1
            tally[1] += a["reopen_requested"]
    published = {r["complaint_type"]: [r["surveys_answered"], r["reopen_requested"]]
                 for r in pub.tables["reopen_rates"]}
    assert published == counted
    plain = [a for a in answers if a["request_id"] in requests and in_month(a["occurred_at"])
             and requests[a["request_id"]]["complaint_type"] == PLAIN_TYPE]
    assert plain and all(a["dissatisfaction_reason"] is None for a in plain)
    assert {a["survey_id"] for a in old_answers} & {a["survey_id"] for a in plain}  # v1 too
    row = next(r for r in pub.tables["reopen_rates"] if r["complaint_type"] == PLAIN_TYPE)
    assert row["reopen_requested"] == sum(a["reopen_requested"] for a in plain)
    by_reason = [a for a in answers if a.get("dissatisfaction_reason") == "NOT_CORRECTED_REOPEN"]
    assert by_reason and all(a["reopen_requested"] for a in by_reason)


AS_OF = datetime(2026, 11, 1, tzinfo=NEW_YORK)  # October's default as_of


def is_reopen_request(answer: dict[str, Any]) -> bool:
    """What the survey offers for a reopen: the box, or the reason that says so."""
    return bool(answer["reopen_requested"]
                or answer.get("dissatisfaction_reason") == "NOT_CORRECTED_REOPEN")


def expected_agency_reopens(events: list[Event], old_answers: list[dict[str, Any]]
                            ) -> dict[str, tuple[int, int, int]]:
    """agency -> (surveys sent in October, of those answered by as_of, of those asking for a
    reopen), from the events: the agency of the newest RequestCreated of the request, the
    earliest SurveySent and SurveyAnswered of each survey."""
    requests: dict[str, dict[str, Any]] = {}
    sent: dict[str, dict[str, Any]] = {}
    answers: dict[str, dict[str, Any]] = {}
    everything = [*events, *(("survey_answered", dict(a, dissatisfaction_reason=None))
                             for a in old_answers)]
    for name, r in everything:
        if name == "request_created":
            current = requests.get(r["request_id"])
            if current is None or (r["occurred_at"], r["event_id"]) > (
                    current["occurred_at"], current["event_id"]):
                requests[r["request_id"]] = r
        elif name in ("survey_sent", "survey_answered"):  # the earliest of each survey
            kept = sent if name == "survey_sent" else answers
            if r["survey_id"] not in kept or r["occurred_at"] < kept[r["survey_id"]]["occurred_at"]:
                kept[r["survey_id"]] = r
    counted: dict[str, list[int]] = {}
    for survey_id, survey in sent.items():
        request = requests.get(survey["request_id"])
        if request is None or not in_month(survey["occurred_at"]):
            continue
        tally = counted.setdefault(request["agency"], [0, 0, 0])
        tally[0] += 1
        answer = answers.get(survey_id)
        if answer is not None and answer["occurred_at"] < AS_OF:
            tally[1] += 1
            tally[2] += is_reopen_request(answer)
    return {agency: (a, b, c) for agency, (a, b, c) in counted.items()}


def wilson_bounds(k: int, n: int) -> tuple[str, str]:
    """The 95% Wilson score interval in its closed form (Newcombe 1998), 4 decimals."""
    z = 1.959963984540054
    root = z * math.sqrt(z * z + 4 * k * (1 - k / n))
    low, high = ((2 * k + z * z + sign * root) / (2 * (n + z * z)) for sign in (-1, 1))
    return tuple(str(Decimal(repr(b)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))
                 for b in (max(low, 0.0), min(high, 1.0)))  # type: ignore[return-value]


def expected_trend(k: int, n: int) -> dict[str, str]:
    if n < 10:
        return {"value": "", "ci_low": "", "ci_high": "", "n": str(n),
                "reliability": "suppressed"}
    low, high = wilson_bounds(k, n)
    return {"value": f"{Decimal(k) / Decimal(n):.4f}", "ci_low": low, "ci_high": high,
            "n": str(n), "reliability": "reliable" if n >= 20 else "unreliable"}


def september_survey_answered_in_october(events: list[Event]) -> list[Event]:
    """A request of September whose survey, sent on September 30th, is answered on October
    2nd with the reopen reason: October's reopen_rates count it, October's cohort of surveys
    sent does not."""
    rid, survey_id = "10000002", str(uuid.uuid4())
    sent = datetime(2026, 9, 30, 18, tzinfo=NEW_YORK)
    created = next(r for name, r in events if name == "request_created")
    return [
        ("request_created", dict(created, event_id=str(uuid.uuid4()), request_id=rid,
                                 occurred_at=sent - timedelta(days=2), contact=None)),
        ("survey_sent", {"event_id": str(uuid.uuid4()), "occurred_at": sent, "request_id": rid,
                         "survey_id": survey_id, "channel": "EMAIL", "language": "en",
                         "closure_event_id": None}),
        ("survey_answered", {"event_id": str(uuid.uuid4()),
                             "occurred_at": datetime(2026, 10, 2, 9, tzinfo=NEW_YORK),
                             "request_id": rid, "survey_id": survey_id, "language": "en",
                             "satisfaction": "STRONGLY_DISAGREE", "reopen_requested": True,
                             "feedback": None,
                             "dissatisfaction_reason": "NOT_CORRECTED_REOPEN"}),
    ]


def test_each_agencys_reopen_rate_is_its_reopen_requests_among_the_surveys_sent(
        settings, projected, db):
    """survey_response_rates.reopen_requested, and the agencies' reopen-request rate in
    trends.csv, against the events: surveys sent in October per agency of the request, those
    answered before as_of, and of those the answers that ticked the box or chose the reopen
    reason."""
    events, old_answers = projected
    september = september_survey_answered_in_october(events)
    produce(settings, september)
    assert project(settings).dead_lettered == 0
    events = [*events, *september]
    want = expected_agency_reopens(events, old_answers)
    assert sum(r for _, _, r in want.values()) > 5 and len(want) > 3
    # the cohort is not the month's answers: some of October's surveys were answered after
    # as_of, and they are not counted
    late = [a for name, a in events if name == "survey_answered" and a["occurred_at"] >= AS_OF]
    assert late
    pub, _ = publish_month(db, MONTH, now=NOW)
    published = {r["agency"]: (r["surveys_sent"], r["surveys_answered"], r["reopen_requested"])
                 for r in pub.tables["survey_response_rates"]}
    assert published == want

    files = build_site(db)
    _, rows = csv_rows(files["trends.csv"])
    trend = {(r["agency"], r["complaint_type"]): r for r in rows
             if r["month"] == MONTH and r["measure"] == "reopen_rate_of_surveys_sent"}
    # every agency of the month, citywide, and no complaint type (the table has none)
    assert {("", "")} | {(agency, "") for agency in want} <= set(trend)
    assert {t for _, t in trend} == {""}
    for (agency, _), row in trend.items():
        if agency:  # an agency with requests but no survey sent: n = 0, suppressed
            _, answered, reopens = want.get(agency, (0, 0, 0))
            got = {k: row[k] for k in ("value", "ci_low", "ci_high", "n", "reliability")}
            assert got == expected_trend(reopens, answered), agency
    answered = sum(a for _, a, _ in want.values())
    reopens = sum(r for _, _, r in want.values())
    assert {k: trend[("", "")][k] for k in ("value", "ci_low", "ci_high", "n", "reliability")
            } == expected_trend(reopens, answered)
    # the month's own file carries the counts the trend divides
    _, monthly = csv_rows(files[f"data/{MONTH}/survey_response_rates.csv"])
    assert {r["agency"]: (int(r["surveys_answered"]), int(r["reopen_requested"]))
            for r in monthly} == {a: (n, k) for a, (_, n, k) in want.items()}
    # and the citywide reopen_rate is still that of reopen_rates, the answers of the month
    city = next(r for r in rows if (r["month"], r["agency"], r["complaint_type"],
                                    r["measure"]) == (MONTH, "", "", "reopen_rate"))
    assert int(city["n"]) == sum(r["surveys_answered"] for r in pub.tables["reopen_rates"])
    assert int(city["n"]) == answered + 1  # September's survey, answered in October


def test_a_month_published_before_the_reopen_count_keeps_its_numbers(projected, db):
    """A revision stored before survey_response_rates had reopen_requested (migration 0009)
    reads back with the column empty: no agency reopen-request rate for that month, every
    other number as it was. Published again, the month gets the counts in a new revision that
    says so, and no number that was published changes."""
    first, _ = publish_month(db, MONTH, now=NOW)
    fresh = build_site(db)
    db.execute("UPDATE published.survey_response_rates SET reopen_requested = NULL")
    db.execute("UPDATE published.revisions SET content_sha256 = 'before-0009'")
    old = build_site(db)
    for spec in TABLES:
        if spec.name != "survey_response_rates":
            assert old[f"data/{MONTH}/{spec.name}.csv"] == fresh[f"data/{MONTH}/{spec.name}.csv"]
    header, rows = csv_rows(old[f"data/{MONTH}/survey_response_rates.csv"])
    assert header[-1] == "reopen_requested" and {r["reopen_requested"] for r in rows} == {""}
    _, fresh_rows = csv_rows(fresh[f"data/{MONTH}/survey_response_rates.csv"])
    assert [{k: v for k, v in r.items() if k != "reopen_requested"} for r in rows] == [
        {k: v for k, v in r.items() if k != "reopen_requested"} for r in fresh_rows]
    _, trend_old = csv_rows(old["trends.csv"])
    _, trend_fresh = csv_rows(fresh["trends.csv"])
    assert trend_old == [r for r in trend_fresh if r["measure"] != "reopen_rate_of_surveys_sent"]

    again, new = publish_month(db, MONTH, now=NOW + timedelta(days=1))
    assert new and again.revision == 2
    assert again.tables == first.tables  # every number as a fresh publication has it
    assert again.changes[0] == (f"survey_response_rates: {len(rows)} row(s) changed")
    assert all("reopen_requested None → " in line for line in again.changes[1:])
    assert build_site(db)["trends.csv"] == fresh["trends.csv"]


def test_the_analyst_reads_the_rows_but_not_the_key(settings, projected, db):
    publish_month(db, MONTH, now=NOW)
    login = f"analyst_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE ROLE {login} LOGIN PASSWORD 'pw' IN ROLE nyc311_analyst")
    try:
        url = settings.libpq_url.replace("nyc311:nyc311@", f"{login}:pw@")
        with psycopg.connect(url, autocommit=True) as analyst:
            count = analyst.execute("SELECT count(*) FROM published.survey_responses "
                                    "WHERE month = %s", (MONTH,)).fetchone()[0]
            assert count == len(load_publication(db, MONTH).tables["survey_responses"])
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                analyst.execute("SELECT key FROM published.publication_key")
    finally:
        db.execute(f"DROP ROLE {login}")


def test_a_publication_schema_without_its_key_is_refused(db):
    db.execute("DELETE FROM published.publication_key")
    with pytest.raises(Exception, match="publication_key holds no 32-byte key"):
        publish_month(db, MONTH, now=NOW)


# -- the files and the pages, from a hand-built publication ---------------------------------------


def test_datapackage_describes_nycs_header_keyed_by_unique_key():
    files = data_files(publication())
    assert files["data/2025-01/survey_responses.csv"].decode().split("\n")[0] == ",".join(HEADER)
    package = json.loads(files["data/2025-01/datapackage.json"])
    resource = next(r for r in package["resources"] if r["name"] == "survey_responses")
    schema = resource["schema"]
    assert [f["name"] for f in schema["fields"]] == HEADER
    assert schema["primaryKey"] == ["Unique Key"]  # no month column: the folder is the month
    fields = {f["name"]: f for f in schema["fields"]}
    assert fields["Unique Key"]["constraints"] == {"required": True, "pattern": "[0-9a-f]{16}"}
    assert fields["Satisfaction Response"]["constraints"]["enum"] == list(LABELS.values())
    assert fields["Dissatisfaction Reason"]["constraints"]["enum"] == list(REASONS.values())
    assert fields["Survey Month"]["constraints"] == {"minimum": 1, "maximum": 12}


def test_the_month_page_counts_the_rows_and_links_the_files_without_listing_them():
    pub = publication()
    page = site_files([pub])["2025-01/index.html"].decode()
    start = page.index('<section id="survey_responses"')
    section = page[start:page.index("</section>", start)]
    assert "3 answered surveys in January 2025, one row each." in section
    assert 'href="../data/2025-01/survey_responses.csv"' in section
    assert 'href="../data/2025-01/survey_responses.json"' in section
    assert "<table" not in section and 'id="table-survey_responses"' not in page
    for row in pub.tables["survey_responses"]:
        assert row["Unique Key"] not in page
    assert 'href="#survey_responses"' in page  # in the table of contents like every table


def test_the_methodology_explains_the_layout_and_lists_nycs_reasons():
    text = site_files([publication()])["methodology.html"].decode()
    start = text.index('<section id="survey-layout"')
    section = " ".join(text[start:text.index("</section>", start)].split())
    for reason in REASONS.values():
        assert f"<li>{reason}</li>" in section
    for words in ("5ijn-vbdv", "Disagree or Strongly disagree", "NYC's English words",
                  "counts exactly as it did before", "Unique Key", "HMAC-SHA256"):
        assert words in section, words
