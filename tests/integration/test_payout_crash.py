"""Exactly once, proven the hard way: SIGKILL the worker again and again mid-payout.

A real worker process pays refunds through a tenant's PayPal account (the fake PayPal on
loopback, which records every call and every refund it makes). The test kills the worker
with SIGKILL as soon as it has made a random number of gateway calls (so the kill lands
while payouts are in flight, between "recorded as sent" and "answer recorded"), starts a
new one, and repeats. At the end every refund must be paid exactly once and none stuck.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from refunddesk.bootstrap import Container, bootstrap
from refunddesk.core.clock import SystemClock
from refunddesk.payouts.accounts import set_account
from refunddesk.payouts.fakes.paypal import FakePayPal, serve
from refunddesk.payouts.orm import Payout
from refunddesk.refunds.orm import Refund
from tests.conftest import make_settings
from tests.factories import Factory
from tests.integration.support import request

pytestmark = pytest.mark.slow

REFUNDS = 150
KILLS = 6
SEED = 20261122


@pytest.fixture
def paypal() -> Iterator[tuple[str, FakePayPal]]:
    # Each refund call takes 30 ms at the gateway, so a batch spends most of its time there.
    with serve(FakePayPal(latency_ms=30)) as served:
        yield served


@pytest.fixture
def real_time_container(database_url: str) -> Iterator[Container]:
    c = bootstrap(make_settings(database_url), clock=SystemClock())
    yield c
    c.close()


def _worker(database_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "REFUNDDESK_DATABASE_URL": database_url,
        "REFUNDDESK_SQLITE_SYNCHRONOUS": "NORMAL",
        "REFUNDDESK_WORKER_BATCH_SIZE": "8",
        "REFUNDDESK_WORKER_CONCURRENCY": "4",
        "REFUNDDESK_WORKER_POLL_SECONDS": "0.05",
        "REFUNDDESK_WORKER_LEASE_SECONDS": "1.5",  # a killed worker's jobs come back soon
        "REFUNDDESK_JOB_BACKOFF_BASE_SECONDS": "0.05",
        "REFUNDDESK_JOB_BACKOFF_MAX_SECONDS": "0.2",
        "REFUNDDESK_JOB_MAX_ATTEMPTS": "1000",
        "REFUNDDESK_LOG_LEVEL": "WARNING",
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", "from refunddesk.cli import main; main()", "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _refund_calls(fake: FakePayPal) -> list[str | None]:
    with fake.lock:
        return [c.request_id for c in fake.calls if c.method == "POST" and "/refund" in c.path]


def _open_refunds(container: Container, tenant_id: str) -> int:
    with container.db.read() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(Refund)
                .where(Refund.tenant_id == tenant_id, Refund.status != "succeeded")
            )
            or 0
        )


def test_killing_the_worker_mid_payout_never_pays_twice_and_leaves_nothing_stuck(
    database_url: str,
    real_time_container: Container,
    paypal: tuple[str, FakePayPal],
    tmp_path: Path,
) -> None:
    container = real_time_container
    url, fake = paypal
    factory = Factory(container)
    rng = random.Random(SEED)
    # given a tenant paying refunds through its PayPal account, and many approved refunds
    tenant = factory.tenant()
    with container.db.write() as session:
        set_account(
            session,
            tenant_id=tenant.id,
            name="paypal",
            provider="paypal",
            config={
                "client_id": fake.client_id,
                "client_secret": fake.client_secret,
                "webhook_id": fake.webhook_id,
                "api_base": url,
                "timeout_seconds": 5,
            },
            methods=["wallet"],
            now=container.clock.now(),
        )
    refund_ids = []
    for n in range(REFUNDS):
        capture = f"CAP{n:05d}"
        fake.add_capture(capture, "32.90", "EUR")
        order = factory.order(
            tenant.id,
            external_id=f"crash-{n}",
            payment={"method": "wallet", "gateway": "paypal", "reference": capture},
        )
        made, _ = request(container, tenant.id, order_id=order, amount_minor=700)
        assert made.status == "approved"
        refund_ids.append(made.id)

    # when worker after worker is SIGKILLed while its payouts are at the gateway
    log = tmp_path / "worker.log"
    kills = 0
    deadline = time.monotonic() + 240
    while kills < KILLS and _open_refunds(container, tenant.id):
        worker = _worker(database_url, log)
        before = len(_refund_calls(fake))
        wanted = rng.randint(1, 30)
        while len(_refund_calls(fake)) - before < wanted and worker.poll() is None:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.002)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        kills += 1
    # and a last worker is left to finish
    worker = _worker(database_url, log)
    try:
        while _open_refunds(container, tenant.id):
            assert time.monotonic() < deadline, log.read_text()
            assert worker.poll() is None, log.read_text()
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)

    # then every refund succeeded, and PayPal made exactly one refund per captured payment
    assert kills == KILLS
    with container.db.read() as session:
        statuses = collections.Counter(
            session.scalars(select(Refund.status).where(Refund.tenant_id == tenant.id))
        )
        unsettled = session.scalar(
            select(func.count())
            .select_from(Payout)
            .where(Payout.tenant_id == tenant.id, Payout.status.in_(["sent", "pending"]))
        )
    assert statuses == {"succeeded": REFUNDS}
    assert unsettled == 0
    with fake.lock:
        per_capture = collections.Counter(r.capture_id for r in fake.refunds.values())
        completed = [r for r in fake.refunds.values() if r.status == "COMPLETED"]
    assert len(completed) == REFUNDS
    assert set(per_capture.values()) == {1}
    assert len(per_capture) == REFUNDS
    # and the kills really landed mid-payout: some payouts were sent again after a crash
    # (the same PayPal-Request-Id twice), and PayPal answered them without paying again
    sent = collections.Counter(_refund_calls(fake))
    assert any(count > 1 for count in sent.values()), "no kill landed between send and record"
