"""The escalation scan: a periodic pass that applies each tenant's rules to the refunds due.

Set-based: per tenant, refunds come from the index (tenant_id, next_check_at) and untouched
escalations from (tenant_id, escalate_at), a page at a time; each page's facts are read
with a few queries. Rows are locked in the payout job's order (refunds, then their clock
rows), skipping those another worker holds (PostgreSQL), and re-checked once locked, so
several workers never act twice. Each refund is handled in its own SAVEPOINT: one bad
refund is logged and put off, never the end of the pass.
"""

from __future__ import annotations

import logging
import time as _time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, lazyload, load_only

from refunddesk.core.clock import Clock
from refunddesk.db.keys import keys_in
from refunddesk.db.uow import Database
from refunddesk.escalation import service
from refunddesk.escalation.domain import Facts, Hit, Status, evaluate, top
from refunddesk.escalation.orm import Escalation
from refunddesk.orders.orm import Order
from refunddesk.refunds.domain import OPEN, RefundStatus
from refunddesk.refunds.orm import Refund
from refunddesk.sla import domain as clocks_domain
from refunddesk.sla.config import Tier
from refunddesk.sla.orm import RefundClock
from refunddesk.sla.settings import TenantSettings, settings_of
from refunddesk.tenants.orm import Tenant

log = logging.getLogger(__name__)

ACTOR = service.SYSTEM
# A refund whose check failed is looked at again after this long.
RETRY_AFTER = timedelta(minutes=5)
# What the rules and the timeline event need of a refund: not its lines, findings, ...
_SLIM = (
    load_only(
        Refund.order_id,
        Refund.reference,
        Refund.status,
        Refund.amount_minor,
        Refund.currency,
        Refund.updated_at,
        Refund.event_count,
        Refund.risk_level,
        Refund.risk_score,
    ),
    lazyload(Refund.lines),  # never touched here
)


