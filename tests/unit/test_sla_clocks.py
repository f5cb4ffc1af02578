"""Business-hour arithmetic, the clock state machine and escalation rules: no database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from refunddesk.core.clock import FrozenClock
from refunddesk.escalation.domain import Facts, Reason, evaluate, top
from refunddesk.policy.document import PolicyError, parse_policy
from refunddesk.refunds.domain import RefundStatus as S
from refunddesk.sla.calendar import BusinessCalendar, legal_deadline
from refunddesk.sla.config import Calendar, Escalation, Jurisdiction, Sla, Tier
from refunddesk.sla.domain import Clock, ClockName, ClockRules, advance, jurisdiction_for, views
from refunddesk.sla.maintain import _QUIET

BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")


def cal(tz: str = "Europe/Berlin", /, **calendar: object) -> BusinessCalendar:
    return BusinessCalendar.of(Calendar.model_validate(calendar), tz)


def local(tz: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=tz).astimezone(UTC)  # type: ignore[arg-type,misc]


ALWAYS = {"working_days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
          "hours": {"start": "00:00", "end": "24:00"}}  # fmt: skip

ADD_CASES = [
    # (case, calendar, start, business hours, expected end)
    ("within the day", {}, local(BERLIN, 2026, 11, 20, 10), 2, local(BERLIN, 2026, 11, 20, 12)),
    ("over the weekend", {}, local(BERLIN, 2026, 11, 20, 16), 2, local(BERLIN, 2026, 11, 23, 10)),
    ("before opening", {}, local(BERLIN, 2026, 11, 23, 7), 1, local(BERLIN, 2026, 11, 23, 10)),
    ("after closing", {}, local(BERLIN, 2026, 11, 23, 18), 1, local(BERLIN, 2026, 11, 24, 10)),
    (
        "over a public holiday (Christmas, Berlin)",
        {"holidays": {"country": "DE", "subdivision": "BE"}},
        local(BERLIN, 2026, 12, 24, 16),
        2,
        local(BERLIN, 2026, 12, 28, 10),
    ),
    (
        "over an extra day off",
        {"holidays": {"extra": [date(2026, 11, 23)]}},
        local(BERLIN, 2026, 11, 20, 16),
        2,
        local(BERLIN, 2026, 11, 24, 10),
    ),
    (
        "in the tenant's own zone (New York)",
        {"timezone": "America/New_York"},
        local(NEW_YORK, 2026, 11, 20, 16, 30),
        1,
        local(NEW_YORK, 2026, 11, 23, 9, 30),
    ),
    (
        "across the autumn DST change: that day has 25 hours",
        ALWAYS,
        local(BERLIN, 2026, 10, 24, 12),
        24,
        local(BERLIN, 2026, 10, 25, 11),
    ),
    (
        "across the spring DST change: that day has 23 hours",
        ALWAYS,
        local(BERLIN, 2026, 3, 28, 12),
        24,
        local(BERLIN, 2026, 3, 29, 13),
    ),
    (
        "working hours that contain the missing spring hour",
        {"working_days": ["sun"], "hours": {"start": "00:00", "end": "04:00"}},
        local(BERLIN, 2026, 3, 29, 0),
        3,
        local(BERLIN, 2026, 3, 29, 4),
    ),
    (
        "US DST ends on a Sunday the desk works",
        {"timezone": "America/New_York", **ALWAYS},
        local(NEW_YORK, 2026, 10, 31, 12),
        24,
        local(NEW_YORK, 2026, 11, 1, 11),
    ),
]


@pytest.mark.parametrize(("case", "calendar", "start", "hours", "end"), ADD_CASES)
def test_business_time_is_added_in_the_tenants_calendar(
    case: str, calendar: dict[str, object], start: datetime, hours: float, end: datetime
) -> None:
    c = cal(**calendar)
    assert c.add(start, hours * 3600) == end, case
    assert c.between(start, end) == hours * 3600, case
    assert c.between(end, start) == -hours * 3600, case


@pytest.mark.parametrize(
    ("case", "jurisdiction", "calendar", "start", "end"),
    [
        (
            "EU: 14 calendar days, to the end of the last day",
            "eu",
            {},
            local(BERLIN, 2026, 11, 20, 13),
            local(BERLIN, 2026, 12, 5, 0),
        ),
        (
            "US: 7 working days, Mon-Fri",
            "us",
            {"timezone": "America/New_York"},
            local(NEW_YORK, 2026, 11, 20, 13),
            local(NEW_YORK, 2026, 12, 2, 0),
        ),
        (
            "US: Thanksgiving is no working day when the calendar has US holidays",
            "us",
            {"timezone": "America/New_York", "holidays": {"country": "US"}},
            local(NEW_YORK, 2026, 11, 20, 13),
            local(NEW_YORK, 2026, 12, 3, 0),
        ),
    ],
)
def test_legal_deadlines_count_the_days_of_the_law(
    case: str, jurisdiction: str, calendar: dict[str, object], start: datetime, end: datetime
) -> None:
    from refunddesk.sla.domain import LEGAL_RULES

    rule = LEGAL_RULES[Jurisdiction(jurisdiction)]
    c = cal(str(calendar.get("timezone", "Europe/Berlin")), **calendar)
    assert legal_deadline(start, days=rule.days, working_days=rule.working_days, calendar=c) == end


@pytest.mark.parametrize(
    ("country", "default", "expected"),
    [("DE", "none", "eu"), ("us", "eu", "us"), ("GB", "none", "uk"), ("CH", "eu", "eu"),
     (None, "us", "us"), ("JP", "none", "none")],
)  # fmt: skip
def test_the_shipping_country_picks_the_law_else_the_tenants_default(
    country: str | None, default: str, expected: str
) -> None:
    assert jurisdiction_for(country, Jurisdiction(default)) == Jurisdiction(expected)


def rules(jurisdiction: str = "eu", **sla: object) -> ClockRules:
    return ClockRules.of(
        Sla.model_validate(sla), default_tz="Europe/Berlin", jurisdiction=Jurisdiction(jurisdiction)
    )


FRIDAY_1300 = local(BERLIN, 2026, 11, 20, 13)


def test_a_refund_waiting_for_its_goods_keeps_its_remaining_time() -> None:
    r = rules(targets={"decision": 4})
    clocks = advance({}, S.REQUESTED, FRIDAY_1300, r)
    clocks = advance(clocks, S.AWAITING_RETURN, FRIDAY_1300 + timedelta(hours=1), r)
    assert clocks[ClockName.DECISION].state == "paused"
    assert clocks[ClockName.DECISION].left == 3 * 3600
    back = local(BERLIN, 2026, 11, 25, 9)  # Wednesday 09:00
    clocks = advance(clocks, S.RETURN_RECEIVED, back, r)
    assert clocks[ClockName.DECISION].due_at == local(BERLIN, 2026, 11, 25, 12)
    clocks = advance(clocks, S.APPROVED, back + timedelta(hours=4), r)
    decision = clocks[ClockName.DECISION]
    assert decision.state == "stopped"
    assert decision.breached
    assert clocks[ClockName.PAYOUT].state == "running"


def test_views_show_remaining_business_time_breach_and_prediction() -> None:
    r = rules(targets={"decision": 4, "total": 6}, warn_at=0.5)
    clocks = advance({}, S.REQUESTED, FRIDAY_1300, r)
    clock = FrozenClock(FRIDAY_1300 + timedelta(hours=1))
    shown = {v.name: v for v in views(clocks, now=clock.now(), rules=r)}
    assert shown["decision"].remaining_seconds == 3 * 3600
    assert not shown["decision"].predicted_breach
    clock.advance(timedelta(hours=1, minutes=1))  # past half of the target
    shown = {v.name: v for v in views(clocks, now=clock.now(), rules=r)}
    assert shown["decision"].predicted_breach
    assert not shown["decision"].breached
    clock.advance(timedelta(days=3))  # Monday 15:01: due Friday 17:00, so 6h01 of work late
    shown = {v.name: v for v in views(clocks, now=clock.now(), rules=r)}
    assert shown["decision"].breached
    assert shown["decision"].remaining_seconds == -(6 * 3600 + 60)
    assert shown["legal"].basis.startswith("EU")


def test_the_legal_clock_is_predicted_to_breach_when_the_desks_own_targets_end_later() -> None:
    r = rules("us", targets={"total": 200})  # five weeks of business hours > 7 working days
    clocks = advance({}, S.REQUESTED, FRIDAY_1300, r)
    legal = next(v for v in views(clocks, now=FRIDAY_1300, rules=r) if v.name == "legal")
    assert legal.predicted_breach
    assert not legal.breached


def _facts(**over: object) -> Facts:
    base: dict[str, object] = {
        "status": S.PENDING_REVIEW,
        "amount_minor": 1000,
        "currency": "EUR",
        "updated_at": FRIDAY_1300,
        "risk_level": None,
        "risk_score": None,
        "contacts": 0,
        "customer_keys": frozenset({"ada@example.com"}),
    }
    base.update(over)
    return Facts(**base)  # type: ignore[arg-type]


def test_rules_fire_near_breach_before_the_deadline_and_once_only() -> None:
    r = rules(targets={"decision": 4}, warn_at=0.75)
    clocks = advance({}, S.REQUESTED, FRIDAY_1300, r)
    settings = Escalation()
    clock = FrozenClock(FRIDAY_1300 + timedelta(hours=2, minutes=59))
    assert evaluate(_facts(), clocks, [], settings, clock.now()) == []
    clock.advance(timedelta(minutes=1))
    hits = evaluate(_facts(), clocks, [], settings, clock.now())
    near = [h for h in hits if h.reason is Reason.NEAR_BREACH]
    assert [h.key for h in near] == ["near:decision"]
    assert near[0].tier is Tier.L1
    assert evaluate(_facts(), clocks, [h.key for h in hits], settings, clock.now()) == []
    clock.advance(timedelta(hours=1))
    keys = {h.key for h in evaluate(_facts(), clocks, ["near:decision"], settings, clock.now())}
    assert "breach:decision" in keys


def test_value_risk_vip_contact_and_failure_rules_pick_the_highest_tier() -> None:
    settings = Escalation.model_validate(
        {
            "rules": {"high_value": "finance", "vip": "l1", "high_risk": "l2"},
            "high_value_minor": 500,
            "vip": ["ADA@example.com"],
            "contact_threshold": 2,
        }
    )
    hits = evaluate(
        _facts(risk_level="high", contacts=2, status=S.FAILED), {}, [], settings, FRIDAY_1300
    )
    assert {h.reason for h in hits} == {
        Reason.PAYOUT_FAILED,
        Reason.HIGH_VALUE,
        Reason.HIGH_RISK,
        Reason.REPEATED_CONTACT,
        Reason.VIP,
    }
    best = top(hits)
    assert best is not None
    assert best.tier is Tier.FINANCE
    assert evaluate(_facts(status=S.SUCCEEDED, contacts=9), {}, [], settings, FRIDAY_1300) == []


def test_a_rule_turned_off_never_picks_a_tier() -> None:
    settings = Escalation.model_validate({"rules": {"vip": "off"}, "vip": ["ada@example.com"]})
    hits = evaluate(_facts(), {}, [], settings, FRIDAY_1300)
    assert [h.tier for h in hits] == [None]
    assert top(hits) is None


@pytest.mark.parametrize(
    ("source", "where"),
    [
        ("sla:\n  targets:\n    decision: 0\n", "line 3: sla.targets.decision"),
        ("sla:\n  calendar:\n    timezone: Mars/Base\n", "line 3: sla.calendar.timezone"),
        ("sla:\n  calendar:\n    holidays: {country: XX}\n", "line 3: sla.calendar.holidays"),
        ("escalation:\n  rules: {breach: l7}\n", "line 2: escalation.rules.breach"),
        ("escalation:\n  finance_email: nobody\n", "line 2: escalation.finance_email"),
    ],
)
def test_bad_sla_and_escalation_settings_name_their_line_and_field(source: str, where: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(source)
    assert where in str(caught.value)


def test_a_policy_without_the_sections_gets_the_defaults() -> None:
    policy = parse_policy("name: plain\n")
    assert policy.sla.targets.decision == 16
    assert policy.escalation.rules.breach is Tier.L2


def test_a_fixed_lead_time_warns_that_many_business_hours_before_the_deadline() -> None:
    r = rules(targets={"decision": 4}, warn_before_hours=1)
    clocks = advance({}, S.REQUESTED, FRIDAY_1300, r)
    assert clocks[ClockName.DECISION].warn_at == local(BERLIN, 2026, 11, 20, 16)
    paused = advance(clocks, S.AWAITING_RETURN, FRIDAY_1300, r)
    back = advance(paused, S.RETURN_RECEIVED, local(BERLIN, 2026, 11, 23, 9), r)
    assert back[ClockName.DECISION].warn_at == local(BERLIN, 2026, 11, 23, 12)


PATHS = {  # a way into each status, from the request
    S.REQUESTED: [S.REQUESTED],
    S.PENDING_REVIEW: [S.REQUESTED, S.PENDING_REVIEW],
    S.RETURN_RECEIVED: [S.REQUESTED, S.AWAITING_RETURN, S.RETURN_RECEIVED],
    S.APPROVED: [S.REQUESTED, S.APPROVED],
    S.PROCESSING: [S.REQUESTED, S.APPROVED, S.PROCESSING],
    S.SUCCEEDED: [S.REQUESTED, S.APPROVED, S.PROCESSING, S.SUCCEEDED],
    S.REJECTED: [S.REQUESTED, S.REJECTED],
    S.CANCELED: [S.REQUESTED, S.CANCELED],
}


@pytest.mark.parametrize("pause_in", [["awaiting_return"], ["awaiting_return", "failed"], []])
@pytest.mark.parametrize("law", [Jurisdiction.EU, Jurisdiction.NONE])
def test_a_move_the_clocks_writer_skips_changes_no_clock(
    pause_in: list[str], law: Jurisdiction
) -> None:
    # track_clocks writes only the status for these moves, without reading the clocks: that
    # is right only if advance() would leave every clock as it was, whatever the tenant set.
    rules = ClockRules.of(
        Sla.model_validate({"pause_in": pause_in}), default_tz="Europe/Berlin", jurisdiction=law
    )
    at = local(BERLIN, 2026, 11, 23, 9)
    assert ("approved", "processing") in _QUIET  # the payout job's first step
    for before, after in sorted(_QUIET):
        clocks: dict[ClockName, Clock] = {}
        for n, status in enumerate(PATHS[S(before)]):
            clocks = advance(clocks, status, at + timedelta(hours=n), rules)
        moved = advance(clocks, S(after), at + timedelta(days=3), rules)
        assert moved == clocks, (before, after)
    assert ("processing", "succeeded") not in _QUIET
    assert ("awaiting_return", "return_received") not in _QUIET
