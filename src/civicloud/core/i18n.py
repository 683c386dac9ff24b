"""Marking text for translation where it is declared (services, module declarations), so that the
web layer translates it where it is shown."""

from __future__ import annotations


def N_(message: str) -> str:  # noqa: N802 - the conventional name gettext extractors look for
    """Mark ``message`` for translation without translating it (it is translated when shown)."""
    return message
