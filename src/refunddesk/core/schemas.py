"""Pydantic building blocks shared by every capability's schemas."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from refunddesk.core.money import normalize_currency

# Large enough for any real order, small enough that sums never overflow a BIGINT.
MAX_MINOR = 10**13


class StrictModel(BaseModel):
    """Request bodies: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # PostgreSQL text cannot hold NUL; refuse it here rather than fail in the database.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("may not contain NUL characters")
        return value


def _currency(value: str) -> str:
    try:
        return normalize_currency(value)
    except Exception as exc:  # InvalidCurrency carries the message
        raise ValueError(str(exc)) from exc


CurrencyCode = Annotated[
    str, Field(min_length=3, max_length=3, examples=["EUR"]), AfterValidator(_currency)
]
MinorAmount = Annotated[
    int, Field(ge=0, le=MAX_MINOR, strict=True, description="integer amount in minor units (cents)")
]
PositiveMinor = Annotated[int, Field(gt=0, le=MAX_MINOR, strict=True)]
