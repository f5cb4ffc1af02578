"""A synthetic refund-fraud simulator: orders, refunds, returns and labels with known patterns.

The simulator is the project's own yardstick and the source of the shipped cold-start model,
so it is deliberately not easy: most customers are honest, and some honest customers look a
little like fraud (households and mobile carriers share addresses and IPs, bracketers return
most of what they buy, parcels really do vanish from porches after the carrier's delivery
scan, scales misweigh, gifts ship elsewhere than the card's address, people ask for store
credit). Signals go missing at realistic rates (guest checkouts, phone orders without a
device, returns nobody weighed). Labels arrive late and are sometimes wrong.

`simulate()` is pure (a seed gives the same data set); `write()` stores one in a tenant with
bulk inserts. Every pattern, its rate and its tell-tale signals are in docs/fraud.md.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from refunddesk.core.ids import new_id
from refunddesk.db.base import table_of

# The fraud patterns (and 'legit'): the ground truth of every simulated refund.
LEGIT = "legit"
SERIAL_RETURNER = "serial_returner"
WARDROBING = "wardrobing"
EMPTY_BOX = "empty_box"
INR_WITH_PROOF = "inr_with_delivery_proof"
RING = "linked_account_ring"
LABEL_SWITCH = "price_label_switch"
STOLEN_CARD = "stolen_card_refund"
PATTERNS = (
    SERIAL_RETURNER,
    WARDROBING,
    EMPTY_BOX,
    INR_WITH_PROOF,
    RING,
    LABEL_SWITCH,
    STOLEN_CARD,
)

SIM_ACTOR = "system:simulator"
SIM_NOTE = "simulated by `refunddesk fraud simulate` (never paid out)"

# Fraudsters per 10,000 orders (rings: rings per 10,000 orders; stolen cards: orders).
FRAUD_RATES: dict[str, float] = {
    SERIAL_RETURNER: 1.5,
    WARDROBING: 4.0,
    EMPTY_BOX: 4.0,
    INR_WITH_PROOF: 4.0,
    LABEL_SWITCH: 3.5,
    RING: 0.8,
    STOLEN_CARD: 8.0,
}
# Honest customers who look a bit like fraud (shares of honest customers or orders).
BRACKETER_SHARE = 0.03  # buy several sizes, return most of it
HOUSEHOLD_SHARE = 0.14  # share an address and home IP (sometimes a tablet) with 1-3 others
MOBILE_IP_SHARE = 0.25  # orders from a carrier's shared (CGNAT) address pool
GIFT_SHARE = 0.08  # billing address differs from the shipping address
ABROAD_SHARE = 0.02  # ... and in another country (expats, travellers)
LOST_WITHOUT_SCAN = 0.6  # honest "not received": no delivery scan (the rest: porch theft)
# Signals that go missing, per order / return (honest and fraud alike).
MISSING = {
    "customer_ref": 0.12,  # guest checkout: no account, no account age
    "device_id": 0.20,  # phone and agent orders, blocked fingerprinting
    "ip_address": 0.08,
    "payment_fingerprint": 0.06,
    "billing_address": 0.05,
    "line_weight": 0.07,  # catalogue entries without a weight
    "returned_weight": 0.20,  # parcels nobody weighed
    "delivered_at": 0.07,  # carriers without a delivery scan
}
# Label noise: fraud never discovered (labelled legit), honest refunds judged fraud.
FRAUD_MISSED = 0.02
LEGIT_MISJUDGED = 0.001
RETURN_WINDOW_DAYS = 30


@dataclass(frozen=True, slots=True)
class Product:
    sku: str
    name: str
    category: str
    price: int  # in cents; scaled to the tenant currency's minor units
    grams: int


CATALOGUE = (
    Product("AP-TEE", "Organic cotton T-shirt", "apparel", 2500, 180),
    Product("AP-JEAN", "Selvedge jeans", "apparel", 8900, 650),
    Product("AP-DRESS", "Silk evening dress", "apparel", 18900, 420),
    Product("AP-COAT", "Down winter coat", "apparel", 27900, 1600),
    Product("FW-SNK", "Running sneakers", "footwear", 12900, 900),
    Product("FW-BOOT", "Leather boots", "footwear", 19900, 1450),
    Product("EL-CBL", "USB-C cable", "electronics", 1500, 60),
    Product("EL-HP", "Noise-cancelling headphones", "electronics", 32900, 380),
    Product("EL-WATCH", "Smartwatch", "electronics", 39900, 260),
    Product("EL-CAM", "Mirrorless camera", "electronics", 89900, 900),
    Product("EL-PHONE", "Smartphone", "electronics", 99900, 430),
    Product("EL-LAPTOP", "Ultrabook laptop", "electronics", 149900, 1900),
    Product("HM-PAN", "Cast iron pan", "home", 5900, 2600),
    Product("HM-TWL", "Bath towels, set of 6", "home", 4800, 1500),
    Product("HM-LAMP", "Arc floor lamp", "home", 17900, 5200),
    Product("BT-PERF", "Eau de parfum", "beauty", 8900, 350),
    Product("BT-SKIN", "Skincare set", "beauty", 5400, 520),
)
BY_SKU = {p.sku: p for p in CATALOGUE}
# How often an honest order is refunded, by its most expensive line's category.
HONEST_REFUND_RATE = {
    "apparel": 0.26,
    "footwear": 0.20,
    "electronics": 0.09,
    "home": 0.07,
    "beauty": 0.05,
}
HONEST_REASONS = (
    ("changed_mind", 34),
    ("not_as_described", 14),
    ("defective", 14),
    ("damaged", 12),
    ("wrong_item", 8),
    ("not_received", 6),
    ("late_delivery", 5),
    ("price_adjustment", 3),
    ("other", 4),
)
RETURNED_REASONS = {"changed_mind", "not_as_described", "defective", "wrong_item", "damaged"}

COUNTRIES = {
    "DE": (("Berlin", "10115"), ("Hamburg", "20095"), ("Munich", "80331"), ("Cologne", "50667")),
    "FR": (("Paris", "75001"), ("Lyon", "69001"), ("Marseille", "13001")),
    "NL": (("Amsterdam", "1011"), ("Rotterdam", "3011"), ("Utrecht", "3511")),
    "AT": (("Vienna", "1010"), ("Graz", "8010")),
    "ES": (("Madrid", "28001"), ("Barcelona", "08001")),
}
COUNTRY_WEIGHTS = (("DE", 50), ("FR", 18), ("NL", 14), ("AT", 10), ("ES", 8))
STREETS = (
    "Hauptstrasse",
    "Lindenweg",
    "Rue de la Paix",
    "Keizersgracht",
    "Gran Via",
    "Bahnhofstrasse",
    "Schillerplatz",
    "Rue Victor Hugo",
    "Prinsengracht",
    "Calle Mayor",
    "Ringstrasse",
    "Goethestrasse",
)
FIRST = [
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
    "Ugo",
    "Vera",
    "Wim",
    "Xenia",
    "Yara",
    "Zeno",
]
LAST = [
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
    "Weber",
    "Moreau",
    "Visser",
    "Huber",
]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


@dataclass
class Customer:
    """One shopper (an account, or a guest identity) and the traits their orders carry."""

    persona: str  # 'honest', 'bracketer' or a fraud pattern
    ref: str | None
    email: str
    name: str
    phone: str | None
    since: datetime | None
    address: dict[str, str]
    billing: dict[str, str]
    devices: list[str]
    ips: list[str]
    cards: list[tuple[str, str]]  # (fingerprint, last4)
    ring: int | None = None


@dataclass
class Simulation:
    """A simulated data set: rows per table (column name -> value) and the ground truth."""

    start: datetime
    end: datetime
    orders: list[dict[str, Any]] = field(default_factory=list)
    order_lines: list[dict[str, Any]] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    refund_lines: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    returns: list[dict[str, Any]] = field(default_factory=list)
    return_lines: list[dict[str, Any]] = field(default_factory=list)
    labels: list[dict[str, Any]] = field(default_factory=list)
    # refund id -> the pattern that produced it (LEGIT for honest refunds); the truth,
    # which the labels only approximate (late chargebacks, label noise).
    truth: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Counts by table and refunds by pattern, with the fraud share of count and value."""
        amount = {r["id"]: r["amount_minor"] for r in self.refunds}
        by_pattern: dict[str, int] = {}
        for pattern in self.truth.values():
            by_pattern[pattern] = by_pattern.get(pattern, 0) + 1
        fraud_value = sum(amount[k] for k, p in self.truth.items() if p != LEGIT)
        total_value = sum(amount.values()) or 1
        frauds = sum(n for p, n in by_pattern.items() if p != LEGIT)
        return {
            "orders": len(self.orders),
            "refunds": len(self.refunds),
            "returns": len(self.returns),
            "labels": len(self.labels),
            "fraud_labels": sum(1 for lab in self.labels if lab["label"] == "fraud"),
            "refunds_by_pattern": dict(sorted(by_pattern.items())),
            "fraud_share": round(frauds / max(len(self.refunds), 1), 4),
            "fraud_value_share": round(fraud_value / total_value, 4),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
        }


