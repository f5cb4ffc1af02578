"""The payout job: send approved refunds to their gateway, exactly once per attempt.

Each batch runs in three steps. (1) In one transaction, move each refund to processing and
record a payout attempt as ``sent`` with a stable idempotency key. (2) Call the gateways,
many at a time. (3) In one transaction, record each result and move the refund to
succeeded or failed. A crash between (1) and (3) leaves the attempt ``sent``; the job's
lease runs out, it runs again and re-sends with the same key, which the gateway answers
without paying twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Row, select, tuple_
from sqlalchemy.orm import Session, lazyload

from refunddesk.core.clock import Clock
from refunddesk.core.ids import new_id
from refunddesk.db.uow import Database
from refunddesk.jobs.queue import ClaimedJob
from refunddesk.jobs.worker import Outcome
from refunddesk.orders.orm import Order
from refunddesk.payouts.gateways.base import (
    GatewayRegistry,
    GatewayUnavailable,
    PayoutOutcome,
    PayoutRequest,
    PayoutResult,
)
from refunddesk.payouts.orm import Payout
from refunddesk.refunds.domain import EventType, RefundStatus
from refunddesk.refunds.orm import Refund

log = logging.getLogger(__name__)
WORKER = "system:payouts"


@dataclass(frozen=True, slots=True)
class _ToSend:
    job_id: int
    request: PayoutRequest
    gateway: str


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
        # Three queries for the whole batch, never one per refund.
        refunds = {
            (r.tenant_id, r.id): r
            for r in session.scalars(
                select(Refund)
                .where(tuple_(Refund.tenant_id, Refund.id).in_(keys))
                .options(lazyload(Refund.lines))
                .with_for_update()
            )
        }
        order_keys = {(r.tenant_id, r.order_id) for r in refunds.values()}
        orders = (
            {
                (o.tenant_id, o.id): o
                for o in session.execute(
                    select(
                        Order.tenant_id,
                        Order.id,
                        Order.payment_gateway,
                        Order.payment_method,
                        Order.payment_reference,
                    ).where(tuple_(Order.tenant_id, Order.id).in_(order_keys))
                )
            }
            if order_keys
            else {}
        )
        latest: dict[tuple[str, str], Payout] = {}
        if refunds:
            for attempt in session.scalars(
                select(Payout).where(tuple_(Payout.tenant_id, Payout.refund_id).in_(list(refunds)))
            ):
                key = (attempt.tenant_id, attempt.refund_id)
                if key not in latest or latest[key].attempt < attempt.attempt:
                    latest[key] = attempt
        now = self.clock.now()
        to_send = []
        for job, key in zip(jobs, keys, strict=True):
            refund = refunds.get(key)
            if refund is None:
                outcomes[job.id] = Outcome.fail(f"refund {key[1]} not found")
                continue
            order = orders[(refund.tenant_id, refund.order_id)]
            try:
                payout = self._attempt_for(session, refund, order, latest.get(key), now)
            except Exception as exc:  # one bad refund never stops the batch
                log.exception("payout preparation failed for refund %s", refund.id)
                outcomes[job.id] = Outcome.retry(f"prepare: {exc!r}")
                continue
            if payout is None:
                outcomes[job.id] = Outcome.done()  # canceled, already paid, ...: nothing to send
                continue
            request = PayoutRequest(
                idempotency_key=payout.idempotency_key,
                tenant_id=refund.tenant_id,
                refund_id=refund.id,
                amount_minor=payout.amount_minor,
                currency=payout.currency,
                method=payout.method,
                payment_reference=order.payment_reference,
            )
            to_send.append(_ToSend(job.id, request, payout.gateway))
        return to_send

    def _attempt_for(
        self,
        session: Session,
        refund: Refund,
        order: Row[str, str, str, str, str],
        latest: Payout | None,
        now: datetime,
    ) -> Payout | None:
        """The attempt to send for this refund: a new one, the unconfirmed one, or none."""
        if (
            refund.state is RefundStatus.PROCESSING
            and latest is not None
            and latest.status == "sent"
        ):
            return latest  # sent before a crash or a timeout: ask again with the same key
        if refund.state is RefundStatus.APPROVED:
            refund.transition(RefundStatus.PROCESSING, actor=WORKER, at=now)
        elif refund.state is not RefundStatus.PROCESSING:
            return None
        attempt = (latest.attempt if latest else 0) + 1
        gateway = self.gateways.for_order(order.payment_gateway)
        payout = Payout(
            tenant_id=refund.tenant_id,
            id=new_id(),
            refund_id=refund.id,
            attempt=attempt,
            idempotency_key=f"rd-{refund.id}-{attempt}",
            gateway=gateway.name,
            method=order.payment_method,
            amount_minor=refund.amount_minor,
            currency=refund.currency,
            status="sent",
            gateway_reference=None,
            failure_reason=None,
            failure_message=None,
            created_at=now,
            updated_at=now,
        )
        session.add(payout)
        refund.record(
            EventType.PAYOUT_SENT,
            actor=WORKER,
            at=now,
            data={"gateway": gateway.name, "attempt": attempt, "method": order.payment_method},
        )
        return payout

    def _send(
        self, to_send: list[_ToSend], outcomes: dict[int, Outcome]
    ) -> list[tuple[_ToSend, PayoutResult]]:
        def call(item: _ToSend) -> PayoutResult | Exception:
            try:
                return self.gateways.for_order(item.gateway).refund(item.request)
            except Exception as exc:  # reported per item below
                return exc

        results = []
        for item, result in zip(to_send, self._pool.map(call, to_send), strict=True):
            if isinstance(result, GatewayUnavailable):
                outcomes[item.job_id] = Outcome.retry(f"gateway unavailable: {result}")
            elif isinstance(result, Exception):
                outcomes[item.job_id] = Outcome.retry(f"gateway error: {result!r}")
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
        keys = [(item.request.tenant_id, item.request.refund_id) for item, _ in results]
        refunds = {
            (r.tenant_id, r.id): r
            for r in session.scalars(
                select(Refund)
                .where(tuple_(Refund.tenant_id, Refund.id).in_(keys))
                .options(lazyload(Refund.lines))
                .with_for_update()
            )
        }
        payouts = {
            (p.tenant_id, p.idempotency_key): p
            for p in session.scalars(
                select(Payout).where(
                    tuple_(Payout.tenant_id, Payout.idempotency_key).in_(
                        [(i.request.tenant_id, i.request.idempotency_key) for i, _ in results]
                    )
                )
            )
        }
        for item, result in results:
            req = item.request
            outcomes[item.job_id] = Outcome.done()
            payout = payouts.get((req.tenant_id, req.idempotency_key))
            refund = refunds.get((req.tenant_id, req.refund_id))
            if payout is None or refund is None:
                outcomes[item.job_id] = Outcome.retry("payout or refund row vanished")
                continue
            if payout.status != "sent" or refund.state is not RefundStatus.PROCESSING:
                continue  # another run already recorded this answer
            payout.status = str(result.outcome)
            payout.gateway_reference = result.gateway_reference
            payout.failure_reason = result.failure_reason
            payout.failure_message = result.failure_message
            payout.updated_at = now
            if result.outcome is PayoutOutcome.SUCCEEDED:
                refund.record(
                    EventType.PAYOUT_SUCCEEDED,
                    actor=WORKER,
                    at=now,
                    data={"gateway_reference": result.gateway_reference},
                )
                refund.transition(RefundStatus.SUCCEEDED, actor=WORKER, at=now)
            else:
                data = {
                    "failure_reason": result.failure_reason,
                    "failure_message": result.failure_message,
                }
                refund.record(EventType.PAYOUT_FAILED, actor=WORKER, at=now, data=data)
                refund.transition(RefundStatus.FAILED, actor=WORKER, at=now, data=data)

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
