"""Return authorizations (RMA) in the database, moving their refund as goods come back."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from refunddesk.core.clock import Clock, as_utc
from refunddesk.core.errors import Conflict, IllegalTransition, NotFound
from refunddesk.core.ids import new_id
from refunddesk.fraud.scoring import rescore
from refunddesk.refunds.domain import RefundStatus
from refunddesk.refunds.orm import Refund
from refunddesk.returns.domain import (
    OPEN,
    TRANSITIONS,
    InspectedPart,
    ItemCondition,
    LineInspection,
    Outcome,
    ReceivedLine,
    ReturnAuthorization,
    ReturnEventType,
    ReturnLine,
    ReturnStatus,
    normalize_tracking_number,
    received_moves_refund_to,
    settle,
)
from refunddesk.returns.orm import ReturnLineRecord, ReturnRecord
from refunddesk.returns.schemas import (
    InspectionPartPublic,
    ReturnLinePublic,
    ReturnPublic,
    SettlementPublic,
)

if TYPE_CHECKING:
    from refunddesk.refunds.service import IntakeConfig

RETURN_AUTHORIZED = "return.authorized"
AMOUNT_ADJUSTED = "refund.amount_adjusted"


def authorize_for_refund(
    session: Session,
    *,
    refund: Refund,
    lines: list[tuple[str, int, int]],
    expires_at: datetime,
    now: datetime,
    actor: str,
) -> ReturnRecord:
    """Open the return of a refund that waits for its goods.

    lines: (sku, quantity, unit refund amount in minor units) per line to send back.
    Call in the transaction that moves the refund to awaiting_return.
    """
    record = ReturnRecord(
        tenant_id=refund.tenant_id,
        id=new_id(),
        refund_id=refund.id,
        status=str(ReturnStatus.AUTHORIZED),
        currency=refund.currency,
        carrier=None,
        tracking_number=None,
        expires_at=expires_at,
        received_at=None,
        inspected_at=None,
        settlement=None,
        created_at=now,
        updated_at=now,
        lines=[
            ReturnLineRecord(
                tenant_id=refund.tenant_id,
                sku=sku,
                quantity=quantity,
                unit_refund_minor=unit,
                received_quantity=None,
                condition=None,
                inspection=None,
            )
            for sku, quantity, unit in lines
        ],
    )
    for line in record.lines:
        line.return_id = record.id
    session.add(record)
    refund.record(
        RETURN_AUTHORIZED,
        actor=actor,
        at=now,
        data={
            "return_id": record.id,
            "expires_at": expires_at.isoformat(),
            "lines": [{"sku": s, "quantity": q} for s, q, _ in lines],
        },
    )
    return record


# -- loading and saving: ORM <-> the pure aggregate ------------------------------------


class NoReturn(NotFound):
    code = "return_not_found"
    title = "No return for this refund"


class TrackingNumberInUse(Conflict):
    code = "tracking_number_in_use"
    title = "Another open return has this tracking number"


def to_domain(record: ReturnRecord) -> ReturnAuthorization:
    """The stored return as the pure aggregate, with no events yet."""
    status = ReturnStatus(record.status)
    received: dict[str, ReceivedLine] = {}
    inspection: dict[str, tuple[InspectedPart, ...]] = {}
    for line in record.lines:
        if line.received_quantity is not None:
            condition = None if line.condition is None else ItemCondition(line.condition)
            received[line.sku] = ReceivedLine(line.sku, line.received_quantity, condition)
        if line.inspection is not None:
            inspection[line.sku] = tuple(
                InspectedPart(
                    sku=line.sku,
                    outcome=Outcome(part["outcome"]),
                    quantity=int(part["quantity"]),
                    credit_minor=int(part["credit_minor"]),
                    reason=part.get("reason"),
                    percent=None if part.get("percent") is None else Decimal(part["percent"]),
                )
                for part in line.inspection
            )
    return ReturnAuthorization(
        refund_id=record.refund_id,
        currency=record.currency,
        lines=tuple(
            ReturnLine(line.sku, line.quantity, line.unit_refund_minor) for line in record.lines
        ),
        expires_at=as_utc(record.expires_at),
        id=record.id,
        status=status,
        carrier=record.carrier,
        tracking_number=record.tracking_number,
        received=received,
        inspection=inspection,
    )


def _save(record: ReturnRecord, rma: ReturnAuthorization, refund: Refund) -> None:
    """Write the aggregate's state back, and put each of its new events on the refund's timeline.

    The refund's timeline is the one audit trail customers and agents see, so a return's
    events are stored there, with the return's id, rather than in a log of their own.
    """
    for event in rma.events:
        at = event.at
        if event.type is ReturnEventType.RECEIVED:
            record.received_at = at
        elif event.type is ReturnEventType.INSPECTED:
            record.inspected_at = at
        record.updated_at = at
        refund.record(
            event.type, actor=event.actor, at=at, data={"return_id": rma.id, **event.data}
        )
    rma.events.clear()
    record.status = str(rma.status)
    record.carrier = rma.carrier
    record.tracking_number = rma.tracking_number
    for line in record.lines:
        got = rma.received.get(line.sku)
        line.received_quantity = None if got is None else got.quantity
        line.condition = None if got is None or got.condition is None else str(got.condition)
        parts = rma.inspection.get(line.sku)
        line.inspection = None if parts is None else [p.as_data() for p in parts]


def _refund(session: Session, tenant_id: str, refund_id: str, *, lock: bool) -> Refund:
    # refunds.service imports this module (intake opens returns), so the refund is read here.
    query = select(Refund).where(Refund.tenant_id == tenant_id, Refund.id == refund_id)
    refund = session.scalars(query.with_for_update() if lock else query).first()
    if refund is None:
        raise NotFound(f"no refund {refund_id}")
    return refund


def _return_of(session: Session, tenant_id: str, refund_id: str) -> ReturnRecord:
    record = session.scalars(
        select(ReturnRecord).where(
            ReturnRecord.tenant_id == tenant_id, ReturnRecord.refund_id == refund_id
        )
    ).first()
    if record is None:
        raise NoReturn(f"refund {refund_id} has no return of goods")
    return record


def _load(session: Session, tenant_id: str, refund_id: str) -> tuple[Refund, ReturnRecord]:
    """The refund, locked (every change to its return changes it too), and its return."""
    refund = _refund(session, tenant_id, refund_id, lock=True)
    return refund, _return_of(session, tenant_id, refund_id)


def get_return(session: Session, *, tenant_id: str, refund_id: str) -> ReturnRecord:
    """The return of a refund; NotFound for a refund of another tenant or without one."""
    _refund(session, tenant_id, refund_id, lock=False)
    return _return_of(session, tenant_id, refund_id)


def refund_ids_by_tracking(
    session: Session, *, tenant_id: str, tracking_numbers: Collection[str]
) -> dict[str, str]:
    """Tracking number -> refund id, for this tenant's returns with those numbers."""
    wanted = {normalize_tracking_number(t) for t in tracking_numbers if t.strip()}
    if not wanted:
        return {}
    rows = session.execute(
        select(ReturnRecord.tracking_number, ReturnRecord.refund_id, ReturnRecord.status)
        .where(ReturnRecord.tenant_id == tenant_id, ReturnRecord.tracking_number.in_(wanted))
        .order_by(ReturnRecord.created_at)
    )
    found: dict[str, str] = {}
    for tracking, refund_id, status in rows:
        if tracking is None:
            continue
        # Should a number ever be on two returns, the open one is the parcel on its way.
        if tracking not in found or ReturnStatus(status) in OPEN:
            found[tracking] = refund_id
    return found


