"""Each refund's clocks as stored: deadlines precomputed, so scans are index range reads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKeyConstraint, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from refunddesk.db.base import Base


class RefundClock(Base):
    """The clocks of one refund (see sla/domain.py), kept in step with its status."""

    __tablename__ = "refund_clocks"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "refund_id"], ["refunds.tenant_id", "refunds.id"]),
        # Queues order by the nearest deadline (console), breaches are counted by day.
        Index("ix_refund_clocks_tenant_next_due", "tenant_id", "next_due_at"),
        # The escalation scan: rows whose next warning, breach or rule check is due.
        Index("ix_refund_clocks_tenant_next_check", "tenant_id", "next_check_at"),
        Index("ix_refund_clocks_tenant_breached", "tenant_id", "breached_at"),
    )

    tenant_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    refund_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    status: Mapped[str] = mapped_column(String(32))  # the refund's, as the clocks last saw it
    jurisdiction: Mapped[str] = mapped_column(String(8))
    clocks: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The earliest deadline among the running clocks; NULL when none runs.
    next_due_at: Mapped[datetime | None]
    # When the escalation scan must look at this refund next; NULL: nothing to look at.
    next_check_at: Mapped[datetime | None]
    # Escalation triggers that already fired ("near:decision", "payout_failed:7", ...).
    fired: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The first time any clock was found breached.
    breached_at: Mapped[datetime | None]
    # Customer contacts about this refund (tracking look-ups and contacts agents log).
    contacts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Repeated look-ups within an hour count once (a customer refreshing the page).
    last_contact_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


# The hooks that keep refund_clocks in step with every status change (after the model:
# they import it).
from refunddesk.sla import maintain as _maintain  # noqa: E402, F401
