"""The worker: claims due jobs in batches and hands each batch to the handler for its kind."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from prometheus_client import Counter
from sqlalchemy.orm import Session

from refunddesk.core.clock import Clock
from refunddesk.core.ids import new_id
from refunddesk.db.uow import Database
from refunddesk.jobs import queue
from refunddesk.jobs.queue import ClaimedJob

log = logging.getLogger(__name__)

JOBS_SETTLED = Counter(
    "refunddesk_jobs_settled_total", "Jobs settled by outcome", ["kind", "outcome"]
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one job: done, try again later, or give up now."""

    kind: str  # "done" | "retry" | "fail"
    error: str | None = None

    @classmethod
    def done(cls) -> Outcome:
        return cls("done")

    @classmethod
    def retry(cls, error: str) -> Outcome:
        return cls("retry", error)

    @classmethod
    def fail(cls, error: str) -> Outcome:
        return cls("fail", error)


class Handler(Protocol):
    kind: str

    def __call__(self, jobs: Sequence[ClaimedJob]) -> dict[int, Outcome]: ...

    def on_dead(self, session: Session, job: ClaimedJob, error: str) -> None: ...


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    batch_size: int
    poll_seconds: float
    lease_seconds: float
    backoff_base_seconds: float
    backoff_max_seconds: float
    # Batches run at once by run(), each claimed, handled and settled on its own: while one
    # waits for its gateway calls, the next is claimed and prepared.
    batches_in_flight: int = 2


@dataclass(frozen=True, slots=True)
class Periodic:
    """A task the worker runs every interval_seconds between batches (e.g. expiring returns)."""

    interval_seconds: float
    run: Callable[[], object]
    name: str


class Worker:
    """Runs jobs until told to stop; any number may run against one PostgreSQL."""

    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        handlers: Sequence[Handler],
        config: WorkerConfig,
        name: str | None = None,
        periodic: Sequence[Periodic] = (),
    ) -> None:
        self.db = db
        self.clock = clock
        self.handlers = {h.kind: h for h in handlers}
        self.config = config
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{new_id()[-6:]}"
        self.periodic = tuple(periodic)
        self._due = [0.0] * len(self.periodic)  # monotonic times; 0: run at start

    def run_periodic(self) -> None:
        """Run the periodic tasks that are due; one that fails is logged and tried next time."""
        for index, task in enumerate(self.periodic):
            now = time.monotonic()
            if now < self._due[index]:
                continue
            self._due[index] = now + task.interval_seconds
            try:
                task.run()
            except Exception:  # a periodic task must never stop the worker
                log.exception("periodic task %s failed", task.name)

    def run_once(self) -> int:
        """Claim one batch and settle it; return how many jobs it held."""
        now = self.clock.now()
        with self.db.write() as session:
            jobs = queue.claim(
                session,
                worker=self.name,
                now=now,
                lease=timedelta(seconds=self.config.lease_seconds),
                limit=self.config.batch_size,
            )
        if not jobs:
            return 0
        by_kind: dict[str, list[ClaimedJob]] = defaultdict(list)
        for job in jobs:
            by_kind[job.kind].append(job)
        for kind, batch in by_kind.items():
            self._run_batch(kind, batch)
        return len(jobs)

    def _run_batch(self, kind: str, batch: list[ClaimedJob]) -> None:
        handler = self.handlers.get(kind)
        outcomes: dict[int, Outcome]
        if handler is None:
            outcomes = {j.id: Outcome.fail(f"no handler for job kind {kind!r}") for j in batch}
        else:
            try:
                outcomes = handler(batch)
            except Exception as exc:  # the whole batch failed: every job retries
                log.exception("job batch of kind %s failed", kind)
                outcomes = {j.id: Outcome.retry(f"{type(exc).__name__}: {exc}") for j in batch}
        self._settle(handler, batch, outcomes)

    def _settle(
        self, handler: Handler | None, batch: list[ClaimedJob], outcomes: dict[int, Outcome]
    ) -> None:
        now = self.clock.now()
        with self.db.write() as session:
            done = []
            for job in batch:
                outcome = outcomes.get(job.id, Outcome.retry("handler gave no outcome"))
                JOBS_SETTLED.labels(job.kind, outcome.kind).inc()
                if outcome.kind == "done":
                    done.append(job.id)
                elif outcome.kind == "retry" and job.attempts < job.max_attempts:
                    delay = queue.backoff(
                        job.attempts,
                        base=self.config.backoff_base_seconds,
                        cap=self.config.backoff_max_seconds,
                    )
                    queue.retry_later(
                        session,
                        job.id,
                        error=outcome.error or "",
                        now=now,
                        delay_seconds=delay,
                        worker=self.name,
                    )
                else:
                    error = outcome.error or "failed"
                    # A lease that ran out means another worker owns the job now: leave it.
                    if not queue.bury(session, job.id, error=error, now=now, worker=self.name):
                        continue
                    log.warning(
                        "job %s (%s) is dead after %s attempts: %s",
                        job.id,
                        job.kind,
                        job.attempts,
                        error,
                    )
                    if handler is not None:
                        handler.on_dead(session, job, error)
            queue.complete(session, done, worker=self.name)

    def run(self, stop: threading.Event) -> None:
        """Loop until stop is set, with batches_in_flight batches under way at a time."""
        log.info("worker %s started", self.name)
        others = [
            threading.Thread(target=self._loop, args=(stop, False), name=f"worker-batch-{n}")
            for n in range(1, max(1, self.config.batches_in_flight))
        ]
        for thread in others:
            thread.start()
        try:
            self._loop(stop, True)
        finally:
            stop.set()  # the other loops end with this one, even if it raised
            for thread in others:
                thread.join()
        log.info("worker %s stopped", self.name)

    def _loop(self, stop: threading.Event, periodic: bool) -> None:
        """Claim and settle batches until stop is set; back off to poll_seconds when idle."""
        while not stop.is_set():
            if periodic:
                self.run_periodic()
            try:
                handled = self.run_once()
            except Exception:  # a database hiccup must not kill the worker
                log.exception("worker loop error")
                handled = 0
            if handled == 0:
                stop.wait(self.config.poll_seconds)

    def drain(self, max_rounds: int = 1_000_000) -> int:
        """Run until no job is due (tests, demo loading); return how many jobs ran."""
        total = 0
        for _ in range(max_rounds):
            handled = self.run_once()
            if handled == 0:
                break
            total += handled
        return total
