"""The survey page against the real PostgreSQL and Kafka: one answer per survey, every refusal
a clear page, and what a person typed kept verbatim in the event but never echoed unescaped.

Answers reach Kafka through the outbox relay; ``read_answers`` waits until the outbox has
nothing unsent, then reads the topic up to its high watermark."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from html.parser import HTMLParser

import httpx
import itsdangerous.timed
import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from nyc311.kafka import EventProducer
from nyc311.metrics import Metrics
from nyc311.settings import Settings, SettingsError
from producers.survey_web import create_app
from producers.survey_web.answers import read_answer
from producers.survey_web.outbox import OutboxRelay, answered_event_id
from producers.survey_web.pages import NOTICES, notice, render, survey_form
from survey.i18n import LANGUAGES, RTL, translations
from survey.i18n.reasons import REASONS
from survey.links import make_token
from survey.short_links import create_link, new_link_id
from tests.conftest import SURVEY_SECRET as SECRET
from tests.outbox_helpers import read_answers, unsent
from tests.servers import serve_app

QUESTION = "Overall, I am satisfied with the way my Service Request was handled"


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
    assert event["event_id"] == answered_event_id(survey_id)  # the same however often relayed
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
    assert client.post(f"/survey/{token_b}", data={"reopen": "yes"}).status_code == 200
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
    assert "@" not in page and "style=" not in page
    # the form's one script is its own file (the policy allows nothing inline); notices have none
    assert re.findall(r"<script[^>]*>(.*?)</script>", page, re.S) == [""]
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/static/survey.js" defer>']
    assert "<script" not in client.get("/").text
    assert "http://" not in page and "https://" not in page  # nothing loaded from elsewhere
    script = client.get("/static/survey.js")
    assert script.status_code == 200
    assert script.headers["content-type"].split(";")[0] in ("text/javascript",
                                                            "application/javascript")
    assert "default-src 'self'" in script.headers["content-security-policy"]


def test_landing_health_and_not_found(client):
    assert_clean_page(client.get("/"), 200, "NYC 311 satisfaction survey")
    assert_clean_page(client.get("/nowhere", headers={"accept-language": "ko-KR,ko;q=0.9"}),
                      404, translations("ko").gettext("Page not found"))
    assert_clean_page(client.delete("/survey/abc"), 405, "Page not found")
    health = client.get("/healthz")
    assert health.status_code == 200 and health.text == "ready: outbox empty\n"
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


def test_when_kafka_is_unreachable_the_answer_is_kept_and_relayed_once_it_is_back(
        survey_settings, db):
    token, survey_id = new_token()
    impatient = replace(survey_settings, survey_outbox_max_age=0)
    unreachable = replace(survey_settings, kafka_bootstrap_servers="127.0.0.1:9")
    with EventProducer(unreachable, None, **{"message.timeout.ms": 1500}) as dead_producer, \
            TestClient(create_app(impatient, producer=dead_producer),
                       raise_server_exceptions=False) as failing:
        response = failing.post(f"/survey/{token}", data={"satisfaction": "AGREE",
                                                          "feedback": "kept for later"})
        assert_clean_page(response, 200, "Thank you", "Your answers have been recorded.")
        again = failing.post(f"/survey/{token}", data={"satisfaction": "DISAGREE"})
        assert_clean_page(again, 409, "This survey has already been answered")
        health = failing.get("/healthz")
        assert health.status_code == 503
        assert health.text.startswith("1 answer waiting for Kafka, the oldest for ")
        assert "longer than NYC311_SURVEY_OUTBOX_MAX_AGE (0 s)" in health.text
    assert len(claimed(db, survey_id)) == 1
    assert unsent(survey_settings) == 1
    assert read_answers(survey_settings, wait=False) == []
    attempts, error = db.execute("SELECT attempts, last_error FROM survey_answer_outbox "
                                 "WHERE survey_id = %s", (survey_id,)).fetchone()
    assert attempts >= 1 and error

    with TestClient(create_app(survey_settings), raise_server_exceptions=False) as working:
        [event] = read_answers(survey_settings)  # the relay of the new process sent it
        assert working.get("/healthz").text == "ready: outbox empty\n"
    assert (event["survey_id"], event["satisfaction"], event["feedback"]) == \
        (survey_id, "AGREE", "kept for later")
    assert event["event_id"] == answered_event_id(survey_id)
    assert db.execute("SELECT sent_at IS NOT NULL, last_error FROM survey_answer_outbox"
                      ).fetchall() == [(True, None)]


def test_sent_answers_are_deleted_from_the_outbox_after_a_week(client, survey_settings, db):
    old, old_id = new_token()
    recent, recent_id = new_token()
    for token in (old, recent):
        assert client.post(f"/survey/{token}", data={"satisfaction": "AGREE"}).status_code == 200
    assert len(read_answers(survey_settings)) == 2
    db.execute("UPDATE survey_answer_outbox SET sent_at = now() - interval '8 days' "
               "WHERE survey_id = %s", (old_id,))
    relay = OutboxRelay(survey_settings, Metrics("survey-web", CollectorRegistry()))
    try:
        assert relay.relay_once() is False  # nothing due; the hourly prune runs on a first pass
    finally:
        relay.stop(0)
    kept = db.execute("SELECT survey_id::text FROM survey_answer_outbox").fetchall()
    assert kept == [(recent_id,)]
    assert len(claimed(db, old_id)) == 1  # the claim stays: the survey is still answered
    assert_clean_page(client.get(f"/survey/{old}"), 200, "This survey has already been answered")


def test_the_app_refuses_to_start_without_a_secret(settings):
    with pytest.raises(SettingsError, match="NYC311_SURVEY_SECRET"):
        create_app(replace(settings, survey_secret=""))


# -- inputs that lie -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["false", "0", "off", "no", "on", "true", "1", "YES", " yes",
                                   ""])
def test_a_reopen_value_the_form_never_sends_is_refused(client, survey_settings, db, value):
    token, survey_id = new_token()
    response = client.post(f"/survey/{token}", data={"satisfaction": "AGREE", "reopen": value})
    assert_clean_page(response, 400, "Please tick the box to reopen the request, or leave it "
                                     "empty, and send the form again.")
    assert 'value="AGREE" checked' in response.text  # the rest of the answer is kept
    assert 'name="reopen" id="reopen" value="yes" aria-describedby="reopen-hint">' in \
        response.text  # and the box is shown unticked
    alone = client.post(f"/survey/{token}", data={"reopen": value})
    assert alone.status_code == 400
    assert claimed(db, survey_id) == []
    assert read_answers(survey_settings) == []


def test_the_refusal_of_a_reopen_value_is_in_the_page_language(client):
    token, _ = new_token(language="es")
    response = client.post(f"/survey/{token}", data={"reopen": "false", "lang": "es"})
    message = translations("es").gettext(
        "Please tick the box to reopen the request, or leave it empty, and send the form again.")
    assert_clean_page(response, 400, message)
    assert '<html lang="es" dir="ltr">' in response.text


def test_reopen_is_what_the_form_sends_or_nothing(client, survey_settings):
    ticked, ticked_id = new_token()
    unticked, unticked_id = new_token()
    assert client.post(f"/survey/{ticked}", data={"reopen": "yes"}).status_code == 200
    assert client.post(f"/survey/{unticked}", data={"satisfaction": "AGREE"}).status_code == 200
    events = {e["survey_id"]: e["reopen_requested"] for e in read_answers(survey_settings)}
    assert events == {ticked_id: True, unticked_id: False}


def test_a_field_sent_twice_is_refused(client, survey_settings, db):
    token, survey_id = new_token()
    response = client.post(f"/survey/{token}", content=b"reopen=yes&reopen=false",
                           headers={"content-type": "application/x-www-form-urlencoded"})
    assert_clean_page(response, 400, "We could not read the form.")
    assert claimed(db, survey_id) == []


# -- the reason question (NYC's Dissatisfaction Reason) -------------------------------------------

REASON_QUESTION = "Why are you dissatisfied?"
REOPEN_REASON_TEXT = ("The Agency did not correct the issue and this Service Request should be "
                      "reopened.")


@pytest.mark.parametrize("code", list(LANGUAGES))
def test_the_reason_question_offers_nycs_reasons_in_every_language(client, code):
    token, _ = new_token()
    page = client.get(f"/survey/{token}?lang={code}")
    t = translations(code)
    assert_clean_page(page, 200, t.gettext(REASON_QUESTION),
                      *(t.gettext(text) for _, text in REASONS))
    fieldset = re.search(r'<fieldset class="reasons" aria-describedby="reasons-hint">\s*'
                         r"<legend>([^<]+)</legend>(.*?)</fieldset>", page.text, re.S)
    assert fieldset is not None
    assert html.unescape(fieldset.group(1)) == t.gettext(REASON_QUESTION)
    body = fieldset.group(2)
    assert 'id="reasons-hint"' in body
    radios = re.findall(r'<input type="radio" name="reason" id="(reason-\d)" value="(\w+)">\s*'
                        r'<label for="(reason-\d)">([^<]+)</label>', body)
    assert [(value, html.unescape(text)) for _, value, _, text in radios] == [
        (value, t.gettext(text)) for value, text in REASONS]
    assert all(radio == label for radio, _, label, _ in radios)
    # the button that clears a chosen reason: hidden until survey.js shows it, not a reason
    clear = re.findall(r'<button type="button" class="secondary" id="clear-reason" hidden>'
                       r"([^<]+)</button>\s*$", body)
    assert [html.unescape(text) for text in clear] == [t.gettext("Clear the reason I chose")]
    # the two answers that show the question (survey.css reveals it with :has())
    disagreeing = re.findall(r'name="satisfaction" id="level-\d" value="(\w+)" class="disagrees"',
                             page.text)
    assert disagreeing == ["DISAGREE", "STRONGLY_DISAGREE"]
    if code != "en":
        assert REOPEN_REASON_TEXT not in page.text


class _Ids(HTMLParser):
    """The ids a page gives, and the ids its for/aria-* attributes name."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.named: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name == "id" and value is not None:
                self.ids.append(value)
            elif name in ("for", "aria-labelledby", "aria-describedby") and value:
                self.named.extend(value.split())


