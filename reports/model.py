"""The published contract (ARCHITECTURE §7) as data: files, columns, field descriptions.

Every writer (CSV, JSON, datapackage.json, the website, S3) reads the tables through these
definitions, so the column order and the documentation of every field live in one place.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from survey.i18n.reasons import REASONS


@dataclass(frozen=True)
class Column:
    name: str  # the file's header (and the key of the rows in Python)
    type: str  # Frictionless Table Schema type: string, integer, number, datetime
    description: str
    #: computed from the row's counts by reports.measures.complete, not by the aggregation
    derived: bool = False
    #: its column in PostgreSQL (the publication schema, the aggregation's query) where the
    #: header is no snake_case name (NYC's layout has spaces); empty: the same as ``name``
    field: str = ""

    @property
    def db_name(self) -> str:
        return self.field or self.name


@dataclass(frozen=True)
class TableSpec:
    name: str  # file stem, e.g. "requests_received"
    title: str
    description: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # the grain: one row per distinct key
    #: shown row by row on the month's page; a table too large for a page is not (the page
    #: says how many rows it has and links its files)
    on_page: bool = True
    #: what one row is, in words, where the key does not say it ("answered survey")
    grain: str = ""

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def aggregated_names(self) -> list[str]:
        """The columns the aggregation computes (reports/aggregate.py); the others derive."""
        return [c.name for c in self.columns if not c.derived]

    @property
    def has_month_column(self) -> bool:
        """Whether the rows carry their month; a table without one (NYC's layout) has the
        month of its folder, data/YYYY-MM/, and of the publication schema's ``month``."""
        return "month" in self.column_names

    def db_names(self, names: Iterable[str]) -> list[str]:
        """The PostgreSQL columns of the columns called ``names`` in the files."""
        by_name = {c.name: c.db_name for c in self.columns}
        return [by_name[n] for n in names]


MONTH = Column("month", "string", "Calendar month in America/New_York local time, YYYY-MM.")
AGENCY = Column("agency", "string", "Agency acronym, e.g. HPD.")
TYPE = Column("complaint_type", "string", "311 complaint type.")

#: Satisfaction Response of NYC's layout: the SurveyAnswered level and NYC's label for it.
SATISFACTION_RESPONSES: tuple[tuple[str, str], ...] = (
    ("STRONGLY_AGREE", "Strongly Agree"), ("AGREE", "Agree"), ("NEUTRAL", "Neutral"),
    ("DISAGREE", "Disagree"), ("STRONGLY_DISAGREE", "Strongly Disagree"))
#: Dissatisfaction Reason: the SurveyAnswered reason and NYC's English text (survey/i18n/reasons.py)
DISSATISFACTION_REASONS: tuple[tuple[str, str], ...] = REASONS
#: Hexadecimal digits of survey_responses' Unique Key (64 bits of its HMAC).
UNIQUE_KEY_DIGITS = 16


def _nyc(name: str, type_: str, description: str) -> Column:
    """A column of NYC's survey layout: the header as NYC writes it, the field in snake_case."""
    return Column(name, type_, description, field=name.lower().replace(" ", "_"))


def _interval(rate: str, bound: str, of: str, scale: str = "0-1, 4 decimals") -> Column:
    side = "Lower" if bound == "low" else "Upper"
    return Column(f"{rate}_ci_{bound}", "number",
                  f"{side} bound of the 95% {of} of {rate}, {scale}; empty when {rate} is.",
                  derived=True)


def _wilson(rate: str) -> tuple[Column, Column]:
    return (_interval(rate, "low", "Wilson score interval"),
            _interval(rate, "high", "Wilson score interval"))


def _reliability(denominator: str) -> Column:
    return Column(
        "reliability", "string",
        f"reliable, unreliable or suppressed, from {denominator}: suppressed below 10 (the "
        "row's rates and intervals are empty, the counts stay), unreliable below 20 (the rates "
        "are published but rest on few cases), reliable from 20.", derived=True)

TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        "requests_received", "Requests received",
        "Service requests created in the month, by agency and complaint type.",
        (MONTH, AGENCY,
         Column("agency_name", "string",
                "Agency name: the name most requests of the month gave for the agency."),
         TYPE,
         Column("received", "integer", "Requests created in the month (New York time).")),
        ("agency", "complaint_type")),
    TableSpec(
        "closure_rates", "Closure rates",
        "Of the requests received in the month, the share each agency closed by as_of.",
        (MONTH, AGENCY, TYPE,
         Column("received", "integer", "Requests created in the month."),
         Column("closed", "integer",
                "Of those, requests designated resolved, complete or closed before as_of."),
         Column("closure_rate", "number",
                "closed / received, 0-1, 4 decimals; empty when fewer than 10 requests were "
                "received (see reliability)."),
         Column("as_of", "datetime",
                "Closures up to this instant count (default: the first instant of the next "
                "month, New York time), ISO 8601 with offset."),
         *_wilson("closure_rate"), _reliability("received")),
        ("agency", "complaint_type")),
    TableSpec(
        "reopen_rates", "Reopen-request rates",
        "Surveys answered in the month, and the share that asked for the request to be reopened, "
        "by complaint type.",
        (MONTH, TYPE,
         Column("surveys_answered", "integer", "Surveys answered in the month."),
         Column("reopen_requested", "integer", "Of those, answers asking for a reopen."),
         Column("reopen_rate", "number",
                "reopen_requested / surveys_answered, 0-1, 4 decimals; empty when fewer than "
                "10 surveys were answered (see reliability)."),
         *_wilson("reopen_rate"), _reliability("surveys_answered")),
        ("complaint_type",)),
    TableSpec(
        "satisfaction", "Satisfaction with the agency's response",
        "Answers in the month to \"Overall, I am satisfied with the way my Service Request was "
        "handled\", by agency and complaint type.",
        (MONTH, AGENCY, TYPE,
         Column("responses", "integer", "Answers in the month that rated their satisfaction."),
         Column("strongly_agree", "integer", "Answers: Strongly agree (score 100)."),
         Column("agree", "integer", "Answers: Agree (75)."),
         Column("neutral", "integer", "Answers: Neutral (50)."),
         Column("disagree", "integer", "Answers: Disagree (25)."),
         Column("strongly_disagree", "integer", "Answers: Strongly disagree (0)."),
         Column("share_satisfied", "number",
                "(strongly_agree + agree) / responses, 0-1, 4 decimals; empty when there "
                "are fewer than 10 responses (see reliability)."),
         Column("mean_score", "number",
                "Mean score on the 0-100 scale, 2 decimals; empty when there are fewer than "
                "10 responses (see reliability)."),
         *_wilson("share_satisfied"),
         _interval("mean_score", "low", "confidence interval (normal approximation)",
                   "0-100, 2 decimals"),
         _interval("mean_score", "high", "confidence interval (normal approximation)",
                   "0-100, 2 decimals"),
         _reliability("responses")),
        ("agency", "complaint_type")),
    TableSpec(
        "survey_response_rates", "Survey response rates",
        "Surveys sent in the month by the agency of the request, and the share of them answered "
        "by as_of, so readers can judge nonresponse; and how many of those answers asked for "
        "the request to be reopened.",
        (MONTH, AGENCY,
         Column("surveys_sent", "integer", "Surveys sent in the month (New York time)."),
         Column("surveys_answered", "integer",
                "Of those, surveys answered before as_of (the same instant as closure_rates'); "
                "an answer counts in the month the survey was sent."),
         Column("response_rate", "number",
                "surveys_answered / surveys_sent, 0-1, 4 decimals; empty when fewer than 10 "
                "surveys were sent (see reliability)."),
         *_wilson("response_rate"), _reliability("surveys_sent"),
         Column("reopen_requested", "integer",
                "Of the surveys answered (surveys_answered), those whose answer asked for the "
                "request to be reopened (the box ticked, or the reason that the Service "
                "Request should be reopened chosen), as reopen_rates counts them. Divided by "
                "surveys_answered it is the agency's reopen-request rate of the surveys sent "
                "in the month (trends.csv: reopen_rate_of_surveys_sent). Empty in a revision "
                "published before this column existed.")),
        ("agency",)),
    TableSpec(
        "survey_responses", "Survey responses",
        "One row per survey answered in the month, in the columns of NYC's 311 Resolution "
        "Satisfaction Survey dataset (NYC Open Data 5ijn-vbdv): the time coarsened to the "
        "month, the place to the borough, no request number, no comment, no contact, and a key "
        "that cannot be traced back to the request. The rows have no month column: the month is "
        "that of the file's folder, and of every row's Survey Year and Survey Month.",
        (_nyc("Unique Key", "string",
              f"Identifier of the survey response: {UNIQUE_KEY_DIGITS} hexadecimal digits of an "
              "HMAC-SHA256 of the survey under a secret key kept with this publication, the "
              "same in every revision; without the key it cannot be traced back to the "
              "service request or the survey."),
         _nyc("Agency Acronym", "string",
              "Acronym of the agency that handled the service request, e.g. HPD."),
         _nyc("Agency Name", "string", "Name of that agency, as the request gave it."),
         _nyc("Complaint Type", "string", "311 complaint type of the request."),
         _nyc("Descriptor", "string",
              "Further detail on the complaint type; empty when the request had none."),
         _nyc("Borough", "string",
              "Borough of the request, as the request gave it; empty when it gave none."),
         _nyc("Resolution Description", "string",
              "What the agency said when it closed the request: the closure the survey was "
              "sent for (when the survey names none, the request's latest closure up to the "
              "answer); empty when there is none."),
         _nyc("Survey Year", "integer", "Year the survey was answered (New York time)."),
         _nyc("Survey Month", "integer",
              "Month the survey was answered (New York time), 1-12."),
         _nyc("Satisfaction Response", "string",
              "The answer to \"Overall, I am satisfied with the way my Service Request was "
              "handled\": Strongly Agree, Agree, Neutral, Disagree or Strongly Disagree; empty "
              "when the person did not rate it."),
         _nyc("Dissatisfaction Reason", "string",
              "For an answer of Disagree or Strongly Disagree, the reason the person chose "
              "from NYC's list, in NYC's English words whatever the language the survey was "
              "answered in; empty when none was chosen.")),
        ("Unique Key",), on_page=False, grain="answered survey"),
)
BY_NAME = {t.name: t for t in TABLES}

Row = dict[str, Any]


@dataclass(frozen=True)
class Publication:
    """One revision of one month: what every writer renders."""

    month: str  # YYYY-MM
    revision: int
    as_of: datetime
    published_at: datetime  # when this revision was first computed; stable on re-runs
    tables: dict[str, list[Row]]  # table name -> rows in the order of TableSpec.key
    changes: list[str] = field(default_factory=list)  # what differs from the revision before
    history: list[tuple[int, datetime, list[str]]] = field(default_factory=list)
