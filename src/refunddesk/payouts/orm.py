"""Payout attempts, tenants' gateway accounts, and gateway webhooks as received."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from refunddesk.db.base import Base


class Payout(Base):
    """One attempt to pay a refund back, sent once per idempotency key."""

    __tablename__ = "payouts"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "refund_id"], ["refunds.tenant_id", "refunds.id"]),
        Index("uq_payouts_tenant_idempotency", "tenant_id", "idempotency_key", unique=True),
        Index("ix_payouts_tenant_refund", "tenant_id", "refund_id", "attempt"),
        Index("ix_payouts_tenant_gateway_reference", "tenant_id", "gateway_reference"),
        Index("ix_payouts_status_updated", "status", "updated_at"),
    )

    tenant_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    refund_id: Mapped[str] = mapped_column(String(26))
    attempt: Mapped[int] = mapped_column(Integer)
    idempotency_key: Mapped[str] = mapped_column(String(100))
    gateway: Mapped[str] = mapped_column(String(32))
    method: Mapped[str] = mapped_column(String(32))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # sent (recorded before the gateway is called) -> pending (accepted, answer to come)
    # -> succeeded | failed; succeeded -> reversed (taken back later)
    status: Mapped[str] = mapped_column(String(16))
    gateway_reference: Mapped[str | None] = mapped_column(String(200))
    failure_reason: Mapped[str | None] = mapped_column(String(64))
    failure_message: Mapped[str | None] = mapped_column(Text)
    arn: Mapped[str | None] = mapped_column(String(64))
    # Where the money goes when it is not the original payment (bank transfer details).
    destination: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # When the customer should see the money, in the tenant's business days.
    arrival_earliest: Mapped[date | None] = mapped_column(Date)
    arrival_latest: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class GatewayAccount(Base):
    """A tenant's account at a payment gateway; orders name it in payment.gateway."""

    __tablename__ = "gateway_accounts"
    __table_args__ = (Index("ix_gateway_accounts_provider", "provider"),)

    tenant_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    # The adapter's settings, secrets included; never shown back in full.
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Payment methods this account pays out when an order names no gateway of its own.
    methods: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class GatewayWebhook(Base):
    """A verified gateway webhook, stored raw before it is processed."""

    __tablename__ = "gateway_webhooks"
    __table_args__ = (
        Index(
            "uq_gateway_webhooks_event",
            "tenant_id",
            "account",
            "event_id",
            unique=True,
        ),
        Index("ix_gateway_webhooks_tenant_received", "tenant_id", "received_at"),
    )

    tenant_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    account: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(100))
    headers: Mapped[dict[str, Any]] = mapped_column(JSON)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    # The verified notification as parsed on receipt; processing reads this, not the body,
    # so a late run needs no signature check that may have expired.
    notification: Mapped[dict[str, Any]] = mapped_column(JSON)
    # received -> processed | ignored | failed (error says why; it can be re-run)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]
