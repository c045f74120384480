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

_REOPEN = f"""
WITH a AS ({_ANSWERS})
SELECT %(month)s AS month, complaint_type,
       count(*) AS surveys_answered,
       count(*) FILTER (WHERE reopen_requested) AS reopen_requested,
       round(count(*) FILTER (WHERE reopen_requested)::numeric / count(*), 4) AS reopen_rate
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

_RESPONSE = """
SELECT %(month)s AS month, r.agency,
       count(*) AS surveys_sent,
       count(a.survey_id) AS surveys_answered,
       round(count(a.survey_id)::numeric / count(*), 4) AS response_rate
FROM surveys s
JOIN requests r USING (request_id)
LEFT JOIN survey_answers a ON a.survey_id = s.survey_id AND a.answered_at < %(as_of)s
WHERE s.sent_at >= %(start)s AND s.sent_at < %(end)s
GROUP BY r.agency
"""

QUERIES = {
    "requests_received": _RECEIVED,
    "closure_rates": _CLOSURE,
    "reopen_rates": _REOPEN,
    "satisfaction": _SATISFACTION,
    "survey_response_rates": _RESPONSE,
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


def aggregate(conn: psycopg.Connection, month: str, as_of: datetime) -> None:
    """Compute the tables of ``month`` into temporary tables ``_new_<table>``."""
    start, end = month_bounds(conn, month)
    params = {"month": month, "start": start, "end": end, "as_of": as_of}
    # CREATE TABLE AS takes no server-side parameters: bind them on the client (values only)
    with psycopg.ClientCursor(conn) as cur:
        for table, query in QUERIES.items():
            cur.execute(f"DROP TABLE IF EXISTS _new_{table}")
            cur.execute(f"CREATE TEMP TABLE _new_{table} AS {query}", params)
