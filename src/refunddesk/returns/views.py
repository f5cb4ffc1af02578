"""HTTP routes for the return of goods behind a refund: /v1/refunds/{id}/return."""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated

from fastapi import APIRouter, Path

from refunddesk.api.deps import ContainerDep, PrincipalDep, ReadSession
from refunddesk.auth.domain import Permission
from refunddesk.core.errors import Invalid
from refunddesk.returns import service
from refunddesk.returns.domain import ItemCondition, LineInspection, Outcome
from refunddesk.returns.schemas import (
    ReturnInspect,
    ReturnLost,
    ReturnPublic,
    ReturnReceive,
    ReturnShip,
)

router = APIRouter(prefix="/v1/refunds", tags=["returns"])
RefundId = Annotated[str, Path(min_length=1, max_length=64)]


@router.get("/{refund_id}/return", operation_id="get_return")
def get_return(refund_id: RefundId, principal: PrincipalDep, session: ReadSession) -> ReturnPublic:
    """The return of goods a refund waits for: status, parcel, counts, inspection, settlement."""
    principal.require(Permission.READ)
    record = service.get_return(session, tenant_id=principal.require_tenant(), refund_id=refund_id)
    return service.to_public(record)


@router.post("/{refund_id}/return/ship", operation_id="ship_return")
def ship_return(
    refund_id: RefundId, body: ReturnShip, principal: PrincipalDep, container: ContainerDep
) -> ReturnPublic:
    """The customer handed the parcel to a carrier: the return is in transit."""
    principal.require(Permission.CREATE_REFUNDS)
    with container.db.write() as session:
        record = service.ship(
            session,
            clock=container.clock,
            tenant_id=principal.require_tenant(),
            refund_id=refund_id,
            carrier=body.carrier,
            tracking_number=body.tracking_number,
            actor=principal.actor,
        )
        return service.to_public(record)


@router.post("/{refund_id}/return/receive", operation_id="receive_return")
def receive_return(
    refund_id: RefundId, body: ReturnReceive, principal: PrincipalDep, container: ContainerDep
) -> ReturnPublic:
    """The warehouse counted the parcel; the refund moves to return_received."""
    principal.require(Permission.DECIDE_REFUNDS)
    quantities: dict[str, int] = {}
    conditions: dict[str, ItemCondition] = {}
    for index, line in enumerate(body.lines):
        if line.sku in quantities:
            raise Invalid(f"sku {line.sku} is listed twice", field=f"lines[{index}].sku")
        quantities[line.sku] = line.quantity
        if line.condition is not None:
            conditions[line.sku] = line.condition
    with container.db.write() as session:
        record = service.receive(
            session,
            clock=container.clock,
            tenant_id=principal.require_tenant(),
            refund_id=refund_id,
            quantities=quantities,
            conditions=conditions,
            actor=principal.actor,
            weight_grams=body.weight_grams,
        )
        return service.to_public(record)


@router.post("/{refund_id}/return/inspect", operation_id="inspect_return")
def inspect_return(
    refund_id: RefundId, body: ReturnInspect, principal: PrincipalDep, container: ContainerDep
) -> ReturnPublic:
    """Verdicts on the received goods; the refund is adjusted and approved, rejected or held."""
    principal.require(Permission.DECIDE_REFUNDS)
    results: dict[str, list[LineInspection]] = defaultdict(list)
    for line in body.lines:
        if line.verdict is Outcome.ACCEPT:
            verdict = LineInspection(Outcome.ACCEPT, quantity=line.quantity, reason=line.reason)
        else:
            verdict = LineInspection(
                line.verdict,
                quantity=line.quantity,
                reason=line.reason,
                percent=line.percent,
                credit_minor=line.credit_minor,
            )
        results[line.sku].append(verdict)
    with container.db.write() as session:
        record = service.inspect(
            session,
            clock=container.clock,
            config=container.intake,
            tenant_id=principal.require_tenant(),
            refund_id=refund_id,
            results=results,
            actor=principal.actor,
        )
        return service.to_public(record)


@router.post("/{refund_id}/return/lost", operation_id="mark_return_lost")
def mark_return_lost(
    refund_id: RefundId,
    principal: PrincipalDep,
    container: ContainerDep,
    body: ReturnLost | None = None,
) -> ReturnPublic:
    """The carrier lost the parcel; the refund stays awaiting_return, flagged for an agent."""
    principal.require(Permission.DECIDE_REFUNDS)
    with container.db.write() as session:
        record = service.mark_lost(
            session,
            clock=container.clock,
            tenant_id=principal.require_tenant(),
            refund_id=refund_id,
            actor=principal.actor,
            note=body.note if body else None,
        )
        return service.to_public(record)
