"""The Refund aggregate as stored: every state change goes through Refund.transition()."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import Counter
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    and_,
    event,
    false,
    insert,
    text,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from refunddesk.core.ids import new_id
from refunddesk.db.base import Base, NativeFloat, table_of
from refunddesk.refunds.domain import RELEASES_BUDGET, EventType, RefundStatus, check_transition

TRANSITIONS_TOTAL = Counter(
    "refunddesk_refund_transitions_total", "Refund state changes", ["from_status", "to_status"]
)


class Refund(Base):
    __tablename__ = "refunds"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "order_id"], ["orders.tenant_id", "orders.id"]),
        Index("uq_refunds_tenant_idempotency", "tenant_id", "idempotency_key", unique=True),
        # A customer's history by order: covering what intake's policy and fraud features read
        # (no row lookups) and what batch scoring scans (an index-only scan, not the table).
        Index(
            "ix_refunds_tenant_order",
            "tenant_id",
            "order_id",
            "created_at",
            "status",
            "amount_minor",
        ),
        Index("ix_refunds_tenant_status", "tenant_id", "status", "id"),
        Index("ix_refunds_tenant_created", "tenant_id", "created_at", "id"),
        # Customers track by reference alone, across tenants, so it is unique desk-wide.
        Index("uq_refunds_reference", "reference", unique=True),
        # The fraud review queue: refunds of one risk level, oldest first (ids are time-ordered).
        Index("ix_refunds_tenant_risk", "tenant_id", "risk_level", "id"),
    )

    tenant_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(26))
    reference: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    note: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    decision_reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Set by the policy capability: the version that decided, its findings and amount breakdown.
    policy_version: Mapped[int | None] = mapped_column(Integer)
    findings: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    breakdown: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    approvals_required: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    refund_method: Mapped[str | None] = mapped_column(String(32))
    # The request as made, so any policy can replay it (backtest): amount asked for, evidence,
    # the method the customer chose.
    requested_minor: Mapped[int | None] = mapped_column(BigInteger)
    evidence: Mapped[list[str] | None] = mapped_column(JSON)
    requested_method: Mapped[str | None] = mapped_column(String(32))
    # An agent's (or the customer's) fallback after a failed payout: method, gateway and,
    # for a bank transfer, the account. Replaces the original payment for later attempts.
    payout_override: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    event_count: Mapped[int] = mapped_column(Integer, default=0)
    # The claim's carrier proof of delivery (signature, photo, scan), and the fraud risk set
    # at intake by refunddesk.fraud.scoring: score 0..1, level, reasons, versions.
    delivery_confirmation: Mapped[str | None] = mapped_column(String(16))
    risk_score: Mapped[float | None] = mapped_column(NativeFloat)
    risk_level: Mapped[str | None] = mapped_column(String(8))
    risk_reasons: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    risk_model_version: Mapped[str | None] = mapped_column(String(64))
    risk_rules_version: Mapped[str | None] = mapped_column(String(64))
    risk_scored_at: Mapped[datetime | None]

    lines: Mapped[list[RefundLine]] = relationship(
        order_by="RefundLine.line_no", cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def state(self) -> RefundStatus:
        return RefundStatus(self.status)

    def record(
        self,
        type_: EventType | str,
        *,
        actor: str,
        at: datetime,
        data: dict[str, Any] | None = None,
        from_status: str | None = None,
    ) -> NewEvent:
        """Append an immutable event to this refund's history."""
        self.event_count = (self.event_count or 0) + 1
        event = NewEvent(
            tenant_id=self.tenant_id,
            id=new_id(),
            refund_id=self.id,
            seq=self.event_count,
            type=str(type_),
            from_status=from_status,
            to_status=self.status,
            actor=actor,
            at=at,
            data=data or {},
        )
        self.pending_events.append(event)
        return event

    def transition(
        self, target: RefundStatus, *, actor: str, at: datetime, data: dict[str, Any] | None = None
    ) -> NewEvent:
        """Move to target if the transitions table allows it; record the move as an event."""
        current = self.state
        check_transition(current, target)
        self.status = str(target)
        self.updated_at = at
        TRANSITIONS_TOTAL.labels(str(current), str(target)).inc()
        return self.record(
            EventType.STATUS_CHANGED, actor=actor, at=at, data=data, from_status=str(current)
        )

    @property
    def pending_events(self) -> list[NewEvent]:
        """Events recorded but not yet stored; written when the session flushes."""
        pending: list[NewEvent] | None = self.__dict__.get("_pending_events")
        if pending is None:
            pending = []
            self.__dict__["_pending_events"] = pending
        return pending


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event recorded by the aggregate, not yet stored (a row of refund_events)."""

    tenant_id: str
    id: str
    refund_id: str
    seq: int
    type: str
    from_status: str | None
    to_status: str
    actor: str
    at: datetime
    data: dict[str, Any]
    # Handed to the notification dispatcher yet? (the outbox flag; demo data arrives True)
    dispatched: bool = False

    def as_row(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__slots__}


class RefundLine(Base):
    __tablename__ = "refund_lines"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "refund_id"], ["refunds.tenant_id", "refunds.id"]),
    )

    tenant_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    refund_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    sku: Mapped[str] = mapped_column(String(100))
    quantity: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(32))
    condition: Mapped[str | None] = mapped_column(String(32))
    amount_minor: Mapped[int] = mapped_column(BigInteger)


class RefundEvent(Base):
    """One immutable step in a refund's life: audit trail and customer timeline."""

    __tablename__ = "refund_events"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "refund_id"], ["refunds.tenant_id", "refunds.id"]),
        Index("uq_refund_events_tenant_refund_seq", "tenant_id", "refund_id", "seq", unique=True),
        Index("ix_refund_events_tenant_at", "tenant_id", "at"),
        # The desk's "latest events" spans tenants.
        Index("ix_refund_events_at", "at"),
        # The notification outbox: only events not yet dispatched, oldest first, across
        # tenants (like ix_refund_events_at); partial, so it stays as small as the backlog.
        Index(
            "ix_refund_events_undispatched",
            "at",
            sqlite_where=text("dispatched = 0"),
            postgresql_where=text("NOT dispatched"),
        ),
    )

    tenant_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    refund_id: Mapped[str] = mapped_column(String(26))
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(64))
    from_status: Mapped[str | None] = mapped_column(String(32))
    to_status: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime]
    data: Mapped[dict[str, Any]]
    dispatched: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


# Which refunds hold part of their order's budget, as SQL: the one definition every budget
# query uses. Plain inequalities, not NOT IN (...): an expanding IN list is re-rendered on
# every call, and these queries run on the intake hot path.
HOLDS_BUDGET = and_(*(Refund.status != str(s) for s in sorted(RELEASES_BUDGET)))

_INSERT_EVENTS = insert(table_of(RefundEvent))


@event.listens_for(Session, "after_flush")
def _store_recorded_events(session: Session, _ctx: object) -> None:
    """Store the events each Refund recorded, in the same transaction as its change.

    After the flush, so the refund rows they reference exist; one executemany, because
    events are append-only and need none of the unit of work's bookkeeping.
    """
    rows: list[dict[str, Any]] = []
    for obj in list(session.new) + list(session.dirty):
        if isinstance(obj, Refund):
            pending = obj.__dict__.get("_pending_events")
            if pending:
                rows.extend(e.as_row() for e in pending)
                pending.clear()
    if rows:
        session.connection().execute(_INSERT_EVENTS, rows)
