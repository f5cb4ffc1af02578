"""The refund state machine: every pair of states, allowed exactly when the issue says so."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from refunddesk.core.errors import IllegalTransition
from refunddesk.refunds.domain import TERMINAL, RefundStatus, check_transition
from refunddesk.refunds.orm import Refund

S = RefundStatus
AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

# Written out from the issue, independently of refunds/domain.py's TRANSITIONS.
_BEFORE_PROCESSING = {
    "requested",
    "pending_review",
    "awaiting_return",
    "return_received",
    "approved",
}
EXPECTED: dict[str, set[str]] = {
    "requested": {"pending_review", "approved", "rejected", "awaiting_return"},
    "awaiting_return": {"return_received"},
    "return_received": {"approved", "rejected", "pending_review"},
    "pending_review": {"approved", "rejected"},
    "approved": {"processing"},
    "processing": {"succeeded", "failed"},
    "failed": {"processing", "canceled"},
    "succeeded": {"failed"},  # reversed by the gateway
    "rejected": set(),
    "canceled": set(),
}
for _state in _BEFORE_PROCESSING:
    EXPECTED[_state].add("canceled")

ALL_PAIRS = list(itertools.product(list(S), repeat=2))
LEGAL = [(a, b) for a, b in ALL_PAIRS if str(b) in EXPECTED[str(a)]]
ILLEGAL = [(a, b) for a, b in ALL_PAIRS if str(b) not in EXPECTED[str(a)]]


def _refund(status: RefundStatus) -> Refund:
    """A Refund aggregate held in memory only: no session, no database."""
    return Refund(
        tenant_id="T" * 26,
        id="R" * 26,
        order_id="O" * 26,
        reference="RF-00000000",
        status=str(status),
        reason="damaged",
        channel="api",
        amount_minor=100,
        currency="EUR",
        created_at=AT,
        updated_at=AT,
        event_count=0,
    )


def test_the_expected_table_names_every_state() -> None:
    assert set(EXPECTED) == {str(s) for s in S}
    assert len(ALL_PAIRS) == len(LEGAL) + len(ILLEGAL) == 100


@pytest.mark.parametrize(("current", "target"), LEGAL, ids=lambda s: str(s))
def test_a_move_in_the_table_changes_the_status_and_records_one_event(
    current: RefundStatus, target: RefundStatus
) -> None:
    # given a refund in current
    refund = _refund(current)
    # when it moves to target
    event = refund.transition(target, actor="agent:ada", at=AT, data={"why": "test"})
    # then its status is target and exactly one status_changed event records the move
    assert refund.status == str(target)
    assert refund.event_count == 1
    assert refund.pending_events == [event]
    assert (event.type, event.from_status, event.to_status, event.seq) == (
        "refund.status_changed",
        str(current),
        str(target),
        1,
    )
    assert event.actor == "agent:ada"
    assert event.data == {"why": "test"}


@pytest.mark.parametrize(("current", "target"), ILLEGAL, ids=lambda s: str(s))
def test_a_move_not_in_the_table_raises_409_and_leaves_the_refund_untouched(
    current: RefundStatus, target: RefundStatus
) -> None:
    # given a refund in current
    refund = _refund(current)
    # when it is asked to move to a target the table does not allow
    with pytest.raises(IllegalTransition) as caught:
        refund.transition(target, actor="agent:ada", at=AT)
    # then it is a 409 conflict and neither the status nor the history changed
    assert caught.value.status == 409
    assert caught.value.code == "illegal_transition"
    assert caught.value.extra == {"current": str(current), "target": str(target)}
    assert refund.status == str(current)
    assert refund.event_count == 0
    assert refund.pending_events == []


def test_the_final_states_are_succeeded_rejected_and_canceled() -> None:
    assert {str(s) for s in TERMINAL} == {"succeeded", "rejected", "canceled"}


def test_an_illegal_move_explains_which_moves_are_allowed() -> None:
    with pytest.raises(IllegalTransition, match="allowed from rejected: none"):
        check_transition(S.REJECTED, S.APPROVED)
    with pytest.raises(IllegalTransition, match="allowed from succeeded: failed"):
        check_transition(S.SUCCEEDED, S.PROCESSING)
    with pytest.raises(IllegalTransition, match="allowed from approved: canceled, processing"):
        check_transition(S.APPROVED, S.SUCCEEDED)


def test_events_recorded_one_after_another_number_1_to_n() -> None:
    refund = _refund(S.REQUESTED)
    refund.record("refund.requested", actor="api", at=AT)
    for target in (S.APPROVED, S.PROCESSING, S.FAILED, S.PROCESSING, S.SUCCEEDED):
        refund.transition(target, actor="system", at=AT)
    assert [e.seq for e in refund.pending_events] == [1, 2, 3, 4, 5, 6]
    assert refund.event_count == 6
