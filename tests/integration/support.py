"""Helpers for integration tests: drive the services the way the API does, one transaction each."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from refunddesk.bootstrap import Container
from refunddesk.jobs.orm import Job
from refunddesk.payouts.orm import Payout
from refunddesk.refunds import service
from refunddesk.refunds.orm import Refund, RefundEvent
from refunddesk.refunds.schemas import RefundCreate


def request(
    container: Container,
    tenant_id: str,
    *,
    key: str | None = None,
    actor: str = "api:test",
    **body: Any,
) -> tuple[Refund, bool]:
    """Request a refund in its own write transaction, as POST /v1/refunds does."""
    body.setdefault("reason", "damaged")
    data = RefundCreate.model_validate(body)
    with container.db.write() as session:
        return service.request_refund(
            session,
            clock=container.clock,
            config=container.intake,
            tenant_id=tenant_id,
            data=data,
            actor=actor,
            idempotency_key=key,
        )


def refund(container: Container, tenant_id: str, refund_id: str) -> Refund:
    with container.db.read() as session:
        return service.get_refund(session, tenant_id=tenant_id, refund_id=refund_id)


def events(container: Container, tenant_id: str, refund_id: str) -> list[RefundEvent]:
    with container.db.read() as session:
        return list(
            session.scalars(
                select(RefundEvent)
                .where(RefundEvent.tenant_id == tenant_id, RefundEvent.refund_id == refund_id)
                .order_by(RefundEvent.seq)
            )
        )


def event_trail(container: Container, tenant_id: str, refund_id: str) -> list[tuple[str, str]]:
    """(type, to_status) of each event, oldest first."""
    return [(e.type, e.to_status) for e in events(container, tenant_id, refund_id)]


def payouts(container: Container, tenant_id: str, refund_id: str) -> list[Payout]:
    with container.db.read() as session:
        return list(
            session.scalars(
                select(Payout)
                .where(Payout.tenant_id == tenant_id, Payout.refund_id == refund_id)
                .order_by(Payout.attempt)
            )
        )


def jobs(container: Container) -> list[Job]:
    with container.db.read() as session:
        return list(session.scalars(select(Job).order_by(Job.id)))


def refunded_sum(container: Container, tenant_id: str) -> int:
    with container.db.read() as session:
        total = session.scalar(
            select(func.coalesce(func.sum(Refund.amount_minor), 0)).where(
                Refund.tenant_id == tenant_id
            )
        )
        return int(total or 0)
