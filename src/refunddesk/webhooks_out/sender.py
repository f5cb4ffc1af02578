"""Sending: sign per Standard Webhooks, POST, record each attempt, disable dead endpoints.

A ``webhook_delivery`` job runs in three steps per batch, like payouts: read what to send,
send many at once (no transaction open while waiting on retailers), then record every
attempt and its consequences in one transaction. A failed attempt is retried by the queue
with backoff; every retry carries the same ``webhook-id`` (the event's id) and body, so the
receiver can drop duplicates.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import urllib3
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session
from standardwebhooks.webhooks import Webhook
from urllib3.exceptions import HTTPError, TimeoutError

from refunddesk import __version__
from refunddesk.core.clock import Clock
from refunddesk.core.ids import new_id
from refunddesk.db.base import table_of
from refunddesk.db.keys import pairs_in
from refunddesk.db.prepared import Driver, Prepared
from refunddesk.db.uow import Database
from refunddesk.jobs.queue import ClaimedJob
from refunddesk.jobs.worker import Outcome
from refunddesk.webhooks_out.fanout import DELIVERY_JOB, PENDING, queue_delivery
from refunddesk.webhooks_out.orm import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from refunddesk.webhooks_out.rules import ENDPOINT_DISABLED_EVENT, matches, refused_destination

log = logging.getLogger(__name__)
EXCERPT_BYTES = 1024
DELIVERED, FAILED, SKIPPED, NOTICE = "delivered", "failed", "skipped", "notice"
SENDABLE = frozenset({PENDING, FAILED})


def sign(secrets: Sequence[str], msg_id: str, at: datetime, body: str) -> str:
    """The webhook-signature header: one ``v1,<base64>`` per secret, space separated."""
    return " ".join(Webhook(s).sign(msg_id=msg_id, timestamp=at, data=body) for s in secrets)


def encode(payload: object) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


@dataclass(frozen=True, slots=True)
class Request:
    job_id: int
    tenant_id: str
    delivery_id: str
    endpoint_id: str
    url: str
    msg_id: str
    body: str
    secrets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Result:
    request: Request
    at: datetime
    ok: bool
    status_code: int | None
    duration_ms: int
    error: str | None
    excerpt: str | None


class DeliveryHandler:
    """Handles ``webhook_delivery`` jobs in batches."""

    kind = DELIVERY_JOB

    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        timeout_seconds: float,
        disable_after: timedelta,
        allow_private: bool,
        concurrency: int,
        max_attempts: int,
    ) -> None:
        self.db = db
        self.clock = clock
        self.disable_after = disable_after
        self.allow_private = allow_private
        self.max_attempts = max_attempts
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="webhook")
        # urllib3 rather than httpx: the same POST costs about 40% less CPU, and one worker
        # process sends every webhook of the desk. Never retried or redirected here (the job
        # queue retries, redirects are refused); TCP_NODELAY is urllib3's default.
        self._http = urllib3.PoolManager(
            num_pools=256,
            maxsize=concurrency,
            block=False,
            retries=False,
            timeout=urllib3.Timeout(total=timeout_seconds),
            headers={"user-agent": f"refunddesk-webhooks/{__version__}"},
        )

    def __call__(self, jobs: Sequence[ClaimedJob]) -> dict[int, Outcome]:
        outcomes: dict[int, Outcome] = {}
        with self.db.write() as session:
            requests = self._prepare(session, jobs, outcomes)
        results = list(self._pool.map(self.send, requests))
        if results:
            with self.db.write() as session:
                self._record(session, results, outcomes)
        return outcomes

    def _prepare(
        self, session: Session, jobs: Sequence[ClaimedJob], outcomes: dict[int, Outcome]
    ) -> list[Request]:
        keys = [(j.tenant_id or "", str(j.payload.get("delivery_id"))) for j in jobs]
        # Columns, not entities: the rows are only read here (updates go by statement).
        deliveries = {
            (d.tenant_id, d.id): d
            for d in session.execute(
                select(*_PREPARE_COLUMNS).where(
                    pairs_in(_DELIVERIES.c.tenant_id, _DELIVERIES.c.id, keys)
                )
            )
        }
        endpoints = _endpoints(session, {(d.tenant_id, d.endpoint_id) for d in deliveries.values()})
        now = self.clock.now()
        requests = []
        skipped = []
        for job, key in zip(jobs, keys, strict=True):
            delivery = deliveries.get(key)
            if delivery is None or delivery.status not in SENDABLE:
                outcomes[job.id] = Outcome.done()  # gone with its endpoint, or settled already
                continue
            endpoint = endpoints.get((delivery.tenant_id, delivery.endpoint_id))
            if endpoint is None or not endpoint.enabled:
                skipped.append({"k_tenant_id": key[0], "k_id": key[1], "updated_at": now})
                outcomes[job.id] = Outcome.done()
                continue
            requests.append(
                Request(
                    job_id=job.id,
                    tenant_id=delivery.tenant_id,
                    delivery_id=delivery.id,
                    endpoint_id=endpoint.id,
                    url=endpoint.url,
                    msg_id=delivery.event_id,
                    body=encode(delivery.payload),
                    secrets=_signing_secrets(endpoint, now),
                )
            )
        Driver.of(session).execute_many(_SKIP, skipped)
        return requests

    def send(self, request: Request) -> Result:
        """POST one delivery, signed; never raises."""
        at = self.clock.now()
        started = time.perf_counter()
        status_code, error, excerpt = None, None, None
        refused = None if self.allow_private else refused_destination(request.url)
        if refused is not None:
            error = f"refused: {refused}"
        else:
            headers = {
                "content-type": "application/json",
                "webhook-id": request.msg_id,
                "webhook-timestamp": str(int(at.timestamp())),
                "webhook-signature": sign(request.secrets, request.msg_id, at, request.body),
            }
            try:
                response = self._http.request(
                    "POST",
                    request.url,
                    body=request.body.encode(),
                    headers=headers,
                    preload_content=False,
                    redirect=False,
                )
                try:
                    status_code = response.status
                    excerpt = _excerpt(response)
                    if 300 <= status_code < 400:
                        where = (response.headers.get("location") or "")[:200]
                        error = f"HTTP {status_code}: redirects are not followed ({where})"
                    elif not 200 <= status_code < 300:
                        error = f"HTTP {status_code}"
                finally:
                    response.release_conn()
            except TimeoutError as exc:
                error = f"timed out: {type(exc).__name__}"
            except HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
        duration_ms = round((time.perf_counter() - started) * 1000)
        return Result(request, at, error is None, status_code, duration_ms, error, excerpt)

    def _record(
        self, session: Session, results: list[Result], outcomes: dict[int, Outcome]
    ) -> None:
        keys = [(r.request.tenant_id, r.request.delivery_id) for r in results]
        existing = {
            (row.tenant_id, row.id)
            for row in session.execute(
                select(_DELIVERIES.c.tenant_id, _DELIVERIES.c.id).where(
                    pairs_in(_DELIVERIES.c.tenant_id, _DELIVERIES.c.id, keys)
                )
            )
        }
        endpoints = _endpoints(
            session, {(r.request.tenant_id, r.request.endpoint_id) for r in results}
        )
        now = self.clock.now()
        attempts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for result in sorted(results, key=lambda r: r.at):
            request = result.request
            endpoint = endpoints.get((request.tenant_id, request.endpoint_id))
            if (request.tenant_id, request.delivery_id) not in existing or endpoint is None:
                outcomes[request.job_id] = Outcome.done()  # deleted while we were sending
                continue
            attempts.append(
                {
                    "tenant_id": request.tenant_id,
                    "id": new_id(),
                    "delivery_id": request.delivery_id,
                    "at": result.at,
                    "ok": result.ok,
                    "status_code": result.status_code,
                    "duration_ms": result.duration_ms,
                    "error": result.error,
                    "response_excerpt": result.excerpt,
                }
            )
            update = {
                "k_tenant_id": request.tenant_id,
                "k_id": request.delivery_id,
                "last_status_code": result.status_code,
                "last_error": result.error,
                "updated_at": now,
                "status": DELIVERED,
                "delivered_at": result.at if result.ok else None,
            }
            updates.append(update)
            if result.ok:
                if endpoint.failing_since is not None:
                    endpoint.failing_since = None
                outcomes[request.job_id] = Outcome.done()
                continue
            update["status"] = PENDING
            endpoint.failing_since = endpoint.failing_since or result.at
            if endpoint.enabled and result.at - endpoint.failing_since >= self.disable_after:
                self._disable(session, endpoint, result, now)
            if not endpoint.enabled:  # no point retrying: it waits for a redeliver
                update["status"] = FAILED
                outcomes[request.job_id] = Outcome.done()
            else:
                outcomes[request.job_id] = Outcome.retry(result.error or "failed")
        db = Driver.of(session)
        db.execute_many(_INSERT_ATTEMPT, attempts)
        db.execute_many(_UPDATE_DELIVERY, updates)

    def _disable(
        self, session: Session, endpoint: WebhookEndpoint, result: Result, now: datetime
    ) -> None:
        """Turn off an endpoint that failed every delivery for too long, and say so."""
        assert endpoint.failing_since is not None
        hours = self.disable_after.total_seconds() / 3600
        reason = (
            f"every delivery failed since {endpoint.failing_since.isoformat()} "
            f"(more than {hours:g} hours); last: {result.error}"
        )
        endpoint.enabled, endpoint.disabled_reason, endpoint.disabled_at = False, reason, now
        endpoint.updated_at = now
        log.warning(
            "webhook endpoint %s of %s disabled: %s", endpoint.id, endpoint.tenant_id, reason
        )
        event_id = new_id()
        body = {
            "type": ENDPOINT_DISABLED_EVENT,
            "timestamp": now.isoformat(),
            "data": {
                "tenant_id": endpoint.tenant_id,
                "endpoint_id": endpoint.id,
                "url": endpoint.url,
                "reason": reason,
                "failing_since": endpoint.failing_since.isoformat(),
            },
        }
        # In the disabled endpoint's own log, as a notice (it is not sent there)...
        session.add(
            WebhookDelivery(
                tenant_id=endpoint.tenant_id,
                id=new_id(),
                endpoint_id=endpoint.id,
                event_id=event_id,
                event_type=ENDPOINT_DISABLED_EVENT,
                refund_id=None,
                payload=body,
                status=NOTICE,
                attempts=0,
                last_error=reason,
                created_at=now,
                updated_at=now,
            )
        )
        # ...and sent to the tenant's other enabled endpoints that want it.
        others = session.scalars(
            select(WebhookEndpoint).where(
                WebhookEndpoint.tenant_id == endpoint.tenant_id,
                WebhookEndpoint.id != endpoint.id,
                WebhookEndpoint.enabled.is_(True),
            )
        )
        for other in others:
            if matches(other.event_types, ENDPOINT_DISABLED_EVENT):
                queue_delivery(
                    session,
                    tenant_id=endpoint.tenant_id,
                    endpoint_id=other.id,
                    event_id=event_id,
                    event_type=ENDPOINT_DISABLED_EVENT,
                    body=body,
                    now=now,
                    max_attempts=self.max_attempts,
                )

    def on_dead(self, session: Session, job: ClaimedJob, error: str) -> None:
        delivery = session.get(
            WebhookDelivery, (job.tenant_id or "", str(job.payload.get("delivery_id")))
        )
        if delivery is not None and delivery.status == PENDING:
            delivery.status, delivery.last_error = FAILED, error[:2000]

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self._http.clear()


_DELIVERIES = table_of(WebhookDelivery)
_ATTEMPTS = table_of(WebhookAttempt)
_PREPARE_COLUMNS = [
    _DELIVERIES.c[c] for c in ("tenant_id", "id", "endpoint_id", "event_id", "status", "payload")
]
_BY_KEY = (_DELIVERIES.c.tenant_id == bindparam("k_tenant_id")) & (
    _DELIVERIES.c.id == bindparam("k_id")
)
_SKIP = Prepared(
    update(_DELIVERIES)
    .where(_BY_KEY)
    .values(
        status=SKIPPED, last_error="the endpoint is disabled", updated_at=bindparam("updated_at")
    )
)
_INSERT_ATTEMPT = Prepared(insert(_ATTEMPTS), keys=[c.key for c in _ATTEMPTS.columns])
# An attempt's outcome. A failed one leaves delivered_at as it was (an earlier delivery of a
# redelivered event stays on record).
_UPDATE_DELIVERY = Prepared(
    update(_DELIVERIES)
    .where(_BY_KEY)
    .values(
        attempts=_DELIVERIES.c.attempts + 1,
        delivered_at=func.coalesce(
            bindparam("delivered_at", type_=_DELIVERIES.c.delivered_at.type),
            _DELIVERIES.c.delivered_at,
        ),
    ),
    keys=["last_status_code", "last_error", "updated_at", "status"],
)


def _endpoints(
    session: Session, keys: set[tuple[str, str]]
) -> dict[tuple[str, str], WebhookEndpoint]:
    """The endpoints with these (tenant_id, id) keys, by key."""
    if not keys:
        return {}
    found = session.scalars(
        select(WebhookEndpoint).where(pairs_in(WebhookEndpoint.tenant_id, WebhookEndpoint.id, keys))
    )
    return {(e.tenant_id, e.id): e for e in found}


def _signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> tuple[str, ...]:
    """The current secret, and the previous one while a rotation's grace period lasts."""
    if (
        endpoint.previous_secret
        and endpoint.previous_secret_until
        and now < endpoint.previous_secret_until
    ):
        return (endpoint.secret, endpoint.previous_secret)
    return (endpoint.secret,)


def _excerpt(response: urllib3.BaseHTTPResponse) -> str | None:
    """At most EXCERPT_BYTES of the response body, read no further than that.

    A longer body is not read to its end: its connection is closed instead of reused.
    """
    data = response.read(EXCERPT_BYTES + 1, decode_content=True)
    if len(data) > EXCERPT_BYTES:
        response.close()
        data = data[:EXCERPT_BYTES]
    else:
        response.drain_conn()  # nothing left but the end of the body; keep the connection
    if not data:
        return None
    return data.decode("utf-8", errors="replace")
