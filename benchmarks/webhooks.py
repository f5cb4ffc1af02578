"""Webhook throughput: signed deliveries through the job queue to a local receiver, and direct.

A trivial receiver (Starlette under uvicorn, its own process on 127.0.0.1) answers 204.
Three phases on one SQLite database (synchronous NORMAL):

- fan-out: enqueue_deliveries for N events to one endpoint (rows and jobs, in batches of
  1,000 events per transaction, as the dispatcher would);
- queue: a worker (in this process, batches_in_flight as shipped) sends them all: claim,
  sign, POST, record each attempt, settle; the clock runs until no delivery job is left;
- direct: the same number of signed POSTs through the sender's own HTTP client and thread
  pool, with no database: the queue's overhead is the difference.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
from rich.console import Console
from sqlalchemy import func, select

from benchmarks.payouts import _cpu_seconds
from benchmarks.results import PhaseRow, at_least
from benchmarks.servers import ROOT, free_port
from refunddesk.bootstrap import bootstrap
from refunddesk.db.migrate import upgrade
from refunddesk.jobs.orm import Job
from refunddesk.notifications.events import DispatchEvent
from refunddesk.settings import Settings
from refunddesk.tenants.service import create_tenant
from refunddesk.webhooks_out import service
from refunddesk.webhooks_out.fanout import DELIVERY_JOB, enqueue_deliveries
from refunddesk.webhooks_out.sender import DeliveryHandler, Request, encode

TARGET = 1000.0  # webhooks/s on 2 cores (issue 5)
EVENTS_PER_WRITE = 1000


@dataclass(frozen=True, slots=True)
class WebhookBenchConfig:
    deliveries: int
    max_seconds: float


def _receiver_app() -> object:
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def hook(request: object) -> Response:
        return Response(status_code=204)

    return Starlette(routes=[Route("/hooks", hook, methods=["POST"])])


def _serve(port: int) -> None:
    import uvicorn

    uvicorn.run(
        "benchmarks.webhooks:_receiver_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )


def _wait_up(url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.post(url, content=b"{}", timeout=1, trust_env=False)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the webhook receiver did not start")


class _Cpu:
    """CPU spent from now on by this process (the sender) and by the receiver process.

    On a busy machine throughput falls, but CPU per webhook does not: the two together say
    what two idle cores would do.
    """

    def __init__(self, receiver_pid: int) -> None:
        self.pid = receiver_pid
        self.sender = time.process_time()
        self.receiver = _cpu_seconds(receiver_pid)
        self.load = os.getloadavg()[0]

    def per_item(self, items: int) -> dict[str, object]:
        sender = time.process_time() - self.sender
        receiver = _cpu_seconds(self.pid) - self.receiver
        per = max(items, 1)
        return {
            "sender_cpu_ms_per_webhook": round(sender * 1000 / per, 3),
            "receiver_cpu_ms_per_webhook": round(receiver * 1000 / per, 3),
            "load_average_1m": [round(self.load, 2), round(os.getloadavg()[0], 2)],
        }


def _event(tenant_id: str, n: int, at: datetime) -> DispatchEvent:
    return DispatchEvent(
        tenant_id=tenant_id,
        event_id=f"bench-{n:08d}",
        refund_id=f"R{n:025d}",
        seq=1,
        type="refund.status_changed",
        from_status="approved",
        to_status="succeeded",
        at=at,
        data={"method": "card"},
        refund_reference=f"RF-{n:08d}",
        amount_minor=1234,
        currency="EUR",
        order_external_id=f"ORD-{n}",
        customer_email="bench@example.com",
        customer_name="Bench",
        customer_phone=None,
    )


def run(work: Path, cfg: WebhookBenchConfig, console: Console) -> list[PhaseRow]:
    work.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{work / 'webhooks.db'}"
    upgrade(url)
    port = free_port()
    receiver = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.webhooks", "--receiver", str(port)], cwd=ROOT
    )
    container = bootstrap(
        Settings(
            database_url=url,
            sqlite_synchronous="NORMAL",
            webhook_allow_private_urls=True,
            worker_poll_seconds=0.05,
        )
    )
    rows: list[PhaseRow] = []
    try:
        hook_url = f"http://127.0.0.1:{port}/hooks"
        _wait_up(hook_url)
        clock = container.clock
        with container.db.write() as session:
            tenant, _ = create_tenant(session, clock=clock, name="Bench", currency="EUR")
            endpoint = service.create_endpoint(
                session, clock=clock, tenant_id=tenant.id, url=hook_url, allow_private=True
            )
            tenant_id, secret = tenant.id, endpoint.secret
        n = cfg.deliveries

        started = time.perf_counter()
        now = clock.now()
        for first in range(0, n, EVENTS_PER_WRITE):
            events = [
                _event(tenant_id, i, now) for i in range(first, min(n, first + EVENTS_PER_WRITE))
            ]
            with container.db.write() as session:
                enqueue_deliveries(session, events=events, now=now, max_attempts=8)
        rows.append(PhaseRow("webhooks", "fan-out (rows + jobs)", n, time.perf_counter() - started))
        console.print(f"  fan-out: {rows[-1].per_second:,.0f} deliveries/s")

        def left() -> int:
            with container.db.read() as session:
                return int(
                    session.scalar(
                        select(func.count()).select_from(Job).where(Job.kind == DELIVERY_JOB)
                    )
                    or 0
                )

        stop = threading.Event()
        worker = container.worker("bench")
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        cpu = _Cpu(receiver.pid)
        started = time.perf_counter()
        thread.start()
        remaining = n
        while remaining and time.perf_counter() - started < cfg.max_seconds:
            time.sleep(0.1)
            remaining = left()
        seconds = time.perf_counter() - started
        stop.set()
        thread.join(timeout=30)
        sent = n - remaining
        rows.append(
            PhaseRow(
                "webhooks",
                "through the queue",
                sent,
                seconds,
                targets=[at_least("webhooks/s", sent / seconds, TARGET)],
                notes={"unsent": remaining, **cpu.per_item(sent)},
            )
        )
        console.print(f"  queue: {rows[-1].per_second:,.0f} webhooks/s")

        sender = next(h for h in container.handlers if isinstance(h, DeliveryHandler))
        body = encode({"type": "refund.status_changed", "data": {"n": 1}})
        requests = [
            Request(0, tenant_id, f"d{i}", "e", hook_url, f"direct-{i}", body, (secret,))
            for i in range(n)
        ]
        cpu = _Cpu(receiver.pid)
        started = time.perf_counter()
        results = list(sender._pool.map(sender.send, requests))
        seconds = time.perf_counter() - started
        ok = sum(r.ok for r in results)
        rows.append(
            PhaseRow(
                "webhooks",
                "direct (sign + POST, no queue)",
                ok,
                seconds,
                notes={"failed": n - ok, **cpu.per_item(ok)},
            )
        )
        console.print(f"  direct: {rows[-1].per_second:,.0f} webhooks/s")
    finally:
        container.close()
        receiver.terminate()
        receiver.wait(timeout=10)
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--receiver":
        _serve(int(sys.argv[2]))
    else:
        raise SystemExit("run it as: python -m benchmarks --only webhooks")
