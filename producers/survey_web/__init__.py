"""The survey page (Admin Code §23-306): the form a person opens from the survey link.

It produces SurveyAnswered events and keeps one claim per survey; see ``app`` for the routes,
``submissions`` for how one answer per survey is kept without losing any, and ``outbox`` for how
answers reach Kafka even when it is away at the time.
"""

from producers.survey_web.app import create_app
from producers.survey_web.server import serve

__all__ = ["create_app", "serve"]