def _require_awaiting(refund: Refund, rma: ReturnAuthorization, doing: str) -> None:
    if refund.state is not RefundStatus.AWAITING_RETURN:
        raise IllegalTransition(
            f"the refund is {refund.status}, so its return can no longer be {doing}",
            current=refund.status,
            return_status=str(rma.status),
        )


# -- use cases --------------------------------------------------------------------------


def ship(
    session: Session,
    *,
    clock: Clock,
    tenant_id: str,
    refund_id: str,
    carrier: str,
    tracking_number: str,
    actor: str,
) -> ReturnRecord:
    """The customer sent the goods: the return is in transit with this carrier and number."""
    refund, record = _load(session, tenant_id, refund_id)
    rma = to_domain(record)
    _require_awaiting(refund, rma, "shipped")
    tracking = normalize_tracking_number(tracking_number)
    taken = session.scalar(
        select(ReturnRecord.refund_id).where(
            ReturnRecord.tenant_id == tenant_id,
            ReturnRecord.tracking_number == tracking,
            ReturnRecord.id != record.id,
            ReturnRecord.status.in_([str(s) for s in OPEN]),
        )
    )
    if taken is not None:
        # The scan feed finds parcels by tracking number; two open returns with one number
        # would make a receipt ambiguous.
        raise TrackingNumberInUse(
            f"tracking number {tracking} is already on the open return of refund {taken}",
            field="tracking_number",
        )
    rma.mark_in_transit(carrier, tracking, at=clock.now(), actor=actor)
    _save(record, rma, refund)
    return record


