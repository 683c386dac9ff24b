"""Applying the Alembic migrations from code (``civicloud db upgrade``, and start-up).

Core's revisions live in ``migrations/versions``; each module keeps its own branch in its package
(``Module.migrations``), depending on core's, so an installation's history has one head per
branch and every operation here works on all of them (``heads``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine


def _script_location() -> Path:
    here = Path(__file__).resolve()
    for candidate in (here.parents[1] / "migrations", here.parents[3] / "migrations"):
        if (candidate / "env.py").exists():
            return candidate
    raise FileNotFoundError("civicloud's migrations folder is missing from this installation")


def alembic_config(database_url: str, branches: Iterable[Path] = ()) -> Config:
    """An Alembic configuration for ``database_url`` that needs no ini file: core's history plus
    the modules' ``branches`` (their migrations directories)."""
    config = Config()
    location = _script_location()
    config.set_main_option("script_location", str(location))
    config.set_main_option("path_separator", "os")
    places = [location / "versions", *branches]
    config.set_main_option("version_locations", _joined(places))
    config.attributes["database_url"] = database_url
    return config


def _joined(places: Sequence[Path]) -> str:
    return os.pathsep.join(str(place) for place in places)


def upgrade(
    engine: Engine, *, audit_key: bytes | None = None, branches: Iterable[Path] = ()
) -> None:
    """Bring the database behind ``engine`` to the newest revision of every branch; ``audit_key``
    is handed to the revisions that need it (the one that seals the audit log kept so far)."""
    config = alembic_config(engine.url.render_as_string(hide_password=False), branches)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        config.attributes["audit_key"] = audit_key
        command.upgrade(config, "heads")


def heads(branches: Iterable[Path] = ()) -> set[str]:
    """The head revision of each branch."""
    return set(ScriptDirectory.from_config(alembic_config("", branches)).get_heads())


def pending(engine: Engine, branches: Iterable[Path] = ()) -> bool:
    """Whether migrations remain to be applied (used by ``/readyz``)."""
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    return current != heads(branches)


def check(engine: Engine, branches: Iterable[Path] = ()) -> None:
    """``alembic check``: raise unless the database (at every head) matches the models."""
    config = alembic_config(engine.url.render_as_string(hide_password=False), branches)
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        command.check(config)


def revision(
    engine: Engine,
    *,
    message: str,
    branch: str,
    version_path: Path | None,
    branches: Iterable[Path] = (),
    autogenerate: bool = True,
    tables: set[str] | None = None,
) -> Path:
    """Write a new revision on ``branch`` (``core`` or a module's name), compared against the
    database behind ``engine`` when ``autogenerate`` (only ``tables``, the branch's own, when
    given: a module's revision never writes another's change); returns its file."""
    config = alembic_config(engine.url.render_as_string(hide_password=False), branches)
    config.attributes["tables"] = tables
    config.set_main_option("file_template", "%%(year)d-%%(month).2d-%%(day).2d_%%(rev)s")
    config.set_main_option("timezone", "UTC")
    ruff = Path(sys.executable).parent / "ruff"
    if ruff.exists():
        # New revisions are formatted and linted like the rest of the code.
        config.set_section_option("post_write_hooks", "hooks", "ruff_format, ruff_check")
        for hook, options in (("ruff_format", "format"), ("ruff_check", "check --fix")):
            config.set_section_option("post_write_hooks", f"{hook}.type", "exec")
            config.set_section_option("post_write_hooks", f"{hook}.executable", str(ruff))
            config.set_section_option(
                "post_write_hooks", f"{hook}.options", f"{options} REVISION_SCRIPT_FILENAME"
            )
    script = ScriptDirectory.from_config(config)
    if branch == "core":
        core_heads = [
            head
            for head in script.get_heads()
            if Path(script.get_revision(head).path).parent == _script_location() / "versions"
        ]
        head = core_heads[0] if core_heads else "base"
    else:
        head = f"{branch}@head"
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        written = command.revision(
            config,
            message=message,
            autogenerate=autogenerate,
            head=head,
            version_path=str(version_path) if version_path else None,
        )
    scripts = written if isinstance(written, list) else [written]
    found = scripts[0]
    if found is None:
        raise RuntimeError("alembic wrote no revision")
    return Path(found.path)
