"""Every message the pages show is translated into Chinese and English, with its placeholders."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

import civicloud.web
from civicloud.web.i18n import LANGUAGES, load_translations, po_path

WEB_DIR = Path(civicloud.web.__file__).resolve().parent
METHODS = [
    ("templates/**.html", "jinja2.ext:babel_extract"),
    ("pages/**.py", "python"),
    ("i18n.py", "python"),
]
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def extracted_msgids() -> set[str]:
    """Every msgid in the templates (``_()``) and the pages' Python code (``N_()``)."""
    found: set[str] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(WEB_DIR, METHODS):
        found.add(message if isinstance(message, str) else message[0])
    return found


def catalog(language: str) -> Catalog:
    """The ``.po`` catalog of ``language``."""
    with po_path(language).open("rb") as po_file:
        return read_po(po_file, locale=language)


def test_the_extractor_finds_the_pages_messages() -> None:
    msgids = extracted_msgids()
    # Spot checks: a template string, a Python N_() string, and one with a placeholder
    assert "Skip to main content" in msgids
    assert "Bill payment" in msgids
    assert "Signed in as %(name)s" in msgids
    assert len(msgids) > 150


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_message_has_a_translation(language: str) -> None:
    translated = {m.id: m for m in catalog(language) if m.id}
    missing = sorted(
        msgid
        for msgid in extracted_msgids()
        if msgid not in translated or not translated[msgid].string
    )
    assert missing == []


def test_both_catalogs_hold_the_same_messages_and_nothing_fuzzy() -> None:
    zh, en = catalog("zh"), catalog("en")
    assert {m.id for m in zh if m.id} == {m.id for m in en if m.id}
    for language_catalog in (zh, en):
        assert not [m.id for m in language_catalog if m.id and m.fuzzy]


@pytest.mark.parametrize("language", LANGUAGES)
def test_placeholders_survive_translation(language: str) -> None:
    for message in catalog(language):
        if message.id and isinstance(message.id, str) and isinstance(message.string, str):
            expected = sorted(PLACEHOLDER.findall(message.id))
            assert sorted(PLACEHOLDER.findall(message.string)) == expected, message.id


def test_catalogs_load_straight_from_the_po_files() -> None:
    translations = load_translations()
    assert translations["zh"].gettext("Bill payment") == "缴费服务"
    assert translations["en"].gettext("Bill payment") == "Bill payment"
    assert translations["zh"].gettext("Tenants") == "租户"
