"""The eleven survey languages and how a person's language tag maps onto them.

Admin Code §23-306 asks for the survey in English and the ten designated citywide languages
(§23-1101). Upstream systems report the language a person used as a BCP 47 tag ("es-US",
"zh-Hant", "ht-HT", sometimes an ISO 639-3 code such as "yue"), so every tag is mapped onto one
of the eleven here, in one place; anything else gets English, the language every survey has.
"""

from __future__ import annotations

from typing import Literal

# code -> the language's name in itself, in the order the language switch lists them.
LANGUAGES: dict[str, str] = {
    "en": "English",
    "es": "Español",
    "zh": "中文",
    "ru": "Русский",
    "bn": "বাংলা",
    "ht": "Kreyòl Ayisyen",
    "ko": "한국어",
    "ar": "العربية",
    "ur": "اردو",
    "fr": "Français",
    "pl": "Polski",
}
DEFAULT_LANGUAGE = "en"
RTL: frozenset[str] = frozenset({"ar", "ur"})

# Primary subtags that are not one of the eleven codes but are written in one of them: ISO 639-2
# and 639-3 codes, the Chinese varieties (all read in the same Chinese text) and the spoken
# Arabic varieties (read in Modern Standard Arabic).
_ALIASES: dict[str, str] = {
    "eng": "en", "spa": "es", "rus": "ru", "ben": "bn", "hat": "ht", "kor": "ko",
    "ara": "ar", "urd": "ur", "fra": "fr", "fre": "fr", "pol": "pl",
    "zho": "zh", "chi": "zh", "cmn": "zh", "yue": "zh", "wuu": "zh", "hak": "zh", "nan": "zh",
    "arb": "ar", "arz": "ar", "apc": "ar", "ajp": "ar", "ary": "ar", "acm": "ar", "afb": "ar",
}


def match_language(tag: str | None) -> str | None:
    """The supported code for ``tag``, or ``None`` when the tag names no supported language."""
    if not tag:
        return None
    primary = tag.strip().replace("_", "-").split("-", 1)[0].lower()
    if primary in LANGUAGES:
        return primary
    return _ALIASES.get(primary)


def resolve_language(tag: str | None) -> str:
    """One of the eleven codes for a BCP 47 tag: ``"zh-Hant"`` -> ``"zh"``, ``"yi"`` -> ``"en"``."""
    return match_language(tag) or DEFAULT_LANGUAGE


def best_language(accept_language: str | None) -> str:
    """The supported language a browser's ``Accept-Language`` header prefers most, else English."""
    if not accept_language:
        return DEFAULT_LANGUAGE
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(accept_language.split(",")):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        code = match_language(tag)
        if code is not None and quality > 0:
            ranked.append((-quality, position, code))
    return min(ranked)[2] if ranked else DEFAULT_LANGUAGE


def direction(code: str) -> Literal["rtl", "ltr"]:
    """Writing direction of a language, for the ``dir`` attribute of a page or an email."""
    return "rtl" if resolve_language(code) in RTL else "ltr"
