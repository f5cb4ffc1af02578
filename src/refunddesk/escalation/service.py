"""Escalations: open (by rule or by hand), raise, note, assign, resolve, list, summarise.

Plain functions with keyword-only arguments, inside the caller's write transaction. A
refund has at most one open escalation (a unique index): a rule that fires on a refund
already escalated adds a note, and raises the tier when its own is higher. Every action
is an escalation.* event on the refund's timeline, with the acting principal's actor.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from refunddesk.auth.domain import Permission, Principal
from refunddesk.core.errors import Conflict, Forbidden, Invalid, NotFound
from refunddesk.core.ids import new_id
from refunddesk.escalation.domain import Reason, Status
from refunddesk.escalation.notify import notify
from refunddesk.escalation.orm import Escalation, EscalationNote
from refunddesk.refunds.domain import EventType
from refunddesk.refunds.orm import Refund
from refunddesk.sla.config import Jurisdiction, Tier
from refunddesk.sla.orm import RefundClock
from refunddesk.sla.settings import TenantSettings, settings_of
from refunddesk.tenants.orm import Tenant

SYSTEM = "system:escalation"
_LOOK_UP = object()
MAX_NOTE = 4000


def reescalate_at(settings: TenantSettings, tier: Tier, after: datetime) -> datetime | None:
    """When an untouched escalation at this tier goes up one (None at the top tier)."""
    if tier.next() is None:
        return None
    calendar = settings.rules(Jurisdiction.NONE).calendar
    return calendar.add(after, settings.escalation.reescalate_after_hours * 3600)


def _locked_refund(session: Session, tenant_id: str, refund_id: str) -> Refund:
    refund = session.scalars(
        select(Refund)
        .where(Refund.tenant_id == tenant_id, Refund.id == refund_id)
        .with_for_update()
    ).first()
    if refund is None:
        raise NotFound(f"no refund {refund_id}")
    return refund


def open_escalation(session: Session, *, tenant_id: str, refund_id: str) -> Escalation | None:
    return session.scalars(
        select(Escalation).where(
            Escalation.tenant_id == tenant_id,
            Escalation.refund_id == refund_id,
            Escalation.status == str(Status.OPEN),
        )
    ).first()


def _note(
    session: Session, esc: Escalation, *, body: str, actor: str, now: datetime, kind: str
) -> EscalationNote:
    note = EscalationNote(
        tenant_id=esc.tenant_id,
        id=new_id(),
        escalation_id=esc.id,
        kind=kind,
        body=body[:MAX_NOTE],
        actor=actor,
        at=now,
    )
    session.add(note)
    esc.note_count = (esc.note_count or 0) + 1
    esc.updated_at = now
    return note


def _event(
    refund: Refund, type_: EventType, esc: Escalation, *, actor: str, now: datetime, **extra: object
) -> None:
    data: dict[str, object] = {
        "escalation_id": esc.id,
        "tier": esc.tier,
        "reason": esc.reason,
    }
    data.update(extra)
    refund.record(type_, actor=actor, at=now, data=data)


def raise_to(
    session: Session,
    *,
    refund: Refund,
    tier: Tier,
    reason: Reason,
    detail: str,
    actor: str,
    now: datetime,
    settings: TenantSettings,
    note: str | None = None,
    owner_id: str | None = None,
    public_url: str = "",
    current: Escalation | object | None = _LOOK_UP,
) -> tuple[Escalation, bool]:
    """Open an escalation for the (locked) refund, or add to its open one; (it, changed tier).

    current: the refund's open escalation (or None) when the caller has read it already.
    """
    if current is _LOOK_UP:
        esc = open_escalation(session, tenant_id=refund.tenant_id, refund_id=refund.id)
    else:
        assert current is None or isinstance(current, Escalation)
        esc = current
    if esc is None:
        esc = Escalation(
            tenant_id=refund.tenant_id,
            id=new_id(),
            refund_id=refund.id,
            tier=str(tier),
            reason=str(reason),
            detail=detail[:MAX_NOTE],
            status=str(Status.OPEN),
            owner_id=owner_id,
            created_by=actor,
            created_at=now,
            updated_at=now,
            touched_at=now,
            escalate_at=reescalate_at(settings, tier, now),
            note_count=0,
        )
        session.add(esc)
        if note:
            session.flush()  # the note refers to it
            _note(session, esc, body=note, actor=actor, now=now, kind="note")
        _event(refund, EventType.ESCALATED, esc, actor=actor, now=now, detail=esc.detail)
        notify(
            session,
            tenant_id=refund.tenant_id,
            refund_id=refund.id,
            reference=refund.reference,
            escalation_id=esc.id,
            tier=tier,
            what="escalated",
            detail=esc.detail,
            settings=settings.escalation,
            public_url=public_url,
            now=now,
        )
        return esc, True
    current = Tier(esc.tier)
    higher = tier.rank > current.rank
    words = f"{reason}: {detail}"
    if higher:
        move_tier(session, esc, refund, tier, words, actor, now, settings, public_url)
    else:
        _note(session, esc, body=f"also: {words}", actor=actor, now=now, kind="system")
    if note:
        _note(session, esc, body=note, actor=actor, now=now, kind="note")
    if owner_id is not None:
        esc.owner_id = owner_id
    if not actor.startswith("system"):
        esc.touched_at = now
    return esc, higher


def move_tier(
    session: Session,
    esc: Escalation,
    refund: Refund,
    tier: Tier,
    why: str,
    actor: str,
    now: datetime,
    settings: TenantSettings,
    public_url: str,
) -> None:
    before = esc.tier
    esc.tier = str(tier)
    esc.touched_at = now  # the new tier gets its own time before it goes up again
    esc.escalate_at = reescalate_at(settings, tier, now)
    _note(
        session, esc, body=f"raised {before} -> {tier}: {why}", actor=actor, now=now, kind="system"
    )
    _event(
        refund, EventType.ESCALATION_RAISED, esc, actor=actor, now=now, from_tier=before, why=why
    )
    notify(
        session,
        tenant_id=refund.tenant_id,
        refund_id=refund.id,
        reference=refund.reference,
        escalation_id=esc.id,
        tier=tier,
        what=f"raised to {tier}",
        detail=why,
        settings=settings.escalation,
        public_url=public_url,
        now=now,
    )


def escalate(
    session: Session,
    *,
    tenant_id: str,
    refund_id: str,
    tier: Tier | str,
    reason: str,
    actor: str,
    now: datetime,
    note: str | None = None,
    owner_id: str | None = None,
    public_url: str = "",
) -> Escalation:
    """An agent escalates a refund by hand (or raises its open escalation to `tier`)."""
    if not reason.strip():
        raise Invalid("say why the refund is escalated", field="reason")
    try:
        tier = Tier(tier)
    except ValueError:
        raise Invalid(f"no tier {tier!r}; choose l1, l2 or finance", field="tier") from None
    refund = _locked_refund(session, tenant_id, refund_id)
    settings = settings_of(session, tenant_id)
    esc, _ = raise_to(
        session,
        refund=refund,
        tier=tier,
        reason=Reason.MANUAL,
        detail=reason.strip(),
        actor=actor,
        now=now,
        settings=settings,
        note=note,
        owner_id=owner_id,
        public_url=public_url,
    )
    session.flush()
    return esc


def get(session: Session, *, tenant_id: str, escalation_id: str, lock: bool = False) -> Escalation:
    query = select(Escalation).where(
        Escalation.tenant_id == tenant_id, Escalation.id == escalation_id
    )
    if lock:
        query = query.with_for_update()
    esc = session.scalars(query).first()
    if esc is None:
        raise NotFound(f"no escalation {escalation_id}")
    return esc


def _open_for_change(session: Session, tenant_id: str, escalation_id: str) -> Escalation:
    """The open escalation, locked after its refund (the order every writer locks them in)."""
    found = get(session, tenant_id=tenant_id, escalation_id=escalation_id)
    _locked_refund(session, tenant_id, found.refund_id)
    esc = get(session, tenant_id=tenant_id, escalation_id=escalation_id, lock=True)
    if esc.status != Status.OPEN:
        raise Conflict(f"escalation {escalation_id} is already resolved", field="escalation_id")
    return esc


def add_note(
    session: Session, *, tenant_id: str, escalation_id: str, body: str, actor: str, now: datetime
) -> EscalationNote:
    """A note on an open escalation; someone looked at it, so its untouched timer restarts."""
    if not body.strip():
        raise Invalid("a note needs some text", field="body")
    esc = _open_for_change(session, tenant_id, escalation_id)
    note = _note(session, esc, body=body.strip(), actor=actor, now=now, kind="note")
    _touch(session, esc, now)
    session.flush()
    return note


def _touch(session: Session, esc: Escalation, now: datetime) -> None:
    esc.touched_at = now
    esc.updated_at = now
    esc.escalate_at = reescalate_at(settings_of(session, esc.tenant_id), Tier(esc.tier), now)


def assign(
    session: Session,
    *,
    tenant_id: str,
    escalation_id: str,
    owner_id: str | None,
    actor: str,
    now: datetime,
) -> Escalation:
    """Give the escalation an owner (a user id), or take it away (None)."""
    esc = _open_for_change(session, tenant_id, escalation_id)
    before = esc.owner_id
    esc.owner_id = owner_id
    _touch(session, esc, now)
    _note(
        session,
        esc,
        body=f"owner {before or 'none'} -> {owner_id or 'none'}",
        actor=actor,
        now=now,
        kind="system",
    )
    refund = _locked_refund(session, tenant_id, esc.refund_id)
    _event(refund, EventType.ESCALATION_ASSIGNED, esc, actor=actor, now=now, owner_id=owner_id)
    session.flush()
    return esc


def resolve(
    session: Session,
    *,
    tenant_id: str,
    escalation_id: str,
    resolution: str,
    actor: str,
    now: datetime,
    allowed_tiers: Collection[Tier] = tuple(Tier),
) -> Escalation:
    """Close the escalation with what was done; allowed_tiers: what the actor's role may close."""
    if not resolution.strip():
        raise Invalid("say how the escalation was resolved", field="resolution")
    esc = _open_for_change(session, tenant_id, escalation_id)
    if Tier(esc.tier) not in allowed_tiers:
        raise Forbidden(f"your role may not resolve a {esc.tier} escalation")
    esc.status = str(Status.RESOLVED)
    esc.resolution = resolution.strip()[:MAX_NOTE]
    esc.resolved_at = now
    esc.resolved_by = actor
    esc.escalate_at = None
    esc.touched_at = now
    esc.updated_at = now
    refund = _locked_refund(session, tenant_id, esc.refund_id)
    _event(refund, EventType.ESCALATION_RESOLVED, esc, actor=actor, now=now)
    session.flush()
    return esc


