"""The `sla:` and `escalation:` sections of the policy document (see policy/document.py).

Kept here, beside the capability they configure; the policy document includes them, so
they are versioned, validated and reported (line and field) like every other section.
"""

from __future__ import annotations

import re
from datetime import date, time
from enum import StrEnum
from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_lib
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK_TIME = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Jurisdiction(StrEnum):
    """The consumer law whose refund deadline applies."""

    EU = "eu"  # Consumer Rights Directive 2011/83/EU art. 13: within 14 days
    UK = "uk"  # Consumer Contracts Regulations 2013 reg. 34: within 14 days
    US = "us"  # FTC Mail, Internet, or Telephone Order Rule: within 7 working days
    NONE = "none"


class Tier(StrEnum):
    L1 = "l1"  # an agent
    L2 = "l2"  # a supervisor
    FINANCE = "finance"  # the retailer's finance contact

    @property
    def rank(self) -> int:
        return TIER_ORDER.index(self)

    def next(self) -> Tier | None:
        """The tier above, or None at the top."""
        i = self.rank + 1
        return TIER_ORDER[i] if i < len(TIER_ORDER) else None


TIER_ORDER = (Tier.L1, Tier.L2, Tier.FINANCE)


def _zone(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}") from None
    return value


def _clock_time(value: str) -> str:
    if not _CLOCK_TIME.match(value) or (value.startswith("24") and value != "24:00"):
        raise ValueError("must be a time of day as HH:MM (00:00 to 24:00)")
    return value


def _some_days(value: frozenset[str]) -> frozenset[str]:
    if not value:
        raise ValueError("a week needs at least one working day")
    return value


def _country(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().upper()
    if value not in holidays_lib.list_supported_countries():
        raise ValueError(f"no holiday calendar for country {value!r}")
    return value


ClockTime = Annotated[str, AfterValidator(_clock_time)]
Email = Annotated[str, Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]
Hours = Annotated[float, Field(gt=0, le=24 * 365)]


class WorkingHours(_Section):
    start: ClockTime = "09:00"
    end: ClockTime = "17:00"

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.start == "24:00":
            raise ValueError("start must be before 24:00")
        if self.start >= self.end:
            raise ValueError("end must be after start")
        return self

    @property
    def opens(self) -> time:
        return _as_time(self.start)

    @property
    def closes(self) -> time | None:
        """The closing time; None for 24:00 (midnight at the end of the day)."""
        return None if self.end == "24:00" else _as_time(self.end)


def _as_time(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


class Holidays(_Section):
    """Public holidays (the `holidays` package) by country and subdivision, plus extra days."""

    country: Annotated[str | None, AfterValidator(_country)] = None
    subdivision: Annotated[str | None, Field(max_length=10)] = None
    extra: frozenset[date] = frozenset()

    @model_validator(mode="after")
    def _subdivision_known(self) -> Self:
        if self.subdivision is not None:
            if self.country is None:
                raise ValueError("subdivision needs a country")
            known = holidays_lib.list_supported_countries().get(self.country, [])
            if self.subdivision not in known:
                raise ValueError(f"{self.country} has no subdivision {self.subdivision!r}")
        return self


class Calendar(_Section):
    """When the desk works: the clocks count only these hours."""

    timezone: Annotated[str | None, AfterValidator(_zone)] = None  # None: the tenant's
    working_days: Annotated[frozenset[Weekday], AfterValidator(_some_days)] = frozenset(
        {"mon", "tue", "wed", "thu", "fri"}
    )
    hours: WorkingHours = WorkingHours()
    holidays: Holidays = Holidays()

    @property
    def weekend(self) -> frozenset[int]:
        return frozenset(i for i, d in enumerate(WEEKDAYS) if d not in self.working_days)


class Targets(_Section):
    """How long each stage may take, in business hours."""

    decision: Hours = 16
    payout: Hours = 16
    total: Hours = 40


PausingStatus = Literal["awaiting_return", "failed"]


class Sla(_Section):
    calendar: Calendar = Calendar()
    targets: Targets = Targets()
    # A clock is "near breach" once this fraction of its target has run.
    warn_at: Annotated[float, Field(gt=0, lt=1)] = 0.75
    # Or a fixed lead: near breach this many business hours before the deadline (wins).
    warn_before_hours: Hours | None = None
    # Waiting for the customer or the goods does not count against the desk.
    pause_in: frozenset[PausingStatus] = frozenset({"awaiting_return"})
    # The law when the order's shipping country names none we know.
    jurisdiction: Jurisdiction = Jurisdiction.NONE


RuleTier = Tier | Literal["off"]


class Rules(_Section):
    """Which tier each rule escalates to ("off": the rule never fires)."""

    near_breach: RuleTier = Tier.L1
    breach: RuleTier = Tier.L2
    legal_near_breach: RuleTier = Tier.L2
    payout_failed: RuleTier = Tier.L1
    high_value: RuleTier = "off"
    high_risk: RuleTier = Tier.L2
    repeated_contact: RuleTier = Tier.L1
    vip: RuleTier = Tier.L1


class Escalation(_Section):
    rules: Rules = Rules()
    # Untouched (no note, assignment or resolution) this long: up one tier.
    reescalate_after_hours: Hours = 4
    finance_email: Email | None = None
    # Addresses told of new escalations per tier (finance: finance_email as well).
    notify: dict[Tier, list[Email]] = Field(default_factory=dict)
    # In minor units of the refund's currency.
    high_value_minor: Annotated[int, Field(ge=1, strict=True)] | None = None
    high_risk_score: Annotated[float, Field(gt=0, le=1)] = 0.8
    contact_threshold: Annotated[int, Field(ge=1, strict=True)] = 3
    # Customers by e-mail address or the retailer's customer id.
    vip: frozenset[Annotated[str, Field(min_length=1, max_length=320)]] = frozenset()

    @model_validator(mode="after")
    def _needs_threshold(self) -> Self:
        if self.rules.high_value != "off" and self.high_value_minor is None:
            raise ValueError("rules.high_value needs high_value_minor")
        return self

    def vip_keys(self) -> frozenset[str]:
        return frozenset(v.strip().lower() for v in self.vip)
