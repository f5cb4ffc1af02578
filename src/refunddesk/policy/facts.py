"""Engine inputs from the database: the order, the request and the customer's history.

Statements are prepared once (db/prepared.py: the intake hot path runs them per request),
and the order's lines, refunded quantities and committed amount come back in one statement.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import (
    BigInteger,
    BindParameter,
    String,
    and_,
    bindparam,
    cast,
    func,
    literal,
    select,
    type_coerce,
    union_all,
)

from refunddesk.core.clock import as_utc
from refunddesk.core.errors import NotFound
from refunddesk.db.prepared import Driver, Prepared
from refunddesk.orders.orm import Order, OrderLine
from refunddesk.policy.document import Evidence, RefundMethod
from refunddesk.policy.engine import (
    CustomerHistory,
    OrderFacts,
    OrderLineFacts,
    RequestFacts,
    RequestLine,
)
from refunddesk.refunds.domain import Reason, RefundStatus
from refunddesk.refunds.orm import HOLDS_BUDGET, Refund, RefundLine
from refunddesk.refunds.schemas import RefundCreate

HISTORY_DAYS = 365

_T: BindParameter[str] = bindparam("tenant_id")
_ORDER: BindParameter[str] = bindparam("order_id")
_COUNTS_AS_HISTORY = and_(
    Refund.status != str(RefundStatus.REJECTED), Refund.status != str(RefundStatus.CANCELED)
)

ORDER_COLUMNS = (
    Order.id,
    Order.currency,
    Order.total_minor,
    Order.shipping_minor,
    Order.tax_minor,
    Order.purchased_at,
    Order.delivered_at,
    Order.customer_email,
)
_ORDER_ROW = Prepared(select(*ORDER_COLUMNS).where(Order.tenant_id == _T, Order.id == _ORDER))

_BUDGET_HOLDERS = select(Refund.id).where(
    Refund.tenant_id == _T, Refund.order_id == _ORDER, HOLDS_BUDGET
)

# One statement for everything the order's refunds took: kind L = an order line,
# R = quantities of a sku already refunded, C = amount and shipping committed by refunds.
_REFUNDED_SHIPPING = func.coalesce(
    func.sum(func.coalesce(Refund.breakdown["shipping_minor"].as_integer(), 0)), 0
)
_LEDGER = Prepared(
    union_all(
        select(
            literal("L", String).label("kind"),
            OrderLine.sku.label("sku"),
            OrderLine.category.label("category"),
            cast(OrderLine.quantity, BigInteger).label("quantity"),
            cast(OrderLine.unit_price_minor, BigInteger).label("amount"),
            cast(OrderLine.line_no, BigInteger).label("extra"),
        ).where(OrderLine.tenant_id == _T, OrderLine.order_id == _ORDER),
        select(
            literal("R", String),
            RefundLine.sku,
            literal("", String),
            cast(func.sum(RefundLine.quantity), BigInteger),
            literal(0, BigInteger),
            literal(0, BigInteger),
        )
        # IN (refunds of this order), not a join: planners then always start from the order's
        # refunds (SQLite, without statistics, would otherwise scan the tenant's refund lines).
        .where(RefundLine.tenant_id == _T, RefundLine.refund_id.in_(_BUDGET_HOLDERS))
        .group_by(RefundLine.sku),
        select(
            literal("C", String),
            literal("", String),
            literal("", String),
            literal(0, BigInteger),
            cast(func.coalesce(func.sum(Refund.amount_minor), 0), BigInteger),
            cast(_REFUNDED_SHIPPING, BigInteger),
        ).where(Refund.tenant_id == _T, Refund.order_id == _ORDER, HOLDS_BUDGET),
    )
)

# From the customer's orders (ix_orders_tenant_customer_email) to their refunds
# (ix_refunds_tenant_order); the times are compared after, so no planner starts from
# the tenant's refunds by date instead.
_CUSTOMER_ORDERS = select(Order.id).where(
    Order.tenant_id == _T, Order.customer_email == bindparam("email")
)
# The times come back untyped and are parsed here: SQLAlchemy's SQLite DateTime processing
# costs several times more per row (a frequent customer has many rows).
_HISTORY = Prepared(
    select(type_coerce(Refund.created_at, String).label("created_at")).where(
        Refund.tenant_id == _T, Refund.order_id.in_(_CUSTOMER_ORDERS), _COUNTS_AS_HISTORY
    )
)


def order_facts_from_row(db: Driver, *, tenant_id: str, order: Any) -> OrderFacts:
    """Facts for an order row already read (with ORDER_COLUMNS): one more statement."""
    lines: list[tuple[int, OrderLineFacts]] = []
    refunded: dict[str, int] = {}
    committed = refunded_shipping = 0
    params = {"tenant_id": tenant_id, "order_id": order.id}
    for kind, sku, category, quantity, amount, extra in db.all(_LEDGER, params):
        if kind == "L":
            lines.append((int(extra), OrderLineFacts(sku, category, int(quantity), int(amount))))
        elif kind == "R":
            refunded[sku] = int(quantity)
        else:
            committed, refunded_shipping = int(amount), int(extra)
    lines.sort(key=lambda pair: pair[0])
    return OrderFacts(
        currency=order.currency,
        lines=tuple(line for _, line in lines),
        purchased_at=as_utc(order.purchased_at),
        delivered_at=as_utc(order.delivered_at) if order.delivered_at else None,
        shipping_minor=int(order.shipping_minor),
        tax_minor=int(order.tax_minor),
        refunded_quantities=refunded,
        committed_minor=committed,
        refunded_shipping_minor=refunded_shipping,
    )


def order_facts(db: Driver, *, tenant_id: str, order_id: str) -> OrderFacts:
    """The order (by its internal id) as paid, and what refunds holding budget took from it."""
    row = db.first(_ORDER_ROW, {"tenant_id": tenant_id, "order_id": order_id})
    if row is None:
        raise NotFound(f"no order {order_id}")
    return order_facts_from_row(db, tenant_id=tenant_id, order=row)


def customer_history(
    db: Driver,
    *,
    tenant_id: str,
    email: str,
    before: datetime,
    days: int = HISTORY_DAYS,
    newest: int | None = None,
) -> CustomerHistory:
    """When this customer's refunds up to `before` (not rejected or canceled) were asked.

    newest: keep only that many of the latest; enough for rules that count fewer than
    `newest` refunds, and a frequent customer then costs no more than a rare one.
    """
    since = before - timedelta(days=days)
    stored = [row[0] for row in db.all(_HISTORY, {"tenant_id": tenant_id, "email": email})]
    times: list[datetime] = []
    # Newest first: values of one dialect (ISO text, or datetimes) sort in time order.
    for raw in sorted(stored, reverse=True):
        at = _when(raw)
        if at > before:
            continue
        if at <= since or (newest is not None and len(times) >= newest):
            break
        times.append(at)
    times.reverse()
    return CustomerHistory(tuple(times))


def _when(value: datetime | str) -> datetime:
    """A stored time as aware UTC: PostgreSQL drivers give datetimes, SQLite gives text."""
    return as_utc(value if isinstance(value, datetime) else datetime.fromisoformat(value))


def request_facts(data: RefundCreate) -> RequestFacts:
    """The engine's view of a refund request body."""
    evidence = frozenset(data.evidence) if data.evidence else frozenset[Evidence]()
    if data.lines:
        lines = tuple(
            RequestLine(line.sku, line.quantity, line.reason, line.condition) for line in data.lines
        )
        return RequestFacts(
            reason=data.reason, lines=lines, evidence=evidence, refund_method=data.refund_method
        )
    return RequestFacts(
        reason=data.reason,
        amount_minor=data.amount_minor,
        evidence=evidence,
        refund_method=data.refund_method,
    )


