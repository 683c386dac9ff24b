"""Every error a person can be shown is a template with parameters that the Chinese catalog
translates.

The source tree is read with ``ast``: each call of a ``CivicloudError`` subclass (resolved in
the module that makes it) must pass a string literal as its message, never an f-string or text
formatted on the spot, so that the message is a msgid and its values travel as ``params``. The
template must have a Chinese translation, its placeholders must all be given, its ``*_label``
values must be msgids too, and it must not speak in fen: amounts are ``*_fen`` parameters,
shown in yuan.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import civicloud
import civicloud.app  # first: the web package's modules import each other
from civicloud.core.errors import CivicloudError, InvalidInput
from civicloud.pay.billing import ROW_REASONS
from civicloud.pay.errors import InvalidNotification
from civicloud.web.messages import catalogs

ROOT = Path(civicloud.__file__).resolve().parent

#: Errors that no person reads, each with the reason. Their messages are still templates (the
#: f-string rule holds for them too); they only need no translation.
NOT_FOR_PEOPLE: Mapping[type[CivicloudError], str] = {
    InvalidNotification: (
        "the answer to a provider's notification: only the provider's server reads it (it is "
        "logged for operators in English, with the notification kept)"
    ),
}

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
_FEN = re.compile(r"\bfen\b")


@dataclass(frozen=True)
class Problem:
    """One error call whose message a person could not read in Chinese."""

    where: str
    line: int
    error: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}:{self.line} {self.error}: {self.what}"


def _resolve(namespace: Mapping[str, Any], node: ast.expr) -> object:
    if isinstance(node, ast.Name):
        return namespace.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _resolve(namespace, node.value)
        return getattr(base, node.attr, None) if base is not None else None
    return None


def _error_class(namespace: Mapping[str, Any], call: ast.Call) -> type[CivicloudError] | None:
    found = _resolve(namespace, call.func)
    if inspect.isclass(found) and issubclass(found, CivicloudError):
        return found
    return None


def _needs_no_translation(error: type[CivicloudError]) -> bool:
    return any(issubclass(error, allowed) for allowed in NOT_FOR_PEOPLE)


def _param_problems(template: str, call: ast.Call, zh: Any) -> Iterator[str]:
    """What is wrong with the ``params`` a call gives ``template`` (when they are written out)."""
    wanted = set(_PLACEHOLDER.findall(template))
    given = next((k.value for k in call.keywords if k.arg == "params"), None)
    if given is None:
        if wanted:
            yield f"{template!r} is given no {', '.join(sorted(wanted))}"
        return
    if not isinstance(given, ast.Dict) or any(key is None for key in given.keys):
        return  # built elsewhere: not checked here
    names: set[str] = set()
    for key, value in zip(given.keys, given.values, strict=True):
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
            return
        names.update({key.value, key.value.removesuffix("_fen")})
        label = value.value if isinstance(value, ast.Constant) else None
        if key.value.endswith("_label") and isinstance(label, str) and not _translated(zh, label):
            yield f"the label {label!r} has no Chinese translation"
    if wanted - names:
        yield f"{template!r} is given no {', '.join(sorted(wanted - names))}"


def _call_problems(
    call: ast.Call,
    error: type[CivicloudError],
    namespace: Mapping[str, Any],
    zh: Any,
) -> Iterator[str]:
    """What is wrong with the message of one call of an error class."""
    if not call.args:
        yield "no message"
        return
    message = call.args[0]
    written = ast.unparse(message)
    if isinstance(message, ast.JoinedStr):
        yield f"an f-string as the message: {written}"
        return
    if isinstance(message, ast.Attribute) and message.attr == "message":
        return  # another error's template passed on, with its params
    # One template (written there, or a module's constant), or one of two chosen on the spot
    # (``"…" if origins else "…"``).
    choices = [message.body, message.orelse] if isinstance(message, ast.IfExp) else [message]
    templates = [_literal(choice, namespace) for choice in choices]
    if None in templates:
        yield f"a message that is not a template: {written}"
        return
    for template in filter(None, templates):
        if _FEN.search(template):
            yield f"speaks in fen (use a *_fen parameter): {template!r}"
        yield from _param_problems(template, call, zh)
        if not _needs_no_translation(error) and not _translated(zh, template):
            yield f"no Chinese translation of {template!r}"


def _literal(node: ast.expr, namespace: Mapping[str, Any]) -> str | None:
    """The text of a string literal, or of a module constant named in its place."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id.lstrip("_").isupper():
        value = namespace.get(node.id)
        return value if isinstance(value, str) else None
    return None


def _translated(language_catalog: Any, message: str) -> bool:
    return bool(message) and language_catalog.gettext(message) != message


