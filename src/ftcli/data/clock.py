"""Today's date, in one place: every date-dependent answer (days until a model stops serving, shutdown warnings,
`check`'s deprecation notices) asks here, so tests and users can fix the day with `FTCLI_TODAY=YYYY-MM-DD`
("what will have stopped working on 2027-01-15?") instead of depending on the real calendar."""

from __future__ import annotations

import datetime as dt
import os

from ftcli.data.errors import DataError

TODAY_VARIABLE = "FTCLI_TODAY"


def today() -> dt.date:
    value = os.environ.get(TODAY_VARIABLE, "").strip()
    if not value:
        return dt.date.today()
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise DataError(f"{TODAY_VARIABLE}={value!r} is not a date", hint="use YYYY-MM-DD, or unset it") from None


def days_until(day: dt.date, *, today_is: dt.date | None = None) -> int:
    """Whole days from today (or `today_is`) until `day`: 0 or less once it has come (a model's shutdown)."""
    return (day - (today_is or today())).days
