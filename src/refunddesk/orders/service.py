"""Store orders and read them back with what is left to refund."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from refunddesk.core.clock import Clock
from refunddesk.core.errors import Conflict, NotFound
from refunddesk.core.ids import new_id
from refunddesk.fraud.linking import record_orders
from refunddesk.orders.orm import Order, OrderLine
from refunddesk.orders.schemas import (
    Address,
    BatchItemResult,
    Customer,
    OrderBatchResult,
    OrderCreate,
    OrderLinePublic,
    OrderPublic,
    Payment,
)
from refunddesk.refunds.orm import HOLDS_BUDGET, Refund


def _build(tenant_id: str, data: OrderCreate, clock: Clock) -> Order:
    order_id = new_id()
    lines = [
        OrderLine(
            tenant_id=tenant_id,
            order_id=order_id,
            line_no=i,
            sku=line.sku,
            name=line.name,
            category=line.category,
            quantity=line.quantity,
            unit_price_minor=line.unit_price_minor,
            weight_grams=line.weight_grams,
        )
        for i, line in enumerate(data.lines, start=1)
    ]
    paid = sum(li.quantity * li.unit_price_minor for li in data.lines)
    return Order(
        tenant_id=tenant_id,
        id=order_id,
        external_id=data.external_id,
        customer_email=str(data.customer.email),
        customer_phone=data.customer.phone,
        customer_name=data.customer.name,
        currency=data.currency,
        shipping_minor=data.shipping_minor,
        tax_minor=data.tax_minor,
        total_minor=paid + data.shipping_minor + data.tax_minor,
        payment_method=str(data.payment.method),
        payment_gateway=data.payment.gateway,
        payment_reference=data.payment.reference,
        purchased_at=data.purchased_at,
        delivered_at=data.delivered_at,
        created_at=clock.now(),
        customer_ref=data.customer.ref,
        customer_since=data.customer.since,
        shipping_address=_address(data.shipping_address),
        billing_address=_address(data.billing_address),
        ip_address=str(data.ip_address) if data.ip_address is not None else None,
        device_id=data.device_id,
        payment_fingerprint=data.payment.fingerprint,
        payment_last4=data.payment.last4,
        lines=lines,
    )


def _address(address: Address | None) -> dict[str, Any] | None:
    return address.model_dump(exclude_none=True) if address is not None else None


def _existing_ids(session: Session, tenant_id: str, external_ids: list[str]) -> dict[str, str]:
    rows = session.execute(
        select(Order.external_id, Order.id).where(
            Order.tenant_id == tenant_id, Order.external_id.in_(external_ids)
        )
    )
    return {external: oid for external, oid in rows}


def create_order(session: Session, *, clock: Clock, tenant_id: str, data: OrderCreate) -> Order:
    """Store one order; an external_id already used by this tenant is a conflict."""
    if _existing_ids(session, tenant_id, [data.external_id]):
        raise Conflict(f"order {data.external_id} already exists", field="external_id")
    order = _build(tenant_id, data, clock)
    session.add(order)
    session.flush()
    record_orders(session, [order], now=order.created_at)
    return order


def create_orders(
    session: Session, *, clock: Clock, tenant_id: str, orders: list[OrderCreate]
) -> OrderBatchResult:
    """Store a batch; orders already stored (by external_id) are reported and left as they are."""
    seen: dict[str, int] = {}
    for index, data in enumerate(orders):
        if data.external_id in seen:
            raise Conflict(
                f"external_id {data.external_id} appears twice in the batch",
                field=f"orders[{index}].external_id",
            )
        seen[data.external_id] = index
    existing = _existing_ids(session, tenant_id, list(seen))
    results: list[BatchItemResult] = []
    stored: list[Order] = []
    created = 0
    for data in orders:
        if data.external_id in existing:
            results.append(
                BatchItemResult(
                    external_id=data.external_id, result="exists", id=existing[data.external_id]
                )
            )
            continue
        order = _build(tenant_id, data, clock)
        session.add(order)
        stored.append(order)
        created += 1
        results.append(BatchItemResult(external_id=data.external_id, result="created", id=order.id))
    session.flush()
    record_orders(session, stored, now=clock.now())
    return OrderBatchResult(created=created, existing=len(existing), results=results)


def find_order(
    session: Session, *, tenant_id: str, external_id: str, for_update: bool = False
) -> Order | None:
    query = select(Order).where(Order.tenant_id == tenant_id, Order.external_id == external_id)
    if for_update:
        query = query.with_for_update()
    return session.scalars(query).first()


def committed_minor(session: Session, *, tenant_id: str, order_id: str) -> int:
    """Sum of refunds on the order that still hold budget."""
    total = session.scalar(
        select(func.coalesce(func.sum(Refund.amount_minor), 0)).where(
            Refund.tenant_id == tenant_id,
            Refund.order_id == order_id,
            HOLDS_BUDGET,
        )
    )
    return int(total or 0)


def to_public(session: Session, order: Order) -> OrderPublic:
    held = committed_minor(session, tenant_id=order.tenant_id, order_id=order.id)
    return OrderPublic(
        id=order.id,
        external_id=order.external_id,
        customer=Customer(
            email=order.customer_email,
            phone=order.customer_phone,
            name=order.customer_name,
            ref=order.customer_ref,
            since=order.customer_since,
        ),
        currency=order.currency,
        lines=[
            OrderLinePublic(
                sku=li.sku,
                name=li.name,
                category=li.category,
                quantity=li.quantity,
                unit_price_minor=li.unit_price_minor,
                weight_grams=li.weight_grams,
            )
            for li in order.lines
        ],
        shipping_minor=order.shipping_minor,
        tax_minor=order.tax_minor,
        total_minor=order.total_minor,
        refunded_minor=held,
        refundable_minor=max(order.total_minor - held, 0),
        payment=Payment(
            method=order.payment_method,
            gateway=order.payment_gateway,
            reference=order.payment_reference,
            fingerprint=order.payment_fingerprint,
            last4=order.payment_last4,
        ),
        purchased_at=order.purchased_at,
        delivered_at=order.delivered_at,
        created_at=order.created_at,
        shipping_address=order.shipping_address,
        billing_address=order.billing_address,
        ip_address=order.ip_address,
        device_id=order.device_id,
    )


def get_order(session: Session, *, tenant_id: str, external_id: str) -> OrderPublic:
    order = find_order(session, tenant_id=tenant_id, external_id=external_id)
    if order is None:
        raise NotFound(f"no order {external_id}")
    return to_public(session, order)
