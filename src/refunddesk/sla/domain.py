"""The clocks of one refund and how each refund status moves them: a pure state machine.

Four clocks: time to first decision, time to payout, the total time (SLA targets in
business hours of the tenant's calendar) and the legal deadline of the customer's
jurisdiction (days of the law). A clock runs, is paused (waiting for the customer or the
goods does not count against the desk), or has stopped. Deadlines are computed when a clock
starts or resumes, so reading or scanning clocks needs no calendar arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from refunddesk.refunds.domain import OPEN, RefundStatus
from refunddesk.sla.calendar import BusinessCalendar, legal_deadline
from refunddesk.sla.config import Jurisdiction, Sla

__all__ = ["Jurisdiction"]

S = RefundStatus


class ClockName(StrEnum):
    DECISION = "decision"
    PAYOUT = "payout"
    TOTAL = "total"
    LEGAL = "legal"


LABELS = {
    ClockName.DECISION: "Time to first decision",
    ClockName.PAYOUT: "Time to payout",
    ClockName.TOTAL: "Total time",
    ClockName.LEGAL: "Legal refund deadline",
}

# Where each clock runs; outside it the clock stops (or pauses, in the tenant's pause_in).
RUNS_IN: Mapping[ClockName, frozenset[RefundStatus]] = {
    ClockName.DECISION: frozenset({S.REQUESTED, S.PENDING_REVIEW, S.RETURN_RECEIVED}),
    ClockName.PAYOUT: frozenset({S.APPROVED, S.PROCESSING, S.FAILED}),
    ClockName.TOTAL: OPEN,
    ClockName.LEGAL: OPEN,
}


@dataclass(frozen=True, slots=True)
class LegalRule:
    days: int
    working_days: bool
    basis: str


LEGAL_RULES: Mapping[Jurisdiction, LegalRule] = {
    Jurisdiction.EU: LegalRule(14, False, "EU Consumer Rights Directive: within 14 days"),
    Jurisdiction.UK: LegalRule(14, False, "UK Consumer Contracts Regulations: within 14 days"),
    Jurisdiction.US: LegalRule(7, True, "US FTC Mail Order Rule: within 7 working days"),
}

# The EU's member states, and the EEA's three others, which apply the directive too.
EU_COUNTRIES = frozenset(
    {
        *("AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "IE", "IT"),
        *("LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI"),
        "NO",
    }
)


def jurisdiction_for(country: str | None, default: Jurisdiction) -> Jurisdiction:
    """The law of the shipping country when we know it; else the tenant's default."""
    code = (country or "").strip().upper()
    if code in EU_COUNTRIES:
        return Jurisdiction.EU
    if code in {"GB", "UK"}:
        return Jurisdiction.UK
    if code in {"US", "PR"}:
        return Jurisdiction.US
    return default


@dataclass(frozen=True, slots=True)
class ClockRules:
    """A tenant's clock settings, ready for arithmetic."""

    calendar: BusinessCalendar
    targets: Mapping[ClockName, float]  # business seconds
    warn_at: float
    pause_in: frozenset[RefundStatus]
    jurisdiction: Jurisdiction
    warn_lead: float | None = None  # business seconds before the deadline (wins over warn_at)

    def warn_left(self, target: float) -> float:
        """Of a clock's target, the seconds still left when it warns."""
        if self.warn_lead is not None:
            return min(self.warn_lead, target)
        return target * (1 - self.warn_at)

    @classmethod
    def of(cls, sla: Sla, *, default_tz: str, jurisdiction: Jurisdiction) -> ClockRules:
        t = sla.targets
        return cls(
            calendar=BusinessCalendar.of(sla.calendar, default_tz),
            targets={
                ClockName.DECISION: t.decision * 3600,
                ClockName.PAYOUT: t.payout * 3600,
                ClockName.TOTAL: t.total * 3600,
            },
            warn_at=sla.warn_at,
            warn_lead=None if sla.warn_before_hours is None else sla.warn_before_hours * 3600,
            pause_in=frozenset(RefundStatus(s) for s in sla.pause_in),
            jurisdiction=jurisdiction,
        )


RUNNING, PAUSED, STOPPED = "running", "paused", "stopped"