class _Ids:
    """Reproducible ULIDs: the timestamp part from the row's time, the rest from the seed."""

    def __init__(self, seed: str) -> None:
        self._rng = random.Random(seed)

    def __call__(self, at: datetime) -> str:
        value = int(at.timestamp() * 1000) << 80 | self._rng.getrandbits(80)
        return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -5, -5))

    def reference(self) -> str:
        return "SM-" + "".join(self._rng.choice(_CROCKFORD) for _ in range(8))


def simulate(
    *,
    orders: int,
    seed: int,
    end: datetime,
    days: int = 180,
    currency: str = "EUR",
    minor_per_cent: float = 1.0,
    id_salt: str = "",
) -> Simulation:
    """Simulate about `orders` orders over `days` days before `end`, with refunds and labels.

    The content depends only on (orders, seed, end, days); id_salt (the tenant id) only
    changes the ids, so the same seed can be written into two tenants.
    """
    if orders < 1:
        raise ValueError("orders must be at least 1")
    if end.tzinfo is None:
        raise ValueError("end must be timezone-aware")
    sim = _Simulator(
        orders=orders,
        seed=seed,
        end=end.astimezone(UTC),
        days=days,
        currency=currency,
        scale=minor_per_cent,
        ids=_Ids(f"{seed}:{id_salt}"),
    )
    return sim.run()