def resolvable_tiers(principal: Principal) -> tuple[Tier, ...]:
    """Agents close l1 escalations; supervisors, finance and admins close any."""
    if principal.can(Permission.RESOLVE_ESCALATIONS):
        return tuple(Tier)
    return (Tier.L1,)


def notes_of(session: Session, *, tenant_id: str, escalation_id: str) -> list[EscalationNote]:
    return list(
        session.scalars(
            select(EscalationNote)
            .where(
                EscalationNote.tenant_id == tenant_id,
                EscalationNote.escalation_id == escalation_id,
            )
            .order_by(EscalationNote.at, EscalationNote.id)
        )
    )


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise Invalid("not a cursor this API gave out", field="cursor") from None
    if not raw or len(raw) > 26 or not raw.isalnum():
        raise Invalid("not a cursor this API gave out", field="cursor")
    return raw


def list_escalations(
    session: Session,
    *,
    tenant_id: str,
    status: Status | str | None = None,
    tier: Tier | str | None = None,
    owner_id: str | None = None,
    refund_id: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Escalation], str | None]:
    """Newest first; the cursor (opaque) continues after the last one returned."""
    query = select(Escalation).where(Escalation.tenant_id == tenant_id)
    if status is not None:
        query = query.where(Escalation.status == str(status))
    if tier is not None:
        query = query.where(Escalation.tier == str(tier))
    if owner_id is not None:
        query = query.where(Escalation.owner_id == owner_id)
    if refund_id is not None:
        query = query.where(Escalation.refund_id == refund_id)
    if cursor is not None:
        query = query.where(Escalation.id < decode_cursor(cursor))
    rows = list(session.scalars(query.order_by(Escalation.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1].id) if more and rows else None)


