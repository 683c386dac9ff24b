"""Regular expressions that tenants supply, run by RE2 so that matching takes linear time.

A tenant's pattern (a biller's account-number format, say) is run by the server on input
that anyone may send. Python's ``re`` backtracks: ``(a|a)*b`` against 30 ``a`` takes minutes
and holds the process. RE2 (the ``google-re2`` package) compiles a pattern to an automaton
and matches in time linear in the input, whatever the pattern; in exchange it has no
backreferences and no look-around, and refuses such a pattern when it is set.

Every pattern a tenant supplies goes through :func:`compile_pattern` when it is set (which
refuses what RE2 cannot run, and anything longer than :data:`MAX_PATTERN_LENGTH`) and is
matched through :class:`TenantPattern` (full-match semantics), never through ``re``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any

import re2  # google-re2: untyped, wrapped here so that the rest of the code stays typed
from pydantic import AfterValidator

from civicloud.core.errors import InvalidInput

__all__ = [
    "MAX_PATTERN_LENGTH",
    "InvalidPattern",
    "PatternText",
    "TenantPattern",
    "check_pattern",
    "compile_pattern",
]

#: The longest pattern a tenant may set, in characters.
MAX_PATTERN_LENGTH = 200
#: RE2's memory budget for one compiled pattern; a pattern needing more is refused.
_MAX_MEM = 1 << 20


class InvalidPattern(InvalidInput):
    """A pattern a tenant supplied cannot be run in linear time (or is not a pattern at all)."""

    code = "core.invalid_pattern"


def _options() -> Any:
    options = re2.Options()
    # Errors are raised to the caller; RE2 would also print them to stderr.
    options.log_errors = False
    options.max_mem = _MAX_MEM
    return options


@dataclass(frozen=True)
class TenantPattern:
    """A compiled tenant pattern: :meth:`fullmatch` runs in time linear in the text."""

    source: str
    _compiled: Any

    def fullmatch(self, text: str) -> bool:
        """Whether the whole of ``text`` matches."""
        return self._compiled.fullmatch(text) is not None


def _reason(exc: Exception) -> str:
    raw = exc.args[0] if exc.args else ""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


@lru_cache(maxsize=512)
def compile_pattern(source: str) -> TenantPattern:
    """``source`` compiled by RE2; :class:`InvalidPattern` if it is too long or RE2 refuses it.

    RE2 refuses backreferences (``\\1``), look-around (``(?=…)``, ``(?<!…)``), ``\\Z`` (write
    ``\\z`` or nothing: the match is whole anyway) and repetitions over 1000. Compiled patterns
    are cached: a look-up does not compile its biller's pattern again.
    """
    if not source:
        raise InvalidPattern("the pattern is empty")
    if len(source) > MAX_PATTERN_LENGTH:
        raise InvalidPattern(
            "the pattern is longer than %(max_length)s characters",
            params={"max_length": MAX_PATTERN_LENGTH},
        )
    try:
        compiled = re2.compile(source, _options())
    except re2.error as exc:
        raise InvalidPattern(
            "the pattern cannot be used: %(reason)s (backreferences and look-around are not "
            "supported, so that matching takes linear time)",
            params={"reason": _reason(exc)},
        ) from None
    return TenantPattern(source, compiled)


def check_pattern(source: str) -> str:
    """``source`` if RE2 compiles it (a Pydantic validator: raises ``ValueError`` otherwise)."""
    try:
        compile_pattern(source)
    except InvalidPattern as exc:
        raise ValueError(exc.detail) from None
    return source


#: A field holding a tenant's pattern: checked with RE2 when it is set.
PatternText = Annotated[str, AfterValidator(check_pattern)]
