"""HTTP routes for fraud: label a refund's outcome, read its labels, the fraud review queue."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, status
from sqlalchemy import select

from refunddesk.api.deps import ContainerDep, PrincipalDep, ReadSession
from refunddesk.auth.domain import Permission
from refunddesk.fraud import labels
from refunddesk.fraud.schemas import FraudLabelCreate, FraudLabelPublic
from refunddesk.refunds import service as refunds
from refunddesk.refunds.domain import RefundStatus
from refunddesk.refunds.orm import Refund
from refunddesk.refunds.schemas import RefundPage

router = APIRouter(tags=["fraud"])
RefundId = Annotated[str, Path(min_length=1, max_length=64)]


@router.post(
    "/v1/refunds/{refund_id}/fraud-label",
    status_code=status.HTTP_201_CREATED,
    operation_id="label_refund_fraud",
)
def label_refund(
    refund_id: RefundId, body: FraudLabelCreate, principal: PrincipalDep, container: ContainerDep
) -> FraudLabelPublic:
    """Say whether the refund was fraud or legit; the latest label feeds model training."""
    principal.require(Permission.DECIDE_REFUNDS)
    with container.db.write() as session:
        row = labels.record_label(
            session,
            tenant_id=principal.require_tenant(),
            refund_id=refund_id,
            label=body.label,
            actor=principal.actor,
            source="agent",
            at=container.clock.now(),
            note=body.note,
        )
        return labels.to_public(row)


@router.get("/v1/refunds/{refund_id}/fraud-labels", operation_id="list_refund_fraud_labels")
def list_labels(
    refund_id: RefundId, principal: PrincipalDep, session: ReadSession
) -> list[FraudLabelPublic]:
    """Every label of the refund, oldest first (the latest counts)."""
    principal.require(Permission.READ)
    tenant_id = principal.require_tenant()
    refunds.get_refund(session, tenant_id=tenant_id, refund_id=refund_id)  # 404 if unknown
    rows = labels.labels_of(session, tenant_id=tenant_id, refund_id=refund_id)
    return [labels.to_public(r) for r in rows]


@router.get("/v1/fraud/review-queue", operation_id="list_fraud_review_queue")
def review_queue(
    principal: PrincipalDep,
    session: ReadSession,
    level: Annotated[Literal["medium", "high"] | None, Query()] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> RefundPage:
    """Refunds in review because of their fraud risk (medium or high), oldest first."""
    principal.require(Permission.READ)
    tenant_id = principal.require_tenant()
    levels = [level] if level is not None else ["high", "medium"]
    query = select(Refund).where(
        Refund.tenant_id == tenant_id,
        Refund.risk_level.in_(levels),
        Refund.status == str(RefundStatus.PENDING_REVIEW),
    )
    if cursor is not None:
        query = query.where(Refund.id > refunds.decode_cursor(cursor))
    rows = list(session.scalars(query.order_by(Refund.id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    ext = refunds.external_ids(session, tenant_id, {r.order_id for r in rows})
    return RefundPage(
        items=[refunds.to_public(r, ext.get(r.order_id, "")) for r in rows],
        next_cursor=refunds.encode_cursor(rows[-1].id) if more and rows else None,
    )
