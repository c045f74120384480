"""The survey in English and the ten designated citywide languages (Admin Code §23-306, §23-1101).

``languages`` maps a person's language tag onto the eleven; ``catalogs`` loads the gettext
catalogs and builds template environments that use them; ``messages`` renders the invitation
(email and SMS). The survey page renders its own templates with the same catalogs.
"""

from survey.i18n.catalogs import N_, format_count, language_context, translations
from survey.i18n.languages import (
    DEFAULT_LANGUAGE,
    LANGUAGES,
    RTL,
    best_language,
    direction,
    match_language,
    resolve_language,
)
from survey.i18n.messages import SurveyMessage, render_survey_message

__all__ = [
    "DEFAULT_LANGUAGE",
    "LANGUAGES",
    "N_",
    "RTL",
    "SurveyMessage",
    "best_language",
    "direction",
    "format_count",
    "language_context",
    "match_language",
    "render_survey_message",
    "resolve_language",
    "translations",
]
