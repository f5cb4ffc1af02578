"""The policy engine: decisions, findings and amounts for many rules and edge cases."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refunddesk.policy import (
    CustomerHistory,
    Evaluation,
    OrderFacts,
    OrderLineFacts,
    Policy,
    PolicyDecision,
    RequestFacts,
    RequestLine,
    approvals_required,
    default_policy,
    evaluate,
    example_policy,
    needs_second_approver,
    policy_from_data,
    role_may_approve,
)
from refunddesk.policy.calendar import add_business_days, last_day
from refunddesk.policy.document import Counting, Evidence, RefundMethod, Severity
from refunddesk.refunds.domain import Reason, decide

BERLIN = ZoneInfo("Europe/Berlin")
TOKYO = ZoneInfo("Asia/Tokyo")
NEW_YORK = ZoneInfo("America/New_York")
DELIVERED = datetime(2026, 9, 1, 10, 0, tzinfo=UTC)
D = PolicyDecision


def order(
    *lines: tuple[str, str, int, int],
    currency: str = "EUR",
    delivered_at: datetime | None = DELIVERED,
    purchased_at: datetime = datetime(2026, 8, 28, 9, 0, tzinfo=UTC),
    shipping: int = 0,
    tax: int = 0,
    refunded: dict[str, int] | None = None,
    committed: int = 0,
) -> OrderFacts:
    """An order from (sku, category, quantity, unit price) lines."""
    return OrderFacts(
        currency=currency,
        lines=tuple(OrderLineFacts(*line) for line in lines or [("A", "general", 1, 5000)]),
        purchased_at=purchased_at,
        delivered_at=delivered_at,
        shipping_minor=shipping,
        tax_minor=tax,
        refunded_quantities=refunded or {},
        committed_minor=committed,
    )


def lines(
    *items: tuple[str, int] | tuple[str, int, str | None],
    reason: Reason = Reason.CHANGED_MIND,
    evidence: frozenset[Evidence] = frozenset(),
    method: RefundMethod | None = None,
    received: bool = False,
) -> RequestFacts:
    """A request for (sku, quantity[, condition]) lines."""
    return RequestFacts(
        reason=reason,
        lines=tuple(
            RequestLine(i[0], i[1], condition=i[2] if len(i) > 2 else None)
            for i in items or [("A", 1)]
        ),
        evidence=evidence,
        refund_method=method,
        return_received=received,
    )


def run(
    policy: Policy,
    the_order: OrderFacts | None = None,
    request: RequestFacts | None = None,
    *,
    now: datetime = datetime(2026, 9, 10, 12, 0, tzinfo=UTC),
    tz: ZoneInfo = BERLIN,
    history: CustomerHistory = CustomerHistory(),
) -> Evaluation:
    return evaluate(
        policy,
        order=the_order or order(),
        request=request or lines(),
        history=history,
        now=now,
        tz=tz,
        policy_version=7,
    )


def policy(**sections: Any) -> Policy:
    return policy_from_data(sections)


def codes(result: Evaluation, severity: Severity | None = None) -> set[str]:
    return {f.code for f in result.findings if severity is None or f.severity is severity}


# --- the default policy -----------------------------------------------------------------------


@pytest.mark.parametrize("days_after", [0, 1, 15, 29, 30, 31, 45])
def test_the_default_policy_decides_like_the_built_in_rule(days_after: int) -> None:
    now = DELIVERED + timedelta(days=days_after)
    result = run(default_policy(), now=now, tz=ZoneInfo("UTC"))
    built_in = decide(now=now, purchased_at=DELIVERED, delivered_at=DELIVERED, window_days=30)
    assert result.decision.status == built_in.status
    assert result.amount_minor == 5000
    assert result.approvals_required == (0 if result.decision is D.APPROVED else 1)


def test_a_late_request_names_the_delivery_date_and_the_end_of_the_window() -> None:
    result = run(default_policy(), now=datetime(2026, 10, 5, tzinfo=UTC))
    assert result.decision is D.PENDING_REVIEW
    assert "outside_return_window: delivered 2026-09-01, window 30 days ended 2026-10-01" in (
        result.reasons
    )


def test_without_a_delivery_date_the_window_counts_from_the_purchase() -> None:
    result = run(default_policy(), order(delivered_at=None), now=datetime(2026, 9, 28, tzinfo=UTC))
    assert result.reasons[0] == (
        "outside_return_window: purchased 2026-08-28, window 30 days ended 2026-09-27"
    )


def test_the_policy_version_and_currency_are_carried_on_the_evaluation() -> None:
    result = run(default_policy())
    assert result.policy_version == 7
    assert result.currency == "EUR"
    assert result.to_dict()["decision"] == "approved"


# --- the window boundary in the tenant's time zone ----------------------------------------


@pytest.mark.parametrize(
    ("tz", "delivered", "now", "inside"),
    [
        # Delivered 1 Sept in Berlin; 30 days end at midnight after 1 Oct, Berlin time (UTC+2).
        (BERLIN, DELIVERED, datetime(2026, 10, 1, 21, 59, tzinfo=UTC), True),
        (BERLIN, DELIVERED, datetime(2026, 10, 1, 22, 0, tzinfo=UTC), False),
        # 23:30 UTC on 31 Aug is already 1 Sept in Berlin: the window starts a day later.
        (
            BERLIN,
            datetime(2026, 8, 31, 23, 30, tzinfo=UTC),
            datetime(2026, 10, 1, 21, 0, tzinfo=UTC),
            True,
        ),
        # In Tokyo (UTC+9) the last day ends at 15:00 UTC.
        (TOKYO, DELIVERED, datetime(2026, 10, 1, 14, 59, tzinfo=UTC), True),
        (TOKYO, DELIVERED, datetime(2026, 10, 1, 15, 0, tzinfo=UTC), False),
        # Berlin leaves summer time on 25 Oct 2026: that day ends at 23:00 UTC, not 22:00.
        (
            BERLIN,
            datetime(2026, 9, 25, 8, tzinfo=UTC),
            datetime(2026, 10, 25, 22, 59, tzinfo=UTC),
            True,
        ),
        (
            BERLIN,
            datetime(2026, 9, 25, 8, tzinfo=UTC),
            datetime(2026, 10, 25, 23, 0, tzinfo=UTC),
            False,
        ),
        # New York enters summer time on 8 Mar 2026: that day ends at 04:00 UTC, not 05:00.
        (
            NEW_YORK,
            datetime(2026, 2, 6, 15, tzinfo=UTC),
            datetime(2026, 3, 9, 3, 59, tzinfo=UTC),
            True,
        ),
        (
            NEW_YORK,
            datetime(2026, 2, 6, 15, tzinfo=UTC),
            datetime(2026, 3, 9, 4, 0, tzinfo=UTC),
            False,
        ),
    ],
)
def test_the_window_ends_at_midnight_after_the_last_day_in_the_tenant_time_zone(
    tz: ZoneInfo, delivered: datetime, now: datetime, inside: bool
) -> None:
    result = run(default_policy(), order(delivered_at=delivered), now=now, tz=tz)
    assert ("outside_return_window" not in codes(result)) is inside
    assert result.decision is (D.APPROVED if inside else D.PENDING_REVIEW)


def test_a_request_at_23_59_local_on_the_last_day_is_inside() -> None:
    now = datetime(2026, 10, 1, 23, 59, tzinfo=BERLIN)
    assert run(default_policy(), now=now).decision is D.APPROVED


# --- business days ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "days", "weekend", "holidays", "last"),
    [
        (date(2026, 7, 31), 1, {5, 6}, (), date(2026, 8, 3)),  # Friday + 1 = Monday
        (date(2026, 7, 31), 5, {5, 6}, (), date(2026, 8, 7)),
        (date(2026, 7, 31), 5, {5, 6}, (date(2026, 8, 4),), date(2026, 8, 10)),
        (date(2026, 7, 31), 0, {5, 6}, (), date(2026, 7, 31)),
        (date(2026, 7, 29), 2, {4, 5}, (), date(2026, 8, 2)),  # Friday-Saturday weekend
    ],
)
def test_business_days_skip_weekends_and_holidays(
    start: date, days: int, weekend: set[int], holidays: tuple[date, ...], last: date
) -> None:
    assert add_business_days(start, days, weekend=weekend, holidays=holidays) == last
    assert last_day(start, days, Counting.BUSINESS, weekend=weekend, holidays=holidays) == last


def test_a_business_day_window_reaches_over_a_weekend_and_a_holiday() -> None:
    rules = policy(window={"days": 5, "counting": "business", "holidays": ["2026-08-04"]})
    friday = datetime(2026, 7, 31, 10, tzinfo=UTC)
    inside = run(rules, order(delivered_at=friday), now=datetime(2026, 8, 10, 21, tzinfo=UTC))
    outside = run(rules, order(delivered_at=friday), now=datetime(2026, 8, 10, 22, tzinfo=UTC))
    assert inside.decision is D.APPROVED
    assert "window 5 business days ended 2026-08-10" in outside.reasons[0]


def test_a_category_may_have_its_own_window() -> None:
    rules = policy(window={"days": 30, "categories": {"electronics": {"days": 14}}})
    the_order = order(("TV", "electronics", 1, 1000), ("TEE", "apparel", 1, 1000))
    now = datetime(2026, 9, 20, tzinfo=UTC)
    tv = run(rules, the_order, lines(("TV", 1)), now=now)
    tee = run(rules, the_order, lines(("TEE", 1)), now=now)
    assert "window for electronics 14 days ended 2026-09-15" in tv.reasons[0]
    assert tee.decision is D.APPROVED


def test_a_hard_window_rejects_and_exempt_reasons_skip_it() -> None:
    rules = policy(window={"days": 14, "outside": "hard", "exempt_reasons": ["not_received"]})
    late = datetime(2026, 11, 1, tzinfo=UTC)
    assert run(rules, now=late).decision is D.REJECTED
    exempt = run(rules, request=lines(reason=Reason.NOT_RECEIVED), now=late)
    assert exempt.decision is D.APPROVED
    assert codes(exempt) == {"return_window_not_applied", "instant_refund"}


# --- quantities and amounts ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("refunded", "asked", "amount", "decision"),
    [
        (0, 1, 1000, D.APPROVED),
        (0, 3, 3000, D.APPROVED),
        (1, 2, 2000, D.APPROVED),
        (2, 2, 1000, D.REJECTED),
        (3, 1, 0, D.REJECTED),
        (0, 0, 0, D.REJECTED),
    ],
)
def test_partial_quantities_are_priced_and_never_exceed_what_is_left(
    refunded: int, asked: int, amount: int, decision: PolicyDecision
) -> None:
    the_order = order(
        ("A", "general", 3, 1000), refunded={"A": refunded}, committed=refunded * 1000
    )
    result = run(default_policy(), the_order, lines(("A", asked)))
    assert (result.amount_minor, result.decision) == (amount, decision)


def test_an_unknown_sku_is_a_hard_finding() -> None:
    result = run(default_policy(), request=lines(("NOPE", 1)))
    assert result.decision is D.REJECTED
    assert result.reasons == ("unknown_sku: the order has no line with sku NOPE",)


def test_the_same_sku_twice_cannot_take_more_than_was_ordered() -> None:
    result = run(default_policy(), order(("A", "g", 2, 100)), lines(("A", 2), ("A", 1)))
    assert result.decision is D.REJECTED
    assert result.amount_minor == 200


@pytest.mark.parametrize(
    ("amount", "committed", "decision", "expected"),
    [
        (5000, 0, D.APPROVED, 5000),
        (5001, 0, D.REJECTED, 5000),
        (100, 4950, D.REJECTED, 50),
        (0, 0, D.REJECTED, 0),
        (-5, 0, D.REJECTED, 0),
        (1, 5000, D.REJECTED, 0),
    ],
)
def test_a_plain_amount_is_checked_against_the_budget(
    amount: int, committed: int, decision: PolicyDecision, expected: int
) -> None:
    request = RequestFacts(reason=Reason.PRICE_ADJUSTMENT, amount_minor=amount)
    result = run(default_policy(), order(committed=committed), request)
    assert (result.decision, result.amount_minor) == (decision, expected)


def test_a_request_needs_lines_or_an_amount_but_not_both() -> None:
    with pytest.raises(ValueError, match="either lines or amount_minor"):
        RequestFacts(reason=Reason.OTHER)
    with pytest.raises(ValueError, match="either lines or amount_minor"):
        RequestFacts(reason=Reason.OTHER, lines=(RequestLine("A", 1),), amount_minor=5)


# --- currencies, rounding, fees -----------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "rounding", "price", "percent", "fee"),
    [
        ("JPY", "half_even", 1990, 15, 298),  # 298.5 -> 298 (even)
        ("JPY", "half_up", 1990, 15, 299),
        ("JPY", "down", 1999, 15, 299),  # 299.85 -> 299
        ("JPY", "half_even", 32800, 15, 4920),
        ("EUR", "half_even", 1010, 25, 252),  # 252.5 cents -> 252
        ("EUR", "ceiling", 1001, 10, 101),
        ("BHD", "half_even", 1010, "2.5", 25),  # 1.010 BHD * 2.5% = 0.02525 -> 0.025
        ("BHD", "half_up", 1030, "2.5", 26),  # 25.75 fils -> 26
        ("KWD", "half_even", 12345, "12.5", 1543),  # 1543.125 -> 1543
    ],
)
def test_percent_fees_round_to_whole_minor_units_of_the_currency(
    currency: str, rounding: str, price: int, percent: Any, fee: int
) -> None:
    rules = policy(
        currency=currency,
        fees={"restocking": [{"percent": percent}]},
        refund={"rounding": {"default": "half_even", "currencies": {currency: rounding}}},
    )
    result = run(rules, order(("A", "g", 1, price), currency=currency))
    assert result.breakdown.restocking_fee_minor == fee
    assert result.amount_minor == price - fee


@pytest.mark.parametrize(
    ("currency", "per_unit", "minor"),
    [("JPY", "500", 500), ("EUR", "2.50", 250), ("BHD", "1.250", 1250), ("KWD", "0.005", 5)],
)
def test_fixed_fees_are_converted_with_the_currency_exponent_and_charged_per_unit(
    currency: str, per_unit: str, minor: int
) -> None:
    rules = policy(currency=currency, fees={"restocking": [{"per_unit": per_unit}]})
    result = run(rules, order(("A", "g", 3, 10_000), currency=currency), lines(("A", 2)))
    assert result.breakdown.restocking_fee_minor == 2 * minor
    assert result.amount_minor == 20_000 - 2 * minor


def test_the_first_matching_restocking_rule_wins_per_category_and_reason() -> None:
    rules = policy(
        fees={
            "restocking": [
                {"percent": 15, "categories": ["electronics"], "reasons": ["changed_mind"]},
                {"percent": 5},
            ]
        }
    )
    the_order = order(("TV", "electronics", 1, 10_000), ("TEE", "apparel", 1, 10_000))
    changed = run(rules, the_order, lines(("TV", 1), ("TEE", 1)))
    damaged = run(rules, the_order, lines(("TV", 1), reason=Reason.DAMAGED))
    assert [li.restocking_fee_minor for li in changed.breakdown.lines] == [1500, 500]
    assert damaged.breakdown.restocking_fee_minor == 500


def test_fees_larger_than_the_refund_clamp_to_zero_and_send_it_to_review() -> None:
    rules = policy(currency="EUR", fees={"restocking": [{"per_unit": "50.00"}]})
    result = run(rules, order(("A", "g", 1, 1000)))
    assert result.amount_minor == 0
    assert result.decision is D.PENDING_REVIEW
    assert "fees_exceed_refund: fees of 50.00 EUR exceed the 10.00 EUR refund; refunding 0" in (
        result.reasons
    )


def test_shipping_and_tax_are_refunded_only_for_the_reasons_the_policy_names() -> None:
    rules = policy(refund={"shipping_for": ["damaged"], "tax_for": "all"})
    the_order = order(("A", "g", 2, 1000), ("B", "g", 1, 2000), shipping=495, tax=800)
    damaged = run(rules, the_order, lines(("A", 1), reason=Reason.DAMAGED))
    changed = run(rules, the_order, lines(("A", 1)))
    assert (damaged.breakdown.shipping_minor, damaged.breakdown.tax_minor) == (495, 200)
    assert damaged.amount_minor == 1000 + 495 + 200
    assert (changed.breakdown.shipping_minor, changed.amount_minor) == (0, 1200)


def test_shipping_already_refunded_is_not_refunded_twice() -> None:
    rules = policy(refund={"shipping_for": "all"})
    the_order = OrderFacts(
        currency="EUR",
        lines=(OrderLineFacts("A", "g", 2, 1000),),
        purchased_at=DELIVERED,
        shipping_minor=500,
        refunded_shipping_minor=500,
        refunded_quantities={"A": 1},
        committed_minor=1500,
    )
    assert run(rules, the_order, lines(("A", 1))).amount_minor == 1000


def test_a_full_refund_with_shipping_and_tax_exactly_uses_the_budget() -> None:
    rules = policy(refund={"shipping_for": "all", "tax_for": "all"})
    the_order = order(("A", "g", 3, 333), shipping=100, tax=77)
    result = run(rules, the_order, lines(("A", 3)))
    assert result.amount_minor == the_order.paid_minor == 1176


def test_the_return_shipping_label_is_deducted_only_when_goods_come_back() -> None:
    base: dict[str, Any] = {
        "currency": "USD",
        "fees": {"return_shipping": [{"amount": "7.95", "reasons": ["changed_mind"]}]},
    }
    the_order = order(currency="USD")
    back = run(policy(**base, returns={"default": "return"}), the_order)
    kept = run(policy(**base, returns={"default": "instant"}), the_order)
    assert back.breakdown.return_shipping_minor == 795
    assert back.amount_minor == 5000 - 795
    assert kept.breakdown.return_shipping_minor == 0
    assert kept.amount_minor == 5000


def test_fixed_amounts_do_not_apply_to_an_order_in_another_currency() -> None:
    rules = policy(currency="EUR", fees={"restocking": [{"per_unit": "5.00"}]})
    result = run(rules, order(currency="USD"))
    assert result.breakdown.restocking_fee_minor == 0
    assert result.decision is D.PENDING_REVIEW
    assert "policy_currency_mismatch" in codes(result, Severity.SOFT)


# --- exclusions, condition, evidence ------------------------------------------------------

EXCLUDING = policy(
    exclusions={
        "non_refundable_categories": ["gift_card"],
        "non_refundable_skus": ["DL-1"],
        "final_sale_skus": ["SALE"],
    }
)


@pytest.mark.parametrize(
    ("sku", "category", "reason", "code"),
    [
        ("GC", "gift_card", Reason.DAMAGED, "non_refundable"),
        ("DL-1", "software", Reason.DEFECTIVE, "non_refundable"),
        ("SALE", "apparel", Reason.CHANGED_MIND, "final_sale"),
        ("SALE", "apparel", Reason.NOT_AS_DESCRIBED, "final_sale"),
        ("SALE", "apparel", Reason.DEFECTIVE, None),
        ("SALE", "apparel", Reason.WRONG_ITEM, None),
        ("OK", "apparel", Reason.CHANGED_MIND, None),
    ],
)
def test_non_refundable_and_final_sale_items_are_rejected(
    sku: str, category: str, reason: Reason, code: str | None
) -> None:
    result = run(EXCLUDING, order((sku, category, 1, 1000)), lines((sku, 1), reason=reason))
    if code is None:
        assert result.decision is D.APPROVED
    else:
        assert result.decision is D.REJECTED
        assert code in codes(result, Severity.HARD)
        assert result.amount_minor == 0


CONDITIONS = policy(
    requirements={
        "reasons": {
            "changed_mind": {"condition": "unopened", "evidence": ["receipt"]},
            "not_as_described": {"condition": "unused"},
            "damaged": {"evidence": ["photo"]},
        }
    }
)
RECEIPT = frozenset({Evidence.RECEIPT})


@pytest.mark.parametrize(
    ("reason", "condition", "evidence", "decision", "code"),
    [
        (Reason.CHANGED_MIND, "unopened", RECEIPT, D.APPROVED, None),
        (Reason.CHANGED_MIND, "Unopened ", RECEIPT, D.APPROVED, None),
        (Reason.CHANGED_MIND, "unused", RECEIPT, D.REJECTED, "condition_not_accepted"),
        (Reason.CHANGED_MIND, "used", RECEIPT, D.REJECTED, "condition_not_accepted"),
        (Reason.CHANGED_MIND, None, RECEIPT, D.PENDING_REVIEW, "condition_not_stated"),
        (Reason.CHANGED_MIND, "scratched", RECEIPT, D.PENDING_REVIEW, "condition_unknown"),
        (Reason.CHANGED_MIND, "unopened", frozenset(), D.PENDING_REVIEW, "missing_evidence"),
        (Reason.NOT_AS_DESCRIBED, "unused", frozenset(), D.APPROVED, None),
        (Reason.NOT_AS_DESCRIBED, "unopened", frozenset(), D.APPROVED, None),
        (Reason.NOT_AS_DESCRIBED, "damaged", frozenset(), D.REJECTED, "condition_not_accepted"),
        (Reason.DAMAGED, "damaged", frozenset(), D.PENDING_REVIEW, "missing_evidence"),
        (Reason.DAMAGED, None, frozenset({Evidence.PHOTO}), D.APPROVED, None),
    ],
)
def test_condition_and_evidence_are_checked_per_reason(
    reason: Reason,
    condition: str | None,
    evidence: frozenset[Evidence],
    decision: PolicyDecision,
    code: str | None,
) -> None:
    request = lines(("A", 1, condition), reason=reason, evidence=evidence)
    result = run(CONDITIONS, request=request)
    assert result.decision is decision, result.reasons
    if code:
        assert code in codes(result)


def test_missing_evidence_says_what_is_missing() -> None:
    result = run(CONDITIONS, request=lines(("A", 1, "unopened")))
    assert "missing_evidence: changed_mind requires receipt; missing receipt" in result.reasons


# --- instant or goods back first ----------------------------------------------------------

NORTHWIND = example_policy("northwind")
SAKURA = example_policy("sakura")
MAPLE = example_policy("maple")
NOW = datetime(2026, 9, 10, 12, 0, tzinfo=UTC)


def days_ago(*days: int) -> CustomerHistory:
    return CustomerHistory(tuple(NOW - timedelta(days=d) for d in days))


@pytest.mark.parametrize(
    ("price", "history", "decision"),
    [
        (4900, days_ago(), D.APPROVED),
        (9999, days_ago(10, 100), D.APPROVED),  # two refunds this year: still trusted
        (4900, days_ago(10, 100, 300), D.AWAITING_RETURN),  # three: goods back first
        (4900, days_ago(10, 100, 400), D.APPROVED),  # one is older than 365 days
        (10_000, days_ago(), D.AWAITING_RETURN),  # not a small amount
    ],
)
def test_northwind_refunds_small_amounts_at_once_for_customers_who_rarely_return(
    price: int, history: CustomerHistory, decision: PolicyDecision
) -> None:
    the_order = order(("NW-JKT-01", "apparel", 1, price))
    request = lines(("NW-JKT-01", 1, "unused"))
    result = run(NORTHWIND, the_order, request, history=history)
    assert result.decision is decision, result.reasons
    assert result.return_required is (decision is D.AWAITING_RETURN)


def test_a_refund_instant_at_northwind_awaits_the_return_at_sakura() -> None:
    north = run(
        NORTHWIND,
        order(("NW-BT-07", "footwear", 1, 3000)),
        lines(("NW-BT-07", 1, "unused")),
    )
    sakura = run(
        SAKURA,
        order(("SK-CBL-USB", "accessories", 1, 1980), currency="JPY"),
        lines(("SK-CBL-USB", 1, "unopened"), evidence=RECEIPT),
        tz=TOKYO,
    )
    assert north.decision is D.APPROVED
    assert north.amount_minor == 3000
    assert sakura.decision is D.AWAITING_RETURN
    assert sakura.return_by == date(2026, 9, 20)
    assert sakura.amount_minor == 1980 - 800  # the return label is deducted
    assert any(
        r.startswith("return_required: the goods must come back first") for r in (sakura.reasons)
    )


def test_sakura_charges_fifteen_percent_restocking_and_wants_electronics_unopened() -> None:
    the_order = order(("SK-HP-900", "electronics", 1, 32800), currency="JPY", tax=2980)
    ok = run(SAKURA, the_order, lines(("SK-HP-900", 1, "unopened"), evidence=RECEIPT), tz=TOKYO)
    used = run(SAKURA, the_order, lines(("SK-HP-900", 1, "used"), evidence=RECEIPT), tz=TOKYO)
    assert ok.breakdown.restocking_fee_minor == 4920
    assert ok.breakdown.tax_minor == 2980
    assert ok.amount_minor == 32800 + 2980 - 4920 - 800
    assert used.decision is D.REJECTED
    assert "condition_not_accepted" in codes(used)


def test_once_the_goods_are_back_the_refund_goes_on_to_approval() -> None:
    the_order = order(("SK-CBL-USB", "accessories", 1, 1980), currency="JPY")
    request = lines(("SK-CBL-USB", 1, "unopened"), evidence=RECEIPT, received=True)
    result = run(SAKURA, the_order, request, tz=TOKYO)
    assert result.decision is D.APPROVED
    assert not result.return_required
    assert result.amount_minor == 1980 - 800


def test_maple_restocks_furniture_and_counts_its_window_in_business_days() -> None:
    the_order = order(
        ("MH-LMP-AR", "furniture", 1, 17900),
        delivered_at=datetime(2026, 11, 20, 17, tzinfo=UTC),
        currency="USD",
    )
    request = lines(("MH-LMP-AR", 1, "unused"), evidence=RECEIPT, received=True)
    # 15 business days from Fri 20 Nov, skipping weekends and Thanksgiving: Mon 14 Dec.
    inside = run(
        MAPLE, the_order, request, now=datetime(2026, 12, 15, 4, 59, tzinfo=UTC), tz=NEW_YORK
    )
    outside = run(
        MAPLE, the_order, request, now=datetime(2026, 12, 15, 5, 0, tzinfo=UTC), tz=NEW_YORK
    )
    assert inside.breakdown.restocking_fee_minor == 2500
    assert inside.amount_minor == 17900 - 2500 - 795
    assert "outside_return_window" not in codes(inside)
    assert "window for furniture 15 business days ended 2026-12-14" in outside.reasons[0]


# --- refund method ------------------------------------------------------------------------


def test_store_credit_chosen_by_the_customer_earns_the_bonus_outside_the_budget() -> None:
    the_order = order(("NW-SCK-3P", "apparel", 1, 2900))
    request = lines(("NW-SCK-3P", 1), reason=Reason.DEFECTIVE, method=RefundMethod.STORE_CREDIT)
    result = run(NORTHWIND, the_order, request)
    assert result.refund_method is RefundMethod.STORE_CREDIT
    assert result.amount_minor == 2900
    assert result.breakdown.store_credit_bonus_minor == 290


def test_a_policy_that_refunds_to_the_original_method_says_so_when_asked_for_credit() -> None:
    result = run(default_policy(), request=lines(method=RefundMethod.STORE_CREDIT))
    assert result.refund_method is RefundMethod.ORIGINAL
    assert result.breakdown.store_credit_bonus_minor == 0
    assert "refund_method_fixed" in codes(result, Severity.INFO)
    assert result.decision is D.APPROVED


# --- authorization ------------------------------------------------------------------------

TIERS = policy(
    currency="EUR",
    authorization={
        "auto_approve_below": "100.00",
        "four_eyes_above": "1000.00",
        "role_limits": {"agent": "250.00", "supervisor": "2000.00", "finance": None},
    },
)


@pytest.mark.parametrize(
    ("amount", "approvals", "decision"),
    [
        (9_999, 0, D.APPROVED),
        (10_000, 1, D.PENDING_REVIEW),
        (100_000, 1, D.PENDING_REVIEW),
        (100_001, 2, D.PENDING_REVIEW),
    ],
)
def test_authorization_tiers_decide_how_many_approvers_a_refund_needs(
    amount: int, approvals: int, decision: PolicyDecision
) -> None:
    assert approvals_required(TIERS, amount) == approvals
    result = run(TIERS, order(("A", "g", 1, amount)))
    assert (result.approvals_required, result.decision) == (approvals, decision)
    if approvals:
        assert "approval_required" in codes(result, Severity.INFO)


@pytest.mark.parametrize(
    ("role", "amount", "allowed"),
    [
        ("agent", 25_000, True),
        ("agent", 25_001, False),
        ("supervisor", 200_000, True),
        ("supervisor", 200_001, False),
        ("finance", 10**12, True),
        ("intern", 1, False),
    ],
)
def test_each_role_may_approve_up_to_its_limit(role: str, amount: int, allowed: bool) -> None:
    assert role_may_approve(TIERS, role, amount) is allowed


def test_without_role_limits_any_role_may_approve() -> None:
    assert role_may_approve(default_policy(), "intern", 10**12)


@pytest.mark.parametrize(
    ("amount", "approvers", "needed"),
    [
        (100_001, ["ana"], True),
        (100_001, ["ana", "ana"], True),  # the same user twice is still one pair of eyes
        (100_001, ["ana", "ben"], False),
        (100_000, ["ana"], False),
    ],
)
def test_four_eyes_needs_two_different_approvers(
    amount: int, approvers: list[str], needed: bool
) -> None:
    assert needs_second_approver(TIERS, amount_minor=amount, approvers=approvers) is needed


def test_a_rejected_refund_needs_no_approval_and_no_return() -> None:
    result = run(SAKURA, order(("X", "software", 1, 200_000), currency="JPY"), tz=TOKYO)
    assert result.decision is D.REJECTED
    assert (result.approvals_required, result.return_required, result.return_by) == (0, False, None)
    assert not codes(result) & {"return_required", "instant_refund"}


# --- the invariants, for any policy and any request ---------------------------------------

CURRENCIES = {"EUR": 2, "JPY": 0, "BHD": 3, "USD": 2}
REASONS = st.sampled_from(list(Reason))


@st.composite
def amounts(draw: st.DrawFn, exponent: int) -> str:
    minor = draw(st.integers(0, 10**7))
    return str(Decimal(minor).scaleb(-exponent))


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    currency = draw(st.sampled_from(sorted(CURRENCIES)))
    exp = CURRENCIES[currency]
    reason_sets = st.one_of(st.just("all"), st.lists(REASONS, max_size=4))
    fee = st.one_of(
        st.fixed_dictionaries(
            {"percent": st.integers(0, 100)},
            optional={"reasons": st.lists(REASONS, max_size=3)},
        ),
        st.fixed_dictionaries(
            {"per_unit": amounts(exp)},
            optional={"categories": st.lists(st.sampled_from(["a", "b"]), max_size=2)},
        ),
    )
    auto = draw(st.integers(0, 10**6))
    return {
        "currency": currency,
        "window": {
            "days": draw(st.integers(0, 60)),
            "counting": draw(st.sampled_from(["calendar", "business"])),
            "outside": draw(st.sampled_from(["hard", "soft"])),
        },
        "returns": {
            "default": draw(st.sampled_from(["instant", "return"])),
            "rules": draw(
                st.lists(
                    st.fixed_dictionaries(
                        {"then": st.sampled_from(["instant", "return"])},
                        optional={
                            "amount_below": amounts(exp),
                            "prior_refunds_below": st.integers(1, 5),
                        },
                    ),
                    max_size=2,
                )
            ),
        },
        "fees": {
            "restocking": draw(st.lists(fee, max_size=3)),
            "return_shipping": draw(
                st.lists(st.fixed_dictionaries({"amount": amounts(exp)}), max_size=2)
            ),
        },
        "refund": {
            "shipping_for": draw(reason_sets),
            "tax_for": draw(reason_sets),
            "rounding": {"default": draw(st.sampled_from(["half_even", "up", "ceiling"]))},
            "method": draw(st.sampled_from(["original", "store_credit", "customer_choice"])),
            "store_credit_bonus_percent": draw(st.integers(0, 100)),
        },
        "authorization": {
            "auto_approve_below": str(Decimal(auto).scaleb(-exp)),
            "four_eyes_above": str(Decimal(auto + draw(st.integers(0, 10**6))).scaleb(-exp)),
        },
    }


@st.composite
def cases(draw: st.DrawFn) -> tuple[Policy, OrderFacts, RequestFacts]:
    doc = draw(documents())
    rules = policy_from_data(doc)
    skus = ["A", "B", "C"][: draw(st.integers(1, 3))]
    order_lines = tuple(
        OrderLineFacts(
            sku,
            draw(st.sampled_from(["a", "b"])),
            draw(st.integers(1, 5)),
            draw(st.integers(0, 10**6)),
        )
        for sku in skus
    )
    refunded = {line.sku: draw(st.integers(0, line.quantity + 1)) for line in order_lines}
    shipping, tax = draw(st.integers(0, 10**4)), draw(st.integers(0, 10**5))
    paid = sum(li.quantity * li.unit_price_minor for li in order_lines) + shipping + tax
    the_order = OrderFacts(
        currency=doc["currency"] if draw(st.booleans()) else "EUR",
        lines=order_lines,
        purchased_at=datetime(2026, 8, 1, tzinfo=UTC),
        delivered_at=draw(st.none() | st.just(DELIVERED)),
        shipping_minor=shipping,
        tax_minor=tax,
        refunded_quantities=refunded,
        committed_minor=draw(st.integers(0, paid + 10)),
        refunded_shipping_minor=draw(st.integers(0, shipping)),
    )
    if draw(st.booleans()):
        request = RequestFacts(
            reason=draw(REASONS), amount_minor=draw(st.integers(-10, 2 * paid + 10))
        )
    else:
        request = RequestFacts(
            reason=draw(REASONS),
            lines=tuple(
                RequestLine(
                    draw(st.sampled_from([*skus, "ZZ"])),
                    draw(st.integers(-1, 7)),
                    draw(st.none() | REASONS),
                    draw(st.none() | st.sampled_from(["unopened", "used", "odd"])),
                )
                for _ in range(draw(st.integers(1, 4)))
            ),
            refund_method=draw(st.none() | st.sampled_from(list(RefundMethod))),
            return_received=draw(st.booleans()),
        )
    return rules, the_order, request


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), st.integers(0, 120))
def test_no_policy_and_request_ever_refund_a_negative_amount_or_more_than_is_left(
    case: tuple[Policy, OrderFacts, RequestFacts], days: int
) -> None:
    rules, the_order, request = case
    result = evaluate(
        rules,
        order=the_order,
        request=request,
        history=CustomerHistory(),
        now=DELIVERED + timedelta(days=days),
        tz=BERLIN,
    )
    assert 0 <= result.amount_minor <= the_order.remaining_minor
    assert result.breakdown.store_credit_bonus_minor >= 0
    hard = any(f.severity is Severity.HARD for f in result.findings)
    assert (result.decision is D.REJECTED) is hard
    assert result.approvals_required in (0, 1, 2)


def test_evaluate_refuses_a_naive_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        run(default_policy(), now=datetime(2026, 9, 10))
