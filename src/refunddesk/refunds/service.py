"""Refund use cases: request, decide, cancel, retry, and read."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, and_, bindparam, func, insert, select
from sqlalchemy.orm import Session

from refunddesk.core.clock import Clock, as_utc
from refunddesk.core.errors import (
    CurrencyMismatch,
    IdempotencyConflict,
    IllegalTransition,
    Invalid,
    NotFound,
    OverBudget,
)
from refunddesk.core.ids import new_id, new_reference
from refunddesk.db.base import table_of
from refunddesk.jobs.queue import enqueue
from refunddesk.orders.orm import Order, OrderLine
from refunddesk.orders.service import committed_minor, find_order
from refunddesk.refunds.domain import (
    RELEASES_BUDGET,
    EventType,
    RefundStatus,
    check_budget,
    decide,
)
from refunddesk.refunds.orm import Refund, RefundEvent, RefundLine
from refunddesk.refunds.schemas import (
    RefundCreate,
    RefundEventPublic,
    RefundLinePublic,
    RefundPage,
    RefundPublic,
)

PAYOUT_JOB = "payout"
SYSTEM = "system"


class UnknownOrder(Invalid):
    code = "unknown_order"
    title = "Unknown order"


class InvalidCursor(Invalid):
    code = "invalid_cursor"
    title = "Invalid cursor"
    status = 400


@dataclass(frozen=True, slots=True)
class IntakeConfig:
    window_days: int
    job_max_attempts: int


def request_hash(data: RefundCreate) -> str:
    canonical = json.dumps(data.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def find_by_idempotency_key(session: Session, *, tenant_id: str, key: str) -> Refund | None:
    return session.scalars(
        select(Refund).where(Refund.tenant_id == tenant_id, Refund.idempotency_key == key)
    ).first()


def _replay(
    session: Session, tenant_id: str, refund_id: str, stored: str | None, digest: str
) -> tuple[Refund, bool]:
    if stored != digest:
        raise IdempotencyConflict(
            "this Idempotency-Key was used for a different request; use a new key",
            field="Idempotency-Key",
        )
    return get_refund(session, tenant_id=tenant_id, refund_id=refund_id), False


# Intake is the hottest path: its statements are built once, with bind parameters, so each
# request only binds values and runs SQL the engine has compiled before.
_T: BindParameter[str] = bindparam("tenant_id")
_ORDER: BindParameter[str] = bindparam("order_id")
_ORDER_FOR_INTAKE = select(
    Order.id, Order.currency, Order.total_minor, Order.purchased_at, Order.delivered_at
).where(Order.tenant_id == _T, Order.external_id == bindparam("external_id"))
_ORDER_FOR_INTAKE_LOCKED = _ORDER_FOR_INTAKE.with_for_update()
_REFUND_BY_KEY = select(Refund.id, Refund.request_hash).where(
    Refund.tenant_id == _T, Refund.idempotency_key == bindparam("key")
)
# Plain inequalities, not NOT IN (...): an expanding IN list is re-rendered on every call.
_HOLDS_BUDGET = and_(*(Refund.status != str(s) for s in sorted(RELEASES_BUDGET)))
_COMMITTED = select(func.coalesce(func.sum(Refund.amount_minor), 0)).where(
    Refund.tenant_id == _T, Refund.order_id == _ORDER, _HOLDS_BUDGET
)
_ORDER_LINES = select(OrderLine.sku, OrderLine.quantity, OrderLine.unit_price_minor).where(
    OrderLine.tenant_id == _T, OrderLine.order_id == _ORDER
)
_REFUNDED_QUANTITIES = (
    select(RefundLine.sku, func.sum(RefundLine.quantity))
    .join(Refund, (Refund.tenant_id == RefundLine.tenant_id) & (Refund.id == RefundLine.refund_id))
    .where(Refund.tenant_id == _T, Refund.order_id == _ORDER, _HOLDS_BUDGET)
    .group_by(RefundLine.sku)
)
_INSERT_REFUND = insert(table_of(Refund))
_INSERT_LINE = insert(table_of(RefundLine))
_INSERT_EVENT = insert(table_of(RefundEvent))
_REFUND_COLUMNS = [c.key for c in table_of(Refund).columns]
_LINE_COLUMNS = [c.key for c in table_of(RefundLine).columns]


def _row(obj: object, columns: list[str]) -> dict[str, Any]:
    return {key: getattr(obj, key) for key in columns}


def _priced_lines(
    session: Session,
    tenant_id: str,
    order_id: str,
    external_id: str,
    refund_id: str,
    data: RefundCreate,
) -> list[RefundLine]:
    """Price requested lines from the order; quantities may not exceed what is left."""
    assert data.lines is not None
    params = {"tenant_id": tenant_id, "order_id": order_id}
    by_sku = {sku: (qty, price) for sku, qty, price in session.execute(_ORDER_LINES, params)}
    already = {sku: int(qty) for sku, qty in session.execute(_REFUNDED_QUANTITIES, params)}
    priced = []
    for index, line in enumerate(data.lines):
        ordered = by_sku.get(line.sku)
        if ordered is None:
            raise Invalid(
                f"order {external_id} has no line with sku {line.sku}",
                field=f"lines[{index}].sku",
            )
        quantity, unit_price = ordered
        left = quantity - already.get(line.sku, 0)
        if line.quantity > left:
            raise OverBudget(
                f"sku {line.sku}: {line.quantity} requested but only {left} of "
                f"{quantity} left to refund",
                field=f"lines[{index}].quantity",
            )
        priced.append(
            RefundLine(
                tenant_id=tenant_id,
                refund_id=refund_id,
                line_no=index + 1,
                sku=line.sku,
                quantity=line.quantity,
                reason=str(line.reason or data.reason),
                condition=line.condition,
                amount_minor=line.quantity * unit_price,
            )
        )
    return priced


def request_refund(
    session: Session,
    *,
    clock: Clock,
    config: IntakeConfig,
    tenant_id: str,
    data: RefundCreate,
    actor: str,
    idempotency_key: str | None = None,
) -> tuple[Refund, bool]:
    """Create a refund, decide it, and enqueue its payout if approved.

    Returns the refund and whether it was created now (False: an idempotent replay).
    Call inside a write transaction: the order row is locked so that concurrent refunds
    on one order can never together exceed what was paid.
    """
    digest = request_hash(data)
    conn = session.connection()  # Core statements: no ORM loading on the hot path
    order = conn.execute(
        _ORDER_FOR_INTAKE_LOCKED, {"tenant_id": tenant_id, "external_id": data.order_id}
    ).first()
    if idempotency_key is not None:
        seen = conn.execute(
            _REFUND_BY_KEY, {"tenant_id": tenant_id, "key": idempotency_key}
        ).first()
        if seen is not None:
            return _replay(session, tenant_id, seen.id, seen.request_hash, digest)
    if order is None:
        raise UnknownOrder(f"no order {data.order_id} for this retailer", field="order_id")
    if data.currency is not None and data.currency != order.currency:
        raise CurrencyMismatch(
            f"the order is in {order.currency}, the refund in {data.currency}", field="currency"
        )

    now = clock.now()
    refund_id = new_id()
    lines = (
        _priced_lines(session, tenant_id, order.id, data.order_id, refund_id, data)
        if data.lines
        else []
    )
    amount = sum(li.amount_minor for li in lines) if lines else (data.amount_minor or 0)
    committed = conn.execute(_COMMITTED, {"tenant_id": tenant_id, "order_id": order.id})
    check_budget(
        paid_minor=order.total_minor,
        requested_minor=amount,
        committed_minor=int(committed.scalar_one()),
    )
    decision = decide(
        now=now,
        purchased_at=as_utc(order.purchased_at),
        delivered_at=as_utc(order.delivered_at) if order.delivered_at else None,
        window_days=config.window_days,
    )
    refund = Refund(
        tenant_id=tenant_id,
        id=refund_id,
        order_id=order.id,
        reference=new_reference(),
        status=str(RefundStatus.REQUESTED),
        reason=str(data.reason),
        channel=str(data.channel),
        amount_minor=amount,
        currency=order.currency,
        note=data.note,
        idempotency_key=idempotency_key,
        request_hash=digest,
        decision_reasons=list(decision.reasons),
        created_at=now,
        updated_at=now,
        event_count=0,
        approvals_required=0,
        lines=lines,
    )
    refund.record(
        EventType.REQUESTED,
        actor=actor,
        at=now,
        data={
            "amount_minor": amount,
            "currency": order.currency,
            "reason": str(data.reason),
            "channel": str(data.channel),
            "lines": [{"sku": li.sku, "quantity": li.quantity} for li in lines],
        },
    )
    refund.transition(
        decision.status, actor=SYSTEM, at=now, data={"reasons": list(decision.reasons)}
    )
    # The aggregate decided; persist it with bulk INSERTs rather than a unit-of-work flush.
    conn.execute(_INSERT_REFUND, [_row(refund, _REFUND_COLUMNS)])
    if lines:
        conn.execute(_INSERT_LINE, [_row(li, _LINE_COLUMNS) for li in lines])
    conn.execute(_INSERT_EVENT, [e.as_row() for e in refund.pending_events])
    refund.pending_events.clear()
    if decision.status is RefundStatus.APPROVED:
        _enqueue_payout(session, refund, now, config)
    return refund, True


def _enqueue_payout(session: Session, refund: Refund, now: datetime, config: IntakeConfig) -> None:
    enqueue(
        session,
        kind=PAYOUT_JOB,
        tenant_id=refund.tenant_id,
        now=now,
        payload={"refund_id": refund.id},
        max_attempts=config.job_max_attempts,
    )


def load_for_update(session: Session, *, tenant_id: str, refund_id: str) -> Refund:
    refund = session.scalars(
        select(Refund)
        .where(Refund.tenant_id == tenant_id, Refund.id == refund_id)
        .with_for_update()
    ).first()
    if refund is None:
        raise NotFound(f"no refund {refund_id}")
    return refund


def approve(
    session: Session,
    *,
    clock: Clock,
    config: IntakeConfig,
    tenant_id: str,
    refund_id: str,
    actor: str,
    note: str | None = None,
) -> Refund:
    """Approve a refund under review (or after its return) and queue its payout."""
    refund = load_for_update(session, tenant_id=tenant_id, refund_id=refund_id)
    now = clock.now()
    refund.transition(RefundStatus.APPROVED, actor=actor, at=now, data={"note": note})
    _enqueue_payout(session, refund, now, config)
    return refund


def reject(
    session: Session, *, clock: Clock, tenant_id: str, refund_id: str, actor: str, reason: str
) -> Refund:
    refund = load_for_update(session, tenant_id=tenant_id, refund_id=refund_id)
    refund.transition(RefundStatus.REJECTED, actor=actor, at=clock.now(), data={"reason": reason})
    return refund


def cancel(
    session: Session,
    *,
    clock: Clock,
    tenant_id: str,
    refund_id: str,
    actor: str,
    note: str | None = None,
) -> Refund:
    refund = load_for_update(session, tenant_id=tenant_id, refund_id=refund_id)
    refund.transition(RefundStatus.CANCELED, actor=actor, at=clock.now(), data={"note": note})
    return refund


def retry_payout(
    session: Session,
    *,
    clock: Clock,
    config: IntakeConfig,
    tenant_id: str,
    refund_id: str,
    actor: str,
) -> Refund:
    """Send a failed refund's payout again; its budget is checked anew since failing freed it."""
    refund = load_for_update(session, tenant_id=tenant_id, refund_id=refund_id)
    if refund.state is not RefundStatus.FAILED:
        # approved -> processing is legal for the worker, but a retry of a refund that has not
        # failed would queue a second payout for it.
        raise IllegalTransition(
            f"only a failed refund's payout can be retried; this one is {refund.status}",
            current=refund.status,
            target=str(RefundStatus.PROCESSING),
        )
    order = session.scalars(
        select(Order)
        .where(Order.tenant_id == tenant_id, Order.id == refund.order_id)
        .with_for_update()
    ).one()
    # While failed, the refund holds no budget; another refund may have taken it meanwhile.
    check_budget(
        paid_minor=order.total_minor,
        requested_minor=refund.amount_minor,
        committed_minor=committed_minor(session, tenant_id=tenant_id, order_id=order.id),
    )
    now = clock.now()
    refund.transition(RefundStatus.PROCESSING, actor=actor, at=now, data={"retry": True})
    _enqueue_payout(session, refund, now, config)
    return refund


