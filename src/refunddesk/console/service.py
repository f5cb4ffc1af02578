"""Claims, assignment, saved filters, search and workload: the console's own services."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import phonenumbers
from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from refunddesk.auth.domain import Role
from refunddesk.auth.orm import Membership, User
from refunddesk.console.access import ALLOWED, Action
from refunddesk.console.orm import Claim, SavedFilter
from refunddesk.console.queues import Filter
from refunddesk.core.clock import Clock
from refunddesk.core.errors import Conflict, Forbidden, Invalid, NotFound
from refunddesk.core.ids import new_id
from refunddesk.escalation.orm import Escalation
from refunddesk.orders.orm import Order
from refunddesk.refunds.domain import OPEN
from refunddesk.refunds.orm import Refund

log = logging.getLogger(__name__)
MAX_FILTER_NAME = 100
MAX_FILTERS = 50
MAX_SEARCH = 320
SEARCH_LIMIT = 50


@dataclass(frozen=True, slots=True)
class ClaimView:
    user_id: str
    user_name: str
    claimed_at: datetime


def _refund_exists(session: Session, tenant_id: str, refund_id: str) -> None:
    found = session.scalar(
        select(Refund.id).where(Refund.tenant_id == tenant_id, Refund.id == refund_id)
    )
    if found is None:
        raise NotFound("no such refund", field="refund_id")


def claim_of(session: Session, *, tenant_id: str, refund_id: str) -> ClaimView | None:
    row = session.execute(
        select(Claim.user_id, User.name, Claim.claimed_at)
        .join(User, User.id == Claim.user_id)
        .where(Claim.tenant_id == tenant_id, Claim.refund_id == refund_id)
    ).first()
    return None if row is None else ClaimView(row.user_id, row.name, row.claimed_at)


def claim(session: Session, *, clock: Clock, tenant_id: str, refund_id: str, user_id: str) -> None:
    """Claim the refund for the user; Conflict if someone else holds it."""
    _refund_exists(session, tenant_id, refund_id)
    held = session.get(Claim, (tenant_id, refund_id))
    if held is not None:
        if held.user_id == user_id:
            return
        holder = session.get(User, held.user_id)
        raise Conflict(
            f"{holder.name if holder else 'another user'} is working on this refund already",
            field="refund_id",
        )
    session.add(
        Claim(tenant_id=tenant_id, refund_id=refund_id, user_id=user_id, claimed_at=clock.now())
    )
    try:
        session.flush()
    except IntegrityError as exc:  # claimed by someone else a moment ago
        raise Conflict("someone claimed this refund a moment ago", field="refund_id") from exc
    log.info("refund claimed", extra={"tenant_id": tenant_id, "refund_id": refund_id})


def release(
    session: Session, *, tenant_id: str, refund_id: str, user_id: str, may_release_others: bool
) -> None:
    """Give the refund back to the queue (one's own claim; leads may release anyone's)."""
    _refund_exists(session, tenant_id, refund_id)
    held = session.get(Claim, (tenant_id, refund_id))
    if held is None:
        return
    if held.user_id != user_id and not may_release_others:
        raise Forbidden("only a supervisor may release someone else's claim")
    session.delete(held)
    session.flush()


def assign(
    session: Session, *, clock: Clock, tenant_id: str, refund_id: str, assignee_id: str
) -> None:
    """Give the refund to a member of the tenant who may work on it (replacing any claim)."""
    _refund_exists(session, tenant_id, refund_id)
    if assignee_id not in {w.user_id for w in workers(session, tenant_id=tenant_id)}:
        raise Invalid("assign to someone who works on this retailer's refunds", field="user_id")
    held = session.get(Claim, (tenant_id, refund_id))
    if held is None:
        session.add(
            Claim(
                tenant_id=tenant_id,
                refund_id=refund_id,
                user_id=assignee_id,
                claimed_at=clock.now(),
            )
        )
    else:
        held.user_id = assignee_id
        held.claimed_at = clock.now()
    session.flush()


@dataclass(frozen=True, slots=True)
class Worker:
    user_id: str
    name: str
    role: str


def workers(session: Session, *, tenant_id: str) -> list[Worker]:
    """Enabled users who may claim this tenant's refunds (members with a working role)."""
    roles = [str(r) for r in ALLOWED[Action.CLAIM] if r is not Role.ADMIN]
    rows = session.execute(
        select(User.id, User.name, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .where(
            Membership.tenant_id == tenant_id,
            Membership.role.in_(roles),
            User.disabled_at.is_(None),
        )
        .order_by(User.name)
    ).all()
    members = [Worker(row.id, row.name, row.role) for row in rows]
    admins = session.execute(
        select(User.id, User.name)
        .where(User.is_admin.is_(True), User.disabled_at.is_(None))
        .order_by(User.name)
    ).all()
    known = {w.user_id for w in members}
    return members + [Worker(a.id, a.name, "admin") for a in admins if a.id not in known]


@dataclass(frozen=True, slots=True)
class Workload:
    user_id: str
    name: str
    open_claims: int


def workload(session: Session, *, tenant_id: str) -> list[Workload]:
    """Open refunds each user holds in the tenant, busiest first."""
    rows = session.execute(
        select(Claim.user_id, User.name, func.count())
        .join(User, User.id == Claim.user_id)
        .join(Refund, and_(Refund.tenant_id == Claim.tenant_id, Refund.id == Claim.refund_id))
        .where(Claim.tenant_id == tenant_id, Refund.status.in_([str(s) for s in OPEN]))
        .group_by(Claim.user_id, User.name)
        .order_by(func.count().desc(), User.name)
    ).all()
    return [Workload(row[0], row[1], int(row[2])) for row in rows]


# ----- saved filters ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SavedFilterView:
    id: str
    name: str
    filter: Filter


def save_filter(
    session: Session, *, clock: Clock, tenant_id: str, user_id: str, name: str, flt: Filter
) -> str:
    """Keep the filter under this name for the user (replacing one of the same name)."""
    name = " ".join(name.split())
    if not name or len(name) > MAX_FILTER_NAME:
        raise Invalid(f"give the filter a name of 1 to {MAX_FILTER_NAME} characters", field="name")
    held = session.scalars(
        select(SavedFilter).where(
            SavedFilter.tenant_id == tenant_id,
            SavedFilter.user_id == user_id,
            SavedFilter.name == name,
        )
    ).first()
    if held is not None:
        held.params = flt.as_params()
        return held.id
    count = session.scalar(
        select(func.count())
        .select_from(SavedFilter)
        .where(SavedFilter.tenant_id == tenant_id, SavedFilter.user_id == user_id)
    )
    if (count or 0) >= MAX_FILTERS:
        raise Invalid(f"keep at most {MAX_FILTERS} filters; delete one first", field="name")
    row = SavedFilter(
        tenant_id=tenant_id,
        id=new_id(),
        user_id=user_id,
        name=name,
        params=flt.as_params(),
        created_at=clock.now(),
    )
    session.add(row)
    session.flush()
    return row.id


def filters_of(session: Session, *, tenant_id: str, user_id: str) -> list[SavedFilterView]:
    rows = session.scalars(
        select(SavedFilter)
        .where(SavedFilter.tenant_id == tenant_id, SavedFilter.user_id == user_id)
        .order_by(SavedFilter.name)
    ).all()
    out = []
    for row in rows:
        try:
            out.append(SavedFilterView(row.id, row.name, Filter.from_params(row.params)))
        except Invalid:  # a queue that no longer exists: skip rather than fail the page
            continue
    return out


def delete_filter(session: Session, *, tenant_id: str, user_id: str, filter_id: str) -> None:
    gone = session.execute(
        delete(SavedFilter).where(
            SavedFilter.tenant_id == tenant_id,
            SavedFilter.user_id == user_id,
            SavedFilter.id == filter_id,
        )
    )
    if not getattr(gone, "rowcount", 0):
        raise NotFound("no such saved filter", field="filter_id")


# ----- search -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hit:
    tenant_id: str
    refund_id: str
    reference: str
    status: str
    amount_minor: int
    currency: str
    created_at: datetime
    order_external_id: str
    customer_name: str


def _phone(term: str) -> str | None:
    if not term.startswith("+"):
        return None
    try:
        number = phonenumbers.parse(term, None)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def search(session: Session, *, tenant_ids: list[str], term: str) -> list[Hit]:
    """Refunds of the user's tenants whose reference, order number, email or phone is term."""
    term = term.strip()
    if not term or len(term) > MAX_SEARCH or not tenant_ids:
        return []
    order_match = [Order.external_id == term]
    if "@" in term:
        order_match += [Order.customer_email == term.lower(), Order.customer_email == term]
    phone = _phone(term)
    if phone is not None:
        order_match.append(Order.customer_phone == phone)
    orders = (
        select(Order.tenant_id, Order.id)
        .where(Order.tenant_id.in_(tenant_ids), or_(*order_match))
        .limit(SEARCH_LIMIT)
    )
    pairs = {(row.tenant_id, row.id) for row in session.execute(orders)}
    match = [and_(Refund.tenant_id == t, Refund.order_id == o) for t, o in pairs]
    match.append(Refund.reference == term.upper())
    rows = session.execute(
        select(
            Refund.tenant_id,
            Refund.id,
            Refund.reference,
            Refund.status,
            Refund.amount_minor,
            Refund.currency,
            Refund.created_at,
            Order.external_id,
            Order.customer_name,
        )
        .join(Order, and_(Order.tenant_id == Refund.tenant_id, Order.id == Refund.order_id))
        .where(Refund.tenant_id.in_(tenant_ids), or_(*match))
        .order_by(Refund.created_at.desc(), Refund.id)
        .limit(SEARCH_LIMIT)
    ).all()
    return [Hit(*row) for row in rows]


def escalations_of(session: Session, *, tenant_id: str, refund_id: str) -> list[Escalation]:
    """The refund's escalations, newest first (for its page)."""
    return list(
        session.scalars(
            select(Escalation)
            .where(Escalation.tenant_id == tenant_id, Escalation.refund_id == refund_id)
            .order_by(Escalation.created_at.desc())
        )
    )