class StoredRefund(Protocol):
    """What replay reads from a stored refund (an ORM object or a Core row)."""

    @property
    def reason(self) -> str: ...
    @property
    def amount_minor(self) -> int: ...
    @property
    def requested_minor(self) -> int | None: ...
    @property
    def evidence(self) -> Sequence[str] | None: ...
    @property
    def requested_method(self) -> str | None: ...


class StoredLine(Protocol):
    @property
    def sku(self) -> str: ...
    @property
    def quantity(self) -> int: ...
    @property
    def reason(self) -> str: ...
    @property
    def condition(self) -> str | None: ...


def request_facts_from_refund(refund: StoredRefund, lines: Iterable[StoredLine]) -> RequestFacts:
    """The request a stored refund was made from, to replay it against any policy."""
    evidence = frozenset(Evidence(e) for e in refund.evidence or ())
    method = RefundMethod(refund.requested_method) if refund.requested_method else None
    reason = Reason(refund.reason)
    request_lines = tuple(
        RequestLine(li.sku, li.quantity, Reason(li.reason), li.condition) for li in lines
    )
    if request_lines:
        return RequestFacts(
            reason=reason, lines=request_lines, evidence=evidence, refund_method=method
        )
    # Refunds stored before the policy capability have no requested_minor: what was asked
    # for is then what was decided.
    asked = refund.requested_minor if refund.requested_minor is not None else refund.amount_minor
    return RequestFacts(reason=reason, amount_minor=asked, evidence=evidence, refund_method=method)
