"""Day counting for return windows: calendar or business days, in the tenant's time zone."""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from refunddesk.policy.document import Counting

DEFAULT_WEEKEND = frozenset({5, 6})  # Saturday, Sunday


def is_business_day(
    day: date, *, weekend: Collection[int] = DEFAULT_WEEKEND, holidays: Collection[date] = ()
) -> bool:
    return day.weekday() not in weekend and day not in holidays


def add_business_days(
    start: date,
    days: int,
    *,
    weekend: Collection[int] = DEFAULT_WEEKEND,
    holidays: Collection[date] = (),
) -> date:
    """Start plus n business days, skipping the weekend days and holidays given."""
    if len(weekend) >= 7:
        raise ValueError("a week needs at least one business day")
    current = start
    while days > 0:
        current += timedelta(days=1)
        if is_business_day(current, weekend=weekend, holidays=holidays):
            days -= 1
    return current


def last_day(
    start: date,
    days: int,
    counting: Counting,
    *,
    weekend: Collection[int] = DEFAULT_WEEKEND,
    holidays: Collection[date] = (),
) -> date:
    """The last local day of a window of n days that starts the day after `start`."""
    if counting is Counting.BUSINESS:
        return add_business_days(start, days, weekend=weekend, holidays=holidays)
    return start + timedelta(days=days)


def end_of_day(day: date, tz: ZoneInfo) -> datetime:
    """The first instant after `day` in tz: midnight at the end of that local day."""
    # Built from the wall clock, so DST changes on the way are accounted for by the zone.
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
