"""The durable job queue: transactional enqueue, leases, retries, dead jobs."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from refunddesk.bootstrap import Container
from refunddesk.core.clock import FrozenClock
from refunddesk.core.errors import Conflict
from refunddesk.jobs import queue
from refunddesk.jobs.queue import ClaimedJob
from refunddesk.jobs.worker import Outcome, Worker, WorkerConfig
from tests.integration.support import jobs

LEASE = timedelta(seconds=60)


class Boom(Exception):
    pass


class FakeHandler:
    """A handler that answers every job with the outcome it is told and remembers calls."""

    kind = "fake"

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.seen: list[ClaimedJob] = []
        self.dead: list[tuple[int, str]] = []

    def __call__(self, batch: Sequence[ClaimedJob]) -> dict[int, Outcome]:
        self.seen.extend(batch)
        return {job.id: self.outcome for job in batch}

    def on_dead(self, session: Session, job: ClaimedJob, error: str) -> None:
        self.dead.append((job.id, error))


def _worker(container: Container, handler: FakeHandler, name: str = "w1") -> Worker:
    return Worker(
        db=container.db,
        clock=container.clock,
        handlers=[handler],
        name=name,
        config=WorkerConfig(
            batch_size=10,
            poll_seconds=0.01,
            lease_seconds=LEASE.total_seconds(),
            backoff_base_seconds=10.0,
            backoff_max_seconds=100.0,
        ),
    )


def _enqueue(
    container: Container, n: int = 1, *, max_attempts: int = 3, kind: str = "fake"
) -> None:
    with container.db.write() as session:
        for i in range(n):
            queue.enqueue(
                session,
                kind=kind,
                payload={"n": i},
                now=container.clock.now(),
                max_attempts=max_attempts,
            )


def _claim(container: Container, worker: str, limit: int = 10) -> list[ClaimedJob]:
    with container.db.write() as session:
        return queue.claim(
            session, worker=worker, now=container.clock.now(), lease=LEASE, limit=limit
        )


def test_a_job_enqueued_in_a_transaction_that_rolls_back_does_not_exist(
    container: Container,
) -> None:
    def enqueue_then_fail() -> None:
        with container.db.write() as session:
            queue.enqueue(
                session, kind="fake", payload={}, now=container.clock.now(), max_attempts=3
            )
            session.flush()
            raise Boom

    with pytest.raises(Boom):
        enqueue_then_fail()
    assert jobs(container) == []
    assert _claim(container, "w1") == []


def test_a_job_enqueued_in_a_committed_transaction_is_claimable(container: Container) -> None:
    _enqueue(container)
    [claimed] = _claim(container, "w1")
    assert (claimed.kind, claimed.payload, claimed.attempts, claimed.max_attempts) == (
        "fake",
        {"n": 0},
        1,
        3,
    )


def test_claiming_leases_the_jobs_to_the_worker(container: Container, clock: FrozenClock) -> None:
    _enqueue(container, 3)
    claimed = _claim(container, "w1", limit=2)
    assert len(claimed) == 2
    leased = [j for j in jobs(container) if j.status == "running"]
    assert {j.id for j in leased} == {c.id for c in claimed}
    assert all(j.locked_by == "w1" for j in leased)
    assert all(j.locked_until == clock.now() + LEASE for j in leased)
    assert all(j.attempts == 1 for j in leased)


def test_a_second_worker_cannot_claim_leased_jobs(container: Container) -> None:
    _enqueue(container, 2)
    first = _claim(container, "w1")
    assert len(first) == 2
    assert _claim(container, "w2") == []


def test_a_job_not_yet_due_is_not_claimed(container: Container, clock: FrozenClock) -> None:
    with container.db.write() as session:
        queue.enqueue(
            session,
            kind="fake",
            payload={},
            now=clock.now(),
            max_attempts=3,
            delay=timedelta(minutes=5),
        )
    assert _claim(container, "w1") == []
    clock.advance(timedelta(minutes=5))
    assert len(_claim(container, "w1")) == 1


def test_an_expired_lease_lets_another_worker_take_the_job_over(
    container: Container, clock: FrozenClock
) -> None:
    # given a job leased by w1, which then dies
    _enqueue(container)
    [first] = _claim(container, "w1")
    # when the lease has not yet run out, nobody else may take it
    clock.advance(LEASE)
    assert _claim(container, "w2") == []
    # and once it has, w2 takes it over as a new attempt
    clock.advance(timedelta(seconds=1))
    [taken] = _claim(container, "w2")
    assert (taken.id, taken.attempts) == (first.id, 2)
    [job] = jobs(container)
    assert job.locked_by == "w2"
    # the worker that lost its lease can no longer complete the job
    with container.db.write() as session:
        queue.complete(session, [first.id], worker="w1")
    assert len(jobs(container)) == 1
    with container.db.write() as session:
        queue.complete(session, [taken.id], worker="w2")
    assert jobs(container) == []


class TakenOverMidway(FakeHandler):
    """A handler so slow that its lease runs out and worker w2 takes the jobs over meanwhile."""

    def __init__(self, outcome: Outcome, container: Container, clock: FrozenClock) -> None:
        super().__init__(outcome)
        self.container, self.clock = container, clock

    def __call__(self, batch: Sequence[ClaimedJob]) -> dict[int, Outcome]:
        self.clock.advance(LEASE + timedelta(seconds=1))
        assert len(_claim(self.container, "w2")) == len(batch)
        return super().__call__(batch)


@pytest.mark.parametrize(
    "outcome",
    [Outcome.retry("timeout"), Outcome.fail("gave up"), Outcome.done()],
    ids=["retry", "fail", "done"],
)
def test_a_worker_that_lost_its_lease_leaves_the_job_to_the_worker_that_took_it_over(
    container: Container, clock: FrozenClock, outcome: Outcome
) -> None:
    # given w1 whose lease ran out while it worked, and w2 that took the job over
    _enqueue(container, max_attempts=1)
    handler = TakenOverMidway(outcome, container, clock)
    # when w1 settles the job it no longer holds
    _worker(container, handler, "w1").run_once()
    # then the job is still w2's to settle, and no dead-job side effect ran
    [job] = jobs(container)
    assert (job.status, job.locked_by, job.attempts) == ("running", "w2", 2)
    assert handler.dead == []
    with container.db.write() as session:
        queue.complete(session, [job.id], worker="w2")
    assert jobs(container) == []


def test_a_done_job_leaves_the_queue(container: Container) -> None:
    _enqueue(container, 3)
    handler = FakeHandler(Outcome.done())
    assert _worker(container, handler).drain() == 3
    assert jobs(container) == []
    assert len(handler.seen) == 3


def test_a_job_to_retry_waits_a_backoff_delay_in_the_future(
    container: Container, clock: FrozenClock
) -> None:
    _enqueue(container)
    handler = FakeHandler(Outcome.retry("gateway timeout"))
    assert _worker(container, handler).run_once() == 1
    [job] = jobs(container)
    assert (job.status, job.attempts, job.last_error, job.locked_by) == (
        "queued",
        1,
        "gateway timeout",
        None,
    )
    # first retry: between base/2 and base seconds later (equal jitter)
    assert clock.now() + timedelta(seconds=5) <= job.run_at <= clock.now() + timedelta(seconds=10)
    assert _worker(container, handler).run_once() == 0  # not due yet
    clock.advance(timedelta(seconds=10))
    assert _worker(container, handler).run_once() == 1


def test_a_job_that_keeps_failing_is_dead_after_max_attempts_with_its_last_error(
    container: Container, clock: FrozenClock
) -> None:
    _enqueue(container, max_attempts=3)
    handler = FakeHandler(Outcome.retry("still down"))
    worker = _worker(container, handler)
    for _ in range(5):
        worker.run_once()
        clock.advance(timedelta(seconds=200))
    [job] = jobs(container)
    assert (job.status, job.attempts, job.last_error) == ("dead", 3, "still down")
    assert len(handler.seen) == 3
    assert handler.dead == [(job.id, "still down")]
    with container.db.read() as session:
        assert queue.stats(session).dead == 1


def test_a_job_that_fails_outright_is_dead_at_once(container: Container) -> None:
    _enqueue(container, max_attempts=5)
    handler = FakeHandler(Outcome.fail("refund not found"))
    _worker(container, handler).run_once()
    [job] = jobs(container)
    assert (job.status, job.attempts, job.last_error) == ("dead", 1, "refund not found")


def test_a_job_of_an_unknown_kind_is_dead_with_the_reason(container: Container) -> None:
    _enqueue(container, kind="nobody-handles-this")
    _worker(container, FakeHandler(Outcome.done())).run_once()
    [job] = jobs(container)
    assert job.status == "dead"
    assert "no handler for job kind 'nobody-handles-this'" in (job.last_error or "")


def test_a_handler_that_raises_retries_the_whole_batch(
    container: Container, clock: FrozenClock
) -> None:
    class Raising(FakeHandler):
        def __call__(self, batch: Sequence[ClaimedJob]) -> dict[int, Outcome]:
            raise RuntimeError("database hiccup")

    _enqueue(container, 2)
    _worker(container, Raising(Outcome.done())).run_once()
    assert [(j.status, j.last_error) for j in jobs(container)] == [
        ("queued", "RuntimeError: database hiccup"),
        ("queued", "RuntimeError: database hiccup"),
    ]


def test_rerun_puts_a_dead_job_back_with_fresh_attempts(
    container: Container, clock: FrozenClock
) -> None:
    _enqueue(container, max_attempts=1)
    _worker(container, FakeHandler(Outcome.retry("down"))).run_once()
    [dead] = jobs(container)
    assert dead.status == "dead"
    clock.advance(timedelta(hours=1))
    with container.db.write() as session:
        queue.rerun(session, dead.id, now=clock.now())
    [job] = jobs(container)
    assert (job.status, job.attempts, job.run_at) == ("queued", 0, clock.now())
    handler = FakeHandler(Outcome.done())
    assert _worker(container, handler).drain() == 1
    assert jobs(container) == []


def test_only_a_dead_job_can_be_rerun(container: Container) -> None:
    _enqueue(container)
    [job] = jobs(container)
    with pytest.raises(Conflict), container.db.write() as session:
        queue.rerun(session, job.id, now=container.clock.now())


def test_workers_claiming_at_the_same_time_never_get_the_same_job(
    container: Container,
) -> None:
    # given 120 due jobs and four workers starting at the same instant
    _enqueue(container, 120)
    barrier = threading.Barrier(4)

    def work(name: str) -> list[int]:
        barrier.wait(timeout=10)
        mine: list[int] = []
        while batch := _claim(container, name, limit=7):
            mine.extend(j.id for j in batch)
        return mine

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(work, ["w1", "w2", "w3", "w4"]))
    # then every job went to exactly one worker
    claimed = [job_id for result in results for job_id in result]
    assert len(claimed) == len(set(claimed)) == 120
    by_worker = {j.id: j.locked_by for j in jobs(container)}
    for name, result in zip(["w1", "w2", "w3", "w4"], results, strict=True):
        assert all(by_worker[job_id] == name for job_id in result)
