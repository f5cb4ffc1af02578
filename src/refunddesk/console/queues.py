"""Work queues: a tenant's refunds that need a person, most urgent first, page by page.

Urgency is the time to breach (refund_clocks.next_due_at, kept by refunddesk.sla), then
value. Pages are keyset-paginated on (due, amount, id) so page 1,000 costs what page 1 does.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVarTuple

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select, true
from sqlalchemy.orm import Session

from refunddesk.auth.orm import User
from refunddesk.console.orm import Claim
from refunddesk.core.clock import as_utc
from refunddesk.core.errors import Invalid
from refunddesk.escalation.domain import Status as EscalationStatus
from refunddesk.escalation.orm import Escalation
from refunddesk.orders.orm import Order
from refunddesk.refunds.approvals import Approval
from refunddesk.refunds.domain import RefundStatus
from refunddesk.refunds.orm import Refund
from refunddesk.sla.orm import RefundClock

PAGE_SIZE = 50
MAX_PAGE = 200
RISKY = ("medium", "high")
# A refund under fraud review has not been paid yet.
FRAUD_STATES = (
    RefundStatus.REQUESTED,
    RefundStatus.PENDING_REVIEW,
    RefundStatus.AWAITING_RETURN,
    RefundStatus.RETURN_RECEIVED,
    RefundStatus.APPROVED,
)

_Ts = TypeVarTuple("_Ts")


class Queue(StrEnum):
    REVIEW = "review"  # waiting for a first decision
    APPROVAL = "approval"  # four eyes: approved once, waiting for a second approver
    FAILED = "failed"  # payouts that failed
    ESCALATIONS = "escalations"  # open escalations (refunddesk.escalation)
    FRAUD = "fraud"  # medium or high fraud risk, not paid yet


QUEUE_LABELS = {
    Queue.REVIEW: "Review",
    Queue.APPROVAL: "Second approval",
    Queue.FAILED: "Failed payouts",
    Queue.ESCALATIONS: "Escalations",
    Queue.FRAUD: "Fraud review",
}


class Scope(StrEnum):
    ALL = "all"
    MINE = "mine"
    UNCLAIMED = "unclaimed"


@dataclass(frozen=True, slots=True)
class Filter:
    """What a queue page shows; saved filters store these fields."""

    queue: Queue = Queue.REVIEW
    scope: Scope = Scope.ALL
    min_amount_minor: int | None = None
    risk: str | None = None  # "medium" | "high"

    def as_params(self) -> dict[str, str]:
        out = {"queue": str(self.queue), "scope": str(self.scope)}
        if self.min_amount_minor is not None:
            out["min_amount"] = str(self.min_amount_minor)
        if self.risk:
            out["risk"] = self.risk
        return out

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Filter:
        """A filter from query or stored parameters; Invalid names the bad one."""
        try:
            queue = Queue(str(params.get("queue") or Queue.REVIEW))
        except ValueError:
            raise Invalid("no such queue", field="queue") from None
        try:
            scope = Scope(str(params.get("scope") or Scope.ALL))
        except ValueError:
            raise Invalid("scope is all, mine or unclaimed", field="scope") from None
        raw = str(params.get("min_amount") or "").strip()
        if raw and not (raw.isascii() and raw.isdigit() and len(raw) <= 15):
            raise Invalid("a minimum amount is a whole number of minor units", field="min_amount")
        risk = str(params.get("risk") or "") or None
        if risk is not None and risk not in RISKY:
            raise Invalid("risk is medium or high", field="risk")
        return cls(queue, scope, int(raw) if raw else None, risk)


@dataclass(frozen=True, slots=True)
class QueueItem:
    refund_id: str
    reference: str
    status: str
    amount_minor: int
    currency: str
    created_at: datetime
    risk_level: str | None
    due_at: datetime | None
    order_external_id: str
    customer_name: str
    claimed_by: str | None
    claimed_by_name: str | None


@dataclass(frozen=True, slots=True)
class QueuePage:
    items: list[QueueItem]
    next_cursor: str | None


def _encode(due: datetime | None, amount: int, refund_id: str) -> str:
    data = [None if due is None else as_utc(due).isoformat(), amount, refund_id]
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime | None, int, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        due, amount, refund_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not (isinstance(amount, int) and isinstance(refund_id, str) and len(refund_id) <= 26):
            raise ValueError(cursor)
        return (None if due is None else as_utc(datetime.fromisoformat(due))), amount, refund_id
    except (ValueError, TypeError, binascii.Error, UnicodeError, AttributeError) as exc:
        raise Invalid("that page link is not one the console gave out", field="after") from exc


def _queue_condition(queue: Queue, tenant_id: str, *, walk: bool = False) -> ColumnElement[bool]:
    """Which refunds are in the queue.

    walk: the rows are read along the clocks' deadline index; the refund's own columns are
    then compared as `column || ''`, which keeps SQLite from reading the (much longer)
    status or risk index and sorting all of it instead.
    """
    status: ColumnElement[str] = (Refund.status + "") if walk else Refund.status.expression
    risk: ColumnElement[str | None] = (
        (Refund.risk_level + "") if walk else Refund.risk_level.expression
    )
    approved_once = exists().where(
        Approval.tenant_id == Refund.tenant_id, Approval.refund_id == Refund.id
    )
    if queue is Queue.REVIEW:
        return and_(status == str(RefundStatus.PENDING_REVIEW), ~approved_once)
    if queue is Queue.APPROVAL:
        return and_(status == str(RefundStatus.PENDING_REVIEW), approved_once)
    if queue is Queue.FAILED:
        return status == str(RefundStatus.FAILED)
    if queue is Queue.FRAUD:
        return and_(risk.in_(RISKY), status.in_([str(s) for s in FRAUD_STATES]))
    return Refund.id.in_(
        select(Escalation.refund_id).where(
            Escalation.tenant_id == tenant_id, Escalation.status == str(EscalationStatus.OPEN)
        )
    )


def _filtered(query: Select[*_Ts], *, flt: Filter, user_id: str) -> Select[*_Ts]:
    """The filter's scope, minimum amount and risk on a query over refunds."""
    if flt.scope is not Scope.ALL:
        claimed = select(Claim.user_id).where(
            Claim.tenant_id == Refund.tenant_id, Claim.refund_id == Refund.id
        )
        if flt.scope is Scope.MINE:
            query = query.where(claimed.scalar_subquery() == user_id)
        else:
            query = query.where(~claimed.exists())
    if flt.min_amount_minor is not None:
        query = query.where(Refund.amount_minor >= flt.min_amount_minor)
    if flt.risk is not None:
        query = query.where(Refund.risk_level == flt.risk)
    return query


