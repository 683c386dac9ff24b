"""Times as people read them: a stored moment in the installation's zone, with its offset.

Moments are stored in UTC (SQLite hands them back naive: they are read as UTC). Pages, receipts
and messages show them in the installation's zone (``web.time_zone``), followed by the zone's
offset from UTC at that moment (``UTC+8``, ``UTC+5:30``, ``UTC-3``), so that a reader in another
zone is never misled about which hour is meant.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

__all__ = ["as_moment", "local_time", "offset_label"]


def as_moment(value: datetime | str) -> datetime:
    """``value`` as an aware datetime: an ISO 8601 string is parsed, a naive time is UTC."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def offset_label(local: datetime) -> str:
    """The offset of an aware ``local`` time from UTC, as ``UTC+8`` (``UTC`` when there is none)."""
    offset = local.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    if not minutes:
        return "UTC"
    sign = "+" if minutes > 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours}" + (f":{rest:02d}" if rest else "")


def local_time(
    value: datetime | str | None, zone: tzinfo, *, seconds: bool = False, date: bool = True
) -> str:
    """``value`` in ``zone`` with its offset: ``2026-11-03 08:42 UTC+8`` (``—`` for none);
    ``seconds`` adds the seconds, ``date=False`` leaves the date out (``08:42 UTC+8``)."""
    if value is None:
        return "—"
    local = as_moment(value).astimezone(zone)
    shape = ("%Y-%m-%d " if date else "") + ("%H:%M:%S" if seconds else "%H:%M")
    return f"{local.strftime(shape)} {offset_label(local)}"
