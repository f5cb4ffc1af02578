"""Keep every refund's clocks in step with its status, in the transaction that changes it.

Two ways in, because refunds change status two ways: the ORM (Refund.transition and a
flush: an after_flush hook, run before the events are written so it sees them) and the
bulk writers that bypass the unit of work (intake's INSERTs, the payout job's write-back),
which call track_clocks themselves with the refunds they moved.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, get_args

from sqlalchemy import Connection, bindparam, event, insert, select, update
from sqlalchemy.orm import Session

from refunddesk.db.base import table_of
from refunddesk.db.keys import pairs_in
from refunddesk.db.prepared import Driver, Prepared
from refunddesk.orders.orm import Order
from refunddesk.refunds.domain import OPEN, EventType, RefundStatus
from refunddesk.refunds.orm import NewEvent, Refund
from refunddesk.sla import domain
from refunddesk.sla.config import Jurisdiction, PausingStatus
from refunddesk.sla.domain import Clocks
from refunddesk.sla.orm import RefundClock
from refunddesk.sla.settings import TenantSettings, country_of, settings_fast, settings_for

_CLOCKS = table_of(RefundClock)
_INSERT = Prepared(insert(_CLOCKS), keys=[c.key for c in _CLOCKS.columns])
_MOVES = frozenset({str(EventType.REQUESTED), str(EventType.STATUS_CHANGED)})


def moves(events: Iterable[NewEvent]) -> list[tuple[RefundStatus, datetime]]:
    """The statuses a refund entered, in order, from its recorded events."""
    return [(RefundStatus(e.to_status), e.at) for e in events if e.type in _MOVES]


_CONTEXT = (
    select(
        Refund.tenant_id,
        Refund.id,
        Order.shipping_address,
        RefundClock.clocks,
        RefundClock.fired,
        RefundClock.jurisdiction,
        RefundClock.breached_at,
        RefundClock.next_check_at,
        RefundClock.refund_id.label("clock_refund_id"),
    )
    .join(Order, (Order.tenant_id == Refund.tenant_id) & (Order.id == Refund.order_id))
    .outerjoin(
        RefundClock,
        (RefundClock.tenant_id == Refund.tenant_id) & (RefundClock.refund_id == Refund.id),
    )
)
_CONTEXT_ONE = Prepared(
    _CONTEXT.where(Refund.tenant_id == bindparam("tenant_id"), Refund.id == bindparam("refund_id"))
)


def _context(conn: Connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """Per refund: its order's shipping address and its clock row, if any (one query)."""
    if len(keys) == 1:  # intake and single moves: a prepared statement on the driver
        tenant_id, refund_id = keys[0]
        row = Driver.of(conn).first(_CONTEXT_ONE, {"tenant_id": tenant_id, "refund_id": refund_id})
        return {} if row is None else {keys[0]: row}
    rows = conn.execute(_CONTEXT.where(pairs_in(Refund.tenant_id, Refund.id, keys)))
    return {(r.tenant_id, r.id): r for r in rows}


def apply_moves(
    clocks: Clocks,
    steps: Sequence[tuple[RefundStatus, datetime]],
    settings: TenantSettings,
    jurisdiction: Jurisdiction,
) -> Clocks:
    rules = settings.rules(jurisdiction)
    for status, at in steps:
        clocks = domain.advance(clocks, status, at, rules)
    return clocks


def row_values(
    *,
    tenant_id: str,
    refund_id: str,
    status: RefundStatus,
    clocks: Clocks,
    fired: list[str],
    jurisdiction: str,
    breached_at: datetime | None,
    at: datetime,
    check_now: bool,
) -> dict[str, Any]:
    """The refund_clocks row for these clocks; check_now: the scan should look at once."""
    triggers = domain.trigger_times(clocks, fired)
    next_check = at if check_now else (triggers[0][0] if triggers else None)
    if breached_at is None:
        stopped = [c.stopped_at for c in clocks.values() if c.stopped_at and c.breached]
        breached_at = min(stopped) if stopped else None
    return {
        "tenant_id": tenant_id,
        "refund_id": refund_id,
        "status": str(status),
        "jurisdiction": jurisdiction,
        "clocks": domain.dump(clocks),
        "next_due_at": domain.next_due(clocks),
        "next_check_at": next_check,
        "fired": fired,
        "breached_at": breached_at,
        "updated_at": at,
    }


_UPDATE_KEYS = (
    "status",
    "clocks",
    "fired",
    "next_due_at",
    "next_check_at",
    "breached_at",
    "updated_at",
)


def _quiet(from_status: str | None, to_status: str) -> bool:
    """Whether no clock can notice this move (approved -> processing): every clock runs in
    both statuses or in neither, and neither is one a tenant may pause clocks in."""
    if from_status is None or from_status in _MAY_PAUSE or to_status in _MAY_PAUSE:
        return False
    before, after = RefundStatus(from_status), RefundStatus(to_status)
    return all((before in runs) == (after in runs) for runs in domain.RUNS_IN.values())


