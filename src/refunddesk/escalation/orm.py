"""Escalations and their notes as stored."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKeyConstraint, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from refunddesk.db.base import Base


class Escalation(Base):
    """A refund raised to a tier (l1 agent, l2 supervisor, the retailer's finance)."""

    __tablename__ = "escalations"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "refund_id"], ["refunds.tenant_id", "refunds.id"]),
        # One open escalation per refund: rules that fire again add to it, several workers
        # scanning at once cannot open two.
        Index(
            "uq_escalations_tenant_refund_open",
            "tenant_id",
            "refund_id",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
        Index("ix_escalations_tenant_refund", "tenant_id", "refund_id", "created_at"),
        Index("ix_escalations_tenant_status_id", "tenant_id", "status", "id"),
        # Re-escalation of untouched escalations: an index range read per tenant.
        Index("ix_escalations_tenant_escalate_at", "tenant_id", "escalate_at"),
    )

    tenant_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    refund_id: Mapped[str] = mapped_column(String(26))
    tier: Mapped[str] = mapped_column(String(16))  # l1 | l2 | finance
    reason: Mapped[str] = mapped_column(String(32))  # the rule, or "manual"
    detail: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # open | resolved
    owner_id: Mapped[str | None] = mapped_column(String(26))  # a users.id
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # Someone acted on it last (note, assignment, tier change): the untouched timer restarts.
    touched_at: Mapped[datetime]
    # Up one tier at this time if still untouched; NULL when resolved or at the top tier.
    escalate_at: Mapped[datetime | None]
    resolution: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(200))
    note_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class EscalationNote(Base):
    """A note on an escalation: an agent's words, or what the system did."""

    __tablename__ = "escalation_notes"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "escalation_id"], ["escalations.tenant_id", "escalations.id"]
        ),
        Index("ix_escalation_notes_tenant_escalation", "tenant_id", "escalation_id", "at"),
    )

    tenant_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    escalation_id: Mapped[str] = mapped_column(String(26))
    kind: Mapped[str] = mapped_column(String(16))  # note | system
    body: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime]