@pytest.mark.parametrize("code", list(LANGUAGES))
def test_no_survey_page_gives_an_id_twice(code):
    """Without a browser (axe-core's duplicate-id-aria): the form empty and shown again with
    a reason and a problem, the thank-you page and every notice, in every language."""
    sent = read_answer({"satisfaction": "DISAGREE", "reason": "OTHER", "reopen": "yes",
                        "feedback": "x" * 2001})
    responses = {"form": survey_form(code, "64123456"),
                 "form to fix": survey_form(code, "64123456", sent, sent.problem, 400),
                 "thanks": render("thanks.html", code, request_id="64123456", reopen=True),
                 **{kind: notice(kind, code) for kind in NOTICES}}
    for name, response in responses.items():
        parser = _Ids()
        parser.feed(bytes(response.body).decode("utf-8"))
        twice = sorted({i for i in parser.ids if parser.ids.count(i) > 1})
        assert twice == [], f"{name} ({code}): ids given more than once: {twice}"
        assert set(parser.named) <= set(parser.ids), f"{name} ({code})"
    assert 'id="clear-reason"' in bytes(responses["form to fix"].body).decode()


def test_the_stylesheet_shows_the_reasons_only_after_a_disagreeing_answer(client):
    css = client.get("/static/survey.css").text
    rule = re.search(r"@supports selector\(:has\(\*\)\) \{\s*(.*?)\s*\}\s*\}", css, re.S)
    assert rule is not None  # without :has() the question stays visible to everyone
    assert rule.group(1) == ".survey:not(:has(.disagrees:checked)) .reasons { display: none;"


