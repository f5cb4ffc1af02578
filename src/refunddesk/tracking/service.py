"""The customer's view of a refund: a plain-language timeline and an honest expected date."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from refunddesk.core.errors import NotFound
from refunddesk.core.ids import normalize_reference
from refunddesk.core.money import Money
from refunddesk.orders.orm import Order
from refunddesk.payouts.orm import Payout
from refunddesk.payouts.settle import ARRIVAL_DAYS
from refunddesk.policy.calendar import add_business_days
from refunddesk.refunds.domain import EventType, RefundStatus
from refunddesk.refunds.orm import Refund, RefundEvent
from refunddesk.tenants.orm import Tenant

__all__ = ["ARRIVAL_DAYS", "STATUS_LABELS", "Tracking", "add_business_days", "track"]

METHOD_WORDS = {
    "card": "card",
    "wallet": "wallet",
    "bank_transfer": "bank account",
    "store_credit": "store credit balance",
}
REVIEW_DAYS = 2  # business days the desk takes to review a refund by hand
# A payout in these states carries the gateway's arrival window and, maybe, an ARN.
ANSWERED = frozenset({"pending", "succeeded"})

STATUS_LABELS = {
    "requested": "Received",
    "pending_review": "In review",
    "awaiting_return": "Waiting for your return",
    "return_received": "Return received",
    "approved": "Approved",
    "rejected": "Declined",
    "processing": "Being paid",
    "succeeded": "Paid",
    "failed": "Payment problem",
    "canceled": "Canceled",
}


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    at: datetime
    status: str
    text: str


@dataclass(frozen=True, slots=True)
class Tracking:
    reference: str
    retailer: str
    status: str
    status_label: str
    amount: str
    amount_minor: int
    currency: str
    expected_by: date | None
    expected_text: str
    timeline: list[TimelineEntry]
    method: str = ""
    expected_from: date | None = None  # the window's first day, when a payout gave one
    arn: str | None = None  # the acquirer reference number the customer's bank can trace


def _paying(refund: Refund, payout: Payout | None, method: str) -> Payout | None:
    """The payout now paying this refund, once the gateway has accepted or paid it."""
    if payout is None or payout.method != method or payout.status not in ANSWERED:
        return None
    if refund.state not in (RefundStatus.SUCCEEDED, RefundStatus.PROCESSING):
        return None
    return payout


def expected(
    refund: Refund,
    method: str,
    now: datetime,
    tz: ZoneInfo,
    paid_at: datetime | None,
    window: tuple[date, date] | None = None,
) -> tuple[date | None, str]:
    """When the money should be on the customer's account, and that in words.

    The gateway's arrival window when the payout has one; a per-method estimate otherwise.
    """
    low, high = ARRIVAL_DAYS.get(method, (5, 10))
    words = METHOD_WORDS.get(method, "original payment method")
    today = now.astimezone(tz).date()
    status = refund.state
    paid_by = None if window is None else window[1]
    if paid_by is None and paid_at is not None:
        paid_by = add_business_days(paid_at.astimezone(tz).date(), high)
    if status is RefundStatus.SUCCEEDED and paid_by is not None:
        by = paid_by
        if high == 0:
            return by, f"Available now as {words}."
        return by, (
            f"Sent to your {words}; banks take {low} to {high} business days, "
            f"so expect it by {by:%d %B %Y}."
        )
    if status is RefundStatus.PROCESSING and window is not None:
        by = window[1]
        return by, f"Approved and being paid to your {words}: expect it by {by:%d %B %Y}."
    if status in (RefundStatus.APPROVED, RefundStatus.PROCESSING):
        by = add_business_days(today, high + 1)
        return by, f"Approved and being paid to your {words}: expect it by {by:%d %B %Y}."
    if status in (
        RefundStatus.REQUESTED,
        RefundStatus.PENDING_REVIEW,
        RefundStatus.RETURN_RECEIVED,
    ):
        by = add_business_days(today, REVIEW_DAYS + high + 1)
        return by, (
            f"Our team decides within {REVIEW_DAYS} business days; if approved, "
            f"expect the money by {by:%d %B %Y}."
        )
    if status is RefundStatus.AWAITING_RETURN:
        return None, "We pay the refund once your return reaches us."
    if status is RefundStatus.FAILED:
        return None, "We could not pay your refund yet; our team is on it and will contact you."
    return None, "No payment is due."


def _text(event: RefundEvent, money: Money, method: str, original: str) -> str | None:
    words = METHOD_WORDS.get(method, "original payment method")
    if event.type == EventType.REQUESTED:
        return f"We received your refund request for {money}."
    if event.type == EventType.PAYOUT_HELD:
        return (
            "Your payment is disputed with your bank. We pay the refund once the dispute is "
            "resolved, so that you are not paid twice."
        )
    if event.type == "refund.delayed":
        return "Your refund is taking longer than we said. We are on it and keep you posted."
    if event.type != EventType.STATUS_CHANGED:
        return _return_text(event)
    data = event.data or {}
    reason = data.get("reason")
    if event.to_status == "failed" and data.get("failure_reason") == "reversed":
        return "Your bank sent the refund back to us. We will contact you about another way."
    if event.to_status == "failed" and method != original:
        return f"We could not pay the refund to your {words}. We will contact you."
    return {
        "pending_review": "Your request is with our team for review.",
        "awaiting_return": "Please send the items back; we refund once they arrive.",
        "return_received": "Your return arrived.",
        "approved": f"Your refund of {money} was approved.",
        "rejected": f"Your refund was declined{': ' + reason if reason else ''}.",
        "processing": f"We are sending {money} to your {words}.",
        "succeeded": f"Your refund of {money} was paid to your {words}.",
        "failed": "We could not pay the refund to your original payment method. "
        "We will contact you about another way.",
        "canceled": "The refund was canceled.",
    }.get(event.to_status)


def _return_text(event: RefundEvent) -> str | None:
    """The customer's words for the return of goods (receipt and outcome show as status)."""
    data = event.data or {}
    if event.type == "return.in_transit":
        return (
            f"Your return is on its way with {data.get('carrier')} ({data.get('tracking_number')})."
        )
    if event.type == "return.lost_in_transit":
        return "The carrier reports your return as lost; our team will contact you."
    if event.type == "return.expired":
        return "The time to send the items back has passed."
    if event.type == "refund.amount_adjusted" and isinstance(data.get("to_minor"), int):
        amount = Money(data["to_minor"], str(data.get("currency")))
        return f"After checking your return, your refund is {amount}."
    return None


