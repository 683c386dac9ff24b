"""The module contract: one declaration of everything a module brings to an installation.

A module (Pay, Store, Traffic, Emissions) is one package that exports one :class:`Module`; the
composition root (``civicloud.app``) lists the modules and builds everything from their
declarations, so adding a module means its own package, one line there and its migrations.

The declaration stays framework-free, so the core may hold it: whatever belongs to an adapter (an
API router, a page router, a Typer app) or would import the module's services at declaration time
is named by a *reference*, ``"package.module:attribute"``, which the adapter resolves (and checks
the type of) when it builds the application or the command line. Names follow the module's
``name``: its permissions, error codes, audit actions, route names, jobs and listeners all start
with ``<name>.``.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from civicloud.core.permissions import RoleSpec

#: A module's name: what prefixes its permissions, codes, actions and routes, and its settings
#: section (``CIVICLOUD_<NAME>__…``).
MODULE_NAME = re.compile(r"^[a-z][a-z0-9]{1,19}$")
#: A reference to something an adapter imports when it needs it: ``"package.module:attribute"``.
REFERENCE = re.compile(r"^[a-z_][a-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$")


def resolve(reference: str) -> object:
    """The object a reference names (``civicloud.pay.api:router``), imported now."""
    if not REFERENCE.match(reference):
        raise ValueError(f"bad reference {reference!r}: expected 'package.module:attribute'")
    module_name, _, attribute = reference.partition(":")
    found: object = importlib.import_module(module_name)
    for part in attribute.split("."):
        found = getattr(found, part)
    return found


@dataclass(frozen=True)
class NavEntry:
    """A link in the console's navigation, shown to those holding ``permission`` somewhere.

    ``permission`` ``None`` shows it to everyone signed in; a pattern such as ``pay.*`` to anyone
    holding any of the module's permissions.
    """

    key: str
    href: str
    #: Marked with ``N_()``: translated when shown.
    label: str
    permission: str | None = None
    #: Shown only to those holding ``permission`` platform-wide (for a page that needs it so).
    platform: bool = False


@dataclass(frozen=True)
class HomeCard:
    """The module's card on the public home page."""

    #: Marked with ``N_()``, like every text here.
    title: str
    summary: str
    items: tuple[str, ...] = ()
    #: Where citizens start, when the module serves them today; ``None`` shows the card among the
    #: services to come.
    href: str | None = None
    #: The text of the card's button (when ``href`` is set).
    action: str | None = None
    #: Templates of the module's: the card's icon (an inline SVG), and a panel for the top of the
    #: home page, where citizens start (optional).
    icon: str | None = None
    hero: str | None = None


@dataclass(frozen=True)
class Job:
    """Background work that the core's job runner runs every ``every_seconds``.

    ``work`` names a :class:`civicloud.core.jobs.JobWork`: how to list the items due and how to
    handle one, each item in a unit of work of its own. An ``exclusive`` job runs on one server
    at a time, under a database lock, however many workers an installation runs.
    """

    name: str
    #: Marked with ``N_()``.
    title: str
    work: str
    every_seconds: float = 15.0
    exclusive: bool = True


@dataclass(frozen=True)
class ListenerOption:
    """A command-line option a listener adds to ``civicloud serve`` and ``civicloud demo``.

    Its value, when given, replaces the field ``setting`` of the module's settings section.
    """

    flag: str
    setting: str
    help: str
    kind: type[int] | type[str] = int


@dataclass(frozen=True)
class Listener:
    """A long-running server of the module (an S3 port, an MQTT subscription), started by
    ``civicloud serve`` beside the web application.

    ``start`` names a callable taking a :class:`civicloud.core.listeners.ListenerEnv` and
    returning a running :class:`civicloud.core.listeners.RunningListener`.
    """

    name: str
    #: Marked with ``N_()``.
    title: str
    start: str
    options: tuple[ListenerOption, ...] = ()


