"""The survey page in a real browser: headless Chromium answers the survey in four languages,
including a right-to-left one, and the answer is followed through Kafka and the projector into
PostgreSQL.

What only a browser shows: the form works with nothing but its own stylesheet under the
Content Security Policy (a blocked resource would be a console error), labels are tied to their
inputs (the test clicks the translated labels), the page is laid out right to left for
Arabic, and the reason question appears only once the answer disagrees (CSS ``:has()``, no
script).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from nyc311.settings import Settings
from producers.survey_web import create_app
from survey.i18n import translations
from survey.links import make_token
from survey.short_links import create_link
from tests.conftest import SURVEY_SECRET as SECRET
from tests.helpers import project
from tests.outbox_helpers import relayed
from tests.servers import needs_chromium, serve_app

pytestmark = needs_chromium


@pytest.fixture
def base_url(survey_settings: Settings) -> Iterator[str]:
    """The app under uvicorn in a background thread, on a free loopback port."""
    with serve_app(create_app(survey_settings)) as url:
        yield url


@pytest.mark.parametrize(("code", "direction"), [("en", "ltr"), ("es", "ltr"), ("zh", "ltr"),
                                                 ("ar", "rtl")])
def test_a_person_answers_the_survey_in_their_language(browser, base_url, survey_settings, db,
                                                        code, direction):
    t = translations(code)
    survey_id = str(uuid.uuid4())
    token = make_token(SECRET, survey_id, "64123456", code)
    feedback = f"Still broken ({code}) <b>not bold</b>"

    context = browser.new_context()
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    try:
        response = page.goto(f"{base_url}/survey/{token}")
        assert response is not None and response.status == 200
        html = page.locator("html")
        assert html.get_attribute("lang") == code
        assert html.get_attribute("dir") == direction
        assert page.evaluate("getComputedStyle(document.body).direction") == direction
        question = t.gettext("Overall, I am satisfied with the way my Service Request was handled")
        assert page.get_by_role("group", name=question).is_visible()

        page.get_by_label(t.gettext("Agree"), exact=True).check()
        page.get_by_label(t.gettext("Please reopen this request")).check()
        page.locator("#feedback").fill(feedback)
        page.get_by_role("button", name=t.gettext("Send my answers")).click()

        heading = page.get_by_role("heading", level=1)
        heading.wait_for()
        assert heading.inner_text() == t.gettext("Thank you")
        assert page.locator("html").get_attribute("lang") == code
        assert page.locator("html").get_attribute("dir") == direction
        assert page.locator("b").count() == 0
    finally:
        context.close()
    assert problems == []

    # End to end: the answer went through the outbox, Kafka and the projector into PostgreSQL.
    relayed(survey_settings)
    assert project(survey_settings).dead_lettered == 0
    rows = db.execute("SELECT survey_id::text, request_id, language, satisfaction, "
                      "reopen_requested, feedback FROM survey_answers").fetchall()
    assert rows == [(survey_id, "64123456", code, "AGREE", True, feedback)]


def test_a_short_link_from_a_text_message_works_in_a_browser(browser, base_url, survey_settings,
                                                             db):
    """The /s/<id> link of an SMS survey: the same form, ticked reopen box and all."""
    t = translations("bn")
    survey_id = str(uuid.uuid4())
    link_id = create_link(db, survey_settings, survey_id, "64123458", "bn")
    context = browser.new_context()
    page = context.new_page()
    try:
        response = page.goto(f"{base_url}/s/{link_id}")
        assert response is not None and response.status == 200
        assert page.locator("html").get_attribute("lang") == "bn"
        page.get_by_label(t.gettext("Strongly disagree"), exact=True).check()
        page.get_by_label(t.gettext("Please reopen this request")).check()
        page.get_by_role("button", name=t.gettext("Send my answers")).click()
        heading = page.get_by_role("heading", level=1)
        heading.wait_for()
        assert heading.inner_text() == t.gettext("Thank you")
    finally:
        context.close()

    relayed(survey_settings)
    assert project(survey_settings).dead_lettered == 0
    rows = db.execute("SELECT survey_id::text, request_id, language, satisfaction, "
                      "reopen_requested FROM survey_answers").fetchall()
    assert rows == [(survey_id, "64123458", "bn", "STRONGLY_DISAGREE", True)]


def test_the_reason_question_appears_for_a_disagreeing_answer_and_can_ask_for_a_reopen(
        browser, base_url, survey_settings, db):
    """No script: the stylesheet's :has() shows NYC's reasons once Disagree or Strongly
    disagree is chosen and hides them again for Agree; the group is a labelled fieldset the
    keyboard moves through; the "should be reopened" reason is a reopen request."""
    t = translations("es")
    survey_id = str(uuid.uuid4())
    token = make_token(SECRET, survey_id, "64123456", "es")
    context = browser.new_context()
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    try:
        response = page.goto(f"{base_url}/survey/{token}")
        assert response is not None and response.status == 200
        fieldset = page.locator("fieldset.reasons")
        assert fieldset.count() == 1 and not fieldset.is_visible()

        page.get_by_label(t.gettext("Disagree"), exact=True).check()
        assert fieldset.is_visible()
        page.get_by_label(t.gettext("Agree"), exact=True).check()
        assert not fieldset.is_visible()

        page.get_by_label(t.gettext("Strongly disagree"), exact=True).check()
        question = page.get_by_role("group", name=t.gettext("Why are you dissatisfied?"))
        assert question.is_visible()
        reasons = question.get_by_role("radio")
        assert reasons.count() == 8
        # the keyboard: Tab from the answers enters the reasons, an arrow key chooses the next
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "reason-1"
        page.keyboard.press("ArrowDown")
        reopen = question.get_by_label(t.gettext(
            "The Agency did not correct the issue and this Service Request should be reopened."))
        assert reopen.is_checked()
        assert not page.get_by_label(t.gettext("Please reopen this request")).is_checked()
        page.get_by_role("button", name=t.gettext("Send my answers")).click()
        heading = page.get_by_role("heading", level=1)
        heading.wait_for()
        assert heading.inner_text() == t.gettext("Thank you")
        assert page.get_by_text(t.gettext(
            "You asked us to reopen Service Request %(request_id)s. We will send it back to the "
            "agency that handled it.") % {"request_id": "64123456"}).is_visible()
    finally:
        context.close()
    assert problems == []

    relayed(survey_settings)
    assert project(survey_settings).dead_lettered == 0
    rows = db.execute("SELECT survey_id::text, satisfaction, reopen_requested, "
                      "dissatisfaction_reason FROM survey_answers").fetchall()
    assert rows == [(survey_id, "STRONGLY_DISAGREE", True, "NOT_CORRECTED_REOPEN")]


def test_a_chosen_reason_can_be_cleared_and_without_a_script_the_form_is_as_before(
        browser, base_url):
    """survey.js shows "Clear the reason I chose" while a reason is chosen; a click clears it
    and the disagreeing answer stays. With JavaScript off the button never shows, and the
    reasons are still there to choose."""
    t = translations("zh")
    clear_name = t.gettext("Clear the reason I chose")
    problems: list[str] = []
    for javascript in (True, False):
        context = browser.new_context(java_script_enabled=javascript)
        page = context.new_page()
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        try:
            token = make_token(SECRET, str(uuid.uuid4()), "64123456", "zh")
            response = page.goto(f"{base_url}/survey/{token}")
            assert response is not None and response.status == 200
            clear = page.locator("#clear-reason")
            page.get_by_label(t.gettext("Strongly disagree"), exact=True).check()
            assert clear.is_hidden()  # no reason chosen yet
            page.get_by_label(t.gettext("Other"), exact=True).check()
            if javascript:
                page.get_by_role("button", name=clear_name).click()
                assert page.locator("input[name='reason']:checked").count() == 0
                assert clear.is_hidden()
                assert page.evaluate("document.activeElement.id") == "reason-1"
                assert page.get_by_label(t.gettext("Strongly disagree"), exact=True).is_checked()
            else:
                assert clear.is_hidden() and clear.get_attribute("hidden") == ""
                assert page.locator("input[name='reason']:checked").count() == 1
        finally:
            context.close()
    assert problems == []