def _value_after(amount: int, refund_id: str) -> ColumnElement[bool]:
    return or_(
        Refund.amount_minor < amount, and_(Refund.amount_minor == amount, Refund.id > refund_id)
    )


def page(
    session: Session,
    *,
    tenant_id: str,
    user_id: str,
    flt: Filter,
    after: str | None = None,
    limit: int = PAGE_SIZE,
) -> QueuePage:
    """One page of the queue, most urgent first: nearest breach, then largest amount.

    Two index-driven parts: refunds with a running clock, walked along the clocks'
    (tenant, next_due_at) index so a page reads about a page of rows; then, once those run
    out, the few without one, by amount.
    """
    limit = max(1, min(limit, MAX_PAGE))
    cursor = _decode(after) if after else None
    # Open escalations and one's own claims are few: read them by refund and sort, rather
    # than walk every clock.
    if flt.queue is Queue.ESCALATIONS or flt.scope is Scope.MINE:
        return _small_page(
            session, tenant_id=tenant_id, user_id=user_id, flt=flt, cursor=cursor, limit=limit
        )
    condition = _queue_condition(flt.queue, tenant_id)
    walk = _queue_condition(flt.queue, tenant_id, walk=True)
    rows: list[tuple[str, int, datetime | None]] = []
    if cursor is None or cursor[0] is not None:
        due = RefundClock.next_due_at
        query = (
            select(Refund.id, Refund.amount_minor, due)
            .select_from(RefundClock)
            .join(
                Refund,
                and_(Refund.tenant_id == RefundClock.tenant_id, Refund.id == RefundClock.refund_id),
            )
            .where(RefundClock.tenant_id == tenant_id, due.is_not(None), walk)
        )
        if cursor is not None and cursor[0] is not None:
            after_due = cursor[0]
            query = query.where(
                due >= after_due,  # the index range; the rest picks up within equal deadlines
                or_(due > after_due, _value_after(cursor[1], cursor[2])),
            )
        query = _filtered(query, flt=flt, user_id=user_id)
        query = query.order_by(due, Refund.amount_minor.desc(), Refund.id).limit(limit + 1)
        rows = [
            (rid, amount, None if due_at is None else as_utc(due_at))
            for rid, amount, due_at in session.execute(query)
        ]
    if len(rows) <= limit:
        running = select(RefundClock.refund_id).where(
            RefundClock.tenant_id == Refund.tenant_id,
            RefundClock.refund_id == Refund.id,
            RefundClock.next_due_at.is_not(None),
        )
        rest = select(Refund.id, Refund.amount_minor).where(
            Refund.tenant_id == tenant_id, condition, ~running.exists()
        )
        if cursor is not None and cursor[0] is None:
            rest = rest.where(_value_after(cursor[1], cursor[2]))
        rest = _filtered(rest, flt=flt, user_id=user_id)
        rest = rest.order_by(Refund.amount_minor.desc(), Refund.id).limit(limit + 1 - len(rows))
        rows += [(row[0], row[1], None) for row in session.execute(rest)]
    return _finish(session, tenant_id=tenant_id, rows=rows, limit=limit)