_MAY_PAUSE = frozenset(get_args(PausingStatus))
_QUIET = {(str(a), str(b)) for a in RefundStatus for b in RefundStatus if _quiet(str(a), str(b))}


def track_clocks(bind: Session | Connection, refunds: Iterable[Refund]) -> int:
    """Advance the clocks of refunds whose recorded (not yet cleared) events move them."""
    pending = {}
    quiet = []
    for refund in refunds:
        events = refund.__dict__.get("_pending_events") or ()
        steps = moves(events)
        if not steps:
            continue
        if all((e.from_status, e.to_status) in _QUIET for e in events if e.type in _MOVES):
            # Nothing to read or recompute: the row only learns the refund's new status.
            status, at = steps[-1]
            quiet.append(_status_row(refund.tenant_id, refund.id, status, at))
        else:
            pending[(refund.tenant_id, refund.id)] = steps
    conn = bind.connection() if isinstance(bind, Session) else bind
    Driver.of(conn).execute_many(_UPDATE_STATUS, quiet)
    return len(quiet) + (write_moves(conn, pending) if pending else 0)


def _status_row(
    tenant_id: str, refund_id: str, status: RefundStatus, at: datetime
) -> dict[str, Any]:
    return {
        "status": str(status),
        "updated_at": at,
        "k_tenant_id": tenant_id,
        "k_refund_id": refund_id,
    }


def write_moves(
    conn: Connection, pending: dict[tuple[str, str], list[tuple[RefundStatus, datetime]]]
) -> int:
    keys = list(pending)
    context = _context(conn, keys)
    tenants = {t for t, _ in keys}
    if len(tenants) == 1:
        (only,) = tenants
        one = settings_fast(conn, only)
        settings = {only: one} if one is not None else {}
    else:
        settings = settings_for(conn, tenants)
    inserts, updates, status_only = [], [], []
    for key, steps in pending.items():
        found = context.get(key)
        tenant = settings.get(key[0])
        if found is None or tenant is None or not steps:
            continue
        exists = found.clock_refund_id is not None
        if exists:
            jurisdiction = Jurisdiction(found.jurisdiction)
            clocks, fired = domain.load(found.clocks), list(found.fired or [])
        else:
            shipping = found.shipping_address
            jurisdiction = domain.jurisdiction_for(country_of(shipping), tenant.sla.jurisdiction)
            clocks, fired = {}, []
        before = clocks
        clocks = apply_moves(clocks, steps, tenant, jurisdiction)
        # A clock that started afresh (a reversed payout) may warn and breach again.
        for name, clock in clocks.items():
            old = before.get(name)
            if old is not None and old.started_at != clock.started_at:
                fired = [f for f in fired if f not in (f"near:{name}", f"breach:{name}")]
        status, at = steps[-1]
        # New refunds meet the one-off rules (value, VIP, risk); a failed payout its own.
        check_now = (not exists and status in OPEN) or status is RefundStatus.FAILED
        if exists and not check_now and clocks == before:
            # A move no clock notices (approved -> processing): the row keeps its clocks.
            status_only.append(_status_row(key[0], key[1], status, at))
            continue
        values = row_values(
            tenant_id=key[0],
            refund_id=key[1],
            status=status,
            clocks=clocks,
            fired=fired,
            jurisdiction=str(jurisdiction),
            breached_at=found.breached_at if exists else None,
            at=at,
            check_now=check_now,
        )
        if exists:
            # A look already due (a contact asked for one, a trigger not yet scanned) stays
            # due; a future one belonged to the old clocks and is replaced.
            pending_check = found.next_check_at
            if pending_check is not None and pending_check <= at:
                values["next_check_at"] = pending_check
            values = {k: values[k] for k in _UPDATE_KEYS} | {
                "k_tenant_id": key[0],
                "k_refund_id": key[1],
            }
            updates.append(values)
        else:
            inserts.append(values | {"contacts": 0, "last_contact_at": None})
    db = Driver.of(conn)
    db.execute_many(_INSERT, inserts)
    db.execute_many(_UPDATE, updates)
    db.execute_many(_UPDATE_STATUS, status_only)
    return len(inserts) + len(updates) + len(status_only)


_UPDATE = Prepared(
    update(_CLOCKS).where(
        _CLOCKS.c.tenant_id == bindparam("k_tenant_id"),
        _CLOCKS.c.refund_id == bindparam("k_refund_id"),
    ),
    keys=list(_UPDATE_KEYS),
)
_UPDATE_STATUS = Prepared(_UPDATE.statement, keys=["status", "updated_at"])


def _on_flush(session: Session, _ctx: object) -> None:
    """The ORM path: refunds the flush wrote, whose recorded events are still pending."""
    moved = [
        obj
        for obj in list(session.new) + list(session.dirty)
        if isinstance(obj, Refund) and obj.__dict__.get("_pending_events")
    ]
    if moved:
        track_clocks(session, moved)


# insert=True: before refunds.orm's own after_flush hook stores (and clears) the events.
event.listen(Session, "after_flush", _on_flush, insert=True)
