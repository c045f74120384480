"""The survey invitation a person receives after a closure: email subject, text and HTML bodies,
and the SMS, in the person's language.

The texts say which request was closed, by whom and how, give the link and how long it works,
and why the person is getting it. They carry nothing else about the person: the address or
number it goes to is the only personal data involved, and it is not repeated in the body.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from jinja2 import Environment

from survey.i18n.catalogs import I18N_DIR, N_, language_context, template_environment
from survey.i18n.languages import resolve_language

SUBJECT = N_("311 Service Request %(request_id)s: tell us how we did")

# (status as the agency designated it, agency known) -> the sentence. Whole sentences rather
# than a status word slotted into one, so every language can make them agree.
_CLOSED_SENTENCES: dict[tuple[str, bool], str] = {
    ("RESOLVED", True): N_("Your 311 Service Request %(request_id)s was marked resolved by "
                           "%(agency_name)s."),
    ("RESOLVED", False): N_("Your 311 Service Request %(request_id)s was marked resolved."),
    ("COMPLETE", True): N_("Your 311 Service Request %(request_id)s was marked complete by "
                           "%(agency_name)s."),
    ("COMPLETE", False): N_("Your 311 Service Request %(request_id)s was marked complete."),
    ("CLOSED", True): N_("Your 311 Service Request %(request_id)s was closed by "
                         "%(agency_name)s."),
    ("CLOSED", False): N_("Your 311 Service Request %(request_id)s was closed."),
}


@dataclass(frozen=True)
class SurveyMessage:
    """One invitation, ready to send: ``text`` and ``html`` are the two parts of the email."""

    language: str
    subject: str
    text: str
    html: str
    sms: str


@cache
def _environment() -> Environment:
    return template_environment(I18N_DIR / "templates")


def closed_sentence(language: str, request_id: str, agency_name: str | None,
                    status: str | None) -> str:
    """"Your 311 Service Request … was marked resolved by …", in ``language``.

    A status other than RESOLVED or COMPLETE (CLOSED, or none known) reads as "closed".
    """
    normalized = (status or "").strip().upper()
    key = (normalized if normalized in {"RESOLVED", "COMPLETE"} else "CLOSED",
           bool(agency_name and agency_name.strip()))
    template = language_context(language)["translations"].gettext(_CLOSED_SENTENCES[key])
    return str(template) % {"request_id": request_id,
                            "agency_name": (agency_name or "").strip()}


def render_sms(language: str, link: str) -> str:
    """The survey's text message in ``language``: one short sentence or two, then ``link``.

    Written to fit one SMS segment with a short link (``survey/short_links.py``): see
    ``survey/i18n/segments.py`` and the SMS section of docs/DESIGN.md.
    """
    context = language_context(resolve_language(language))
    return " ".join(_environment().get_template("sms.txt").render(
        {**context, "link": link}).split())


def render_survey_message(language: str, link: str, request_id: str, agency_name: str | None,
                          status: str | None, valid_days: int) -> SurveyMessage:
    """The invitation in ``language`` (any BCP 47 tag; unsupported ones get English)."""
    code = resolve_language(language)
    context = language_context(code)
    subject = str(context["translations"].gettext(SUBJECT)) % {"request_id": request_id}
    values = {
        **context,
        "subject": subject,
        "closed": closed_sentence(code, request_id, agency_name, status),
        "link": link,
        "request_id": request_id,
        "valid_days": valid_days,
    }
    env = _environment()
    return SurveyMessage(
        language=code,
        subject=subject,
        text=env.get_template("email.txt").render(values).strip() + "\n",
        html=env.get_template("email.html").render(values),
        sms=render_sms(code, link),
    )
