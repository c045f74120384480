"""The survey page against the real PostgreSQL and Kafka: one answer per survey, every refusal
a clear page, and what a person typed kept verbatim in the event but never echoed unescaped."""

from __future__ import annotations

import html
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import itsdangerous.timed
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from starlette.testclient import TestClient

from nyc311.i18n import LANGUAGES, RTL, translations
from nyc311.settings import Settings, SettingsError
from nyc311.tokens import make_token
from producers.producer import EventProducer
from producers.survey_web import create_app
from schemas.serde import Serde

SECRET = "x" * 32
QUESTION = "Overall, I am satisfied with the way my Service Request was handled"
ANSWERS_TOPIC = "nyc311.survey-answered"


def _watermarks(consumer: Consumer, partition: TopicPartition) -> tuple[int, int]:
    """Low and high offsets; a topic created a moment ago may still be electing its leaders."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return consumer.get_watermark_offsets(partition, timeout=10)
        except KafkaException:  # NOT_LEADER_FOR_PARTITION and the like, until elected
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def read_answers(settings: Settings) -> list[dict]:
    """Every SurveyAnswered on the topic, read up to the high watermark of each partition.

    The page flushes before it answers, so once a response is back its event is below the
    watermark: no waiting for records that might still come.
    """
    topic = settings.topic(ANSWERS_TOPIC)
    consumer = Consumer(settings.kafka_config(**{
        "group.id": f"survey-reader-{uuid.uuid4()}", "enable.auto.commit": False}))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {}
        for p in partitions:
            low, high = _watermarks(consumer, TopicPartition(topic, p))
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        records, serde = [], Serde()
        while ends:
            msg = consumer.poll(10)
            assert msg is not None, f"timed out reading {topic}"
            assert msg.error() is None, msg.error()
            record = serde.decode("survey_answered", msg.value())
            records.append({k: str(v) if isinstance(v, uuid.UUID) else v
                            for k, v in record.items()})
            if (msg.offset() or 0) + 1 >= ends.get(msg.partition(), 0):
                ends.pop(msg.partition(), None)
        return records
    finally:
        consumer.close()


@pytest.fixture
def survey_settings(settings: Settings, topics: list[str]) -> Settings:
    return replace(settings, survey_secret=SECRET)


@pytest.fixture
def client(survey_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(survey_settings), raise_server_exceptions=False,
                    follow_redirects=False) as test_client:
        yield test_client


def new_token(language: str = "en", request_id: str = "64123456",
              secret: str = SECRET) -> tuple[str, str]:
    survey_id = str(uuid.uuid4())
    return make_token(secret, survey_id, request_id, language), survey_id


def claimed(db, survey_id: str) -> list[tuple]:
    return db.execute("SELECT event_id::text FROM survey_submissions WHERE survey_id = %s",
                      (survey_id,)).fetchall()


def assert_clean_page(response, status: int, *texts: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    shown = html.unescape(response.text)  # the text a reader sees (&#39; is an apostrophe)
    for text in texts:
        assert text in shown, text
    for leak in ("Traceback", "Exception", "itsdangerous", "psycopg", 'File "'):
        assert leak not in response.text


def test_an_answer_is_recorded_once_and_produced_to_kafka(client, survey_settings, db):
    token, survey_id = new_token(request_id="64123456")
    form = client.get(f"/survey/{token}")
    assert_clean_page(form, 200, QUESTION, "Strongly agree", "Please reopen this request",
                      "311 Service Request 64123456")

    response = client.post(f"/survey/{token}", data={
        "satisfaction": "AGREE", "reopen": "yes", "lang": "en",
        "feedback": "  The pothole is still there.\r\nSecond line.  "})
    assert_clean_page(response, 200, "Thank you", "You asked us to reopen Service Request 64123456")

    [event] = read_answers(survey_settings)
    assert event["survey_id"] == survey_id
    assert event["request_id"] == "64123456"
    assert event["language"] == "en"
    assert event["satisfaction"] == "AGREE"
    assert event["reopen_requested"] is True
    assert event["feedback"] == "The pothole is still there.\nSecond line."
    assert uuid.UUID(event["event_id"]).version == 4
    assert event["occurred_at"].tzinfo is not None
    assert claimed(db, survey_id) == [(event["event_id"],)]


def test_a_second_answer_is_refused_and_produces_nothing(client, survey_settings, db):
    token, survey_id = new_token()
    first = client.post(f"/survey/{token}", data={"satisfaction": "STRONGLY_DISAGREE"})
    assert first.status_code == 200
    second = client.post(f"/survey/{token}", data={"satisfaction": "STRONGLY_AGREE",
                                                   "feedback": "changed my mind"})
    assert_clean_page(second, 409, "This survey has already been answered")
    again = client.get(f"/survey/{token}")
    assert_clean_page(again, 200, "This survey has already been answered")
    assert QUESTION not in again.text

    events = read_answers(survey_settings)
    assert [(e["survey_id"], e["satisfaction"]) for e in events] == \
        [(survey_id, "STRONGLY_DISAGREE")]
    assert len(claimed(db, survey_id)) == 1


def test_only_the_survey_answered_is_closed(client, survey_settings):
    token_a, _ = new_token()
    token_b, survey_b = new_token()
    assert client.post(f"/survey/{token_a}", data={"satisfaction": "NEUTRAL"}).status_code == 200
    assert QUESTION in client.get(f"/survey/{token_b}").text
    assert client.post(f"/survey/{token_b}", data={"reopen": "on"}).status_code == 200
    events = read_answers(survey_settings)
    assert len(events) == 2
    only_reopen = next(e for e in events if e["survey_id"] == survey_b)
    assert only_reopen["satisfaction"] is None and only_reopen["reopen_requested"] is True
    assert only_reopen["feedback"] is None


def _tamper(token: str) -> str:
    payload = token.split(".")[0]
    position = len(payload) // 2
    replacement = "A" if payload[position] != "A" else "B"
    return token[:position] + replacement + token[position + 1:]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_forged_and_tampered_links_get_a_clear_400(client, survey_settings, db, method):
    forged, forged_id = new_token(secret="another-secret-of-32-characters!")
    tampered = _tamper(new_token()[0])
    for token in (forged, tampered, "not-a-token", "a.b.c"):
        response = client.request(method, f"/survey/{token}", data={"satisfaction": "AGREE"})
        assert_clean_page(response, 400, "This survey link is not valid")
        assert QUESTION not in response.text
    assert claimed(db, forged_id) == []
    assert read_answers(survey_settings) == []


def _expired_token(monkeypatch, language: str, days_ago: int) -> str:
    signed_at = int(itsdangerous.timed.time.time()) - days_ago * 86_400
    with monkeypatch.context() as patch:
        patch.setattr(itsdangerous.timed.TimestampSigner, "get_timestamp",
                      lambda self: signed_at)
        return new_token(language)[0]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_expired_link_gets_a_clear_410_in_its_language(client, survey_settings, monkeypatch,
                                                          method):
    days = survey_settings.survey_token_days
    expired = _expired_token(monkeypatch, "es-US", days + 1)
    response = client.request(method, f"/survey/{expired}", data={"satisfaction": "AGREE"})
    assert_clean_page(response, 410, translations("es").gettext("This survey link has expired"))
    assert '<html lang="es" dir="ltr">' in response.text
    still_valid = _expired_token(monkeypatch, "en", days - 1)
    assert_clean_page(client.get(f"/survey/{still_valid}"), 200, QUESTION)
    assert read_answers(survey_settings) == []


def test_script_in_feedback_is_kept_verbatim_and_shown_escaped(client, survey_settings, db):
    script = "<script>alert(1)</script>"
    token, survey_id = new_token()
    too_long = client.post(f"/survey/{token}", data={
        "satisfaction": "AGREE", "feedback": script + "x" * 2000})
    assert_clean_page(too_long, 400, "Your comments are too long")
    assert script not in too_long.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" + "x" * 2000 in too_long.text
    assert 'value="AGREE" checked' in too_long.text  # what was chosen is kept
    assert claimed(db, survey_id) == []
    assert read_answers(survey_settings) == []

    ok = client.post(f"/survey/{token}", data={"feedback": script})
    assert ok.status_code == 200
    assert script not in ok.text
    [event] = read_answers(survey_settings)
    assert event["feedback"] == script


def test_feedback_limit_counts_characters_after_normalising_line_breaks(client, survey_settings):
    at_limit, _ = new_token()
    assert client.post(f"/survey/{at_limit}", data={"feedback": "é" * 2000}).status_code == 200
    crlf, _ = new_token()
    typed = ("x" * 9 + "\r\n") * 200  # 2,200 as sent, 1,999 after CRLF -> LF and stripping
    assert client.post(f"/survey/{crlf}", data={"feedback": typed}).status_code == 200
    over, _ = new_token()
    response = client.post(f"/survey/{over}", data={"feedback": "é" * 2001})
    assert_clean_page(response, 400, "Please shorten them to 2,000 characters or fewer")
    events = {len(e["feedback"]) for e in read_answers(survey_settings)}
    assert events == {2000, 1999}


def test_an_empty_or_unknown_answer_is_refused(client, survey_settings, db):
    token, survey_id = new_token()
    empty = client.post(f"/survey/{token}", data={"satisfaction": "", "feedback": "  \r\n "})
    assert_clean_page(empty, 400, "Please choose an answer, tick the box to reopen the request")
    unknown = client.post(f"/survey/{token}", data={"satisfaction": "VERY_HAPPY"})
    assert_clean_page(unknown, 400, "Please choose one of the answers listed.")
    not_a_form = client.post(f"/survey/{token}", content=b'{"satisfaction": "AGREE"}',
                             headers={"content-type": "application/json"})
    assert_clean_page(not_a_form, 400, "We could not read the form.")
    huge = client.post(f"/survey/{token}", data={"feedback": "x" * 100_000})
    assert_clean_page(huge, 413, "Your comments are too long")
    assert claimed(db, survey_id) == []
    assert read_answers(survey_settings) == []


@pytest.mark.parametrize("code", list(LANGUAGES))
def test_every_language_renders_the_form(client, code):
    token, _ = new_token()
    response = client.get(f"/survey/{token}?lang={code}")
    t = translations(code)
    assert_clean_page(response, 200, t.gettext(QUESTION), t.gettext("Strongly disagree"),
                      t.gettext("Please reopen this request"), t.gettext("Send my answers"))
    direction = "rtl" if code in RTL else "ltr"
    assert f'<html lang="{code}" dir="{direction}">' in response.text
    assert '<fieldset class="levels">' in response.text and "<legend>" in response.text
    assert len(re.findall(r'<input type="radio" name="satisfaction"', response.text)) == 5
    assert '<label for="feedback">' in response.text and '<label for="reopen">' in response.text
    assert f'<input type="hidden" name="lang" value="{code}">' in response.text
    switch = re.findall(r'<a href="\?lang=(\w+)" lang="\w+" hreflang="\w+"', response.text)
    assert sorted(switch) == sorted(c for c in LANGUAGES if c != code)
    if code != "en":
        assert QUESTION not in response.text


def test_the_link_language_is_the_default_and_the_answer_keeps_the_page_language(
        client, survey_settings):
    token, _ = new_token(language="zh-Hant-TW")
    page = client.get(f"/survey/{token}")
    assert '<html lang="zh" dir="ltr">' in page.text
    assert translations("zh").gettext(QUESTION) in page.text
    switched = client.get(f"/survey/{token}?lang=ur")
    assert '<html lang="ur" dir="rtl">' in switched.text
    answered = client.post(f"/survey/{token}?lang=ur",
                           data={"satisfaction": "AGREE", "lang": "ur"})
    assert_clean_page(answered, 200, translations("ur").gettext("Thank you"))
    [event] = read_answers(survey_settings)
    assert event["language"] == "ur"


def test_pages_carry_security_headers_and_no_personal_data(client):
    token, _ = new_token()
    for path in (f"/survey/{token}", "/", "/nowhere", "/static/survey.css", "/healthz"):
        response = client.get(path)
        assert "default-src 'self'" in response.headers["content-security-policy"], path
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["referrer-policy"] == "no-referrer", path
    assert client.get(f"/survey/{token}").headers["cache-control"] == "no-store"
    page = client.get(f"/survey/{token}").text
    assert "@" not in page and "<script" not in page and "style=" not in page
    assert "http://" not in page and "https://" not in page  # nothing loaded from elsewhere


def test_landing_health_and_not_found(client):
    assert_clean_page(client.get("/"), 200, "NYC 311 satisfaction survey")
    assert_clean_page(client.get("/nowhere", headers={"accept-language": "ko-KR,ko;q=0.9"}),
                      404, translations("ko").gettext("Page not found"))
    assert_clean_page(client.delete("/survey/abc"), 405, "Page not found")
    health = client.get("/healthz")
    assert health.status_code == 200 and health.text == "ok\n"
    css = client.get("/static/survey.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_health_and_pages_say_when_the_database_is_down(survey_settings):
    gone = replace(survey_settings, database_url=survey_settings.database_url + "_missing")
    with TestClient(create_app(gone), raise_server_exceptions=False) as down:
        assert down.get("/healthz").status_code == 503
        token, _ = new_token()
        assert_clean_page(down.get(f"/survey/{token}"), 503, "Please try again")
        answer = down.post(f"/survey/{token}", data={"satisfaction": "AGREE"})
        assert_clean_page(answer, 503, "nothing was recorded")
    assert read_answers(survey_settings) == []


def test_when_kafka_refuses_nothing_is_claimed_and_the_person_can_send_again(
        survey_settings, db):
    token, survey_id = new_token()
    unreachable = replace(survey_settings, kafka_bootstrap_servers="127.0.0.1:9")
    with EventProducer(unreachable, None, **{"message.timeout.ms": 1500}) as dead_producer, \
            TestClient(create_app(survey_settings, producer=dead_producer),
                       raise_server_exceptions=False) as failing:
        response = failing.post(f"/survey/{token}", data={"satisfaction": "AGREE",
                                                          "feedback": "kept for the retry"})
        assert_clean_page(response, 503, "nothing was recorded", "kept for the retry")
        assert 'value="AGREE" checked' in response.text
    assert claimed(db, survey_id) == []

    with TestClient(create_app(survey_settings), raise_server_exceptions=False) as working:
        retry = working.post(f"/survey/{token}", data={"satisfaction": "AGREE"})
        assert retry.status_code == 200
    [event] = read_answers(survey_settings)
    assert event["survey_id"] == survey_id
    assert len(claimed(db, survey_id)) == 1


def test_the_app_refuses_to_start_without_a_secret(settings):
    with pytest.raises(SettingsError, match="NYC311_SURVEY_SECRET"):
        create_app(replace(settings, survey_secret=""))
