"""Timestamps, in one format everywhere a record is written: UTC, ISO 8601, to the microsecond, with the zone
as ``Z`` (``2026-11-29T15:00:00.123456Z``). Such strings sort in time order as text, which the casebook's
filters rely on (``--since``). Records written before this format keep theirs (an index manifest's
``2026-11-29T15:00:00+00:00``): :func:`parse_time` reads both."""

from __future__ import annotations

from datetime import UTC, datetime

#: The one format (``datetime.strftime``) of every timestamp the inspector writes.
FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def utc_now() -> str:
    """The current time in :data:`FORMAT`, e.g. ``2026-11-29T15:00:00.123456Z``."""
    return datetime.now(UTC).strftime(FORMAT)


def format_time(moment: datetime) -> str:
    """``moment`` in :data:`FORMAT`; a time without a zone is taken as the computer's local time."""
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.astimezone(UTC).strftime(FORMAT)


def parse_time(text: str) -> datetime:
    """An ISO 8601 date or date and time as an aware ``datetime``: ``Z`` or an offset as written; without a zone,
    the computer's local time (what a person typing ``2026-11-01T09:30`` means). Raises ``ValueError``."""
    text = text.strip()
    moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    return moment if moment.tzinfo is not None else moment.astimezone()
