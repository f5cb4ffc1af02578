"""Request and response bodies of the SLA clock and escalation API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from refunddesk.core.schemas import StrictModel
from refunddesk.escalation.orm import Escalation, EscalationNote
from refunddesk.sla.config import Tier
from refunddesk.sla.domain import ClockView

Text = Annotated[str, Field(min_length=1, max_length=4000)]
UserId = Annotated[str, Field(min_length=1, max_length=26, pattern=r"^[0-9A-Za-z]+$")]


class ClockPublic(BaseModel):
    name: str
    label: str
    state: Literal["running", "paused", "stopped"]
    started_at: datetime
    due_at: datetime | None
    remaining_seconds: int | None = Field(
        description="business seconds left (legal clock: calendar seconds); negative: breached"
    )
    breached: bool
    paused: bool
    predicted_breach: bool
    basis: str

    @classmethod
    def of(cls, view: ClockView) -> ClockPublic:
        return cls.model_validate(view, from_attributes=True)


class ClocksPublic(BaseModel):
    refund_id: str
    jurisdiction: str
    contacts: int
    clocks: list[ClockPublic]


class ContactCreate(StrictModel):
    channel: Literal["email", "phone", "chat", "other"] = "phone"
    note: Annotated[str | None, Field(max_length=2000)] = None


class ContactCount(BaseModel):
    refund_id: str
    contacts: int


class EscalationCreate(StrictModel):
    tier: Tier = Tier.L1
    reason: Text
    note: Text | None = None
    owner_id: UserId | None = None


class NoteCreate(StrictModel):
    body: Text


class AssignBody(StrictModel):
    owner_id: UserId | None = Field(description="a user id; null takes the owner away")


class ResolveBody(StrictModel):
    resolution: Text


class EscalationNotePublic(BaseModel):
    id: str
    kind: str
    body: str
    actor: str
    at: datetime

    @classmethod
    def of(cls, note: EscalationNote) -> EscalationNotePublic:
        return cls.model_validate(note, from_attributes=True)


class EscalationPublic(BaseModel):
    id: str
    refund_id: str
    tier: Tier
    reason: str
    detail: str
    status: Literal["open", "resolved"]
    owner_id: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    touched_at: datetime
    escalate_at: datetime | None = Field(description="up one tier then, if still untouched")
    resolution: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    note_count: int

    @classmethod
    def of(cls, esc: Escalation) -> EscalationPublic:
        return cls.model_validate(esc, from_attributes=True)


class EscalationDetail(EscalationPublic):
    notes: list[EscalationNotePublic]


class EscalationList(BaseModel):
    items: list[EscalationPublic]
    next_cursor: str | None
