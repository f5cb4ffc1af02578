"""Refund use cases: request, decide, cancel, retry, and read."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import BindParameter, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from refunddesk.auth.domain import Role
from refunddesk.core.clock import Clock, as_utc
from refunddesk.core.errors import (
    Conflict,
    CurrencyMismatch,
    Forbidden,
    IdempotencyConflict,
    IllegalTransition,
    Invalid,
    NotFound,
    OverBudget,
)
from refunddesk.core.ids import new_id, new_reference
from refunddesk.core.money import Money
from refunddesk.db.base import table_of
from refunddesk.db.prepared import Driver, Prepared
from refunddesk.fraud.features import IntakeRequest
from refunddesk.fraud.schemas import risk_public
from refunddesk.fraud.scoring import Risk, apply_risk, score_request
from refunddesk.jobs.queue import enqueue
from refunddesk.orders.orm import Order
from refunddesk.orders.service import committed_minor, find_order
from refunddesk.policy.calendar import end_of_day
from refunddesk.policy.document import Policy
from refunddesk.policy.engine import (
    NO_HISTORY,
    Evaluation,
    OrderFacts,
    evaluate,
    role_may_approve,
)
from refunddesk.policy.facts import (
    ORDER_COLUMNS,
    customer_history,
    order_facts_from_row,
    request_facts,
)
from refunddesk.policy.service import CACHE, DEFAULT_VERSION, PolicyCache
from refunddesk.refunds.approvals import Approval
from refunddesk.refunds.domain import (
    EventType,
    RefundStatus,
    check_budget,
    check_transition,
)
from refunddesk.refunds.orm import Refund, RefundEvent, RefundLine
from refunddesk.refunds.schemas import (
    ApprovalPublic,
    ApprovalQueuePage,
    FindingPublic,
    PayoutFallback,
    RefundCreate,
    RefundEventPublic,
    RefundLinePublic,
    RefundPage,
    RefundPreview,
    RefundPublic,
)
from refunddesk.returns.service import authorize_for_refund
from refunddesk.sla.maintain import track_clocks
from refunddesk.tenants.orm import Tenant

PAYOUT_JOB = "payout"
SYSTEM = "system"


class UnknownOrder(Invalid):
    code = "unknown_order"
    title = "Unknown order"


class ApprovalLimitExceeded(Forbidden):
    code = "approval_limit_exceeded"
    title = "Amount above this role's approval limit"


class SameApprover(Conflict):
    code = "same_approver"
    title = "The same person cannot approve twice"


class InvalidCursor(Invalid):
    code = "invalid_cursor"
    title = "Invalid cursor"
    status = 400


@dataclass(frozen=True, slots=True)
class IntakeConfig:
    job_max_attempts: int
    # Score fraud risk at intake (settings.fraud_scoring; off only to measure its cost).
    fraud_scoring: bool = True


def request_hash(data: RefundCreate) -> str:
    body = data.model_dump(mode="json")
    # Fields added later count only when given, so keys stored before them still match.
    for added in ("evidence", "refund_method", "delivery_confirmation"):
        if body[added] is None:
            del body[added]
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(
    session: Session, tenant_id: str, refund_id: str, stored: str | None, digest: str
) -> tuple[Refund, bool]:
    if stored != digest:
        raise IdempotencyConflict(
            "this Idempotency-Key was used for a different request; use a new key",
            field="Idempotency-Key",
        )
    return get_refund(session, tenant_id=tenant_id, refund_id=refund_id), False


# Intake is the hottest path: its statements are prepared once (db/prepared.py), so each
# request only binds values and runs SQL the driver has seen before.
_T: BindParameter[str] = bindparam("tenant_id")
_ORDER: BindParameter[str] = bindparam("order_id")
_KEY: BindParameter[str | None] = bindparam("key")
# The order with its tenant's active policy version and time zone: one statement. Only the
# order row is locked; activating a policy locks the tenant row.
_ORDER_FOR_INTAKE = (
    select(*ORDER_COLUMNS, Tenant.active_policy_version, Tenant.timezone)
    .join(Tenant, Tenant.id == Order.tenant_id)
    .where(Order.tenant_id == _T, Order.external_id == bindparam("external_id"))
)
_PREVIEW_ORDER = Prepared(_ORDER_FOR_INTAKE)
# For intake, the same with the refund already made with this Idempotency-Key, if any: the
# replay check costs no statement of its own.
_REPLAY = table_of(Refund).alias("replay")
_INTAKE_ORDER = Prepared(
    _ORDER_FOR_INTAKE.add_columns(
        _REPLAY.c.id.label("replay_id"), _REPLAY.c.request_hash.label("replay_hash")
    )
    .outerjoin(
        _REPLAY,
        (_REPLAY.c.tenant_id == Order.tenant_id) & (_REPLAY.c.idempotency_key == _KEY),
    )
    .with_for_update(of=table_of(Order))
)
# The replay check alone, for a request whose order does not exist (any more).
_REFUND_BY_KEY = Prepared(
    select(Refund.id.label("replay_id"), Refund.request_hash.label("replay_hash")).where(
        Refund.tenant_id == _T, Refund.idempotency_key == _KEY
    )
)
_REFUND_COLUMNS = [c.key for c in table_of(Refund).columns]
_LINE_COLUMNS = [c.key for c in table_of(RefundLine).columns]
_INSERT_REFUND = Prepared(insert(table_of(Refund)), keys=_REFUND_COLUMNS)
_INSERT_LINE = Prepared(insert(table_of(RefundLine)), keys=_LINE_COLUMNS)
_INSERT_EVENT = Prepared(
    insert(table_of(RefundEvent)), keys=[c.key for c in table_of(RefundEvent).columns]
)


def _row(obj: object, columns: list[str]) -> dict[str, Any]:
    return {key: getattr(obj, key) for key in columns}


@dataclass(frozen=True, slots=True)
class Assessment:
    """A request checked against its order and decided by the tenant's active policy."""

    order_id: str
    facts: OrderFacts
    evaluation: Evaluation
    timezone: ZoneInfo
    policy: Policy


