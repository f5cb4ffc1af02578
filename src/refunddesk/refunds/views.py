"""HTTP routes for refunds."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import IntegrityError

from refunddesk.api.deps import ContainerDep, PrincipalDep, ReadSession
from refunddesk.auth.domain import Permission
from refunddesk.bootstrap import Container
from refunddesk.core.clock import as_utc
from refunddesk.refunds import service
from refunddesk.refunds.domain import RefundStatus
from refunddesk.refunds.schemas import (
    ApprovalQueuePage,
    NoteBody,
    PayoutFallback,
    RefundCreate,
    RefundEventPublic,
    RefundPage,
    RefundPreview,
    RefundPublic,
    RejectBody,
)

router = APIRouter(prefix="/v1/refunds", tags=["refunds"])
approvals_router = APIRouter(prefix="/v1/approvals", tags=["refunds"])
RefundId = Annotated[str, Path(min_length=1, max_length=64)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="same key and body returns the same refund; same key, other body is 409",
    ),
]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    operation_id="create_refund",
    responses={200: {"description": "idempotent replay: the refund made earlier"}},
)
async def create_refund(
    body: RefundCreate,
    principal: PrincipalDep,
    container: ContainerDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> RefundPublic:
    """Request a refund on an order; it is decided at once and, if approved, paid out."""
    principal.require(Permission.CREATE_REFUNDS)
    tenant_id = principal.require_tenant()
    # The hot path: async route, and all its blocking work in one thread-pool call (a sync
    # route costs FastAPI several hops between the event loop and the pool).
    result, created = await run_in_threadpool(
        _create, container, tenant_id, body, principal.actor, idempotency_key
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return result


def _create(
    container: Container, tenant_id: str, body: RefundCreate, actor: str, key: str | None
) -> tuple[RefundPublic, bool]:
    for attempt in range(3):
        try:
            with container.db.write() as session:
                refund, created = service.request_refund(
                    session,
                    clock=container.clock,
                    config=container.intake,
                    tenant_id=tenant_id,
                    data=body,
                    actor=actor,
                    idempotency_key=key,
                )
                return service.to_public(refund, body.order_id), created
        except IntegrityError:
            # A concurrent request with the same key won, or a reference collided: try again,
            # and the idempotency check now sees the winner.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@router.post("/preview", operation_id="preview_refund")
async def preview_refund(
    body: RefundCreate, principal: PrincipalDep, container: ContainerDep
) -> RefundPreview:
    """What creating this refund would decide now (status, amount, findings); stores nothing."""
    principal.require(Permission.CREATE_REFUNDS)
    tenant_id = principal.require_tenant()
    return await run_in_threadpool(_preview, container, tenant_id, body)


def _preview(container: Container, tenant_id: str, body: RefundCreate) -> RefundPreview:
    with container.db.read() as session:
        return service.preview_refund(
            session, clock=container.clock, tenant_id=tenant_id, data=body
        )


@router.get("", operation_id="list_refunds")
def list_refunds(
    principal: PrincipalDep,
    session: ReadSession,
    status_: Annotated[RefundStatus | None, Query(alias="status")] = None,
    order_id: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    created_after: datetime | None = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> RefundPage:
    """Refunds, newest first, with cursor pagination."""
    principal.require(Permission.READ)
    return service.list_refunds(
        session,
        tenant_id=principal.require_tenant(),
        status=status_,
        order_external_id=order_id,
        created_after=as_utc(created_after) if created_after else None,
        cursor=cursor,
        limit=limit,
    )


@router.get("/{refund_id}", operation_id="get_refund")
async def get_refund(
    refund_id: RefundId, principal: PrincipalDep, container: ContainerDep
) -> RefundPublic:
    principal.require(Permission.READ)
    return await run_in_threadpool(_read, container, principal.require_tenant(), refund_id)


def _read(container: Container, tenant_id: str, refund_id: str) -> RefundPublic:
    with container.db.reading() as db:
        return service.read_refund(db, tenant_id=tenant_id, refund_id=refund_id)


@router.get("/{refund_id}/events", operation_id="list_refund_events")
def list_events(
    refund_id: RefundId, principal: PrincipalDep, session: ReadSession
) -> list[RefundEventPublic]:
    """Every step of the refund's life, oldest first: the audit trail."""
    principal.require(Permission.READ)
    return service.list_events(session, tenant_id=principal.require_tenant(), refund_id=refund_id)


@router.post("/{refund_id}/approve", operation_id="approve_refund")
def approve(
    refund_id: RefundId,
    principal: PrincipalDep,
    container: ContainerDep,
    body: NoteBody | None = None,
) -> RefundPublic:
    principal.require(Permission.DECIDE_REFUNDS)
    with container.db.write() as session:
        refund = service.approve(
            session,
            clock=container.clock,
            config=container.intake,
            tenant_id=principal.require_tenant(),
            refund_id=refund_id,
            actor=principal.actor,
            role=str(principal.role),
            note=body.note if body else None,
        )
        return service.public(session, refund)


@router.post("/{refund_id}/reject", operation_id="reject_refund")
def reject(
    refund_id: RefundId, body: RejectBody, principal: PrincipalDep, container: ContainerDep
) -> RefundPublic:
    principal.require(Permission.DECIDE_REFUNDS)
    with container.db.write() as session:
        refund = service.reject(
            session,
            clock=container.clock,
            tenant_id=principal.require_tenant(),
            refund_id=refund_id,
            actor=principal.actor,
            reason=body.reason,
        )
        return service.public(session, refund)


@router.post("/{refund_id}/cancel", operation_id="cancel_refund")
def cancel(
    refund_id: RefundId,
    principal: PrincipalDep,
    container: ContainerDep,
    body: NoteBody | None = None,
) -> RefundPublic:
    principal.require(Permission.CANCEL_REFUNDS)
    with container.db.write() as session:
        refund = service.cancel(
            session,
            clock=container.clock,
            tenant_id=principal.require_tenant(),
            refund_id=refund_id,
            actor=principal.actor,
            note=body.note if body else None,
        )
        return service.public(session, refund)


@router.post("/{refund_id}/retry", operation_id="retry_refund_payout")
def retry(
    refund_id: RefundId,
    principal: PrincipalDep,
    container: ContainerDep,
    body: PayoutFallback | None = None,
) -> RefundPublic:
    """Send a failed refund's payout again: the original way, or by a fallback method."""
    principal.require(Permission.RETRY_PAYOUTS)
    with container.db.write() as session:
        refund = service.retry_payout(
            session,
            clock=container.clock,
            config=container.intake,
            tenant_id=principal.require_tenant(),
            refund_id=refund_id,
            actor=principal.actor,
            fallback=body,
        )
        return service.public(session, refund)


@approvals_router.get("", operation_id="list_approvals")
def list_approvals(
    principal: PrincipalDep,
    session: ReadSession,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ApprovalQueuePage:
    """The approval queue: refunds in review, oldest first, with their findings and approvals."""
    principal.require(Permission.READ)
    return service.list_approvals(
        session, tenant_id=principal.require_tenant(), cursor=cursor, limit=limit
    )
