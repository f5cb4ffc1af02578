"""Desk operations on the job queue (admin only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from refunddesk.api.deps import ContainerDep, PrincipalDep, ReadSession
from refunddesk.auth.domain import Permission
from refunddesk.jobs import queue
from refunddesk.jobs.orm import Job

router = APIRouter(prefix="/v1/jobs", tags=["operations"])


class JobPublic(BaseModel):
    id: int
    kind: str
    tenant_id: str | None
    status: str
    attempts: int
    max_attempts: int
    run_at: datetime
    last_error: str | None
    payload: dict[str, Any]
    created_at: datetime


def _public(job: Job) -> JobPublic:
    return JobPublic(
        id=job.id,
        kind=job.kind,
        tenant_id=job.tenant_id,
        status=job.status,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        run_at=job.run_at,
        last_error=job.last_error,
        payload=job.payload,
        created_at=job.created_at,
    )


@router.get("", operation_id="list_jobs")
def list_jobs(
    principal: PrincipalDep,
    session: ReadSession,
    status: Literal["queued", "running", "dead"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[JobPublic]:
    """Jobs in the queue, newest first; dead ones carry their last error."""
    principal.require(Permission.MANAGE_DESK)
    return [_public(j) for j in queue.list_jobs(session, status=status, limit=limit)]


@router.post("/{job_id}/rerun", operation_id="rerun_job")
def rerun(
    job_id: Annotated[int, Path(ge=1, le=2**62)], principal: PrincipalDep, container: ContainerDep
) -> JobPublic:
    """Put a dead job back in the queue."""
    principal.require(Permission.MANAGE_DESK)
    with container.db.write() as session:
        return _public(queue.rerun(session, job_id, now=container.clock.now()))