@dataclass(frozen=True, slots=True)
class Summary:
    """The supervisor's view over some tenants."""

    open_by_tier: dict[str, int]
    unassigned: int
    breaches_today: int  # refunds whose first breach was today (each tenant's local day)
    overdue: int  # running clocks past their deadline now
    at_risk: int  # running clocks due within the horizon


def summary(
    session: Session,
    *,
    tenant_ids: Sequence[str],
    now: datetime,
    horizon: timedelta = timedelta(hours=4),
) -> Summary:
    """Open escalations by tier, breaches today, clocks overdue and at risk (indexed counts)."""
    by_tier: Counter[str] = Counter({str(t): 0 for t in Tier})
    unassigned = breaches = overdue = at_risk = 0
    zones = dict(
        session.execute(select(Tenant.id, Tenant.timezone).where(Tenant.id.in_(tenant_ids))).all()
    )
    for tenant_id in sorted(zones):
        rows = session.execute(
            select(Escalation.tier, Escalation.owner_id.is_(None), func.count())
            .where(Escalation.tenant_id == tenant_id, Escalation.status == str(Status.OPEN))
            .group_by(Escalation.tier, Escalation.owner_id.is_(None))
        ).all()
        for tier, no_owner, n in rows:
            by_tier[tier] += n
            unassigned += n if no_owner else 0
        tz = ZoneInfo(zones[tenant_id])
        midnight = datetime.combine(now.astimezone(tz).date(), time(0), tzinfo=tz).astimezone(UTC)
        breaches += _count(
            session, tenant_id, RefundClock.breached_at >= midnight, RefundClock.breached_at <= now
        )
        overdue += _count(session, tenant_id, RefundClock.next_due_at <= now)
        at_risk += _count(
            session,
            tenant_id,
            RefundClock.next_due_at > now,
            RefundClock.next_due_at <= now + horizon,
        )
    return Summary(dict(by_tier), unassigned, breaches, overdue, at_risk)


def _count(session: Session, tenant_id: str, *where: object) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(RefundClock)
            .where(
                RefundClock.tenant_id == tenant_id,
                *where,  # type: ignore[arg-type]
            )
        )
        or 0
    )