def get_refund(session: Session, *, tenant_id: str, refund_id: str) -> Refund:
    refund = session.scalars(
        select(Refund).where(Refund.tenant_id == tenant_id, Refund.id == refund_id)
    ).first()
    if refund is None:
        raise NotFound(f"no refund {refund_id}")
    return refund


def to_public(refund: Refund, order_external_id: str) -> RefundPublic:
    return RefundPublic(
        id=refund.id,
        reference=refund.reference,
        status=RefundStatus(refund.status),
        order_id=order_external_id,
        amount_minor=refund.amount_minor,
        currency=refund.currency,
        reason=refund.reason,
        channel=refund.channel,
        note=refund.note,
        lines=[
            RefundLinePublic(
                sku=li.sku,
                quantity=li.quantity,
                reason=li.reason,
                condition=li.condition,
                amount_minor=li.amount_minor,
            )
            for li in refund.lines
        ],
        decision_reasons=list(refund.decision_reasons or []),
        created_at=refund.created_at,
        updated_at=refund.updated_at,
    )


def external_ids(session: Session, tenant_id: str, order_ids: set[str]) -> dict[str, str]:
    if not order_ids:
        return {}
    rows = session.execute(
        select(Order.id, Order.external_id).where(
            Order.tenant_id == tenant_id, Order.id.in_(order_ids)
        )
    )
    return {oid: ext for oid, ext in rows}


