"""The pages' languages: gettext catalogs read from ``.po`` files, and choosing a language per request.

The catalogs live in ``web/locales/<lang>/LC_MESSAGES/messages.po`` and are read with Babel at
start-up and turned into gettext translations in memory, so there is no compile step and no
``.mo`` file to forget. Nothing here knows about HTTP beyond header text.
"""

from __future__ import annotations

import gettext
import io
from collections.abc import Iterable, Mapping
from pathlib import Path

from babel import negotiate_locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

#: The languages pages are written in; the first is the fallback of last resort.
LANGUAGES: tuple[str, ...] = ("zh", "en")
#: The value of ``<html lang>`` for each language.
HTML_LANG: Mapping[str, str] = {"zh": "zh-CN", "en": "en"}
#: Each language's name in itself, for the switch in the header.
NATIVE_NAMES: Mapping[str, str] = {"zh": "中文", "en": "English"}
LOCALES_DIR = Path(__file__).parent / "locales"
DOMAIN = "messages"


def po_path(language: str, directory: Path = LOCALES_DIR) -> Path:
    """Where the ``.po`` catalog of ``language`` lives."""
    return directory / language / "LC_MESSAGES" / f"{DOMAIN}.po"


#: The modules' catalog directories (``Module.locales``), consulted after the shell's.
_MODULE_CATALOGS: list[Path] = []


def add_module_catalogs(directories: Iterable[Path]) -> None:
    """Make modules' catalogs part of every translation loaded from now on (the composition root
    adds the installed modules' before anything is shown)."""
    for directory in directories:
        if directory not in _MODULE_CATALOGS:
            _MODULE_CATALOGS.append(directory)


def module_catalogs() -> tuple[Path, ...]:
    """The modules' catalog directories added so far."""
    return tuple(_MODULE_CATALOGS)


def load_translations(directory: Path = LOCALES_DIR) -> dict[str, gettext.GNUTranslations]:
    """Read every language's ``.po`` catalog into gettext translations (fuzzy entries are skipped):
    the shell's from ``directory``, then each module's, consulted in that order."""
    found: dict[str, gettext.GNUTranslations] = {}
    for language in LANGUAGES:
        for place in (directory, *_MODULE_CATALOGS):
            translation = _read_catalog(po_path(language, place), language)
            if language in found:
                found[language].add_fallback(translation)
            else:
                found[language] = translation
    return found


def _read_catalog(path: Path, language: str) -> gettext.GNUTranslations:
    with path.open("rb") as po_file:
        catalog = read_po(po_file, locale=language, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def parse_accept_language(header: str | None) -> list[str]:
    """The language tags of an ``Accept-Language`` header, most preferred first (``q=0`` dropped)."""
    if not header:
        return []
    weighted: list[tuple[float, int, str]] = []
    for position, item in enumerate(header.split(",")[:32]):
        tag, _, params = item.strip().partition(";")
        tag = tag.strip()
        if not tag or tag == "*" or len(tag) > 35:
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            weighted.append((-quality, position, tag))
    return [tag for _, _, tag in sorted(weighted)]


def choose_language(
    *, requested: str | None, cookie: str | None, accept_language: str | None, default: str
) -> str:
    """The page language: ``?lang=``, else the cookie, else ``Accept-Language``, else ``default``."""
    for candidate in (requested, cookie):
        if candidate in LANGUAGES:
            return candidate
    best = negotiate_locale(parse_accept_language(accept_language), list(LANGUAGES), sep="-")
    if best is not None and best.lower() in LANGUAGES:
        return best.lower()
    return default if default in LANGUAGES else LANGUAGES[0]