def track(session: Session, *, reference: str, email: str, now: datetime) -> Tracking:
    """The refund with this reference, if email is its order's; the same NotFound otherwise."""
    row = session.execute(
        select(Refund, Order.customer_email, Order.payment_method, Tenant.name, Tenant.timezone)
        .join(Order, (Order.tenant_id == Refund.tenant_id) & (Order.id == Refund.order_id))
        .join(Tenant, Tenant.id == Refund.tenant_id)
        .where(Refund.reference == normalize_reference(reference))
    ).first()
    stored = row[1] if row else "no-such-refund@invalid"
    # Compare in constant time, and compare even when there is no refund, so timing tells nothing.
    same = hmac.compare_digest(
        stored.strip().casefold().encode(), email.strip().casefold().encode()
    )
    if row is None or not same:
        raise NotFound("no refund matches this reference and email")
    refund, _, original, retailer, tz_name = row
    tz = ZoneInfo(tz_name)
    events = list(
        session.scalars(
            select(RefundEvent)
            .where(RefundEvent.tenant_id == refund.tenant_id, RefundEvent.refund_id == refund.id)
            .order_by(RefundEvent.seq)
        )
    )
    payout = session.scalars(
        select(Payout)
        .where(Payout.tenant_id == refund.tenant_id, Payout.refund_id == refund.id)
        .order_by(Payout.attempt.desc())
        .limit(1)
    ).first()
    money = Money(refund.amount_minor, refund.currency)
    # The method as it stood at each event: a fallback or a payout attempt changes it.
    method = "store_credit" if refund.refund_method == "store_credit" else original
    timeline = []
    for e in events:
        method = _method_after(e, method, original)
        if (text := _text(e, money, method, original)) is not None:
            timeline.append(TimelineEntry(e.at, e.to_status, text))
    paid_at = next(
        (
            e.at
            for e in reversed(events)
            if e.to_status == "succeeded" and e.type == EventType.STATUS_CHANGED
        ),
        None,
    )
    paying = _paying(refund, payout, method)
    window = None
    if paying is not None and paying.arrival_earliest and paying.arrival_latest:
        window = (paying.arrival_earliest, paying.arrival_latest)
    by, words = expected(refund, method, now, tz, paid_at, window)
    return Tracking(
        reference=refund.reference,
        retailer=retailer,
        status=refund.status,
        status_label=STATUS_LABELS[refund.status],
        amount=money.format(),
        amount_minor=refund.amount_minor,
        currency=refund.currency,
        expected_by=by,
        expected_text=words,
        timeline=timeline,
        method=method,
        expected_from=None if window is None else window[0],
        arn=None if paying is None else paying.arn,
    )


def _method_after(event: RefundEvent, method: str, original: str) -> str:
    """The payout method once this event happened."""
    if event.type not in (EventType.PAYOUT_FALLBACK, EventType.PAYOUT_SENT):
        return method
    chosen = (event.data or {}).get("method")
    if not isinstance(chosen, str) or not chosen:
        return method
    return original if chosen == "original" else chosen
