"""Times as people read them: in the installation's zone, followed by that zone's offset."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from civicloud.core.zones import local_time, offset_label

MOMENT = datetime(2026, 11, 3, 0, 42, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "shown"),
    [
        ("Asia/Shanghai", "2026-11-03 08:42 UTC+8"),
        ("Europe/Berlin", "2026-11-03 01:42 UTC+1"),
        ("UTC", "2026-11-03 00:42 UTC"),
        ("Asia/Kolkata", "2026-11-03 06:12 UTC+5:30"),
        ("America/Sao_Paulo", "2026-11-02 21:42 UTC-3"),
        ("Pacific/Marquesas", "2026-11-02 15:12 UTC-9:30"),
    ],
)
def test_a_moment_is_shown_in_the_zone_with_its_offset(zone: str, shown: str) -> None:
    assert local_time(MOMENT, ZoneInfo(zone)) == shown


def test_summer_time_shows_the_offset_of_that_day() -> None:
    # given a July moment in Berlin (CEST)
    july = datetime(2026, 7, 1, 10, 0, tzinfo=UTC)
    # then its offset is that of summer time
    assert local_time(july, ZoneInfo("Europe/Berlin")) == "2026-07-01 12:00 UTC+2"


def test_stored_and_signed_forms_read_alike() -> None:
    zone = ZoneInfo("Asia/Shanghai")
    # a naive time (as SQLite hands back) is UTC; an ISO string (as a receipt holds) is parsed
    assert local_time(MOMENT.replace(tzinfo=None), zone) == "2026-11-03 08:42 UTC+8"
    assert local_time("2026-11-03T00:42:05+00:00", zone, seconds=True) == (
        "2026-11-03 08:42:05 UTC+8"
    )
    assert local_time("2026-11-03T00:42:05Z", zone, date=False) == "08:42 UTC+8"
    assert local_time(None, zone) == "—"


@given(
    moment=st.datetimes(
        # hypothesis takes naive bounds and adds the zone itself
        min_value=datetime(1971, 1, 1),  # noqa: DTZ001
        max_value=datetime(2100, 1, 1),  # noqa: DTZ001
        timezones=st.just(UTC),
    ),
    zone=st.sampled_from(["Asia/Shanghai", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]),
)
def test_the_label_is_the_zone_s_offset_at_that_moment(moment: datetime, zone: str) -> None:
    local = moment.astimezone(ZoneInfo(zone))
    label = offset_label(local)
    found = re.fullmatch(r"UTC(?:([+-])(\d{1,2})(?::(\d\d))?)?", label)
    assert found, label
    sign, hours, minutes = found.groups()
    offset = timedelta(hours=int(hours or 0), minutes=int(minutes or 0))
    assert (offset if sign != "-" else -offset) == local.utcoffset()
    # and the clock shown is the zone's
    assert local_time(moment, ZoneInfo(zone)).startswith(f"{local:%Y-%m-%d %H:%M} ")
