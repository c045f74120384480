"""SMS segments: the counter, and the survey text in every language within one segment.

Each segment of a text message is billed, so the survey SMS is written to fit one, with its
short link and a production base URL of realistic length (docs/DESIGN.md, "SMS surveys"). The
table of lengths in that section is checked here against the counter, so the docs say what the
texts really cost; a language may need two segments only where that table says so and why.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from survey.i18n import LANGUAGES
from survey.i18n.messages import render_sms
from survey.i18n.segments import GSM7, UCS2, is_gsm7, sms_length, sms_segments
from survey.short_links import LINK_ID_LENGTH, PATH, new_link_id

REPO = Path(__file__).resolve().parents[2]
DESIGN = REPO / "docs" / "DESIGN.md"
# The production survey address the texts are sized for (docs/DESIGN.md): nyc.gov's own domain
# and a short path, as the city's other short links use.
BASE_URL = "https://nyc.gov/311s"
LATIN_GSM7 = {"en", "es", "fr", "ht"}  # Latin-script languages whose survey text is GSM 7-bit


# -- the counter ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "encoding", "units", "segments"), [
    ("", GSM7, 0, 0),
    ("a" * 160, GSM7, 160, 1),
    ("a" * 161, GSM7, 161, 2),
    ("a" * 306, GSM7, 306, 2),
    ("a" * 307, GSM7, 307, 3),
    ("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà", GSM7, 42, 1),
    ("€" * 80, GSM7, 160, 1),  # the extension table counts two
    ("€" * 81, GSM7, 162, 2),
    ("[]{}\\^~|", GSM7, 16, 1),
    ("a" * 158 + "€", GSM7, 160, 1),
    ("a" * 159 + "€", GSM7, 161, 2),
    ("ç", UCS2, 1, 1),  # lower-case c cedilla is not in the GSM alphabet (upper-case is)
    ("Ç", GSM7, 1, 1),
    ("á" + "a" * 69, UCS2, 70, 1),
    ("á" + "a" * 70, UCS2, 71, 2),
    ("á" + "a" * 133, UCS2, 134, 2),
    ("á" + "a" * 134, UCS2, 135, 3),
    ("é" * 160, GSM7, 160, 1),
    ("ł", UCS2, 1, 1),
    ("請" * 70, UCS2, 70, 1),
    ("😀" * 35, UCS2, 70, 1),  # outside the BMP: a surrogate pair, two units
    ("😀" * 36, UCS2, 72, 2),
])
def test_sms_length(text, encoding, units, segments):
    length = sms_length(text)
    assert (length.encoding, length.units, length.segments) == (encoding, units, segments)
    assert sms_segments(text) == segments


def test_an_escape_or_surrogate_pair_is_never_split_across_segments():
    # 152 characters then a two-septet character: it cannot take the 153rd place of segment 1
    assert sms_length("a" * 152 + "€" + "a" * 152).segments == 3
    assert sms_length("a" * 153 + "a" * 153).segments == 2
    assert sms_length("á" + "a" * 65 + "😀" + "a" * 66).segments == 3
    assert sms_length("á" + "a" * 66 + "a" * 67).segments == 2


def test_is_gsm7():
    assert is_gsm7("NYC 311: Your request is closed. https://nyc.gov/311s/s/Ab3dE5fG7hJk")
    assert is_gsm7("demande fermée, réouverture : à") and is_gsm7("Demann ou an fèmen, nòt")
    assert not is_gsm7("Díganos cómo") and not is_gsm7("clôturée") and not is_gsm7("zgłoszenie")
    assert not is_gsm7("\u00a0")  # a no-break space (French typography) is not GSM


# -- the survey SMS in every language --------------------------------------------------------------


def _short_link() -> str:
    return f"{BASE_URL}{PATH}{new_link_id()}"


def _documented() -> dict[str, tuple[str, int, int, int, str]]:
    """docs/DESIGN.md's table: language -> (encoding, characters, limit, segments, why)."""
    text = DESIGN.read_text(encoding="utf-8")
    start, end = text.index("<!-- sms-lengths -->"), text.index("<!-- /sms-lengths -->")
    rows = {}
    for line in text[start:end].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and re.fullmatch(r"`[a-z]{2}`", cells[0]):
            rows[cells[0].strip("`")] = (cells[1].lower(), int(cells[2]), int(cells[3]),
                                         int(cells[4]), cells[5])
    return rows


def test_the_short_link_is_as_long_as_the_docs_assume():
    assert len(_short_link()) == len(BASE_URL) + len(PATH) + LINK_ID_LENGTH == 35
    assert f"`{BASE_URL}`" in DESIGN.read_text(encoding="utf-8")


@pytest.mark.parametrize("code", list(LANGUAGES))
def test_the_survey_sms_fits_one_segment(code):
    link = _short_link()
    sms = render_sms(code, link)
    assert sms.endswith(link)
    length = sms_length(sms)
    documented = _documented()
    assert code in documented, f"docs/DESIGN.md's SMS table lacks {code}"
    encoding, characters, limit, segments, why = documented[code]
    assert (length.encoding, length.units, length.single_limit, length.segments) == \
        (encoding, characters, limit, segments), \
        f"{code}: docs/DESIGN.md says {documented[code][:4]}, the text is {length}: {sms!r}"
    if segments > 1:
        assert why and why != "-", f"{code} needs {segments} segments: the docs must say why"
    else:
        assert length.segments == 1, f"{code}: {length}: {sms!r}"
    if code in LATIN_GSM7:
        assert length.encoding == GSM7, f"{code}: {sorted(set(sms) - set(filter(is_gsm7, sms)))}"


def test_the_docs_list_the_eleven_languages_and_no_other():
    assert sorted(_documented()) == sorted(LANGUAGES)
