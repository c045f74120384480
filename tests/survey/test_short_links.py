"""SMS surveys carry a short link: dispatcher -> SNS server -> the text -> its link -> the
survey page -> SurveyAnswered, against the real Kafka, PostgreSQL and an SNS-compatible server.

The email of a person who gave both keeps its signed link; only the SMS is shortened.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import replace

import httpx
import pytest

from producers.survey_web import create_app
from producers.survey_web.outbox import answered_event_id
from survey import short_links as survey_links
from survey.i18n import translations
from survey.i18n.segments import sms_length
from tests.consumers.test_dispatcher import LINK, SECRET, closed, created, dispatch
from tests.helpers import produce, project
from tests.outbox_helpers import read_answers
from tests.servers import received, serve_app

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("aws_env")]

BASE_URL = "https://nyc.gov/311s"  # docs/DESIGN.md: the length the SMS texts are sized for
SHORT = re.compile(r"https://nyc\.gov/311s/s/([A-Za-z0-9]{12})$")


def test_an_sms_survey_carries_a_short_link_that_opens_the_survey(settings, topics, db,
                                                                   moto_server):
    sms = replace(settings, survey_secret=SECRET, smtp_host="", sms_provider="sns",
                  sns_endpoint_url=moto_server.url, survey_base_url=BASE_URL)
    produce(sms, [created("4101", phone="+12125550181", language="ar"), closed("4101"),
                  created("4102", phone="+12125550182", language="bn"), closed("4102")])
    project(sms)
    assert dispatch(sms).stats.by_channel == {"SMS": 2}

    texts = {m["phone_number"]: m["message"] for m in moto_server.sms_messages()
             if m["phone_number"] in ("+12125550181", "+12125550182")}
    ids = {}
    for phone, text in texts.items():
        match = SHORT.search(text)
        assert match, text
        ids[phone] = match.group(1)
        assert sms_length(text).segments == 1, text
        assert "/survey/" not in text
    links = {row[0]: row[1:] for row in db.execute(
        "SELECT l.link_id, l.survey_id::text, l.request_id, l.language, "
        "round(extract(epoch FROM l.expires_at - now()) / 86400), d.survey_id::text "
        "FROM survey_links l JOIN survey_dispatch d USING (request_id)").fetchall()}
    survey_ar, request_ar, language_ar, days, dispatched = links[ids["+12125550181"]]
    assert (request_ar, language_ar, days) == ("4101", "ar", sms.survey_token_days)
    assert survey_ar == dispatched

    # The page the short link opens (the link's host is the production one: ask our server).
    with serve_app(create_app(sms)) as base_url, httpx.Client(base_url=base_url,
                                                               timeout=30) as http:
        page = http.get(f"/s/{ids['+12125550181']}")
        assert page.status_code == 200 and '<html lang="ar" dir="rtl">' in page.text
        assert "4101" in page.text
        answer = http.post(f"/s/{ids['+12125550181']}",
                           data={"satisfaction": "STRONGLY_DISAGREE", "reopen": "yes"})
        assert answer.status_code == 200
        assert translations("ar").gettext("Thank you") in answer.text
        [event] = read_answers(sms)
    assert (event["survey_id"], event["request_id"], event["language"],
            event["reopen_requested"]) == (survey_ar, "4101", "ar", True)
    assert event["event_id"] == answered_event_id(survey_ar)


def test_a_person_with_an_email_and_a_phone_gets_the_signed_link_by_email(
        settings, topics, db, plain_smtp, moto_server):
    smtp = plain_smtp()
    both = replace(settings, survey_secret=SECRET, smtp_host="127.0.0.1", smtp_port=smtp.port,
                   smtp_starttls=False, sms_provider="sns", sns_endpoint_url=moto_server.url,
                   survey_base_url=BASE_URL)
    produce(both, [created("4201", email="ana@example.com", phone="+12125550191"),
                   closed("4201")])
    project(both)
    assert dispatch(both).stats.by_channel == {"EMAIL": 1}
    [mail] = received(smtp.maildir)
    assert LINK.search(mail.get_body(("plain",)).get_content())
    assert not [m for m in moto_server.sms_messages() if m["phone_number"] == "+12125550191"]


def test_a_base_url_too_long_for_one_segment_is_warned_about_once(settings, db, caplog):
    long_base = replace(settings, survey_base_url="https://survey.311.cityofnewyork.example.gov")
    survey_links._warned.discard("ru")
    with caplog.at_level(logging.WARNING, logger="survey.short_links"):
        for request_id in ("4301", "4302"):
            text = survey_links.sms_with_short_link(db, long_base, str(uuid.uuid4()), request_id,
                                                    "ru")
            assert sms_length(text).segments == 2
    warnings = [r.getMessage() for r in caplog.records if r.name == "survey.short_links"]
    assert len(warnings) == 1 and "ru survey SMS takes 2 segments" in warnings[0]
    assert "NYC311_SURVEY_BASE_URL" in warnings[0]
    assert not any(survey_links.PATH in w for w in warnings)  # the link itself is never logged
