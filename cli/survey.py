"""`nyc311 survey-web`: the survey page."""

from __future__ import annotations

import click

from cli.context import Context, pass_ctx


@click.command("survey-web")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8311, show_default=True)
@pass_ctx
def survey_web(obj: Context, host: str, port: int) -> None:
    """Serve the survey page (the links in survey emails and texts point here).

    Signed links (/survey/<token>, in emails) and short links (/s/<id>, in texts) show the same
    form. An answer is stored in PostgreSQL with its SurveyAnswered event (the outbox) in one
    short transaction; a thread of this process produces the stored events to Kafka, so answers
    given while Kafka is down are accepted and sent once it is back. /healthz is 503 when
    PostgreSQL does not answer or an answer has waited longer than NYC311_SURVEY_OUTBOX_MAX_AGE;
    /metrics has nyc311_outbox_backlog. SIGTERM: finishes the requests in hand, relays what is
    due for up to 10 s, stops.
    """
    from nyc311.settings import SettingsError
    from producers.survey_web import serve

    try:
        obj.settings.require_survey_secret()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    serve(obj.settings, host=host, port=port)