def check_source(source: str, namespace: Mapping[str, Any], where: str) -> Iterator[Problem]:
    """The problems of the error calls in ``source``, whose names resolve in ``namespace``."""
    zh = catalogs()["zh"]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and (error := _error_class(namespace, node)) is not None:
            for what in _call_problems(node, error, namespace, zh):
                yield Problem(where, node.lineno, error.__name__, what)


def _modules() -> Iterator[tuple[Path, ModuleType]]:
    names = ["civicloud"] + [
        info.name for info in pkgutil.walk_packages([str(ROOT)], prefix="civicloud.")
    ]
    for name in names:
        module = importlib.import_module(name)
        if module.__file__ and module.__file__.endswith(".py"):
            yield Path(module.__file__), module


def test_every_module_of_the_tree_is_read() -> None:
    read = {path.relative_to(ROOT).as_posix() for path, _ in _modules()}
    on_disk = {
        path.relative_to(ROOT).as_posix()
        for path in ROOT.rglob("*.py")
        # A module's migrations are Alembic's revision files, not modules to import.
        if "__pycache__" not in path.parts and "migrations" not in path.parts
    }
    assert read == on_disk


def test_every_error_a_person_sees_is_a_translated_template() -> None:
    problems: list[Problem] = []
    for path, module in _modules():
        where = path.relative_to(ROOT).as_posix()
        problems += check_source(path.read_text(encoding="utf-8"), vars(module), where)
    assert [str(p) for p in problems] == []


def test_every_label_a_service_passes_is_translated() -> None:
    # Labels passed on in variables: the words keyfiles and the providers name their keys by.
    zh = catalogs()["zh"]
    for label in (
        "the audit key",
        "the sandbox's secret",
        "alipay: application private key",
        "alipay: Alipay public key",
        "wechatpay: merchant API private key",
        "wechatpay: platform key",
    ):
        assert _translated(zh, label), label


def test_every_reason_a_bill_import_gives_a_row_is_translated() -> None:
    zh = catalogs()["zh"]
    assert [t for t in ROW_REASONS.values() if not _translated(zh, t)] == []
    assert [t for t in ROW_REASONS.values() if _FEN.search(t)] == []


NAMESPACE = {
    "InvalidInput": InvalidInput,
    "InvalidNotification": InvalidNotification,
    "NO_TENANT": "no such tenant",
    "UNKNOWN": "nobody translated this",
}


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ('raise InvalidInput(f"{n} fen is too much")', "an f-string as the message"),
        ('raise InvalidInput("%s is too much" % n)', "a message that is not a template"),
        ('raise InvalidInput("{} is too much".format(n))', "a message that is not a template"),
        ('raise InvalidInput("nobody translated this sentence")', "no Chinese translation"),
        ('raise InvalidInput("%(n)s fen is too much", params={"n": 1})', "speaks in fen"),
        (
            'raise InvalidInput("no such %(what_label)s", params={"what_label": "zorblax"})',
            "the label 'zorblax' has no Chinese translation",
        ),
        ('raise InvalidInput("no such %(what_label)s", params={})', "is given no what_label"),
        ('raise InvalidInput("no such %(what_label)s")', "is given no what_label"),
        ('raise InvalidNotification(f"no payment {n!r}")', "an f-string as the message"),
        ('raise InvalidInput("no such user" if n else f"{n}")', "not a template"),
        ('raise InvalidInput("no such user" if n else "nobody translated this")', "no Chinese"),
        ("raise InvalidInput(UNKNOWN)", "no Chinese translation of 'nobody translated this'"),
        ("raise InvalidInput(message)", "a message that is not a template"),
    ],
)
def test_the_check_finds_each_kind_of_untranslatable_message(source: str, found: str) -> None:
    problems = [str(p) for p in check_source(source, NAMESPACE, "example.py")]
    assert [p for p in problems if found in p], problems


@pytest.mark.parametrize(
    "source",
    [
        'raise InvalidInput("no such %(what_label)s", params={"what_label": "tenant"})',
        'raise InvalidInput("%(asked)s is more than the %(refundable)s that can still be '
        'refunded", params={"asked_fen": 1, "refundable_fen": 2})',
        'raise InvalidNotification("sandbox: malformed amount")',
        "raise InvalidInput(error.message, params=error.params)",
        'raise InvalidInput("no such tenant" if tenant else "no such user")',
        "raise InvalidInput(NO_TENANT)",
        'raise ValueError(f"not an error of ours: {n}")',
    ],
)
def test_the_check_passes_translated_templates(source: str) -> None:
    assert [str(p) for p in check_source(source, NAMESPACE, "example.py")] == []
