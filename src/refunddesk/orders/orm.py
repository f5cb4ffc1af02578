"""Orders: the purchases refunds are checked against."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, ForeignKeyConstraint, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from refunddesk.db.base import Base


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        Index("uq_orders_tenant_external", "tenant_id", "external_id", unique=True),
        # A customer's refund history (policy rules, fraud signals) is found by email; covering
        # the orders' times and ids, so neither intake nor a batch scan reads order rows for it.
        Index(
            "ix_orders_tenant_customer_email", "tenant_id", "customer_email", "purchased_at", "id"
        ),
        # The console's search by the customer's phone number.
        Index("ix_orders_tenant_customer_phone", "tenant_id", "customer_phone"),
    )

    tenant_id: Mapped[str] = mapped_column(String(26), ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(100))
    customer_email: Mapped[str] = mapped_column(String(320))
    customer_phone: Mapped[str | None] = mapped_column(String(32))
    customer_name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    shipping_minor: Mapped[int] = mapped_column(BigInteger)
    tax_minor: Mapped[int] = mapped_column(BigInteger)
    # What was paid: lines + shipping + tax; the ceiling of all refunds on the order.
    total_minor: Mapped[int] = mapped_column(BigInteger)
    payment_method: Mapped[str] = mapped_column(String(32))
    payment_gateway: Mapped[str] = mapped_column(String(32))
    payment_reference: Mapped[str] = mapped_column(String(200))
    purchased_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    # Optional fraud signals from the retailer (issue #7); refunddesk.fraud reads them.
    customer_ref: Mapped[str | None] = mapped_column(String(200))
    customer_since: Mapped[datetime | None]
    shipping_address: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    billing_address: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    ip_address: Mapped[str | None] = mapped_column(String(45))
    device_id: Mapped[str | None] = mapped_column(String(200))
    payment_fingerprint: Mapped[str | None] = mapped_column(String(128))
    payment_last4: Mapped[str | None] = mapped_column(String(4))

    lines: Mapped[list[OrderLine]] = relationship(
        back_populates="order",
        order_by="OrderLine.line_no",
        cascade="all, delete-orphan",
        lazy="selectin",
    )


class OrderLine(Base):
    __tablename__ = "order_lines"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "order_id"], ["orders.tenant_id", "orders.id"]),
    )

    tenant_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    sku: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(300))
    category: Mapped[str] = mapped_column(String(100))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_minor: Mapped[int] = mapped_column(BigInteger)
    weight_grams: Mapped[int | None] = mapped_column(Integer)

    order: Mapped[Order] = relationship(back_populates="lines")
