"""Apply a gateway's answer to a payout and its refund: the one place that does it.

Answers come from four places: the gateway's reply to the payout call, a lookup after a
crash, the sync job's poll, and webhooks (or a bank's status file). They may come twice
and in any order, so every move here only goes forward: sent -> pending -> succeeded |
failed, succeeded -> reversed. Anything else is a duplicate and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from refunddesk.core.clock import Clock
from refunddesk.db.uow import Database
from refunddesk.payouts.gateways.base import (
    FAILURE_HELP,
    FailureReason,
    GatewayNotification,
    NotificationKind,
    PayoutOutcome,
    PayoutResult,
)
from refunddesk.payouts.orm import Payout
from refunddesk.policy.calendar import add_business_days
from refunddesk.refunds.domain import EventType, RefundStatus
from refunddesk.refunds.orm import Refund
from refunddesk.tenants.orm import Tenant

# Business days from payout to money on the customer's account, by payout method.
ARRIVAL_DAYS: dict[str, tuple[int, int]] = {
    "card": (5, 10),
    "wallet": (1, 3),
    "bank_transfer": (1, 2),  # after the bank file is sent
    "store_credit": (0, 0),
}
UNSETTLED = frozenset({"sent", "pending"})


class Applied(StrEnum):
    CHANGED = "changed"
    DUPLICATE = "duplicate"  # nothing new: seen before, or older than what we know
    UNKNOWN = "unknown"  # no payout of this tenant matches


def arrival_window(method: str, paid_at: datetime, tz: ZoneInfo) -> tuple[date, date]:
    low, high = ARRIVAL_DAYS.get(method, (5, 10))
    day = paid_at.astimezone(tz).date()
    return add_business_days(day, low), add_business_days(day, high)


def failure_data(reason: FailureReason, message: str | None) -> dict[str, Any]:
    return {
        "failure_reason": str(reason),
        "failure_message": message,
        "next_action": FAILURE_HELP[reason],
    }


def apply_result(
    refund: Refund,
    payout: Payout,
    result: PayoutResult,
    *,
    now: datetime,
    actor: str,
    tz: ZoneInfo,
) -> Applied:
    """Move the payout (and its refund) forward by this answer, if it is news."""
    if result.gateway_reference and not payout.gateway_reference:
        payout.gateway_reference = result.gateway_reference
    if result.outcome is PayoutOutcome.SUCCEEDED:
        return _succeeded(refund, payout, result, now=now, actor=actor, tz=tz)
    if result.outcome is PayoutOutcome.PENDING:
        if payout.status != "sent":
            return Applied.DUPLICATE
        payout.status = "pending"
        payout.updated_at = now
        if payout.arrival_earliest is None:
            payout.arrival_earliest, payout.arrival_latest = arrival_window(payout.method, now, tz)
        refund.record(
            EventType.PAYOUT_PENDING,
            actor=actor,
            at=now,
            data={"gateway": payout.gateway, "gateway_reference": payout.gateway_reference},
        )
        return Applied.CHANGED
    reason = result.failure_reason or FailureReason.UNKNOWN
    if payout.status == "succeeded":
        return _reversed(refund, payout, result.failure_message, now=now, actor=actor)
    if payout.status not in UNSETTLED:
        return Applied.DUPLICATE
    payout.status = "failed"
    payout.failure_reason = str(reason)
    payout.failure_message = result.failure_message
    payout.updated_at = now
    data = failure_data(reason, result.failure_message)
    refund.record(EventType.PAYOUT_FAILED, actor=actor, at=now, data=data)
    if refund.state is RefundStatus.PROCESSING:
        refund.transition(RefundStatus.FAILED, actor=actor, at=now, data=data)
    return Applied.CHANGED


def _succeeded(
    refund: Refund,
    payout: Payout,
    result: PayoutResult,
    *,
    now: datetime,
    actor: str,
    tz: ZoneInfo,
) -> Applied:
    if payout.status == "succeeded":
        if result.arn and result.arn != payout.arn:  # ARNs often come days after the money
            payout.arn = result.arn
            payout.updated_at = now
            refund.record(EventType.PAYOUT_SUCCEEDED, actor=actor, at=now, data={"arn": result.arn})
            return Applied.CHANGED
        return Applied.DUPLICATE
    if payout.status not in UNSETTLED:
        return Applied.DUPLICATE
    payout.status = "succeeded"
    payout.arn = result.arn or payout.arn
    payout.updated_at = now
    if payout.arrival_earliest is None or payout.method != "bank_transfer":
        payout.arrival_earliest, payout.arrival_latest = arrival_window(payout.method, now, tz)
    data: dict[str, Any] = {
        "gateway": payout.gateway,
        "gateway_reference": payout.gateway_reference,
        "method": payout.method,
        "arrival_latest": payout.arrival_latest.isoformat() if payout.arrival_latest else None,
    }
    if payout.arn:
        data["arn"] = payout.arn
    refund.record(EventType.PAYOUT_SUCCEEDED, actor=actor, at=now, data=data)
    if refund.state is RefundStatus.FAILED:
        # Failed by the desk when the gateway stayed silent; the gateway paid after all.
        refund.transition(RefundStatus.PROCESSING, actor=actor, at=now, data={"late_answer": True})
    if refund.state is RefundStatus.PROCESSING:
        refund.transition(RefundStatus.SUCCEEDED, actor=actor, at=now)
    else:
        # Paid although the refund moved on (canceled, or failed and paid another way):
        # the customer may have the money twice. A person must look.
        refund.record(
            EventType.PAYOUT_ATTENTION,
            actor=actor,
            at=now,
            data={
                "problem": "paid_after_refund_moved_on",
                "refund_status": refund.status,
                "payout_id": payout.id,
            },
        )
    return Applied.CHANGED


def _reversed(
    refund: Refund, payout: Payout, message: str | None, *, now: datetime, actor: str
) -> Applied:
    if payout.status != "succeeded":
        return Applied.DUPLICATE
    payout.status = "reversed"
    payout.failure_reason = str(FailureReason.REVERSED)
    payout.failure_message = message
    payout.updated_at = now
    data = failure_data(FailureReason.REVERSED, message)
    refund.record(EventType.PAYOUT_REVERSED, actor=actor, at=now, data=data)
    if refund.state is RefundStatus.SUCCEEDED:
        refund.transition(RefundStatus.FAILED, actor=actor, at=now, data=data)
    return Applied.CHANGED


def result_of(notification: GatewayNotification) -> PayoutResult | None:
    """The notification as a payout answer; None for the kinds the desk does not act on."""
    kind = notification.kind
    if kind is NotificationKind.SUCCEEDED:
        return PayoutResult(
            PayoutOutcome.SUCCEEDED, notification.gateway_reference, arn=notification.arn
        )
    if kind is NotificationKind.PENDING:
        return PayoutResult(PayoutOutcome.PENDING, notification.gateway_reference)
    if kind in (NotificationKind.FAILED, NotificationKind.REVERSED):
        reason = notification.failure_reason or (
            FailureReason.REVERSED if kind is NotificationKind.REVERSED else FailureReason.UNKNOWN
        )
        return PayoutResult.failed(
            reason,
            notification.failure_message or notification.type,
            gateway_reference=notification.gateway_reference,
        )
    return None


def find_payout(
    session: Session, tenant_id: str, notification: GatewayNotification
) -> Payout | None:
    keys = []
    if notification.gateway_reference:
        keys.append(Payout.gateway_reference == notification.gateway_reference)
    if notification.idempotency_key:
        keys.append(Payout.idempotency_key == notification.idempotency_key)
    if not keys:
        return None
    return session.scalars(
        select(Payout).where(Payout.tenant_id == tenant_id, or_(*keys)).with_for_update()
    ).first()


def tenant_zone(session: Session, tenant_id: str) -> ZoneInfo:
    name = session.scalar(select(Tenant.timezone).where(Tenant.id == tenant_id))
    return ZoneInfo(name or "UTC")


def tenant_zones(session: Session, tenant_ids: Iterable[str]) -> dict[str, ZoneInfo]:
    """Each tenant's time zone, in one query for a whole batch."""
    ids = sorted(set(tenant_ids))
    if not ids:
        return {}
    names = dict(
        session.execute(select(Tenant.id, Tenant.timezone).where(Tenant.id.in_(ids))).all()
    )
    return {t: ZoneInfo(names.get(t) or "UTC") for t in ids}


