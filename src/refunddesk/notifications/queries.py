"""What agents see of a refund's customer messages: every message and every attempt."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from refunddesk.notifications.orm import Message, MessageAttempt


@dataclass(frozen=True, slots=True)
class MessageRow:
    """One line of the refund page's Messages table: an attempt, or a message never tried."""

    template: str
    channel: str
    recipient: str  # masked
    locale: str
    status: str
    attempt_no: int | None
    error: str | None
    at: datetime


def mask(recipient: str | None) -> str:
    """a***@example.com, +49******5678: enough for an agent to recognise, not to copy."""
    if not recipient:
        return "—"
    if "@" in recipient:
        local, _, domain = recipient.partition("@")
        return f"{local[:1]}***@{domain}"
    keep = recipient[-4:] if len(recipient) > 6 else ""
    return f"{recipient[:3]}{'*' * max(len(recipient) - 3 - len(keep), 1)}{keep}"


def messages_of_refund(session: Session, *, tenant_id: str, refund_id: str) -> list[MessageRow]:
    """Every attempt of every message of the refund, oldest first."""
    rows = session.execute(
        select(Message, MessageAttempt)
        .outerjoin(
            MessageAttempt,
            (MessageAttempt.tenant_id == Message.tenant_id)
            & (MessageAttempt.message_id == Message.id),
        )
        .where(Message.tenant_id == tenant_id, Message.refund_id == refund_id)
        .order_by(Message.created_at, Message.id, MessageAttempt.attempt_no)
    ).all()
    out = []
    for message, attempt in rows:
        if attempt is None:
            out.append(
                MessageRow(
                    message.template,
                    message.channel,
                    mask(message.recipient),
                    message.locale,
                    message.status,
                    None,
                    message.last_error,
                    message.updated_at,
                )
            )
        else:
            out.append(
                MessageRow(
                    message.template,
                    message.channel,
                    mask(message.recipient),
                    message.locale,
                    attempt.status,
                    attempt.attempt_no,
                    attempt.error,
                    attempt.at,
                )
            )
    return out
