"""Policy cost: evaluate() per refund, and intake throughput with a realistic policy vs none.

Both intake runs happen in this process, one after the other, on fresh SQLite databases with
the shipped settings (synchronous FULL, group commit), from 32 threads as the pipeline does.
"""

from __future__ import annotations

import statistics
import time
import timeit
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console

from benchmarks.results import PhaseRow, at_most
from refunddesk.bootstrap import Container, bootstrap
from refunddesk.db.migrate import upgrade
from refunddesk.orders.schemas import OrderCreate
from refunddesk.orders.service import create_orders
from refunddesk.policy.document import Evidence, example_policy, example_text
from refunddesk.policy.engine import (
    CustomerHistory,
    OrderFacts,
    OrderLineFacts,
    RequestFacts,
    RequestLine,
    evaluate,
)
from refunddesk.policy.service import activate, create_version
from refunddesk.refunds.domain import Reason
from refunddesk.refunds.schemas import RefundCreate
from refunddesk.refunds.service import request_refund
from refunddesk.settings import Settings
from refunddesk.tenants.service import create_tenant

THREADS = 32
POLICY_SHARE_TARGET = 0.10  # the policy may cost at most 10% of intake throughput
REFUNDS_PER_CUSTOMER = 4  # one order per customer in this bench
REALISTIC = "northwind"  # EUR like the bench orders; its return rule reads customer history


@dataclass(frozen=True, slots=True)
class PolicyBenchConfig:
    refunds: int  # per intake run
    rounds: int  # intake runs per variant, alternating; the best of each counts
    evaluations: int


def evaluate_micros(iterations: int) -> float:
    """Microseconds per evaluate() of a damaged-camera request under the sakura policy."""
    policy = example_policy("sakura")
    now = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
    order = OrderFacts(
        currency="JPY",
        lines=(
            OrderLineFacts("CAM-1", "electronics", 1, 40_000),
            OrderLineFacts("BAG-1", "accessories", 2, 3_000),
        ),
        purchased_at=now - timedelta(days=9),
        delivered_at=now - timedelta(days=7),
        shipping_minor=500,
        tax_minor=4_600,
    )
    request = RequestFacts(
        reason=Reason.CHANGED_MIND,
        lines=(RequestLine("CAM-1", 1, condition="unopened"), RequestLine("BAG-1", 1)),
        evidence=frozenset({Evidence.RECEIPT}),
    )
    history = CustomerHistory((now - timedelta(days=40), now - timedelta(days=200)))
    tz = ZoneInfo("Asia/Tokyo")

    def once() -> None:
        evaluate(policy, order=order, request=request, history=history, now=now, tz=tz)

    once()
    runs = timeit.repeat(once, number=iterations, repeat=5)
    return min(runs) / iterations * 1e6


def _orders(count: int, now: datetime) -> list[OrderCreate]:
    """Orders of 10,000 units at 10.00 EUR, delivered yesterday: budget never runs out."""
    return [
        OrderCreate.model_validate(
            {
                "external_id": f"PB-{n}",
                "customer": {"email": f"c{n}@example.com", "name": "Bench Customer"},
                "currency": "EUR",
                "lines": [
                    {
                        "sku": "SKU-1",
                        "name": "Thing",
                        "category": "apparel",
                        "quantity": 10_000,
                        "unit_price_minor": 1000,
                    }
                ],
                "payment": {"method": "card", "gateway": "sandbox", "reference": f"pi_{n}"},
                "purchased_at": (now - timedelta(days=2)).isoformat(),
                "delivered_at": (now - timedelta(days=1)).isoformat(),
            }
        )
        for n in range(1, count + 1)
    ]


def _prepare(container: Container, orders: int, policy: str | None) -> str:
    with container.db.write() as session:
        tenant, _key = create_tenant(
            session, clock=container.clock, name="Policy bench", currency="EUR", timezone="UTC"
        )
        tenant_id = tenant.id
        if policy is not None:
            row = create_version(
                session,
                clock=container.clock,
                tenant_id=tenant_id,
                source=example_text(policy),
                actor="bench",
            )
            activate(session, clock=container.clock, tenant_id=tenant_id, version=row.version)
    batch = _orders(orders, datetime.now(UTC))
    for start in range(0, orders, 1000):
        with container.db.write() as session:
            create_orders(
                session,
                clock=container.clock,
                tenant_id=tenant_id,
                orders=batch[start : start + 1000],
            )
    return tenant_id


