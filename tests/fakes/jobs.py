"""Jobs a test programs: a module whose jobs' work the test sets, and what they saw.

The module's declaration names its work by reference (``tests.fakes.jobs:first``), as a real
module's does, so the runner resolves it as it resolves Pay's.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.orm import Session

from civicloud.core.jobs import JobEnv
from civicloud.core.modules import Installed, Job, Module
from civicloud.core.services import Services


class Programmable:
    """A ``JobWork`` whose listing and handling a test sets (by default: nothing is due)."""

    def __init__(self) -> None:
        self.list_due: Callable[[Session, JobEnv], Sequence[Any]] = lambda _s, _e: ()
        self.handle_one: Callable[[Session, JobEnv, Any], str | None] = lambda _s, _e, _i: None
        self.envs: list[JobEnv] = []

    def items(self, session: Session, env: JobEnv) -> Sequence[Any]:
        """What the test says is due."""
        self.envs.append(env)
        return self.list_due(session, env)

    def handle(self, session: Session, env: JobEnv, item: Any) -> str | None:
        """What the test says to do with one item."""
        return self.handle_one(session, env, item)


first = Programmable()
second = Programmable()


@dataclasses.dataclass
class Context:
    """The fake module's context: what ``build`` was given."""

    services: object
    section: object


def build(services: Services, section: object) -> Context:
    """The fake module's context builder."""
    return Context(services, section)


def module(*, exclusive: bool = True, every: float = 15.0, context: bool = False) -> Module:
    """A module with two jobs, ``jobtest.<tag>.first`` and ``….second``, on fresh work; the tag
    is new each time, so that the runs recorded are the test's own."""
    global first, second
    first, second = Programmable(), Programmable()
    tag = uuid.uuid4().hex[:10]
    return Module(
        name="jobtest",
        title="Job test",
        context="tests.fakes.jobs:build" if context else None,
        jobs=(
            Job(f"jobtest.{tag}.first", "First", "tests.fakes.jobs:first", every, exclusive),
            Job(f"jobtest.{tag}.second", "Second", "tests.fakes.jobs:second", every, exclusive),
        ),
    )


def with_modules(services: Services, *modules: Module) -> Services:
    """``services`` (same database) running ``modules``, with contexts of their own."""
    return dataclasses.replace(
        services, modules=Installed(modules), _contexts={}, _lock=threading.Lock()
    )
