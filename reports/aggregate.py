"""The monthly tables' counts and rates, computed in PostgreSQL (ARCHITECTURE §7).

Month M runs from the first instant of M to the first instant of M+1 in America/New_York, which
PostgreSQL converts with the time zone database, daylight saving time included. Every filter is
on event time (created_at, closed_at, answered_at), so the same projection gives the same
numbers; only late events change them. Each query writes its rows into a temporary table
``_new_<table>``; :mod:`reports.publish` completes them with intervals and reliability
(:mod:`reports.measures`) and compares them with the published revision.
"""

from __future__ import annotations

import re
from datetime import datetime

import psycopg

from reports.model import DISSATISFACTION_REASONS, SATISFACTION_RESPONSES, UNIQUE_KEY_DIGITS

MONTH_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")

_BOUNDS = """
SELECT (%(month)s || '-01')::timestamp AT TIME ZONE 'America/New_York',
       ((%(month)s || '-01')::date + interval '1 month')::timestamp AT TIME ZONE 'America/New_York'
"""

# Every query takes %(month)s, %(start)s, %(end)s and %(as_of)s.
_RECEIVED = """
WITH r AS (
    SELECT agency, agency_name, complaint_type FROM requests
    WHERE created_at >= %(start)s AND created_at < %(end)s
), names AS (  -- one name per agency: the one most of the month's requests gave
    SELECT DISTINCT ON (agency) agency, agency_name
    FROM (SELECT agency, agency_name, count(*) AS n FROM r GROUP BY 1, 2) AS counted
    ORDER BY agency, n DESC, agency_name
)
SELECT %(month)s AS month, r.agency, names.agency_name, r.complaint_type, count(*) AS received
FROM r JOIN names USING (agency)
GROUP BY r.agency, names.agency_name, r.complaint_type
"""

_CLOSURE = """
SELECT %(month)s AS month, r.agency, r.complaint_type,
       count(*) AS received,
       count(*) FILTER (WHERE c.request_id IS NOT NULL) AS closed,
       round(count(*) FILTER (WHERE c.request_id IS NOT NULL)::numeric / count(*), 4)
           AS closure_rate,
       %(as_of)s::timestamptz AS as_of
FROM requests r
LEFT JOIN LATERAL (
    SELECT request_id FROM closures
    WHERE closures.request_id = r.request_id AND closures.closed_at < %(as_of)s LIMIT 1
) c ON true
WHERE r.created_at >= %(start)s AND r.created_at < %(end)s
GROUP BY r.agency, r.complaint_type
"""

_ANSWERS = """
SELECT a.satisfaction, a.reopen_requested, r.agency, r.complaint_type
FROM survey_answers a JOIN requests r USING (request_id)
WHERE a.answered_at >= %(start)s AND a.answered_at < %(end)s
"""

# A reopen request, in every table that counts them: the answer's reopen_requested, which the
# survey page sets for the ticked box and for the reason "... should be reopened" alike (and
# schemas/validate.py refuses that reason without it).
_IS_REOPEN_REQUEST = "a.reopen_requested"

_REOPEN = f"""
WITH a AS ({_ANSWERS})
SELECT %(month)s AS month, complaint_type,
       count(*) AS surveys_answered,
       count(*) FILTER (WHERE {_IS_REOPEN_REQUEST}) AS reopen_requested,
       round(count(*) FILTER (WHERE {_IS_REOPEN_REQUEST})::numeric / count(*), 4) AS reopen_rate
FROM a GROUP BY complaint_type
"""

_SATISFACTION = f"""
WITH a AS ({_ANSWERS}), counted AS (
    SELECT agency, complaint_type,
           count(satisfaction) AS responses,
           count(*) FILTER (WHERE satisfaction = 'STRONGLY_AGREE') AS strongly_agree,
           count(*) FILTER (WHERE satisfaction = 'AGREE') AS agree,
           count(*) FILTER (WHERE satisfaction = 'NEUTRAL') AS neutral,
           count(*) FILTER (WHERE satisfaction = 'DISAGREE') AS disagree,
           count(*) FILTER (WHERE satisfaction = 'STRONGLY_DISAGREE') AS strongly_disagree,
           avg(CASE satisfaction WHEN 'STRONGLY_AGREE' THEN 100 WHEN 'AGREE' THEN 75
                                 WHEN 'NEUTRAL' THEN 50 WHEN 'DISAGREE' THEN 25
                                 WHEN 'STRONGLY_DISAGREE' THEN 0 END) AS mean
    FROM a GROUP BY agency, complaint_type
)
SELECT %(month)s AS month, agency, complaint_type, responses, strongly_agree, agree, neutral,
       disagree, strongly_disagree,
       CASE WHEN responses > 0
            THEN round((strongly_agree + agree)::numeric / responses, 4) END AS share_satisfied,
       round(mean, 2) AS mean_score
FROM counted
"""

# The surveys sent in the month per agency, how many were answered by as_of, and how many of
# those answers asked for a reopen (the same reopen request as reopen_rates').
_RESPONSE = f"""
SELECT %(month)s AS month, r.agency,
       count(*) AS surveys_sent,
       count(a.survey_id) AS surveys_answered,
       round(count(a.survey_id)::numeric / count(*), 4) AS response_rate,
       count(*) FILTER (WHERE {_IS_REOPEN_REQUEST}) AS reopen_requested
FROM surveys s
JOIN requests r USING (request_id)
LEFT JOIN survey_answers a ON a.survey_id = s.survey_id AND a.answered_at < %(as_of)s
WHERE s.sent_at >= %(start)s AND s.sent_at < %(end)s
GROUP BY r.agency
"""

