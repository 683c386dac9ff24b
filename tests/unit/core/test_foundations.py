"""Core's small foundations: the error tree, settings, the event bus and the request id."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from sqlalchemy.orm import Session

from civicloud.app import load_settings
from civicloud.core import errors
from civicloud.core.config import Settings
from civicloud.core.context import current_request_id, set_request_id
from civicloud.core.events import Event, MessageBus
from civicloud.web.pages.rendering import time_formatter


@pytest.mark.parametrize(
    ("error", "status", "exit_code", "code"),
    [
        (errors.InvalidInput, 422, 2, "core.invalid_input"),
        (errors.NotAuthenticated, 401, 3, "core.not_authenticated"),
        (errors.PermissionDenied, 403, 3, "core.permission_denied"),
        (errors.NotFound, 404, 4, "core.not_found"),
        (errors.Conflict, 409, 5, "core.conflict"),
        (errors.PayloadTooLarge, 413, 2, "core.payload_too_large"),
    ],
)
def test_each_error_has_its_status_exit_code_and_stable_code(
    error: type[errors.CivicloudError], status: int, exit_code: int, code: str
) -> None:
    raised = error("what went wrong", resource="tenant")
    assert isinstance(raised, errors.CivicloudError)
    assert (raised.status, raised.exit_code, raised.code) == (status, exit_code, code)
    assert raised.detail == "what went wrong"
    assert raised.extra == {"resource": "tenant"}


def test_settings_default_to_sqlite_in_the_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CIVICLOUD_DATABASE_URL", raising=False)
    settings = load_settings(data_dir=tmp_path)
    assert settings.effective_database_url == f"sqlite:///{tmp_path.resolve()}/civicloud.db"
    moved = settings.with_data_dir(tmp_path / "elsewhere")
    assert moved.data_dir == tmp_path / "elsewhere"
    assert settings.with_data_dir(None) is settings


def test_settings_come_from_civicloud_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIVICLOUD_WEB__PORT", "9001")
    monkeypatch.setenv("CIVICLOUD_DATABASE_URL", "postgresql+psycopg://u:p@db/civicloud")
    settings = load_settings()
    assert settings.web.port == 9001
    assert settings.effective_database_url == "postgresql+psycopg://u:p@db/civicloud"


@pytest.mark.parametrize("url", ["mysql://db/x", "postgresql://db/x", "postgres+psycopg2://x"])
def test_settings_refuse_unsupported_databases(url: str) -> None:
    with pytest.raises(ValidationError, match="database_url"):
        load_settings(database_url=url)


def test_pages_show_beijing_time_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().web.time_zone == "Asia/Shanghai"
    monkeypatch.setenv("CIVICLOUD_WEB__TIME_ZONE", "Asia/Urumqi")
    assert load_settings().web.time_zone == "Asia/Urumqi"


@pytest.mark.parametrize("zone", ["Beijing", "Asia/Nowhere", "../etc/passwd", ""])
def test_settings_refuse_an_unknown_time_zone(zone: str) -> None:
    with pytest.raises(ValidationError, match="time zone"):
        Settings.model_validate({"web": {"time_zone": zone}})


@pytest.mark.parametrize(
    ("zone", "stored", "shown"),
    [
        # a stored UTC time just before midnight is the next morning in Beijing
        ("Asia/Shanghai", datetime(2026, 11, 26, 21, 42, tzinfo=UTC), "2026-11-27 05:42 UTC+8"),
        ("UTC", datetime(2026, 11, 26, 21, 42, tzinfo=UTC), "2026-11-26 21:42 UTC"),
        ("Asia/Kolkata", datetime(2026, 1, 1, 0, 0, tzinfo=UTC), "2026-01-01 05:30 UTC+5:30"),
        # daylight saving time is the zone's own: the offset shown is the one on that day
        ("America/New_York", datetime(2026, 7, 1, 12, 0, tzinfo=UTC), "2026-07-01 08:00 UTC-4"),
        ("America/New_York", datetime(2026, 1, 1, 12, 0, tzinfo=UTC), "2026-01-01 07:00 UTC-5"),
    ],
)
def test_pages_show_a_stored_time_in_their_zone_with_its_offset(
    zone: str, stored: datetime, shown: str
) -> None:
    assert time_formatter(ZoneInfo(zone))(stored) == shown
    assert time_formatter(ZoneInfo(zone))(None) == "—"


@dataclass(frozen=True)
class TenantCreated(Event):
    slug: str


@dataclass(frozen=True)
class CityCreated(TenantCreated):
    pass


def test_the_bus_calls_the_handlers_of_an_event_and_of_its_base_types() -> None:
    bus = MessageBus()
    seen: list[tuple[str, str]] = []
    bus.subscribe(TenantCreated, lambda _s, e: seen.append(("tenant", e.slug)))
    bus.subscribe(CityCreated, lambda _s, e: seen.append(("city", e.slug)))
    bus.subscribe(Event, lambda _s, e: seen.append(("any", e.slug)))
    session = Session()
    bus.publish(session, CityCreated("dalian"))
    bus.publish(session, TenantCreated("liaoning"))
    assert seen == [
        ("city", "dalian"),
        ("tenant", "dalian"),
        ("any", "dalian"),
        ("tenant", "liaoning"),
        ("any", "liaoning"),
    ]


def test_a_request_id_is_made_up_once_when_none_was_given() -> None:
    set_request_id(None)
    made_up = current_request_id()
    assert len(made_up) == 32
    assert current_request_id() == made_up
    set_request_id("given")
    assert current_request_id() == "given"
    set_request_id(None)


@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("returning", [False, True], ids=["plain", "returning"])
def test_text_with_nul_is_refused_in_every_shape_of_insert(
    db_session: Session, rows: int, returning: bool
) -> None:
    # given rows to insert, the last one's text carrying a NUL (PostgreSQL cannot store it)
    from sqlalchemy import insert

    from civicloud.core.audit import AuditRecord

    values = [
        {
            "seq": 10_000_000 + number,
            "at": datetime(2026, 11, 26, tzinfo=UTC),
            "actor": "tests" if number < rows - 1 else "te\x00sts",
            "tenant_id": None,
            "action": "tests.nul",
            "target": "t",
            "request_id": "r",
            "outcome": "success",
            "detail": {},
            "prev_hash": "0" * 64,
            "hash": "0" * 64,
        }
        for number in range(rows)
    ]
    statement = insert(AuditRecord)
    if returning:
        # several rows with RETURNING go as one batch ("insertmanyvalues"), a shape of its own
        statement = statement.returning(AuditRecord.seq)
    # when they are inserted, then that is refused as bad input on both databases, not a 500
    with pytest.raises(errors.InvalidInput, match="NUL"):
        db_session.connection().execute(statement, values)
