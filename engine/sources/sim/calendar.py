"""The closing calendar: the last collection date on which the dashboard publishes a month.

Drawn from the real distribution (0-29 days after month end, median 8, mean
about 9.2; June 12-29 days) unless a calendar file (:func:`load_calendar`)
gives it.
"""

from __future__ import annotations

import json
import random
from datetime import date, timedelta
from pathlib import Path

from engine.domain.models import month_end, validate_month
from engine.errors import ConfigError

# Weights of 0, 1, ..., 18 days from month end to the closing date of a month
# other than June. With June drawn from 12-29 days this gives the real
# distribution of 116 months (2017-2026): median 8 days, mean about 9.2.
_CLOSING_WEIGHTS = (2, 3, 3, 4, 6, 8, 9, 10, 11, 9, 7, 6, 5, 4, 3, 2, 1, 2, 2)
_JUNE_DAYS = (12, 29)
_MAX_CALENDAR_DAYS = 62


def drawn_closing_end(seed: int, month: str) -> date:
    """``month``'s last closing collection date as drawn for ``seed`` (``month`` is valid)."""
    rng = random.Random(f"{seed}:closing:{month}")
    if month.endswith("-06"):
        days = rng.randint(*_JUNE_DAYS)
    else:
        days = rng.choices(range(len(_CLOSING_WEIGHTS)), weights=_CLOSING_WEIGHTS)[0]
    return month_end(month) + timedelta(days=days)


def load_calendar(path: str | Path) -> dict[str, date]:
    """Read a JSON object mapping data month to its last closing collection date.

    ``{"2025-06": "2025-07-20"}``: June 2025's data is published until the
    collection of 2025-07-20. A bad file raises ConfigError naming the file and key.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("calendar", str(path), f"cannot read the file: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError("calendar", str(path), f"invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError("calendar", str(path), 'expected a JSON object {"YYYY-MM": "YYYY-MM-DD"}')
    calendar: dict[str, date] = {}
    for key, value in data.items():
        try:
            calendar[validate_month(key)] = check_closing(key, date.fromisoformat(value))
        except (ConfigError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"calendar {path} [{key!r}]",
                value,
                f"expected a YYYY-MM key and a YYYY-MM-DD date 0-{_MAX_CALENDAR_DAYS} days "
                "after that month's end",
            ) from exc
    return calendar


def check_closing(month: str, closing: date) -> date:
    days = (closing - month_end(validate_month(month))).days
    if not 0 <= days <= _MAX_CALENDAR_DAYS:
        raise ConfigError(
            f"calendar[{month!r}]",
            closing.isoformat(),
            f"closing date must be 0-{_MAX_CALENDAR_DAYS} days after the month end",
        )
    return closing