@dataclass(frozen=True, slots=True)
class Clock:
    """One clock's state. Seconds are business seconds, or wall seconds for the legal clock."""

    state: str
    started_at: datetime
    target: float
    due_at: datetime | None  # while running
    warn_at: datetime | None  # while running
    left: float | None  # while paused, and when stopped: what was left then
    stopped_at: datetime | None = None
    breached: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "started_at": _iso(self.started_at),
            "target": self.target,
            "due_at": _iso(self.due_at),
            "warn_at": _iso(self.warn_at),
            "left": self.left,
            "stopped_at": _iso(self.stopped_at),
            "breached": self.breached,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Clock:
        return cls(
            state=str(data["state"]),
            started_at=_dt(data["started_at"]),  # type: ignore[arg-type]
            target=float(data["target"]),
            due_at=_dt(data.get("due_at")),
            warn_at=_dt(data.get("warn_at")),
            left=None if data.get("left") is None else float(data["left"]),
            stopped_at=_dt(data.get("stopped_at")),
            breached=bool(data.get("breached")),
        )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _dt(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


Clocks = dict[ClockName, Clock]


def _is_legal(name: ClockName) -> bool:
    return name is ClockName.LEGAL


def _start(name: ClockName, at: datetime, rules: ClockRules) -> Clock | None:
    if _is_legal(name):
        rule = LEGAL_RULES.get(rules.jurisdiction)
        if rule is None:
            return None
        due = legal_deadline(
            at, days=rule.days, working_days=rule.working_days, calendar=rules.calendar
        )
        target = (due - at).total_seconds()
        return Clock(RUNNING, at, target, due, at + (due - at) * rules.warn_at, None)
    target = rules.targets[name]
    cal = rules.calendar
    warn = cal.add(at, target - rules.warn_left(target))
    return Clock(RUNNING, at, target, cal.add(at, target), warn, None)


def _left(name: ClockName, clock: Clock, at: datetime, rules: ClockRules) -> float:
    assert clock.due_at is not None
    if _is_legal(name):
        return (clock.due_at - at).total_seconds()
    return rules.calendar.between(at, clock.due_at)


def _resume(name: ClockName, clock: Clock, at: datetime, rules: ClockRules) -> Clock:
    left = clock.left or 0.0
    warn_left = left - rules.warn_left(clock.target)
    if _is_legal(name):
        due = at + timedelta(seconds=left)
        warn = at + timedelta(seconds=max(warn_left, 0))
    elif left > 0:
        due = rules.calendar.add(at, left)
        warn = rules.calendar.add(at, warn_left)
    else:  # already past due when it paused: stays as overdue as it was
        due = at + timedelta(seconds=left)
        warn = due
    return replace(clock, state=RUNNING, due_at=due, warn_at=warn, left=None)


def advance(clocks: Clocks, status: RefundStatus, at: datetime, rules: ClockRules) -> Clocks:
    """The clocks after the refund entered `status` at `at`."""
    out = dict(clocks)
    for name in ClockName:
        clock = out.get(name)
        if status in rules.pause_in and status in OPEN:
            if clock is not None and clock.state == RUNNING:
                left = _left(name, clock, at, rules)
                out[name] = replace(
                    clock, state=PAUSED, left=left, due_at=None, warn_at=None, breached=left <= 0
                )
            continue
        if status in RUNS_IN[name]:
            if clock is None or clock.state == STOPPED:
                # A stopped payout clock starts afresh when a paid refund is reversed.
                started = _start(name, at, rules)
                if started is not None:
                    out[name] = started
            elif clock.state == PAUSED:
                out[name] = _resume(name, clock, at, rules)
            continue
        if clock is not None and clock.state != STOPPED:
            remains = clock.left if clock.state == PAUSED else _left(name, clock, at, rules)
            out[name] = replace(
                clock,
                state=STOPPED,
                left=remains,
                warn_at=None,
                stopped_at=at,
                breached=(remains or 0) <= 0 if clock.state == RUNNING else clock.breached,
            )
    return out


def next_due(clocks: Mapping[ClockName, Clock]) -> datetime | None:
    """The earliest deadline among the running clocks (None when none runs)."""
    dues = [c.due_at for c in clocks.values() if c.state == RUNNING and c.due_at is not None]
    return min(dues) if dues else None


def trigger_times(
    clocks: Mapping[ClockName, Clock], fired: Iterable[str]
) -> list[tuple[datetime, str]]:
    """The instants at which a running clock warns or breaches, with their trigger keys."""
    done = set(fired)
    out: list[tuple[datetime, str]] = []
    for name, c in clocks.items():
        if c.state != RUNNING:
            continue
        if c.warn_at is not None and f"near:{name}" not in done:
            out.append((c.warn_at, f"near:{name}"))
        if c.due_at is not None and f"breach:{name}" not in done:
            out.append((c.due_at, f"breach:{name}"))
    return sorted(out)


@dataclass(frozen=True, slots=True)
class ClockView:
    """A clock as an agent sees it at `now`."""

    name: str
    label: str
    state: str  # running | paused | stopped
    started_at: datetime
    due_at: datetime | None
    remaining_seconds: int | None  # business seconds (legal: wall); negative: breached
    breached: bool
    paused: bool
    predicted_breach: bool
    basis: str  # "business hours" or the law


def views(
    clocks: Mapping[ClockName, Clock],
    *,
    now: datetime,
    rules: ClockRules,
) -> list[ClockView]:
    """The refund's clocks at `now`, in a fixed order."""
    running_dues = [
        c.due_at
        for n, c in clocks.items()
        if not _is_legal(n) and c.state == RUNNING and c.due_at is not None
    ]
    out = []
    for name in ClockName:
        c = clocks.get(name)
        if c is None:
            continue
        remaining: float | None
        if c.state == RUNNING:
            remaining = _left(name, c, now, rules)
            breached = now >= (c.due_at or now)
            predicted = not breached and now >= (c.warn_at or now)
            if _is_legal(name) and not breached and c.due_at is not None:
                # The desk's own targets end after the law's deadline: the law will lose.
                predicted = predicted or any(d > c.due_at for d in running_dues)
        else:
            remaining = c.left
            breached = c.breached or (c.left is not None and c.left <= 0)
            predicted = False
        rule = LEGAL_RULES.get(rules.jurisdiction)
        basis = rule.basis if _is_legal(name) and rule else "business hours"
        out.append(
            ClockView(
                name=str(name),
                label=LABELS[name],
                state=c.state,
                started_at=c.started_at,
                due_at=c.due_at if c.state != PAUSED else None,
                remaining_seconds=None if remaining is None else int(remaining),
                breached=breached,
                paused=c.state == PAUSED,
                predicted_breach=predicted,
                basis=basis,
            )
        )
    return out


def load(data: Mapping[str, Any] | None) -> Clocks:
    return {ClockName(k): Clock.from_json(v) for k, v in (data or {}).items()}


def dump(clocks: Mapping[ClockName, Clock]) -> dict[str, Any]:
    return {str(k): v.as_json() for k, v in clocks.items()}