def _literal(text: str) -> str:
    """An SQL string literal of ``text`` for a query bound with ``%(name)s`` parameters."""
    return "'" + text.replace("'", "''").replace("%", "%%") + "'"


def _labels(column: str, labels: tuple[tuple[str, str], ...]) -> str:
    """``column``'s code as its published text; NULL for NULL."""
    whens = " ".join(f"WHEN {_literal(code)} THEN {_literal(text)}" for code, text in labels)
    return f"CASE {column} {whens} END"


# NYC's survey layout, one row per answer. The Unique Key is HMAC-SHA256 (RFC 2104) of the
# survey id under the publication schema's secret key (publication_key, migration 0008), in
# PostgreSQL's core functions, so the key never leaves the server: the 32-byte key is padded
# to SHA-256's 64-byte block and XORed with the inner (0x36) and outer (0x5c) pads.
# {publication_key} is the schema-qualified table.
_SURVEY_RESPONSES = f"""
WITH secret AS (
    SELECT decode(string_agg(lpad(to_hex(get_byte(k.block, i) # 54), 2, '0'), '' ORDER BY i),
                  'hex') AS inner_key,
           decode(string_agg(lpad(to_hex(get_byte(k.block, i) # 92), 2, '0'), '' ORDER BY i),
                  'hex') AS outer_key
    FROM (SELECT key || decode(repeat('00', 64 - length(key)), 'hex') AS block
          FROM {{publication_key}}) AS k,
         generate_series(0, 63) AS i
)
SELECT %(month)s AS month,
       substr(encode(sha256(secret.outer_key || sha256(
           secret.inner_key || convert_to(a.survey_id::text, 'UTF8'))), 'hex'),
           1, {UNIQUE_KEY_DIGITS}) AS unique_key,
       r.agency AS agency_acronym, r.agency_name, r.complaint_type, r.descriptor, r.borough,
       coalesce(sent_for.resolution_description, latest.resolution_description)
           AS resolution_description,
       substr(%(month)s, 1, 4)::integer AS survey_year,
       substr(%(month)s, 6, 2)::integer AS survey_month,
       {_labels("a.satisfaction", SATISFACTION_RESPONSES)} AS satisfaction_response,
       {_labels("a.dissatisfaction_reason", DISSATISFACTION_REASONS)} AS dissatisfaction_reason
FROM survey_answers a
JOIN requests r USING (request_id)
CROSS JOIN secret
LEFT JOIN surveys s ON s.survey_id = a.survey_id
LEFT JOIN closures sent_for ON sent_for.event_id = s.closure_event_id
LEFT JOIN LATERAL (  -- a survey that names no closure: the request's latest up to the answer
    SELECT c.resolution_description FROM closures c
    WHERE s.closure_event_id IS NULL AND c.request_id = a.request_id
      AND c.closed_at <= a.answered_at
    ORDER BY c.closed_at DESC, c.event_id DESC LIMIT 1
) latest ON true
WHERE a.answered_at >= %(start)s AND a.answered_at < %(end)s
"""

QUERIES = {
    "requests_received": _RECEIVED,
    "closure_rates": _CLOSURE,
    "reopen_rates": _REOPEN,
    "satisfaction": _SATISFACTION,
    "survey_response_rates": _RESPONSE,
    "survey_responses": _SURVEY_RESPONSES,
}


class MonthError(ValueError):
    """A month that cannot be published (malformed, or not over yet)."""


def check_month(month: str) -> str:
    if not MONTH_RE.match(month):
        raise MonthError(f"month must be YYYY-MM, got {month!r}")
    return month


def month_bounds(conn: psycopg.Connection, month: str) -> tuple[datetime, datetime]:
    """First instant of ``month`` and of the next month, New York time, as UTC instants."""
    row = conn.execute(_BOUNDS, {"month": check_month(month)}).fetchone()
    assert row is not None
    return row[0], row[1]


def check_publication_key(conn: psycopg.Connection, schema: str) -> None:
    """MonthError unless the publication schema holds its secret key (migration 0008)."""
    row = conn.execute(f'SELECT length(key) FROM "{schema}".publication_key').fetchone()
    if row is None or row[0] != 32:
        raise MonthError(
            f'"{schema}".publication_key holds no 32-byte key: survey_responses\' Unique Keys '
            "cannot be made. Restore the key from a backup (a new key changes every Unique Key "
            "already published)")


def aggregate(conn: psycopg.Connection, month: str, as_of: datetime, *,
              schema: str = "published") -> None:
    """Compute the tables of ``month`` into temporary tables ``_new_<table>``; ``schema`` is
    the publication schema, whose secret key survey_responses' Unique Keys are made with."""
    start, end = month_bounds(conn, month)
    check_publication_key(conn, schema)
    params = {"month": month, "start": start, "end": end, "as_of": as_of}
    # CREATE TABLE AS takes no server-side parameters: bind them on the client (values only;
    # the publication key is read by the query itself, so it is in no statement's text)
    with psycopg.ClientCursor(conn) as cur:
        for table, query in QUERIES.items():
            query = query.replace("{publication_key}", f'"{schema}".publication_key')
            cur.execute(f"DROP TABLE IF EXISTS _new_{table}")
            cur.execute(f"CREATE TEMP TABLE _new_{table} AS {query}", params)
