"""The broker goes away under a running survey page: every answer is accepted and stored, the
page and /healthz keep answering, no transaction waits on Kafka, and once the broker is back
every answer reaches the topic exactly once.

The outage is real: the private Kafka broker is stopped and started again with
services/services.sh; the survey page is the real app under uvicorn, answered over HTTP by
concurrent clients.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import httpx
import pytest

from producers.survey_web import create_app
from producers.survey_web.outbox import answered_event_id
from storage.db import connect
from survey.links import make_token
from tests.conftest import SURVEY_SECRET as SECRET
from tests.outbox_helpers import read_answers, relayed, unsent
from tests.servers import serve_app

pytestmark = pytest.mark.integration

ANSWERS = 45
TWICE = 10  # surveys whose form is sent a second time at once (a double click)
WAIT = 120  # seconds each person may wait for the page: generous, never a speed claim


def _one(db, query: str) -> int:
    row = db.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def test_answers_during_a_broker_outage_are_kept_and_reach_the_topic_once(private_services,
                                                                          private_settings):
    # Not ready as soon as an answer waits, to see /healthz say why.
    settings = replace(private_settings, survey_secret=SECRET, survey_outbox_max_age=0)
    surveys = [str(uuid.uuid4()) for _ in range(ANSWERS)]
    tokens = {s: make_token(SECRET, s, f"6410{i:04d}", "en") for i, s in enumerate(surveys)}
    sends = [(s, "STRONGLY_DISAGREE" if i % 2 else "AGREE") for i, s in enumerate(surveys)]
    sends += [(s, "NEUTRAL") for s in surveys[:TWICE]]

    with serve_app(create_app(settings)) as base_url, \
            httpx.Client(base_url=base_url, timeout=WAIT) as http:
        assert http.get("/healthz").text == "ready: outbox empty\n"

        private_services.stop_kafka()
        try:
            def answer(send: tuple[str, str]) -> tuple[str, int, str]:
                survey_id, level = send
                response = http.post(f"/survey/{tokens[survey_id]}",
                                     data={"satisfaction": level, "reopen": "yes"})
                return survey_id, response.status_code, response.text

            with ThreadPoolExecutor(len(sends)) as pool:
                responses = list(pool.map(answer, sends))

            accepted = [s for s, status, text in responses
                        if status == 200 and "Your answers have been recorded." in text]
            refused = [s for s, status, text in responses
                       if status == 409 and "already been answered" in text]
            assert sorted(accepted) == sorted(surveys), "every survey answered, once"
            assert sorted(refused) == sorted(surveys[:TWICE])

            health = http.get("/healthz")
            assert health.status_code == 503
            assert health.text.startswith(f"{ANSWERS} answers waiting for Kafka"), health.text
            metrics = http.get("/metrics").text
            assert f'nyc311_outbox_backlog{{service="survey-web"}} {ANSWERS}.0' in metrics

            with connect(settings, autocommit=True) as db:
                assert unsent(settings) == ANSWERS
                assert _one(db, "SELECT count(*) FROM survey_submissions") == ANSWERS
                # the relay is waiting on Kafka right now, and holds no transaction open
                assert _one(db, "SELECT count(*) FROM pg_stat_activity "
                                "WHERE datname = current_database() "
                                "AND state LIKE 'idle in transaction%'") == 0
        finally:
            private_services.start_kafka()

        relayed(settings)
        events = read_answers(settings)
        assert http.get("/healthz").text == "ready: outbox empty\n"

    assert sorted(e["survey_id"] for e in events) == sorted(surveys)  # each exactly once
    assert {e["event_id"] for e in events} == {answered_event_id(s) for s in surveys}
    levels = {e["survey_id"]: e["satisfaction"] for e in events}
    assert levels == dict(sends[:ANSWERS])  # the first answer of each, not the double click's
    assert all(e["reopen_requested"] for e in events)
