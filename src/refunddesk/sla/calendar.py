"""Business-hour arithmetic in a tenant's calendar: working days, hours, holidays, time zone.

Every instant is timezone-aware UTC. Working intervals are built from the local wall clock
(so a DST change inside working hours is accounted for by the zone), then compared in UTC.
Day-level rules reuse policy/calendar.py; this adds the hours within a day.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays as holidays_lib

from refunddesk.policy.calendar import (
    DEFAULT_WEEKEND,
    add_business_days,
    end_of_day,
    is_business_day,
)
from refunddesk.sla.config import Calendar

# No calendar has a year without working time; past this many days something is wrong.
_MAX_DAYS = 3 * 366

_lock = threading.Lock()


@lru_cache(maxsize=256)
def _public_holidays(country: str, subdivision: str | None) -> holidays_lib.HolidayBase:
    return holidays_lib.country_holidays(country, subdiv=subdivision)


class _HolidaySet:
    """Public holidays (expanded year by year, thread-safely) plus extra dates."""

    def __init__(self, country: str | None, subdivision: str | None, extra: frozenset[date]):
        self._public = _public_holidays(country, subdivision) if country else None
        self._extra = extra

    def __contains__(self, day: object) -> bool:
        if day in self._extra:
            return True
        if self._public is None:
            return False
        with _lock:  # the package fills in a year on first look-up
            return day in self._public


@dataclass(frozen=True)
class BusinessCalendar:
    """A tenant's working time; `add` and `between` count only that time."""

    tz: ZoneInfo
    weekend: frozenset[int]
    opens: time
    closes: time | None  # None: midnight at the end of the day (24:00)
    holidays: _HolidaySet | frozenset[date] = frozenset()
    _cache: dict[date, tuple[datetime, datetime] | None] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def of(cls, calendar: Calendar, default_tz: str) -> BusinessCalendar:
        h = calendar.holidays
        return cls(
            tz=ZoneInfo(calendar.timezone or default_tz),
            weekend=calendar.weekend,
            opens=calendar.hours.opens,
            closes=calendar.hours.closes,
            holidays=_HolidaySet(h.country, h.subdivision, h.extra),
        )

    def is_working_day(self, day: date) -> bool:
        return is_business_day(day, weekend=self.weekend, holidays=self.holidays)  # type: ignore[arg-type]

    def interval(self, day: date) -> tuple[datetime, datetime] | None:
        """The working interval of a local day, in UTC; None on a day off."""
        if day in self._cache:
            return self._cache[day]
        found: tuple[datetime, datetime] | None = None
        if self.is_working_day(day):
            start = datetime.combine(day, self.opens, tzinfo=self.tz).astimezone(UTC)
            if self.closes is None:
                end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=self.tz)
            else:
                end = datetime.combine(day, self.closes, tzinfo=self.tz)
            found = (start, end.astimezone(UTC))
        if len(self._cache) < 4096:
            self._cache[day] = found
        return found

    def _local_day(self, at: datetime) -> date:
        return at.astimezone(self.tz).date()

    def add(self, start: datetime, seconds: float) -> datetime:
        """The instant `seconds` of working time after start (start itself for 0 or less)."""
        if seconds <= 0:
            return start
        left = float(seconds)
        day = self._local_day(start)
        for _ in range(_MAX_DAYS):
            found = self.interval(day)
            if found is not None:
                lo, hi = max(found[0], start), found[1]
                if lo < hi:
                    available = (hi - lo).total_seconds()
                    if left <= available:
                        return lo + timedelta(seconds=left)
                    left -= available
            day += timedelta(days=1)
        raise ValueError("the calendar has no working time in the next three years")

    def between(self, a: datetime, b: datetime) -> float:
        """Working seconds from a to b; negative when b is before a."""
        if b < a:
            return -self.between(b, a)
        total = 0.0
        day, last = self._local_day(a), self._local_day(b)
        for _ in range(_MAX_DAYS * 4):
            if day > last:
                break
            found = self.interval(day)
            if found is not None:
                lo, hi = max(found[0], a), min(found[1], b)
                if lo < hi:
                    total += (hi - lo).total_seconds()
            day += timedelta(days=1)
        return total


def legal_deadline(
    start: datetime, *, days: int, working_days: bool, calendar: BusinessCalendar
) -> datetime:
    """The end of the last local day of a legal period of `days` starting the day after start.

    Working days skip the calendar's days off (weekend and public holidays); calendar days
    count every day, as the EU and UK rules do.
    """
    local = start.astimezone(calendar.tz).date()
    if working_days:
        last = add_business_days(
            local,
            days,
            weekend=DEFAULT_WEEKEND,  # the law's working days, not the desk's
            holidays=calendar.holidays,  # type: ignore[arg-type]
        )
    else:
        last = local + timedelta(days=days)
    return end_of_day(last, calendar.tz).astimezone(UTC)