def test_a_disagreeing_answer_carries_its_reason(client, survey_settings):
    token, survey_id = new_token()
    response = client.post(f"/survey/{token}", data={
        "satisfaction": "STRONGLY_DISAGREE", "reason": "TOO_FEW_UPDATES", "lang": "en"})
    assert_clean_page(response, 200, "Thank you")
    assert "You asked us to reopen" not in response.text
    [event] = read_answers(survey_settings)
    assert (event["survey_id"], event["satisfaction"], event["dissatisfaction_reason"],
            event["reopen_requested"]) == (survey_id, "STRONGLY_DISAGREE", "TOO_FEW_UPDATES",
                                           False)


def test_the_reopen_reason_is_a_reopen_request_like_the_box(client, survey_settings):
    by_reason, reason_id = new_token(request_id="64123457")
    by_both, both_id = new_token()
    response = client.post(f"/survey/{by_reason}", data={
        "satisfaction": "DISAGREE", "reason": "NOT_CORRECTED_REOPEN", "lang": "en"})
    assert_clean_page(response, 200, "You asked us to reopen Service Request 64123457")
    assert client.post(f"/survey/{by_both}", data={
        "satisfaction": "DISAGREE", "reason": "NOT_CORRECTED_REOPEN",
        "reopen": "yes"}).status_code == 200
    events = {e["survey_id"]: e for e in read_answers(survey_settings)}
    for survey_id in (reason_id, both_id):
        assert events[survey_id]["reopen_requested"] is True
        assert events[survey_id]["dissatisfaction_reason"] == "NOT_CORRECTED_REOPEN"