_READ_REFUND = (
    select(table_of(Refund), Order.external_id)
    .join(Order, (Order.tenant_id == Refund.tenant_id) & (Order.id == Refund.order_id))
    .where(Refund.tenant_id == _T, Refund.id == bindparam("refund_id"))
)
_READ_LINES = (
    select(
        RefundLine.sku,
        RefundLine.quantity,
        RefundLine.reason,
        RefundLine.condition,
        RefundLine.amount_minor,
    )
    .where(RefundLine.tenant_id == _T, RefundLine.refund_id == bindparam("refund_id"))
    .order_by(RefundLine.line_no)
)


def read_refund(session: Session, *, tenant_id: str, refund_id: str) -> RefundPublic:
    """A refund as the API shows it, in two indexed queries and no ORM objects (hot path)."""
    conn = session.connection()
    params = {"tenant_id": tenant_id, "refund_id": refund_id}
    row = conn.execute(_READ_REFUND, params).mappings().first()
    if row is None:
        raise NotFound(f"no refund {refund_id}")
    lines = [
        RefundLinePublic(
            sku=li.sku,
            quantity=li.quantity,
            reason=li.reason,
            condition=li.condition,
            amount_minor=li.amount_minor,
        )
        for li in conn.execute(_READ_LINES, params)
    ]
    return RefundPublic(
        id=row["id"],
        reference=row["reference"],
        status=RefundStatus(row["status"]),
        order_id=row["external_id"],
        amount_minor=row["amount_minor"],
        currency=row["currency"],
        reason=row["reason"],
        channel=row["channel"],
        note=row["note"],
        lines=lines,
        decision_reasons=list(row["decision_reasons"] or []),
        created_at=as_utc(row["created_at"]),
        updated_at=as_utc(row["updated_at"]),
    )


