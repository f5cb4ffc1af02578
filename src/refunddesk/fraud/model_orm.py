"""Stored fraud models: one row per trained version of a tenant's model."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, false, text
from sqlalchemy.orm import Mapped, mapped_column

from refunddesk.db.base import Base


class FraudModel(Base):
    """A trained model of one tenant: LightGBM text, features, thresholds, hold-out metrics.

    At most one version per tenant is active; without one the shipped cold-start model scores.
    """

    __tablename__ = "fraud_models"
    __table_args__ = (
        Index(
            "uq_fraud_models_tenant_active",
            "tenant_id",
            unique=True,
            sqlite_where=text("active = 1"),
            postgresql_where=text("active"),
        ),
    )

    tenant_id: Mapped[str] = mapped_column(String(26), ForeignKey("tenants.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    created_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(16))  # 'simulator' | 'labels'
    actor: Mapped[str] = mapped_column(String(200))
    fingerprint: Mapped[str] = mapped_column(String(16))
    feature_names: Mapped[list[str]] = mapped_column(JSON)
    thresholds: Mapped[dict[str, Any]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    model: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