@dataclass(frozen=True)
class Module:
    """Everything one module brings. See docs/architecture.md, "Adding a module"."""

    name: str
    #: Marked with ``N_()``: the module's name as people read it.
    title: str
    #: ``{permission: description}``; every name starts with ``<name>.``.
    permissions: Mapping[str, str] = field(default_factory=dict)
    roles: tuple[RoleSpec, ...] = ()
    #: Modules to import so that their tables join the metadata (``civicloud.pay.models``).
    models: tuple[str, ...] = ()
    #: The module's settings section, read from ``CIVICLOUD_<NAME>__*``.
    settings: type[BaseModel] | None = None
    #: A reference to ``build(services, settings_section) -> context``: the module's typed,
    #: long-lived services (providers, signers, limiters), built once per process.
    context: str | None = None
    #: A reference to ``derive(section, public_url) -> (section, lines)``: the section adjusted
    #: to where ``serve`` listens (Pay's public address, unless the installation set it), and
    #: what to print about it.
    listening: str | None = None
    #: References to the module's routers: the API (mounted under ``/api/v1``) and its pages.
    api: str | None = None
    pages: str | None = None
    #: A reference to the module's Typer app, added to the command line as ``civicloud <name>``.
    cli: str | None = None
    #: Directories: ``templates/<name>/…``, ``locales/<lang>/LC_MESSAGES/messages.po``, and
    #: static files served at ``/static/<name>/``.
    templates: Path | None = None
    locales: Path | None = None
    static: Path | None = None
    #: Stylesheets in ``static`` that every page links (after the shell's).
    stylesheets: tuple[str, ...] = ()
    #: The labels of the module's form fields and parameters (``N_()``), by field name.
    labels: Mapping[str, str] = field(default_factory=dict)
    #: The module's errors module, by name (its codes are checked by the tests).
    errors: str | None = None
    nav: tuple[NavEntry, ...] = ()
    home: HomeCard | None = None
    jobs: tuple[Job, ...] = ()
    listeners: tuple[Listener, ...] = ()
    #: A reference to ``seed(session=, services=, context=) -> list[str]``: the module's part of
    #: the demo world (idempotent), returning lines to print.
    demo: str | None = None
    #: The module's Alembic branch: its revisions, the first of which depends on core's.
    migrations: Path | None = None

    def __post_init__(self) -> None:
        if not MODULE_NAME.match(self.name) or self.name == "core":
            raise ValueError(f"bad module name {self.name!r}")
        prefix = f"{self.name}."
        named: Iterable[str] = [
            *self.permissions,
            *(job.name for job in self.jobs),
            *(listener.name for listener in self.listeners),
        ]
        for name in named:
            if not name.startswith(prefix):
                raise ValueError(f"{name!r} of module {self.name!r} must start with {prefix!r}")
        references = [
            self.context,
            self.listening,
            self.api,
            self.pages,
            self.cli,
            self.demo,
            *(job.work for job in self.jobs),
            *(listener.start for listener in self.listeners),
        ]
        for reference in references:
            if reference is not None and not REFERENCE.match(reference):
                raise ValueError(f"bad reference {reference!r} in module {self.name!r}")
        if self.errors is not None and not re.match(r"^[a-z_][a-z0-9_.]*$", self.errors):
            raise ValueError(f"bad errors module {self.errors!r} in module {self.name!r}")


@dataclass(frozen=True)
class Installed:
    """The modules an installation runs, in the composition root's order."""

    modules: tuple[Module, ...]

    def __post_init__(self) -> None:
        names = [module.name for module in self.modules]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"modules listed twice: {', '.join(duplicates)}")
        flags = [option.flag for m in self.modules for li in m.listeners for option in li.options]
        clashing = sorted({flag for flag in flags if flags.count(flag) > 1})
        if clashing:
            raise ValueError(f"listener options declared twice: {', '.join(clashing)}")

    def __iter__(self) -> Any:
        return iter(self.modules)

    def get(self, name: str) -> Module | None:
        """The installed module called ``name``."""
        return next((m for m in self.modules if m.name == name), None)

    def names(self) -> tuple[str, ...]:
        """The installed modules' names."""
        return tuple(module.name for module in self.modules)

    def jobs(self) -> tuple[Job, ...]:
        """Every installed module's jobs."""
        return tuple(job for module in self.modules for job in module.jobs)

    def listeners(self) -> tuple[tuple[Module, Listener], ...]:
        """Every installed module's listeners, with their module."""
        return tuple((module, li) for module in self.modules for li in module.listeners)


def enabled(modules: Iterable[Module], disabled: Iterable[str]) -> Installed:
    """The ``modules`` less those an installation switched off (unknown names are an error)."""
    listed = tuple(modules)
    off = set(disabled)
    unknown = off - {module.name for module in listed}
    if unknown:
        raise ValueError(f"unknown modules switched off: {', '.join(sorted(unknown))}")
    return Installed(tuple(module for module in listed if module.name not in off))


#: What a module's context builder looks like (``Module.context``).
ContextBuilder = Callable[[Any, BaseModel | None], object]
