"""Times as the catalog stores and prints them: ISO 8601, UTC, with a Z.

The database holds one form, ``2026-12-05T13:14:04.617208Z``, for the times pai-catalog writes
(run and state times, as SQLite text) and for the times the API sent; it sorts as text in time
order. Output prints the same form to the second, ``2026-12-05T13:14:04Z``.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

# SQLAlchemy's storage format for DateTime columns in SQLite (its keyword names), and the
# pattern that reads them back: the form above, and SQLAlchemy's default ("2026-12-05
# 13:14:04.617208") for files not yet migrated.
SQLITE_STORAGE = (
    "%(year)04d-%(month)02d-%(day)02dT%(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06dZ"
)
SQLITE_PATTERN = re.compile(r"(\d+)-(\d+)-(\d+)[T ](\d+):(\d+):(\d+)(?:\.(\d{6}))?Z?")


def stored(moment: datetime) -> str:
    """A naive UTC time in the stored form (every year four digits: strftime writes the year
    99 as '99')."""
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
        f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond:06d}Z"
    )


def parse(value: Any) -> datetime | None:
    """A stored time (text from sqlite3, a datetime from a server) as naive UTC."""
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        text = str(value)
        # Python 3.10's fromisoformat takes no Z, nor a fraction of other than 3 or 6 digits.
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def iso(value: Any) -> str | None:
    """A stored time as output prints it: ISO 8601 UTC to the second, with a Z. An API time
    that is no time (a catalog written before times were checked keeps it as sent) prints as
    it is."""
    try:
        moment = parse(value)
    except ValueError:
        return str(value)
    if moment is None:
        return None
    return stored(moment.replace(microsecond=0))[:-8] + "Z"
