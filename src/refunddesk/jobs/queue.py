"""Enqueue, claim and settle jobs in the jobs table.

A job is enqueued in the same transaction as the state change that causes it, so it exists
exactly when that change committed. Workers claim with FOR UPDATE SKIP LOCKED on PostgreSQL
(on SQLite the write lock serialises claims) and hold a lease; a worker that dies lets its
lease expire and another worker takes the job over.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from refunddesk.core.errors import Conflict, NotFound
from refunddesk.db.base import table_of
from refunddesk.jobs.orm import Job

QUEUED, RUNNING, DEAD = "queued", "running", "dead"


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    id: int
    kind: str
    tenant_id: str | None
    payload: dict[str, Any]
    attempts: int
    max_attempts: int


_INSERT_JOB = insert(table_of(Job))


def enqueue(
    session: Session,
    *,
    kind: str,
    payload: dict[str, Any],
    now: datetime,
    max_attempts: int,
    tenant_id: str | None = None,
    delay: timedelta | None = None,
    dedupe_key: str | None = None,
) -> None:
    """Add a job to the session's transaction; it runs only if that transaction commits."""
    session.connection().execute(
        _INSERT_JOB,
        [
            {
                "kind": kind,
                "payload": payload,
                "tenant_id": tenant_id,
                "status": QUEUED,
                "attempts": 0,
                "max_attempts": max_attempts,
                "run_at": now + (delay or timedelta()),
                "locked_until": None,
                "locked_by": None,
                "last_error": None,
                "dedupe_key": dedupe_key,
                "created_at": now,
                "updated_at": now,
            }
        ],
    )


_CLAIM_COLUMNS = (Job.id, Job.kind, Job.tenant_id, Job.payload, Job.attempts, Job.max_attempts)


def claim(
    session: Session, *, worker: str, now: datetime, lease: timedelta, limit: int
) -> list[ClaimedJob]:
    """Take up to limit due jobs (or jobs whose lease ran out) and lease them to worker."""
    # Two indexed range scans on (status, ...) rather than one OR, which would scan the table.
    expired = session.execute(
        select(*_CLAIM_COLUMNS)
        .where(Job.status == RUNNING, Job.locked_until < now)
        .order_by(Job.locked_until)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    due = (
        session.execute(
            select(*_CLAIM_COLUMNS)
            .where(Job.status == QUEUED, Job.run_at <= now)
            .order_by(Job.run_at)
            .limit(limit - len(expired))
            .with_for_update(skip_locked=True)
        ).all()
        if len(expired) < limit
        else []
    )
    rows = [*expired, *due]
    if not rows:
        return []
    session.execute(
        update(Job)
        .where(Job.id.in_([row.id for row in rows]))
        .values(
            status=RUNNING,
            attempts=Job.attempts + 1,
            locked_until=now + lease,
            locked_by=worker,
            updated_at=now,
        )
    )
    return [
        ClaimedJob(
            row.id, row.kind, row.tenant_id, dict(row.payload), row.attempts + 1, row.max_attempts
        )
        for row in rows
    ]


def backoff(attempts: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt n+1: exponential, capped, with 'equal jitter'.

    Half the delay is fixed so retries never bunch near zero; the random half spreads a burst
    of failures (a gateway outage) so they do not all come back at the same instant.
    """
    ceiling = min(cap, base * (2 ** max(attempts - 1, 0)))
    return (rng or random).uniform(ceiling / 2, ceiling)


def complete(session: Session, job_ids: list[int], *, worker: str) -> None:
    """Done jobs leave the table; their effects live in the rows they changed."""
    if job_ids:
        session.execute(delete(Job).where(Job.id.in_(job_ids), Job.locked_by == worker))


def _held_by(job_id: int, worker: str | None) -> ColumnElement[bool]:
    """The job, if worker still holds its lease: a worker whose lease ran out settles nothing."""
    held = Job.id == job_id
    return held if worker is None else held & (Job.locked_by == worker)


def retry_later(
    session: Session,
    job_id: int,
    *,
    error: str,
    now: datetime,
    delay_seconds: float,
    worker: str | None = None,
) -> bool:
    """Queue the job again after a delay; False if worker no longer holds it."""
    result = session.execute(
        update(Job)
        .where(_held_by(job_id, worker))
        .values(
            status=QUEUED,
            run_at=now + timedelta(seconds=delay_seconds),
            locked_until=None,
            locked_by=None,
            last_error=error[:4000],
            updated_at=now,
        )
    )
    return bool(cast("CursorResult[Any]", result).rowcount)


def bury(
    session: Session, job_id: int, *, error: str, now: datetime, worker: str | None = None
) -> bool:
    """Park a job that keeps failing as dead, with its last error, for a human to look at.

    Returns False (and changes nothing) if worker no longer holds the job's lease.
    """
    result = session.execute(
        update(Job)
        .where(_held_by(job_id, worker))
        .values(
            status=DEAD, locked_until=None, locked_by=None, last_error=error[:4000], updated_at=now
        )
    )
    return bool(cast("CursorResult[Any]", result).rowcount)


def rerun(session: Session, job_id: int, *, now: datetime) -> Job:
    """Put a dead job back in the queue with a fresh set of attempts."""
    job = session.get(Job, job_id, with_for_update=True)
    if job is None:
        raise NotFound(f"no job {job_id}")
    if job.status != DEAD:
        raise Conflict(f"job {job_id} is {job.status}; only dead jobs can be re-run")
    job.status, job.attempts, job.run_at, job.updated_at = QUEUED, 0, now, now
    return job


@dataclass(frozen=True, slots=True)
class QueueStats:
    queued: int
    running: int
    dead: int
    oldest_queued_at: datetime | None


def stats(session: Session) -> QueueStats:
    counts = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    oldest = session.scalar(select(func.min(Job.created_at)).where(Job.status != DEAD))
    return QueueStats(
        queued=int(counts.get(QUEUED, 0)),
        running=int(counts.get(RUNNING, 0)),
        dead=int(counts.get(DEAD, 0)),
        oldest_queued_at=oldest,
    )


def list_jobs(session: Session, *, status: str | None = None, limit: int = 50) -> list[Job]:
    query = select(Job).order_by(Job.id.desc()).limit(limit)
    if status:
        query = query.where(Job.status == status)
    return list(session.scalars(query))
