"""The survey page: a small Starlette app that shows the survey and turns answers into events.

It is a producer like the CSV importer: its only outputs are SurveyAnswered records on Kafka and
its own tables: the claims (``survey_submissions``), which make each survey answerable once, and
the outbox (``survey_answer_outbox``), from which a relay thread produces the events
(``outbox``). It reads nothing else from the projection; everything a page needs (survey,
request number, language) is in the signed link (``/survey/<token>``, in emails) or in the
``survey_links`` row a short link names (``/s/<id>``, in text messages).

Every outcome is a page in the person's language, never a stack trace: a forged, altered or
unknown link (400), an expired one (410), an answered survey, a form to fix (400), PostgreSQL
unavailable (503, nothing recorded, the form kept so it can be sent again). Kafka being away
is not an outcome the person sees: the answer waits in the outbox.

``/metrics`` counts the answers by outcome (``nyc311_survey_answers_total``), the error pages
(``nyc311_server_errors_total``) and the outbox (``nyc311_outbox_*``) for Prometheus;
``/healthz`` and ``nyc311_ready`` say whether PostgreSQL answers and the outbox keeps up (see
``outbox.outbox_health``). Neither carries a token or any personal data.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

import anyio.to_thread
from anyio import CapacityLimiter
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from nyc311.kafka import EventProducer
from nyc311.metrics import (
    ANSWER_ALREADY_ANSWERED,
    ANSWER_INVALID,
    ANSWER_NOT_RECORDED,
    ANSWER_RECORDED,
    Metrics,
    check_health,
)
from nyc311.settings import Settings
from producers.survey_web.answers import TOO_LONG, read_answer
from producers.survey_web.outbox import OutboxGauge, OutboxRelay, outbox_health
from producers.survey_web.pages import STATIC_DIR, notice, render, survey_form
from producers.survey_web.security import SecurityHeaders
from producers.survey_web.submissions import AnswerRecorder, NotRecorded
from survey.i18n import best_language, match_language, resolve_language
from survey.links import SurveyClaim, TokenError, TokenExpired, read_token

log = logging.getLogger(__name__)

# The form is five short fields; 2,000 characters of comments take at most ~24 KB encoded.
MAX_FORM_BYTES = 64 * 1024
MAX_FORM_FIELDS = 16
UNREADABLE = "unreadable"
UNAVAILABLE = "unavailable"
HEALTH_THREADS = 2  # /healthz and /metrics have threads of their own, never queued behind answers


class _Unreadable(ValueError):
    """The request body is not the survey form (wrong type, too many fields)."""


class _TooLarge(ValueError):
    """The request body is larger than any honest answer."""


async def _read_form(request: Request) -> dict[str, str]:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise _TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise _TooLarge
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise _Unreadable
    try:
        pairs = parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True,
                          max_num_fields=MAX_FORM_FIELDS)
    except ValueError as exc:
        raise _Unreadable from exc
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:  # the form sends each field once; a second value is not ours to pick
            raise _Unreadable
        fields[name] = value
    return fields


class SurveyPages:
    """The routes, with the settings and the recorder they share."""

    def __init__(self, settings: Settings, recorder: AnswerRecorder, metrics: Metrics,
                 relay: OutboxRelay) -> None:
        self.settings = settings
        self.metrics = metrics
        self.secret = settings.require_survey_secret()
        self.max_age = settings.survey_token_days * 86_400
        self.recorder = recorder
        self.relay = relay
        self._health_limiter: CapacityLimiter | None = None

    async def _off_loop(self, function: Any) -> Any:
        """Run a health or metrics check on the threads kept for them."""
        if self._health_limiter is None:
            self._health_limiter = CapacityLimiter(HEALTH_THREADS)
        return await anyio.to_thread.run_sync(function, limiter=self._health_limiter)

    def health(self) -> tuple[bool, str]:
        return outbox_health(self.settings, self.relay)

    def language(self, request: Request, preferred: str | None = None) -> str:
        """``?lang=`` if it names one of the eleven, else the link's language, else the
        browser's."""
        asked = match_language(request.query_params.get("lang"))
        if asked is not None:
            return asked
        if preferred:
            return resolve_language(preferred)
        return best_language(request.headers.get("accept-language"))

    def _expired_language(self, token: str) -> str | None:
        """An expired link is still ours (its signature is good): its language is trustworthy."""
        try:
            return read_token(self.secret, token, max_age_seconds=2**40).language
        except TokenError:
            return None

    async def landing(self, request: Request) -> Response:
        return notice("landing", self.language(request))

    async def healthz(self, request: Request) -> Response:
        """200 ``ready: <backlog>``, or 503 and why (database, relay, answers waiting too long)."""
        ok, reason = await self._off_loop(lambda: check_health(self.health))
        if not ok:
            log.warning("health check: not ready: %s", reason)
            return PlainTextResponse(f"{reason}\n", status_code=503)
        return PlainTextResponse(f"ready: {reason}\n")

    async def metrics_page(self, request: Request) -> Response:
        # off the event loop: nyc311_ready asks PostgreSQL, like /healthz
        body = await self._off_loop(self.metrics.exposition)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def survey(self, request: Request) -> Response:
        """A signed link (``/survey/<token>``), as emails carry."""
        token = request.path_params["token"]
        try:
            claim = read_token(self.secret, token, self.max_age)
            uuid.UUID(claim.survey_id)
        except TokenExpired:
            return notice("expired", self.language(request, self._expired_language(token)))
        except (TokenError, ValueError):
            log.info("survey link refused: not valid")
            return notice("invalid", self.language(request))
        return await self._answer(request, claim)

    async def short_survey(self, request: Request) -> Response:
        """A short link (``/s/<id>``), as text messages carry: the same pages, from the row its
        id names."""
        try:
            found = await run_in_threadpool(self.recorder.find_link,
                                            request.path_params["link_id"])
        except Exception as exc:
            log.warning("survey page: database unavailable: %s", type(exc).__name__)
            return notice("unavailable", self.language(request))
        if found is None:
            log.info("survey link refused: no such short link")
            return notice("invalid", self.language(request))
        if found.expired:
            return notice("expired", self.language(request, found.claim.language))
        return await self._answer(request, found.claim)

    async def _answer(self, request: Request, claim: SurveyClaim) -> Response:
        if request.method == "POST":
            return await self._submit(request, claim)
        return await self._show(request, claim)

    async def _show(self, request: Request, claim: SurveyClaim) -> Response:
        language = self.language(request, claim.language)
        try:
            answered = await run_in_threadpool(self.recorder.is_answered, claim.survey_id)
        except Exception as exc:
            log.warning("survey page: database unavailable: %s", type(exc).__name__)
            return notice("unavailable", language)
        if answered:
            return notice("answered", language)
        return survey_form(language, claim.request_id)

    async def _submit(self, request: Request, claim: SurveyClaim) -> Response:
        try:
            fields = await _read_form(request)
        except _TooLarge:
            self.metrics.survey_answer(ANSWER_INVALID)
            return survey_form(self.language(request, claim.language), claim.request_id,
                               problem=TOO_LONG, status_code=413)
        except _Unreadable:
            self.metrics.survey_answer(ANSWER_INVALID)
            return survey_form(self.language(request, claim.language), claim.request_id,
                               problem=UNREADABLE, status_code=400)
        language = match_language(fields.get("lang")) or self.language(request, claim.language)
        answer = read_answer(fields)
        if answer.problem is not None:
            self.metrics.survey_answer(ANSWER_INVALID)
            return survey_form(language, claim.request_id, answer, answer.problem, 400)
        try:
            outcome = await run_in_threadpool(self.recorder.record, claim, language, answer)
        except NotRecorded:
            self.metrics.survey_answer(ANSWER_NOT_RECORDED)
            return survey_form(language, claim.request_id, answer, UNAVAILABLE, 503)
        if outcome.already_answered:
            self.metrics.survey_answer(ANSWER_ALREADY_ANSWERED)
            return notice("answered", language, 409)
        self.metrics.survey_answer(ANSWER_RECORDED)
        return render("thanks.html", language, request_id=claim.request_id,
                      reopen=answer.reopen_requested)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        kind = "not_found" if status in (404, 405) else "error"
        return notice(kind, self.language(request), status)

    async def server_error(self, request: Request, exc: Exception) -> Response:
        # Starlette logs the exception after this page is sent; the person sees no detail.
        self.metrics.server_error()
        return notice("error", self.language(request), 500)


