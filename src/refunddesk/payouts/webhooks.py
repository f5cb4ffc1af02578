"""Gateway webhooks in: verify, store raw, acknowledge; apply later, once, in any order.

Receiving does as little as it can: find the tenant account whose secret verifies the
signature, store every notification with the raw body and a durable job in one transaction,
and answer the gateway. A notification seen before (same account and event id) is
acknowledged and not stored again. The job applies each one through `settle`, which only
ever moves a payout forward, so a late or repeated notification changes nothing twice.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from refunddesk.core.clock import Clock
from refunddesk.core.errors import Invalid, NotFound, Unauthorized, Unavailable
from refunddesk.core.ids import new_id
from refunddesk.db.keys import pairs_in
from refunddesk.db.uow import Database
from refunddesk.jobs.queue import ClaimedJob, enqueue
from refunddesk.jobs.worker import Outcome
from refunddesk.payouts import disputes
from refunddesk.payouts.accounts import accounts_for_provider
from refunddesk.payouts.gateways.base import (
    FailureReason,
    GatewayNotification,
    GatewayRegistry,
    GatewayUnavailable,
    InvalidSignature,
    NotificationKind,
    WebhookReceiver,
)
from refunddesk.payouts.orm import GatewayWebhook
from refunddesk.payouts.settle import Applied, apply_notification

log = logging.getLogger(__name__)
WEBHOOK_JOB = "gateway_webhook"
DISPUTE_KINDS = frozenset({NotificationKind.DISPUTE_OPENED, NotificationKind.DISPUTE_CLOSED})
# Headers worth keeping with the raw body (signatures, ids, timestamps); never cookies.
_KEPT_HEADER_PREFIXES = ("stripe-", "paypal-", "webhook-", "x-", "content-type", "user-agent")


@dataclass(frozen=True, slots=True)
class Received:
    media_type: str
    body: bytes
    tenant_id: str
    account: str
    stored: int  # new notifications stored
    duplicates: int  # seen before; acknowledged, not stored


def _to_json(n: GatewayNotification) -> dict[str, Any]:
    data = dataclasses.asdict(n)
    data["occurred_at"] = n.occurred_at.isoformat() if n.occurred_at else None
    data["payment_references"] = list(n.payment_references)
    return data


def _from_json(data: Mapping[str, Any]) -> GatewayNotification:
    reason, occurred = data.get("failure_reason"), data.get("occurred_at")
    return GatewayNotification(
        event_id=data["event_id"],
        type=data["type"],
        kind=NotificationKind(data["kind"]),
        gateway_reference=data.get("gateway_reference"),
        idempotency_key=data.get("idempotency_key"),
        failure_reason=FailureReason(reason) if reason else None,
        failure_message=data.get("failure_message"),
        arn=data.get("arn"),
        occurred_at=datetime.fromisoformat(occurred) if occurred else None,
        payment_references=tuple(data.get("payment_references") or ()),
    )


def receive(
    *,
    db: Database,
    clock: Clock,
    gateways: GatewayRegistry,
    provider: str,
    headers: Mapping[str, str],
    body: bytes,
    max_attempts: int,
) -> Received:
    """Verify one delivery against the provider's accounts; store what is new."""
    with db.read() as session:
        accounts = accounts_for_provider(session, provider)
    if not accounts:
        raise NotFound(f"no gateway account uses provider {provider!r}")
    lowered = {k.lower(): v for k, v in headers.items()}
    for account in accounts:
        gateway = gateways.account_gateway(
            account.tenant_id,
            account.name,
            account.provider,
            account.config,
            account.updated_at.isoformat(),
        )
        if not isinstance(gateway, WebhookReceiver):
            raise NotFound(f"provider {provider!r} sends no webhooks")
        try:
            notifications = gateway.parse_webhook(lowered, body)
        except InvalidSignature:
            continue
        except GatewayUnavailable as exc:  # verifying needed the gateway (PayPal), and it is down
            raise Unavailable(f"could not verify the {provider} webhook now: {exc}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise Invalid(f"not a {provider} webhook: {exc}", field="body") from exc
        media_type, ack = gateway.webhook_ack()
        stored, duplicates = _store(
            db,
            clock,
            account.tenant_id,
            account.name,
            provider,
            lowered,
            body,
            notifications,
            max_attempts=max_attempts,
        )
        return Received(media_type, ack, account.tenant_id, account.name, stored, duplicates)
    raise Unauthorized("the webhook signature does not verify with any account's secret")


def _store(
    db: Database,
    clock: Clock,
    tenant_id: str,
    account: str,
    provider: str,
    headers: Mapping[str, str],
    body: bytes,
    notifications: Sequence[GatewayNotification],
    *,
    max_attempts: int,
) -> tuple[int, int]:
    kept = {k: v for k, v in headers.items() if k.startswith(_KEPT_HEADER_PREFIXES)}
    for _ in range(3):  # a concurrent copy of the same delivery may win the unique index
        try:
            with db.write() as session:
                return _store_new(
                    session,
                    clock.now(),
                    tenant_id,
                    account,
                    provider,
                    kept,
                    body,
                    notifications,
                    max_attempts=max_attempts,
                )
        except IntegrityError:
            continue
    raise RuntimeError("could not store the webhook after 3 tries")


def _store_new(
    session: Session,
    now: datetime,
    tenant_id: str,
    account: str,
    provider: str,
    headers: dict[str, str],
    body: bytes,
    notifications: Sequence[GatewayNotification],
    *,
    max_attempts: int,
) -> tuple[int, int]:
    ids = {n.event_id for n in notifications}
    seen = (
        set(
            session.scalars(
                select(GatewayWebhook.event_id).where(
                    GatewayWebhook.tenant_id == tenant_id,
                    pairs_in(
                        GatewayWebhook.account, GatewayWebhook.event_id, [(account, i) for i in ids]
                    ),
                )
            )
        )
        if ids
        else set()
    )
    new_ids = []
    for n in notifications:
        if n.event_id in seen:
            continue
        seen.add(n.event_id)
        row = GatewayWebhook(
            tenant_id=tenant_id,
            id=new_id(),
            provider=provider,
            account=account,
            event_id=n.event_id,
            type=n.type[:100],
            headers=headers,
            body=body,
            notification=_to_json(n),
            status="received",
            received_at=now,
        )
        session.add(row)
        new_ids.append(row.id)
    if new_ids:
        enqueue(
            session,
            kind=WEBHOOK_JOB,
            tenant_id=tenant_id,
            now=now,
            payload={"ids": new_ids},
            max_attempts=max_attempts,
        )
    return len(new_ids), len(notifications) - len(new_ids)


class WebhookHandler:
    """Applies stored gateway notifications (``gateway_webhook`` jobs)."""

    kind = WEBHOOK_JOB

    def __init__(self, *, db: Database, clock: Clock, max_attempts: int) -> None:
        self.db = db
        self.clock = clock
        self.max_attempts = max_attempts

    def __call__(self, jobs: Sequence[ClaimedJob]) -> dict[int, Outcome]:
        outcomes: dict[int, Outcome] = {}
        for job in jobs:  # one transaction per delivery: one bad one never blocks the rest
            try:
                with self.db.write() as session:
                    process(
                        session,
                        job.tenant_id or "",
                        list(job.payload["ids"]),
                        now=self.clock.now(),
                        max_attempts=self.max_attempts,
                    )
                outcomes[job.id] = Outcome.done()
            except Exception as exc:
                log.exception("gateway webhook job %s failed", job.id)
                outcomes[job.id] = Outcome.retry(repr(exc))
        return outcomes

    def on_dead(self, session: Session, job: ClaimedJob, error: str) -> None:
        rows = session.scalars(
            select(GatewayWebhook).where(
                GatewayWebhook.tenant_id == (job.tenant_id or ""),
                GatewayWebhook.id.in_(list(job.payload.get("ids", []))),
            )
        )
        for row in rows:
            if row.status == "received":
                row.status = "failed"
                row.error = error[:2000]


def process(
    session: Session, tenant_id: str, ids: list[str], *, now: datetime, max_attempts: int
) -> None:
    rows = session.scalars(
        select(GatewayWebhook)
        .where(GatewayWebhook.tenant_id == tenant_id, GatewayWebhook.id.in_(ids))
        .order_by(GatewayWebhook.received_at, GatewayWebhook.id)
    )
    for row in rows:
        if row.status not in ("received", "failed"):
            continue
        notification = _from_json(row.notification)
        if notification.kind in DISPUTE_KINDS:
            changed = disputes.record(
                session,
                tenant_id=tenant_id,
                gateway=row.account,
                notification=notification,
                now=now,
                max_attempts=max_attempts,
            )
            applied = Applied.CHANGED if changed else Applied.DUPLICATE
        else:
            applied = apply_notification(session, tenant_id, notification, now=now)
        row.status = {
            Applied.CHANGED: "processed",
            Applied.DUPLICATE: "ignored",
            Applied.UNKNOWN: "unmatched",
        }[applied]
        row.error = None
        row.processed_at = now
