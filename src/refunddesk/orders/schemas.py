"""Order request and response bodies."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Self

from pydantic import AwareDatetime, BaseModel, EmailStr, Field, IPvAnyAddress, model_validator

from refunddesk.core.schemas import CurrencyCode, MinorAmount, StrictModel

Text100 = Annotated[str, Field(min_length=1, max_length=100)]


class PaymentMethod(StrEnum):
    CARD = "card"
    WALLET = "wallet"
    BANK_TRANSFER = "bank_transfer"
    STORE_CREDIT = "store_credit"


class Customer(StrictModel):
    email: EmailStr
    phone: Annotated[str, Field(max_length=32)] | None = None
    name: Annotated[str, Field(min_length=1, max_length=200)]
    ref: Annotated[
        str | None, Field(min_length=1, max_length=200, description="the retailer's customer id")
    ] = None
    since: AwareDatetime | None = Field(default=None, description="when the account was created")


class Payment(StrictModel):
    method: PaymentMethod
    gateway: Annotated[str, Field(min_length=1, max_length=32, examples=["sandbox"])]
    reference: Annotated[str, Field(min_length=1, max_length=200)]
    fingerprint: Annotated[
        str | None,
        Field(min_length=1, max_length=128, description="hashed card or account, for linking"),
    ] = None
    last4: Annotated[str | None, Field(pattern=r"^[0-9]{4}$")] = None


class Address(StrictModel):
    """A postal address; optional context for fraud checks (linking by address)."""

    line1: Annotated[str, Field(min_length=1, max_length=200)]
    line2: Annotated[str | None, Field(max_length=200)] = None
    city: Annotated[str | None, Field(max_length=100)] = None
    postal_code: Annotated[str | None, Field(max_length=20)] = None
    region: Annotated[str | None, Field(max_length=100)] = None
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")]


class OrderLineIn(StrictModel):
    sku: Text100
    name: Annotated[str, Field(min_length=1, max_length=300)]
    category: Annotated[str, Field(min_length=1, max_length=100)] = "general"
    quantity: Annotated[int, Field(ge=1, le=100_000, strict=True)]
    unit_price_minor: MinorAmount
    weight_grams: Annotated[int | None, Field(ge=0, le=10_000_000, strict=True)] = None


class OrderCreate(StrictModel):
    external_id: Text100
    customer: Customer
    currency: CurrencyCode
    lines: Annotated[list[OrderLineIn], Field(min_length=1, max_length=500)]
    shipping_minor: MinorAmount = 0
    tax_minor: MinorAmount = 0
    payment: Payment
    purchased_at: AwareDatetime
    delivered_at: AwareDatetime | None = None
    shipping_address: Address | None = None
    billing_address: Address | None = None
    ip_address: IPvAnyAddress | None = None
    device_id: Annotated[str | None, Field(min_length=1, max_length=200)] = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        skus = [line.sku for line in self.lines]
        if len(set(skus)) != len(skus):
            raise ValueError("each sku may appear on one order line only")
        if self.delivered_at is not None and self.delivered_at < self.purchased_at:
            raise ValueError("delivered_at is before purchased_at")
        return self


class OrderBatchCreate(StrictModel):
    orders: Annotated[list[OrderCreate], Field(min_length=1, max_length=1000)]


class OrderLinePublic(BaseModel):
    sku: str
    name: str
    category: str
    quantity: int
    unit_price_minor: int
    weight_grams: int | None = None


class OrderPublic(BaseModel):
    id: str
    external_id: str
    customer: Customer
    currency: str
    lines: list[OrderLinePublic]
    shipping_minor: int
    tax_minor: int
    total_minor: int
    refunded_minor: int = Field(description="held by refunds not rejected, canceled or failed")
    refundable_minor: int
    payment: Payment
    purchased_at: datetime
    delivered_at: datetime | None
    created_at: datetime
    shipping_address: Address | None = None
    billing_address: Address | None = None
    ip_address: str | None = None
    device_id: str | None = None


class BatchItemResult(BaseModel):
    external_id: str
    result: str = Field(description="created, or exists when that external_id was already stored")
    id: str


class OrderBatchResult(BaseModel):
    created: int
    existing: int
    results: list[BatchItemResult]