def _check_request(facts: OrderFacts, external_id: str, data: RefundCreate) -> None:
    """The up-front refusals (422): unknown skus, quantities or an amount over what is left."""
    if data.lines:
        by_sku = {line.sku: line for line in facts.lines}
        requested = 0
        for index, line in enumerate(data.lines):
            ordered = by_sku.get(line.sku)
            if ordered is None:
                raise Invalid(
                    f"order {external_id} has no line with sku {line.sku}",
                    field=f"lines[{index}].sku",
                )
            left = ordered.quantity - facts.refunded_quantities.get(line.sku, 0)
            if line.quantity > left:
                raise OverBudget(
                    f"sku {line.sku}: {line.quantity} requested but only {left} of "
                    f"{ordered.quantity} left to refund",
                    field=f"lines[{index}].quantity",
                )
            requested += line.quantity * ordered.unit_price_minor
    else:
        requested = data.amount_minor or 0
    check_budget(
        paid_minor=facts.paid_minor,
        requested_minor=requested,
        committed_minor=facts.committed_minor,
    )


def _needs_history(policy: Policy) -> tuple[int, int]:
    """Days of customer history the return rules look at (0: none), and how many refunds
    they count at most (a rule with prior_refunds_below N needs only the latest N)."""
    rules = [r for r in policy.returns.rules if r.prior_refunds_below is not None]
    return (
        max((r.history_days for r in rules), default=0),
        max((r.prior_refunds_below or 0 for r in rules), default=0),
    )


