"""Console queue page: render time of /desk/t/{tenant}/queue with 100,000 refunds in the tenant.

The tenant's refunds are bulk-loaded (Core inserts, not intake: the page is measured, not the
loading) with a desk-like mix: most paid, a few thousand waiting for review, some failed,
some at fraud risk, a share of four-eyes refunds approved once, clocks on the open ones, and
claims by a handful of agents. Requests go through the whole app in-process (session cookie,
user and membership lookup, queue counts, the keyset page, the Jinja template).
"""

from __future__ import annotations

import random
import re
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from rich.console import Console
from sqlalchemy import insert

from benchmarks.results import PhaseRow, at_most
from refunddesk.api.app import create_app
from refunddesk.auth import users
from refunddesk.auth.orm import Membership, User
from refunddesk.bootstrap import bootstrap
from refunddesk.console import views as console_views
from refunddesk.console.orm import Claim
from refunddesk.core.clock import FrozenClock
from refunddesk.core.ids import new_id
from refunddesk.db.base import table_of
from refunddesk.db.migrate import upgrade
from refunddesk.orders.orm import Order
from refunddesk.refunds.approvals import Approval
from refunddesk.refunds.orm import Refund
from refunddesk.settings import Settings
from refunddesk.sla.orm import RefundClock
from refunddesk.tenants.service import create_tenant

P95_TARGET_MS = 150.0
PASSWORD = "bench password 1"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
# status -> share of the tenant's refunds
MIX = {
    "succeeded": 0.80,
    "pending_review": 0.06,
    "failed": 0.02,
    "rejected": 0.04,
    "canceled": 0.03,
    "approved": 0.02,
    "processing": 0.02,
    "awaiting_return": 0.01,
}
OPEN = {"pending_review", "failed", "approved", "processing", "awaiting_return"}
CHUNK = 5_000


@dataclass(frozen=True, slots=True)
class ConsoleBenchConfig:
    refunds: int
    requests: int  # timed requests per measured page


def _load(db: Any, tenant_id: str, n: int, rng: random.Random) -> dict[str, int]:
    """Bulk-insert n orders and refunds (and clocks, approvals, claims); count what was made."""
    orders_t, refunds_t = table_of(Order), table_of(Refund)
    approvals_t, claims_t = table_of(Approval), table_of(Claim)
    clocks = table_of(RefundClock)
    statuses = list(MIX)
    weights = [MIX[s] for s in statuses]
    agents = []
    with db.write() as session:
        for i in range(6):
            user = User(
                id=new_id(),
                email=f"agent{i}@bench.example",
                name=f"Agent {i}",
                password_hash=users.hash_password(PASSWORD),
                totp_secret=None,
                is_admin=False,
                created_at=NOW,
                disabled_at=None,
            )
            session.add(user)
            session.flush()
            session.add(
                Membership(tenant_id=tenant_id, user_id=user.id, role="agent", created_at=NOW)
            )
            agents.append(user.id)
    made = {s: 0 for s in statuses} | {"clocks": 0, "approved_once": 0, "claims": 0}
    for start in range(0, n, CHUNK):
        orders, refunds, approvals, claims, clock_rows = [], [], [], [], []
        for i in range(start, min(start + CHUNK, n)):
            order_id, refund_id = new_id(), new_id()
            created = NOW - timedelta(minutes=rng.randint(1, 60 * 24 * 90))
            amount = rng.randint(500, 50_000)
            status = rng.choices(statuses, weights)[0]
            made[status] += 1
            orders.append(
                {
                    "tenant_id": tenant_id,
                    "id": order_id,
                    "external_id": f"ORD-{i:07d}",
                    "customer_email": f"customer{i % 40_000}@example.com",
                    "customer_phone": None,
                    "customer_name": f"Customer {i % 40_000}",
                    "currency": "EUR",
                    "shipping_minor": 490,
                    "tax_minor": 0,
                    "total_minor": amount + 490,
                    "payment_method": "card",
                    "payment_gateway": "sandbox",
                    "payment_reference": f"pi_{i}",
                    "purchased_at": created - timedelta(days=10),
                    "delivered_at": created - timedelta(days=7),
                    "created_at": created - timedelta(days=10),
                }
            )
            risky = rng.random() < 0.08
            refunds.append(
                {
                    "tenant_id": tenant_id,
                    "id": refund_id,
                    "order_id": order_id,
                    "reference": f"RF-B{i:07d}",
                    "status": status,
                    "reason": "damaged",
                    "channel": "api",
                    "amount_minor": amount,
                    "currency": "EUR",
                    "decision_reasons": [],
                    "approvals_required": 2 if status == "pending_review" and i % 5 == 0 else 1,
                    "created_at": created,
                    "updated_at": created,
                    "event_count": 2,
                    "risk_level": rng.choice(["medium", "high"]) if risky else "low",
                    "risk_score": 0.7 if risky else 0.05,
                }
            )
            if status == "pending_review" and i % 5 == 0 and i % 2 == 0:
                made["approved_once"] += 1
                approvals.append(
                    {
                        "tenant_id": tenant_id,
                        "id": new_id(),
                        "refund_id": refund_id,
                        "actor": f"user:{agents[0]}",
                        "role": "agent",
                        "amount_minor": amount,
                        "at": created,
                    }
                )
            if status in OPEN and rng.random() < 0.2:
                made["claims"] += 1
                claims.append(
                    {
                        "tenant_id": tenant_id,
                        "refund_id": refund_id,
                        "user_id": rng.choice(agents),
                        "claimed_at": created,
                    }
                )
            if status in OPEN:
                made["clocks"] += 1
                clock_rows.append(
                    {
                        "tenant_id": tenant_id,
                        "refund_id": refund_id,
                        "status": status,
                        "jurisdiction": "eu",
                        "clocks": {},
                        "next_due_at": created + timedelta(days=rng.randint(1, 14)),
                        "next_check_at": None,
                        "fired": [],
                        "breached_at": None,
                        "contacts": 0,
                        "updated_at": created,
                    }
                )
        with db.write() as session:
            session.execute(insert(orders_t), orders)
            session.execute(insert(refunds_t), refunds)
            if approvals:
                session.execute(insert(approvals_t), approvals)
            if claims:
                session.execute(insert(claims_t), claims)
            if clock_rows:
                session.execute(insert(clocks), clock_rows)
    return made