class _SurveyApp(Starlette):
    """Security headers outermost, so even the 500 page Starlette's error middleware sends
    carries them."""

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack())


def create_app(settings: Settings, producer: EventProducer | None = None,
               metrics: Metrics | None = None) -> Starlette:
    """The survey page and its outbox relay (started and stopped with the app). Without
    ``producer`` the relay makes its own; without ``metrics`` it counts in the process registry,
    as service ``survey-web``.

    Raises :class:`~nyc311.settings.SettingsError` when ``NYC311_SURVEY_SECRET`` is not set.
    """
    metrics = metrics or Metrics("survey-web")
    relay = OutboxRelay(settings, metrics, producer)
    recorder = AnswerRecorder(settings, on_stored=relay.notify)
    pages = SurveyPages(settings, recorder, metrics, relay)
    metrics.watch(pages.health)
    metrics.watch_outbox(OutboxGauge(settings))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        relay.start()
        try:
            yield
        finally:
            await run_in_threadpool(relay.stop)

    return _SurveyApp(
        routes=[
            Route("/", pages.landing, methods=["GET"]),
            Route("/healthz", pages.healthz, methods=["GET"]),
            Route("/metrics", pages.metrics_page, methods=["GET"]),
            Route("/survey/{token}", pages.survey, methods=["GET", "POST"]),
            Route("/s/{link_id}", pages.short_survey, methods=["GET", "POST"]),
            Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
        ],
        exception_handlers={HTTPException: pages.http_error, Exception: pages.server_error},
        lifespan=lifespan,
    )
