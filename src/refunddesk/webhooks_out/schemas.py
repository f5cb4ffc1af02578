"""Request and response bodies of /v1/webhook-endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field

from refunddesk.core.schemas import StrictModel

Url = Annotated[
    str, Field(min_length=1, max_length=2000, examples=["https://retailer.example/hooks"])
]
EventTypes = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=64)]],
    Field(
        max_length=50,
        description="event types or patterns such as payout.*; empty: every event",
        examples=[["refund.status_changed", "payout.*"]],
    ),
]
Description = Annotated[str | None, Field(max_length=500)]


class WebhookEndpointCreate(StrictModel):
    url: Url
    description: Description = None
    event_types: EventTypes = []


class WebhookEndpointUpdate(StrictModel):
    """Only the fields sent change; enabled: true re-enables a disabled endpoint."""

    url: Url | None = None
    description: Description = None
    event_types: EventTypes | None = None
    enabled: bool | None = None


class WebhookEndpointPublic(BaseModel):
    id: str
    url: str
    description: str | None
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    failing_since: datetime | None
    secret_hint: str = Field(description="the start of the signing secret, to tell secrets apart")
    created_at: datetime
    updated_at: datetime


class WebhookEndpointWithSecret(WebhookEndpointPublic):
    """Shown once, on create and rotate: the whole signing secret."""

    secret: str
    previous_secret_valid_until: datetime | None = None


class WebhookAttemptPublic(BaseModel):
    id: str
    at: datetime
    ok: bool
    status_code: int | None
    duration_ms: int
    error: str | None
    response_excerpt: str | None


class WebhookDeliveryPublic(BaseModel):
    id: str
    webhook_id: str = Field(description="the webhook-id header: the same on every retry")
    event_type: str
    refund_id: str | None
    status: str = Field(description="pending, delivered, failed, skipped or notice")
    attempt_count: int
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
    updated_at: datetime
    payload: dict[str, Any]
    attempts: list[WebhookAttemptPublic]
