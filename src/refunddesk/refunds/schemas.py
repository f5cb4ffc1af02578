"""Refund request and response bodies."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, Field, model_validator
from stdnum import bic, iban
from stdnum.exceptions import ValidationError

from refunddesk.core.schemas import CurrencyCode, PositiveMinor, StrictModel
from refunddesk.fraud.schemas import DeliveryConfirmation, RiskPublic
from refunddesk.policy.document import Evidence, RefundMethod
from refunddesk.refunds.domain import Channel, Reason, RefundStatus


class RefundLineIn(StrictModel):
    sku: Annotated[str, Field(min_length=1, max_length=100)]
    quantity: Annotated[int, Field(ge=1, le=100_000, strict=True)]
    reason: Reason | None = Field(default=None, description="defaults to the refund's reason")
    condition: Annotated[str, Field(max_length=32)] | None = None


class RefundCreate(StrictModel):
    order_id: Annotated[
        str,
        Field(
            min_length=1, max_length=100, description="the retailer's order number (external_id)"
        ),
    ]
    lines: Annotated[list[RefundLineIn], Field(min_length=1, max_length=500)] | None = None
    amount_minor: PositiveMinor | None = None
    currency: CurrencyCode | None = Field(
        default=None, description="optional; must match the order's"
    )
    reason: Reason
    channel: Channel = Channel.API
    note: Annotated[str, Field(max_length=2000)] | None = None
    evidence: Annotated[list[Evidence], Field(max_length=10)] | None = Field(
        default=None, description="what the customer has shown (photo, receipt, video)"
    )
    refund_method: RefundMethod | None = Field(
        default=None, description="the customer's choice; the policy may fix the method"
    )
    delivery_confirmation: DeliveryConfirmation | None = Field(
        default=None, description="the carrier's proof of delivery, for a fraud check of the claim"
    )

    @model_validator(mode="after")
    def _lines_or_amount(self) -> Self:
        if (self.lines is None) == (self.amount_minor is None):
            raise ValueError("give either lines or amount_minor, not both and not neither")
        if self.lines is not None:
            skus = [line.sku for line in self.lines]
            if len(set(skus)) != len(skus):
                raise ValueError("each sku may appear once in a refund's lines")
        return self


class RejectBody(StrictModel):
    reason: Annotated[str, Field(min_length=1, max_length=500)]


class NoteBody(StrictModel):
    note: Annotated[str, Field(max_length=2000)] | None = None


class BankAccountIn(StrictModel):
    iban: Annotated[str, Field(min_length=15, max_length=42)]
    holder: Annotated[str, Field(min_length=1, max_length=70)]
    bic: Annotated[str, Field(min_length=8, max_length=11)] | None = None

    @model_validator(mode="after")
    def _valid(self) -> Self:
        try:
            self.iban = iban.validate(self.iban)
        except ValidationError as exc:
            raise ValueError(f"iban: not a valid IBAN ({exc})") from exc
        if self.bic is not None:
            try:
                self.bic = bic.validate(self.bic)
            except ValidationError as exc:
                raise ValueError(f"bic: not a valid BIC ({exc})") from exc
        return self


class PayoutFallback(StrictModel):
    """How to pay a failed refund instead: the original way again, a bank transfer, or
    store credit."""

    method: Literal["original", "bank_transfer", "store_credit"] = "original"
    bank_account: BankAccountIn | None = None
    note: Annotated[str, Field(max_length=2000)] | None = None

    @model_validator(mode="after")
    def _bank_needs_account(self) -> Self:
        if self.method == "bank_transfer" and self.bank_account is None:
            raise ValueError("bank_account: a bank transfer needs the customer's bank account")
        if self.method != "bank_transfer" and self.bank_account is not None:
            raise ValueError("bank_account: only a bank transfer takes a bank account")
        return self

    def override(self) -> dict[str, Any] | None:
        """What the payout job reads from the refund (None: the original payment again)."""
        if self.method == "original":
            return None
        out: dict[str, Any] = {"method": self.method}
        if self.bank_account is not None:
            out["bank_account"] = self.bank_account.model_dump(exclude_none=True)
        return out


class RefundLinePublic(BaseModel):
    sku: str
    quantity: int
    reason: str
    condition: str | None
    amount_minor: int


class FindingPublic(BaseModel):
    code: str
    severity: str = Field(description="hard rejects, soft sends to review, info explains")
    message: str


class ApprovalPublic(BaseModel):
    actor: str
    role: str
    at: datetime


class RefundPublic(BaseModel):
    id: str
    reference: str
    status: RefundStatus
    order_id: str = Field(description="the retailer's order number")
    amount_minor: int
    currency: str
    reason: Reason
    channel: Channel
    note: str | None
    lines: list[RefundLinePublic]
    decision_reasons: list[str]
    findings: list[FindingPublic] = Field(default_factory=list)
    policy_version: int | None = Field(
        default=None, description="the tenant's policy version that decided; 0 is the default"
    )
    breakdown: dict[str, Any] | None = Field(
        default=None, description="how the amount was reached: lines, shipping, tax, fees"
    )
    refund_method: str | None = None
    approvals_required: int = 0
    approvals: list[ApprovalPublic] = Field(default_factory=list)
    risk: RiskPublic | None = Field(
        default=None, description="fraud risk from intake or the last rescore; null if unscored"
    )
    created_at: datetime
    updated_at: datetime


class RefundPage(BaseModel):
    items: list[RefundPublic]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null at the end")


class RefundEventPublic(BaseModel):
    id: str
    seq: int
    type: str
    from_status: str | None
    to_status: str
    actor: str
    at: datetime
    data: dict[str, Any]


class RefundPreview(BaseModel):
    """What creating this refund would decide now; nothing is stored."""

    decision: str
    status: RefundStatus
    amount_minor: int
    currency: str
    findings: list[FindingPublic]
    breakdown: dict[str, Any]
    refund_method: str
    approvals_required: int
    return_required: bool
    return_by: date | None
    policy_version: int


class ApprovalQueuePage(BaseModel):
    """Refunds waiting for approval, oldest first."""

    items: list[RefundPublic]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null at the end")
