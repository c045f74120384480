"""The eleven languages: every catalog complete and current, and texts that render right.

The catalog checks are what keeps a string from reaching a Korean or Urdu reader in English:
the template must match the sources (re-extracted here with Babel, exactly as the documented
``pybabel extract`` does), and every catalog must translate every message, with nothing fuzzy
or empty and the same ``%(name)s`` placeholders as the English.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from survey.i18n import (
    LANGUAGES,
    RTL,
    best_language,
    direction,
    render_survey_message,
    resolve_language,
    translations,
)
from survey.i18n.catalogs import I18N_DIR, LOCALE_DIR, po_path

REPO = Path(__file__).resolve().parents[2]
SOURCE_DIRS = [REPO / "survey" / "i18n", REPO / "producers" / "survey_web"]
OTHER_LANGUAGES = [code for code in LANGUAGES if code != "en"]
PLACEHOLDER = re.compile(r"%\((\w+)\)[sdif]|\{(\w+)\}")
LINK = "https://portal.311.nyc.gov/survey/eyJzIjoiMSJ9.aBcDeF.sIgNaTuRe"
# GSM 03.38 basic character set: an SMS made only of these costs 160 characters a segment.
GSM7 = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNO"
           "PQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")


def _key(message: Message) -> tuple[str, ...]:
    ids = (message.id,) if isinstance(message.id, str) else tuple(message.id)
    return (message.context or "", *ids)


def _read(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as f:
        return read_po(f, locale=locale)


@pytest.fixture(scope="module")
def template() -> Catalog:
    return _read(LOCALE_DIR / "messages.pot")


def _extracted_keys() -> set[tuple[str, ...]]:
    with (I18N_DIR / "babel.cfg").open(encoding="utf-8") as f:
        method_map, options_map = parse_mapping_cfg(f)
    keys: set[tuple[str, ...]] = set()
    for folder in SOURCE_DIRS:
        for _file, _line, message, _comments, context in extract_from_dir(
                folder, method_map, options_map):
            ids = (message,) if isinstance(message, str) else tuple(message)
            keys.add((context or "", *ids))
    return keys


def test_the_template_is_current_with_the_sources(template):
    in_template = {_key(m) for m in template if m.id}
    extracted = _extracted_keys()
    assert extracted, "nothing extracted: is babel.cfg right?"
    assert extracted - in_template == set(), \
        "strings in the sources but not in messages.pot: run pybabel extract (see README.md)"
    assert in_template - extracted == set(), \
        "strings in messages.pot no longer in the sources: run pybabel extract (see README.md)"


@pytest.mark.parametrize("code", OTHER_LANGUAGES)
def test_every_message_is_translated(code, template):
    catalog = _read(po_path(code), locale=code)
    assert not catalog.fuzzy, f"{code}: the catalog header is marked fuzzy"
    translated = {_key(m): m for m in catalog if m.id}
    problems = []
    for wanted in (m for m in template if m.id):
        message = translated.get(_key(wanted))
        if message is None:
            problems.append(f"missing: {wanted.id!r}")
            continue
        forms = ([message.string] if isinstance(message.string, str)
                 else list(message.string or ()))
        if message.fuzzy:
            problems.append(f"fuzzy: {wanted.id!r}")
        if wanted.pluralizable and len(forms) != catalog.num_plurals:
            problems.append(f"{len(forms)} plural forms, not {catalog.num_plurals}: {wanted.id!r}")
        if not all(form and form.strip() for form in forms):
            problems.append(f"empty: {wanted.id!r}")
    assert problems == [], f"{code}: " + "; ".join(problems)
    checker_errors = [(m.id, [str(e) for e in errors]) for m, errors in catalog.check()]
    assert checker_errors == [], f"{code}: {checker_errors}"


def _placeholders(text: str) -> set[str]:
    return {a or b for a, b in PLACEHOLDER.findall(text)}


@pytest.mark.parametrize("code", OTHER_LANGUAGES)
def test_placeholders_match_the_english(code):
    catalog = _read(po_path(code), locale=code)
    problems = []
    for message in catalog:
        if not message.id:
            continue
        english = [message.id] if isinstance(message.id, str) else list(message.id)
        wanted = set().union(*(_placeholders(text) for text in english))
        forms = ([message.string] if isinstance(message.string, str)
                 else list(message.string or ()))
        for form in forms:
            found = _placeholders(form)
            if found != wanted:
                problems.append(f"{english[0]!r}: {sorted(found)} != {sorted(wanted)}")
            if "python-format" in message.flags:
                try:
                    form % dict.fromkeys(wanted, "x")
                except (KeyError, ValueError, TypeError) as exc:
                    problems.append(f"{english[0]!r}: not a valid format string ({exc})")
    assert problems == [], f"{code}: " + "; ".join(problems)


@pytest.mark.parametrize(("tag", "code"), [
    ("es-US", "es"), ("es", "es"), ("ES_mx", "es"), ("zh-Hant", "zh"), ("zh-CN", "zh"),
    ("zh-Hans-CN", "zh"), ("yue", "zh"), ("ht-HT", "ht"), ("hat", "ht"), ("EN", "en"),
    ("en-GB", "en"), ("ru-RU", "ru"), ("bn-BD", "bn"), ("ko-KR", "ko"), ("ar-EG", "ar"),
    ("arz", "ar"), ("ur-PK", "ur"), ("fr-CA", "fr"), ("pl-PL", "pl"), (" pl ", "pl"),
    (None, "en"), ("", "en"), ("yi", "en"), ("it-IT", "en"), ("x-private", "en"), ("-", "en"),
])
def test_resolve_language(tag, code):
    assert resolve_language(tag) == code


def test_languages_and_directions():
    assert list(LANGUAGES) == ["en", "es", "zh", "ru", "bn", "ht", "ko", "ar", "ur", "fr", "pl"]
    assert sorted(RTL) == ["ar", "ur"]
    assert [direction(code) for code in LANGUAGES].count("rtl") == 2
    assert direction("ar") == "rtl" and direction("ur-PK") == "rtl" and direction("fr") == "ltr"


@pytest.mark.parametrize(("header", "code"), [
    (None, "en"), ("", "en"), ("es-US,es;q=0.9,en;q=0.8", "es"), ("de-DE,ko;q=0.5", "ko"),
    ("en;q=0.4, ru;q=0.9", "ru"), ("yi, it", "en"), ("fr;q=0, pl", "pl"), ("zh-TW;q=bad", "en"),
])
def test_best_language_from_accept_language(header, code):
    assert best_language(header) == code


class _Root(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.html_attrs: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "html" and not self.html_attrs:
            self.html_attrs = dict(attrs)


def _html_root(html: str) -> dict[str, str | None]:
    parser = _Root()
    parser.feed(html)
    return parser.html_attrs


@pytest.mark.parametrize("code", list(LANGUAGES))
def test_the_email_renders_in_every_language(code):
    message = render_survey_message(code, LINK, "64123456", "Department of Sanitation",
                                    "RESOLVED", 30)
    assert message.language == code
    assert _html_root(message.html) == {"lang": code, "dir": "rtl" if code in RTL else "ltr"}
    for part in (message.subject, message.text, message.html):
        assert "64123456" in part
    for part in (message.subject, message.text, message.html, message.sms):
        assert "%(" not in part and "{{" not in part
    for part in (message.text, message.html, message.sms):
        assert LINK in part
    assert "30" in message.text and "Department of Sanitation" in message.text
    t = translations(code)
    assert t.gettext("Take the survey") in message.html
    if code != "en":
        english = render_survey_message("en", LINK, "64123456", "Department of Sanitation",
                                        "RESOLVED", 30)
        assert message.subject != english.subject
        assert "Take the survey" not in message.html
        assert "Hello," not in message.text


@pytest.mark.parametrize("code", sorted(RTL))
def test_arabic_and_urdu_emails_are_right_to_left(code):
    message = render_survey_message(f"{code}-XX", LINK, "64123456", None, None, 30)
    assert f'<html lang="{code}" dir="rtl">' in message.html
    assert 'text-align:right' in message.html


def test_the_english_email_says_what_happened_and_nothing_personal():
    message = render_survey_message("en-US", LINK, "64123456", "Department of Transportation",
                                    "resolved", 30)
    assert message.subject == "311 Service Request 64123456: tell us how we did"
    assert ("Your 311 Service Request 64123456 was marked resolved by "
            "Department of Transportation.") in message.text
    assert "This link works for 30 days." in message.text
    assert "you gave this address when filing the request" in message.text
    assert "@" not in message.text  # no address, no name: nothing personal in the body
    one_day = render_survey_message("en", LINK, "1", None, "COMPLETE", 1)
    assert "This link works for 1 day." in one_day.text
    assert "Your 311 Service Request 1 was marked complete." in one_day.text
    unknown = render_survey_message("en", LINK, "1", "  ", "REOPENED?", 2)
    assert "Your 311 Service Request 1 was closed." in unknown.text


def test_agency_names_and_links_are_escaped_in_the_html_email_only():
    message = render_survey_message("en", LINK + '"><script>x</script>', "1",
                                    "Parks & <Recreation>", "CLOSED", 30)
    assert "Parks &amp; &lt;Recreation&gt;" in message.html
    assert "<script>" not in message.html
    assert "Parks & <Recreation>" in message.text  # plain text is not HTML


def test_the_sms_ends_with_its_link_in_every_language():
    """The link comes last, whole, after a space: phones find it there (the segment count is
    tests/survey/test_sms_segments.py's)."""
    short = "https://nyc.gov/311s/s/Ab3dE5fG7hJk"
    for code in LANGUAGES:
        sms = render_survey_message(code, short, "6412345678", None, None, 30).sms
        assert sms.endswith(" " + short), (code, sms)
        assert sms.startswith("NYC 311"), (code, sms)
        assert "\n" not in sms
    english = render_survey_message("en", short, "1", None, None, 30).sms
    assert set(english) <= GSM7, set(english) - GSM7
