"""Fraud scoring's cost: inside intake (latency it adds, throughput with and without) and
batch rescoring (refunds per second), on a database holding a long refund history.

The history (default 1,000,000 refunds of 100,000 customers, some in rings that share a
device) is written with bulk INSERTs, as intake would have left it: orders with their
identity keys, refunds spread over the last year. Intake then runs through
refunds.service.request_refund with scoring on and off (settings.fraud_scoring) in the same
process, on the same database; the scoring step is also timed on its own.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import insert

from benchmarks.results import PhaseRow, at_least, at_most
from refunddesk.bootstrap import Container, bootstrap
from refunddesk.db.base import table_of
from refunddesk.db.migrate import upgrade
from refunddesk.fraud import scoring
from refunddesk.fraud.linking import key_rows
from refunddesk.fraud.orm import IdentityKey
from refunddesk.orders.orm import Order, OrderLine
from refunddesk.refunds import service as refunds
from refunddesk.refunds.orm import Refund
from refunddesk.refunds.schemas import RefundCreate
from refunddesk.settings import Settings
from refunddesk.tenants.service import create_tenant

THREADS = 32
ADDED_P99_TARGET_MS = 1.0
BATCH_TARGET = 20_000
RING_SIZE = 5
STATUSES = ("succeeded",) * 8 + ("rejected", "canceled")
OPEN_STATUSES = ("pending_review", "approved", "awaiting_return", "requested")


@dataclass(frozen=True, slots=True)
class FraudBenchConfig:
    history: int = 1_000_000  # refunds already in the database
    customers: int = 100_000
    open_refunds: int = 100_000  # of the history, still open: what batch rescoring scores
    intake: int = 2_000  # refunds timed one by one, per variant
    throughput: int = 10_000  # refunds per threaded intake run, per variant
    rounds: int = 2  # threaded runs per variant, alternating


def _id(ms: int, n: int) -> str:
    """A 26-character id that sorts by time, as ULIDs do."""
    return f"{ms:013d}{n:013d}"


def seed(container: Container, cfg: FraudBenchConfig, now: datetime) -> tuple[str, list[str]]:
    """The tenant with its history; returns the tenant id and the open refunds' ids."""
    rng = random.Random(7)
    with container.db.write() as session:
        tenant, _ = create_tenant(
            session, clock=container.clock, name="Fraud bench", currency="EUR", timezone="UTC"
        )
    tenant_id = tenant.id
    orders_n = max(cfg.history // 2, cfg.customers)
    year = 365 * 86_400
    open_ids: list[str] = []
    order_ids: list[str] = []
    chunk = 20_000
    for start in range(0, orders_n, chunk):
        orders: list[dict[str, Any]] = []
        lines: list[dict[str, Any]] = []
        keys: list[dict[str, Any]] = []
        for n in range(start, min(start + chunk, orders_n)):
            customer = n % cfg.customers
            ring = customer // RING_SIZE if customer % 50 < RING_SIZE else None
            bought = now - timedelta(seconds=rng.randrange(year))
            order = Order(
                tenant_id=tenant_id,
                id=_id(int(bought.timestamp() * 1000), n),
                external_id=f"FB-{n}",
                customer_email=f"c{customer}@example.com",
                customer_phone=None,
                customer_name="Bench Customer",
                currency="EUR",
                shipping_minor=0,
                tax_minor=0,
                total_minor=100_000,
                payment_method="card",
                payment_gateway="sandbox",
                payment_reference=f"pi_{n}",
                purchased_at=bought,
                delivered_at=bought + timedelta(days=2),
                created_at=bought,
                customer_ref=None,
                customer_since=None,
                shipping_address=None,
                billing_address=None,
                ip_address=None,
                device_id=f"ring-{ring}" if ring is not None else f"dev-{customer}",
                payment_fingerprint=None,
                payment_last4=None,
            )
            orders.append({c.key: getattr(order, c.key) for c in table_of(Order).columns})
            order_ids.append(order.id)
            lines.append(
                {
                    "tenant_id": tenant_id,
                    "order_id": order.id,
                    "line_no": 1,
                    "sku": "SKU-1",
                    "name": "Thing",
                    "category": "electronics" if n % 7 == 0 else "apparel",
                    "quantity": 100,
                    "unit_price_minor": 1000,
                    "weight_grams": 400,
                }
            )
            keys.extend(key_rows(order, now=bought))
        with container.db.write() as session:
            session.execute(insert(table_of(Order)), orders)
            session.execute(insert(table_of(OrderLine)), lines)
            session.execute(insert(table_of(IdentityKey)), keys)
    for start in range(0, cfg.history, chunk):
        rows: list[dict[str, Any]] = []
        for i in range(start, min(start + chunk, cfg.history)):
            n = i % orders_n
            at = now - timedelta(seconds=rng.randrange(year))
            is_open = i >= cfg.history - cfg.open_refunds
            refund_id = _id(int(at.timestamp() * 1000), 10**12 + i)
            if is_open:
                open_ids.append(refund_id)
            rows.append(
                {
                    "tenant_id": tenant_id,
                    "id": refund_id,
                    "order_id": order_ids[n],
                    "reference": f"FB{i:014d}",
                    "status": rng.choice(OPEN_STATUSES) if is_open else rng.choice(STATUSES),
                    "reason": rng.choice(("damaged", "not_received", "changed_mind")),
                    "channel": "api",
                    "amount_minor": rng.randrange(500, 20_000),
                    "currency": "EUR",
                    "decision_reasons": [],
                    "approvals_required": 0,
                    "created_at": at,
                    "updated_at": at,
                    "event_count": 0,
                }
            )
        with container.db.write() as session:
            session.execute(insert(table_of(Refund)), rows)
    return tenant_id, open_ids


def _bodies(n: int, cfg: FraudBenchConfig, offset: int) -> list[RefundCreate]:
    """Refunds on orders of customers with history: by lines, one unit, damaged."""
    orders_n = max(cfg.history // 2, cfg.customers)
    return [
        RefundCreate.model_validate(
            {
                "order_id": f"FB-{(offset + i * 7919) % orders_n}",
                "reason": "damaged",
                "lines": [{"sku": "SKU-1", "quantity": 1}],
            }
        )
        for i in range(n)
    ]


def _one(container: Container, tenant_id: str, body: RefundCreate, key: str) -> str:
    with container.db.write() as session:
        refund, _ = refunds.request_refund(
            session,
            clock=container.clock,
            config=container.intake,
            tenant_id=tenant_id,
            data=body,
            actor="bench",
            idempotency_key=key,
        )
        return refund.status


def _latency(
    container: Container, tenant_id: str, bodies: list[RefundCreate], tag: str
) -> tuple[list[float], list[float]]:
    """Per-refund intake seconds, and (scoring on) the scoring step's own seconds."""
    step: list[float] = []
    original: Callable[..., Any] = refunds.score_request

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            step.append(time.perf_counter() - started)

    refunds.score_request = timed  # type: ignore[assignment]
    try:
        total: list[float] = []
        for i, body in enumerate(bodies):
            started = time.perf_counter()
            _one(container, tenant_id, body, f"{tag}-{i}")
            total.append(time.perf_counter() - started)
    finally:
        refunds.score_request = original  # type: ignore[assignment]
    return total, step


def _throughput(
    container: Container, tenant_id: str, bodies: list[RefundCreate], tag: str
) -> tuple[float, float, dict[str, int]]:
    statuses: dict[str, int] = {}
    started, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(THREADS) as pool:
        for status in pool.map(
            lambda i: _one(container, tenant_id, bodies[i], f"{tag}-{i}"),
            range(len(bodies)),
            chunksize=64,
        ):
            statuses[status] = statuses.get(status, 0) + 1
    wall = time.perf_counter() - started
    return len(bodies) / wall, (time.process_time() - cpu) / len(bodies), statuses


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def run(work: Path, cfg: FraudBenchConfig, console: Console) -> list[PhaseRow]:
    work.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{work / 'fraud.db'}"
    upgrade(url)
    base = Settings(database_url=url)
    scored = bootstrap(base)
    plain = replace(scored, intake=replace(scored.intake, fraud_scoring=False))
    now = scored.clock.now()
    try:
        started = time.perf_counter()
        tenant_id, open_ids = seed(scored, cfg, now)
        console.print(
            f"  fraud: seeded {cfg.history:,} refunds of {cfg.customers:,} customers "
            f"in {time.perf_counter() - started:.0f} s"
        )
        with scored.db.read() as session:
            model = scoring.active_model(session, tenant_id=tenant_id)
        console.print(f"  fraud: model {model.version if model else 'none'}")

        # Latency, one refund at a time: warm both paths first.
        _latency(scored, tenant_id, _bodies(50, cfg, 1), "warm-on")
        _latency(plain, tenant_id, _bodies(50, cfg, 2), "warm-off")
        on_total, step = _latency(scored, tenant_id, _bodies(cfg.intake, cfg, 3), "lat-on")
        off_total, _ = _latency(plain, tenant_id, _bodies(cfg.intake, cfg, 4), "lat-off")
        p50_step, p99_step = _pct(step, 0.5) * 1e3, _pct(step, 0.99) * 1e3
        added_p99 = (_pct(on_total, 0.99) - _pct(off_total, 0.99)) * 1e3
        console.print(
            f"  fraud: scoring step p50 {p50_step:.3f} ms, p99 {p99_step:.3f} ms; intake p99 "
            f"{_pct(on_total, 0.99) * 1e3:.2f} ms scored vs {_pct(off_total, 0.99) * 1e3:.2f} ms "
            f"not (adds {added_p99:.2f} ms)"
        )

        # Throughput, 32 threads, scoring on and off alternating.
        rates: dict[str, list[float]] = {"on": [], "off": []}
        cpus: dict[str, list[float]] = {"on": [], "off": []}
        statuses: dict[str, dict[str, int]] = {}
        for round_ in range(cfg.rounds):
            for variant in ("on", "off") if round_ % 2 == 0 else ("off", "on"):
                container = scored if variant == "on" else plain
                bodies = _bodies(cfg.throughput, cfg, 100 + round_ * 2 + (variant == "on"))
                rate, cpu, seen = _throughput(container, tenant_id, bodies, f"tp{round_}{variant}")
                rates[variant].append(rate)
                cpus[variant].append(cpu)
                statuses[variant] = seen
                console.print(
                    f"  fraud: intake scoring {variant}: {rate:,.0f} refunds/s, "
                    f"{cpu * 1e3:.2f} ms CPU a refund {seen}"
                )

        # Batch rescoring of the open refunds.
        with scored.db.write() as session:
            started, cpu_started = time.perf_counter(), time.process_time()
            result = scoring.rescore(session, tenant_id=tenant_id, now=now, refund_ids=open_ids)
            batch_rate = result.refunds / (time.perf_counter() - started)
            batch_cpu_rate = result.refunds / (time.process_time() - cpu_started)
        console.print(
            f"  fraud: batch rescoring {result.refunds:,} open refunds: {batch_rate:,.0f} "
            f"refunds/s wall, {batch_cpu_rate:,.0f} per CPU second {result.levels}"
        )
    finally:
        scored.close()

    best_on, best_off = max(rates["on"]), max(rates["off"])
    cpu_on, cpu_off = statistics.median(cpus["on"]), statistics.median(cpus["off"])
    notes: dict[str, Any] = {
        "history_refunds": cfg.history,
        "customers": cfg.customers,
        "scoring_step_ms_p50": round(p50_step, 3),
        "scoring_step_ms_p99": round(p99_step, 3),
        "intake_ms_p99_scored": round(_pct(on_total, 0.99) * 1e3, 3),
        "intake_ms_p99_unscored": round(_pct(off_total, 0.99) * 1e3, 3),
        "rates_on": [round(r, 1) for r in rates["on"]],
        "rates_off": [round(r, 1) for r in rates["off"]],
        "cpu_ms_on": round(cpu_on * 1e3, 3),
        "cpu_ms_off": round(cpu_off * 1e3, 3),
        "statuses": statuses,
        "model_version": result.model_version,
        "batch_levels": result.levels,
        "batch_per_cpu_second": round(batch_cpu_rate),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }
    return [
        PhaseRow(
            "fraud",
            "scoring step inside intake (one refund)",
            len(step),
            sum(step),
            targets=[at_most("scoring p99 ms", p99_step, ADDED_P99_TARGET_MS)],
            notes=notes,
        ),
        PhaseRow(
            "fraud",
            f"intake, scoring off ({THREADS} threads)",
            cfg.throughput,
            cfg.throughput / best_off,
        ),
        PhaseRow(
            "fraud",
            f"intake, scoring on ({THREADS} threads)",
            cfg.throughput,
            cfg.throughput / best_on,
        ),
        PhaseRow(
            "fraud",
            "batch rescoring of open refunds",
            result.refunds,
            result.refunds / batch_rate,
            targets=[at_least("refunds/s", batch_rate, BATCH_TARGET)],
        ),
    ]