def receive(
    session: Session,
    *,
    clock: Clock,
    tenant_id: str,
    refund_id: str,
    quantities: Mapping[str, int],
    conditions: Mapping[str, ItemCondition | str],
    actor: str,
    weight_grams: int | None = None,
) -> ReturnRecord:
    """The warehouse counted the goods: the return is received, the refund return_received."""
    refund, record = _load(session, tenant_id, refund_id)
    rma = to_domain(record)
    target = received_moves_refund_to(refund.state)  # refuses before anything changes
    now = clock.now()
    rma.receive(quantities, conditions, at=now, actor=actor)
    _save(record, rma, refund)
    if weight_grams is not None:
        record.returned_weight_grams = weight_grams
        session.flush()
        # The parcel's weight is a fraud signal (empty box, swapped goods): score again, so
        # whoever inspects it sees the risk with the weight in it.
        rescore(session, tenant_id=tenant_id, now=now, refund_ids=[refund_id])
    refund.transition(target, actor=actor, at=now, data={"return_id": record.id})
    return record


def receive_parcel(
    session: Session,
    *,
    clock: Clock,
    tenant_id: str,
    tracking_number: str,
    quantities: Mapping[str, int],
    conditions: Mapping[str, ItemCondition | str],
    actor: str,
) -> ReturnRecord:
    """Receive the return with this tracking number (the warehouse scan feed's way in)."""
    tracking = normalize_tracking_number(tracking_number)
    found = refund_ids_by_tracking(session, tenant_id=tenant_id, tracking_numbers=[tracking])
    if tracking not in found:
        raise NoReturn(f"no return has tracking number {tracking}", field="tracking_number")
    return receive(
        session,
        clock=clock,
        tenant_id=tenant_id,
        refund_id=found[tracking],
        quantities=quantities,
        conditions=conditions,
        actor=actor,
    )


def inspect(
    session: Session,
    *,
    clock: Clock,
    config: IntakeConfig,
    tenant_id: str,
    refund_id: str,
    results: Mapping[str, Sequence[LineInspection]],
    actor: str,
    review_partial: bool = False,
) -> ReturnRecord:
    """Record the inspection, then settle: adjust the refund (only down) and decide it.

    The refund's amount drops by what the settlement takes off the authorized goods
    (short, rejected or part-credited units), so any shipping, tax or fee the refund held
    apart from the goods stays as intake priced it. Approved refunds are paid out; a refund
    that needs an approver under its policy goes to pending_review instead. A rejected
    refund keeps its amount.
    """
    refund, record = _load(session, tenant_id, refund_id)
    if refund.state is not RefundStatus.RETURN_RECEIVED:
        raise IllegalTransition(
            f"the refund is {refund.status}; only a received return can be inspected",
            current=refund.status,
            target=str(RefundStatus.RETURN_RECEIVED),
        )
    rma = to_domain(record)
    now = clock.now()
    rma.inspect(results, at=now, actor=actor)
    settlement = settle(rma, review_partial=review_partial)
    _save(record, rma, refund)

    before = refund.amount_minor
    after = min(max(before + settlement.adjustment_minor, 0), before)
    status = settlement.status
    reasons = list(settlement.reasons)
    codes = list(settlement.codes)
    if status is RefundStatus.APPROVED and after == 0:
        status = RefundStatus.REJECTED
        codes.append("nothing_to_refund")
        reasons.append("nothing is left to refund after the adjustment")
    if status is RefundStatus.APPROVED and refund.approvals_required > 0:
        status = RefundStatus.PENDING_REVIEW
        codes.append("approval_required")
        reasons.append("the refund needs an approver under its policy")
    if status is RefundStatus.REJECTED:
        # A rejected refund keeps the amount asked for: the record of what was refused.
        after = before
    record.settlement = {
        "status": str(status),
        "amount_minor": settlement.amount_minor,
        "authorized_minor": settlement.authorized_minor,
        "refund_amount_before_minor": before,
        "refund_amount_after_minor": after,
        "reasons": reasons,
        "codes": codes,
        "lines": [
            {
                "sku": s.sku,
                "authorized": s.authorized,
                "received": s.received,
                "accepted": s.accepted,
                "rejected": s.rejected,
                "partial": s.partial,
                "credit_minor": s.credit_minor,
            }
            for s in settlement.lines
        ],
    }
    if after != before:
        refund.amount_minor = after
        refund.updated_at = now
        refund.record(
            AMOUNT_ADJUSTED,
            actor=actor,
            at=now,
            data={
                "return_id": record.id,
                "from_minor": before,
                "to_minor": after,
                "currency": refund.currency,
                "reasons": reasons,
            },
        )
    refund.transition(
        status, actor=actor, at=now, data={"return_id": record.id, "reasons": reasons}
    )
    if status is RefundStatus.APPROVED:
        from refunddesk.refunds.service import _enqueue_payout  # it imports this module

        _enqueue_payout(session, refund, now, config)
    return record