def apply_notification(
    session: Session, tenant_id: str, notification: GatewayNotification, *, now: datetime
) -> Applied:
    """Apply one verified notification to the tenant's payout it names."""
    result = result_of(notification)
    if result is None:
        return Applied.DUPLICATE
    payout = find_payout(session, tenant_id, notification)
    if payout is None:
        return Applied.UNKNOWN
    refund = session.scalars(
        select(Refund)
        .where(Refund.tenant_id == tenant_id, Refund.id == payout.refund_id)
        .with_for_update()
    ).one()
    actor = f"gateway:{payout.gateway}"
    if notification.kind is NotificationKind.REVERSED and payout.status == "succeeded":
        return _reversed(refund, payout, result.failure_message, now=now, actor=actor)
    return apply_result(
        refund, payout, result, now=now, actor=actor, tz=tenant_zone(session, tenant_id)
    )


@dataclass(frozen=True, slots=True)
class NotificationOutcome:
    notification: GatewayNotification
    applied: Applied


def apply_notifications(
    db: Database, clock: Clock, tenant_id: str, notifications: Iterable[GatewayNotification]
) -> list[NotificationOutcome]:
    """Apply a batch (a bank status file, say) in one transaction; report each one."""
    now = clock.now()
    with db.write() as session:
        return [
            NotificationOutcome(n, apply_notification(session, tenant_id, n, now=now))
            for n in notifications
        ]


def bank_file_sent(
    db: Database, *, tenant_id: str, idempotency_keys: Iterable[str], sent_at: datetime
) -> None:
    """A bank file carrying these payouts went out: they arrive 1-2 business days later."""
    keys = list(idempotency_keys)
    if not keys:
        return
    with db.write() as session:
        earliest, latest = arrival_window("bank_transfer", sent_at, tenant_zone(session, tenant_id))
        session.execute(
            update(Payout)
            .where(Payout.tenant_id == tenant_id, Payout.idempotency_key.in_(keys))
            .values(arrival_earliest=earliest, arrival_latest=latest)
        )
