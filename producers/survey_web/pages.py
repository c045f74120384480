"""The survey page's HTML: one template environment for every language, and the pieces every
page shares (the language switch, ``lang``/``dir`` on ``<html>``, the notice pages).

Nothing personal is ever rendered: the only identifier shown is the 311 request number, which
the person already has.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment
from starlette.responses import HTMLResponse

from producers.survey_web.answers import FEEDBACK_LIMIT, LEVELS, Answer
from survey.i18n import LANGUAGES, direction, format_count, language_context
from survey.i18n.catalogs import template_environment
from survey.i18n.reasons import DISAGREEING, REASONS

HERE = Path(__file__).resolve().parent
TEMPLATE_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"

# The notice pages (notice.html): what went wrong or what happened, with its HTTP status.
NOTICES: dict[str, int] = {
    "landing": 200,
    "answered": 200,
    "invalid": 400,
    "not_found": 404,
    "expired": 410,
    "error": 500,
    "unavailable": 503,
}


@cache
def _environment() -> Environment:
    return template_environment(TEMPLATE_DIR)


def language_links(current: str) -> list[dict[str, str]]:
    """Links to the same page in the ten other languages (``?lang=`` on the current path)."""
    return [{"code": code, "name": name, "dir": direction(code), "href": f"?lang={code}"}
            for code, name in LANGUAGES.items() if code != current]


def render(template: str, language: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    context = {**language_context(language), "languages": language_links(language), **values}
    html = _environment().get_template(template).render(context)
    return HTMLResponse(html, status_code=status_code)


def notice(kind: str, language: str, status_code: int | None = None) -> HTMLResponse:
    return render("notice.html", language, NOTICES[kind] if status_code is None else status_code,
                  kind=kind)


def survey_form(language: str, request_id: str, answer: Answer | None = None,
                problem: str | None = None, status_code: int = 200) -> HTMLResponse:
    """The form, empty or filled with what the person sent and a message saying what to fix."""
    translations = language_context(language)["translations"]
    levels = [{"value": value, "label": translations.gettext(label),
               "disagrees": value in DISAGREEING} for value, label in LEVELS]
    reasons = [{"value": value, "label": translations.gettext(text)} for value, text in REASONS]
    return render(
        "form.html", language, status_code,
        request_id=request_id,
        levels=levels,
        reasons=reasons,
        answer=answer,
        problem=problem,
        limit=FEEDBACK_LIMIT,
        limit_text=format_count(FEEDBACK_LIMIT, language),
    )
