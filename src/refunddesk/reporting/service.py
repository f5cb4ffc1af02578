"""Desk-wide figures for the home page and the desk: grouped, bounded queries only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from refunddesk.refunds.domain import RefundStatus
from refunddesk.refunds.orm import Refund, RefundEvent
from refunddesk.tenants.orm import Tenant

# Lifecycle order, for tables, legends and stacked bars.
STATUS_ORDER: tuple[RefundStatus, ...] = (
    RefundStatus.REQUESTED,
    RefundStatus.PENDING_REVIEW,
    RefundStatus.AWAITING_RETURN,
    RefundStatus.RETURN_RECEIVED,
    RefundStatus.APPROVED,
    RefundStatus.PROCESSING,
    RefundStatus.SUCCEEDED,
    RefundStatus.FAILED,
    RefundStatus.REJECTED,
    RefundStatus.CANCELED,
)
MAX_CURRENCIES = 50


@dataclass(frozen=True, slots=True)
class CurrencyTotal:
    currency: str
    minor: int
    count: int


@dataclass(frozen=True, slots=True)
class TenantCounts:
    tenant_id: str
    name: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class EventRow:
    at: datetime
    tenant: str
    reference: str
    type: str
    from_status: str | None
    to_status: str
    actor: str
    tenant_id: str = ""
    refund_id: str = ""


def status_counts(session: Session) -> dict[str, int]:
    """Refunds per status across the whole desk, every status present (zero if none)."""
    rows = session.execute(select(Refund.status, func.count()).group_by(Refund.status)).all()
    counts = {str(s): 0 for s in STATUS_ORDER}
    for status, count in rows:
        counts[str(status)] = int(count)
    return counts


def refunded_totals(session: Session, *, limit: int = MAX_CURRENCIES) -> list[CurrencyTotal]:
    """Money paid back to customers (succeeded refunds), per currency, largest count first."""
    rows = session.execute(
        select(Refund.currency, func.sum(Refund.amount_minor), func.count())
        .where(Refund.status == str(RefundStatus.SUCCEEDED))
        .group_by(Refund.currency)
        .order_by(func.count().desc(), Refund.currency)
        .limit(limit)
    ).all()
    return [CurrencyTotal(str(c), int(total or 0), int(n)) for c, total, n in rows]


def status_by_tenant(session: Session, *, max_tenants: int = 50) -> list[TenantCounts]:
    """Refunds per status for each tenant (the first max_tenants by name), zeros included."""
    tenants = (
        select(Tenant.id, Tenant.name).order_by(Tenant.name, Tenant.id).limit(max_tenants)
    ).subquery()
    rows = session.execute(
        select(tenants.c.id, tenants.c.name, Refund.status, func.count(Refund.id))
        .select_from(tenants)
        .outerjoin(Refund, Refund.tenant_id == tenants.c.id)
        .group_by(tenants.c.id, tenants.c.name, Refund.status)
        .order_by(tenants.c.name, tenants.c.id)
    ).all()
    result: dict[str, TenantCounts] = {}
    for tenant_id, name, status, count in rows:
        entry = result.get(tenant_id)
        if entry is None:
            entry = TenantCounts(tenant_id, name, {str(s): 0 for s in STATUS_ORDER})
            result[tenant_id] = entry
        if status is not None:
            entry.counts[str(status)] = int(count)
    return list(result.values())


def latest_events(session: Session, *, limit: int = 25) -> list[EventRow]:
    """The most recent refund events across all tenants, newest first."""
    rows = session.execute(
        select(
            RefundEvent.at,
            Tenant.name,
            Refund.reference,
            RefundEvent.type,
            RefundEvent.from_status,
            RefundEvent.to_status,
            RefundEvent.actor,
            RefundEvent.tenant_id,
            RefundEvent.refund_id,
        )
        .join(
            Refund,
            (Refund.tenant_id == RefundEvent.tenant_id) & (Refund.id == RefundEvent.refund_id),
        )
        .join(Tenant, Tenant.id == RefundEvent.tenant_id)
        .order_by(RefundEvent.at.desc(), RefundEvent.id.desc())
        .limit(max(1, min(limit, 500)))
    ).all()
    return [EventRow(*row) for row in rows]
