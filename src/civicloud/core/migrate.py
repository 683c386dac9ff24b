"""Applying the Alembic migrations from code (``civicloud db upgrade``, and start-up)."""

from __future__ import annotations

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


def alembic_config(database_url: str) -> Config:
    """An Alembic configuration for ``database_url`` that needs no ini file."""
    config = Config()
    config.set_main_option("script_location", str(_script_location()))
    config.attributes["database_url"] = database_url
    return config


def upgrade(engine: Engine, *, audit_key: bytes | None = None) -> None:
    """Bring the database behind ``engine`` to the newest revision; ``audit_key`` is handed to
    the revisions that need it (the one that seals the audit log kept so far)."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        config.attributes["audit_key"] = audit_key
        command.upgrade(config, "head")


def pending(engine: Engine) -> bool:
    """Whether migrations remain to be applied (used by ``/readyz``)."""
    script = ScriptDirectory.from_config(alembic_config(str(engine.url)))
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    return current != set(script.get_heads())
