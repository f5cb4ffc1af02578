"""Read models for payouts: a refund's attempts, and the ones that need a person."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from refunddesk.payouts.accounts import redacted
from refunddesk.payouts.gateways.base import FAILURE_HELP, FailureReason
from refunddesk.payouts.orm import GatewayAccount, Payout
from refunddesk.refunds.domain import RefundStatus
from refunddesk.refunds.orm import Refund


class PayoutPublic(BaseModel):
    id: str
    tenant_id: str
    refund_id: str
    refund_reference: str
    refund_status: str
    attempt: int
    gateway: str
    method: str
    amount_minor: int
    currency: str
    status: str
    gateway_reference: str | None
    arn: str | None
    failure_reason: str | None
    failure_message: str | None
    next_action: str | None
    stuck: bool
    arrival_earliest: date | None
    arrival_latest: date | None
    created_at: datetime
    updated_at: datetime


class GatewayAccountPublic(BaseModel):
    name: str
    provider: str
    methods: list[str]
    config: dict[str, Any]  # secrets masked
    created_at: datetime
    updated_at: datetime


def account_public(account: GatewayAccount) -> GatewayAccountPublic:
    return GatewayAccountPublic(
        name=account.name,
        provider=account.provider,
        methods=list(account.methods or []),
        config=redacted(account.config),
        created_at=account.created_at,
        updated_at=account.updated_at,
    )


def _next_action(payout: Payout, refund_status: str, stuck: bool) -> str | None:
    if payout.status in ("failed", "reversed") and refund_status == RefundStatus.FAILED:
        try:
            return FAILURE_HELP[FailureReason(payout.failure_reason or "unknown")]
        except ValueError:
            return FAILURE_HELP[FailureReason.UNKNOWN]
    if payout.status in ("sent", "pending") and refund_status == RefundStatus.FAILED:
        return (
            "The gateway never answered, so the desk gave up waiting. Retry: the desk asks "
            "the gateway about this payout first and never pays it twice."
        )
    if stuck:
        return (
            "No final answer from the gateway yet. The sync job asks it again; run "
            "`refunddesk payouts sync` to ask now, or check the gateway's dashboard."
        )
    return None


def _public(payout: Payout, reference: str, refund_status: str, stuck: bool) -> PayoutPublic:
    return PayoutPublic(
        id=payout.id,
        tenant_id=payout.tenant_id,
        refund_id=payout.refund_id,
        refund_reference=reference,
        refund_status=refund_status,
        attempt=payout.attempt,
        gateway=payout.gateway,
        method=payout.method,
        amount_minor=payout.amount_minor,
        currency=payout.currency,
        status=payout.status,
        gateway_reference=payout.gateway_reference,
        arn=payout.arn,
        failure_reason=payout.failure_reason,
        failure_message=payout.failure_message,
        next_action=_next_action(payout, refund_status, stuck),
        stuck=stuck,
        arrival_earliest=payout.arrival_earliest,
        arrival_latest=payout.arrival_latest,
        created_at=payout.created_at,
        updated_at=payout.updated_at,
    )


def _is_stuck(payout: Payout, now: datetime, stuck_after: timedelta) -> bool:
    return payout.status in ("sent", "pending") and payout.updated_at <= now - stuck_after


def payouts_of_refund(
    session: Session, *, tenant_id: str, refund_id: str, now: datetime, stuck_after: timedelta
) -> list[PayoutPublic]:
    rows = session.execute(
        select(Payout, Refund.reference, Refund.status)
        .join(Refund, and_(Refund.tenant_id == Payout.tenant_id, Refund.id == Payout.refund_id))
        .where(Payout.tenant_id == tenant_id, Payout.refund_id == refund_id)
        .order_by(Payout.attempt)
    ).all()
    return [_public(p, ref, st, _is_stuck(p, now, stuck_after)) for p, ref, st in rows]


def needing_attention(
    session: Session,
    *,
    tenant_id: str | None,
    now: datetime,
    stuck_after: timedelta,
    limit: int = 200,
) -> list[PayoutPublic]:
    """Failed payouts whose refund is still failed, and payouts stuck without an answer.

    One tenant's, or (tenant_id None, for the desk's admins) every tenant's.
    """
    scope = [] if tenant_id is None else [Payout.tenant_id == tenant_id]
    rows = session.execute(
        select(Payout, Refund.reference, Refund.status)
        .join(Refund, and_(Refund.tenant_id == Payout.tenant_id, Refund.id == Payout.refund_id))
        .where(
            *scope,
            or_(
                # failed, and the refund still waits for a decision: retry or fall back
                and_(
                    Payout.status.in_(["failed", "reversed", "sent", "pending"]),
                    Refund.status == str(RefundStatus.FAILED),
                ),
                # no final answer for too long
                and_(
                    Payout.status.in_(["sent", "pending"]),
                    Payout.updated_at <= now - stuck_after,
                ),
            ),
        )
        .order_by(Payout.updated_at.desc())  # the newest problems survive the limit
        .limit(limit)
    ).all()
    latest: dict[tuple[str, str], PayoutPublic] = {}
    for p, ref, st in rows:  # one line per refund: its latest attempt
        item = _public(p, ref, st, _is_stuck(p, now, stuck_after))
        key = (p.tenant_id, p.refund_id)
        if key not in latest or latest[key].attempt < item.attempt:
            latest[key] = item
    return sorted(latest.values(), key=lambda i: i.updated_at, reverse=True)