def _assess(
    session: Session,
    db: Driver,
    order: Any,
    *,
    tenant_id: str,
    data: RefundCreate,
    now: datetime,
    cache: PolicyCache,
) -> Assessment:
    """Check the request against the order and evaluate it under the active policy."""
    if order is None:
        raise UnknownOrder(f"no order {data.order_id} for this retailer", field="order_id")
    if data.currency is not None and data.currency != order.currency:
        raise CurrencyMismatch(
            f"the order is in {order.currency}, the refund in {data.currency}", field="currency"
        )
    facts = order_facts_from_row(db, tenant_id=tenant_id, order=order)
    _check_request(facts, data.order_id, data)
    version = order.active_policy_version or DEFAULT_VERSION
    policy = cache.parsed(session, tenant_id, version)
    tz = ZoneInfo(order.timezone)
    # Return rules (the only users of history) apply to requests by lines.
    days, newest = _needs_history(policy) if data.lines else (0, 0)
    history = (
        customer_history(
            db,
            tenant_id=tenant_id,
            email=order.customer_email,
            before=now,
            days=days,
            newest=newest,
        )
        if days
        else NO_HISTORY
    )
    evaluation = evaluate(
        policy,
        order=facts,
        request=request_facts(data),
        history=history,
        now=now,
        tz=tz,
        policy_version=version,
    )
    return Assessment(order.id, facts, evaluation, tz, policy)


def findings_data(evaluation: Evaluation) -> list[dict[str, Any]]:
    return [
        {"code": f.code, "severity": str(f.severity), "message": f.message}
        for f in evaluation.findings
    ]


def _breakdown_data(evaluation: Evaluation) -> dict[str, Any]:
    data = asdict(evaluation.breakdown)
    for line in data["lines"]:
        line["reason"] = str(line["reason"])
    return data


def preview_refund(
    session: Session,
    *,
    clock: Clock,
    tenant_id: str,
    data: RefundCreate,
    cache: PolicyCache = CACHE,
) -> RefundPreview:
    """What creating this refund would decide now; reads only, stores nothing."""
    db = Driver.of(session)
    order = db.first(_PREVIEW_ORDER, {"tenant_id": tenant_id, "external_id": data.order_id})
    assessed = _assess(
        session, db, order, tenant_id=tenant_id, data=data, now=clock.now(), cache=cache
    )
    ev = assessed.evaluation
    return RefundPreview(
        decision=str(ev.decision),
        status=ev.decision.status,
        amount_minor=ev.amount_minor,
        currency=ev.currency,
        findings=[FindingPublic(**f) for f in findings_data(ev)],
        breakdown=_breakdown_data(ev),
        refund_method=str(ev.refund_method),
        approvals_required=ev.approvals_required,
        return_required=ev.return_required,
        return_by=ev.return_by,
        policy_version=ev.policy_version,
    )