def test_an_answer_without_a_reason_is_as_it_always_was(client, survey_settings):
    token, _ = new_token()
    assert client.post(f"/survey/{token}", data={
        "satisfaction": "DISAGREE", "feedback": "no reason given"}).status_code == 200
    [event] = read_answers(survey_settings)
    assert (event["satisfaction"], event["reopen_requested"], event["feedback"],
            event["dissatisfaction_reason"]) == ("DISAGREE", False, "no reason given", None)


def test_a_reason_sent_with_an_answer_that_does_not_disagree_is_dropped(client,
                                                                         survey_settings, db):
    """A reason ticked, then the answer changed to Agree (the question hides, the radio stays
    checked), or sent where the browser showed the question to everyone: not recorded, and
    the reopen reason forwards nothing."""
    agree, agree_id = new_token()
    unrated, unrated_id = new_token()
    alone, alone_id = new_token()
    assert client.post(f"/survey/{agree}", data={
        "satisfaction": "AGREE", "reason": "NOT_CORRECTED_REOPEN"}).status_code == 200
    assert client.post(f"/survey/{unrated}", data={
        "reason": "OTHER", "feedback": "see above"}).status_code == 200
    only_a_reason = client.post(f"/survey/{alone}", data={"reason": "NOT_CORRECTED"})
    assert_clean_page(only_a_reason, 400, "Please choose an answer, tick the box")
    events = {e["survey_id"]: e for e in read_answers(survey_settings)}
    assert set(events) == {agree_id, unrated_id}
    assert (events[agree_id]["satisfaction"], events[agree_id]["dissatisfaction_reason"],
            events[agree_id]["reopen_requested"]) == ("AGREE", None, False)
    assert (events[unrated_id]["satisfaction"], events[unrated_id]["dissatisfaction_reason"],
            events[unrated_id]["reopen_requested"]) == (None, None, False)
    assert claimed(db, alone_id) == []


@pytest.mark.parametrize("level", ["STRONGLY_DISAGREE", "AGREE", ""])
def test_an_unknown_reason_is_refused(client, survey_settings, db, level):
    token, survey_id = new_token()
    response = client.post(f"/survey/{token}", data={
        "satisfaction": level, "reason": "THE_AGENCY_WAS_RUDE", "feedback": "kept"})
    assert_clean_page(response, 400, "Please choose one of the answers listed.")
    assert "THE_AGENCY_WAS_RUDE" not in response.text
    assert ">kept</textarea>" in response.text
    assert claimed(db, survey_id) == []
    assert read_answers(survey_settings) == []


def test_a_form_shown_again_keeps_the_reason_chosen(client):
    token, _ = new_token()
    response = client.post(f"/survey/{token}", data={
        "satisfaction": "DISAGREE", "reason": "INFORMATION_DISPUTED", "feedback": "x" * 2001})
    assert_clean_page(response, 400, "Your comments are too long")
    assert 'value="DISAGREE" class="disagrees" checked' in response.text
    assert re.findall(r'name="reason" id="reason-\d" value="(\w+)" checked', response.text) == [
        "INFORMATION_DISPUTED"]


# -- short links (text messages) ------------------------------------------------------------------


def short_link(db, settings, language: str = "en",
               request_id: str = "64123456") -> tuple[str, str]:
    survey_id = str(uuid.uuid4())
    return create_link(db, settings, survey_id, request_id, language), survey_id


