"""Alembic environment: one history for core and every module."""

from __future__ import annotations

from alembic import context

from civicloud.core.config import Settings
from civicloud.core.db import make_engine
from civicloud.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    return url or Settings().effective_database_url


def run_migrations_offline() -> None:
    """Emit SQL to stdout instead of running it."""
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run migrations on a live connection (SQLite gets batch mode for ALTERs)."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


#: The tables a new revision may touch (``civicloud db revision --branch``: the branch's own),
#: ``None`` for all of them (upgrades, ``civicloud db check``).
_OWNED: set[str] | None = config.attributes.get("tables")


def _owned(obj: object, name: str | None, type_: str, _reflected: bool, _other: object) -> bool:
    """Whether autogenerate compares ``obj``: each branch's revision writes its own tables only."""
    if _OWNED is None:
        return True
    if type_ == "table":
        return name in _OWNED
    table = getattr(obj, "table", None)
    return table is None or getattr(table, "name", None) in _OWNED


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        include_object=_owned,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
