"""The payout job: send approved refunds to their gateway, exactly once per attempt.

Each batch runs in three steps. (1) In one transaction, move each refund to processing and
record a payout attempt as ``sent`` with a stable idempotency key. (2) Call the gateways,
many at a time. (3) In one transaction, apply each answer (settle.apply_result). A crash
between (1) and (3) leaves the attempt ``sent``; the job's lease runs out, it runs again,
asks the gateway what became of the attempt (lookup) and only sends it again, with the
same key, if the gateway never heard of it. A payment with an open dispute is held.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from refunddesk.core.clock import Clock
from refunddesk.core.ids import new_id
from refunddesk.db.base import table_of
from refunddesk.db.keys import pairs_in
from refunddesk.db.prepared import Driver, Prepared
from refunddesk.db.uow import Database
from refunddesk.jobs.queue import ClaimedJob
from refunddesk.jobs.worker import Outcome
from refunddesk.orders.orm import Order
from refunddesk.payouts.accounts import accounts_of, gateway_for, request_for
from refunddesk.payouts.disputes import hold, open_disputes
from refunddesk.payouts.gateways.base import (
    RETRYABLE,
    FailureReason,
    Gateway,
    GatewayRegistry,
    GatewayUnavailable,
    PayoutOutcome,
    PayoutRequest,
    PayoutResult,
)
from refunddesk.payouts.orm import GatewayAccount, Payout
from refunddesk.payouts.settle import apply_result, tenant_zones
from refunddesk.refunds.domain import EventType, RefundStatus
from refunddesk.refunds.orm import Refund, RefundEvent
from refunddesk.sla.maintain import track_clocks

log = logging.getLogger(__name__)
WORKER = "system:payouts"


@dataclass(frozen=True, slots=True)
class _ToSend:
    job_id: int
    request: PayoutRequest
    gateway: Gateway
    resend: bool  # sent before without a known answer: ask the gateway before sending again
    gateway_reference: str | None


@dataclass(frozen=True, slots=True)
class _OrderRow:
    payment_gateway: str
    payment_method: str
    payment_reference: str
    customer_email: str
    customer_name: str


class PayoutHandler:
    """Handles ``payout`` jobs in batches."""

    kind = "payout"

    def __init__(
        self, *, db: Database, clock: Clock, gateways: GatewayRegistry, concurrency: int
    ) -> None:
        self.db = db
        self.clock = clock
        self.gateways = gateways
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="payout")

    def __call__(self, jobs: Sequence[ClaimedJob]) -> dict[int, Outcome]:
        outcomes: dict[int, Outcome] = {}
        with self.db.write() as session:
            to_send = self._prepare(session, jobs, outcomes)
        results = self._send(to_send, outcomes)
        if results:
            with self.db.write() as session:
                self._record(session, results, outcomes)
        return outcomes

    def _prepare(
        self, session: Session, jobs: Sequence[ClaimedJob], outcomes: dict[int, Outcome]
    ) -> list[_ToSend]:
        keys = [(j.tenant_id or "", str(j.payload.get("refund_id"))) for j in jobs]
        # A handful of queries for the whole batch, never one per refund.
        refunds = _refunds(session, keys)
        order_keys = {(r.tenant_id, r.order_id) for r in refunds.values()}
        orders = (
            {
                (o.tenant_id, o.id): _OrderRow(*o[2:])
                for o in session.execute(
                    select(
                        Order.tenant_id,
                        Order.id,
                        Order.payment_gateway,
                        Order.payment_method,
                        Order.payment_reference,
                        Order.customer_email,
                        Order.customer_name,
                    ).where(pairs_in(Order.tenant_id, Order.id, order_keys))
                )
            }
            if order_keys
            else {}
        )
        latest: dict[tuple[str, str], Payout] = {}
        if refunds:
            for attempt in _payouts(
                session, pairs_in(Payout.tenant_id, Payout.refund_id, list(refunds)), lock=False
            ):
                key = (attempt.tenant_id, attempt.refund_id)
                if key not in latest or latest[key].attempt < attempt.attempt:
                    latest[key] = attempt
        tenants = {t for t, _ in refunds}
        disputed = open_disputes(
            session, {(t, o.payment_reference) for (t, _), o in orders.items()}
        )
        accounts = accounts_of(session, tenants)
        zones = tenant_zones(session, tenants)
        now = self.clock.now()
        to_send = []
        new_payouts: list[Payout] = []
        seen: set[tuple[str, str]] = set()
        for job, key in zip(jobs, keys, strict=True):
            refund = refunds.get(key)
            if refund is None:
                outcomes[job.id] = Outcome.fail(f"refund {key[1]} not found")
                continue
            if key in seen:  # two jobs for one refund: the first one pays it
                outcomes[job.id] = Outcome.done()
                continue
            seen.add(key)
            order = orders[(refund.tenant_id, refund.order_id)]
            dispute = disputed.get((refund.tenant_id, order.payment_reference))
            if dispute is not None and refund.state is RefundStatus.APPROVED:
                # Paying now could pay twice; the dispute's closing queues the job again.
                hold(
                    refund,
                    dispute_id=dispute,
                    payment_reference=order.payment_reference,
                    now=now,
                )
                outcomes[job.id] = Outcome.done()
                continue
            made: list[Payout] = []
            try:
                item = self._item_for(
                    job.id, refund, order, latest.get(key), accounts, zones, now, made
                )
            except Exception as exc:  # one bad refund never stops the batch
                log.exception("payout preparation failed for refund %s", refund.id)
                refund.pending_events.clear()  # nothing of it is written
                outcomes[job.id] = Outcome.retry(f"prepare: {exc!r}")
                continue
            new_payouts += made
            if item is None:
                outcomes[job.id] = Outcome.done()  # canceled, already paid, no gateway, ...
            else:
                to_send.append(item)
        _store(session, new=new_payouts, refunds=refunds.values())
        return to_send

    def _item_for(
        self,
        job_id: int,
        refund: Refund,
        order: _OrderRow,
        latest: Payout | None,
        accounts: dict[str, list[GatewayAccount]],
        zones: dict[str, ZoneInfo],
        now: datetime,
        new_payouts: list[Payout],
    ) -> _ToSend | None:
        """What to send for this refund: a new attempt, the unconfirmed one again, or nothing."""
        resend = (
            refund.state is RefundStatus.PROCESSING
            and latest is not None
            and latest.status == "sent"
        )
        if resend:
            assert latest is not None
            payout = latest
            target = gateway_for(
                self.gateways,
                accounts.get(refund.tenant_id, []),
                tenant_id=refund.tenant_id,
                gateway=payout.gateway,
                method=payout.method,
            )
        else:
            if refund.state is not RefundStatus.APPROVED and (
                refund.state is not RefundStatus.PROCESSING
            ):
                return None
            method, gateway_name, destination = _destination(refund, order)
            target = gateway_for(
                self.gateways,
                accounts.get(refund.tenant_id, []),
                tenant_id=refund.tenant_id,
                gateway=gateway_name,
                method=method,
            )
            if refund.state is RefundStatus.APPROVED:
                refund.transition(RefundStatus.PROCESSING, actor=WORKER, at=now)
            payout = _new_attempt(refund, latest, target, gateway_name, method, destination, now)
            new_payouts.append(payout)
            if target is None:
                apply_result(
                    refund,
                    payout,
                    PayoutResult.failed(
                        FailureReason.GATEWAY_NOT_CONFIGURED,
                        f"no gateway {gateway_name!r} for {method} payouts of this retailer",
                    ),
                    now=now,
                    actor=WORKER,
                    tz=zones[refund.tenant_id],
                )
                return None
        if target is None:
            return None  # the account was removed since; the sync job and agents see it
        request = request_for(
            payout,
            reference=refund.reference,
            payment_reference=order.payment_reference,
            customer_email=order.customer_email,
            customer_name=order.customer_name,
        )
        return _ToSend(job_id, request, target, resend, payout.gateway_reference)

    def _send(
        self, to_send: list[_ToSend], outcomes: dict[int, Outcome]
    ) -> list[tuple[_ToSend, PayoutResult]]:
        def call(item: _ToSend) -> PayoutResult | Exception:
            try:
                if item.resend:
                    known = item.gateway.lookup(item.request, item.gateway_reference)
                    if known is not None:
                        return known
                return item.gateway.refund(item.request)
            except Exception as exc:  # reported per item below
                return exc

        results = []
        for item, result in zip(to_send, self._pool.map(call, to_send), strict=True):
            if isinstance(result, GatewayUnavailable):
                outcomes[item.job_id] = Outcome.retry(f"gateway unavailable: {result}")
            elif isinstance(result, Exception):
                log.error("gateway %s raised %r", item.gateway.name, result)
                outcomes[item.job_id] = Outcome.retry(f"gateway error: {result!r}")
            elif result.outcome is PayoutOutcome.FAILED and result.failure_reason in RETRYABLE:
                outcomes[item.job_id] = Outcome.retry(
                    f"{result.failure_reason}: {result.failure_message}"
                )
            else:
                results.append((item, result))
        return results

    def _record(
        self,
        session: Session,
        results: list[tuple[_ToSend, PayoutResult]],
        outcomes: dict[int, Outcome],
    ) -> None:
        now = self.clock.now()
        # Payout rows first, then refunds: the order webhooks and the sync job lock them in.
        payouts = {
            (p.tenant_id, p.idempotency_key): p
            for p in _payouts(
                session,
                pairs_in(
                    Payout.tenant_id,
                    Payout.idempotency_key,
                    [(i.request.tenant_id, i.request.idempotency_key) for i, _ in results],
                ),
                lock=True,
            )
        }
        refunds = _refunds(
            session, [(item.request.tenant_id, item.request.refund_id) for item, _ in results]
        )
        zones = tenant_zones(session, {t for t, _ in refunds})
        for item, result in results:
            req = item.request
            outcomes[item.job_id] = Outcome.done()
            payout = payouts.get((req.tenant_id, req.idempotency_key))
            refund = refunds.get((req.tenant_id, req.refund_id))
            if payout is None or refund is None:
                outcomes[item.job_id] = Outcome.retry("payout or refund row vanished")
                continue
            apply_result(refund, payout, result, now=now, actor=WORKER, tz=zones[req.tenant_id])
        _store(session, changed=payouts.values(), refunds=refunds.values())

    def on_dead(self, session: Session, job: ClaimedJob, error: str) -> None:
        """The job gave up: never leave the refund stuck in processing without a word."""
        refund = session.scalars(
            select(Refund)
            .where(
                Refund.tenant_id == (job.tenant_id or ""),
                Refund.id == str(job.payload.get("refund_id")),
            )
            .with_for_update()
        ).first()
        if refund is not None and refund.state is RefundStatus.PROCESSING:
            now = self.clock.now()
            data = {"failure_reason": "gateway_unavailable", "failure_message": error[:500]}
            refund.record(EventType.PAYOUT_FAILED, actor=WORKER, at=now, data=data)
            refund.transition(RefundStatus.FAILED, actor=WORKER, at=now, data=data)

    def close(self) -> None:
        self._pool.shutdown(wait=False)


def _new_attempt(
    refund: Refund,
    latest: Payout | None,
    target: Gateway | None,
    gateway_name: str,
    method: str,
    destination: dict[str, Any] | None,
    now: datetime,
) -> Payout:
    attempt = (latest.attempt if latest else 0) + 1
    name = target.name if target is not None else gateway_name
    amount = refund.amount_minor
    if method == "store_credit" and refund.refund_method == "store_credit":
        amount += int((refund.breakdown or {}).get("store_credit_bonus_minor") or 0)
    payout = _loaded(
        Payout,
        {
            "tenant_id": refund.tenant_id,
            "id": new_id(),
            "refund_id": refund.id,
            "attempt": attempt,
            "idempotency_key": f"rd-{refund.id}-{attempt}",
            "gateway": name or "none",
            "method": method,
            "amount_minor": amount,
            "currency": refund.currency,
            "status": "sent",
            "gateway_reference": None,
            "failure_reason": None,
            "failure_message": None,
            "arn": None,
            "destination": destination,
            "arrival_earliest": None,
            "arrival_latest": None,
            "created_at": now,
            "updated_at": now,
        },
    )
    refund.record(
        EventType.PAYOUT_SENT,
        actor=WORKER,
        at=now,
        data={"gateway": payout.gateway, "attempt": attempt, "method": method},
    )
    return payout


# A batch's rows are read with Core and its changes written back with bulk statements: the
# aggregates (Refund.transition/record, settle.apply_result) decide every change on plain,
# session-less objects, and no unit-of-work flush runs per refund. What those rules may
# change is exactly what is written back: a refund's status and event count (with its
# events), and a payout's answer columns.
_REFUNDS = table_of(Refund)
_PAYOUTS = table_of(Payout)
_REFUND_READ = (
    "tenant_id",
    "id",
    "order_id",
    "reference",
    "status",
    "amount_minor",
    "currency",
    "refund_method",
    "breakdown",
    "payout_override",
    "event_count",
    "updated_at",
)
_REFUND_WRITE = ["status", "updated_at", "event_count"]
_PAYOUT_ALL = [c.key for c in _PAYOUTS.columns]
_PAYOUT_WRITE = [
    "status",
    "gateway_reference",
    "failure_reason",
    "failure_message",
    "arn",
    "arrival_earliest",
    "arrival_latest",
    "updated_at",
]
_INSERT_PAYOUT = Prepared(insert(_PAYOUTS), keys=_PAYOUT_ALL)
_UPDATE_PAYOUT = Prepared(
    update(_PAYOUTS).where(
        _PAYOUTS.c.tenant_id == bindparam("key_tenant_id"), _PAYOUTS.c.id == bindparam("key_id")
    ),
    keys=_PAYOUT_WRITE,
)
_UPDATE_REFUND = Prepared(
    update(_REFUNDS).where(
        _REFUNDS.c.tenant_id == bindparam("key_tenant_id"), _REFUNDS.c.id == bindparam("key_id")
    ),
    keys=_REFUND_WRITE,
)
_EVENTS = table_of(RefundEvent)
_INSERT_EVENT = Prepared(insert(_EVENTS), keys=[c.key for c in _EVENTS.columns])


def _refunds(session: Session, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Refund]:
    """The refunds, locked, as session-less aggregates."""
    if not keys:
        return {}
    rows = session.execute(
        select(*(_REFUNDS.c[c] for c in _REFUND_READ))
        .where(pairs_in(_REFUNDS.c.tenant_id, _REFUNDS.c.id, keys))
        .with_for_update()
    )
    return {(r[0], r[1]): _loaded(Refund, zip(_REFUND_READ, r, strict=True)) for r in rows}


def _payouts(session: Session, where: Any, *, lock: bool) -> list[Payout]:
    """Payout attempts as session-less objects."""
    query = select(_PAYOUTS).where(where)
    if lock:
        query = query.with_for_update()
    rows = session.execute(query)
    return [_loaded(Payout, zip(_PAYOUT_ALL, r, strict=True)) for r in rows]


_T = TypeVar("_T", Refund, Payout)


def _loaded(cls: type[_T], values: Iterable[tuple[str, Any]] | Mapping[str, Any]) -> _T:
    """A session-less instance holding these values, as the ORM's own loading fills one.

    Straight into its __dict__: going through each attribute's instrumented setter costs
    more than reading the row did. Later changes (transition, apply_result) are ordinary.
    """
    obj: _T = cls.__mapper__.class_manager.new_instance()
    obj.__dict__.update(values)
    return obj


def _store(
    session: Session,
    *,
    refunds: Iterable[Refund],
    new: Sequence[Payout] = (),
    changed: Iterable[Payout] = (),
) -> None:
    """Write what the batch decided: new attempts, answers, refunds' status and events."""
    db = Driver.of(session)
    db.execute_many(_INSERT_PAYOUT, [_values(p, _PAYOUT_ALL) for p in new])
    db.execute_many(_UPDATE_PAYOUT, [_values(p, _PAYOUT_WRITE, keyed=True) for p in changed])
    moved = [r for r in refunds if r.pending_events]
    db.execute_many(_UPDATE_REFUND, [_values(r, _REFUND_WRITE, keyed=True) for r in moved])
    db.execute_many(_INSERT_EVENT, [e.as_row() for r in moved for e in r.pending_events])
    track_clocks(session, moved)  # their SLA clocks move with their status
    for refund in moved:
        refund.pending_events.clear()


def _values(obj: Refund | Payout, columns: list[str], *, keyed: bool = False) -> dict[str, Any]:
    """The columns' values (from the instance dict: every one was loaded or set there)."""
    state = obj.__dict__
    values = {k: state.get(k) for k in columns}
    if keyed:
        values["key_tenant_id"], values["key_id"] = state["tenant_id"], state["id"]
    return values


def _destination(refund: Refund, order: _OrderRow) -> tuple[str, str, dict[str, Any] | None]:
    """(method, gateway name, destination) for a new attempt at paying this refund out.

    A fallback chosen after a failure wins; then the policy's choice of store credit; then
    the original payment.
    """
    override = refund.payout_override or {}
    if override.get("method"):
        method = str(override["method"])
        gateway = str(override.get("gateway") or "")
        if not gateway and method == order.payment_method:
            gateway = order.payment_gateway
        bank = override.get("bank_account")
        return method, gateway, ({"bank_account": bank} if bank else None)
    if refund.refund_method == "store_credit":
        return "store_credit", "store_credit", None
    return order.payment_method, order.payment_gateway, None
