"""The PostgreSQL pool: a connection the server dropped while it idled is replaced, unnoticed."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from tests.conftest import PostgresServer

from civicloud.core.db import make_engine

pytestmark = pytest.mark.postgres


def _idle_connection_dropped(server: PostgresServer, ping_idle_seconds: float) -> Engine:
    """An engine with one pooled, idle connection, which the server then drops."""
    url = server.create_database(f"civicloud_pool_{uuid.uuid4().hex[:10]}")
    engine = make_engine(url, ping_idle_seconds=ping_idle_seconds)
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    # the server ends that session behind the pool's back (a restart, an idle timeout)
    admin = make_engine(url)
    with admin.connect() as other:
        other.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    admin.dispose()
    return engine


def test_a_connection_dropped_while_idle_is_replaced_before_use(
    postgres_server: PostgresServer,
) -> None:
    # given a pooled connection dropped by the server while it idled (longer than the limit)
    engine = _idle_connection_dropped(postgres_server, ping_idle_seconds=0)
    # when the next unit of work takes a connection, then it works: the ping found the dead one
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar_one() == 1
    engine.dispose()


def test_a_connection_used_just_now_is_not_pinged(postgres_server: PostgresServer) -> None:
    # given the same, but the connection was used more recently than the limit
    engine = _idle_connection_dropped(postgres_server, ping_idle_seconds=3600)
    # then no ping is spent on it, and the dropped connection fails in use (as a request in
    # flight during a restart would); the pool is then renewed for the next one
    with pytest.raises(OperationalError), engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar_one() == 1
    engine.dispose()
