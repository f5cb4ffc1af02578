"""Customer notifications as stored: settings, templates, preferences, messages, attempts."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    Boolean,
    Date,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    false,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from refunddesk.db.base import Base


class NotificationSettings(Base):
    """A retailer's branding and defaults for customer messages (one row per tenant)."""

    __tablename__ = "notification_settings"

    tenant_id: Mapped[str] = mapped_column(String(26), ForeignKey("tenants.id"), primary_key=True)
    brand_color: Mapped[str] = mapped_column(String(7), server_default="#1f6feb")
    default_locale: Mapped[str] = mapped_column(String(16), server_default="en")
    reply_to: Mapped[str | None] = mapped_column(String(320))
    email_enabled: Mapped[bool] = mapped_column(Boolean, server_default=true())
    sms_enabled: Mapped[bool] = mapped_column(Boolean, server_default=true())
    updated_at: Mapped[datetime]


class NotificationTemplate(Base):
    """A retailer's own wording for one message kind, channel and language."""

    __tablename__ = "notification_templates"
    __table_args__ = (
        Index(
            "uq_notification_templates_kind",
            "tenant_id",
            "kind",
            "channel",
            "locale",
            unique=True,
        ),
    )

    tenant_id: Mapped[str] = mapped_column(String(26), ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(8))
    locale: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str | None] = mapped_column(Text)
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime]


class CustomerPreference(Base):
    """What one customer of one retailer wants to hear, where and in which language."""

    __tablename__ = "customer_notification_preferences"

    tenant_id: Mapped[str] = mapped_column(String(26), ForeignKey("tenants.id"), primary_key=True)
    # Lower-cased: customers are found by email, case-insensitively.
    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    email_enabled: Mapped[bool] = mapped_column(Boolean, server_default=true())
    sms_enabled: Mapped[bool] = mapped_column(Boolean, server_default=true())
    opted_out: Mapped[bool] = mapped_column(Boolean, server_default=false())
    locale: Mapped[str | None] = mapped_column(String(16))
    updated_at: Mapped[datetime]


class Message(Base):
    """One customer message caused by one refund event on one channel."""

    __tablename__ = "messages"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "refund_id"], ["refunds.tenant_id", "refunds.id"]),
        # Never two messages for the same event and channel, whatever is retried or re-run.
        Index("uq_messages_tenant_event_channel", "tenant_id", "event_id", "channel", unique=True),
        Index("ix_messages_tenant_refund", "tenant_id", "refund_id", "created_at"),
    )

    tenant_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    refund_id: Mapped[str] = mapped_column(String(26))
    event_id: Mapped[str] = mapped_column(String(26))
    channel: Mapped[str] = mapped_column(String(8))  # email | sms
    recipient: Mapped[str | None] = mapped_column(String(320))
    locale: Mapped[str] = mapped_column(String(16))
    template: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str | None] = mapped_column(Text)
    # Rendered once, when the event is dispatched: every retry sends the same words.
    body_text: Mapped[str | None] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    # queued -> sent | failed (gave up); skipped: opted out, no address, channel off
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    segments: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    provider_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class MessageAttempt(Base):
    """One try at sending a message, as the agents see it."""

    __tablename__ = "message_attempts"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "message_id"], ["messages.tenant_id", "messages.id"]),
        Index("ix_message_attempts_tenant_message", "tenant_id", "message_id", "attempt_no"),
    )

    tenant_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(26))
    attempt_no: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # sent | failed
    error: Mapped[str | None] = mapped_column(Text)
    provider_id: Mapped[str | None] = mapped_column(String(200))
    at: Mapped[datetime]


class DelayAlert(Base):
    """The one delay alert a refund gets: its presence is the 'already alerted' marker."""

    __tablename__ = "refund_delay_alerts"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "refund_id"], ["refunds.tenant_id", "refunds.id"]),
    )

    tenant_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    refund_id: Mapped[str] = mapped_column(String(26), primary_key=True)
    expected_on: Mapped[date] = mapped_column(Date)
    event_id: Mapped[str] = mapped_column(String(26))
    alerted_at: Mapped[datetime]
