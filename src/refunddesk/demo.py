"""A realistic demo data set: three retailers, hundreds of orders, refunds in every state.

History is replayed through the real services with a controlled clock, so every refund's
timeline is what the system itself would have recorded.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rich.progress import Progress
from sqlalchemy import update

from refunddesk.auth import users as desk_users
from refunddesk.auth.domain import Role
from refunddesk.auth.service import create_key
from refunddesk.bootstrap import Container
from refunddesk.core.clock import FrozenClock
from refunddesk.core.errors import DomainError, Forbidden
from refunddesk.jobs.worker import Worker
from refunddesk.orders.schemas import OrderCreate
from refunddesk.orders.service import create_orders
from refunddesk.payouts.accounts import set_account
from refunddesk.payouts.gateways.base import GatewayRegistry
from refunddesk.payouts.gateways.sandbox import SandboxGateway
from refunddesk.payouts.service import PayoutHandler
from refunddesk.payouts.store_credit import build as store_credit_gateway
from refunddesk.policy import service as policies
from refunddesk.policy.document import example_text
from refunddesk.refunds import service as refunds
from refunddesk.refunds.domain import Reason, RefundStatus
from refunddesk.refunds.orm import RefundEvent
from refunddesk.refunds.schemas import RefundCreate
from refunddesk.tenants.service import create_tenant

DEMO_ACTOR = "agent:demo"
# Console accounts to sign in with at once (documented in the README; demo data only).
DEMO_PASSWORD = "refunddesk-demo"  # noqa: S105
DEMO_USERS = (
    ("admin@demo.refunddesk", "Dana Admin", None),
    ("agent@demo.refunddesk", "Alex Agent", Role.AGENT),
    ("supervisor@demo.refunddesk", "Sam Supervisor", Role.SUPERVISOR),
    ("finance@demo.refunddesk", "Fran Finance", Role.FINANCE),
    ("viewer@demo.refunddesk", "Vic Viewer", Role.CLIENT_VIEWER),
)
APPROVERS = (DEMO_ACTOR, "supervisor:demo-lead", "finance:demo")


@dataclass(frozen=True)
class Catalogue:
    name: str
    currency: str
    timezone: str
    scale: int  # minor units per "price point"
    products: tuple[tuple[str, str, str, int], ...]  # sku, name, category, price points
    policy: str  # the bundled example policy (policy/examples/<name>.yaml) it runs under


RETAILERS = (
    Catalogue(
        "Northwind Outfitters",
        "EUR",
        "Europe/Berlin",
        100,
        (
            ("NW-JKT-01", "Alpine shell jacket", "apparel", 189),
            ("NW-BT-07", "Trail boots", "footwear", 139),
            ("NW-SCK-3P", "Merino socks, 3 pack", "apparel", 29),
            ("NW-TNT-2", "Two-person tent", "outdoor", 249),
            ("NW-LMP-5", "Head lamp", "outdoor", 45),
        ),
        "northwind",
    ),
    Catalogue(
        "Sakura Electronics",
        "JPY",
        "Asia/Tokyo",
        1,
        (
            ("SK-HP-900", "Noise-cancelling headphones", "electronics", 32800),
            ("SK-CBL-USB", "USB-C cable", "accessories", 1980),
            ("SK-KB-MX", "Mechanical keyboard", "electronics", 15400),
            ("SK-CAM-4K", "4K action camera", "electronics", 45600),
        ),
        "sakura",
    ),
    Catalogue(
        "Maple Home Goods",
        "USD",
        "America/New_York",
        100,
        (
            ("MH-PAN-28", "Cast iron pan", "kitchen", 59),
            ("MH-TWL-6", "Bath towels, set of 6", "home", 48),
            ("MH-LMP-AR", "Arc floor lamp", "furniture", 179),
            ("MH-MUG-4", "Stoneware mugs, set of 4", "kitchen", 36),
            ("MH-RUG-M", "Wool rug", "home", 320),
        ),
        "maple",
    ),
)
FIRST = (
    "Ana",
    "Ben",
    "Chloe",
    "Dmitri",
    "Emma",
    "Farid",
    "Greta",
    "Hiro",
    "Ines",
    "Jonas",
    "Kai",
    "Lena",
    "Mateo",
    "Nora",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Tara",
)
LAST = (
    "Schmidt",
    "Tanaka",
    "Rossi",
    "Dubois",
    "Novak",
    "Garcia",
    "Smith",
    "Kowalski",
    "Jensen",
    "Silva",
    "Okafor",
    "Murphy",
    "Lindqvist",
    "Haddad",
)
METHODS = ("card", "card", "card", "wallet", "bank_transfer", "store_credit")


def _order(rng: random.Random, cat: Catalogue, n: int, now: datetime) -> OrderCreate:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    purchased = now - timedelta(days=rng.uniform(2, 80), minutes=rng.randint(0, 1440))
    delivered = purchased + timedelta(days=rng.uniform(1, 6)) if rng.random() < 0.9 else None
    if delivered and delivered > now:
        delivered = None
    picks = rng.sample(cat.products, k=rng.randint(1, min(3, len(cat.products))))
    lines = [
        {
            "sku": sku,
            "name": name,
            "category": category,
            "quantity": rng.randint(1, 3),
            "unit_price_minor": price * cat.scale,
        }
        for sku, name, category, price in picks
    ]
    subtotal = sum(li["quantity"] * li["unit_price_minor"] for li in lines)  # type: ignore[operator]
    return OrderCreate.model_validate(
        {
            "external_id": f"{cat.name.split()[0][:2].upper()}-{100000 + n}",
            "customer": {
                "email": f"{first}.{last}{n}@example.com".lower(),
                "name": f"{first} {last}",
                "phone": f"+49151{rng.randint(1000000, 9999999)}",
            },
            "currency": cat.currency,
            "lines": lines,
            "shipping_minor": 5 * cat.scale if cat.scale > 1 else 800,
            "tax_minor": subtotal // 10,
            "payment": {
                "method": rng.choice(METHODS),
                "gateway": "sandbox",
                "reference": f"pay_{rng.getrandbits(48):012x}",
            },
            "purchased_at": purchased,
            "delivered_at": delivered,
        }
    )


def load_demo(
    container: Container, *, orders_per_tenant: int = 300, seed: int = 7, progress: bool = True
) -> dict[str, Any]:
    """Create the demo retailers, keys, orders and refunds; return keys and a sample to track."""
    rng = random.Random(seed)
    real_now = container.clock.now()
    clock = FrozenClock(real_now - timedelta(days=90))
    sandbox = SandboxGateway(failure_rate=0.07, seed=seed)
    handler = PayoutHandler(
        db=container.db,
        clock=clock,
        gateways=GatewayRegistry([sandbox, store_credit_gateway(db=container.db, clock=clock)]),
        concurrency=4,
    )
    base = container.worker("demo-loader")
    worker = Worker(
        db=container.db, clock=clock, handlers=[handler], config=base.config, name="demo-loader"
    )
    result: dict[str, Any] = {"tenants": []}
    plan: list[tuple[datetime, str, OrderCreate, str]] = []
    with container.db.write() as session:
        result["admin_key"] = create_key(
            session, clock=clock, role=Role.ADMIN, tenant_id=None, name="demo admin"
        )
        for cat in RETAILERS:
            tenant, key = create_tenant(
                session, clock=clock, name=cat.name, currency=cat.currency, timezone=cat.timezone
            )
            keys = {"integration": key}
            for role in (Role.AGENT, Role.SUPERVISOR, Role.FINANCE, Role.CLIENT_VIEWER):
                keys[str(role)] = create_key(
                    session, clock=clock, role=role, tenant_id=tenant.id, name=f"demo {role}"
                )
            # Each retailer's own policy decides its refunds, so the tenants visibly differ.
            version = policies.create_version(
                session,
                clock=clock,
                tenant_id=tenant.id,
                source=example_text(cat.policy),
                note="demo: the retailer's standard policy",
                actor=DEMO_ACTOR,
            )
            policies.activate(session, clock=clock, tenant_id=tenant.id, version=version.version)
            if cat.currency == "EUR":  # a SEPA account, for bank-transfer fallbacks
                set_account(
                    session,
                    tenant_id=tenant.id,
                    name="bank",
                    provider="bank_transfer",
                    config={
                        "debtor_name": cat.name,
                        "debtor_iban": "DE02120300000000202051",
                        "debtor_bic": "BYLADEM1001",
                    },
                    methods=["bank_transfer"],
                    now=clock.now(),
                )
            result["tenants"].append({"name": cat.name, "tenant_id": tenant.id, "keys": keys})
            orders = [_order(rng, cat, n, real_now) for n in range(orders_per_tenant)]
            create_orders(session, clock=clock, tenant_id=tenant.id, orders=orders)
            for order in orders:
                if rng.random() > 0.75:
                    continue
                start = order.delivered_at or order.purchased_at
                # Most claims come within the window; some come late and need a human.
                at = start + timedelta(
                    days=rng.choice([rng.uniform(0.2, 25)] * 4 + [rng.uniform(31, 45)])
                )
                if at < real_now - timedelta(minutes=5):
                    plan.append((at, tenant.id, order, cat.name))
    with container.db.write() as session:
        result["users"] = _demo_users(session, clock, [t["tenant_id"] for t in result["tenants"]])
    plan.sort(key=lambda item: item[0])
    sample: dict[str, str] = {}
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("replaying refund history", total=len(plan))
        # The newest refunds are left as a live desk would have them: some still in review,
        # some approved with their payout queued for the worker that `serve` starts.
        undrained = max(len(plan) - 24, 0)
        review_left_from = plan[int(len(plan) * 0.9)][0] if plan else real_now
        for index, (at, tenant_id, order, _) in enumerate(plan):
            clock._at = at
            body = _refund_body(rng, order)
            try:
                with container.db.write() as session:
                    refund, _ = refunds.request_refund(
                        session,
                        clock=clock,
                        config=container.intake,
                        tenant_id=tenant_id,
                        data=body,
                        actor=f"{body.channel}:demo",
                    )
                    refund_id, status = refund.id, refund.state
            except DomainError:
                bar.advance(task)
                continue
            if at < review_left_from:
                _agent_follow_up(container, clock, rng, tenant_id, refund_id, status)
            if index < undrained:
                worker.drain()
            bar.advance(task)
    result["fraud_ring"] = _fraud_ring(container, clock, RETAILERS[0], result, real_now)
    _mark_dispatched(container, [t["tenant_id"] for t in result["tenants"]])
    with container.db.read() as session:
        from sqlalchemy import select

        from refunddesk.orders.orm import Order
        from refunddesk.refunds.orm import Refund

        row = session.execute(
            select(Refund.reference, Order.customer_email)
            .join(Order, (Order.tenant_id == Refund.tenant_id) & (Order.id == Refund.order_id))
            .where(
                Refund.status == "succeeded", Refund.tenant_id == result["tenants"][0]["tenant_id"]
            )
            .limit(1)
        ).first()
        if row:
            sample = {"reference": row[0], "email": row[1]}
    handler.close()
    result["sample"] = sample
    result["refunds"] = len(plan)
    return result


def _fraud_ring(
    container: Container,
    clock: FrozenClock,
    cat: Catalogue,
    result: dict[str, Any],
    real_now: datetime,
) -> list[str]:
    """Five accounts on one device and one card claim 'not received' in two days: the later
    claims are held for review with the ring in their risk reasons (refunddesk.fraud)."""
    tenant_id = result["tenants"][0]["tenant_id"]
    sku, name, category, price = cat.products[0]
    address = {"line1": "Hafenstrasse 12", "postal_code": "20457", "country": "DE"}
    held: list[str] = []
    for n in range(5):
        at = real_now - timedelta(days=2, hours=-8 * n)
        clock._at = at - timedelta(days=3)
        order = OrderCreate.model_validate(
            {
                "external_id": f"RING-{n + 1}",
                "customer": {"email": f"sam.r{n}@example.net", "name": f"Sam R{n}"},
                "currency": cat.currency,
                "lines": [
                    {
                        "sku": sku,
                        "name": name,
                        "category": category,
                        "quantity": 1,
                        "unit_price_minor": price * cat.scale,
                    }
                ],
                "payment": {
                    "method": "card",
                    "gateway": "sandbox",
                    "reference": f"pay_ring_{n}",
                    "fingerprint": "fp-demo-ring",
                },
                "purchased_at": at - timedelta(days=3),
                "delivered_at": at - timedelta(days=1),
                "shipping_address": address,
                "device_id": "device-demo-ring",
            }
        )
        try:
            with container.db.write() as session:
                create_orders(session, clock=clock, tenant_id=tenant_id, orders=[order])
            clock._at = at
            with container.db.write() as session:
                refund, _ = refunds.request_refund(
                    session,
                    clock=clock,
                    config=container.intake,
                    tenant_id=tenant_id,
                    data=RefundCreate.model_validate(
                        {
                            "order_id": order.external_id,
                            "reason": str(Reason.NOT_RECEIVED),
                            "lines": [{"sku": sku, "quantity": 1}],
                            "delivery_confirmation": "signature",
                        }
                    ),
                    actor="api:demo",
                )
                if refund.risk_level == "high":
                    held.append(refund.reference)
        except DomainError:
            continue
    return held


def _mark_dispatched(container: Container, tenant_ids: list[str]) -> None:
    """Replayed history is not news: no customer message or webhook for any of it."""
    with container.db.write() as session:
        session.execute(
            update(RefundEvent)
            .where(RefundEvent.tenant_id.in_(tenant_ids), RefundEvent.dispatched.is_(False))
            .values(dispatched=True)
        )


def _refund_body(rng: random.Random, order: OrderCreate) -> RefundCreate:
    reason = rng.choice(list(Reason))
    channel = rng.choice(["api", "api", "portal", "agent", "import"])
    # Most customers send what the policies ask for (a receipt, a photo, the item's state).
    evidence = rng.choice([["receipt", "photo"]] * 3 + [["receipt"], []])
    if rng.random() < 0.7:
        line = rng.choice(order.lines)
        condition = rng.choice(["unopened", "unopened", "unused", "used", None])
        return RefundCreate.model_validate(
            {
                "order_id": order.external_id,
                "reason": reason,
                "channel": channel,
                "evidence": evidence,
                "lines": [
                    {
                        "sku": line.sku,
                        "quantity": rng.randint(1, line.quantity),
                        "condition": condition,
                    }
                ],
            }
        )
    paid = sum(li.quantity * li.unit_price_minor for li in order.lines)
    return RefundCreate.model_validate(
        {
            "order_id": order.external_id,
            "reason": reason,
            "channel": channel,
            "evidence": evidence,
            "amount_minor": max(1, paid * rng.choice([10, 20, 50]) // 100),
        }
    )


def _agent_follow_up(
    container: Container,
    clock: FrozenClock,
    rng: random.Random,
    tenant_id: str,
    refund_id: str,
    status: RefundStatus,
) -> None:
    """What the desk did next: review decisions and cancellations."""
    with container.db.write() as session:
        if status is RefundStatus.PENDING_REVIEW:
            clock._at += timedelta(hours=rng.uniform(2, 40))
            if rng.random() < 0.7:
                # The first approver within the policy's role limits; four-eyes refunds
                # get a second, different one.
                for actor in APPROVERS:
                    try:
                        refund = refunds.approve(
                            session,
                            clock=clock,
                            config=container.intake,
                            tenant_id=tenant_id,
                            refund_id=refund_id,
                            actor=actor,
                            note="checked photos",
                        )
                    except Forbidden:  # above this role's approval limit
                        continue
                    if refund.state is not RefundStatus.PENDING_REVIEW:
                        break
            else:
                refunds.reject(
                    session,
                    clock=clock,
                    tenant_id=tenant_id,
                    refund_id=refund_id,
                    actor=DEMO_ACTOR,
                    reason="item was used beyond inspection",
                )
        elif status is RefundStatus.APPROVED and rng.random() < 0.04:
            refunds.cancel(
                session,
                clock=clock,
                tenant_id=tenant_id,
                refund_id=refund_id,
                actor=DEMO_ACTOR,
                note="customer kept the item",
            )
    clock._at += timedelta(minutes=rng.uniform(1, 20))


def _demo_users(session: Any, clock: FrozenClock, tenant_ids: list[str]) -> list[dict[str, str]]:
    """One console user per role (the viewer sees the first retailer only)."""
    out = []
    for email, name, role in DEMO_USERS:
        user = desk_users.create_user(
            session, clock=clock, email=email, name=name, password=DEMO_PASSWORD, is_admin=not role
        )
        if role is not None:
            for tenant_id in tenant_ids[:1] if role is Role.CLIENT_VIEWER else tenant_ids:
                desk_users.grant(session, clock=clock, user=user, tenant_id=tenant_id, role=role)
        out.append({"email": email, "role": str(role or "admin"), "password": DEMO_PASSWORD})
    return out