def mark_lost(
    session: Session,
    *,
    clock: Clock,
    tenant_id: str,
    refund_id: str,
    actor: str,
    note: str | None = None,
) -> ReturnRecord:
    """The carrier lost the parcel: the return ends lost_in_transit and agents are told.

    The refund stays awaiting_return, flagged by the ``return.lost_in_transit`` event on its
    timeline: its table allows only return_received (untrue: nothing arrived) or canceled
    from there, and whether the customer is refunded anyway is an agent's call.
    """
    refund, record = _load(session, tenant_id, refund_id)
    rma = to_domain(record)
    rma.mark_lost(at=clock.now(), actor=actor, note=note)
    _save(record, rma, refund)
    return record


def cancel_for_refund(
    session: Session, *, refund: Refund, at: datetime, actor: str, reason: str
) -> ReturnRecord | None:
    """Stop waiting for the goods of a refund being canceled; None if it has no open return.

    Call in the transaction that cancels the refund (refund already loaded and locked).
    """
    record = session.scalars(
        select(ReturnRecord).where(
            ReturnRecord.tenant_id == refund.tenant_id, ReturnRecord.refund_id == refund.id
        )
    ).first()
    if record is None or ReturnStatus(record.status) not in OPEN:
        return None
    rma = to_domain(record)
    if ReturnStatus.CANCELED not in TRANSITIONS[rma.status]:
        return None  # received: the goods are here; the refund's own table decides
    rma.cancel(at=at, actor=actor, reason=reason)
    _save(record, rma, refund)
    return record


def overdue(session: Session, *, now: datetime, limit: int = 500) -> list[tuple[str, str]]:
    """(tenant id, refund id) of authorized returns past their deadline, oldest first."""
    rows = session.execute(
        select(ReturnRecord.tenant_id, ReturnRecord.refund_id)
        .where(ReturnRecord.status == str(ReturnStatus.AUTHORIZED), ReturnRecord.expires_at < now)
        .order_by(ReturnRecord.expires_at)
        .limit(limit)
    )
    return [(t, r) for t, r in rows]


def expire(
    session: Session, *, clock: Clock, tenant_id: str, refund_id: str, actor: str
) -> ReturnRecord:
    """The goods never left before the deadline: the return expires, the refund is canceled."""
    refund, record = _load(session, tenant_id, refund_id)
    rma = to_domain(record)
    now = clock.now()
    rma.expire(now, actor=actor)
    _save(record, rma, refund)
    # A refund canceled meanwhile by an agent needs no second cancel; its return still ends.
    if refund.state is RefundStatus.AWAITING_RETURN:
        refund.transition(
            RefundStatus.CANCELED,
            actor=actor,
            at=now,
            data={"reason": "return_expired", "return_id": record.id},
        )
    return record


# -- reading ------------------------------------------------------------------------------


def to_public(record: ReturnRecord) -> ReturnPublic:
    settlement = record.settlement
    return ReturnPublic(
        id=record.id,
        refund_id=record.refund_id,
        status=ReturnStatus(record.status),
        currency=record.currency,
        carrier=record.carrier,
        tracking_number=record.tracking_number,
        expires_at=as_utc(record.expires_at),
        received_at=as_utc(record.received_at) if record.received_at else None,
        inspected_at=as_utc(record.inspected_at) if record.inspected_at else None,
        authorized_minor=sum(li.quantity * li.unit_refund_minor for li in record.lines),
        lines=[
            ReturnLinePublic(
                sku=li.sku,
                quantity=li.quantity,
                unit_refund_minor=li.unit_refund_minor,
                received_quantity=li.received_quantity,
                condition=ItemCondition(li.condition) if li.condition else None,
                inspection=[
                    InspectionPartPublic(
                        verdict=Outcome(p["outcome"]),
                        quantity=p["quantity"],
                        credit_minor=p["credit_minor"],
                        reason=p.get("reason"),
                        percent=p.get("percent"),
                    )
                    for p in li.inspection or []
                ],
            )
            for li in record.lines
        ],
        settlement=None if settlement is None else SettlementPublic.model_validate(settlement),
        created_at=as_utc(record.created_at),
        updated_at=as_utc(record.updated_at),
    )
