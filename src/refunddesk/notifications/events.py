"""What the dispatcher hands to each channel: one refund event with the context to tell it.

The dispatcher (notifications/dispatch.py) reads refund events not yet dispatched, in the
order they happened, and turns each into a DispatchEvent. Customer channels (email, SMS)
pick the events that matter to the customer; retailer webhooks (webhooks_out) take every
event their endpoints subscribe to.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class DispatchEvent:
    tenant_id: str
    event_id: str  # refund_events.id (a ULID): the idempotency key of everything it causes
    refund_id: str
    seq: int
    type: str  # refund.requested, refund.status_changed, payout.succeeded, ...
    from_status: str | None
    to_status: str
    at: datetime
    data: dict[str, Any]
    # the refund and its order, as they are when the event is dispatched
    refund_reference: str
    amount_minor: int
    currency: str
    order_external_id: str
    customer_email: str
    customer_name: str
    customer_phone: str | None
