"""Payout throughput: approved refunds paid through the sandbox by `refunddesk worker` processes.

Each scenario starts from a database holding N approved refunds whose payout jobs are queued
but held back (run_at in 2100). The worker processes start, and once they are up
and idle the jobs are released all at once; the clock runs from the release until no payout
job is left. CPU time is that of the worker processes over the same span (read from /proc),
so a busy machine shows as lower payouts/s but not as more CPU per payout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from sqlalchemy import create_engine, func, select, text, update
from sqlalchemy.engine import Engine, make_url

from benchmarks.http_bench import ORDER_PREFIX, order_payloads
from benchmarks.results import PhaseRow, Target, at_least
from benchmarks.servers import BIN, refunddesk_env
from refunddesk.bootstrap import Container, bootstrap
from refunddesk.db.migrate import upgrade
from refunddesk.escalation.scan import scan
from refunddesk.jobs.orm import Job
from refunddesk.orders.schemas import OrderCreate
from refunddesk.orders.service import create_orders
from refunddesk.payouts.orm import Payout
from refunddesk.refunds.orm import Refund, RefundEvent
from refunddesk.refunds.schemas import RefundCreate
from refunddesk.refunds.service import request_refund
from refunddesk.settings import Settings
from refunddesk.tenants.service import create_tenant

PG_ENVS = ("REFUNDDESK_BENCH_DATABASE_URL", "REFUNDDESK_TEST_DATABASE_URL")
TARGET_0MS = 1000.0  # payouts/s per worker process, sandbox answering at once
TARGET_200MS = 300.0  # payouts/s per worker process, sandbox answering after 200 ms
HELD_BACK = datetime(2100, 1, 1, tzinfo=UTC)
REFUNDS_PER_WRITE = 500
# An idle worker looks again after poll_seconds (0.5 s shipped); the release would otherwise
# wait up to that long for it. It changes nothing once the worker is busy.
POLL_SECONDS = "0.05"
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class PayoutBenchConfig:
    refunds: int  # per scenario with an instant gateway
    slow_refunds: int  # per scenario with 200 ms latency
    max_seconds: float  # a scenario stops here (the row then says so)
    pg_url: str | None  # a PostgreSQL server to make scratch databases on


def pg_base_url() -> str | None:
    return next((os.environ[k] for k in PG_ENVS if os.environ.get(k)), None)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    database: str  # "sqlite" | "postgresql"
    workers: int
    latency_ms: int
    refunds: int
    target: float | None  # payouts/s per worker process


def approved_refunds(container: Container, refunds: int, *, name: str) -> str:
    """A new tenant with `refunds` approved refunds (ten per order) taken in; its id."""
    clock = container.clock
    with container.db.write() as session:
        tenant, _key = create_tenant(
            session, clock=clock, name=name, currency="EUR", timezone="Europe/Berlin"
        )
        tenant_id = tenant.id
    orders = max(100, refunds // 10)
    now = datetime.now(UTC)
    for start in range(1, orders + 1, 1000):
        batch = [
            OrderCreate.model_validate(o)
            for o in order_payloads(start, min(1000, orders + 1 - start), now)
        ]
        with container.db.write() as session:
            create_orders(session, clock=clock, tenant_id=tenant_id, orders=batch)
    for start in range(0, refunds, REFUNDS_PER_WRITE):
        with container.db.write() as session:
            for i in range(start, min(refunds, start + REFUNDS_PER_WRITE)):
                data = RefundCreate.model_validate(
                    {
                        "order_id": f"{ORDER_PREFIX}{i % orders + 1}",
                        "amount_minor": 100 + i % 900,
                        "reason": "damaged",
                    }
                )
                refund, _ = request_refund(
                    session,
                    clock=clock,
                    config=container.intake,
                    tenant_id=tenant_id,
                    data=data,
                    actor="bench",
                    idempotency_key=f"bench-{i}",
                )
                assert refund.status == "approved", refund.status
    return tenant_id


def _fill(url: str, refunds: int) -> None:
    """N approved refunds with their payout jobs queued but held back, as intake leaves them."""
    upgrade(url)
    # Fraud scoring off: these refunds (ten per order) are here to be paid, not judged; the
    # intake benchmarks measure scoring.
    container = bootstrap(
        Settings(database_url=url, sqlite_synchronous="NORMAL", fraud_scoring=False)
    )
    try:
        approved_refunds(container, refunds, name="Payouts")
        # New refunds are due one look from the escalation scan (value, VIP, risk rules);
        # a worker running beside intake has taken it by the time their payouts run.
        scan(db=container.db, clock=container.clock, public_url=container.settings.public_url)
        with container.db.write() as session:
            session.execute(update(Job).values(run_at=HELD_BACK))
            # Intake's events were told when intake ran; the workers dispatch only the events
            # the payouts themselves make (the dispatcher runs in every worker, as shipped).
            session.execute(update(RefundEvent).values(dispatched=True))
        # Planner statistics, as a database in service has them (PostgreSQL's autovacuum, the
        # worker's periodic ANALYZE on SQLite). A bulk-filled database has none yet, and
        # without them PostgreSQL reads a tenant's every event to find a batch of 500.
        container.db.refresh_statistics(postgresql=True)
    finally:
        container.close()


@contextmanager
def _pg_database(base: str, name: str, template: str | None = None) -> Iterator[str]:
    """A scratch PostgreSQL database, dropped at the end (as the tests make theirs)."""
    url = make_url(base)
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    suffix = f' TEMPLATE "{template}"' if template else ""
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"{suffix}'))
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its threads so far."""
    return _stat_cpu(Path(f"/proc/{pid}/stat").read_text())