def request_refund(
    session: Session,
    *,
    clock: Clock,
    config: IntakeConfig,
    tenant_id: str,
    data: RefundCreate,
    actor: str,
    idempotency_key: str | None = None,
    cache: PolicyCache = CACHE,
) -> tuple[Refund, bool]:
    """Create a refund, decide it under the tenant's active policy, and act on the decision.

    Approved: its payout is queued. Awaiting return: a return authorization is opened.
    Returns the refund and whether it was created now (False: an idempotent replay).
    Call inside a write transaction: the order row is locked so that concurrent refunds
    on one order can never together exceed what was paid.
    """
    digest = request_hash(data)
    db = Driver.of(session)  # prepared statements: no ORM loading on the hot path
    params = {"tenant_id": tenant_id, "external_id": data.order_id, "key": idempotency_key}
    order = db.first(_INTAKE_ORDER, params)
    seen = order  # the order's row carries the refund made with this key, if any
    if order is None and idempotency_key is not None:
        seen = db.first(_REFUND_BY_KEY, params)  # no order: a replay is still a replay
    if seen is not None and seen.replay_id is not None:
        return _replay(session, tenant_id, seen.replay_id, seen.replay_hash, digest)
    now = clock.now()
    assessed = _assess(session, db, order, tenant_id=tenant_id, data=data, now=now, cache=cache)
    ev = assessed.evaluation
    refund_id = new_id()
    risk = (
        _score(session, tenant_id, refund_id, data, assessed, now) if config.fraud_scoring else None
    )
    if risk is not None:
        ev = apply_risk(ev, risk, assessed.policy.fraud)
    priced = {p.sku: p for p in ev.breakdown.lines}
    by_sku = {line.sku: line for line in assessed.facts.lines}
    lines = [
        RefundLine(
            tenant_id=tenant_id,
            refund_id=refund_id,
            line_no=index + 1,
            sku=line.sku,
            quantity=line.quantity,
            reason=str(line.reason or data.reason),
            condition=line.condition,
            amount_minor=line.quantity * by_sku[line.sku].unit_price_minor,
        )
        for index, line in enumerate(data.lines or ())
    ]
    reasons = list(ev.reasons)
    refund = Refund(
        tenant_id=tenant_id,
        id=refund_id,
        order_id=assessed.order_id,
        reference=new_reference(),
        status=str(RefundStatus.REQUESTED),
        reason=str(data.reason),
        channel=str(data.channel),
        amount_minor=ev.amount_minor,
        currency=ev.currency,
        note=data.note,
        idempotency_key=idempotency_key,
        request_hash=digest,
        decision_reasons=reasons,
        policy_version=ev.policy_version,
        findings=findings_data(ev),
        breakdown=_breakdown_data(ev),
        approvals_required=ev.approvals_required,
        refund_method=str(ev.refund_method),
        requested_minor=data.amount_minor,
        evidence=[str(e) for e in data.evidence] if data.evidence else None,
        requested_method=str(data.refund_method) if data.refund_method else None,
        delivery_confirmation=str(data.delivery_confirmation)
        if data.delivery_confirmation
        else None,
        created_at=now,
        updated_at=now,
        event_count=0,
        lines=lines,
        **(risk.columns(now) if risk is not None else {}),
    )
    refund.record(
        EventType.REQUESTED,
        actor=actor,
        at=now,
        data={
            "amount_minor": data.amount_minor
            if data.amount_minor is not None
            else sum(li.amount_minor for li in lines),
            "currency": ev.currency,
            "reason": str(data.reason),
            "channel": str(data.channel),
            "lines": [{"sku": li.sku, "quantity": li.quantity} for li in lines],
        },
    )
    status = ev.decision.status
    refund.transition(
        status,
        actor=SYSTEM,
        at=now,
        data={
            "reasons": reasons,
            "policy_version": ev.policy_version,
            "amount_minor": ev.amount_minor,
        },
    )
    if status is RefundStatus.AWAITING_RETURN:
        if ev.return_by is not None:
            expires = end_of_day(ev.return_by, assessed.timezone).astimezone(UTC)
        else:
            expires = now + timedelta(days=assessed.policy.returns.deadline_days)
        authorize_for_refund(
            session,
            refund=refund,
            lines=[
                (p.sku, p.quantity, (p.gross_minor - p.restocking_fee_minor) // p.quantity)
                for p in (priced[li.sku] for li in lines if li.sku in priced)
                if p.quantity > 0
            ],
            expires_at=expires,
            now=now,
            actor=SYSTEM,
        )
    # The aggregate decided; persist it with bulk INSERTs rather than a unit-of-work flush.
    # After the return is authorized: that records an event, so the refund's event count grows.
    db.execute(_INSERT_REFUND, _row(refund, _REFUND_COLUMNS))
    db.execute_many(_INSERT_LINE, [_row(li, _LINE_COLUMNS) for li in lines])
    db.execute_many(_INSERT_EVENT, [e.as_row() for e in refund.pending_events])
    track_clocks(session, [refund])  # its SLA and legal clocks start
    refund.pending_events.clear()
    if status is RefundStatus.APPROVED:
        _enqueue_payout(session, refund, now, config)
    return refund, True


def _score(
    session: Session,
    tenant_id: str,
    refund_id: str,
    data: RefundCreate,
    assessed: Assessment,
    now: datetime,
) -> Risk:
    """The fraud risk of the refund being requested (refunddesk.fraud.scoring)."""
    facts = assessed.facts
    request = IntakeRequest(
        refund_id=refund_id,
        order_id=assessed.order_id,
        created_at=now,
        reason=str(data.reason),
        amount_minor=assessed.evaluation.amount_minor,
        evidence_count=len(data.evidence or ()),
        requested_method=str(data.refund_method) if data.refund_method else None,
        delivery_confirmation=str(data.delivery_confirmation)
        if data.delivery_confirmation
        else None,
        order_total_minor=facts.paid_minor,
        purchased_at=facts.purchased_at,
        delivered_at=facts.delivered_at,
        lines={line.sku: line.quantity for line in data.lines or ()},
    )
    return score_request(
        session,
        tenant_id=tenant_id,
        request=request,
        rules=assessed.policy.fraud,
        currency=assessed.evaluation.currency,
    )


def _enqueue_payout(session: Session, refund: Refund, now: datetime, config: IntakeConfig) -> None:
    enqueue(
        session,
        kind=PAYOUT_JOB,
        tenant_id=refund.tenant_id,
        now=now,
        payload={"refund_id": refund.id},
        max_attempts=config.job_max_attempts,
    )


def load_for_update(session: Session, *, tenant_id: str, refund_id: str) -> Refund:
    refund = session.scalars(
        select(Refund)
        .where(Refund.tenant_id == tenant_id, Refund.id == refund_id)
        .with_for_update()
    ).first()
    if refund is None:
        raise NotFound(f"no refund {refund_id}")
    return refund


_APPROVERS = (
    select(Approval.actor, Approval.role, Approval.at)
    .where(Approval.tenant_id == _T, Approval.refund_id == bindparam("refund_id"))
    .order_by(Approval.at, Approval.id)
)
# A refund is approved from review, or straight after its goods came back.
_APPROVABLE = frozenset({RefundStatus.PENDING_REVIEW, RefundStatus.RETURN_RECEIVED})


def approve(
    session: Session,
    *,
    clock: Clock,
    config: IntakeConfig,
    tenant_id: str,
    refund_id: str,
    actor: str,
    role: str | None = None,
    note: str | None = None,
    cache: PolicyCache = CACHE,
) -> Refund:
    """Record an approval; approve the refund (and queue its payout) once it has enough.

    The role (default: the actor's `role:` prefix) must be within the approval limit of the
    policy version that decided the refund; admins act desk-wide, beyond tenants' limits.
    A four-eyes refund (approvals_required 2) needs two different approvers.
    """
    refund = load_for_update(session, tenant_id=tenant_id, refund_id=refund_id)
    if refund.state not in _APPROVABLE:
        check_transition(refund.state, RefundStatus.APPROVED)  # raises: say which moves exist
    role = role or actor.partition(":")[0]
    policy = cache.parsed(session, tenant_id, refund.policy_version or DEFAULT_VERSION)
    if role != Role.ADMIN and not role_may_approve(policy, role, refund.amount_minor):
        limit = policy.authorization.role_limits.get(role)
        allowed = (
            f"up to {Money(policy.minor(limit), policy.currency or refund.currency).format()}"
            if limit is not None and policy.currency
            else "no refunds"
        )
        raise ApprovalLimitExceeded(
            f"role {role} may approve {allowed} under policy version "
            f"{refund.policy_version or DEFAULT_VERSION}; this refund is "
            f"{Money(refund.amount_minor, refund.currency).format()}",
            role=role,
        )
    params = {"tenant_id": tenant_id, "refund_id": refund_id}
    before = [a.actor for a in session.execute(_APPROVERS, params)]
    if actor in before:
        raise SameApprover(
            f"{actor} already approved this refund; it needs a different second approver",
            field="actor",
        )
    now = clock.now()
    session.add(
        Approval(
            tenant_id=tenant_id,
            id=new_id(),
            refund_id=refund_id,
            actor=actor,
            role=role,
            amount_minor=refund.amount_minor,
            at=now,
        )
    )
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent approval by the same actor won the race
        raise SameApprover(f"{actor} already approved this refund", field="actor") from exc
    # Whoever moves a refund by hand counts as an approval it needed.
    required = max(refund.approvals_required or 0, 1)
    refund.approvals_required = required
    approvers = [*before, actor]
    refund.record(
        EventType.APPROVAL_RECORDED,
        actor=actor,
        at=now,
        data={
            "role": role,
            "amount_minor": refund.amount_minor,
            "approvals": len(approvers),
            "approvals_required": required,
            "note": note,
        },
    )
    if len(set(approvers)) < required:
        refund.updated_at = now
        return refund  # four eyes: waits in review for a second, different approver
    refund.transition(
        RefundStatus.APPROVED, actor=actor, at=now, data={"note": note, "approvers": approvers}
    )
    _enqueue_payout(session, refund, now, config)
    return refund


def reject(
    session: Session, *, clock: Clock, tenant_id: str, refund_id: str, actor: str, reason: str
) -> Refund:
    refund = load_for_update(session, tenant_id=tenant_id, refund_id=refund_id)
    refund.transition(RefundStatus.REJECTED, actor=actor, at=clock.now(), data={"reason": reason})
    return refund


def cancel(
    session: Session,
    *,
    clock: Clock,
    tenant_id: str,
    refund_id: str,
    actor: str,
    note: str | None = None,
) -> Refund:
    refund = load_for_update(session, tenant_id=tenant_id, refund_id=refund_id)
    now = clock.now()
    waiting = refund.state is RefundStatus.AWAITING_RETURN
    refund.transition(RefundStatus.CANCELED, actor=actor, at=now, data={"note": note})
    if waiting:
        # The goods are no longer expected: close the return too (imported here because
        # returns.service imports this module).
        from refunddesk.returns.service import cancel_for_refund

        cancel_for_refund(
            session, refund=refund, at=now, actor=actor, reason=note or "refund canceled"
        )
    return refund


def retry_payout(
    session: Session,
    *,
    clock: Clock,
    config: IntakeConfig,
    tenant_id: str,
    refund_id: str,
    actor: str,
    fallback: PayoutFallback | None = None,
) -> Refund:
    """Send a failed refund's payout again, the same way or by a fallback method.

    Its budget is checked anew since failing freed it.
    """
    refund = load_for_update(session, tenant_id=tenant_id, refund_id=refund_id)
    if refund.state is not RefundStatus.FAILED:
        # approved -> processing is legal for the worker, but a retry of a refund that has not
        # failed would queue a second payout for it.
        raise IllegalTransition(
            f"only a failed refund's payout can be retried; this one is {refund.status}",
            current=refund.status,
            target=str(RefundStatus.PROCESSING),
        )
    order = session.scalars(
        select(Order)
        .where(Order.tenant_id == tenant_id, Order.id == refund.order_id)
        .with_for_update()
    ).one()
    # While failed, the refund holds no budget; another refund may have taken it meanwhile.
    check_budget(
        paid_minor=order.total_minor,
        requested_minor=refund.amount_minor,
        committed_minor=committed_minor(session, tenant_id=tenant_id, order_id=order.id),
    )
    now = clock.now()
    if fallback is not None:
        refund.payout_override = fallback.override()
        refund.record(
            EventType.PAYOUT_FALLBACK,
            actor=actor,
            at=now,
            data={"method": fallback.method, "note": fallback.note},
        )
    refund.transition(RefundStatus.PROCESSING, actor=actor, at=now, data={"retry": True})
    _enqueue_payout(session, refund, now, config)
    return refund


def get_refund(session: Session, *, tenant_id: str, refund_id: str) -> Refund:
    refund = session.scalars(
        select(Refund).where(Refund.tenant_id == tenant_id, Refund.id == refund_id)
    ).first()
    if refund is None:
        raise NotFound(f"no refund {refund_id}")
    return refund


def _findings(data: Iterable[Mapping[str, Any]] | None) -> list[FindingPublic]:
    return [FindingPublic(**f) for f in data or ()]


def _line_public(line: Any) -> RefundLinePublic:
    """A refund line (ORM object or row) as the API shows it."""
    return RefundLinePublic(
        sku=line.sku,
        quantity=line.quantity,
        reason=line.reason,
        condition=line.condition,
        amount_minor=line.amount_minor,
    )


def _public(
    values: Mapping[Any, Any],
    order_external_id: str,
    lines: list[RefundLinePublic],
    approvals: list[ApprovalPublic],
) -> RefundPublic:
    """The one mapping from a refund's stored columns to what the API shows."""
    return RefundPublic(
        id=values["id"],
        reference=values["reference"],
        status=RefundStatus(values["status"]),
        order_id=order_external_id,
        amount_minor=values["amount_minor"],
        currency=values["currency"],
        reason=values["reason"],
        channel=values["channel"],
        note=values["note"],
        lines=lines,
        decision_reasons=list(values["decision_reasons"] or []),
        findings=_findings(values["findings"]),
        policy_version=values["policy_version"],
        breakdown=values["breakdown"],
        refund_method=values["refund_method"],
        approvals_required=values["approvals_required"] or 0,
        approvals=approvals,
        risk=risk_public(values),
        created_at=as_utc(values["created_at"]),
        updated_at=as_utc(values["updated_at"]),
    )


def to_public(
    refund: Refund, order_external_id: str, approvals: list[ApprovalPublic] | None = None
) -> RefundPublic:
    return _public(
        _row(refund, _REFUND_COLUMNS),
        order_external_id,
        [_line_public(li) for li in refund.lines],
        approvals or [],
    )


def approvals_of(
    session: Session, tenant_id: str, refund_ids: Iterable[str]
) -> dict[str, list[ApprovalPublic]]:
    """Approvals per refund, oldest first, in one query."""
    ids = sorted(set(refund_ids))
    out: dict[str, list[ApprovalPublic]] = {}
    if not ids:
        return out
    rows = session.execute(
        select(Approval.refund_id, Approval.actor, Approval.role, Approval.at)
        .where(Approval.tenant_id == tenant_id, Approval.refund_id.in_(ids))
        .order_by(Approval.at, Approval.id)
    )
    for refund_id, actor, role, at in rows:
        out.setdefault(refund_id, []).append(ApprovalPublic(actor=actor, role=role, at=as_utc(at)))
    return out


def external_ids(session: Session, tenant_id: str, order_ids: set[str]) -> dict[str, str]:
    if not order_ids:
        return {}
    rows = session.execute(
        select(Order.id, Order.external_id).where(
            Order.tenant_id == tenant_id, Order.id.in_(order_ids)
        )
    )
    return {oid: ext for oid, ext in rows}


_READ_REFUND = Prepared(
    select(table_of(Refund), Order.external_id)
    .join(Order, (Order.tenant_id == Refund.tenant_id) & (Order.id == Refund.order_id))
    .where(Refund.tenant_id == _T, Refund.id == bindparam("refund_id"))
)
_READ_LINES = Prepared(
    select(
        RefundLine.sku,
        RefundLine.quantity,
        RefundLine.reason,
        RefundLine.condition,
        RefundLine.amount_minor,
    )
    .where(RefundLine.tenant_id == _T, RefundLine.refund_id == bindparam("refund_id"))
    .order_by(RefundLine.line_no)
)
_READ_APPROVERS = Prepared(_APPROVERS)


def read_refund(db: Driver, *, tenant_id: str, refund_id: str) -> RefundPublic:
    """A refund as the API shows it, in two indexed queries and no ORM objects (hot path)."""
    params = {"tenant_id": tenant_id, "refund_id": refund_id}
    row = db.first(_READ_REFUND, params)
    if row is None:
        raise NotFound(f"no refund {refund_id}")
    lines = [_line_public(li) for li in db.all(_READ_LINES, params)]
    # Approval rows exist only on refunds that needed one (approve() sees to that).
    approvals = (
        [
            ApprovalPublic(actor=a.actor, role=a.role, at=as_utc(a.at))
            for a in db.all(_READ_APPROVERS, params)
        ]
        if row.approvals_required
        else []
    )
    return _public(row._asdict(), row.external_id, lines, approvals)


def public(session: Session, refund: Refund) -> RefundPublic:
    ext = external_ids(session, refund.tenant_id, {refund.order_id})
    approvals = approvals_of(session, refund.tenant_id, [refund.id]).get(refund.id, [])
    return to_public(refund, ext.get(refund.order_id, ""), approvals)


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": last_id}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value: Any = json.loads(base64.urlsafe_b64decode(padded.encode()))
        after = value["after"]
        if not isinstance(after, str) or len(after) != 26:
            raise ValueError(after)
        return after
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeError) as exc:
        raise InvalidCursor("the cursor is not one this API gave out", field="cursor") from exc