@dataclass
class ScanReport:
    tenants: int = 0
    checked: int = 0  # refunds whose rules were evaluated
    opened: int = 0  # new escalations
    raised: int = 0  # open escalations moved up a tier (by a rule or untouched)
    noted: int = 0  # rule hits added to an escalation at the same or a higher tier
    errors: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def add(self, other: ScanReport) -> None:
        """Count another (page's) report in."""
        for name in ("checked", "opened", "raised", "noted", "errors"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failures += other.failures

    def as_dict(self) -> dict[str, object]:
        return {
            "tenants": self.tenants,
            "checked": self.checked,
            "opened": self.opened,
            "raised": self.raised,
            "noted": self.noted,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "failures": self.failures[:20],
        }


def scan(
    *,
    db: Database,
    clock: Clock,
    page: int = 500,
    tenant_ids: list[str] | None = None,
    public_url: str = "",
) -> ScanReport:
    """One pass over every tenant (or those given): due refunds, then untouched escalations."""
    started = _time.perf_counter()
    report = ScanReport()
    now = clock.now()
    with db.read() as session:
        query = select(Tenant.id).order_by(Tenant.id)
        if tenant_ids is not None:
            query = query.where(Tenant.id.in_(tenant_ids))
        tenants = list(session.scalars(query))
    for tenant_id in tenants:
        report.tenants += 1
        try:
            _scan_tenant(db, tenant_id, now, page, report, public_url)
        except Exception as exc:  # one tenant's trouble never stops the others
            log.exception("escalation scan failed for tenant %s", tenant_id)
            report.errors += 1
            report.failures.append(f"tenant {tenant_id}: {exc!r}")
    report.seconds = _time.perf_counter() - started
    return report


def _scan_tenant(
    db: Database, tenant_id: str, now: datetime, page: int, report: ScanReport, public_url: str
) -> None:
    while True:
        with db.write() as session:
            settings = settings_of(session, tenant_id)
            done = _refund_page(session, tenant_id, settings, now, page, report, public_url)
        if done < page:
            break
    while True:
        with db.write() as session:
            settings = settings_of(session, tenant_id)
            done = _untouched_page(session, tenant_id, settings, now, page, report, public_url)
        if done < page:
            break


def _skip_locked(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _refund_page(
    session: Session,
    tenant_id: str,
    settings: TenantSettings,
    now: datetime,
    page: int,
    report: ScanReport,
    public_url: str,
) -> int:
    """Check one page of due refunds; the number of candidates seen (page: maybe more)."""
    candidates = list(
        session.scalars(
            select(RefundClock.refund_id)
            .where(RefundClock.tenant_id == tenant_id, RefundClock.next_check_at <= now)
            .order_by(RefundClock.next_check_at)
            .limit(page)
        )
    )
    if not candidates:
        return 0
    keys = [(tenant_id, r) for r in candidates]
    refund_query = (
        select(Refund).where(keys_in((Refund.tenant_id, Refund.id), keys)).options(*_SLIM)
    )
    if _skip_locked(session):
        refund_query = refund_query.with_for_update(skip_locked=True)
    refunds = {r.id: r for r in session.scalars(refund_query)}
    if not refunds:
        return 0  # all held by another worker: it handles them
    locked = [(tenant_id, r) for r in refunds]
    rows = {
        c.refund_id: c
        for c in session.scalars(
            select(RefundClock)
            .where(keys_in((RefundClock.tenant_id, RefundClock.refund_id), locked))
            .with_for_update()
        )
    }
    orders = _customers(session, tenant_id, {r.order_id for r in refunds.values()})
    # Re-checked under the lock: another worker may have handled them since.
    due = [
        (refund, row)
        for rid, refund in refunds.items()
        if (row := rows.get(rid)) is not None
        and row.next_check_at is not None
        and row.next_check_at <= now
    ]
    # The whole page in one SAVEPOINT (one flush); if anything in it fails, it is rolled
    # back and checked again refund by refund, so one bad refund never stops the pass.
    trial = ScanReport()
    try:
        with session.begin_nested():
            current = _open_escalations(session, tenant_id, locked)
            for refund, row in due:
                _check(session, refund, row, orders, settings, now, trial, public_url, current)
    except Exception:
        log.warning("an escalation page failed; checking it refund by refund", exc_info=True)
        trial = ScanReport()
        for refund, _ in due:
            refund.__dict__.pop("_pending_events", None)  # recorded in the rolled-back try
        current = _open_escalations(session, tenant_id, locked)
        for refund, row in due:
            try:
                with session.begin_nested():
                    _check(session, refund, row, orders, settings, now, trial, public_url, current)
            except Exception as exc:
                log.exception("escalation check failed for refund %s", refund.id)
                trial.errors += 1
                trial.failures.append(f"refund {refund.id}: {exc!r}")
                refund.__dict__.pop("_pending_events", None)
                session.expire(row)
                row.next_check_at = now + RETRY_AFTER
    report.add(trial)
    session.flush()
    return len(candidates)


def _open_escalations(
    session: Session, tenant_id: str, keys: list[tuple[str, str]]
) -> dict[str, Escalation]:
    """The open escalation of each of these refunds, by refund id (one query)."""
    return {
        e.refund_id: e
        for e in session.scalars(
            select(Escalation).where(
                keys_in((Escalation.tenant_id, Escalation.refund_id), keys),
                Escalation.status == str(Status.OPEN),
            )
        )
    }


def _customers(session: Session, tenant_id: str, ids: set[str]) -> dict[str, frozenset[str]]:
    """Per order: the customer's e-mail and id, lower-case (for the VIP list)."""
    out = {}
    for row in session.execute(
        select(Order.id, Order.customer_email, Order.customer_ref).where(
            keys_in((Order.tenant_id, Order.id), [(tenant_id, o) for o in ids])
        )
    ):
        keys = {str(v).strip().lower() for v in row[1:] if v}
        out[row[0]] = frozenset(keys)
    return out


def _check(
    session: Session,
    refund: Refund,
    row: RefundClock,
    customers: dict[str, frozenset[str]],
    settings: TenantSettings,
    now: datetime,
    report: ScanReport,
    public_url: str,
    current: dict[str, Escalation],
) -> None:
    report.checked += 1
    status = RefundStatus(refund.status)
    clocks = clocks_domain.load(row.clocks)
    fired = list(row.fired or [])
    if status not in OPEN:
        row.next_check_at = None
        return
    facts = Facts(
        status=status,
        amount_minor=refund.amount_minor,
        currency=refund.currency,
        updated_at=refund.updated_at,
        risk_level=refund.risk_level,
        risk_score=refund.risk_score,
        contacts=row.contacts or 0,
        customer_keys=customers.get(refund.order_id, frozenset()),
    )
    hits = evaluate(facts, clocks, fired, settings.escalation, now)
    fired += [h.key for h in hits]
    if any(h.key.startswith("breach:") for h in hits) and row.breached_at is None:
        row.breached_at = now
    _act(session, refund, hits, settings, now, report, public_url, current)
    row.fired = fired
    nxt = clocks_domain.trigger_times(clocks, fired)
    row.next_check_at = nxt[0][0] if nxt else None


def _act(
    session: Session,
    refund: Refund,
    hits: list[Hit],
    settings: TenantSettings,
    now: datetime,
    report: ScanReport,
    public_url: str,
    current: dict[str, Escalation],
) -> None:
    best = top(hits)
    if best is None or best.tier is None:
        return
    detail = "; ".join(h.detail for h in hits if h.tier is not None)
    esc_before = current.get(refund.id)
    esc, changed = service.raise_to(
        session,
        refund=refund,
        tier=best.tier,
        reason=best.reason,
        detail=detail,
        actor=ACTOR,
        now=now,
        settings=settings,
        public_url=public_url,
        current=esc_before,
    )
    current[refund.id] = esc
    if esc_before is None:
        report.opened += 1
    elif changed:
        report.raised += 1
    else:
        report.noted += 1


def _untouched_page(
    session: Session,
    tenant_id: str,
    settings: TenantSettings,
    now: datetime,
    page: int,
    report: ScanReport,
    public_url: str,
) -> int:
    """Raise one page of escalations left untouched past their time; how many were due."""
    candidates = list(
        session.execute(
            select(Escalation.id, Escalation.refund_id)
            .where(Escalation.tenant_id == tenant_id, Escalation.escalate_at <= now)
            .order_by(Escalation.escalate_at)
            .limit(page)
        )
    )
    if not candidates:
        return 0
    # Refunds first, then escalations: the order every other writer locks them in.
    refund_query = (
        select(Refund)
        .where(
            keys_in((Refund.tenant_id, Refund.id), [(tenant_id, c.refund_id) for c in candidates])
        )
        .options(*_SLIM)
    )
    if _skip_locked(session):
        refund_query = refund_query.with_for_update(skip_locked=True)
    refunds = {r.id: r for r in session.scalars(refund_query)}
    if not refunds:
        return 0
    due = session.scalars(
        select(Escalation)
        .where(
            keys_in(
                (Escalation.tenant_id, Escalation.id),
                [(tenant_id, c.id) for c in candidates if c.refund_id in refunds],
            )
        )
        .with_for_update()
    )
    for esc in due:
        if esc.escalate_at is None or esc.escalate_at > now:
            continue  # touched, or handled by another worker, since
        refund = refunds[esc.refund_id]
        try:
            with session.begin_nested():
                _raise_untouched(session, esc, refund, settings, now, report, public_url)
        except Exception as exc:
            log.exception("re-escalation failed for escalation %s", esc.id)
            report.errors += 1
            report.failures.append(f"escalation {esc.id}: {exc!r}")
            session.expire(esc)
            esc.escalate_at = now + RETRY_AFTER
    session.flush()
    return len(candidates)


def _raise_untouched(
    session: Session,
    esc: Escalation,
    refund: Refund,
    settings: TenantSettings,
    now: datetime,
    report: ScanReport,
    public_url: str,
) -> None:
    if esc.status != Status.OPEN:
        esc.escalate_at = None
        return
    nxt = Tier(esc.tier).next()
    if RefundStatus(refund.status) not in OPEN or nxt is None:
        # Nothing left to chase (the refund is done) or no one above: the timer stops.
        esc.escalate_at = None
        return
    hours = settings.escalation.reescalate_after_hours
    service.move_tier(
        session,
        esc,
        refund,
        nxt,
        f"untouched for {hours:g} business hours",
        ACTOR,
        now,
        settings,
        public_url,
    )
    report.raised += 1
