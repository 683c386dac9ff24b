"""Every module of the installation keeps the contract's naming and layout rules, checked from its
declaration alone: a module added to ``civicloud.app.MODULES`` is checked without anyone
remembering to. The throwaway module (``tests.fakes.throwaway``) is checked too, to show the
checks hold for a module other than Pay.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel
from tests.fakes import throwaway
from tests.functional.matrix import walk_routes

import civicloud
from civicloud.app import API_PREFIX, MODULES, load_settings
from civicloud.core.config import Settings, assemble_settings
from civicloud.core.errors import CivicloudError
from civicloud.core.modules import Module, resolve

ROOT = Path(__file__).resolve().parents[2]
CORE_REVISIONS = ROOT / "migrations" / "versions"

#: Each module and the package that exports it.
CASES: list[tuple[Module, str]] = [
    *((module, f"civicloud.{module.name}") for module in MODULES),
    (throwaway.MODULE, "tests.fakes.throwaway"),
]
IDS = [module.name for module, _ in CASES]
#: Every module a check may meet: the installation's and the throwaway one.
EVERY_MODULE: tuple[Module, ...] = tuple(module for module, _ in CASES)

#: Each module package's public surface (``__all__``): adding or removing a name is a decision.
#: ``None``: the package declares no ``__all__`` (allowed for the throwaway module only).
EXPORTED: dict[str, set[str] | None] = {
    "pay": {"MODULE"},
    "store": {"MODULE"},
    "traffic": {"MODULE"},
    "throwaway": None,
}


def _subclasses(kind: type[CivicloudError]) -> Iterator[type[CivicloudError]]:
    for sub in kind.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _error_classes() -> list[type[CivicloudError]]:
    """Every error class of civicloud's (core's and the modules') and the throwaway module's."""
    for found in pkgutil.walk_packages(civicloud.__path__, "civicloud."):
        importlib.import_module(found.name)
    errors_modules = {m.errors for m in EVERY_MODULE if m.errors is not None}
    for name in errors_modules:
        importlib.import_module(name)
    # dict.fromkeys: a class with two bases in the tree (Store's errors are both a StoreError and
    # a core kind) is met once along each.
    return list(
        dict.fromkeys(
            kind
            for kind in _subclasses(CivicloudError)
            if "code" in kind.__dict__
            and (kind.__module__.startswith("civicloud.") or kind.__module__ in errors_modules)
        )
    )


@pytest.fixture(params=CASES, ids=IDS)
def case(request: pytest.FixtureRequest) -> tuple[Module, str]:
    """One module and its package."""
    found: tuple[Module, str] = request.param
    return found


def test_the_package_exports_the_declaration(case: tuple[Module, str]) -> None:
    module, package = case
    assert importlib.import_module(package).MODULE is module


def test_its_error_codes_are_its_own_and_unique_in_the_installation(
    case: tuple[Module, str],
) -> None:
    module, _ = case
    assert module.errors is not None, f"{module.name} names no errors module"
    every = _error_classes()
    own = [kind for kind in every if kind.__module__ == module.errors]
    assert own, f"{module.errors} defines no error"
    assert [k.__name__ for k in own if not k.code.startswith(f"{module.name}.")] == []
    codes = [kind.code for kind in every]
    assert sorted({code for code in codes if codes.count(code) > 1}) == []


def test_its_permissions_jobs_and_listeners_are_named_after_it(
    case: tuple[Module, str],
) -> None:
    module, _ = case
    names = [
        *module.permissions,
        *(job.name for job in module.jobs),
        *(listener.name for listener in module.listeners),
    ]
    assert names
    assert [name for name in names if not name.startswith(f"{module.name}.")] == []


def test_its_routes_are_named_after_it(case: tuple[Module, str]) -> None:
    module, _ = case
    # the application the composition root would build of the module's routers alone
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    for reference, prefix in ((module.api, API_PREFIX), (module.pages, "")):
        if reference is not None:
            router = resolve(reference)
            assert isinstance(router, APIRouter)
            app.include_router(router, prefix=prefix)
    names = [str(getattr(route, "name", None)) for route, _path, _methods in walk_routes(app)]
    assert names
    # ``<name>.…``, its pages' too (``pay.page.…``)
    wrong = [n for n in names if not n.startswith(f"{module.name}.")]
    assert wrong == []


def test_its_package_surface_is_pinned(case: tuple[Module, str]) -> None:
    module, package = case
    assert module.name in EXPORTED, f"pin {package}'s __all__ in EXPORTED"
    exported = getattr(importlib.import_module(package), "__all__", None)
    expected = EXPORTED[module.name]
    assert (None if exported is None else set(exported)) == expected
    if module in MODULES:
        assert exported is not None, f"{package} must declare __all__"


def test_its_templates_and_catalogs_are_where_the_contract_says(
    case: tuple[Module, str],
) -> None:
    module, _ = case
    assert module.templates is not None
    assert (module.templates / module.name).is_dir()
    assert module.locales is not None
    for language in ("zh", "en"):
        assert (module.locales / language / "LC_MESSAGES" / "messages.po").is_file()


def _load_settings(module: Module) -> Settings:
    """The installation's settings (``civicloud.app.load_settings``); for a module it does not
    list, the same assembly with that module's section added."""
    if module in MODULES:
        return load_settings()
    sections = {m.name: m.settings for m in EVERY_MODULE if m.settings is not None}
    return assemble_settings(sections)()


def test_its_settings_section_reads_its_environment(
    case: tuple[Module, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    module, _ = case
    if module.settings is None:
        pytest.skip(f"{module.name} has no settings")
    # given one of its integer settings (else a text one) set in the environment
    fields = module.settings.model_fields
    chosen = next(
        (name for name, f in fields.items() if f.annotation is int),
        next(name for name, f in fields.items() if f.annotation is str),
    )
    value: Any = 42 if fields[chosen].annotation is int else "from-the-environment"
    monkeypatch.setenv(f"CIVICLOUD_{module.name.upper()}__{chosen.upper()}", str(value))
    # when the installation's settings are loaded
    loaded = _load_settings(module)
    # then the module's section holds it
    section = getattr(loaded, module.name)
    assert isinstance(section, BaseModel)
    assert getattr(section, chosen) == value


REVISION_FIELDS = {"revision", "down_revision", "branch_labels"}


def _revision(path: Path) -> dict[str, Any]:
    """A revision file's ``revision``, ``down_revision`` and ``branch_labels``."""
    found: dict[str, Any] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            names = [t.id for t in targets if isinstance(t, ast.Name) and t.id in REVISION_FIELDS]
            for name in names:
                if node.value is not None:
                    found[name] = ast.literal_eval(node.value)
    return found


def test_its_migrations_branch_off_cores(case: tuple[Module, str]) -> None:
    module, _ = case
    assert module.migrations is not None
    assert module.migrations.is_dir()
    revisions = [_revision(path) for path in sorted(module.migrations.glob("*.py"))]
    own = {r["revision"] for r in revisions}
    core = {_revision(path)["revision"] for path in CORE_REVISIONS.glob("*.py")}
    # its first revision (the one that follows none of its own) follows one of core's
    (first,) = [r for r in revisions if r["down_revision"] not in own]
    assert first["down_revision"] in core
    labels = first.get("branch_labels") or ()
    assert tuple([labels] if isinstance(labels, str) else labels) == (module.name,)
