"""The bundle of long-lived services that the composition root builds once per process."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from civicloud.core.config import Settings
from civicloud.core.db import Database
from civicloud.core.errors import Misconfigured
from civicloud.core.identity.passwords import Passwords
from civicloud.core.modules import Installed, resolve
from civicloud.core.principals import PrincipalCache

C = TypeVar("C")


@dataclass
class Services:
    """What ``civicloud.app`` built: settings, the database, password hashing, credential cache,
    and the installed modules, whose contexts are built on first use."""

    settings: Settings
    db: Database
    passwords: Passwords
    principals: PrincipalCache
    modules: Installed = field(default_factory=lambda: Installed(()))
    #: Every listed module's migrations (a switched-off module's tables stay up to date too).
    branches: tuple[Path, ...] = ()
    _contexts: dict[str, object] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def with_settings(self, settings: Settings) -> Services:
        """The same database and caches under other ``settings``; module contexts are built anew
        from them (a test's own limits or public address, say)."""
        return Services(
            settings=settings,
            db=self.db,
            passwords=self.passwords,
            principals=self.principals,
            modules=self.modules,
            branches=self.branches,
        )

    def provide(self, name: str, context: object) -> None:
        """Use ``context`` as module ``name``'s context from now on (instead of building it)."""
        with self._lock:
            self._contexts[name] = context

    def section(self, name: str) -> BaseModel | None:
        """The settings section of module ``name`` (``None`` when it declares none)."""
        return self.settings.section(name)

    def context(self, name: str, kind: type[C]) -> C:
        """Module ``name``'s context (``Module.context``), built once, on first use, and checked
        to be a ``kind``; ``Misconfigured`` when the module is not installed here."""
        with self._lock:
            found = self._contexts.get(name)
            if found is None:
                module = self.modules.get(name)
                if module is None or module.context is None:
                    raise Misconfigured(
                        "the module %(module)s is not installed here", params={"module": name}
                    )
                build = resolve(module.context)
                if not callable(build):
                    raise TypeError(f"{module.context} is not callable")
                found = build(self, self.section(name))
                self._contexts[name] = found
        if not isinstance(found, kind):
            raise TypeError(f"module {name!r} has a {type(found).__name__}, not a {kind.__name__}")
        return found