def list_refunds(
    session: Session,
    *,
    tenant_id: str,
    status: RefundStatus | None = None,
    order_external_id: str | None = None,
    created_after: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> RefundPage:
    """Newest first, keyset-paginated on the time-ordered id."""
    query = select(Refund).where(Refund.tenant_id == tenant_id)
    if status is not None:
        query = query.where(Refund.status == str(status))
    if order_external_id is not None:
        order = find_order(session, tenant_id=tenant_id, external_id=order_external_id)
        if order is None:
            return RefundPage(items=[], next_cursor=None)
        query = query.where(Refund.order_id == order.id)
    if created_after is not None:
        query = query.where(Refund.created_at > created_after)
    if cursor is not None:
        query = query.where(Refund.id < decode_cursor(cursor))
    rows = list(session.scalars(query.order_by(Refund.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return RefundPage(
        items=_publics(session, tenant_id, rows),
        next_cursor=encode_cursor(rows[-1].id) if more and rows else None,
    )


def _publics(session: Session, tenant_id: str, rows: list[Refund]) -> list[RefundPublic]:
    ext = external_ids(session, tenant_id, {r.order_id for r in rows})
    approvals = approvals_of(session, tenant_id, (r.id for r in rows if r.approvals_required))
    return [to_public(r, ext.get(r.order_id, ""), approvals.get(r.id)) for r in rows]


def list_approvals(
    session: Session, *, tenant_id: str, cursor: str | None = None, limit: int = 50
) -> ApprovalQueuePage:
    """The approval queue: refunds in review, oldest first, keyset-paginated on the id."""
    query = select(Refund).where(
        Refund.tenant_id == tenant_id, Refund.status == str(RefundStatus.PENDING_REVIEW)
    )
    if cursor is not None:
        query = query.where(Refund.id > decode_cursor(cursor))
    rows = list(session.scalars(query.order_by(Refund.id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return ApprovalQueuePage(
        items=_publics(session, tenant_id, rows),
        next_cursor=encode_cursor(rows[-1].id) if more and rows else None,
    )


def list_events(session: Session, *, tenant_id: str, refund_id: str) -> list[RefundEventPublic]:
    get_refund(session, tenant_id=tenant_id, refund_id=refund_id)
    events = session.scalars(
        select(RefundEvent)
        .where(RefundEvent.tenant_id == tenant_id, RefundEvent.refund_id == refund_id)
        .order_by(RefundEvent.seq)
    )
    return [
        RefundEventPublic(
            id=e.id,
            seq=e.seq,
            type=e.type,
            from_status=e.from_status,
            to_status=e.to_status,
            actor=e.actor,
            at=e.at,
            data=e.data,
        )
        for e in events
    ]
