"""Text that people type and pages show: names and free text that cannot spoof a page, and
identifiers read the way people type them.

A name is shown to others (a biller's name to citizens, a payer's on a receipt, a tenant's in
the console), so it must look like what it is. Bidirectional controls (U+202E RIGHT-TO-LEFT
OVERRIDE turns ``gpj.exe`` around), zero-width characters (a second "大连市供水" with a
U+200B inside), other invisible format characters, line separators and control characters
are refused in every name and free-text field: :data:`DisplayText` is the one type every
schema uses for them.

An identifier printed on paper (an account number) is typed on a phone as it comes: with
spaces, in lower case, with full-width digits from a Chinese keyboard. :func:`typed_forms`
gives the readings of what was typed, NFKC-normalised, for a caller to try against the
format it expects.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

__all__ = [
    "BYTE_UNITS",
    "MAX_TYPED_LENGTH",
    "DisplayText",
    "check_display_text",
    "format_bytes",
    "invisible_character",
    "typed_forms",
]

#: Categories refused in names and free text: controls (C0, DEL, C1, so also tabs and line
#: breaks), format characters (bidirectional controls, zero-width space and joiners, word
#: joiner, byte-order mark, soft hyphen, tags), surrogates, and line and paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
#: Letters and marks that draw nothing: Hangul fillers and the combining grapheme joiner.
_REFUSED_CHARACTERS = frozenset({"\u034f", "\u115f", "\u1160", "\u3164", "\uffa0"})
#: Longer input than this is not an identifier anyone typed; it is not normalised at all.
MAX_TYPED_LENGTH = 200


def invisible_character(text: str) -> str | None:
    """The first character of ``text`` that a page would not show as itself, as ``U+XXXX``."""
    for char in text:
        if char in _REFUSED_CHARACTERS or unicodedata.category(char) in _REFUSED_CATEGORIES:
            return f"U+{ord(char):04X}"
    return None


#: The message of a service that refuses such a character in one of its fields (``what_label``,
#: a msgid naming the field; ``char``, the character as ``U+XXXX``).
SPOOFING_CHARACTER = (
    "%(what_label)s contains %(char)s, an invisible, control or direction-changing character "
    "that could make a page show something else"
)


def check_display_text(value: str) -> str:
    """``value`` if it holds no invisible, control or direction-changing character (a Pydantic
    validator: raises ``ValueError`` naming the first such character otherwise)."""
    found = invisible_character(value)
    if found is not None:
        raise ValueError(
            f"the text contains {found}, an invisible, control or direction-changing "
            "character that could make a page show something else"
        )
    return value


#: A name or free text as people see it: surrounding blanks dropped, and no character that
#: could spoof what a page shows. Length limits are set where it is used (``Field``).
DisplayText = Annotated[
    str, StringConstraints(strip_whitespace=True), AfterValidator(check_display_text)
]


def typed_forms(text: str) -> list[str]:
    """The readings of an identifier someone typed, most literal first, without repeats.

    NFKC first (full-width digits and letters, U+FF10…, become ``0``…, the ideographic
    space a space), then: as typed (trimmed), without any blank, and each of those in upper
    and in lower case. Empty when ``text`` is blank or longer than :data:`MAX_TYPED_LENGTH`.
    """
    if len(text) > MAX_TYPED_LENGTH:
        return []
    normal = unicodedata.normalize("NFKC", text).strip()
    if not normal:
        return []
    forms: list[str] = []
    for spaced in (normal, "".join(normal.split())):
        for cased in (spaced, spaced.upper(), spaced.lower()):
            if cased not in forms:
                forms.append(cased)
    return forms


#: Binary units, as sizes of stored data are shown (international symbols: the same in Chinese).
BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def format_bytes(size: int | None) -> str:
    """A count of bytes as people read it: ``512 B``, ``1.5 KiB``, ``3.2 GiB`` (``—`` for
    none)."""
    if size is None:
        return "—"
    amount = float(size)
    for unit in BYTE_UNITS:
        if abs(amount) < 1024 or unit == BYTE_UNITS[-1]:
            return f"{int(amount)} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")  # pragma: no cover - the loop always returns