class _Simulator:
    def __init__(
        self,
        *,
        orders: int,
        seed: int,
        end: datetime,
        days: int,
        currency: str,
        scale: float,
        ids: _Ids,
    ) -> None:
        self.n = orders
        self.rng = random.Random(seed)
        self.end = end
        self.start = end - timedelta(days=days)
        self.currency = currency
        self.scale = scale
        self.ids = ids
        self.out = Simulation(start=self.start, end=end)
        self.seq = 0
        per10k = orders / 10_000
        r = self.rng
        # Pools shared by many honest customers: a mobile carrier's CGNAT addresses.
        self.mobile_ips = [f"100.64.{r.randrange(256)}.{r.randrange(256)}" for _ in range(40)]
        self.per10k = per10k

    # ----------------------------------------------------------------- identities
    def _n(self, rate: float) -> int:
        """A whole count with mean `rate` (randomised rounding, so small runs still get some)."""
        whole = math.floor(rate)
        return whole + (1 if self.rng.random() < rate - whole else 0)

    def _address(self, country: str | None = None) -> dict[str, str]:
        r = self.rng
        country = country or _weighted(r, COUNTRY_WEIGHTS)
        city, postal = r.choice(COUNTRIES[country])
        return {
            "line1": f"{r.choice(STREETS)} {r.randint(1, 180)}",
            "line2": r.choice(["", "", "", f"Apt {r.randint(1, 40)}"]),
            "city": city,
            "postal_code": postal,
            "region": "",
            "country": country,
        }

    def _customer(self, persona: str, *, since: datetime | None = None) -> Customer:
        r = self.rng
        first, last = r.choice(FIRST), r.choice(LAST)
        self.seq += 1
        address = self._address()
        if since is None:
            # Most accounts predate the simulated months; some open during them.
            if r.random() < 0.7:
                since = self.start - timedelta(days=r.uniform(1, 1100))
            else:
                since = self.start + timedelta(days=r.uniform(0, (self.end - self.start).days - 20))
        guest = r.random() < MISSING["customer_ref"]
        return Customer(
            persona=persona,
            ref=None if guest else f"C{self.seq:07d}",
            email=f"{first}.{last}.{self.seq}@example.com".lower(),
            name=f"{first} {last}",
            phone=f"+49151{r.randint(1000000, 9999999)}" if r.random() < 0.7 else None,
            since=None if guest else since,
            address=address,
            billing=address,
            devices=[_hex(r, 16) for _ in range(r.choice((1, 1, 2)))],
            ips=[_ip(r) for _ in range(r.choice((1, 1, 2)))],
            cards=[(_hex(r, 32), f"{r.randint(0, 9999):04d}") for _ in range(r.choice((1, 1, 2)))],
        )

    # ----------------------------------------------------------------- the population
    def run(self) -> Simulation:
        r = self.rng
        budget = self.n
        # Fraudsters first (their orders count towards the total), then honest customers.
        planned: list[tuple[Customer, int]] = []
        for _ in range(self._n(FRAUD_RATES[SERIAL_RETURNER] * self.per10k)):
            planned.append((self._customer(SERIAL_RETURNER), r.randint(8, 16)))
        for _ in range(self._n(FRAUD_RATES[WARDROBING] * self.per10k)):
            planned.append((self._customer(WARDROBING), r.randint(3, 7)))
        for pattern in (EMPTY_BOX, INR_WITH_PROOF, LABEL_SWITCH):
            for _ in range(self._n(FRAUD_RATES[pattern] * self.per10k)):
                planned.append((self._customer(pattern), r.randint(2, 5)))
        for ring in range(self._n(FRAUD_RATES[RING] * self.per10k)):
            planned.extend((c, r.randint(1, 3)) for c in self._ring(ring))
        for _ in range(self._n(FRAUD_RATES[STOLEN_CARD] * self.per10k)):
            planned.append((self._stolen_card_identity(), 1))
        budget -= sum(n for _, n in planned)
        honest: list[Customer] = []
        while budget > 0:
            persona = "bracketer" if r.random() < BRACKETER_SHARE else "honest"
            customer = self._customer(persona)
            count = min(budget, 1 + int(r.expovariate(1 / 2.2)))
            honest.append(customer)
            planned.append((customer, count))
            budget -= count
        self._households(honest)
        for customer, count in planned:
            self._orders_of(customer, count)
        return self.out

    def _households(self, honest: list[Customer]) -> None:
        """Honest people living together share an address, a home IP, sometimes a tablet."""
        r = self.rng
        pool = [c for c in honest if r.random() < HOUSEHOLD_SHARE]
        r.shuffle(pool)
        i = 0
        while i < len(pool) - 1:
            size = min(r.randint(2, 4), len(pool) - i)
            head, members = pool[i], pool[i + 1 : i + size]
            for m in members:
                m.address = head.address
                m.billing = head.address
                m.ips = [head.ips[0], *m.ips[1:]]
                if r.random() < 0.3:
                    m.devices = [head.devices[0], *m.devices]
                if r.random() < 0.1:  # a shared family card
                    m.cards = [head.cards[0], *m.cards]
            i += size

    def _ring(self, ring: int) -> list[Customer]:
        """Accounts opened by one crew: few devices, proxies and cards, one drop address."""
        r = self.rng
        opened = self.start + timedelta(days=r.uniform(5, (self.end - self.start).days - 30))
        devices = [_hex(r, 16) for _ in range(r.randint(1, 3))]
        ips = [_ip(r) for _ in range(r.randint(2, 4))]
        cards = [(_hex(r, 32), f"{r.randint(0, 9999):04d}") for _ in range(r.randint(2, 3))]
        drop = self._address()
        members = []
        for _ in range(r.randint(4, 9)):
            c = self._customer(RING, since=opened + timedelta(days=r.uniform(0, 6)))
            c.ring = ring
            # Slight variations of one address, so only normalised matching links them.
            variant = dict(drop)
            variant["line1"] = r.choice(
                [drop["line1"], drop["line1"].upper(), drop["line1"].replace("strasse", "str.")]
            )
            variant["line2"] = r.choice(["", f"c/o {c.name.split()[1]}", "Apt 3", "apt. 3"])
            c.address = variant
            c.billing = variant if r.random() < 0.6 else self._address()
            c.devices = [r.choice(devices)]
            c.ips = r.sample(ips, k=min(2, len(ips)))
            c.cards = [r.choice(cards)]
            members.append(c)
        return members

    def _stolen_card_identity(self) -> Customer:
        """A fresh account (or a guest) paying with someone else's card, shipping elsewhere."""
        r = self.rng
        opened = self.start + timedelta(days=r.uniform(0, (self.end - self.start).days - 15))
        c = self._customer(STOLEN_CARD, since=opened)
        victim_country = _weighted(r, COUNTRY_WEIGHTS)
        c.billing = self._address(victim_country)
        c.ips = [_ip(r)]  # often a proxy or VPN exit
        return c

    # ----------------------------------------------------------------- orders
    def _orders_of(self, c: Customer, count: int) -> None:
        r = self.rng
        span_start = max(self.start, c.since or self.start)
        last_day = self.end - timedelta(days=12)
        if span_start >= last_day:
            span_start = last_day - timedelta(days=3)
        if c.persona in (RING, STOLEN_CARD):  # they cash out within days of opening
            span_end = min(last_day, span_start + timedelta(days=12))
        else:
            span_end = last_day
        width = (span_end - span_start).total_seconds()
        times = sorted(span_start + timedelta(seconds=r.uniform(0, width)) for _ in range(count))
        history = {"refunds": 0}
        for index, at in enumerate(times):
            self._order(c, at, index, history)

    def _pick_lines(self, c: Customer) -> list[tuple[Product, int]]:
        r = self.rng
        fraudy = {
            EMPTY_BOX: ("EL-HP", "EL-WATCH", "EL-CAM", "EL-PHONE", "EL-LAPTOP"),
            INR_WITH_PROOF: ("EL-HP", "EL-WATCH", "EL-PHONE", "BT-PERF", "FW-SNK", "AP-COAT"),
            RING: ("EL-PHONE", "EL-LAPTOP", "EL-CAM", "EL-WATCH", "EL-HP"),
            STOLEN_CARD: ("EL-PHONE", "EL-LAPTOP", "EL-CAM", "EL-WATCH", "BT-PERF"),
            LABEL_SWITCH: ("EL-CAM", "EL-HP", "FW-BOOT", "EL-WATCH", "AP-COAT"),
            WARDROBING: ("AP-DRESS", "AP-COAT", "EL-CAM", "FW-BOOT", "AP-JEAN"),
        }.get(c.persona)
        if c.persona == "bracketer" or (c.persona == SERIAL_RETURNER and r.random() < 0.5):
            # The same item in two or three sizes.
            product = r.choice([p for p in CATALOGUE if p.category in ("apparel", "footwear")])
            return [(product, r.randint(2, 3))]
        if fraudy and r.random() < 0.8:
            lines = [(BY_SKU[r.choice(fraudy)], 1)]
        else:
            lines = [(r.choice(CATALOGUE), 1)]
        while r.random() < 0.35 and len(lines) < 4:
            p = r.choice(CATALOGUE)
            if all(p.sku != q.sku for q, _ in lines):
                lines.append((p, r.choice((1, 1, 1, 2))))
        return lines

    def _order(self, c: Customer, at: datetime, index: int, history: dict[str, int]) -> None:
        r = self.rng
        out = self.out
        order_id = self.ids(at)
        lines = self._pick_lines(c)
        subtotal = 0
        for no, (p, qty) in enumerate(lines, start=1):
            unit = round(p.price * self.scale)
            subtotal += unit * qty
            out.order_lines.append(
                {
                    "order_id": order_id,
                    "line_no": no,
                    "sku": p.sku,
                    "name": p.name,
                    "category": p.category,
                    "quantity": qty,
                    "unit_price_minor": unit,
                    "weight_grams": None if r.random() < MISSING["line_weight"] else p.grams,
                }
            )
        shipping = round(495 * self.scale)
        tax = subtotal // 5
        mobile = c.persona == "honest" and r.random() < MOBILE_IP_SHARE
        ip = r.choice(self.mobile_ips) if mobile else r.choice(c.ips)
        device = r.choice(c.devices)
        card, last4 = r.choice(c.cards)
        billing = c.billing
        if c.persona in ("honest", "bracketer") and r.random() < GIFT_SHARE:
            abroad = r.random() < ABROAD_SHARE / GIFT_SHARE
            billing = (
                self._address() if abroad else {**c.address, "line1": self._address()["line1"]}
            )
        delivered: datetime | None = at + timedelta(days=r.uniform(1, 5), hours=r.uniform(0, 10))
        if r.random() < MISSING["delivered_at"] or delivered > self.end:  # type: ignore[operator]
            delivered = None
        device_missing = MISSING["device_id"] * (1.5 if c.persona in PATTERNS else 1.0)
        method = "card" if r.random() < 0.85 else "wallet"
        out.orders.append(
            {
                "id": order_id,
                "external_id": f"SIM-{order_id[-10:]}",
                "customer_email": c.email,
                "customer_phone": c.phone,
                "customer_name": c.name,
                "currency": self.currency,
                "shipping_minor": shipping,
                "tax_minor": tax,
                "total_minor": subtotal + shipping + tax,
                "payment_method": method,
                "payment_gateway": "sandbox",
                "payment_reference": f"sim_{order_id[-12:].lower()}",
                "purchased_at": at,
                "delivered_at": delivered,
                "created_at": at,
                "customer_ref": c.ref,
                "customer_since": c.since,
                "shipping_address": c.address,
                "billing_address": None if r.random() < MISSING["billing_address"] else billing,
                "ip_address": None if r.random() < MISSING["ip_address"] else ip,
                "device_id": None if r.random() < device_missing else device,
                "payment_fingerprint": (
                    None if r.random() < MISSING["payment_fingerprint"] else card
                ),
                "payment_last4": last4 if method == "card" else None,
            }
        )
        order = out.orders[-1]
        pattern = self._refund_pattern(c, index, lines, history)
        if pattern is not None:
            self._refund(c, order, lines, pattern, history)

    def _refund_pattern(
        self,
        c: Customer,
        index: int,
        lines: list[tuple[Product, int]],
        history: dict[str, int],
    ) -> str | None:
        """Whether this order is refunded, and as what (LEGIT or a fraud pattern)."""
        r = self.rng
        top = max(lines, key=lambda pq: pq[0].price)[0]
        honest_rate = HONEST_REFUND_RATE[top.category]
        persona = c.persona
        if persona == "honest":
            return LEGIT if r.random() < honest_rate else None
        if persona == "bracketer":
            return LEGIT if r.random() < 0.75 else None
        if persona == SERIAL_RETURNER:
            return SERIAL_RETURNER if r.random() < 0.85 else None
        if persona in (RING, STOLEN_CARD):
            return persona if r.random() < 0.92 else None
        # Opportunists: mostly ordinary shoppers, who strike on some orders.
        strike = {WARDROBING: 0.45, EMPTY_BOX: 0.55, INR_WITH_PROOF: 0.6, LABEL_SWITCH: 0.5}
        if r.random() < strike[persona]:
            return persona
        return LEGIT if r.random() < honest_rate else None

    # ----------------------------------------------------------------- refunds
    def _refund(
        self,
        c: Customer,
        order: dict[str, Any],
        lines: list[tuple[Product, int]],
        pattern: str,
        history: dict[str, int],
    ) -> None:
        r = self.rng
        delivered: datetime | None = order["delivered_at"]
        base = delivered or order["purchased_at"] + timedelta(days=4)
        reason = _weighted(r, HONEST_REASONS)
        condition: str | None = r.choice(["unopened", "unused", "unused", "used", None])
        method = "original"
        override: dict[str, Any] | None = None
        returned_ratio = r.uniform(1.02, 1.15)  # goods plus packaging
        delay = min(r.expovariate(1 / 6), 29.0)
        partial: float | None = None
        if pattern == LEGIT:
            if reason == "not_received":
                # Parcels really do go missing: most never got a delivery scan, but some
                # vanish from the porch after the carrier scanned them delivered.
                if delivered is not None and r.random() < LOST_WITHOUT_SCAN:
                    delivered = None
                    order["delivered_at"] = None
                delay = r.uniform(1, 10)
            if reason in ("damaged", "price_adjustment") and r.random() < 0.5:
                partial = r.choice((0.1, 0.2, 0.3, 0.5))
            if r.random() < 0.06:
                method = "store_credit"
            elif r.random() < 0.015:
                override = _bank_override(r, c.name)
            if r.random() < 0.04:  # returned part of a set, or kept the accessories
                returned_ratio = r.uniform(0.35, 0.8)
            elif r.random() < 0.01:  # the scale was wrong
                returned_ratio = r.uniform(0.05, 2.5)
        elif pattern == SERIAL_RETURNER:
            reason = r.choice(("changed_mind", "changed_mind", "not_as_described", "defective"))
            condition = r.choice(("used", "unused", None))
            delay = r.uniform(1, 28)
        elif pattern == WARDROBING:
            # Worn to the event, sent back just before the window closes as "unused".
            reason = r.choice(("changed_mind", "not_as_described", "changed_mind"))
            condition = r.choice(("unused", "unopened", None))
            delay = r.uniform(20, 29.5) if r.random() < 0.8 else r.uniform(5, 20)
        elif pattern == EMPTY_BOX:
            reason = r.choice(("changed_mind", "defective", "not_as_described"))
            condition = r.choice(("unopened", "unused"))
            returned_ratio = r.uniform(0.03, 0.25)
        elif pattern == INR_WITH_PROOF:
            reason = "not_received"
            condition = None
            delay = r.uniform(1, 10)
            if delivered is None:  # they pick parcels the carrier scanned as delivered
                delivered = order["purchased_at"] + timedelta(days=r.uniform(1, 4))
                if delivered < self.end:
                    order["delivered_at"] = delivered
                base = delivered
        elif pattern == LABEL_SWITCH:
            reason = r.choice(("changed_mind", "not_as_described", "defective"))
            condition = r.choice(("unopened", "unused"))
            # A cheaper look-alike comes back under the expensive item's label.
            returned_ratio = r.uniform(0.3, 0.75) if r.random() < 0.7 else r.uniform(1.35, 2.2)
        elif pattern == RING:
            reason = r.choice(("not_received", "damaged", "changed_mind", "not_received"))
            delay = r.uniform(0.5, 8)
            if reason != "not_received" and r.random() < 0.5:
                returned_ratio = r.uniform(0.05, 0.4)
            if r.random() < 0.4:
                method = "store_credit"
        elif pattern == STOLEN_CARD:
            # Refunded before the card holder notices, to a method the thief controls.
            reason = r.choice(("changed_mind", "not_as_described", "not_received"))
            delay = r.uniform(0.2, 5)
            # At intake a customer can ask for store credit instead of the original payment
            # (a bank account comes in only as a fallback after a failed payout).
            if r.random() < 0.8:
                method = "store_credit"
        created = base + timedelta(days=delay, minutes=r.uniform(0, 600))
        if reason == "not_received" and delivered is None:
            created = order["purchased_at"] + timedelta(days=r.uniform(7, 20))
        returned = reason in RETURNED_REASONS and partial is None
        if pattern in (EMPTY_BOX, LABEL_SWITCH):
            returned = True
        latest = self.end - timedelta(days=14 if returned else 2)
        if created > latest:
            return
        self._store_refund(
            c=c,
            order=order,
            lines=lines,
            pattern=pattern,
            reason=reason,
            condition=condition,
            method=method,
            override=override,
            created=created,
            partial=partial,
            returned_ratio=returned_ratio if returned else None,
            history=history,
        )

    def _store_refund(
        self,
        *,
        c: Customer,
        order: dict[str, Any],
        lines: list[tuple[Product, int]],
        pattern: str,
        reason: str,
        condition: str | None,
        method: str,
        override: dict[str, Any] | None,
        created: datetime,
        partial: float | None,
        returned_ratio: float | None,
        history: dict[str, int],
    ) -> None:
        r = self.rng
        out = self.out
        refund_id = self.ids(created)
        # Which lines come back: all of a fraud's; an honest bracketer keeps one size.
        if pattern == LEGIT and len(lines) > 1 and r.random() < 0.5:
            chosen = [r.choice(lines)]
        else:
            chosen = list(lines)
        if c.persona == "bracketer" or (pattern == SERIAL_RETURNER and chosen[0][1] > 1):
            chosen = [(chosen[0][0], max(1, chosen[0][1] - 1))]
        scaled = [(p, q, round(p.price * self.scale)) for p, q in chosen]
        goods = sum(q * unit for _, q, unit in scaled)
        amount = max(1, int(goods * partial)) if partial else goods
        history["refunds"] += 1
        truth = pattern
        if pattern == SERIAL_RETURNER and history["refunds"] <= 2:
            # Abuse is a pattern: the first returns of a serial returner are ordinary ones.
            truth = LEGIT
        label = "fraud" if truth != LEGIT else "legit"
        if label == "fraud" and r.random() < FRAUD_MISSED:
            label = "legit"
        elif label == "legit" and r.random() < LEGIT_MISJUDGED:
            label = "fraud"
        decided = created + timedelta(hours=r.uniform(0.1, 30))
        status = "succeeded"
        if label == "fraud" and pattern != STOLEN_CARD and r.random() < 0.5:
            status = "rejected"
        elif label == "legit" and r.random() < 0.05:
            status = r.choice(("rejected", "canceled"))
        received: datetime | None = None
        if returned_ratio is not None:
            return_id = self.ids(created)
            received = created + timedelta(days=r.uniform(2, 10))
            decided = received + timedelta(hours=r.uniform(1, 48))
            expected = sum(
                q * p.grams for p, q, _ in scaled
            )  # the catalogue weight of what should come back
            measured = (
                None
                if r.random() < MISSING["returned_weight"]
                else max(1, int(expected * returned_ratio * r.gauss(1.0, 0.03)))
            )
            inspected = r.choice(("unopened", "unused", "unused", "used"))
            if pattern in (WARDROBING, SERIAL_RETURNER):
                inspected = "used" if r.random() < 0.6 else "unused"
            out.returns.append(
                {
                    "id": return_id,
                    "refund_id": refund_id,
                    "status": "inspected",
                    "currency": self.currency,
                    "carrier": r.choice(("DHL", "DPD", "UPS", "PostNL")),
                    "tracking_number": f"SIM{return_id[-12:]}",
                    "expires_at": created + timedelta(days=RETURN_WINDOW_DAYS),
                    "received_at": received,
                    "inspected_at": received + timedelta(hours=r.uniform(1, 24)),
                    "settlement": None,
                    "created_at": created,
                    "updated_at": received,
                    "returned_weight_grams": measured,
                }
            )
            for p, q, unit in scaled:
                out.return_lines.append(
                    {
                        "return_id": return_id,
                        "sku": p.sku,
                        "quantity": q,
                        "unit_refund_minor": unit,
                        "received_quantity": q,
                        "condition": inspected,
                        "inspection": None,
                    }
                )
        out.refunds.append(
            {
                "id": refund_id,
                "order_id": order["id"],
                "reference": self.ids.reference(),
                "status": status,
                "reason": reason,
                "channel": r.choice(("api", "api", "portal", "portal", "agent")),
                "amount_minor": amount,
                "currency": self.currency,
                "note": SIM_NOTE,
                "decision_reasons": [],
                "approvals_required": 0,
                "refund_method": method,
                "requested_minor": amount if partial else None,
                "evidence": r.choice((["receipt", "photo"], ["photo"], ["receipt"], [])),
                "requested_method": method if method != "original" else None,
                "payout_override": override,
                "created_at": created,
                "updated_at": decided,
                "event_count": 2,
                "delivery_confirmation": (
                    None
                    if order["delivered_at"] is None
                    else _weighted(r, (("scan", 60), ("photo", 30), ("signature", 10)))
                ),
            }
        )
        if partial is None:
            for no, (p, q, unit) in enumerate(scaled, start=1):
                out.refund_lines.append(
                    {
                        "refund_id": refund_id,
                        "line_no": no,
                        "sku": p.sku,
                        "quantity": q,
                        "reason": reason,
                        "condition": condition,
                        "amount_minor": q * unit,
                    }
                )
        for seq, (kind, before, after, at) in enumerate(
            (
                ("refund.requested", None, "requested", created),
                ("refund.status_changed", "requested", status, decided),
            ),
            start=1,
        ):
            out.events.append(
                {
                    "id": self.ids(at),
                    "refund_id": refund_id,
                    "seq": seq,
                    "type": kind,
                    "from_status": before,
                    "to_status": after,
                    "actor": SIM_ACTOR,
                    "at": at,
                    "data": {"simulated": True},
                    "dispatched": True,
                }
            )
        out.truth[refund_id] = truth
        # Chargebacks come weeks later; agents decide within days; unlabelled if not yet.
        if pattern == STOLEN_CARD and label == "fraud":
            label_at, source = (
                order["purchased_at"] + timedelta(days=r.uniform(25, 70)),
                "chargeback",
            )
        else:
            label_at, source = decided + timedelta(days=r.uniform(0.5, 10)), "agent"
        if label_at <= self.end:
            out.labels.append(
                {
                    "refund_id": refund_id,
                    "label": label,
                    "source": source,
                    "actor": SIM_ACTOR,
                    "at": label_at,
                }
            )


