"""Return authorizations (RMA) as stored, one per refund that needs the goods back."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from refunddesk.db.base import Base


class ReturnRecord(Base):
    __tablename__ = "return_authorizations"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "refund_id"], ["refunds.tenant_id", "refunds.id"]),
        Index("uq_return_authorizations_tenant_refund", "tenant_id", "refund_id", unique=True),
        Index("ix_return_authorizations_tenant_tracking", "tenant_id", "tracking_number"),
        Index("ix_return_authorizations_status_expires", "status", "expires_at"),
    )

    tenant_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    refund_id: Mapped[str] = mapped_column(String(26))
    status: Mapped[str] = mapped_column(String(32))
    currency: Mapped[str] = mapped_column(String(3))
    carrier: Mapped[str | None] = mapped_column(String(100))
    tracking_number: Mapped[str | None] = mapped_column(String(100))
    expires_at: Mapped[datetime]
    received_at: Mapped[datetime | None]
    inspected_at: Mapped[datetime | None]
    settlement: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The parcel's weight as scanned at the warehouse (fraud: empty box, swapped goods).
    returned_weight_grams: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    lines: Mapped[list[ReturnLineRecord]] = relationship(
        order_by="ReturnLineRecord.sku", cascade="all, delete-orphan", lazy="selectin"
    )


class ReturnLineRecord(Base):
    __tablename__ = "return_lines"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "return_id"],
            ["return_authorizations.tenant_id", "return_authorizations.id"],
        ),
    )

    tenant_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    return_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    sku: Mapped[str] = mapped_column(String(100), primary_key=True)
    quantity: Mapped[int] = mapped_column(Integer)
    unit_refund_minor: Mapped[int] = mapped_column(BigInteger)
    received_quantity: Mapped[int | None] = mapped_column(Integer)
    condition: Mapped[str | None] = mapped_column(String(32))
    # Inspection verdicts for this line (accept, reject, partial), as returns.domain has them.
    inspection: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)


class ScanException(Base):
    """A warehouse scan that could not be applied, kept until someone looks at it.

    kind: ``unmatched`` (no return of this tenant has the tracking number), ``bad_row``
    (the row could not be read) or ``error`` (the parcel matched but its receipt was refused).
    """

    __tablename__ = "return_scan_exceptions"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        Index("ix_return_scan_exceptions_tenant_created", "tenant_id", "created_at"),
    )

    tenant_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(500))
    line: Mapped[int | None] = mapped_column(Integer)
    tracking_number: Mapped[str | None] = mapped_column(String(100))
    sku: Mapped[str | None] = mapped_column(String(100))
    quantity: Mapped[int | None] = mapped_column(Integer)
    condition: Mapped[str | None] = mapped_column(String(32))
    raw: Mapped[list[str] | None] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
