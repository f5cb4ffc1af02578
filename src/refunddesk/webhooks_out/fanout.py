"""Fan-out: one delivery per (enabled endpoint, event) whose filter matches, with its job.

The notification dispatcher calls enqueue_deliveries inside the transaction that marks
refund events dispatched, so deliveries exist exactly when that transaction commits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from refunddesk.core.ids import new_id
from refunddesk.db.base import table_of
from refunddesk.db.keys import keys_in
from refunddesk.jobs.queue import enqueue
from refunddesk.notifications.events import DispatchEvent
from refunddesk.webhooks_out.orm import WebhookDelivery, WebhookEndpoint
from refunddesk.webhooks_out.rules import matches

DELIVERY_JOB = "webhook_delivery"
PENDING = "pending"
_INSERT_DELIVERY = insert(table_of(WebhookDelivery))


def event_body(event: DispatchEvent) -> dict[str, Any]:
    """The JSON a retailer receives for a refund event (Standard Webhooks' type/timestamp/data)."""
    return {
        "type": event.type,
        "timestamp": event.at.isoformat(),
        "data": {
            "tenant_id": event.tenant_id,
            "event_id": event.event_id,
            "seq": event.seq,
            "refund_id": event.refund_id,
            "reference": event.refund_reference,
            "status": event.to_status,
            "from_status": event.from_status,
            "amount_minor": event.amount_minor,
            "currency": event.currency,
            "order_external_id": event.order_external_id,
            "event": event.data,
        },
    }


def queue_delivery(
    session: Session,
    *,
    tenant_id: str,
    endpoint_id: str,
    event_id: str,
    event_type: str,
    body: dict[str, Any],
    now: datetime,
    max_attempts: int,
    refund_id: str | None = None,
) -> str:
    """Store one pending delivery and its job; return the delivery's id."""
    delivery_id = new_id()
    session.connection().execute(
        _INSERT_DELIVERY,
        [_row(tenant_id, delivery_id, endpoint_id, event_id, event_type, body, now, refund_id)],
    )
    enqueue_job(session, tenant_id, delivery_id, now, max_attempts)
    return delivery_id


def _row(
    tenant_id: str,
    delivery_id: str,
    endpoint_id: str,
    event_id: str,
    event_type: str,
    body: dict[str, Any],
    now: datetime,
    refund_id: str | None,
    status: str = PENDING,
) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "id": delivery_id,
        "endpoint_id": endpoint_id,
        "event_id": event_id,
        "event_type": event_type,
        "refund_id": refund_id,
        "payload": body,
        "status": status,
        "attempts": 0,
        "last_status_code": None,
        "last_error": None,
        "delivered_at": None,
        "created_at": now,
        "updated_at": now,
    }


# tenant id -> [(endpoint id, event type filters)]
Endpoints = dict[str, list[tuple[str, list[str]]]]


def enqueue_job(
    session: Session, tenant_id: str, delivery_id: str, now: datetime, max_attempts: int
) -> None:
    """The job that sends (or sends again) one delivery."""
    enqueue(
        session,
        kind=DELIVERY_JOB,
        tenant_id=tenant_id,
        payload={"delivery_id": delivery_id},
        now=now,
        max_attempts=max_attempts,
    )


def enabled_endpoints(session: Session, tenant_ids: Iterable[str]) -> Endpoints:
    """Per tenant, its enabled endpoints as (id, event type filters)."""
    by_tenant: dict[str, list[tuple[str, list[str]]]] = defaultdict(list)
    for tenant_id, endpoint_id, patterns in session.execute(
        select(WebhookEndpoint.tenant_id, WebhookEndpoint.id, WebhookEndpoint.event_types).where(
            WebhookEndpoint.tenant_id.in_(list(tenant_ids)), WebhookEndpoint.enabled.is_(True)
        )
    ):
        by_tenant[tenant_id].append((endpoint_id, list(patterns or [])))
    return by_tenant


def enqueue_deliveries(
    session: Session,
    *,
    events: Sequence[DispatchEvent],
    now: datetime,
    max_attempts: int,
    endpoints: Endpoints | None = None,
) -> int:
    """Queue a delivery of each event to each enabled endpoint that wants it; never twice.

    Returns how many deliveries were queued. Runs in the caller's transaction. endpoints:
    enabled_endpoints() of the events' tenants, when the caller has read them already.
    """
    if not events:
        return 0
    if endpoints is None:
        endpoints = enabled_endpoints(session, {e.tenant_id for e in events})
    if not endpoints:
        return 0
    wanted = [
        (event, endpoint_id)
        for event in events
        for endpoint_id, patterns in endpoints.get(event.tenant_id, ())
        if matches(patterns, event.type)
    ]
    if not wanted:
        return 0
    keys = {(e.tenant_id, endpoint_id, e.event_id) for e, endpoint_id in wanted}
    done = {
        (row.tenant_id, row.endpoint_id, row.event_id)
        for row in session.execute(
            select(
                WebhookDelivery.tenant_id, WebhookDelivery.endpoint_id, WebhookDelivery.event_id
            ).where(
                keys_in(
                    (
                        WebhookDelivery.tenant_id,
                        WebhookDelivery.endpoint_id,
                        WebhookDelivery.event_id,
                    ),
                    keys,
                ),
            )
        )
    }
    rows = []
    for event, endpoint_id in wanted:
        key = (event.tenant_id, endpoint_id, event.event_id)
        if key in done:
            continue
        done.add(key)
        rows.append(
            _row(
                event.tenant_id,
                new_id(),
                endpoint_id,
                event.event_id,
                event.type,
                event_body(event),
                now,
                event.refund_id,
            )
        )
    if rows:
        session.connection().execute(_INSERT_DELIVERY, rows)
        for row in rows:
            enqueue_job(session, row["tenant_id"], row["id"], now, max_attempts)
    return len(rows)
