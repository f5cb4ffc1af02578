"""Tell people of an escalation: e-mail through the notification channel's outbox.

Each recipient gets one queued message (template "escalation") and its send job, in the
transaction of the escalation itself; the retailer's webhooks hear of it through the
refund's escalation.* event, which the dispatcher fans out like any refund event.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from refunddesk.core.ids import new_id
from refunddesk.jobs.queue import enqueue
from refunddesk.notifications.dispatch import EMAIL, QUEUED, SEND_JOB
from refunddesk.notifications.orm import Message
from refunddesk.sla.config import Escalation as EscalationSettings
from refunddesk.sla.config import Tier

TEMPLATE = "escalation"
MAX_ATTEMPTS = 8


def recipients(settings: EscalationSettings, tier: Tier) -> list[str]:
    """Who hears of an escalation at this tier: the tier's list, and finance's contact."""
    found = list(settings.notify.get(tier, []))
    if tier is Tier.FINANCE and settings.finance_email:
        found.append(settings.finance_email)
    return sorted({a.strip().lower() for a in found})


def notify(
    session: Session,
    *,
    tenant_id: str,
    refund_id: str,
    reference: str,
    escalation_id: str,
    tier: Tier,
    what: str,
    detail: str,
    settings: EscalationSettings,
    public_url: str,
    now: datetime,
) -> int:
    """Queue one e-mail per recipient of this tier; return how many."""
    to = recipients(settings, tier)
    subject = f"[{tier.upper()}] Refund {reference}: {what}"
    link = f"{public_url.rstrip('/')}/desk/refunds/{refund_id}" if public_url else ""
    body = (
        f"Refund {reference} was {what} ({tier}).\n\nWhy: {detail}\n"
        f"Escalation: {escalation_id}\n" + (f"Open it: {link}\n" if link else "")
    )
    for address in to:
        message = Message(
            tenant_id=tenant_id,
            id=new_id(),
            refund_id=refund_id,
            # Staff messages belong to no customer event: their own id keeps them unique.
            event_id=new_id(),
            channel=EMAIL,
            recipient=address,
            locale="en",
            template=TEMPLATE,
            subject=subject,
            body_text=body,
            body_html=None,
            status=QUEUED,
            attempts=0,
            created_at=now,
            updated_at=now,
        )
        session.add(message)
        session.flush()
        enqueue(
            session,
            kind=SEND_JOB,
            payload={"message_id": message.id},
            now=now,
            max_attempts=MAX_ATTEMPTS,
            tenant_id=tenant_id,
            dedupe_key=f"message:{tenant_id}:{message.id}",
        )
    return len(to)
