"""Queue claims (who works on which refund) and each user's saved queue filters."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, ForeignKeyConstraint, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from refunddesk.db.base import Base


class Claim(Base):
    """One refund claimed by one user; a refund has at most one claim."""

    __tablename__ = "queue_claims"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "refund_id"], ["refunds.tenant_id", "refunds.id"]),
        Index("ix_queue_claims_tenant_user", "tenant_id", "user_id", "claimed_at"),
    )

    tenant_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    refund_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(26), ForeignKey("users.id"))
    claimed_at: Mapped[datetime]


class SavedFilter(Base):
    """A named queue view (queue + search terms) a user keeps for one tenant."""

    __tablename__ = "saved_filters"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        Index("uq_saved_filters_tenant_user_name", "tenant_id", "user_id", "name", unique=True),
    )

    tenant_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(26), ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(100))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
