"""The send_message job: one message through its channel, every attempt recorded.

Three steps per batch, like payouts: read the queued messages; send (email batches share
one SMTP session); record each attempt and settle the message in one transaction. A
message already sent is done at once, so a job that runs again never sends twice. (A crash
between the provider's answer and the record can resend once; the Message-ID header is the
message's own id, so mail clients can drop that copy.)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from refunddesk.core.clock import Clock
from refunddesk.core.ids import new_id
from refunddesk.db.base import table_of
from refunddesk.db.keys import pairs_in
from refunddesk.db.uow import Database
from refunddesk.jobs.queue import ClaimedJob
from refunddesk.jobs.worker import Outcome
from refunddesk.notifications.channels.base import (
    EmailSender,
    OutgoingEmail,
    OutgoingSms,
    SendFailed,
    Sent,
    SmsSender,
)
from refunddesk.notifications.dispatch import EMAIL, FAILED, QUEUED, SEND_JOB, SENT
from refunddesk.notifications.orm import Message, MessageAttempt, NotificationSettings
from refunddesk.tenants.orm import Tenant

log = logging.getLogger(__name__)


# What sending reads of a message: plain columns, not entities (bodies can be large and
# nothing here changes them through the ORM).
_READ = (
    Message.tenant_id,
    Message.id,
    Message.channel,
    Message.recipient,
    Message.subject,
    Message.body_text,
    Message.body_html,
    Message.status,
    Message.attempts,
)
_MESSAGES = table_of(Message)
# One executemany per batch for the attempts and one for the messages they settle.
_INSERT_ATTEMPTS = insert(table_of(MessageAttempt))
_SETTLE = (
    update(_MESSAGES)
    .where(_MESSAGES.c.tenant_id == bindparam("b_tenant"), _MESSAGES.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        attempts=bindparam("b_attempts"),
        last_error=bindparam("b_error"),
        provider_id=bindparam("b_provider"),
        updated_at=bindparam("b_at"),
    )
)


@dataclass(frozen=True, slots=True)
class _Work:
    job: ClaimedJob
    message: Any  # a row of _READ
    retailer: str
    reply_to: str | None


class MessageHandler:
    """Sends queued messages; a failure is retried with the queue's backoff."""

    kind = SEND_JOB

    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        email: EmailSender | None,
        sms: SmsSender | None,
    ) -> None:
        self.db, self.clock, self.email, self.sms = db, clock, email, sms

    def __call__(self, jobs: Sequence[ClaimedJob]) -> dict[int, Outcome]:
        outcomes: dict[int, Outcome] = {}
        work = self._load(jobs, outcomes)
        results: dict[int, Sent | SendFailed] = {}
        emails = [w for w in work if w.message.channel == EMAIL]
        if emails:
            if self.email is None:
                sent: list[Sent | SendFailed] = [
                    SendFailed("email is not configured on this desk") for _ in emails
                ]
            else:
                sent = self.email.send([_email(w) for w in emails])
            results.update({w.job.id: r for w, r in zip(emails, sent, strict=True)})
        for w in work:
            if w.message.channel != EMAIL:
                results[w.job.id] = self._sms(w)
        self._record(work, results, outcomes)
        return outcomes

    def _load(self, jobs: Sequence[ClaimedJob], outcomes: dict[int, Outcome]) -> list[_Work]:
        keys = {(j.tenant_id or "", str(j.payload.get("message_id"))): j for j in jobs}
        with self.db.read() as session:
            rows = session.execute(
                select(*_READ, Tenant.name, NotificationSettings.reply_to)
                .join(Tenant, Tenant.id == Message.tenant_id)
                .outerjoin(
                    NotificationSettings, NotificationSettings.tenant_id == Message.tenant_id
                )
                .where(pairs_in(Message.tenant_id, Message.id, list(keys)))
            ).all()
        work = []
        found = set()
        for message in rows:
            job = keys[(message.tenant_id, message.id)]
            found.add(job.id)
            if message.status != QUEUED:  # sent (or settled) already: never again
                outcomes[job.id] = Outcome.done()
                continue
            work.append(_Work(job, message, message.name, message.reply_to))
        for job in jobs:
            if job.id not in found:
                outcomes[job.id] = Outcome.fail("message not found")
        return work

    def _sms(self, w: _Work) -> Sent | SendFailed:
        if self.sms is None:
            return SendFailed("SMS is not configured on this desk")
        try:
            return self.sms.send(
                OutgoingSms(
                    message_id=w.message.id,
                    to=w.message.recipient or "",
                    body=w.message.body_text or "",
                )
            )
        except SendFailed as exc:
            return exc
        except Exception as exc:  # an adapter bug must not fail the batch's other messages
            log.exception("SMS adapter failed")
            return SendFailed(f"{type(exc).__name__}: {exc}")

    def _record(
        self,
        work: Sequence[_Work],
        results: dict[int, Sent | SendFailed],
        outcomes: dict[int, Outcome],
    ) -> None:
        now = self.clock.now()
        attempts: list[dict[str, Any]] = []
        settled: list[dict[str, Any]] = []
        for w in work:
            result = results[w.job.id]
            attempt_no = w.message.attempts + 1
            last_try = w.job.attempts >= w.job.max_attempts
            if isinstance(result, Sent):
                status, error, outcome = SENT, None, Outcome.done()
            elif result.permanent or last_try:
                status, error = FAILED, str(result)
                outcome = Outcome.fail(error)
            else:
                status, error, outcome = QUEUED, str(result), Outcome.retry(str(result))
            provider_id = result.provider_id if isinstance(result, Sent) else None
            attempts.append(
                {
                    "tenant_id": w.message.tenant_id,
                    "id": new_id(),
                    "message_id": w.message.id,
                    "attempt_no": attempt_no,
                    "status": SENT if isinstance(result, Sent) else FAILED,
                    "error": error,
                    "provider_id": provider_id,
                    "at": now,
                }
            )
            settled.append(
                {
                    "b_tenant": w.message.tenant_id,
                    "b_id": w.message.id,
                    "b_status": status,
                    "b_attempts": attempt_no,
                    "b_error": error,
                    "b_provider": provider_id,
                    "b_at": now,
                }
            )
            outcomes[w.job.id] = outcome
        if not attempts:
            return
        with self.db.write() as session:
            session.execute(_INSERT_ATTEMPTS, attempts)
            session.execute(_SETTLE, settled)

    def on_dead(self, session: Session, job: ClaimedJob, error: str) -> None:
        """A job given up on (lease lost, handler error): the message failed."""
        session.execute(
            update(Message)
            .where(
                Message.tenant_id == (job.tenant_id or ""),
                Message.id == str(job.payload.get("message_id")),
                Message.status == QUEUED,
            )
            .values(status=FAILED, last_error=error[:4000], updated_at=self.clock.now())
        )

    def close(self) -> None:
        close = getattr(self.sms, "close", None)
        if close is not None:
            close()


def _email(w: _Work) -> OutgoingEmail:
    m = w.message
    return OutgoingEmail(
        message_id=m.id,
        to=m.recipient or "",
        subject=m.subject or "",
        text=m.body_text or "",
        html=m.body_html or "",
        sender_name=w.retailer,
        reply_to=w.reply_to,
    )
