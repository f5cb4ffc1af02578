"""HTTP routes: a tenant's webhook endpoints, their test event and delivery log."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response, status

from refunddesk.api.deps import ContainerDep, PrincipalDep, ReadSession
from refunddesk.auth.domain import Permission, Principal
from refunddesk.webhooks_out import service
from refunddesk.webhooks_out.schemas import (
    WebhookDeliveryPublic,
    WebhookEndpointCreate,
    WebhookEndpointPublic,
    WebhookEndpointUpdate,
    WebhookEndpointWithSecret,
)

router = APIRouter(prefix="/v1/webhook-endpoints", tags=["webhooks"])
EndpointId = Annotated[str, Path(min_length=1, max_length=64)]
DeliveryId = Annotated[str, Path(min_length=1, max_length=64)]
DeliveryStatus = Literal["pending", "delivered", "failed", "skipped", "notice"]


def _tenant(principal: Principal) -> str:
    principal.require(Permission.MANAGE_WEBHOOKS)
    return principal.require_tenant()


@router.post(
    "",
    operation_id="create_webhook_endpoint",
    status_code=status.HTTP_201_CREATED,
)
def create_endpoint(
    body: WebhookEndpointCreate, principal: PrincipalDep, container: ContainerDep
) -> WebhookEndpointWithSecret:
    """A new endpoint; its signing secret is shown in full only in this answer."""
    tenant_id = _tenant(principal)
    with container.db.write() as session:
        endpoint = service.create_endpoint(
            session,
            clock=container.clock,
            tenant_id=tenant_id,
            url=body.url,
            description=body.description,
            event_types=body.event_types,
            allow_private=container.settings.webhook_allow_private_urls,
        )
        return service.with_secret(endpoint)


@router.get("", operation_id="list_webhook_endpoints")
def list_endpoints(principal: PrincipalDep, session: ReadSession) -> list[WebhookEndpointPublic]:
    """The tenant's endpoints (secrets only by their first characters)."""
    tenant_id = _tenant(principal)
    return [service.to_public(e) for e in service.list_endpoints(session, tenant_id=tenant_id)]


@router.get("/{endpoint_id}", operation_id="get_webhook_endpoint")
def get_endpoint(
    endpoint_id: EndpointId, principal: PrincipalDep, session: ReadSession
) -> WebhookEndpointPublic:
    tenant_id = _tenant(principal)
    return service.to_public(
        service.get_endpoint(session, tenant_id=tenant_id, endpoint_id=endpoint_id)
    )


@router.patch("/{endpoint_id}", operation_id="update_webhook_endpoint")
def update_endpoint(
    endpoint_id: EndpointId,
    body: WebhookEndpointUpdate,
    principal: PrincipalDep,
    container: ContainerDep,
) -> WebhookEndpointPublic:
    """Change the URL, description, event filter, or enable (re-enable) and disable it."""
    tenant_id = _tenant(principal)
    changes = service.EndpointChanges(
        url=body.url,
        description=body.description,
        description_set="description" in body.model_fields_set,
        event_types=body.event_types,
        enabled=body.enabled,
    )
    with container.db.write() as session:
        endpoint = service.update_endpoint(
            session,
            clock=container.clock,
            tenant_id=tenant_id,
            endpoint_id=endpoint_id,
            changes=changes,
            allow_private=container.settings.webhook_allow_private_urls,
        )
        return service.to_public(endpoint)


@router.delete(
    "/{endpoint_id}",
    operation_id="delete_webhook_endpoint",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
)
def delete_endpoint(
    endpoint_id: EndpointId, principal: PrincipalDep, container: ContainerDep
) -> Response:
    """Remove the endpoint and its delivery log."""
    tenant_id = _tenant(principal)
    with container.db.write() as session:
        service.delete_endpoint(session, tenant_id=tenant_id, endpoint_id=endpoint_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{endpoint_id}/rotate-secret", operation_id="rotate_webhook_endpoint_secret")
def rotate_secret(
    endpoint_id: EndpointId, principal: PrincipalDep, container: ContainerDep
) -> WebhookEndpointWithSecret:
    """A new signing secret, shown once; the old one keeps signing too for 24 hours."""
    tenant_id = _tenant(principal)
    with container.db.write() as session:
        endpoint = service.rotate_secret(
            session, clock=container.clock, tenant_id=tenant_id, endpoint_id=endpoint_id
        )
        return service.with_secret(endpoint)


@router.post(
    "/{endpoint_id}/test",
    operation_id="send_webhook_test",
    status_code=status.HTTP_202_ACCEPTED,
)
def send_test(
    endpoint_id: EndpointId, principal: PrincipalDep, container: ContainerDep
) -> WebhookDeliveryPublic:
    """Queue a webhook.test event to this endpoint, whatever its filter."""
    tenant_id = _tenant(principal)
    with container.db.write() as session:
        delivery = service.send_test(
            session,
            clock=container.clock,
            tenant_id=tenant_id,
            endpoint_id=endpoint_id,
            max_attempts=container.settings.job_max_attempts,
        )
        return service.delivery_public(delivery, [])


@router.get("/{endpoint_id}/deliveries", operation_id="list_webhook_deliveries")
def list_deliveries(
    endpoint_id: EndpointId,
    principal: PrincipalDep,
    session: ReadSession,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    status: DeliveryStatus | None = None,
) -> list[WebhookDeliveryPublic]:
    """The most recent deliveries, newest first, each with every attempt."""
    tenant_id = _tenant(principal)
    return service.list_deliveries(
        session, tenant_id=tenant_id, endpoint_id=endpoint_id, limit=limit, status=status
    )


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/retry",
    operation_id="retry_webhook_delivery",
    status_code=202,
)
def retry_delivery(
    endpoint_id: EndpointId,
    delivery_id: DeliveryId,
    principal: PrincipalDep,
    container: ContainerDep,
) -> WebhookDeliveryPublic:
    """Send a delivery again, with the same webhook-id and body."""
    tenant_id = _tenant(principal)
    with container.db.write() as session:
        delivery = service.redeliver(
            session,
            clock=container.clock,
            tenant_id=tenant_id,
            endpoint_id=endpoint_id,
            delivery_id=delivery_id,
            max_attempts=container.settings.job_max_attempts,
        )
        return service.delivery_public(delivery, service.attempts_of(session, delivery))
