"""Webhook endpoints of a tenant: manage them, send a test, read and redeliver the log."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from refunddesk.core.clock import Clock
from refunddesk.core.errors import Conflict, NotFound
from refunddesk.core.ids import new_id
from refunddesk.webhooks_out import fanout
from refunddesk.webhooks_out.orm import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from refunddesk.webhooks_out.rules import (
    TEST_EVENT,
    check_event_types,
    check_url,
    new_secret,
    secret_hint,
)
from refunddesk.webhooks_out.schemas import (
    WebhookAttemptPublic,
    WebhookDeliveryPublic,
    WebhookEndpointPublic,
    WebhookEndpointWithSecret,
)
from refunddesk.webhooks_out.sender import DELIVERED, FAILED, SKIPPED

MAX_ENDPOINTS = 20  # per tenant: every event goes to each, so keep the fan-out bounded
ROTATION_GRACE = timedelta(hours=24)
REDELIVERABLE = frozenset({DELIVERED, FAILED, SKIPPED})


@dataclass(frozen=True, slots=True)
class EndpointChanges:
    """What an update sets; None: unchanged (description_set says whether to clear it)."""

    url: str | None = None
    description: str | None = None
    description_set: bool = False
    event_types: Sequence[str] | None = None
    enabled: bool | None = None


def to_public(endpoint: WebhookEndpoint) -> WebhookEndpointPublic:
    return WebhookEndpointPublic(
        id=endpoint.id,
        url=endpoint.url,
        description=endpoint.description,
        event_types=list(endpoint.event_types),
        enabled=endpoint.enabled,
        disabled_reason=endpoint.disabled_reason,
        disabled_at=endpoint.disabled_at,
        failing_since=endpoint.failing_since,
        secret_hint=secret_hint(endpoint.secret),
        created_at=endpoint.created_at,
        updated_at=endpoint.updated_at,
    )


def with_secret(endpoint: WebhookEndpoint) -> WebhookEndpointWithSecret:
    return WebhookEndpointWithSecret(
        **to_public(endpoint).model_dump(),
        secret=endpoint.secret,
        previous_secret_valid_until=endpoint.previous_secret_until,
    )


def create_endpoint(
    session: Session,
    *,
    clock: Clock,
    tenant_id: str,
    url: str,
    description: str | None = None,
    event_types: Sequence[str] = (),
    allow_private: bool,
) -> WebhookEndpoint:
    """A new enabled endpoint with its own secret (returned in full only now)."""
    url = check_url(url, allow_private=allow_private)
    patterns = check_event_types(event_types)
    count = session.scalar(
        select(func.count())
        .select_from(WebhookEndpoint)
        .where(WebhookEndpoint.tenant_id == tenant_id)
    )
    if (count or 0) >= MAX_ENDPOINTS:
        raise Conflict(f"a tenant may have at most {MAX_ENDPOINTS} webhook endpoints")
    now = clock.now()
    endpoint = WebhookEndpoint(
        tenant_id=tenant_id,
        id=new_id(),
        url=url,
        description=description,
        event_types=patterns,
        secret=new_secret(),
        previous_secret=None,
        previous_secret_until=None,
        enabled=True,
        disabled_reason=None,
        disabled_at=None,
        failing_since=None,
        created_at=now,
        updated_at=now,
    )
    session.add(endpoint)
    session.flush()
    return endpoint


def list_endpoints(session: Session, *, tenant_id: str) -> list[WebhookEndpoint]:
    return list(
        session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.tenant_id == tenant_id)
            .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        )
    )


def get_endpoint(
    session: Session, *, tenant_id: str, endpoint_id: str, lock: bool = False
) -> WebhookEndpoint:
    endpoint = session.get(WebhookEndpoint, (tenant_id, endpoint_id), with_for_update=lock)
    if endpoint is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return endpoint


def update_endpoint(
    session: Session,
    *,
    clock: Clock,
    tenant_id: str,
    endpoint_id: str,
    changes: EndpointChanges,
    allow_private: bool,
) -> WebhookEndpoint:
    endpoint = get_endpoint(session, tenant_id=tenant_id, endpoint_id=endpoint_id, lock=True)
    if changes.url is not None:
        endpoint.url = check_url(changes.url, allow_private=allow_private)
    if changes.description_set:
        endpoint.description = changes.description
    if changes.event_types is not None:
        endpoint.event_types = check_event_types(changes.event_types)
    if changes.enabled is not None and changes.enabled != endpoint.enabled:
        endpoint.enabled = changes.enabled
        if changes.enabled:  # a fresh start: the failure window counts from now on
            endpoint.disabled_reason = endpoint.disabled_at = endpoint.failing_since = None
        else:
            endpoint.disabled_reason, endpoint.disabled_at = "disabled by the tenant", clock.now()
    endpoint.updated_at = clock.now()
    return endpoint


def delete_endpoint(session: Session, *, tenant_id: str, endpoint_id: str) -> None:
    """Remove the endpoint and its log; its queued jobs find nothing and end."""
    get_endpoint(session, tenant_id=tenant_id, endpoint_id=endpoint_id, lock=True)
    deliveries = select(WebhookDelivery.id).where(
        WebhookDelivery.tenant_id == tenant_id, WebhookDelivery.endpoint_id == endpoint_id
    )
    session.execute(
        delete(WebhookAttempt).where(
            WebhookAttempt.tenant_id == tenant_id, WebhookAttempt.delivery_id.in_(deliveries)
        )
    )
    session.execute(
        delete(WebhookDelivery).where(
            WebhookDelivery.tenant_id == tenant_id, WebhookDelivery.endpoint_id == endpoint_id
        )
    )
    session.execute(
        delete(WebhookEndpoint).where(
            WebhookEndpoint.tenant_id == tenant_id, WebhookEndpoint.id == endpoint_id
        )
    )


def rotate_secret(
    session: Session, *, clock: Clock, tenant_id: str, endpoint_id: str
) -> WebhookEndpoint:
    """A new secret; the old one also signs for ROTATION_GRACE so receivers can switch."""
    endpoint = get_endpoint(session, tenant_id=tenant_id, endpoint_id=endpoint_id, lock=True)
    now = clock.now()
    endpoint.previous_secret, endpoint.previous_secret_until = endpoint.secret, now + ROTATION_GRACE
    endpoint.secret = new_secret()
    endpoint.updated_at = now
    return endpoint


def send_test(
    session: Session, *, clock: Clock, tenant_id: str, endpoint_id: str, max_attempts: int
) -> WebhookDelivery:
    """Queue a ``webhook.test`` delivery to the endpoint, whatever its filter."""
    endpoint = get_endpoint(session, tenant_id=tenant_id, endpoint_id=endpoint_id)
    if not endpoint.enabled:
        raise Conflict("the endpoint is disabled; enable it first", field="enabled")
    now = clock.now()
    event_id = new_id()
    delivery_id = fanout.queue_delivery(
        session,
        tenant_id=tenant_id,
        endpoint_id=endpoint_id,
        event_id=event_id,
        event_type=TEST_EVENT,
        body={
            "type": TEST_EVENT,
            "timestamp": now.isoformat(),
            "data": {
                "tenant_id": tenant_id,
                "endpoint_id": endpoint_id,
                "message": "a test event from refunddesk: this endpoint is reachable",
            },
        },
        now=now,
        max_attempts=max_attempts,
    )
    return _get_delivery(session, tenant_id, endpoint_id, delivery_id)


def _get_delivery(
    session: Session, tenant_id: str, endpoint_id: str, delivery_id: str, *, lock: bool = False
) -> WebhookDelivery:
    delivery = session.get(WebhookDelivery, (tenant_id, delivery_id), with_for_update=lock)
    if delivery is None or delivery.endpoint_id != endpoint_id:
        raise NotFound(f"no delivery {delivery_id} of webhook endpoint {endpoint_id}")
    return delivery


def redeliver(
    session: Session,
    *,
    clock: Clock,
    tenant_id: str,
    endpoint_id: str,
    delivery_id: str,
    max_attempts: int,
) -> WebhookDelivery:
    """Send a delivery again, with the same webhook-id and body."""
    endpoint = get_endpoint(session, tenant_id=tenant_id, endpoint_id=endpoint_id)
    delivery = _get_delivery(session, tenant_id, endpoint_id, delivery_id, lock=True)
    if delivery.status not in REDELIVERABLE:
        raise Conflict(
            f"the delivery is {delivery.status}; only delivered, failed or skipped ones "
            "can be sent again"
        )
    if not endpoint.enabled:
        raise Conflict("the endpoint is disabled; enable it first", field="enabled")
    now = clock.now()
    delivery.status, delivery.updated_at = fanout.PENDING, now
    fanout.enqueue_job(session, tenant_id, delivery.id, now, max_attempts)
    return delivery


def _attempt_public(a: WebhookAttempt) -> WebhookAttemptPublic:
    return WebhookAttemptPublic(
        id=a.id,
        at=a.at,
        ok=a.ok,
        status_code=a.status_code,
        duration_ms=a.duration_ms,
        error=a.error,
        response_excerpt=a.response_excerpt,
    )


def delivery_public(
    d: WebhookDelivery, attempts: Sequence[WebhookAttemptPublic]
) -> WebhookDeliveryPublic:
    return WebhookDeliveryPublic(
        id=d.id,
        webhook_id=d.event_id,
        event_type=d.event_type,
        refund_id=d.refund_id,
        status=d.status,
        attempt_count=d.attempts,
        last_status_code=d.last_status_code,
        last_error=d.last_error,
        delivered_at=d.delivered_at,
        created_at=d.created_at,
        updated_at=d.updated_at,
        payload=d.payload,
        attempts=list(attempts),
    )


def _attempts(
    session: Session, tenant_id: str, delivery_ids: Sequence[str]
) -> dict[str, list[WebhookAttemptPublic]]:
    attempts: dict[str, list[WebhookAttemptPublic]] = defaultdict(list)
    if delivery_ids:
        for a in session.scalars(
            select(WebhookAttempt)
            .where(
                WebhookAttempt.tenant_id == tenant_id,
                WebhookAttempt.delivery_id.in_(list(delivery_ids)),
            )
            .order_by(WebhookAttempt.at, WebhookAttempt.id)
        ):
            attempts[a.delivery_id].append(_attempt_public(a))
    return attempts


def attempts_of(session: Session, delivery: WebhookDelivery) -> list[WebhookAttemptPublic]:
    return _attempts(session, delivery.tenant_id, [delivery.id])[delivery.id]


def list_deliveries(
    session: Session,
    *,
    tenant_id: str,
    endpoint_id: str,
    limit: int = 50,
    status: str | None = None,
) -> list[WebhookDeliveryPublic]:
    """The endpoint's most recent deliveries, newest first, each with its attempts."""
    get_endpoint(session, tenant_id=tenant_id, endpoint_id=endpoint_id)
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.tenant_id == tenant_id, WebhookDelivery.endpoint_id == endpoint_id)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
        .limit(limit)
    )
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    deliveries = list(session.scalars(query))
    attempts = _attempts(session, tenant_id, [d.id for d in deliveries])
    return [delivery_public(d, attempts[d.id]) for d in deliveries]