def _stat_cpu(stat: str) -> float:
    """User + system CPU seconds from the text of a /proc/<pid>/stat file."""
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def _postgres_cpu() -> dict[int, float]:
    """CPU so far of every PostgreSQL server process on this machine, by pid."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone since the listing
            continue
        if text.split(" (", 1)[1].startswith("postgres)"):
            found[int(stat.parent.name)] = _stat_cpu(text)
    return found


def _start_workers(
    url: str, count: int, latency_ms: int, log: Path
) -> list[subprocess.Popen[bytes]]:
    env = refunddesk_env(url)  # SQLite synchronous FULL, as shipped
    # REFUNDDESK_WORKER_* set where the benchmark runs are passed on, to try other values.
    env.update({k: v for k, v in os.environ.items() if k.startswith("REFUNDDESK_WORKER_")})
    env.update(
        REFUNDDESK_SANDBOX_LATENCY_MS=str(latency_ms),
        REFUNDDESK_WORKER_POLL_SECONDS=POLL_SECONDS,
        REFUNDDESK_LOG_LEVEL="WARNING",
    )
    procs = []
    for n in range(count):
        with log.with_suffix(f".{n}.log").open("ab") as out:
            procs.append(
                subprocess.Popen(
                    [str(BIN / "refunddesk"), "worker"],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    deadline = time.monotonic() + 60
    for n, proc in enumerate(procs):
        path = log.with_suffix(f".{n}.log")
        while "running" not in path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{path.read_text(errors='replace')}")
            time.sleep(0.05)
    time.sleep(0.3)  # past the periodic tasks each worker runs when it starts
    return procs


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _left(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.scalar(select(func.count()).select_from(Job).where(Job.kind == "payout")) or 0
        )


def _measure(url: str, scenario: Scenario, work: Path, max_seconds: float) -> PhaseRow:
    engine = create_engine(url)
    procs = _start_workers(url, scenario.workers, scenario.latency_ms, work / "worker")
    try:
        load_before = os.getloadavg()[0]
        cpu_before = sum(_cpu_seconds(p.pid) for p in procs)
        db_before = _postgres_cpu()
        with engine.begin() as conn:
            conn.execute(update(Job).values(run_at=datetime.now(UTC)))
        started = time.monotonic()
        while (left := _left(engine)) and time.monotonic() - started < max_seconds:
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"a worker died; see {work}")
            time.sleep(0.02)
        seconds = time.monotonic() - started
        cpu = sum(_cpu_seconds(p.pid) for p in procs) - cpu_before
        db_after = _postgres_cpu()
        # The server's processes alive at the end (a backend that exited during the run is
        # missed; the workers keep their connections).
        db_cpu = sum(v - db_before.get(p, 0.0) for p, v in db_after.items())
        load_after = os.getloadavg()[0]
    finally:
        _stop(procs)
    with engine.connect() as conn:
        by_status = {
            str(k): int(v)
            for k, v in conn.execute(select(Refund.status, func.count()).group_by(Refund.status))
        }
        payouts = int(conn.scalar(select(func.count()).select_from(Payout)) or 0)
    engine.dispose()
    paid = by_status.get("succeeded", 0)
    per_worker = paid / seconds / scenario.workers if seconds else 0.0
    targets = [Target(f"all {scenario.refunds:,} paid, once", paid == payouts == scenario.refunds)]
    if scenario.target is not None:
        targets.insert(0, at_least("payouts/s per worker", per_worker, scenario.target))
    return PhaseRow(
        "payouts",
        scenario.name,
        paid,
        seconds,
        targets=targets,
        notes={
            "payouts_per_second_per_worker": round(per_worker, 1),
            "worker_cpu_ms_per_payout": round(cpu * 1000 / paid, 3) if paid else None,
            "worker_cpu_share": round(cpu / seconds, 2) if seconds else None,
            **(
                {"postgres_cpu_ms_per_payout": round(db_cpu * 1000 / paid, 3) if paid else None}
                if scenario.database == "postgresql"
                else {}
            ),
            "load_average_1m": [round(load_before, 2), round(load_after, 2)],
            "refunds_by_status": by_status,
            "payout_rows": payouts,
            "jobs_left": left,
            "stopped_at_time_limit": bool(left),
        },
    )


def scenarios(cfg: PayoutBenchConfig) -> list[Scenario]:
    found = [
        Scenario("1 worker, sqlite FULL, 0 ms", "sqlite", 1, 0, cfg.refunds, TARGET_0MS),
        Scenario("1 worker, sqlite FULL, 200 ms", "sqlite", 1, 200, cfg.slow_refunds, TARGET_200MS),
    ]
    if cfg.pg_url:
        found += [
            Scenario("2 workers, postgresql, 0 ms", "postgresql", 2, 0, cfg.refunds, TARGET_0MS),
            Scenario("1 worker, postgresql, 0 ms", "postgresql", 1, 0, cfg.refunds, TARGET_0MS),
        ]
    return found


def run(work: Path, cfg: PayoutBenchConfig, console: Console) -> list[PhaseRow]:
    work.mkdir(parents=True, exist_ok=True)
    rows: list[PhaseRow] = []
    templates: dict[tuple[str, int], str] = {}  # (database, refunds) -> filled template
    with _pg_templates(cfg, templates, console):
        for n, scenario in enumerate(scenarios(cfg)):
            key = (scenario.database, scenario.refunds)
            if key not in templates:
                console.print(
                    f"  payouts: filling a {scenario.database} database with "
                    f"{scenario.refunds:,} approved refunds"
                )
                path = work / f"template-{scenario.refunds}.db"
                _fill(f"sqlite:///{path}", scenario.refunds)
                templates[key] = str(path)
            console.print(f"  payouts: {scenario.name} ({scenario.refunds:,} refunds)")
            folder = work / f"scenario-{n}"
            folder.mkdir()
            if scenario.database == "sqlite":
                path = folder / "refunddesk.db"
                shutil.copyfile(templates[key], path)
                rows.append(_measure(f"sqlite:///{path}", scenario, folder, cfg.max_seconds))
            else:
                assert cfg.pg_url is not None
                name = f"rd_bench_payouts_{os.getpid()}_{n}"
                with _pg_database(cfg.pg_url, name, template=templates[key]) as url:
                    rows.append(_measure(url, scenario, folder, cfg.max_seconds))
            console.print(f"    {rows[-1].per_second:,.0f} payouts/s  {rows[-1].notes}")
    return rows


@contextmanager
def _pg_templates(
    cfg: PayoutBenchConfig, templates: dict[tuple[str, int], str], console: Console
) -> Iterator[None]:
    """Fill one PostgreSQL database per size, to copy (CREATE DATABASE ... TEMPLATE) per run."""
    if not cfg.pg_url or not any(s.database == "postgresql" for s in scenarios(cfg)):
        yield
        return
    sizes = sorted({s.refunds for s in scenarios(cfg) if s.database == "postgresql"})
    with _pg_database(cfg.pg_url, f"rd_bench_payouts_{os.getpid()}_tpl") as url:
        name = make_url(url).database
        assert name is not None
        assert len(sizes) == 1, "one PostgreSQL template size"
        console.print(f"  payouts: filling a postgresql database with {sizes[0]:,} refunds")
        _fill(url, sizes[0])
        templates[("postgresql", sizes[0])] = name
        yield
