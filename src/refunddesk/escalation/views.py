"""HTTP routes: a refund's clocks and contacts; escalations: list, open, note, assign, resolve."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from sqlalchemy.orm import Session

from refunddesk.api.deps import ContainerDep, PrincipalDep, ReadSession
from refunddesk.auth.domain import Permission
from refunddesk.escalation import service
from refunddesk.escalation.orm import Escalation
from refunddesk.escalation.schemas import (
    AssignBody,
    ClockPublic,
    ClocksPublic,
    ContactCount,
    ContactCreate,
    EscalationCreate,
    EscalationDetail,
    EscalationList,
    EscalationNotePublic,
    EscalationPublic,
    NoteCreate,
    ResolveBody,
)
from refunddesk.sla import service as sla
from refunddesk.sla.config import Tier

router = APIRouter(tags=["escalations"])
RefundId = Annotated[str, Path(min_length=1, max_length=64)]
EscalationId = Annotated[str, Path(min_length=1, max_length=64)]


def _detail(session: Session, tenant_id: str, esc: Escalation) -> EscalationDetail:
    public = EscalationPublic.of(esc)
    notes = service.notes_of(session, tenant_id=tenant_id, escalation_id=public.id)
    return EscalationDetail(
        **public.model_dump(), notes=[EscalationNotePublic.of(n) for n in notes]
    )


@router.get("/v1/refunds/{refund_id}/clocks", operation_id="get_refund_clocks")
def get_clocks(
    refund_id: RefundId, principal: PrincipalDep, session: ReadSession, container: ContainerDep
) -> ClocksPublic:
    """The refund's SLA and legal clocks: time left, breached, paused, predicted to breach."""
    principal.require(Permission.READ)
    jurisdiction, contacts, views = sla.clocks_of(
        session,
        tenant_id=principal.require_tenant(),
        refund_id=refund_id,
        now=container.clock.now(),
    )
    return ClocksPublic(
        refund_id=refund_id,
        jurisdiction=jurisdiction,
        contacts=contacts,
        clocks=[ClockPublic.of(v) for v in views],
    )


@router.post(
    "/v1/refunds/{refund_id}/contacts", operation_id="log_customer_contact", status_code=201
)
def log_contact(
    refund_id: RefundId, body: ContactCreate, principal: PrincipalDep, container: ContainerDep
) -> ContactCount:
    """An agent logs that the customer got in touch about this refund (repeated contact)."""
    principal.require(Permission.WORK_ESCALATIONS)
    with container.db.write() as session:
        count = sla.record_contact(
            session,
            tenant_id=principal.require_tenant(),
            refund_id=refund_id,
            now=container.clock.now(),
        )
    return ContactCount(refund_id=refund_id, contacts=count)


@router.get("/v1/escalations", operation_id="list_escalations")
def list_escalations(
    principal: PrincipalDep,
    session: ReadSession,
    status: Literal["open", "resolved"] | None = None,
    tier: Tier | None = None,
    owner_id: Annotated[str | None, Query(max_length=26)] = None,
    refund_id: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> EscalationList:
    """Escalations, newest first, by status, tier, owner or refund; cursor pagination."""
    principal.require(Permission.READ)
    rows, next_cursor = service.list_escalations(
        session,
        tenant_id=principal.require_tenant(),
        status=status,
        tier=tier,
        owner_id=owner_id,
        refund_id=refund_id,
        limit=limit,
        cursor=cursor,
    )
    return EscalationList(items=[EscalationPublic.of(e) for e in rows], next_cursor=next_cursor)


@router.get("/v1/escalations/{escalation_id}", operation_id="get_escalation")
def get_escalation(
    escalation_id: EscalationId, principal: PrincipalDep, session: ReadSession
) -> EscalationDetail:
    """One escalation with its notes."""
    principal.require(Permission.READ)
    tenant_id = principal.require_tenant()
    esc = service.get(session, tenant_id=tenant_id, escalation_id=escalation_id)
    return _detail(session, tenant_id, esc)


@router.post("/v1/refunds/{refund_id}/escalations", operation_id="escalate_refund", status_code=201)
def escalate(
    refund_id: RefundId, body: EscalationCreate, principal: PrincipalDep, container: ContainerDep
) -> EscalationDetail:
    """Escalate a refund by hand (or raise its open escalation to the tier given)."""
    principal.require(Permission.WORK_ESCALATIONS)
    tenant_id = principal.require_tenant()
    with container.db.write() as session:
        esc = service.escalate(
            session,
            tenant_id=tenant_id,
            refund_id=refund_id,
            tier=body.tier,
            reason=body.reason,
            note=body.note,
            owner_id=body.owner_id,
            actor=principal.actor,
            now=container.clock.now(),
            public_url=container.settings.public_url,
        )
        return _detail(session, tenant_id, esc)


@router.post(
    "/v1/escalations/{escalation_id}/notes",
    operation_id="add_escalation_note",
    status_code=201,
)
def add_note(
    escalation_id: EscalationId, body: NoteCreate, principal: PrincipalDep, container: ContainerDep
) -> EscalationNotePublic:
    """A note on an open escalation; it counts as touching it (the climb timer restarts)."""
    principal.require(Permission.WORK_ESCALATIONS)
    with container.db.write() as session:
        note = service.add_note(
            session,
            tenant_id=principal.require_tenant(),
            escalation_id=escalation_id,
            body=body.body,
            actor=principal.actor,
            now=container.clock.now(),
        )
        return EscalationNotePublic.of(note)


@router.post("/v1/escalations/{escalation_id}/assign", operation_id="assign_escalation")
def assign(
    escalation_id: EscalationId, body: AssignBody, principal: PrincipalDep, container: ContainerDep
) -> EscalationDetail:
    """Give an open escalation an owner (a user id), or none."""
    principal.require(Permission.WORK_ESCALATIONS)
    tenant_id = principal.require_tenant()
    with container.db.write() as session:
        esc = service.assign(
            session,
            tenant_id=tenant_id,
            escalation_id=escalation_id,
            owner_id=body.owner_id,
            actor=principal.actor,
            now=container.clock.now(),
        )
        return _detail(session, tenant_id, esc)


@router.post("/v1/escalations/{escalation_id}/resolve", operation_id="resolve_escalation")
def resolve(
    escalation_id: EscalationId, body: ResolveBody, principal: PrincipalDep, container: ContainerDep
) -> EscalationDetail:
    """Close an open escalation with what was done about it."""
    principal.require(Permission.WORK_ESCALATIONS)
    tenant_id = principal.require_tenant()
    with container.db.write() as session:
        esc = service.resolve(
            session,
            tenant_id=tenant_id,
            escalation_id=escalation_id,
            resolution=body.resolution,
            actor=principal.actor,
            now=container.clock.now(),
            allowed_tiers=service.resolvable_tiers(principal),
        )
        return _detail(session, tenant_id, esc)
