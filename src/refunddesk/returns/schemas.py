"""Request and response bodies of the returns API."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, Field

from refunddesk.core.schemas import MinorAmount, StrictModel
from refunddesk.refunds.domain import RefundStatus
from refunddesk.returns.domain import ItemCondition, Outcome, ReturnStatus

Sku = Annotated[str, Field(min_length=1, max_length=100)]


class ReturnShip(StrictModel):
    """The customer handed the parcel to a carrier."""

    carrier: Annotated[str, Field(min_length=1, max_length=100, examples=["DHL"])]
    tracking_number: Annotated[
        str, Field(min_length=1, max_length=100, pattern=r"\S", examples=["JD014600003SE"])
    ]


class ReceivedLineIn(StrictModel):
    sku: Sku
    quantity: Annotated[int, Field(ge=0, le=1_000_000, strict=True)]
    condition: ItemCondition | None = None


class ReturnReceive(StrictModel):
    """What the warehouse counted; SKUs not listed count as none received."""

    lines: Annotated[list[ReceivedLineIn], Field(max_length=500)]
    weight_grams: Annotated[int | None, Field(ge=0, le=10_000_000, strict=True)] = Field(
        default=None, description="the parcel's weight as scanned (fraud: empty box, swap)"
    )


class InspectedLineIn(StrictModel):
    """A verdict on some (quantity) or all remaining received units of a SKU."""

    sku: Sku
    verdict: Outcome
    reason: Annotated[str | None, Field(max_length=500)] = None
    percent: Annotated[Decimal | None, Field(ge=0, le=100, max_digits=7, decimal_places=4)] = None
    credit_minor: MinorAmount | None = None
    quantity: Annotated[int | None, Field(ge=1, le=1_000_000, strict=True)] = None


class ReturnInspect(StrictModel):
    lines: Annotated[list[InspectedLineIn], Field(min_length=1, max_length=500)]


class ReturnLost(StrictModel):
    note: Annotated[str | None, Field(max_length=2000)] = None


class InspectionPartPublic(BaseModel):
    verdict: Outcome
    quantity: int
    credit_minor: int
    reason: str | None
    percent: str | None


class ReturnLinePublic(BaseModel):
    sku: str
    quantity: int
    unit_refund_minor: int
    received_quantity: int | None
    condition: ItemCondition | None
    inspection: list[InspectionPartPublic]


class SettlementPublic(BaseModel):
    """What inspection meant for the refund: its next state, amount and why."""

    status: RefundStatus
    amount_minor: int
    authorized_minor: int
    refund_amount_before_minor: int
    refund_amount_after_minor: int
    reasons: list[str]
    codes: list[str]


class ReturnPublic(BaseModel):
    id: str
    refund_id: str
    status: ReturnStatus
    currency: str
    carrier: str | None
    tracking_number: str | None
    expires_at: datetime
    received_at: datetime | None
    inspected_at: datetime | None
    authorized_minor: int
    lines: list[ReturnLinePublic]
    settlement: SettlementPublic | None
    created_at: datetime
    updated_at: datetime
