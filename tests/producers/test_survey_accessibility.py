"""The survey page against WCAG 2.1 AA, and answered with the keyboard alone.

axe-core runs in headless Chromium on every page a person can meet: the form in English,
Spanish, Chinese and Arabic (right to left) and then in every other language, the form showing
what to fix, the thank-you page and the notice pages. Then a person who uses no mouse answers
the survey with Tab, the arrow keys, Space and Enter, seeing where the focus is at every step,
and the answer is followed into PostgreSQL as test_survey_browser does.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from survey.i18n import LANGUAGES, direction, translations
from survey.links import make_token
from tests.browser import axe as axe_engine
from tests.browser.axe import Axe
from tests.browser.keyboard import MAX_TABS, focused
from tests.conftest import SURVEY_SECRET as SECRET
from tests.helpers import project
from tests.outbox_helpers import relayed
from tests.producers import test_survey_browser as survey_browser
from tests.servers import needs_chromium

pytestmark = needs_chromium

# the fixtures used here: axe-core, and the app as test_survey_browser serves it
axe = axe_engine.axe
base_url = survey_browser.base_url

SHOWN = ("en", "es", "zh", "ar")  # the languages of the issue; the others are checked too
PHONE = {"width": 320, "height": 640}  # WCAG's reflow width


@pytest.fixture
def open_page(browser) -> Iterator[Any]:
    """A new page per call; afterwards, assert the browser reported no problem (a resource the
    Content Security Policy blocked is a console error) but the status of an error page."""
    contexts = []
    problems: list[str] = []

    def _open() -> Any:
        context = browser.new_context()
        contexts.append(context)
        page = context.new_page()
        # Chromium logs every 4xx page it is sent (the form sent empty is one, 400): expected
        # for a page, not a resource, that came with that status
        pages_status: set[int] = set()
        page.on("response", lambda r: pages_status.add(r.status)
                if r.request.is_navigation_request() else None)

        def console(message: Any) -> None:
            expected = any(message.text.startswith("Failed to load resource: the server "
                                                   f"responded with a status of {status} ")
                           for status in pages_status)
            if message.type in ("error", "warning") and not expected:
                problems.append(f"console {message.type}: {message.text}")

        page.on("console", console)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
        return page

    yield _open
    for context in contexts:
        context.close()
    assert problems == []


def token(code: str, request_id: str = "64123456") -> str:
    return make_token(SECRET, str(uuid.uuid4()), request_id, code)


def thanked_and_projected(page: Any, t: Any, code: str, survey_settings: Any) -> None:
    """The thank-you page in the person's language, then the answer relayed from the outbox
    and projected, with nothing dead-lettered."""
    heading = page.get_by_role("heading", level=1)
    heading.wait_for()
    assert heading.inner_text() == t.gettext("Thank you")
    assert_page_language(page, code)
    relayed(survey_settings)
    assert project(survey_settings).dead_lettered == 0


def assert_page_language(page: Any, code: str) -> None:
    assert page.locator("html").get_attribute("lang") == code
    assert page.locator("html").get_attribute("dir") == direction(code)


@pytest.mark.parametrize("code", SHOWN)
def test_form_thanks_and_answered_pages_pass_axe(axe: Axe, open_page, base_url, code):
    t = translations(code)
    page = open_page()
    url = f"{base_url}/survey/{token(code)}"
    response = page.goto(url)
    assert response is not None and response.status == 200
    assert_page_language(page, code)
    axe.check(page, f"survey form ({code})")
    desktop = page.viewport_size
    page.set_viewport_size(PHONE)
    axe.check(page, f"survey form on a phone ({code})")
    page.set_viewport_size(desktop)

    # sent empty: the form again, with what to fix
    page.get_by_role("button", name=t.gettext("Send my answers")).click()
    page.get_by_role("alert").wait_for()
    assert_page_language(page, code)
    axe.check(page, f"survey form with a problem shown ({code})")

    page.get_by_label(t.gettext("Disagree"), exact=True).check()
    page.get_by_label(t.gettext("Please reopen this request")).check()
    page.get_by_role("button", name=t.gettext("Send my answers")).click()
    page.get_by_role("heading", level=1, name=t.gettext("Thank you")).wait_for()
    assert_page_language(page, code)
    axe.check(page, f"thank-you page ({code})")

    response = page.goto(url)
    assert response is not None and response.status == 200
    assert page.get_by_role("heading", level=1).inner_text() == t.gettext(
        "This survey has already been answered")
    axe.check(page, f"answered notice ({code})")


def test_form_passes_axe_in_every_language(axe: Axe, open_page, base_url):
    page = open_page()
    link = f"{base_url}/survey/{token('en')}"
    for code in LANGUAGES:
        if code in SHOWN:
            continue
        response = page.goto(f"{link}?lang={code}")
        assert response is not None and response.status == 200
        assert_page_language(page, code)
        axe.check(page, f"survey form ({code})")


@pytest.mark.parametrize("code", ["en", "ar"])
@pytest.mark.parametrize(("path", "status"), [("/", 200), ("/survey/not-a-link", 400),
                                              ("/no/such/page", 404)])
def test_notice_pages_pass_axe(axe: Axe, open_page, base_url, code, path, status):
    page = open_page()
    response = page.goto(f"{base_url}{path}?lang={code}")
    assert response is not None and response.status == status
    assert_page_language(page, code)
    assert page.get_by_role("heading", level=1).count() == 1
    axe.check(page, f"{path} ({code})")


def tab_to(page: Any, name: str) -> dict[str, Any]:
    """Press Tab until a form control named ``name`` has the focus; every stop on the way
    must show where the focus is."""
    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        if (element := focused(page))["name"] == name:
            return element
    raise AssertionError(f"{MAX_TABS} presses of Tab did not reach {name!r}")


@pytest.mark.parametrize("code", ["en", "ar"])
def test_the_survey_can_be_answered_with_the_keyboard_alone(axe: Axe, open_page,
                                                            base_url, survey_settings, db,
                                                            code):
    t = translations(code)
    survey_id = str(uuid.uuid4())
    link = make_token(SECRET, survey_id, "64123460", code)
    feedback = f"Typed with the keyboard ({code})"
    page = open_page()
    response = page.goto(f"{base_url}/survey/{link}")
    assert response is not None and response.status == 200

    # the first Tab stop is the skip link, shown on the screen while it has the focus
    page.keyboard.press("Tab")
    skip = focused(page)
    assert skip["tag"] == "a" and page.locator("a.skip").bounding_box()["x"] >= 0

    # into the answers: the first one has the focus, none is chosen yet; the arrows choose
    first = tab_to(page, "satisfaction")
    assert (first["value"], first["checked"]) == ("STRONGLY_AGREE", False)
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowUp")
    chosen = focused(page)
    assert (chosen["value"], chosen["checked"]) == ("AGREE", True)
    assert page.get_by_label(t.gettext("Agree"), exact=True).is_checked()

    # one Tab leaves the group for the reopen box, Space ticks it
    page.keyboard.press("Tab")
    assert focused(page)["name"] == "reopen"
    page.keyboard.press("Space")
    assert focused(page)["checked"]

    page.keyboard.press("Tab")
    assert focused(page)["id"] == "feedback"
    page.keyboard.type(feedback)

    # back and forth: Shift+Tab returns to the ticked box, and the group keeps its answer
    page.keyboard.press("Shift+Tab")
    back = focused(page)
    assert (back["name"], back["checked"]) == ("reopen", True)
    page.keyboard.press("Shift+Tab")
    assert focused(page)["value"] == "AGREE"  # Shift+Tab lands on the chosen answer
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert focused(page)["id"] == "feedback"

    page.keyboard.press("Tab")
    button = focused(page)
    assert button["tag"] == "button"
    axe.check(page, f"survey form filled in with the keyboard ({code})")
    page.keyboard.press("Enter")

    # recorded as a click-answered survey is (test_survey_browser)
    thanked_and_projected(page, t, code, survey_settings)
    rows = db.execute("SELECT survey_id::text, request_id, language, satisfaction, "
                      "reopen_requested, feedback FROM survey_answers").fetchall()
    assert rows == [(survey_id, "64123460", code, "AGREE", True, feedback)]


CLEAR = "Clear the reason I chose"
REASON_CHECKED = "input[name='reason']:checked"


@pytest.mark.parametrize("code", SHOWN)
def test_the_reason_question_passes_axe_once_it_shows(axe: Axe, open_page, base_url, code):
    """The optional reason question, hidden until a disagreeing answer is chosen: checked shown,
    with a reason chosen (its clear button showing), on a phone, and cleared again."""
    t = translations(code)
    page = open_page()
    response = page.goto(f"{base_url}/survey/{token(code)}")
    assert response is not None and response.status == 200
    question = page.get_by_role("group", name=t.gettext("Why are you dissatisfied?"))
    assert not question.is_visible()
    page.get_by_label(t.gettext("Disagree"), exact=True).check()
    assert question.is_visible()
    clear = question.get_by_role("button", name=t.gettext(CLEAR))
    assert clear.count() == 0  # hidden, so not in the accessibility tree, until a reason is chosen
    axe.check(page, f"survey form, reason question shown ({code})")

    question.get_by_role("radio").nth(4).check()
    assert clear.is_visible()
    axe.check(page, f"survey form, a reason chosen ({code})")
    desktop = page.viewport_size
    page.set_viewport_size(PHONE)
    axe.check(page, f"survey form on a phone, a reason chosen ({code})")
    page.set_viewport_size(desktop)

    clear.click()
    assert page.locator(REASON_CHECKED).count() == 0 and clear.count() == 0
    assert page.get_by_label(t.gettext("Disagree"), exact=True).is_checked()
    axe.check(page, f"survey form, the reason cleared ({code})")


@pytest.mark.parametrize("code", ["en", "ar"])
def test_a_disagreeing_answer_and_its_reason_can_be_given_with_the_keyboard_alone(
        axe: Axe, open_page, base_url, survey_settings, db, code):
    """Disagree with the arrow keys, into the reasons: the arrows choose each reason they pass
    (the reopen reason first), so the person clears it with the button, chooses another, writes
    a comment and sends with Enter; the answer stored carries that reason and no reopen."""
    t = translations(code)
    survey_id = str(uuid.uuid4())
    link = make_token(SECRET, survey_id, "64123461", code)
    feedback = f"Fixed a month late ({code})"
    page = open_page()
    response = page.goto(f"{base_url}/survey/{link}")
    assert response is not None and response.status == 200
    question = page.get_by_role("group", name=t.gettext("Why are you dissatisfied?"))

    first = tab_to(page, "satisfaction")
    assert (first["value"], first["checked"]) == ("STRONGLY_AGREE", False)
    assert not question.is_visible()
    for _ in range(3):
        page.keyboard.press("ArrowDown")
    chosen = focused(page)
    assert (chosen["value"], chosen["checked"]) == ("DISAGREE", True)
    assert question.is_visible()  # a disagreeing answer shows the reasons

    # Tab enters the reasons on the first, none chosen; the arrow chooses the next
    page.keyboard.press("Tab")
    reason = focused(page)
    assert (reason["id"], reason["checked"]) == ("reason-1", False)
    page.keyboard.press("ArrowDown")
    reason = focused(page)
    assert (reason["value"], reason["checked"]) == ("NOT_CORRECTED_REOPEN", True)

    # the next Tab stop clears it, and the focus goes back to the first reason, not chosen
    page.keyboard.press("Tab")
    button = focused(page)
    assert (button["tag"], button["id"], button["text"]) == ("button", "clear-reason",
                                                             t.gettext(CLEAR))
    axe.check(page, f"survey form, a reason chosen with the keyboard ({code})")
    page.keyboard.press("Enter")
    reason = focused(page)
    assert (reason["id"], reason["checked"]) == ("reason-1", False)
    assert page.locator(REASON_CHECKED).count() == 0
    assert page.locator("#clear-reason").is_hidden()

    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    reason = focused(page)
    assert (reason["value"], reason["checked"]) == ("CORRECTED_TOO_LATE", True)
    assert page.get_by_label(t.gettext(
        "The Agency corrected the issue, but they took too long to respond.")).is_checked()

    # past the clear button and the reopen box (left empty) to the comments, then send
    page.keyboard.press("Tab")
    assert focused(page)["id"] == "clear-reason"
    page.keyboard.press("Tab")
    reopen = focused(page)
    assert (reopen["name"], reopen["checked"]) == ("reopen", False)
    page.keyboard.press("Tab")
    assert focused(page)["id"] == "feedback"
    page.keyboard.type(feedback)
    page.keyboard.press("Tab")
    assert focused(page)["tag"] == "button"
    assert page.locator(REASON_CHECKED).get_attribute("value") == "CORRECTED_TOO_LATE"
    page.keyboard.press("Enter")

    thanked_and_projected(page, t, code, survey_settings)
    rows = db.execute("SELECT survey_id::text, request_id, language, satisfaction, "
                      "dissatisfaction_reason, reopen_requested, feedback "
                      "FROM survey_answers").fetchall()
    assert rows == [(survey_id, "64123461", code, "DISAGREE", "CORRECTED_TOO_LATE", False,
                     feedback)]