def _intake(
    work: Path, name: str, policy: str | None, n: int
) -> tuple[float, float, dict[str, int]]:
    """(refunds per second, CPU seconds per refund, statuses): one line, not received
    (instant and auto-approved under both).

    Wall-clock throughput at synchronous=FULL swings with fsync timing by more than the
    policy's share; the process's CPU time per refund does not, so the share is read there.
    """
    url = f"sqlite:///{work / f'{name}.db'}"
    upgrade(url)
    container = bootstrap(Settings(database_url=url))
    try:
        # A few refunds per customer, as in life; the history query reads them all.
        orders = max(100, n // REFUNDS_PER_CUSTOMER)
        tenant_id = _prepare(container, orders, policy)
        bodies = [
            RefundCreate.model_validate(
                {
                    "order_id": f"PB-{i % orders + 1}",
                    "reason": "not_received",
                    "lines": [{"sku": "SKU-1", "quantity": 1}],
                }
            )
            for i in range(n)
        ]
        statuses: dict[str, int] = {}

        def one(i: int) -> str:
            with container.db.write() as session:
                refund, _ = request_refund(
                    session,
                    clock=container.clock,
                    config=container.intake,
                    tenant_id=tenant_id,
                    data=bodies[i],
                    actor="bench",
                    idempotency_key=f"pb-{i}",
                )
                return refund.status

        started, cpu = time.perf_counter(), time.process_time()
        with ThreadPoolExecutor(THREADS) as pool:
            for status in pool.map(one, range(n), chunksize=64):
                statuses[status] = statuses.get(status, 0) + 1
        cpu_per_refund = (time.process_time() - cpu) / n
        return n / (time.perf_counter() - started), cpu_per_refund, statuses
    finally:
        container.close()


def run(work: Path, cfg: PolicyBenchConfig, console: Console) -> list[PhaseRow]:
    work.mkdir(parents=True, exist_ok=True)
    micros = evaluate_micros(cfg.evaluations)
    console.print(f"  policy: evaluate() {micros:.1f} µs per refund (sakura, best of 5)")
    rates: dict[str, list[float]] = {"default": [], REALISTIC: []}
    cpus: dict[str, list[float]] = {"default": [], REALISTIC: []}
    statuses: dict[str, dict[str, int]] = {}
    for round_ in range(cfg.rounds):
        for variant in ("default", REALISTIC) if round_ % 2 == 0 else (REALISTIC, "default"):
            rate, cpu, seen = _intake(
                work,
                f"{variant}-{round_}",
                None if variant == "default" else variant,
                cfg.refunds,
            )
            rates[variant].append(rate)
            cpus[variant].append(cpu)
            statuses[variant] = seen
            console.print(
                f"  policy: intake with {variant} policy: {rate:,.0f} refunds/s, "
                f"{cpu * 1e3:.2f} ms CPU a refund {seen}"
            )
    best_default, best_policy = max(rates["default"]), max(rates[REALISTIC])
    ratio = best_policy / best_default
    # The share of intake throughput the policy costs, from CPU per refund (median rounds).
    cpu_default = statistics.median(cpus["default"])
    cpu_policy = statistics.median(cpus[REALISTIC])
    cost = 1 - cpu_default / cpu_policy
    console.print(
        f"  policy: CPU a refund {cpu_default * 1e3:.2f} ms default, {cpu_policy * 1e3:.2f} ms "
        f"{REALISTIC}: the policy costs {cost:.1%} of intake throughput "
        f"(target < {POLICY_SHARE_TARGET:.0%}); wall-clock ratio {ratio:.3f}"
    )
    notes: dict[str, Any] = {
        "evaluate_us": round(micros, 1),
        "refunds_per_customer": REFUNDS_PER_CUSTOMER,
        "rates_default": [round(r, 1) for r in rates["default"]],
        f"rates_{REALISTIC}": [round(r, 1) for r in rates[REALISTIC]],
        "median_default": round(statistics.median(rates["default"]), 1),
        f"median_{REALISTIC}": round(statistics.median(rates[REALISTIC]), 1),
        "statuses": statuses,
        "throughput_ratio_wall": round(ratio, 3),
        "cpu_ms_default": [round(c * 1e3, 3) for c in cpus["default"]],
        f"cpu_ms_{REALISTIC}": [round(c * 1e3, 3) for c in cpus[REALISTIC]],
        "policy_cost_share_cpu": round(cost, 4),
    }
    per_refund_s = cfg.refunds / best_policy
    return [
        PhaseRow(
            "policy",
            "evaluate() x1000 (sakura)",
            1000,
            micros * 1000 / 1e6,
            notes={"evaluate_us": round(micros, 1)},
        ),
        PhaseRow(
            "policy",
            f"intake, default policy ({THREADS} threads)",
            cfg.refunds,
            cfg.refunds / best_default,
        ),
        PhaseRow(
            "policy",
            f"intake, {REALISTIC} policy ({THREADS} threads)",
            cfg.refunds,
            per_refund_s,
            targets=[at_most("policy cost share", cost, POLICY_SHARE_TARGET)],
            notes=notes,
        ),
    ]
