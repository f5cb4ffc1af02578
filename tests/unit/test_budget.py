"""The refund budget and the built-in intake decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from refunddesk.core.errors import OverBudget
from refunddesk.refunds.domain import RefundStatus, check_budget, decide

PAID = 3290
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def test_a_refund_that_exactly_uses_up_the_budget_is_allowed() -> None:
    check_budget(paid_minor=PAID, committed_minor=290, requested_minor=3000)


def test_a_refund_one_minor_unit_over_the_budget_is_refused_with_what_is_left() -> None:
    with pytest.raises(OverBudget) as caught:
        check_budget(paid_minor=PAID, committed_minor=290, requested_minor=3001)
    assert caught.value.status == 422
    assert caught.value.code == "over_refund_budget"
    assert caught.value.field == "amount_minor"
    assert caught.value.extra == {"remaining_minor": 3000}


@pytest.mark.parametrize("requested", [0, -1, -PAID])
def test_a_zero_or_negative_refund_is_refused(requested: int) -> None:
    with pytest.raises(OverBudget, match="must be positive"):
        check_budget(paid_minor=PAID, committed_minor=0, requested_minor=requested)


def test_a_fully_refunded_order_refuses_even_one_minor_unit() -> None:
    with pytest.raises(OverBudget) as caught:
        check_budget(paid_minor=PAID, committed_minor=PAID, requested_minor=1)
    assert caught.value.extra == {"remaining_minor": 0}


def test_what_is_left_is_never_reported_as_negative() -> None:
    with pytest.raises(OverBudget) as caught:
        check_budget(paid_minor=PAID, committed_minor=PAID + 10, requested_minor=1)
    assert caught.value.extra == {"remaining_minor": 0}


def test_a_refund_exactly_at_the_end_of_the_window_is_approved() -> None:
    delivered = NOW - timedelta(days=30)
    decision = decide(now=NOW, purchased_at=delivered, delivered_at=delivered, window_days=30)
    assert decision.status is RefundStatus.APPROVED
    assert decision.reasons == ("within_return_window",)


def test_a_refund_one_second_after_the_window_goes_to_review_with_the_reason() -> None:
    delivered = NOW - timedelta(days=30, seconds=1)
    decision = decide(
        now=NOW, purchased_at=delivered - timedelta(days=2), delivered_at=delivered, window_days=30
    )
    assert decision.status is RefundStatus.PENDING_REVIEW
    assert decision.reasons == (
        "outside_return_window: delivered 2026-10-21, window 30 days ended 2026-11-20",
    )


def test_the_window_runs_from_delivery_when_the_order_was_delivered() -> None:
    # purchased long ago, delivered recently: delivery counts
    decision = decide(
        now=NOW,
        purchased_at=NOW - timedelta(days=90),
        delivered_at=NOW - timedelta(days=5),
        window_days=30,
    )
    assert decision.status is RefundStatus.APPROVED


def test_the_window_runs_from_purchase_when_there_is_no_delivery_date() -> None:
    decision = decide(
        now=NOW, purchased_at=NOW - timedelta(days=31), delivered_at=None, window_days=30
    )
    assert decision.status is RefundStatus.PENDING_REVIEW
    assert decision.reasons[0].startswith("outside_return_window: purchased 2026-10-20")


def test_a_zero_day_window_sends_everything_after_the_moment_of_delivery_to_review() -> None:
    assert decide(now=NOW, purchased_at=NOW, delivered_at=NOW, window_days=0).status is (
        RefundStatus.APPROVED
    )
    later = NOW + timedelta(microseconds=1)
    assert decide(now=later, purchased_at=NOW, delivered_at=NOW, window_days=0).status is (
        RefundStatus.PENDING_REVIEW
    )


@given(
    paid=st.integers(min_value=0, max_value=10**13),
    requests=st.lists(st.integers(min_value=-(10**6), max_value=10**13), max_size=40),
)
def test_accepting_only_what_check_budget_allows_never_refunds_more_than_was_paid(
    paid: int, requests: list[int]
) -> None:
    accepted: list[int] = []
    for requested in requests:
        try:
            check_budget(paid_minor=paid, committed_minor=sum(accepted), requested_minor=requested)
        except OverBudget:
            continue
        accepted.append(requested)
    assert sum(accepted) <= paid
    assert all(amount > 0 for amount in accepted)


@given(parts=st.lists(st.integers(min_value=1, max_value=10**9), min_size=1, max_size=20))
def test_requests_that_add_up_to_what_was_paid_are_all_accepted(parts: list[int]) -> None:
    committed = 0
    for part in parts:
        check_budget(paid_minor=sum(parts), committed_minor=committed, requested_minor=part)
        committed += part
    assert committed == sum(parts)