def test_a_short_link_shows_the_form_and_takes_one_answer(client, survey_settings, db):
    link_id, survey_id = short_link(db, survey_settings, language="ko", request_id="64123459")
    assert len(link_id) == 12 and link_id.isalnum()
    form = client.get(f"/s/{link_id}")
    t = translations("ko")
    assert_clean_page(form, 200, t.gettext(QUESTION))
    assert '<html lang="ko" dir="ltr">' in form.text and "64123459" in form.text
    assert client.get(f"/s/{link_id}?lang=fr").text.count('<html lang="fr"') == 1

    answered = client.post(f"/s/{link_id}", data={"satisfaction": "DISAGREE", "reopen": "yes",
                                                  "lang": "ko"})
    assert_clean_page(answered, 200, t.gettext("Thank you"))
    again = client.post(f"/s/{link_id}", data={"satisfaction": "AGREE"})
    assert_clean_page(again, 409, t.gettext("This survey has already been answered"))
    assert_clean_page(client.get(f"/s/{link_id}"), 200,
                      t.gettext("This survey has already been answered"))

    [event] = read_answers(survey_settings)
    assert (event["survey_id"], event["request_id"], event["language"], event["satisfaction"],
            event["reopen_requested"]) == (survey_id, "64123459", "ko", "DISAGREE", True)
    assert len(claimed(db, survey_id)) == 1


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_unknown_and_malformed_short_links_get_the_invalid_page(client, survey_settings, db,
                                                                 method):
    short_link(db, survey_settings)
    for link_id in (new_link_id(), "short", "x" * 13, "abc-def_ghij", "%2E%2E"):
        response = client.request(method, f"/s/{link_id}", data={"satisfaction": "AGREE"})
        assert_clean_page(response, 400, "This survey link is not valid")
        assert QUESTION not in response.text
    assert read_answers(survey_settings) == []


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_expired_short_link_gets_the_expired_page_in_its_language(client, survey_settings,
                                                                     db, method):
    link_id, survey_id = short_link(db, survey_settings, language="ru")
    db.execute("UPDATE survey_links SET expires_at = now() - interval '1 second' "
               "WHERE link_id = %s", (link_id,))
    response = client.request(method, f"/s/{link_id}", data={"satisfaction": "AGREE"})
    assert_clean_page(response, 410, translations("ru").gettext("This survey link has expired"))
    assert '<html lang="ru" dir="ltr">' in response.text
    assert claimed(db, survey_id) == []


def test_a_short_link_lasts_the_token_days_and_a_resend_keeps_it(survey_settings, db):
    link_id, survey_id = short_link(db, survey_settings)
    days = db.execute("SELECT extract(epoch FROM expires_at - created_at) / 86400 "
                      "FROM survey_links WHERE link_id = %s", (link_id,)).fetchone()[0]
    assert round(days) == survey_settings.survey_token_days
    assert create_link(db, survey_settings, survey_id, "64123456", "en") == link_id
    assert db.execute("SELECT count(*) FROM survey_links").fetchone()[0] == 1


def test_short_link_ids_are_random_and_url_safe():
    ids = {new_link_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(re.fullmatch(r"[A-Za-z0-9]{12}", i) for i in ids)
    assert len(set("".join(ids))) == 62  # every letter and digit turns up: no narrower alphabet


# -- concurrency -----------------------------------------------------------------------------------


def test_twenty_concurrent_answers_to_one_survey_give_exactly_one_event(survey_settings, db):
    token, survey_id = new_token()
    with serve_app(create_app(survey_settings)) as base_url, \
            httpx.Client(base_url=base_url, timeout=60) as http, \
            ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(
            lambda i: http.post(f"/survey/{token}", data={"feedback": f"answer {i}"}).status_code,
            range(20)))
        events = read_answers(survey_settings)
    assert sorted(statuses) == [200] + [409] * 19
    assert [e["survey_id"] for e in events] == [survey_id]
    assert len(claimed(db, survey_id)) == 1


def test_answers_to_different_surveys_do_not_wait_for_each_other(survey_settings, db):
    tokens = [new_token() for _ in range(40)]
    with serve_app(create_app(survey_settings)) as base_url, \
            httpx.Client(base_url=base_url, timeout=60) as http, \
            ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(
            lambda t: http.post(f"/survey/{t[0]}", data={"satisfaction": "AGREE"}).status_code,
            tokens))
        events = read_answers(survey_settings)
    assert statuses == [200] * 40
    assert sorted(e["survey_id"] for e in events) == sorted(s for _, s in tokens)
    assert sorted(e["event_id"] for e in events) == sorted(answered_event_id(s)
                                                           for _, s in tokens)
