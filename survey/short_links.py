"""Short survey links for text messages: ``<NYC311_SURVEY_BASE_URL>/s/<link id>``.

A signed link (``survey/links.py``) is about 130 characters: in a text message it alone fills
a segment, and each segment is billed. An SMS survey carries a short link instead, whose id is
looked up in ``survey_links`` (survey id, request id, language, expiry):

- the id is 12 characters drawn with :mod:`secrets` from the 62 letters and digits (71 bits),
  so ids cannot be guessed or enumerated, and it is URL-safe with nothing a phone could take for
  the end of the link;
- the dispatcher makes it when it composes an SMS survey; sending the survey again (a retry)
  keeps the id and restarts its ``NYC311_SURVEY_TOKEN_DAYS``;
- the survey page serves it at ``/s/<id>`` with the same form and answer flow as a signed link,
  and the same pages for an unknown id (not valid) or an expired one (expired).

Email keeps the signed link, which needs no database to check. Like the signed link, a short
link is a bearer credential: it is never logged.
"""

from __future__ import annotations

import logging
import secrets
import string
from dataclasses import dataclass

import psycopg

from nyc311.settings import Settings
from survey.i18n.messages import render_sms
from survey.i18n.segments import sms_length
from survey.links import SurveyClaim

log = logging.getLogger(__name__)

ALPHABET = string.ascii_letters + string.digits
LINK_ID_LENGTH = 12  # 62**12 > 2**71
PATH = "/s/"

_warned: set[str] = set()

_CREATE = """
INSERT INTO survey_links (link_id, survey_id, request_id, language, expires_at)
VALUES (%s, %s, %s, %s, now() + make_interval(days => %s))
ON CONFLICT (survey_id) DO UPDATE SET expires_at = EXCLUDED.expires_at
RETURNING link_id
"""

_FIND = """
SELECT survey_id::text, request_id, language, created_at, expires_at <= now()
FROM survey_links WHERE link_id = %s
"""


def new_link_id() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(LINK_ID_LENGTH))


def is_link_id(text: str) -> bool:
    """Whether ``text`` has the form of a link id (checked before any database lookup)."""
    return len(text) == LINK_ID_LENGTH and all(c in ALPHABET for c in text)


def short_url(settings: Settings, link_id: str) -> str:
    return f"{settings.survey_base_url}{PATH}{link_id}"


def create_link(conn: psycopg.Connection, settings: Settings, survey_id: str, request_id: str,
                language: str) -> str:
    """The survey's link id, made on first use; valid for ``NYC311_SURVEY_TOKEN_DAYS`` from now."""
    with conn.transaction():
        row = conn.execute(_CREATE, (new_link_id(), survey_id, request_id, language,
                                     settings.survey_token_days)).fetchone()
    assert row is not None
    return str(row[0])


@dataclass(frozen=True)
class FoundLink:
    claim: SurveyClaim
    expired: bool


def find_link(conn: psycopg.Connection, link_id: str) -> FoundLink | None:
    """The survey a link id names, and whether the link has expired; ``None`` if unknown."""
    if not is_link_id(link_id):
        return None
    row = conn.execute(_FIND, (link_id,)).fetchone()
    if row is None:
        return None
    survey_id, request_id, language, created_at, expired = row
    return FoundLink(SurveyClaim(survey_id, request_id, language, created_at), bool(expired))


def sms_with_short_link(conn: psycopg.Connection, settings: Settings, survey_id: str,
                        request_id: str, language: str) -> str:
    """The survey's text message in ``language``, with its short link (made if need be).

    Logs a warning, once per language, if the text takes more than one SMS segment: the texts
    are written to fit one with a base URL as long as ``https://nyc.gov/311s`` (docs/DESIGN.md).
    """
    link_id = create_link(conn, settings, survey_id, request_id, language)
    text = render_sms(language, short_url(settings, link_id))
    length = sms_length(text)
    if length.segments > 1 and language not in _warned:
        _warned.add(language)
        log.warning("the %s survey SMS takes %d segments (%d %s units, %d in one): shorten "
                    "NYC311_SURVEY_BASE_URL or the text", language, length.segments,
                    length.units, length.encoding, length.single_limit)
    return text
