"""Payouts stuck without a final answer: ask their gateway, apply what it says.

Most answers come by webhook. This job catches the ones that never do: payouts `pending`
longer than `pending_after`, and payouts still `sent` long after every retry should have
settled them (their job died while the gateway was down). It runs in the worker on a
schedule and from `refunddesk payouts sync`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import and_, or_, select

from refunddesk.core.clock import Clock
from refunddesk.db.uow import Database
from refunddesk.orders.orm import Order
from refunddesk.payouts.accounts import accounts_of, gateway_for, request_for
from refunddesk.payouts.gateways.base import (
    Gateway,
    GatewayRegistry,
    GatewayUnavailable,
    PayoutRequest,
)
from refunddesk.payouts.orm import Payout
from refunddesk.payouts.settle import Applied, apply_result, tenant_zone
from refunddesk.refunds.orm import Refund

log = logging.getLogger(__name__)
SYNC_ACTOR = "system:payout-sync"


@dataclass
class SyncReport:
    checked: int = 0
    changed: int = 0
    unchanged: int = 0
    unknown: int = 0  # the gateway never heard of it: left for an agent to retry
    errors: list[str] = field(default_factory=list)


def sync_payouts(
    *,
    db: Database,
    clock: Clock,
    gateways: GatewayRegistry,
    pending_after: timedelta,
    sent_after: timedelta,
    limit: int = 500,
    progress: Callable[[int, int], None] | None = None,
) -> SyncReport:
    """Poll the gateways for payouts without a final answer; apply each answer."""
    now = clock.now()
    with db.read() as session:
        rows = session.execute(
            select(Payout, Order, Refund.reference)
            .join(Refund, and_(Refund.tenant_id == Payout.tenant_id, Refund.id == Payout.refund_id))
            .join(Order, and_(Order.tenant_id == Refund.tenant_id, Order.id == Refund.order_id))
            .where(
                or_(
                    and_(Payout.status == "pending", Payout.updated_at <= now - pending_after),
                    and_(Payout.status == "sent", Payout.updated_at <= now - sent_after),
                )
            )
            .order_by(Payout.updated_at)
            .limit(limit)
        ).all()
        accounts = accounts_of(session, {p.tenant_id for p, _, _ in rows})
        work = [
            (
                p.tenant_id,
                p.id,
                request_for(
                    p,
                    reference=reference,
                    payment_reference=o.payment_reference,
                    customer_email=o.customer_email,
                    customer_name=o.customer_name,
                ),
                p.gateway,
                p.method,
                p.gateway_reference,
            )
            for p, o, reference in rows
        ]
    report = SyncReport()
    for done, (tenant_id, payout_id, request, gateway_name, method, reference) in enumerate(
        work, 1
    ):
        report.checked += 1
        gateway = gateway_for(
            gateways,
            accounts.get(tenant_id, []),
            tenant_id=tenant_id,
            gateway=gateway_name,
            method=method,
        )
        if gateway is None:
            report.errors.append(f"{payout_id}: gateway {gateway_name!r} is not configured")
        else:
            _sync_one(db, clock, gateway, tenant_id, payout_id, request, reference, report)
        if progress is not None:
            progress(done, len(work))
    return report


def _sync_one(
    db: Database,
    clock: Clock,
    gateway: Gateway,
    tenant_id: str,
    payout_id: str,
    request: PayoutRequest,
    reference: str | None,
    report: SyncReport,
) -> None:
    try:
        result = gateway.lookup(request, reference)
    except GatewayUnavailable as exc:
        report.errors.append(f"{payout_id}: {exc}")
        return
    except Exception as exc:  # one bad gateway never stops the sync
        log.exception("payout sync lookup failed for %s", payout_id)
        report.errors.append(f"{payout_id}: {exc!r}")
        return
    if result is None:
        report.unknown += 1
        return
    with db.write() as session:
        payout = session.scalars(
            select(Payout)
            .where(Payout.tenant_id == tenant_id, Payout.id == payout_id)
            .with_for_update()
        ).one()
        refund = session.scalars(
            select(Refund)
            .where(Refund.tenant_id == tenant_id, Refund.id == payout.refund_id)
            .with_for_update()
        ).one()
        applied = apply_result(
            refund,
            payout,
            result,
            now=clock.now(),
            actor=SYNC_ACTOR,
            tz=tenant_zone(session, tenant_id),
        )
        # Asked and unchanged: count the wait from now, so the next sync is not at once.
        if applied is Applied.DUPLICATE:
            payout.updated_at = clock.now()
    if applied is Applied.CHANGED:
        report.changed += 1
    else:
        report.unchanged += 1
