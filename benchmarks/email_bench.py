"""Email throughput: customer emails through the job queue to a local SMTP server, and direct.

A sink SMTP server (aiosmtpd, its own process on 127.0.0.1) accepts every message. The
messages are the real ones: N refunds are taken in, the dispatcher renders their
"approved" emails (HTML + text, from the shipped templates) and queues a send job each,
held back until the clock starts. Two phases on one SQLite database (synchronous NORMAL):

- queue: a worker (in this process, batches_in_flight as shipped) sends them all: claim,
  load, build MIME, SMTP (one session per batch), record each attempt, settle;
- direct: the same emails through the same SmtpSender, in batches of the worker's size on
  as many threads as the worker runs batches, with no database: the queue's overhead is
  the difference.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from sqlalchemy import func, select, update

from benchmarks.payouts import _cpu_seconds, approved_refunds
from benchmarks.results import PhaseRow, at_least
from benchmarks.servers import ROOT, free_port
from refunddesk.bootstrap import bootstrap
from refunddesk.db.migrate import upgrade
from refunddesk.jobs.orm import Job
from refunddesk.notifications import dispatch
from refunddesk.notifications.channels.base import OutgoingEmail, Sent
from refunddesk.notifications.channels.smtp import SmtpSender
from refunddesk.notifications.orm import Message
from refunddesk.settings import Settings

TARGET = 500.0  # emails/s on 2 cores (issue 5)
HELD_BACK = datetime(2100, 1, 1, tzinfo=UTC)
REFUNDS_PER_WRITE = 500


@dataclass(frozen=True, slots=True)
class EmailBenchConfig:
    emails: int
    max_seconds: float


def _sink(port: int) -> None:
    """Accept every message and forget it (run as its own process)."""
    from aiosmtpd.controller import Controller

    class Sink:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            return "250 OK"

    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    threading.Event().wait()


def _wait_up(port: int) -> None:
    import smtplib

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=1) as smtp:
                smtp.noop()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the SMTP sink did not start")


class _Cpu:
    """CPU from now on of this process (the sender) and of the SMTP sink."""

    def __init__(self, sink_pid: int) -> None:
        self.pid = sink_pid
        self.sender = time.process_time()
        self.sink = _cpu_seconds(sink_pid)
        self.load = os.getloadavg()[0]

    def per_item(self, items: int) -> dict[str, object]:
        per = max(items, 1)
        return {
            "sender_cpu_ms_per_email": round((time.process_time() - self.sender) * 1000 / per, 3),
            "smtp_server_cpu_ms_per_email": round(
                (_cpu_seconds(self.pid) - self.sink) * 1000 / per, 3
            ),
            "load_average_1m": [round(self.load, 2), round(os.getloadavg()[0], 2)],
        }


def _fill(settings: Settings, emails: int) -> None:
    """`emails` approved refunds whose "approved" emails are rendered and queued, held back."""
    container = bootstrap(settings)
    try:
        clock = container.clock
        approved_refunds(container, emails, name="Email Bench")
        with container.db.write() as session:
            session.execute(update(Job).values(run_at=HELD_BACK))  # payouts stay held back
        config = dispatch.DispatchConfig(
            email_on=True,
            sms_on=False,
            public_url="http://127.0.0.1:8000",
            max_attempts=settings.job_max_attempts,
            batch_size=settings.dispatch_batch_size,
        )
        while dispatch.run(db=container.db, clock=clock, config=config):
            pass
        with container.db.write() as session:
            session.execute(
                update(Job).where(Job.kind == dispatch.SEND_JOB).values(run_at=HELD_BACK)
            )
    finally:
        container.close()


def run(work: Path, cfg: EmailBenchConfig, console: Console) -> list[PhaseRow]:
    work.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{work / 'email.db'}"
    upgrade(url)
    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.email_bench", "--sink", str(port)], cwd=ROOT
    )
    settings = Settings(
        database_url=url,
        sqlite_synchronous="NORMAL",
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_starttls=False,
        worker_poll_seconds=0.05,
        fraud_scoring=False,  # ten refunds per order are here to be told, not judged
    )
    rows: list[PhaseRow] = []
    try:
        _wait_up(port)
        console.print(f"  email: taking in {cfg.emails:,} refunds and rendering their emails")
        _fill(settings, cfg.emails)
        container = bootstrap(settings)
        try:
            with container.db.read() as session:
                queued = int(
                    session.scalar(
                        select(func.count())
                        .select_from(Message)
                        .where(Message.channel == dispatch.EMAIL, Message.status == "queued")
                    )
                    or 0
                )

            def left() -> int:
                with container.db.read() as session:
                    return int(
                        session.scalar(
                            select(func.count())
                            .select_from(Job)
                            .where(Job.kind == dispatch.SEND_JOB)
                        )
                        or 0
                    )

            stop = threading.Event()
            # Only the sending: the dispatcher and other periodic tasks have nothing to do.
            container.periodic.clear()
            worker = container.worker("bench")
            thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
            with container.db.write() as session:
                session.execute(
                    update(Job)
                    .where(Job.kind == dispatch.SEND_JOB)
                    .values(run_at=container.clock.now())
                )
            cpu = _Cpu(sink.pid)
            started = time.perf_counter()
            thread.start()
            remaining = queued
            while remaining and time.perf_counter() - started < cfg.max_seconds:
                time.sleep(0.05)
                remaining = left()
            seconds = time.perf_counter() - started
            notes = cpu.per_item(queued - remaining)
            stop.set()
            thread.join(timeout=30)
            with container.db.read() as session:
                sent = int(
                    session.scalar(
                        select(func.count())
                        .select_from(Message)
                        .where(Message.channel == dispatch.EMAIL, Message.status == "sent")
                    )
                    or 0
                )
                outgoing = [
                    dispatch_email(m, "Email Bench")
                    for m in session.scalars(
                        select(Message).where(Message.channel == dispatch.EMAIL)
                    )
                ]
            rows.append(
                PhaseRow(
                    "email",
                    "through the queue",
                    sent,
                    seconds,
                    targets=[at_least("emails/s", sent / seconds, TARGET)],
                    notes={"queued": queued, "unsent": remaining, **notes},
                )
            )
            console.print(f"  email queue: {rows[-1].per_second:,.0f} emails/s")

            sender = SmtpSender(
                host="127.0.0.1",
                port=port,
                sender="bench@example.com",
                starttls=False,
                connections=container.settings.smtp_connections,
            )
            size = container.settings.worker_batch_size
            batches = [outgoing[i : i + size] for i in range(0, len(outgoing), size)]
            cpu = _Cpu(sink.pid)
            started = time.perf_counter()
            with ThreadPoolExecutor(container.settings.worker_batches_in_flight) as pool:
                results = [r for batch in pool.map(sender.send, batches) for r in batch]
            seconds = time.perf_counter() - started
            ok = sum(1 for r in results if isinstance(r, Sent))
            rows.append(
                PhaseRow(
                    "email",
                    "direct (MIME + SMTP, no queue)",
                    ok,
                    seconds,
                    notes={"failed": len(results) - ok, **cpu.per_item(ok)},
                )
            )
            console.print(f"  email direct: {rows[-1].per_second:,.0f} emails/s")
        finally:
            container.close()
    finally:
        sink.terminate()
        sink.wait(timeout=10)
    return rows


def dispatch_email(message: Message, retailer: str) -> OutgoingEmail:
    """The OutgoingEmail the send handler would build for this stored message."""
    return OutgoingEmail(
        message_id=message.id,
        to=message.recipient or "",
        subject=message.subject or "",
        text=message.body_text or "",
        html=message.body_html or "",
        sender_name=retailer,
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--sink":
        _sink(int(sys.argv[2]))
    else:
        raise SystemExit("run it as: python -m benchmarks --only email")
