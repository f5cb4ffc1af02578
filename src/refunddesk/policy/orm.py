"""Policy versions as stored: the document's source text, numbered per tenant, never edited."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from refunddesk.db.base import Base


class PolicyVersion(Base):
    """One uploaded version of a tenant's policy; the tenant row names the active one."""

    __tablename__ = "policy_versions"

    tenant_id: Mapped[str] = mapped_column(String(26), ForeignKey("tenants.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    source: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(8))  # yaml | toml
    note: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(200))
    activated_at: Mapped[datetime | None]
    activated_by: Mapped[str | None] = mapped_column(String(200))