def _small_page(
    session: Session,
    *,
    tenant_id: str,
    user_id: str,
    flt: Filter,
    cursor: tuple[datetime | None, int, str] | None,
    limit: int,
) -> QueuePage:
    """A queue of few refunds (open escalations): read them all by refund, sort, page."""
    due = RefundClock.next_due_at
    query = (
        select(Refund.id, Refund.amount_minor, due)
        .select_from(Refund)
        .outerjoin(
            RefundClock,
            and_(RefundClock.tenant_id == Refund.tenant_id, RefundClock.refund_id == Refund.id),
        )
        .where(Refund.tenant_id == tenant_id, _queue_condition(flt.queue, tenant_id))
    )
    if cursor is not None:
        after_due, amount, refund_id = cursor
        if after_due is None:
            query = query.where(due.is_(None), _value_after(amount, refund_id))
        else:
            query = query.where(
                or_(
                    due.is_(None),
                    due > after_due,
                    and_(due == after_due, _value_after(amount, refund_id)),
                )
            )
    if flt.scope is Scope.MINE:
        query = query.where(
            Refund.id.in_(
                select(Claim.refund_id).where(
                    Claim.tenant_id == tenant_id, Claim.user_id == user_id
                )
            )
        )
    query = _filtered(query, flt=flt, user_id=user_id)
    query = query.order_by(due.is_(None), due, Refund.amount_minor.desc(), Refund.id).limit(
        limit + 1
    )
    rows = [
        (row[0], row[1], None if row[2] is None else as_utc(row[2]))
        for row in session.execute(query)
    ]
    return _finish(session, tenant_id=tenant_id, rows=rows, limit=limit)


def _finish(
    session: Session,
    *,
    tenant_id: str,
    rows: list[tuple[str, int, datetime | None]],
    limit: int,
) -> QueuePage:
    more = len(rows) > limit
    rows = rows[:limit]
    details = _details(session, tenant_id=tenant_id, ids=[row[0] for row in rows])
    items = [details[row[0]] for row in rows if row[0] in details]
    next_cursor = None
    if more and rows:
        last = rows[-1]
        next_cursor = _encode(last[2], last[1], last[0])
    return QueuePage(items, next_cursor)


def _details(session: Session, *, tenant_id: str, ids: list[str]) -> dict[str, QueueItem]:
    if not ids:
        return {}
    query = (
        select(
            Refund.id,
            Refund.reference,
            Refund.status,
            Refund.amount_minor,
            Refund.currency,
            Refund.created_at,
            Refund.risk_level,
            Order.external_id,
            Order.customer_name,
            Claim.user_id,
            User.name,
            RefundClock.next_due_at,
        )
        .select_from(Refund)
        .join(Order, and_(Order.tenant_id == Refund.tenant_id, Order.id == Refund.order_id))
        .outerjoin(Claim, and_(Claim.tenant_id == Refund.tenant_id, Claim.refund_id == Refund.id))
        .outerjoin(User, User.id == Claim.user_id)
        .outerjoin(
            RefundClock,
            and_(RefundClock.tenant_id == Refund.tenant_id, RefundClock.refund_id == Refund.id),
        )
        .where(Refund.tenant_id == tenant_id, Refund.id.in_(ids))
    )
    out = {}
    for row in session.execute(query):
        out[row[0]] = QueueItem(
            refund_id=row[0],
            reference=row[1],
            status=row[2],
            amount_minor=row[3],
            currency=row[4],
            created_at=row[5],
            risk_level=row[6],
            order_external_id=row[7],
            customer_name=row[8],
            claimed_by=row[9],
            claimed_by_name=row[10],
            due_at=None if row[11] is None else as_utc(row[11]),
        )
    return out


def counts(
    session: Session, *, tenant_id: str, user_id: str, cap: int | None = None
) -> dict[Queue, int]:
    """How many refunds wait in each queue of the tenant (counting stops at cap, if given)."""
    out: dict[Queue, int] = {}
    for queue in Queue:
        rows = select(Refund.id).where(
            Refund.tenant_id == tenant_id, _queue_condition(queue, tenant_id)
        )
        if cap is not None:
            rows = rows.limit(cap)
        query = select(func.count()).select_from(rows.subquery())
        out[queue] = int(session.scalar(query) or 0)
    return out


def in_queue(session: Session, *, tenant_id: str, refund_id: str, queue: Queue) -> bool:
    query = select(true()).where(
        Refund.tenant_id == tenant_id, Refund.id == refund_id, _queue_condition(queue, tenant_id)
    )
    return session.scalar(query) is not None