def public(session: Session, refund: Refund) -> RefundPublic:
    ext = external_ids(session, refund.tenant_id, {refund.order_id})
    return to_public(refund, ext.get(refund.order_id, ""))


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": last_id}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value: Any = json.loads(base64.urlsafe_b64decode(padded.encode()))
        after = value["after"]
        if not isinstance(after, str) or len(after) != 26:
            raise ValueError(after)
        return after
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeError) as exc:
        raise InvalidCursor("the cursor is not one this API gave out", field="cursor") from exc


def list_refunds(
    session: Session,
    *,
    tenant_id: str,
    status: RefundStatus | None = None,
    order_external_id: str | None = None,
    created_after: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> RefundPage:
    """Newest first, keyset-paginated on the time-ordered id."""
    query = select(Refund).where(Refund.tenant_id == tenant_id)
    if status is not None:
        query = query.where(Refund.status == str(status))
    if order_external_id is not None:
        order = find_order(session, tenant_id=tenant_id, external_id=order_external_id)
        if order is None:
            return RefundPage(items=[], next_cursor=None)
        query = query.where(Refund.order_id == order.id)
    if created_after is not None:
        query = query.where(Refund.created_at > created_after)
    if cursor is not None:
        query = query.where(Refund.id < decode_cursor(cursor))
    rows = list(session.scalars(query.order_by(Refund.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    ext = external_ids(session, tenant_id, {r.order_id for r in rows})
    return RefundPage(
        items=[to_public(r, ext.get(r.order_id, "")) for r in rows],
        next_cursor=encode_cursor(rows[-1].id) if more and rows else None,
    )


def list_events(session: Session, *, tenant_id: str, refund_id: str) -> list[RefundEventPublic]:
    get_refund(session, tenant_id=tenant_id, refund_id=refund_id)
    events = session.scalars(
        select(RefundEvent)
        .where(RefundEvent.tenant_id == tenant_id, RefundEvent.refund_id == refund_id)
        .order_by(RefundEvent.seq)
    )
    return [
        RefundEventPublic(
            id=e.id,
            seq=e.seq,
            type=e.type,
            from_status=e.from_status,
            to_status=e.to_status,
            actor=e.actor,
            at=e.at,
            data=e.data,
        )
        for e in events
    ]
