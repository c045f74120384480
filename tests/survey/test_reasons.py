"""NYC's reasons for dissatisfaction: the codes are the schema's, the texts NYC's own.

The English texts below are copied from NYC Open Data's "311 Resolution Satisfaction Survey"
(5ijn-vbdv), column Dissatisfaction Reason (eight distinct values), not read from the code, so a
typo in survey/i18n/reasons.py fails here rather than reaching the published dataset.
"""

from __future__ import annotations

import pytest

from schemas.validate import DISAGREEING, REOPEN_REASON, reason_symbols
from survey.i18n import LANGUAGES, translations
from survey.i18n.reasons import REASON_TEXT, REASONS

NYC = {
    "The Agency did not correct the issue.",
    "The Agency did not correct the issue and this Service Request should be reopened.",
    "The Agency corrected the issue, but they took too long to respond.",
    "The Agency corrected the issue, but the work they did was unsatisfactory.",
    "The Agency did not provide enough status updates.",
    "Status updates were unhelpful, inaccurate, incomplete, and/or confusing.",
    "The Agency said I did not provide complete or accurate information, but I did.",
    "Other",
}


def test_the_codes_are_the_schemas_symbols_in_its_order():
    assert tuple(code for code, _ in REASONS) == reason_symbols()


def test_the_texts_are_nycs_exactly():
    assert set(REASON_TEXT.values()) == NYC
    assert len(REASONS) == len(NYC)


def test_the_reopen_reason_is_the_one_that_asks_for_a_reopen():
    assert REASON_TEXT[REOPEN_REASON] == ("The Agency did not correct the issue and this "
                                          "Service Request should be reopened.")
    assert set(DISAGREEING) == {"DISAGREE", "STRONGLY_DISAGREE"}


@pytest.mark.parametrize("code", [c for c in LANGUAGES if c != "en"])
def test_every_reason_is_translated_into_a_text_of_its_own(code):
    t = translations(code)
    texts = [t.gettext(text) for _, text in REASONS]
    assert not set(texts) & NYC, f"{code}: a reason left in English"
    assert len(set(texts)) == len(texts), f"{code}: two reasons read the same"
