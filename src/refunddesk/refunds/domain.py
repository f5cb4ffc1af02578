"""The refund's states, the one transitions table, and the pure rules around them.

Read this file to see every state a refund can be in and how it gets there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from refunddesk.core.errors import IllegalTransition, OverBudget


class RefundStatus(StrEnum):
    REQUESTED = "requested"
    PENDING_REVIEW = "pending_review"
    AWAITING_RETURN = "awaiting_return"
    RETURN_RECEIVED = "return_received"
    APPROVED = "approved"
    REJECTED = "rejected"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


S = RefundStatus

# Cancel is allowed from every state before the money starts to move.
_CANCELABLE = (S.REQUESTED, S.PENDING_REVIEW, S.AWAITING_RETURN, S.RETURN_RECEIVED, S.APPROVED)

_MOVES: dict[RefundStatus, frozenset[RefundStatus]] = {
    S.REQUESTED: frozenset({S.PENDING_REVIEW, S.APPROVED, S.REJECTED, S.AWAITING_RETURN}),
    S.AWAITING_RETURN: frozenset({S.RETURN_RECEIVED}),
    S.RETURN_RECEIVED: frozenset({S.APPROVED, S.REJECTED, S.PENDING_REVIEW}),
    S.PENDING_REVIEW: frozenset({S.APPROVED, S.REJECTED}),
    S.APPROVED: frozenset({S.PROCESSING}),
    S.PROCESSING: frozenset({S.SUCCEEDED, S.FAILED}),
    S.FAILED: frozenset({S.PROCESSING, S.CANCELED}),
    # Only the gateway moves a paid refund: it reversed the payout, so the money is back.
    S.SUCCEEDED: frozenset({S.FAILED}),
    S.REJECTED: frozenset(),
    S.CANCELED: frozenset(),
}
# The transitions table: the only place that says which moves are legal.
TRANSITIONS: Mapping[RefundStatus, frozenset[RefundStatus]] = {
    state: targets | ({S.CANCELED} if state in _CANCELABLE else frozenset())
    for state, targets in _MOVES.items()
}

# Done as far as the desk is concerned; a gateway may still reverse a succeeded payout.
TERMINAL: frozenset[RefundStatus] = frozenset({S.SUCCEEDED, S.REJECTED, S.CANCELED})
# Refunds in these states no longer hold any of the order's refund budget.
RELEASES_BUDGET: frozenset[RefundStatus] = frozenset({S.REJECTED, S.CANCELED, S.FAILED})
OPEN: frozenset[RefundStatus] = frozenset(TRANSITIONS) - TERMINAL


def check_transition(current: RefundStatus, target: RefundStatus) -> None:
    """Raise IllegalTransition unless the table allows current -> target."""
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none (final state)"
        raise IllegalTransition(
            f"a refund cannot go from {current} to {target}; allowed from {current}: {allowed}",
            current=str(current),
            target=str(target),
        )


class Reason(StrEnum):
    DAMAGED = "damaged"
    DEFECTIVE = "defective"
    WRONG_ITEM = "wrong_item"
    NOT_AS_DESCRIBED = "not_as_described"
    NOT_RECEIVED = "not_received"
    LATE_DELIVERY = "late_delivery"
    CHANGED_MIND = "changed_mind"
    DUPLICATE_CHARGE = "duplicate_charge"
    PRICE_ADJUSTMENT = "price_adjustment"
    OTHER = "other"


class Channel(StrEnum):
    API = "api"
    AGENT = "agent"
    PORTAL = "portal"
    IMPORT = "import"


class EventType(StrEnum):
    REQUESTED = "refund.requested"
    STATUS_CHANGED = "refund.status_changed"
    PAYOUT_SENT = "payout.sent"
    PAYOUT_SUCCEEDED = "payout.succeeded"
    PAYOUT_FAILED = "payout.failed"
    PAYOUT_PENDING = "payout.pending"
    PAYOUT_REVERSED = "payout.reversed"
    PAYOUT_FALLBACK = "payout.fallback_chosen"
    PAYOUT_ATTENTION = "payout.needs_attention"
    PAYOUT_HELD = "payout.held"  # the payment is disputed: paying now could pay twice
    NOTE = "refund.note"
    APPROVAL_RECORDED = "refund.approval_recorded"
    # Internal to the desk and the retailer: never on the customer's timeline.
    ESCALATED = "escalation.opened"
    ESCALATION_RAISED = "escalation.raised"
    ESCALATION_ASSIGNED = "escalation.assigned"
    ESCALATION_RESOLVED = "escalation.resolved"
    FRAUD_LABELLED = "fraud.labelled"  # an agent or a chargeback said fraud or legit


def remaining_budget(paid_minor: int, committed_minor: int) -> int:
    """What may still be refunded on an order: paid minus refunds that hold budget."""
    return paid_minor - committed_minor


def check_budget(*, paid_minor: int, committed_minor: int, requested_minor: int) -> None:
    """Raise OverBudget when a refund of requested_minor would exceed what was paid."""
    if requested_minor <= 0:
        raise OverBudget("a refund amount must be positive", field="amount_minor")
    left = remaining_budget(paid_minor, committed_minor)
    if requested_minor > left:
        raise OverBudget(
            f"requested {requested_minor} but only {max(left, 0)} of {paid_minor} "
            "is left to refund on this order",
            field="amount_minor",
            remaining_minor=max(left, 0),
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """The built-in intake decision: where a new refund goes and why."""

    status: RefundStatus
    reasons: tuple[str, ...]


def decide(
    *, now: datetime, purchased_at: datetime, delivered_at: datetime | None, window_days: int
) -> Decision:
    """Auto-approve within the return window (from delivery, else purchase); else review.

    The foundation's built-in rule, kept as the reference that the default policy
    (policy.document.default_policy) is tested against; intake decides with policies.
    """
    start = delivered_at or purchased_at
    ends = start + timedelta(days=window_days)
    if now <= ends:
        return Decision(S.APPROVED, ("within_return_window",))
    basis = "delivered" if delivered_at else "purchased"
    return Decision(
        S.PENDING_REVIEW,
        (
            f"outside_return_window: {basis} {start.date()}, window {window_days} days "
            f"ended {ends.date()}",
        ),
    )
