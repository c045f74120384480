"""Hand-built Publications for the file and website tests.

They carry what a real month can: an empty rate (no survey answered), an agency with no
satisfaction answers, rows of every reliability (suppressed below 10, unreliable below 20),
non-ASCII complaint types, a complaint type that is HTML markup (it must come out escaped on
the pages and verbatim in the data files), and a second revision with the changes it made.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from reports.measures import complete
from reports.model import Publication

NEW_YORK = ZoneInfo("America/New_York")
SCRIPT = "<script>alert(1)</script>"
ACCENTED = "Noise - Résidentiel 騒音"
CHANGE = "HPD HEAT/HOT WATER: 3 more requests closed before as_of (5,000 instead of 4,997)."


def _next_month(month: str) -> datetime:
    year, number = (int(part) for part in month.split("-"))
    return datetime(year + number // 12, number % 12 + 1, 1, tzinfo=NEW_YORK)


def publication(month: str = "2025-01", revision: int = 2) -> Publication:
    as_of = _next_month(month)
    requests = [
        {"month": month, "agency": "DOT", "agency_name": "Department of Transportation",
         "complaint_type": "Street Condition", "received": 1200},
        {"month": month, "agency": "HPD",
         "agency_name": "Department of Housing Preservation and Development",
         "complaint_type": "HEAT/HOT WATER", "received": 5321},
        {"month": month, "agency": "HPD",
         "agency_name": "Department of Housing Preservation and Development",
         "complaint_type": SCRIPT, "received": 3},
        {"month": month, "agency": "NYPD", "agency_name": "New York City Police Department",
         "complaint_type": ACCENTED, "received": 800},
    ]
    closures = [
        {"month": month, "agency": "DOT", "complaint_type": "Street Condition", "received": 1200,
         "closed": 900, "closure_rate": 0.75, "as_of": as_of},
        {"month": month, "agency": "HPD", "complaint_type": "HEAT/HOT WATER", "received": 5321,
         "closed": 5000, "closure_rate": 5000 / 5321, "as_of": as_of},
        {"month": month, "agency": "HPD", "complaint_type": SCRIPT, "received": 3, "closed": 1,
         "closure_rate": 1 / 3, "as_of": as_of},
        {"month": month, "agency": "NYPD", "complaint_type": ACCENTED, "received": 800,
         "closed": 790, "closure_rate": 790 / 800, "as_of": as_of},
    ]
    reopens = [
        {"month": month, "complaint_type": "HEAT/HOT WATER", "surveys_answered": 40,
         "reopen_requested": 6, "reopen_rate": 0.15},
        {"month": month, "complaint_type": "Street Condition", "surveys_answered": 0,
         "reopen_requested": 0, "reopen_rate": None},
        {"month": month, "complaint_type": ACCENTED, "surveys_answered": 7,
         "reopen_requested": 1, "reopen_rate": 1 / 7},
    ]
    satisfaction = [
        {"month": month, "agency": "DOT", "complaint_type": "Street Condition", "responses": 20,
         "strongly_agree": 2, "agree": 4, "neutral": 4, "disagree": 5, "strongly_disagree": 5,
         "share_satisfied": 0.3, "mean_score": 41.25},
        {"month": month, "agency": "HPD", "complaint_type": "HEAT/HOT WATER", "responses": 40,
         "strongly_agree": 14, "agree": 16, "neutral": 5, "disagree": 3, "strongly_disagree": 2,
         "share_satisfied": 0.75, "mean_score": 73.125},
        {"month": month, "agency": "NYPD", "complaint_type": ACCENTED, "responses": 0,
         "strongly_agree": 0, "agree": 0, "neutral": 0, "disagree": 0, "strongly_disagree": 0,
         "share_satisfied": None, "mean_score": None},
    ]
    responses = [
        {"month": month, "agency": "DOT", "surveys_sent": 50, "surveys_answered": 20,
         "response_rate": 0.4, "reopen_requested": 3},
        {"month": month, "agency": "HPD", "surveys_sent": 12, "surveys_answered": 5,
         "response_rate": 5 / 12, "reopen_requested": 1},
        {"month": month, "agency": "NYPD", "surveys_sent": 4, "surveys_answered": 0,
         "response_rate": 0.0, "reopen_requested": 0},
    ]
    year, number = (int(part) for part in month.split("-"))
    when = {"Survey Year": year, "Survey Month": number}
    # NYC's layout: its column names, no month column, by Unique Key
    survey_responses: list[dict[str, Any]] = [
        {"Unique Key": "0b6c1e3f5a7d9e21", "Agency Acronym": "DOT",
         "Agency Name": "Department of Transportation", "Complaint Type": "Street Condition",
         "Descriptor": "Pothole", "Borough": "BROOKLYN",
         "Resolution Description": "The Department of Transportation inspected the condition, "
                                   "and repaired it.", **when,
         "Satisfaction Response": "Strongly Disagree",
         "Dissatisfaction Reason": "The Agency did not correct the issue and this Service "
                                   "Request should be reopened."},
        {"Unique Key": "7f00a2c4e6b81d35", "Agency Acronym": "HPD",
         "Agency Name": "Department of Housing Preservation and Development",
         "Complaint Type": "HEAT/HOT WATER", "Descriptor": "ENTIRE BUILDING",
         "Borough": "BRONX", "Resolution Description": None, **when,
         "Satisfaction Response": "Agree", "Dissatisfaction Reason": None},
        {"Unique Key": "e93d5b7102f4a6c8", "Agency Acronym": "NYPD",
         "Agency Name": "New York City Police Department", "Complaint Type": ACCENTED,
         "Descriptor": None, "Borough": None, "Resolution Description": None, **when,
         "Satisfaction Response": None, "Dissatisfaction Reason": None},
    ]
    tables = {"requests_received": requests, "closure_rates": closures,
              "reopen_rates": reopens, "satisfaction": satisfaction,
              "survey_response_rates": responses, "survey_responses": survey_responses}
    first = as_of.replace(day=2, hour=9).astimezone(UTC)
    history: list[tuple[int, datetime, list[str]]] = [(1, first, [])]
    if revision > 1:
        history.append((revision, as_of.replace(day=20, hour=14).astimezone(UTC), [CHANGE]))
    return Publication(
        month=month, revision=revision, as_of=as_of, published_at=history[-1][1],
        tables={name: [complete(name, row) for row in rows] for name, rows in tables.items()},
        changes=history[-1][2], history=history[:-1])
