"""The escalation scan over many open refunds: one pass, on SQLite and PostgreSQL.

N open refunds (pending_review, spread over a few tenants) with their clock rows are
bulk-loaded (Core executemany of prepared statements on SQLite, COPY on PostgreSQL); a
share of them (--escalation-due, 0.1 % by default: what falls due in a minute on a busy
desk) is past its near-breach point. Phases:

- find: the index reads alone, per tenant `next_check_at <= now` (what the pass scans);
- pass: one full scan() (find, lock, evaluate every rule, open the escalations with
  their timeline events, advance next_check_at); target <= 5 s;
- idle pass: the next scan(), when nothing is due (the steady state between deadlines).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.engine import make_url

from benchmarks.results import PhaseRow, Target
from refunddesk.bootstrap import bootstrap
from refunddesk.core.clock import FrozenClock
from refunddesk.core.ids import new_id
from refunddesk.db.base import table_of
from refunddesk.db.migrate import upgrade
from refunddesk.db.prepared import Driver, Prepared
from refunddesk.escalation.orm import Escalation
from refunddesk.escalation.scan import scan
from refunddesk.orders.orm import Order
from refunddesk.refunds.domain import RefundStatus
from refunddesk.refunds.orm import Refund
from refunddesk.settings import Settings
from refunddesk.sla import domain
from refunddesk.sla.config import Jurisdiction, Sla
from refunddesk.sla.orm import RefundClock
from refunddesk.tenants.service import create_tenant

TARGET_SECONDS = 5.0
NOW = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)  # a Tuesday afternoon
BATCH = 20_000


@dataclass(frozen=True, slots=True)
class EscalationBenchConfig:
    refunds: int
    due_fraction: float
    tenants: int
    pg_url: str | None


def _templates(rng: random.Random) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Clock rows as intake leaves them: fresh ones, and some past their near-breach point."""
    rules = domain.ClockRules.of(Sla(), default_tz="Europe/Berlin", jurisdiction=Jurisdiction.EU)

    def row(started: datetime) -> dict[str, Any]:
        clocks = domain.advance({}, RefundStatus.REQUESTED, started, rules)
        clocks = domain.advance(clocks, RefundStatus.PENDING_REVIEW, started, rules)
        triggers = domain.trigger_times(clocks, [])
        return {
            "clocks": domain.dump(clocks),
            "next_due_at": domain.next_due(clocks),
            "next_check_at": triggers[0][0],
            "created_at": started,
            "purchased_at": started - timedelta(days=40),
        }

    fresh = [row(NOW - timedelta(minutes=rng.uniform(1, 120))) for _ in range(64)]
    stale = [row(NOW - timedelta(days=rng.uniform(2, 3))) for _ in range(16)]
    assert all(t["next_check_at"] > NOW for t in fresh)
    assert all(t["next_check_at"] <= NOW for t in stale)
    return fresh, stale