def _weighted(r: random.Random, options: Sequence[tuple[str, int]]) -> str:
    return r.choices([o for o, _ in options], weights=[w for _, w in options])[0]


def _hex(r: random.Random, n: int) -> str:
    return f"{r.getrandbits(4 * n):0{n}x}"


def _ip(r: random.Random) -> str:
    first = r.choice((31, 46, 62, 77, 85, 91, 145, 176, 185, 213))
    return f"{first}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"


def _bank_override(r: random.Random, name: str) -> dict[str, Any]:
    return {
        "method": "bank_transfer",
        "bank_account": {"holder": name, "iban": f"DE{r.randrange(10**20):020d}"},
    }


# ---------------------------------------------------------------------- storing
# Parents before children; each is (table, rows attribute).
_TABLES = (
    ("orders", "orders"),
    ("order_lines", "order_lines"),
    ("refunds", "refunds"),
    ("refund_lines", "refund_lines"),
    ("refund_events", "events"),
    ("return_authorizations", "returns"),
    ("return_lines", "return_lines"),
    ("fraud_labels", "labels"),
)
BATCH = 2_000

Advance = Callable[[int], None]


def row_count(sim: Simulation) -> int:
    """Rows write() will insert (for a progress bar)."""
    return sum(len(getattr(sim, attr)) for _, attr in _TABLES)


