"""Message catalogs read straight from the .po files, and Jinja2 environments that use them.

Translators edit ``locale/<code>/LC_MESSAGES/messages.po``; nothing compiled is committed. Each
catalog is compiled in memory on first use (``write_mo`` into a buffer) and cached for the life
of the process, so a missing build step can never serve stale translations.

Templates get their language through the render context (a ``translations`` variable), not
through the environment, so one environment serves every language at once from many threads.
"""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations
from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from jinja2.runtime import Context

from survey.i18n.languages import DEFAULT_LANGUAGE, LANGUAGES, direction, resolve_language

I18N_DIR = Path(__file__).resolve().parent
LOCALE_DIR = I18N_DIR / "locale"
DOMAIN = "messages"


def N_(message: str) -> str:
    """Mark a string for extraction; it is translated later, where the language is known."""
    return message


def po_path(code: str) -> Path:
    return LOCALE_DIR / code / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def translations(code: str) -> Translations:
    """The compiled catalog of a supported language; English is the msgids themselves."""
    code = resolve_language(code)
    if code == DEFAULT_LANGUAGE:
        return Translations()
    with po_path(code).open("rb") as f:
        catalog = read_po(f, locale=code, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)


def format_count(value: int, code: str) -> str:
    """A number as the language writes it ("2,000", "2.000", "2 000"), always in 0-9 digits,
    like the request numbers beside it."""
    return format_decimal(value, locale=resolve_language(code), numbering_system="latn")


@pass_context
def _gettext(context: Context, message: str) -> str:
    return str(context["translations"].gettext(message))


@pass_context
def _ngettext(context: Context, singular: str, plural: str, n: int) -> str:
    return str(context["translations"].ngettext(singular, plural, n))


@pass_context
def _pgettext(context: Context, msgctxt: str, message: str) -> str:
    return str(context["translations"].pgettext(msgctxt, message))


@pass_context
def _npgettext(context: Context, msgctxt: str, singular: str, plural: str, n: int) -> str:
    return str(context["translations"].npgettext(msgctxt, singular, plural, n))


def template_environment(folder: Path) -> Environment:
    """Templates in ``folder`` with the i18n extension (new-style gettext, trimmed blocks).

    HTML is autoescaped, variables inside translated strings included; ``.txt`` templates
    (plain-text email, SMS) are not HTML and are left unescaped.
    """
    env = Environment(
        loader=FileSystemLoader(folder),
        autoescape=select_autoescape(enabled_extensions=("html", "htm", "xml"),
                                     disabled_extensions=("txt",), default=True),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_callables(  # type: ignore[attr-defined]
        _gettext, _ngettext, newstyle=True, pgettext=_pgettext, npgettext=_npgettext)
    return env


def language_context(code: str) -> dict[str, Any]:
    """What every template needs to render in ``code``: its catalog, ``lang`` and ``dir``."""
    code = resolve_language(code)
    return {"translations": translations(code), "lang": code, "dir": direction(code),
            "language_name": LANGUAGES[code]}
