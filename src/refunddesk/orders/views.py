"""HTTP routes for orders."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from refunddesk.api.deps import ContainerDep, PrincipalDep, ReadSession
from refunddesk.auth.domain import Permission
from refunddesk.orders import service
from refunddesk.orders.schemas import OrderBatchCreate, OrderBatchResult, OrderCreate, OrderPublic

router = APIRouter(prefix="/v1/orders", tags=["orders"])
ExternalId = Annotated[str, Path(min_length=1, max_length=100)]


@router.post("", status_code=status.HTTP_201_CREATED, operation_id="create_order")
def create_order(
    body: OrderCreate, principal: PrincipalDep, container: ContainerDep
) -> OrderPublic:
    """Store one order (the purchase that refunds are checked against)."""
    principal.require(Permission.WRITE_ORDERS)
    tenant_id = principal.require_tenant()
    with container.db.write() as session:
        order = service.create_order(session, clock=container.clock, tenant_id=tenant_id, data=body)
        return service.to_public(session, order)


@router.post("/batch", operation_id="create_orders_batch")
def create_orders_batch(
    body: OrderBatchCreate, principal: PrincipalDep, container: ContainerDep
) -> OrderBatchResult:
    """Store up to 1,000 orders in one transaction; ones already stored are reported as such."""
    principal.require(Permission.WRITE_ORDERS)
    tenant_id = principal.require_tenant()
    with container.db.write() as session:
        return service.create_orders(
            session, clock=container.clock, tenant_id=tenant_id, orders=body.orders
        )


@router.get("/{external_id}", operation_id="get_order")
def get_order(
    external_id: ExternalId, principal: PrincipalDep, session: ReadSession
) -> OrderPublic:
    """An order by the retailer's order number, with what is left to refund."""
    principal.require(Permission.READ)
    return service.get_order(session, tenant_id=principal.require_tenant(), external_id=external_id)
