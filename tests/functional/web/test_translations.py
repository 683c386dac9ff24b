"""Every message the pages show is translated into Chinese and English, with its placeholders:
the shell's catalog for the shell's templates and pages, and each module's own catalog
(``Module.locales``) for the module's templates and code."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

import civicloud.web
from civicloud.app import MODULES
from civicloud.web.i18n import LANGUAGES, LOCALES_DIR, load_translations, po_path

WEB_DIR = Path(civicloud.web.__file__).resolve().parent
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


@dataclass(frozen=True)
class Sources:
    """Where one catalog's messages are written, and the catalog."""

    name: str
    directory: Path
    methods: tuple[tuple[str, str], ...]
    locales: Path


SHELL = Sources(
    "core",
    WEB_DIR,
    (
        ("templates/**.html", "jinja2.ext:babel_extract"),
        ("pages/**.py", "python"),
        ("i18n.py", "python"),
        ("lists.py", "python"),
    ),
    LOCALES_DIR,
)
#: Each module's templates and Python code (its declaration's ``N_()`` texts among them).
MODULE_SOURCES = [
    Sources(
        module.name,
        module.locales.parent,
        (("templates/**.html", "jinja2.ext:babel_extract"), ("**.py", "python")),
        module.locales,
    )
    for module in MODULES
    if module.locales is not None
]
ALL = [SHELL, *MODULE_SOURCES]


def extracted_msgids(sources: Sources) -> set[str]:
    """Every msgid in the templates (``_()``) and the Python code (``N_()``) of ``sources``."""
    found: set[str] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        sources.directory, list(sources.methods)
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def catalog(language: str, locales: Path = LOCALES_DIR) -> Catalog:
    """The ``.po`` catalog of ``language`` in ``locales``."""
    with po_path(language, locales).open("rb") as po_file:
        return read_po(po_file, locale=language)


def test_the_extractor_finds_the_pages_messages() -> None:
    msgids = extracted_msgids(SHELL)
    # Spot checks: a template string, a Python N_() string, and one with a placeholder
    assert "Skip to main content" in msgids
    assert "Document storage" in msgids
    assert "Signed in as %(name)s" in msgids
    assert len(msgids) > 150
    pay = next(s for s in MODULE_SOURCES if s.name == "pay")
    assert {"Bill payment", "Pay a bill", "See billers and their bills"} <= extracted_msgids(pay)


def test_every_module_brings_a_catalog_in_each_language() -> None:
    for module in MODULES:
        assert module.locales is not None, f"{module.name} has no catalogs"
        for language in LANGUAGES:
            assert po_path(language, module.locales).is_file(), (module.name, language)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("sources", ALL, ids=lambda s: s.name)
def test_every_message_has_a_translation(sources: Sources, language: str) -> None:
    # A module's text may reuse the shell's words ("Cancel"): its catalog or the shell's has it.
    translated = {m.id: m for m in catalog(language) if m.id}
    translated |= {m.id: m for m in catalog(language, sources.locales) if m.id}
    missing = sorted(
        msgid
        for msgid in extracted_msgids(sources)
        if msgid not in translated or not translated[msgid].string
    )
    assert missing == []


@pytest.mark.parametrize("sources", ALL, ids=lambda s: s.name)
def test_both_catalogs_hold_the_same_messages_and_nothing_fuzzy(sources: Sources) -> None:
    zh, en = catalog("zh", sources.locales), catalog("en", sources.locales)
    assert {m.id for m in zh if m.id} == {m.id for m in en if m.id}
    for language_catalog in (zh, en):
        assert not [m.id for m in language_catalog if m.id and m.fuzzy]


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("sources", ALL, ids=lambda s: s.name)
def test_placeholders_survive_translation(sources: Sources, language: str) -> None:
    for message in catalog(language, sources.locales):
        if message.id and isinstance(message.id, str) and isinstance(message.string, str):
            expected = sorted(PLACEHOLDER.findall(message.id))
            assert sorted(PLACEHOLDER.findall(message.string)) == expected, message.id


def test_a_module_catalog_does_not_repeat_the_shells() -> None:
    # One message, one translation: a module's catalog holds only the words the shell lacks.
    shell = {m.id for m in catalog("zh") if m.id}
    for sources in MODULE_SOURCES:
        repeated = sorted(str(m.id) for m in catalog("zh", sources.locales) if m.id in shell)
        assert repeated == [], sources.name


def test_catalogs_load_straight_from_the_po_files() -> None:
    translations = load_translations()
    assert translations["zh"].gettext("Bill payment") == "缴费服务"
    assert translations["en"].gettext("Bill payment") == "Bill payment"
    assert translations["zh"].gettext("Tenants") == "租户"
