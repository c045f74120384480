"""The survey page (Admin Code §23-306): the form a person opens from the survey link.

It produces SurveyAnswered events and keeps one claim per survey; see ``app`` for the routes
and ``submissions`` for how one answer per survey is kept without losing any.
"""

from producers.survey_web.app import create_app
from producers.survey_web.server import serve

__all__ = ["create_app", "serve"]
