"""The public tracking endpoint: no API key, reference + the order's email."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from refunddesk.api.deps import ContainerDep, ReadSession
from refunddesk.sla.service import count_lookup
from refunddesk.tracking.service import track

router = APIRouter(prefix="/v1/track", tags=["tracking"])


class TimelineEntryPublic(BaseModel):
    at: datetime
    status: str
    text: str


class TrackingPublic(BaseModel):
    reference: str
    retailer: str
    status: str
    status_label: str
    amount: str
    amount_minor: int
    currency: str
    expected_by: date | None
    expected_from: date | None = Field(
        description="the first day of the gateway's arrival window, once it has one"
    )
    expected_text: str
    method: str = Field(description="how the refund is paid: card, wallet, bank_transfer, ...")
    arn: str | None = Field(
        description="acquirer reference number: the customer's bank can trace the refund by it"
    )
    timeline: list[TimelineEntryPublic]


@router.get("/{reference}", operation_id="track_refund")
def track_refund(
    reference: Annotated[str, Path(min_length=1, max_length=32)],
    email: Annotated[str, Query(min_length=3, max_length=320)],
    session: ReadSession,
    container: ContainerDep,
) -> TrackingPublic:
    """Where a customer's refund is. The same 404 for an unknown reference and a wrong email."""
    view = track(session, reference=reference, email=email, now=container.clock.now())
    count_lookup(container.db, reference=view.reference, now=container.clock.now())
    return TrackingPublic(
        reference=view.reference,
        retailer=view.retailer,
        status=view.status,
        status_label=view.status_label,
        amount=view.amount,
        amount_minor=view.amount_minor,
        currency=view.currency,
        expected_by=view.expected_by,
        expected_from=view.expected_from,
        expected_text=view.expected_text,
        method=view.method,
        arn=view.arn,
        timeline=[
            TimelineEntryPublic(at=e.at, status=e.status, text=e.text) for e in view.timeline
        ],
    )
