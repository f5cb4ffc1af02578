"""Disputes (chargebacks) on original payments, and the hold they put on refunds.

A customer who disputed a payment may get the money back through the bank; refunding the
same payment meanwhile can pay twice. So while a payment has an open dispute, the payout
job leaves its refunds `approved`, records `payout.held`, and sends nothing. Gateways say
when a dispute opens and when it closes in the retailer's favour; then the held refunds
are queued again. A dispute the retailer lost keeps the hold: an agent decides (usually to
cancel the refund, since the bank already paid).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Index, String, and_, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from refunddesk.core.ids import new_id
from refunddesk.db.base import Base
from refunddesk.db.keys import pairs_in
from refunddesk.fraud.labels import label_disputed
from refunddesk.jobs.queue import enqueue
from refunddesk.orders.orm import Order
from refunddesk.payouts.gateways.base import GatewayNotification, NotificationKind
from refunddesk.refunds.domain import EventType, RefundStatus
from refunddesk.refunds.orm import Refund, RefundEvent

PAYOUT_JOB = "payout"


class PaymentDispute(Base):
    """One dispute on one payment reference, as the gateway reported it."""

    __tablename__ = "payment_disputes"
    __table_args__ = (
        Index(
            "uq_payment_disputes_dispute",
            "tenant_id",
            "gateway",
            "dispute_id",
            "payment_reference",
            unique=True,
        ),
        Index("ix_payment_disputes_tenant_payment", "tenant_id", "payment_reference", "status"),
    )

    tenant_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    gateway: Mapped[str] = mapped_column(String(32))
    dispute_id: Mapped[str] = mapped_column(String(200))
    payment_reference: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))  # open | closed
    detail: Mapped[str | None] = mapped_column(String(500))
    opened_at: Mapped[datetime]
    updated_at: Mapped[datetime]


def record(
    session: Session,
    *,
    tenant_id: str,
    gateway: str,
    notification: GatewayNotification,
    now: datetime,
    max_attempts: int,
) -> bool:
    """Store a dispute's news; lift holds it no longer justifies. True if anything changed."""
    opened = notification.kind is NotificationKind.DISPUTE_OPENED
    dispute_id = notification.gateway_reference or notification.event_id
    changed = False
    for reference in notification.payment_references:
        row = session.scalars(
            select(PaymentDispute)
            .where(
                PaymentDispute.tenant_id == tenant_id,
                PaymentDispute.gateway == gateway,
                PaymentDispute.dispute_id == dispute_id,
                PaymentDispute.payment_reference == reference,
            )
            .with_for_update()
        ).first()
        status = "open" if opened else "closed"
        if row is None:
            session.add(
                PaymentDispute(
                    tenant_id=tenant_id,
                    id=new_id(),
                    gateway=gateway,
                    dispute_id=dispute_id,
                    payment_reference=reference,
                    status=status,
                    detail=(notification.failure_message or "")[:500] or None,
                    opened_at=now,
                    updated_at=now,
                )
            )
            changed = True
        elif row.status != status:
            row.status, row.updated_at = status, now
            changed = True
    if opened:
        # A chargeback for fraud is an outcome label for the payment's refunds (training).
        label_disputed(
            session,
            tenant_id=tenant_id,
            payment_references=notification.payment_references,
            detail=notification.failure_message,
            dispute_id=dispute_id,
            at=now,
        )
    if changed and not opened:
        session.flush()
        release(
            session,
            tenant_id=tenant_id,
            references=notification.payment_references,
            now=now,
            max_attempts=max_attempts,
        )
    return changed


def open_disputes(session: Session, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """{(tenant id, payment reference): dispute id} for the keys with an open dispute."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = session.execute(
        select(
            PaymentDispute.tenant_id, PaymentDispute.payment_reference, PaymentDispute.dispute_id
        ).where(
            pairs_in(PaymentDispute.tenant_id, PaymentDispute.payment_reference, wanted),
            PaymentDispute.status == "open",
        )
    )
    return {(t, ref): dispute for t, ref, dispute in rows}


def hold(refund: Refund, *, dispute_id: str, payment_reference: str, now: datetime) -> None:
    """Leave the refund approved and say why its payout waits."""
    refund.record(
        EventType.PAYOUT_HELD,
        actor="system:payouts",
        at=now,
        data={"dispute_id": dispute_id, "payment_reference": payment_reference},
    )


def release(
    session: Session,
    *,
    tenant_id: str,
    references: Iterable[str],
    now: datetime,
    max_attempts: int,
) -> int:
    """Queue the payouts of held refunds whose payments have no open dispute left."""
    refs = set(references)
    still_open = {ref for _, ref in open_disputes(session, [(tenant_id, r) for r in refs])}
    free = sorted(refs - still_open)
    if not free:
        return 0
    held = session.scalars(
        select(Refund.id)
        .join(Order, and_(Order.tenant_id == Refund.tenant_id, Order.id == Refund.order_id))
        .join(
            RefundEvent,
            and_(
                RefundEvent.tenant_id == Refund.tenant_id,
                RefundEvent.refund_id == Refund.id,
                RefundEvent.seq == Refund.event_count,  # the hold is the refund's last word
            ),
        )
        .where(
            Refund.tenant_id == tenant_id,
            Refund.status == str(RefundStatus.APPROVED),
            Order.payment_reference.in_(free),
            RefundEvent.type == str(EventType.PAYOUT_HELD),
        )
    ).all()
    for refund_id in held:
        enqueue(
            session,
            kind=PAYOUT_JOB,
            tenant_id=tenant_id,
            now=now,
            payload={"refund_id": refund_id},
            max_attempts=max_attempts,
        )
    return len(held)
