"""Policy version request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from refunddesk.core.schemas import StrictModel

MAX_NOTE = 500


class PolicyCreate(StrictModel):
    """A policy document sent as JSON: its source text and the format it is written in."""

    # Whitespace is kept: stripping leading lines would shift the line numbers in errors.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    source: Annotated[str, Field(max_length=100_000, description="the YAML or TOML text")]
    format: Literal["yaml", "toml"] = "yaml"
    note: Annotated[str, Field(max_length=MAX_NOTE)] = ""


class PolicyVersionPublic(BaseModel):
    version: int = Field(description="numbered per tenant from 1; 0 is the built-in default")
    active: bool
    name: str = Field(description="the document's own name")
    format: str
    note: str
    created_by: str
    created_at: datetime
    activated_at: datetime | None = Field(description="when it last became the active version")
    activated_by: str | None = Field(default=None, description="who made it the active version")


class PolicyList(BaseModel):
    active_version: int = Field(description="0 while the tenant uses the built-in default")
    items: list[PolicyVersionPublic] = Field(description="newest first")


class PolicyDetail(PolicyVersionPublic):
    source: str
    document: dict[str, Any] = Field(description="the parsed document, defaults filled in")
    summary: list[str] = Field(description="the policy in plain language")