def _rows(
    tenant_id: str, n: int, offset: int, cfg: EscalationBenchConfig, rng: random.Random
) -> Iterator[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    fresh, stale = _templates(rng)
    prefix = new_id()[:10]  # ids: unique per run, cheap to make a million of
    for i in range(n):
        k = offset + i
        template = rng.choice(stale if rng.random() < cfg.due_fraction else fresh)
        at, bought = template["created_at"], template["purchased_at"]
        order_id, refund_id = f"{prefix}O{k:015d}", f"{prefix}R{k:015d}"
        order = {
            "tenant_id": tenant_id,
            "id": order_id,
            "external_id": f"B-{k}",
            "customer_email": f"c{k}@example.com",
            "customer_name": "Bench Customer",
            "currency": "EUR",
            "shipping_minor": 0,
            "tax_minor": 0,
            "total_minor": 5000,
            "payment_method": "card",
            "payment_gateway": "sandbox",
            "payment_reference": f"pi_{k}",
            "purchased_at": bought,
            "created_at": bought,
        }
        refund = {
            "tenant_id": tenant_id,
            "id": refund_id,
            "order_id": order_id,
            "reference": f"B{k:011d}",
            "status": "pending_review",
            "reason": "damaged",
            "channel": "api",
            "amount_minor": 2500,
            "currency": "EUR",
            "decision_reasons": _NO_REASONS,
            "approvals_required": 0,
            "created_at": at,
            "updated_at": at,
            "event_count": 2,
        }
        clock = {
            "tenant_id": tenant_id,
            "refund_id": refund_id,
            "status": "pending_review",
            "jurisdiction": "eu",
            "clocks": template["clocks"],
            "next_due_at": template["next_due_at"],
            "next_check_at": template["next_check_at"],
            # The one-off rules (value, VIP, risk) were checked when the refund came in.
            "fired": _NOTHING_FIRED,
            "breached_at": None,
            "contacts": 0,
            "last_contact_at": None,
            "updated_at": at,
        }
        yield order, refund, clock


_TABLES = (table_of(Order), table_of(Refund), table_of(RefundClock))
# Shared objects: their stored form is computed once per batch, not once per row.
_NO_REASONS: list[str] = []
_NOTHING_FIRED: list[str] = []


def _load(url: str, tenant_ids: list[str], cfg: EscalationBenchConfig) -> float:
    """Bulk-load the orders, refunds and clock rows; return the seconds it took."""
    rng = random.Random(7)
    started = time.perf_counter()
    engine = create_engine(url)
    per = cfg.refunds // len(tenant_ids)
    try:
        for t_index, tenant_id in enumerate(tenant_ids):
            batch: tuple[list[dict[str, Any]], ...] = ([], [], [])
            for triple in _rows(tenant_id, per, t_index * per, cfg, rng):
                for rows, row in zip(batch, triple, strict=True):
                    rows.append(row)
                if len(batch[0]) >= BATCH:
                    _write(engine, batch)
                    batch = ([], [], [])
            if batch[0]:
                _write(engine, batch)
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    finally:
        engine.dispose()
    return time.perf_counter() - started


def _write(engine: Any, batch: tuple[list[dict[str, Any]], ...]) -> None:
    """One transaction per batch; values other than ids and numbers come from a few shared
    objects (templates), so each is converted to its stored form once."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            raw = conn.connection.dbapi_connection
            with raw.cursor() as cursor:
                for table, rows in zip(_TABLES, batch, strict=True):
                    cols = list(rows[0])
                    sql = f"COPY {table.name} ({', '.join(cols)}) FROM STDIN"
                    with cursor.copy(sql) as copy:
                        for values in _converted(rows, cols, lambda _c, v: _pg(v)):
                            copy.write_row(values)
            return
        db = Driver.of(conn)
        for table, rows in zip(_TABLES, batch, strict=True):
            cols = list(rows[0])
            compiled = Prepared(insert(table), keys=cols).compiled(engine.dialect)
            order = [name for name, _, _ in compiled.binds]
            stored = _converted(rows, order, _sqlite_form(compiled.binds))
            cursor = db.connection.cursor()
            try:
                cursor.executemany(compiled.sql, list(stored))
            finally:
                cursor.close()


def _pg(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (dict, list)) else value


def _sqlite_form(binds: Any) -> Any:
    """Each column's value as SQLAlchemy would store it (its own bind processors)."""
    process = {name: p for name, _, p in binds}

    def convert(column: str, value: Any) -> Any:
        p = process[column]
        return value if p is None else p(value)

    return convert


def _converted(rows: list[dict[str, Any]], cols: list[str], convert: Any) -> Iterator[list[Any]]:
    cache: dict[tuple[str, int], Any] = {}
    for row in rows:
        out = []
        for c in cols:
            v = row[c]
            if type(v) is str or type(v) is int:
                out.append(v)
                continue
            key = (c, id(v))
            if key not in cache:
                cache[key] = convert(c, v)
            out.append(cache[key])
        yield out


@contextmanager
def _database(work: Path, kind: str, pg_url: str | None) -> Iterator[str]:
    if kind == "sqlite":
        work.mkdir(parents=True, exist_ok=True)
        path = work / "escalation.db"
        path.unlink(missing_ok=True)
        yield f"sqlite:///{path}"
        return
    assert pg_url is not None
    url = make_url(pg_url)
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    name = "refunddesk_bench_escalation"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _one(work: Path, kind: str, cfg: EscalationBenchConfig, console: Console) -> list[PhaseRow]:
    rows: list[PhaseRow] = []
    with _database(work, kind, cfg.pg_url) as url:
        upgrade(url)
        clock = FrozenClock(NOW)
        container = bootstrap(
            Settings(database_url=url, sqlite_synchronous="NORMAL"), clock=clock, gateways=[]
        )
        try:
            with container.db.write() as session:
                tenant_ids = [
                    create_tenant(
                        session, clock=clock, name=f"Bench {i}", timezone="Europe/Berlin"
                    )[0].id
                    for i in range(cfg.tenants)
                ]
            loaded = _load(url, tenant_ids, cfg)
            total = cfg.refunds // cfg.tenants * cfg.tenants
            console.print(f"  {kind}: loaded {total:,} open refunds in {loaded:.1f} s")
            rows.append(PhaseRow(f"escalation {kind}", "bulk load", total * 3, loaded))

            started = time.perf_counter()
            due = 0
            with container.db.read() as session:
                for tenant_id in tenant_ids:
                    due += int(
                        session.scalar(
                            select(func.count())
                            .select_from(RefundClock)
                            .where(
                                RefundClock.tenant_id == tenant_id,
                                RefundClock.next_check_at <= NOW,
                            )
                        )
                        or 0
                    )
            found = time.perf_counter() - started
            rows.append(
                PhaseRow(f"escalation {kind}", "find (index)", due, found, notes={"of": total})
            )

            report = scan(db=container.db, clock=clock)
            with container.db.read() as session:
                opened = int(session.scalar(select(func.count()).select_from(Escalation)) or 0)
            console.print(
                f"  {kind}: pass over {total:,}: {report.checked:,} due, {report.opened:,} "
                f"escalated, {report.errors} errors, {report.seconds:.2f} s"
            )
            rows.append(
                PhaseRow(
                    f"escalation {kind}",
                    f"pass ({total:,} open)",
                    report.checked,
                    report.seconds,
                    targets=[
                        Target(f"pass <= {TARGET_SECONDS:g} s", report.seconds <= TARGET_SECONDS)
                    ],
                    notes={"opened": opened, "errors": report.errors, "open_refunds": total},
                )
            )
            idle = scan(db=container.db, clock=clock)
            rows.append(
                PhaseRow(
                    f"escalation {kind}",
                    "idle pass",
                    idle.checked,
                    idle.seconds,
                    targets=[
                        Target(f"idle pass <= {TARGET_SECONDS:g} s", idle.seconds <= TARGET_SECONDS)
                    ],
                )
            )
        finally:
            container.close()
    return rows


def run(work: Path, cfg: EscalationBenchConfig, console: Console) -> list[PhaseRow]:
    rows = _one(work / "sqlite", "sqlite", cfg, console)
    if cfg.pg_url:
        rows += _one(work / "pg", "postgresql", cfg, console)
    else:
        console.print("  no PostgreSQL (REFUNDDESK_BENCH_DATABASE_URL): SQLite only")
    return rows
