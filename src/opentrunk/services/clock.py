"""Wall-clock time as the store keeps it: naive datetimes in UTC, whole seconds."""

from __future__ import annotations

from datetime import UTC, datetime

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def fmt(value: datetime | None) -> str | None:
    return None if value is None else value.strftime(TIME_FORMAT)
