"""Fraud request and response bodies: a refund's risk, labels, the carrier's proof of delivery."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from refunddesk.core.clock import as_utc
from refunddesk.core.schemas import StrictModel


class DeliveryConfirmation(StrEnum):
    """What the carrier has to show the parcel was delivered."""

    SIGNATURE = "signature"
    PHOTO = "photo"
    SCAN = "scan"
    NONE = "none"


class RiskReason(BaseModel):
    code: str = Field(description="a rule's code, or the feature the model weighed")
    message: str = Field(description="the signal in plain language, true of this refund")
    weight: float = Field(description="rules: 1 high, 0.5 medium; model: log-odds pushed")


class RiskPublic(BaseModel):
    """The fraud risk set when the refund was scored."""

    score: float | None = Field(description="0 to 1 from the model; null when rules alone ruled")
    level: Literal["low", "medium", "high"]
    reasons: list[RiskReason]
    model_version: str | None
    rules_version: str | None
    scored_at: datetime | None


def risk_public(values: Mapping[str, Any]) -> RiskPublic | None:
    """A refund's stored risk_* columns as the API shows them (None: never scored)."""
    level = values.get("risk_level")
    if level is None:
        return None
    at = values.get("risk_scored_at")
    return RiskPublic(
        score=values.get("risk_score"),
        level=level,
        reasons=[RiskReason(**r) for r in values.get("risk_reasons") or ()],
        model_version=values.get("risk_model_version"),
        rules_version=values.get("risk_rules_version"),
        scored_at=as_utc(at) if at is not None else None,
    )


class FraudLabelCreate(StrictModel):
    label: Literal["fraud", "legit"]
    note: Annotated[str, Field(max_length=2000)] | None = None


class FraudLabelPublic(BaseModel):
    id: str
    refund_id: str
    label: Literal["fraud", "legit"]
    source: Literal["agent", "chargeback"]
    actor: str
    note: str | None
    at: datetime
