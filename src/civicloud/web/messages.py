"""Errors in the reader's language: a service error's template, translated, with its parameters.

Services raise errors that carry an English template (the msgid) and parameters, amounts among
them as integer fen (``core.errors``). Here, at the edge, the template is looked up in the
pages' catalogs and filled in, amounts written as yuan the way the language writes them. A
template the catalog does not know is shown in English, as the service wrote it.
"""

from __future__ import annotations

import gettext
from collections.abc import Mapping, Sequence
from functools import lru_cache, partial
from typing import Any

from civicloud.core.errors import CivicloudError, format_message
from civicloud.core.money import format_yuan
from civicloud.web import i18n
from civicloud.web.pages import labels


@lru_cache(maxsize=1)
def catalogs() -> Mapping[str, gettext.NullTranslations]:
    """The pages' translations, read once."""
    return i18n.load_translations()


def translate(
    language: str,
    message: str,
    params: Mapping[str, Any] | None = None,
    translations: Mapping[str, gettext.NullTranslations] | None = None,
) -> str:
    """``message`` (a msgid with ``%(name)s`` placeholders) in ``language``, filled in."""
    found = (translations or catalogs()).get(language)
    if found is None:
        return format_message(message, params or {})
    values = {
        # A ``*_label`` parameter is itself a msgid (what was not found, say): translated too.
        key: found.gettext(value) if key.endswith("_label") and isinstance(value, str) else value
        for key, value in (params or {}).items()
    }
    return format_message(found.gettext(message), values, partial(format_yuan, language=language))


def error_text(
    exc: CivicloudError,
    language: str,
    translations: Mapping[str, gettext.NullTranslations] | None = None,
) -> str:
    """What ``exc`` says, in ``language``."""
    return translate(language, exc.message, exc.params, translations)


def is_translated(language: str, message: str) -> bool:
    """Whether the catalog of ``language`` holds ``message`` (English holds every msgid)."""
    if language == "en":
        return True
    found = catalogs().get(language)
    return found is not None and found.gettext(message) != message


def validation_text(
    errors: Sequence[Mapping[str, Any]],
    language: str,
    translations: Mapping[str, gettext.NullTranslations] | None = None,
) -> str:
    """The first of a request's validation errors as a sentence naming its field, translated."""
    if not errors:
        return translate(language, labels.validation_message(""), {"field": ""}, translations)
    first = errors[0]
    location = tuple(first.get("loc", ()))
    kind = str(first.get("type", ""))
    field = translate(language, labels.field_label(location, kind), None, translations)
    message = labels.validation_message(kind, location)
    return translate(language, message, {"field": field}, translations)