def _timed(client: TestClient, url: str, requests: int) -> tuple[list[float], str]:
    client.get(url)  # warm: templates compiled, statements cached
    times = []
    text = ""
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text[:500]
        text = response.text
    return times, text


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(work: Path, cfg: ConsoleBenchConfig, console: Console) -> list[PhaseRow]:
    work.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{work / 'console.db'}"
    upgrade(url)
    container = bootstrap(Settings(database_url=url), clock=FrozenClock(NOW))
    rows: list[PhaseRow] = []
    ttl = console_views.COUNT_TTL_SECONDS
    try:
        with container.db.write() as session:
            tenant, _ = create_tenant(
                session, clock=container.clock, name="Bench", currency="EUR", timezone="UTC"
            )
            tenant_id = tenant.id
        started = time.monotonic()
        made = _load(container.db, tenant_id, cfg.refunds, random.Random(7))
        load_seconds = time.monotonic() - started
        console.print(f"loaded {cfg.refunds:,} refunds in {load_seconds:.1f} s: {made}")
        with TestClient(create_app(container)) as client:
            login = client.get("/desk/login")
            token = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
            assert token is not None
            signed = client.post(
                "/desk/login",
                data={
                    "csrf_token": token.group(1),
                    "email": "agent0@bench.example",
                    "password": PASSWORD,
                },
                follow_redirects=False,
            )
            assert signed.status_code == 303, signed.text
            base = f"/desk/t/{tenant_id}/queue"
            pages = {
                "review, first page": base,
                "fraud review, first page": base + "?queue=fraud",
                "second approval, first page": base + "?queue=approval",
                "failed payouts, first page": base + "?queue=failed",
                "review, mine": base + "?scope=mine",
            }
            _, first = _timed(client, base, 1)
            deep = first
            for _ in range(20):  # walk 20 pages down for a deep cursor
                found = re.search(r'href="[^"]*after=([^"&]+)"', deep)
                if found is None:
                    break
                deep = client.get(f"{base}?queue=review&scope=all&after={found.group(1)}").text
            found = re.search(r'href="[^"]*after=([^"&]+)"', deep)
            if found is not None:
                pages["review, page 21 (keyset)"] = (
                    f"{base}?queue=review&scope=all&after={found.group(1)}"
                )
            pages["review, first page, tab counts not cached"] = base + "?queue=review"
            for name, page_url in pages.items():
                # The tabs' queue sizes are cached 10 s; the last phase counts on every view.
                console_views.COUNT_TTL_SECONDS = 0.0 if "not cached" in name else ttl
                times, text = _timed(client, page_url, cfg.requests)
                p95 = _p(times, 0.95)
                shown = text.count("<tr data-row ")
                console.print(
                    f"{name:<32} p50 {statistics.median(times):6.1f} ms  p95 {p95:6.1f} ms  "
                    f"rows {shown}"
                )
                rows.append(
                    PhaseRow(
                        bench="console queue",
                        phase=name,
                        items=len(times),
                        seconds=sum(times) / 1000,
                        targets=[at_most("p95 ms", p95, P95_TARGET_MS)],
                        notes={
                            "p50_ms": round(statistics.median(times), 1),
                            "p95_ms": round(p95, 1),
                            "max_ms": round(max(times), 1),
                            "rows_shown": shown,
                            "tenant_refunds": cfg.refunds,
                        }
                        | ({"mix": made} if not rows else {}),
                    )
                )
    finally:
        console_views.COUNT_TTL_SECONDS = ttl
        container.close()
    return rows