def write(
    session: Session, *, tenant_id: str, sim: Simulation, advance: Advance | None = None
) -> dict[str, int]:
    """Insert a simulation into a tenant with Core executemany; return rows per table.

    Columns the schema lacks are left out, so the writer follows the schema. Nothing is
    queued: the refunds are in final states and have no payout jobs, so no money moves and,
    with their events marked dispatched, no customer is told anything.
    """
    from refunddesk.db.models import Base

    written: dict[str, int] = {}
    for name, attr in _TABLES:
        rows: list[dict[str, Any]] = getattr(sim, attr)
        table = Base.metadata.tables.get(name)
        if table is None or not rows:
            continue
        columns = set(table.c.keys())
        needs_id = "id" in columns and "id" not in rows[0]
        for start in range(0, len(rows), BATCH):
            chunk = rows[start : start + BATCH]
            prepared = []
            for row in chunk:
                values = {k: v for k, v in row.items() if k in columns}
                values["tenant_id"] = tenant_id
                if needs_id:
                    values["id"] = new_id()
                prepared.append(values)
            session.execute(insert(table), prepared)
            if advance is not None:
                advance(len(chunk))
        written[name] = len(rows)
    written["fraud_identity_keys"] = link_identities(
        session, tenant_id=tenant_id, orders=sim.orders
    )
    return written


def link_identities(session: Session, *, tenant_id: str, orders: Sequence[dict[str, Any]]) -> int:
    """Write the orders' identity keys with the linking capability's own definition of them.

    Each key carries its order's time, so linking as of a past moment sees only the orders
    placed by then.
    """
    from refunddesk.fraud.linking import key_rows
    from refunddesk.fraud.orm import IdentityKey

    table = table_of(IdentityKey)
    rows: list[dict[str, Any]] = []
    for order in orders:
        view = SimpleNamespace(tenant_id=tenant_id, **order)
        rows.extend(key_rows(view, now=order["created_at"]))
    for start in range(0, len(rows), BATCH):
        session.execute(insert(table), rows[start : start + BATCH])
    return len(rows)
