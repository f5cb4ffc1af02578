"""Fraud features of refunds, from the database, with a few set-based queries.

Two paths, one arithmetic: `feature_matrix` (training, evaluation and batch rescoring: many
refunds, IN-list queries in chunks, `compute_matrix` in numpy) and `intake_features` (one
refund being requested, not yet stored: prepared statements on covering indexes, then
`compute_one`, the same arithmetic in plain Python; a test pins that they agree).

Times are seconds since the epoch inside this module. History counts look back from a
cut-off: the refund's own creation time (what intake saw), or `as_of` when given (a
rescore sees what has happened since). A refund never counts itself.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np
from sqlalchemy import (
    BigInteger,
    BindParameter,
    String,
    and_,
    bindparam,
    case,
    func,
    literal,
    select,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BinaryExpression
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import ExternallyTraversible, replacement_traverse

from refunddesk.db.prepared import Driver, Prepared
from refunddesk.fraud.linking import LinkKind, customer_key, identity_keys, identity_of
from refunddesk.fraud.orm import IdentityKey
from refunddesk.orders.orm import Order, OrderLine
from refunddesk.refunds.domain import RefundStatus
from refunddesk.refunds.orm import Refund, RefundLine
from refunddesk.returns.orm import ReturnRecord

DAY = 86_400.0
HOUR = 3_600.0
# Categories whose refunds are worth more to a fraudster (resale value), and those worn once
# and sent back (wardrobing). Matched as substrings of the order line's category.
HIGH_RISK_CATEGORIES = ("electronic", "luxury", "jewel", "watch", "phone", "computer", "gaming")
WORN_CATEGORIES = ("apparel", "clothing", "fashion", "dress", "shoe", "wear", "costume")
# The return window wardrobing is measured against when the claim comes.
WINDOW_DAYS = 30.0
# A delivery proven by signature or photo contradicts "not received" more than a scan does.
STRONG_CONFIRMATIONS = frozenset({"signature", "photo"})
# One key shared by more orders than this (a marketplace's warehouse, a shared office) links
# only its first holders: a cluster lookup stays bounded.
MAX_KEY_FANOUT = 500
_CHUNK = 2_000

FEATURE_NAMES: tuple[str, ...] = (
    "cust_refunds_30d",
    "cust_refunds_90d",
    "cust_refunds_365d",
    "cust_refund_value_30d",
    "cust_refund_value_90d",
    "cust_refund_value_365d",
    "cust_orders_365d",
    "cust_refund_rate_365d",
    "order_prior_refunds",
    "account_age_days",
    "days_delivery_to_claim",
    "days_purchase_to_claim",
    "not_received_but_delivered",
    "returned_weight_ratio",
    "refund_amount_minor",
    "refund_to_order_ratio",
    "high_risk_category_share",
    "worn_category",
    "worn_window_used",
    "tenant_refunds_1h",
    "tenant_velocity_ratio",
    "linked_accounts",
    "linked_refunds_30d",
    "linked_refund_rate",
    "linked_device_accounts",
    "linked_device_refunds_30d",
    "linked_payment_accounts",
    "linked_payment_refunds_30d",
    "linked_address_accounts",
    "linked_address_refunds_30d",
    "linked_email_accounts",
    "linked_email_refunds_30d",
    "payout_method_differs",
    "evidence_count",
)
INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}
# The kinds with a feature pair of their own (the retailer's account id counts in the total).
KIND_FEATURES = (LinkKind.DEVICE, LinkKind.PAYMENT, LinkKind.ADDRESS, LinkKind.EMAIL)

# Missing inputs, in the words a reviewer reads.
MISSING_ACCOUNT_AGE = "customer account creation date"
MISSING_DELIVERY = "carrier delivery confirmation"
MISSING_WEIGHT = "returned parcel weight"
MISSING_LINE_WEIGHT = "line weights"
MISSING_DEVICE = "device id"
MISSING_PAYMENT = "payment fingerprint"
MISSING_ADDRESS = "shipping address"


@dataclass(frozen=True, slots=True)
class FeatureMatrix:
    """Feature values of refunds: NaN where a signal is missing, with what was missing."""

    refund_ids: list[str]
    names: tuple[str, ...]
    values: np.ndarray  # float64 [n, k]
    missing: list[list[str]]

    def row(self, refund_id: str) -> dict[str, float]:
        i = self.refund_ids.index(refund_id)
        return {name: float(self.values[i, j]) for j, name in enumerate(self.names)}


@dataclass(frozen=True, slots=True)
class ClaimLine:
    category: str
    quantity: int
    amount_minor: int
    weight_grams: int | None


@dataclass(slots=True)
class Claim:
    """One refund as the features read it."""

    refund_id: str
    order_id: str
    created_at: float
    reason: str
    amount_minor: int
    evidence_count: int
    requested_method: str | None
    delivery_confirmation: str | None
    order_total_minor: int
    payment_method: str
    purchased_at: float
    delivered_at: float | None
    email: str
    customer_since: float | None
    keys: dict[str, LinkKind]
    returned_weight_grams: int | None = None
    currency: str = ""
    risk_level: str | None = None  # as stored before a rescore
    # The refund itself is among the history rows (stored and not canceled): never counted.
    counted: bool = False
    lines: list[ClaimLine] = field(default_factory=list)
    # For a refund by amount (no lines): the order's lines, value by category.
    order_lines: list[ClaimLine] = field(default_factory=list)


# --- history: what the features look back at -------------------------------------------------

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
_SPAN = 1 << 42  # ms since the epoch stay below this until 2109: group * _SPAN + ms is unique


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


@dataclass
class History:
    """What the features look back at, for one or many claims, as flat arrays.

    Built with HistoryBuilder. Times are ms since the epoch.
    """

    customers: dict[str, int]  # stored email -> group
    orders: dict[str, int]  # order id -> group
    refund_customer: np.ndarray  # the customers' refunds (not canceled)
    refund_order: np.ndarray
    refund_ms: np.ndarray
    refund_amount: np.ndarray
    order_customer: np.ndarray  # the customers' orders
    order_ms: np.ndarray
    # key hash -> {customer_key: ms its first order with the key was placed}
    key_holders: dict[str, dict[str, int]]
    holders: dict[str, int]  # linked customer_key -> group
    holder_refund: np.ndarray
    holder_refund_ms: np.ndarray
    holder_order: np.ndarray
    holder_order_ms: np.ndarray
    tenant_ms: np.ndarray  # the tenant's refund times around the claims, sorted
    velocity: tuple[int, int] | None = None  # one claim: (last 24 hours, last hour)
    _groups: dict[str, _Groups] = field(default_factory=dict, repr=False)

    def groups(self, name: str) -> _Groups:
        """The sorted view of one kind of history, made once (a scan serves many chunks)."""
        found = self._groups.get(name)
        if found is None:
            if name == "refunds":
                found = _Groups(self.refund_customer, self.refund_ms, self.refund_amount)
            elif name == "orders":
                found = _Groups(self.order_customer, self.order_ms)
            elif name == "order_refunds":
                found = _Groups(self.refund_order, self.refund_ms)
            elif name == "holder_refunds":
                found = _Groups(self.holder_refund, self.holder_refund_ms)
            else:
                found = _Groups(self.holder_order, self.holder_order_ms)
            self._groups[name] = found
        return found


class HistoryBuilder:
    """Collects history rows as queries return them; build() makes the arrays."""

    def __init__(self) -> None:
        self.customers: dict[str, int] = {}
        self.orders: dict[str, int] = {}
        self.refunds: list[tuple[int, int, int, int]] = []
        self.customer_orders: list[tuple[int, int]] = []
        self.key_holders: dict[str, dict[str, int]] = defaultdict(dict)
        self.holders: dict[str, int] = {}
        self.holder_refunds: list[tuple[int, int]] = []
        self.holder_orders: list[tuple[int, int]] = []
        self.tenant_ms: list[int] = []
        self.velocity: tuple[int, int] | None = None

    @staticmethod
    def _group(table: dict[str, int], key: str) -> int:
        found = table.get(key)
        if found is None:
            found = table[key] = len(table)
        return found

    def refund(self, email: str, order_id: str, ms: int, amount: int) -> None:
        self.refunds.append(
            (self._group(self.customers, email), self._group(self.orders, order_id), ms, amount)
        )

    def order(self, email: str, ms: int) -> None:
        self.customer_orders.append((self._group(self.customers, email), ms))

    def holder(self, digest: str, holder: str, first_ms: int) -> None:
        seen = self.key_holders[digest]
        if len(seen) < MAX_KEY_FANOUT or holder in seen:
            seen[holder] = min(first_ms, seen.get(holder, first_ms))

    def holder_refund(self, holder: str, ms: int) -> None:
        self.holder_refunds.append((self._group(self.holders, holder), ms))

    def holder_order(self, holder: str, ms: int) -> None:
        self.holder_orders.append((self._group(self.holders, holder), ms))

    def build(self) -> History:
        def cols(rows: list[tuple[int, ...]], width: int) -> list[np.ndarray]:
            if not rows:
                return [np.zeros(0, dtype=np.int64) for _ in range(width)]
            array = np.array(rows, dtype=np.int64).reshape(len(rows), width)
            return [array[:, i] for i in range(width)]

        rc, ro, rms, ramount = cols(self.refunds, 4)  # type: ignore[arg-type]
        oc, oms = cols(self.customer_orders, 2)  # type: ignore[arg-type]
        hr, hrms = cols(self.holder_refunds, 2)  # type: ignore[arg-type]
        ho, homs = cols(self.holder_orders, 2)  # type: ignore[arg-type]
        return History(
            customers=self.customers,
            orders=self.orders,
            refund_customer=rc,
            refund_order=ro,
            refund_ms=rms,
            refund_amount=ramount,
            order_customer=oc,
            order_ms=oms,
            key_holders=dict(self.key_holders),
            holders=self.holders,
            holder_refund=hr,
            holder_refund_ms=hrms,
            holder_order=ho,
            holder_order_ms=homs,
            tenant_ms=np.sort(np.array(self.tenant_ms, dtype=np.int64)),
            velocity=self.velocity,
        )


class _Groups:
    """Times (and amounts) by group, sorted so a window of one group is two binary searches."""

    def __init__(self, group: np.ndarray, ms: np.ndarray, amount: np.ndarray | None = None):
        key = group * _SPAN + ms
        order = np.argsort(key, kind="stable")
        self.key = key[order]
        values = amount[order] if amount is not None else np.zeros(len(key), dtype=np.int64)
        self.cum = np.concatenate(([0], np.cumsum(values)))

    def window(
        self, group: np.ndarray, lo: np.ndarray, hi: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Count and amount of each group's entries with lo <= ms <= hi (group -1: none)."""
        base = np.where(group >= 0, group * _SPAN, -_SPAN)
        a = np.searchsorted(self.key, base + np.maximum(lo, 0), side="left")
        b = np.searchsorted(self.key, base + np.maximum(hi, -1), side="right")
        b = np.maximum(a, b)
        return b - a, self.cum[b] - self.cum[a]


@lru_cache(maxsize=4096)  # a catalogue has few categories; batches ask about each many times
def _matches(category: str, needles: tuple[str, ...]) -> bool:
    lowered = category.lower()
    return any(n in lowered for n in needles)


def _claim_scalars(c: Claim) -> tuple[float, ...]:
    """Features of the claim alone: delivery contradiction, weight, categories, method."""
    nan = math.nan
    if c.reason == "not_received":
        if c.delivery_confirmation in STRONG_CONFIRMATIONS:
            not_received = 1.0
        elif c.delivery_confirmation is not None or c.delivered_at is not None:
            not_received = 0.5
        else:
            not_received = 0.0
    else:
        not_received = 0.0
    expected = 0
    weighed = bool(c.lines)
    for line in c.lines:
        if line.weight_grams is None:
            weighed = False
            break
        expected += line.weight_grams * line.quantity
    ratio = (
        c.returned_weight_grams / expected
        if c.returned_weight_grams is not None and weighed and expected > 0
        else nan
    )
    basis = c.lines or c.order_lines
    total = sum(line.amount_minor for line in basis)
    risky = (
        sum(line.amount_minor for line in basis if _matches(line.category, HIGH_RISK_CATEGORIES))
        / total
        if total > 0
        else 0.0
    )
    worn = any(_matches(line.category, WORN_CATEGORIES) for line in basis)
    since = c.delivered_at if c.delivered_at is not None else c.purchased_at
    window_used = max(c.created_at - since, 0.0) / DAY / WINDOW_DAYS if worn else nan
    method = c.requested_method
    differs = 1.0 if method is not None and method not in ("original", c.payment_method) else 0.0
    return (
        not_received,
        ratio,
        risky,
        1.0 if worn else 0.0,
        window_used,
        differs,
        float(c.evidence_count),
        float(c.amount_minor),
        c.amount_minor / c.order_total_minor if c.order_total_minor > 0 else nan,
        (c.created_at - c.customer_since) / DAY if c.customer_since is not None else nan,
        (c.created_at - c.delivered_at) / DAY if c.delivered_at is not None else nan,
        (c.created_at - c.purchased_at) / DAY,
    )


_SCALAR_FEATURES = (
    "not_received_but_delivered",
    "returned_weight_ratio",
    "high_risk_category_share",
    "worn_category",
    "worn_window_used",
    "payout_method_differs",
    "evidence_count",
    "refund_amount_minor",
    "refund_to_order_ratio",
    "account_age_days",
    "days_delivery_to_claim",
    "days_purchase_to_claim",
)
_KIND_SLOT = {kind: i for i, kind in enumerate(KIND_FEATURES)}


def compute_matrix(
    claims: Sequence[Claim], history: History, *, as_of: float | None = None
) -> np.ndarray:
    """The features of many claims at once ([n, k], FEATURE_NAMES order, NaN = missing)."""
    n = len(claims)
    out = np.full((n, len(FEATURE_NAMES)), np.nan)
    if n == 0:
        return out
    col = INDEX
    created = np.fromiter((_ms(c.created_at) for c in claims), dtype=np.int64, count=n)
    cut = created.copy() if as_of is None else np.full(n, _ms(as_of), dtype=np.int64)
    counted = np.fromiter((c.counted for c in claims), dtype=bool, count=n) & (created <= cut)
    amount = np.fromiter((c.amount_minor for c in claims), dtype=np.int64, count=n)
    cust = np.fromiter((history.customers.get(c.email, -1) for c in claims), np.int64, count=n)
    order = np.fromiter((history.orders.get(c.order_id, -1) for c in claims), np.int64, count=n)

    # The customer's own refunds and orders; the refund itself never counts.
    refunds = history.groups("refunds")
    for days, count_name, value_name in (
        (30, "cust_refunds_30d", "cust_refund_value_30d"),
        (90, "cust_refunds_90d", "cust_refund_value_90d"),
        (365, "cust_refunds_365d", "cust_refund_value_365d"),
    ):
        counts, values = refunds.window(cust, cut - days * DAY_MS, cut)
        own = counted & (cut - created <= days * DAY_MS)
        out[:, col[count_name]] = counts - own
        out[:, col[value_name]] = values - own * amount
    orders, _ = history.groups("orders").window(cust, cut - 365 * DAY_MS, cut)
    orders = np.maximum(orders, 1)  # this refund's order counts, whenever it was placed
    out[:, col["cust_orders_365d"]] = orders
    out[:, col["cust_refund_rate_365d"]] = (out[:, col["cust_refunds_365d"]] + 1) / orders
    prior, _ = history.groups("order_refunds").window(
        order, np.zeros(n, dtype=np.int64), np.minimum(created, cut)
    )
    out[:, col["order_prior_refunds"]] = prior - counted

    # What the claim itself says.
    scalars = np.array([_claim_scalars(c) for c in claims], dtype=np.float64)
    for j, name in enumerate(_SCALAR_FEATURES):
        out[:, col[name]] = scalars[:, j]
    account = out[:, col["account_age_days"]]
    out[:, col["account_age_days"]] = np.where(np.isnan(account), np.nan, np.maximum(account, 0))

    # Velocity across the tenant: the last hour against the hourly rate of the last day.
    if history.velocity is not None:
        last_day = np.full(n, history.velocity[0])
        last_hour = np.full(n, history.velocity[1])
    else:
        times = history.tenant_ms
        hi = np.searchsorted(times, cut, side="left")
        last_hour = hi - np.searchsorted(times, cut - HOUR_MS, side="left")
        last_day = hi - np.searchsorted(times, cut - 24 * HOUR_MS, side="left")
    out[:, col["tenant_refunds_1h"]] = last_hour
    out[:, col["tenant_velocity_ratio"]] = (last_hour + 1) / ((last_day + 1) / 24.0)

    # Linked identities: other customers holding one of the claim's keys by the cut-off.
    for name in ("linked_accounts", "linked_refunds_30d"):
        out[:, col[name]] = 0.0
    for kind in KIND_FEATURES:
        out[:, col[f"linked_{kind}_accounts"]] = 0.0
        out[:, col[f"linked_{kind}_refunds_30d"]] = 0.0
    pairs: list[tuple[int, int, frozenset[LinkKind]]] = []
    for i, c in enumerate(claims):
        owner = customer_key(c.email)
        by_holder: dict[str, set[LinkKind]] = {}
        for digest, kind in c.keys.items():
            for holder, first in history.key_holders.get(digest, {}).items():
                if holder != owner and first <= cut[i]:
                    by_holder.setdefault(holder, set()).add(kind)
        for holder, kinds in by_holder.items():
            pairs.append((i, history.holders.get(holder, -1), frozenset(kinds)))
    if pairs:
        who = np.array([p[0] for p in pairs], dtype=np.int64)
        group = np.array([p[1] for p in pairs], dtype=np.int64)
        at = cut[who]
        holder_refunds = history.groups("holder_refunds")
        n30, _ = holder_refunds.window(group, at - 30 * DAY_MS, at)
        n365, _ = holder_refunds.window(group, at - 365 * DAY_MS, at)
        o365, _ = history.groups("holder_orders").window(group, at - 365 * DAY_MS, at)
        o365 = np.maximum(o365, 1)
        rate_refunds = np.zeros(n)
        rate_orders = np.zeros(n)
        for p, (i, _group, shared) in enumerate(pairs):
            out[i, col["linked_accounts"]] += 1
            out[i, col["linked_refunds_30d"]] += n30[p]
            rate_refunds[i] += n365[p]
            rate_orders[i] += o365[p]
            for kind in shared:
                if kind in _KIND_SLOT:
                    out[i, col[f"linked_{kind}_accounts"]] += 1
                    out[i, col[f"linked_{kind}_refunds_30d"]] += n30[p]
        linked = rate_orders > 0
        out[linked, col["linked_refund_rate"]] = rate_refunds[linked] / rate_orders[linked]
    return out


def compute(claim: Claim, history: History, *, as_of: float | None = None) -> list[float]:
    """The feature vector of one claim (FEATURE_NAMES order)."""
    return [float(x) for x in compute_matrix([claim], history, as_of=as_of)[0]]


def compute_one(claim: Claim, builder: HistoryBuilder) -> np.ndarray:
    """compute_matrix([claim], builder.build()) for one claim, in plain Python ([1, k]).

    Intake scores one refund at a time: numpy's cost per call on one-element arrays was most
    of its features' time. Same arithmetic in the same order, so the same values (a test
    compares the two on random histories).
    """
    out = [math.nan] * len(FEATURE_NAMES)
    col = INDEX
    created = _ms(claim.created_at)
    cut = created
    counted = claim.counted
    group = builder.customers.get(claim.email, -1)
    order = builder.orders.get(claim.order_id, -1)
    mine = [(o, ms, a) for g, o, ms, a in builder.refunds if g == group]
    for days, count_name, value_name in (
        (30, "cust_refunds_30d", "cust_refund_value_30d"),
        (90, "cust_refunds_90d", "cust_refund_value_90d"),
        (365, "cust_refunds_365d", "cust_refund_value_365d"),
    ):
        lo = max(cut - days * DAY_MS, 0)
        count = value = 0
        for _o, ms, a in mine:
            if lo <= ms <= cut:
                count += 1
                value += a
        own = counted and cut - created <= days * DAY_MS
        out[col[count_name]] = float(count - own)
        out[col[value_name]] = float(value - own * claim.amount_minor)
    lo = max(cut - 365 * DAY_MS, 0)
    orders = sum(1 for g, ms in builder.customer_orders if g == group and lo <= ms <= cut)
    orders = max(orders, 1)
    out[col["cust_orders_365d"]] = float(orders)
    out[col["cust_refund_rate_365d"]] = (out[col["cust_refunds_365d"]] + 1) / orders
    prior = sum(1 for g, o, ms, _a in builder.refunds if o == order and 0 <= ms <= created)
    out[col["order_prior_refunds"]] = float(prior - counted)

    for name, value_ in zip(_SCALAR_FEATURES, _claim_scalars(claim), strict=True):
        out[col[name]] = value_
    account = out[col["account_age_days"]]
    if not math.isnan(account):
        out[col["account_age_days"]] = max(account, 0.0)

    if builder.velocity is not None:
        last_day, last_hour = builder.velocity
    else:
        last_hour = sum(1 for t in builder.tenant_ms if cut - HOUR_MS <= t < cut)
        last_day = sum(1 for t in builder.tenant_ms if cut - 24 * HOUR_MS <= t < cut)
    out[col["tenant_refunds_1h"]] = float(last_hour)
    out[col["tenant_velocity_ratio"]] = (last_hour + 1) / ((last_day + 1) / 24.0)

    for name in ("linked_accounts", "linked_refunds_30d"):
        out[col[name]] = 0.0
    for kind in KIND_FEATURES:
        out[col[f"linked_{kind}_accounts"]] = 0.0
        out[col[f"linked_{kind}_refunds_30d"]] = 0.0
    owner = customer_key(claim.email)
    by_holder: dict[str, set[LinkKind]] = {}
    for digest, kind in claim.keys.items():
        for holder, first in builder.key_holders.get(digest, {}).items():
            if holder != owner and first <= cut:
                by_holder.setdefault(holder, set()).add(kind)
    if by_holder:
        refunds_of: dict[int, list[int]] = defaultdict(list)
        for g, ms in builder.holder_refunds:
            refunds_of[g].append(ms)
        orders_of: dict[int, list[int]] = defaultdict(list)
        for g, ms in builder.holder_orders:
            orders_of[g].append(ms)
        lo30, lo365 = max(cut - 30 * DAY_MS, 0), max(cut - 365 * DAY_MS, 0)
        rate_refunds = rate_orders = 0.0
        for holder, kinds in by_holder.items():
            g = builder.holders.get(holder, -1)
            times = refunds_of.get(g, [])
            n30 = sum(1 for ms in times if lo30 <= ms <= cut)
            n365 = sum(1 for ms in times if lo365 <= ms <= cut)
            o365 = max(sum(1 for ms in orders_of.get(g, []) if lo365 <= ms <= cut), 1)
            out[col["linked_accounts"]] += 1
            out[col["linked_refunds_30d"]] += n30
            rate_refunds += n365
            rate_orders += o365
            for kind in kinds:
                if kind in _KIND_SLOT:
                    out[col[f"linked_{kind}_accounts"]] += 1
                    out[col[f"linked_{kind}_refunds_30d"]] += n30
        out[col["linked_refund_rate"]] = rate_refunds / rate_orders
    return np.array([out], dtype=np.float64)


def missing_inputs(claim: Claim) -> list[str]:
    """The optional signals this refund came without."""
    out: list[str] = []
    kinds = set(claim.keys.values())
    if claim.customer_since is None:
        out.append(MISSING_ACCOUNT_AGE)
    if claim.delivered_at is None and claim.delivery_confirmation is None:
        out.append(MISSING_DELIVERY)
    if any(line.weight_grams is None for line in claim.lines):
        out.append(MISSING_LINE_WEIGHT)
    if claim.lines and claim.returned_weight_grams is None:
        out.append(MISSING_WEIGHT)
    if LinkKind.DEVICE not in kinds:
        out.append(MISSING_DEVICE)
    if LinkKind.PAYMENT not in kinds:
        out.append(MISSING_PAYMENT)
    if LinkKind.ADDRESS not in kinds:
        out.append(MISSING_ADDRESS)
    return out


def build_matrix(
    claims: Sequence[Claim], history: History, *, as_of: float | None = None
) -> FeatureMatrix:
    return FeatureMatrix(
        refund_ids=[c.refund_id for c in claims],
        names=FEATURE_NAMES,
        values=compute_matrix(claims, history, as_of=as_of),
        missing=[missing_inputs(c) for c in claims],
    )


# --- batch: many stored refunds ---------------------------------------------------------------


class epoch_ms(FunctionElement[int]):
    """A timestamp column as integer ms since the epoch, computed by the database."""

    type = BigInteger()
    inherit_cache = True


@compiles(epoch_ms)
def _epoch_ms_sqlite(element: epoch_ms, compiler: Any, **kw: Any) -> str:
    # SQLite stores naive UTC text (db/base.py); julianday() reads it.
    arg = compiler.process(next(iter(element.clauses)), **kw)
    return f"CAST(ROUND((julianday({arg}) - 2440587.5) * 86400000.0) AS INTEGER)"


@compiles(epoch_ms, "postgresql")
def _epoch_ms_pg(element: epoch_ms, compiler: Any, **kw: Any) -> str:
    arg = compiler.process(next(iter(element.clauses)), **kw)
    return f"CAST(ROUND(EXTRACT(EPOCH FROM {arg}) * 1000) AS BIGINT)"


def _chunks(items: Sequence[str], size: int = _CHUNK) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


_T: BindParameter[str] = bindparam("tenant_id")
_IDS: BindParameter[list[str]] = bindparam("ids", expanding=True)
_NOT_CANCELED = Refund.status != str(RefundStatus.CANCELED)

_CLAIMS = (
    select(
        Refund.id,
        Refund.order_id,
        epoch_ms(Refund.created_at).label("created_ms"),
        Refund.reason,
        Refund.amount_minor,
        Refund.currency,
        Refund.status,
        Refund.evidence,
        Refund.requested_method,
        Refund.delivery_confirmation,
        Refund.risk_level,
        Order.total_minor,
        Order.payment_method,
        epoch_ms(Order.purchased_at).label("purchased_ms"),
        epoch_ms(Order.delivered_at).label("delivered_ms"),
        Order.customer_email,
        epoch_ms(Order.customer_since).label("since_ms"),
        ReturnRecord.returned_weight_grams,
    )
    .join(Order, and_(Order.tenant_id == Refund.tenant_id, Order.id == Refund.order_id))
    .outerjoin(
        ReturnRecord,
        and_(ReturnRecord.tenant_id == Refund.tenant_id, ReturnRecord.refund_id == Refund.id),
    )
    .where(Refund.tenant_id == _T, Refund.id.in_(_IDS))
)
_CLAIM_LINES = (
    select(
        RefundLine.refund_id,
        OrderLine.category,
        RefundLine.quantity,
        RefundLine.amount_minor,
        OrderLine.weight_grams,
    )
    .join(Refund, and_(Refund.tenant_id == RefundLine.tenant_id, Refund.id == RefundLine.refund_id))
    .join(
        OrderLine,
        and_(
            OrderLine.tenant_id == Refund.tenant_id,
            OrderLine.order_id == Refund.order_id,
            OrderLine.sku == RefundLine.sku,
        ),
    )
    .where(RefundLine.tenant_id == _T, RefundLine.refund_id.in_(_IDS))
)
_ORDER_LINES = select(
    OrderLine.order_id,
    OrderLine.category,
    OrderLine.quantity,
    OrderLine.unit_price_minor,
    OrderLine.weight_grams,
).where(OrderLine.tenant_id == _T, OrderLine.order_id.in_(_IDS))
_ORDER_KEYS = select(IdentityKey.order_id, IdentityKey.key_hash, IdentityKey.kind).where(
    IdentityKey.tenant_id == _T, IdentityKey.order_id.in_(_IDS)
)
_CUSTOMER_ORDERS = select(Order.customer_email, Order.id, epoch_ms(Order.purchased_at)).where(
    Order.tenant_id == _T, Order.customer_email.in_(_IDS)
)
_HOLDERS = (
    select(
        IdentityKey.key_hash, IdentityKey.customer_key, func.min(epoch_ms(IdentityKey.created_at))
    )
    .where(IdentityKey.tenant_id == _T, IdentityKey.key_hash.in_(_IDS))
    .group_by(IdentityKey.key_hash, IdentityKey.customer_key)
)
# The orders of linked customers (one row per order, whatever its number of keys) ...
_HOLDER_ORDERS = (
    select(
        IdentityKey.customer_key, IdentityKey.order_id, func.min(epoch_ms(IdentityKey.created_at))
    )
    .where(IdentityKey.tenant_id == _T, IdentityKey.customer_key.in_(_IDS))
    .group_by(IdentityKey.customer_key, IdentityKey.order_id)
)
# ... and their refunds, by order (ix_refunds_tenant_order).
_ORDER_REFUNDS = select(Refund.order_id, epoch_ms(Refund.created_at), Refund.amount_minor).where(
    Refund.tenant_id == _T, Refund.order_id.in_(_IDS), _NOT_CANCELED
)
_TENANT_TIMES = Prepared(
    select(epoch_ms(Refund.created_at)).where(
        Refund.tenant_id == _T,
        Refund.created_at >= bindparam("since"),
        Refund.created_at <= bindparam("until"),
    )
)


# IN-lists are prepared at a few lengths, the unused places NULL (which IN never matches):
# SQLAlchemy's expanding parameters cost more per chunk than the database's work.
_SLOT_SIZES = (16, 256, _CHUNK)
_SLOT_NAMES = [f"i{n}" for n in range(_CHUNK)]
_in_lists: dict[tuple[int, int], Prepared] = {}


def _in_list(stmt: Any, size: int) -> Prepared:
    """stmt with its expanding "ids" IN-list as `size` plain parameters, prepared."""
    key = (id(stmt), size)
    found = _in_lists.get(key)
    if found is None:
        slots = [bindparam(name, type_=String) for name in _SLOT_NAMES[:size]]

        def replace(element: Any, **_kw: Any) -> Any:
            right = getattr(element, "right", None)
            if (
                isinstance(element, BinaryExpression)
                and isinstance(right, BindParameter)
                and right.key == _IDS.key
            ):
                return element.left.in_(slots)
            return None

        source: ExternallyTraversible = stmt
        replaced: Any = replacement_traverse(source, {}, replace)
        found = _in_lists[key] = Prepared(replaced)
    return found


def _rows(session: Session, stmt: Any, tenant_id: str, ids: Iterable[str]) -> Iterator[Any]:
    """stmt's rows (plain tuples) for every id, in chunks of at most _CHUNK ids."""
    session.flush()  # the driver's connection sees only what the session has written
    db = Driver.of(session)
    for chunk in _chunks(sorted(set(ids))):
        size = next(s for s in _SLOT_SIZES if s >= len(chunk))
        params: dict[str, Any] = dict(zip(_SLOT_NAMES[: len(chunk)], chunk, strict=True))
        for name in _SLOT_NAMES[len(chunk) : size]:
            params[name] = None
        params["tenant_id"] = tenant_id
        yield from db.tuples(_in_list(stmt, size), params)


def _seconds(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000.0


def load_claims(session: Session, *, tenant_id: str, refund_ids: Sequence[str]) -> list[Claim]:
    """The refunds (in the order asked; unknown ids are left out) with lines and keys."""
    found: dict[str, Claim] = {}
    canceled = str(RefundStatus.CANCELED)
    for row in _rows(session, _CLAIMS, tenant_id, refund_ids):
        (
            rid,
            order_id,
            created,
            reason,
            amount,
            currency,
            status,
            evidence,
            method,
            confirmation,
            level,
            total,
            payment,
            purchased,
            delivered,
            email,
            since,
            weight,
        ) = row
        found[rid] = Claim(
            refund_id=rid,
            order_id=order_id,
            created_at=created / 1000.0,
            reason=reason,
            amount_minor=int(amount),
            evidence_count=len(evidence or ()),
            requested_method=method,
            delivery_confirmation=confirmation,
            order_total_minor=int(total),
            payment_method=payment,
            purchased_at=purchased / 1000.0,
            delivered_at=_seconds(delivered),
            email=email,
            customer_since=_seconds(since),
            keys={},
            returned_weight_grams=weight,
            currency=currency,
            risk_level=level,
            counted=status != canceled,
        )
    for refund_id, category, quantity, value, weight in _rows(
        session, _CLAIM_LINES, tenant_id, found
    ):
        found[refund_id].lines.append(ClaimLine(category, int(quantity), int(value), weight))
    by_order: dict[str, list[Claim]] = defaultdict(list)
    for claim in found.values():
        by_order[claim.order_id].append(claim)
    for order_id, digest, kind in _rows(session, _ORDER_KEYS, tenant_id, by_order):
        for claim in by_order[order_id]:
            claim.keys[digest] = LinkKind(kind)
    by_amount = {c.order_id for c in found.values() if not c.lines}
    if by_amount:
        for order_id, category, quantity, price, weight in _rows(
            session, _ORDER_LINES, tenant_id, by_amount
        ):
            line = ClaimLine(category, int(quantity), int(quantity * price), weight)
            for claim in by_order[order_id]:
                if not claim.lines:
                    claim.order_lines.append(line)
    return [found[i] for i in refund_ids if i in found]


def _linked_holders(session: Session, tenant_id: str, builder: HistoryBuilder) -> None:
    """Orders and refunds of the linked customers the builder has found."""
    wanted = set(builder.holders)
    if not wanted:
        return
    holder_of: dict[str, str] = {}
    for holder, order_id, ms in _rows(session, _HOLDER_ORDERS, tenant_id, wanted):
        builder.holder_order(holder, int(ms))
        holder_of[order_id] = holder
    for order_id, ms, _amount in _rows(session, _ORDER_REFUNDS, tenant_id, holder_of):
        builder.holder_refund(holder_of[order_id], int(ms))


def load_history(
    session: Session, *, tenant_id: str, claims: Sequence[Claim], as_of: float | None
) -> History:
    """Everything the claims' features look back at: a few IN-list queries per chunk."""
    builder = HistoryBuilder()
    emails = {c.email for c in claims}
    email_of: dict[str, str] = {}
    for email, order_id, ms in _rows(session, _CUSTOMER_ORDERS, tenant_id, emails):
        builder.order(email, int(ms))
        email_of[order_id] = email
    # By order (ix_refunds_tenant_order), not by a join the planner may start from refunds.
    for order_id, ms, amount in _rows(session, _ORDER_REFUNDS, tenant_id, email_of):
        builder.refund(email_of[order_id], order_id, int(ms), int(amount))
    digests = {d for c in claims for d in c.keys}
    for digest, holder, first in _rows(session, _HOLDERS, tenant_id, digests):
        builder.holder(digest, holder, int(first))
    # Linked: holders other than each claim's own customer (one claim's customer may be
    # another's linked account, so owners are only left out where they hold their own keys).
    for claim in claims:
        own = customer_key(claim.email)
        for digest in claim.keys:
            for holder in builder.key_holders.get(digest, {}):
                if holder != own:
                    builder._group(builder.holders, holder)
    _linked_holders(session, tenant_id, builder)
    if claims:
        cuts = [c.created_at if as_of is None else as_of for c in claims]
        since = datetime.fromtimestamp(min(cuts) - 24 * HOUR, UTC)
        until = datetime.fromtimestamp(max(cuts), UTC)
        rows = Driver.of(session).tuples(
            _TENANT_TIMES, {"tenant_id": tenant_id, "since": since, "until": until}
        )
        builder.tenant_ms = [int(r[0]) for r in rows]
    return builder.build()


# A batch this large reads the tenant's whole history in a few scans instead of IN-lists.
SCAN_FROM = 20_000
_ALL_ORDERS = Prepared(
    select(Order.customer_email, Order.id, epoch_ms(Order.purchased_at)).where(
        Order.tenant_id == _T
    )
)
_ALL_REFUNDS = Prepared(
    select(Refund.order_id, epoch_ms(Refund.created_at), Refund.amount_minor).where(
        Refund.tenant_id == _T, _NOT_CANCELED
    )
)
_SHARED = (
    select(IdentityKey.key_hash)
    .where(IdentityKey.tenant_id == _T)
    .group_by(IdentityKey.key_hash)
    .having(func.count(func.distinct(IdentityKey.customer_key)) > 1)
)
_SHARED_HOLDERS = Prepared(
    select(
        IdentityKey.key_hash, IdentityKey.customer_key, func.min(epoch_ms(IdentityKey.created_at))
    )
    .where(IdentityKey.tenant_id == _T, IdentityKey.key_hash.in_(_SHARED))
    .group_by(IdentityKey.key_hash, IdentityKey.customer_key)
)


def scan_history(
    session: Session, *, tenant_id: str, claims: Sequence[Claim], as_of: float | None
) -> History:
    """The same History as load_history, from scans of the tenant's orders, refunds and
    shared identity keys: cheaper per row when the claims reach most customers.

    Linked customers' orders are found by email here (by identity key in load_history);
    the two differ only for orders stored before identity keys were written.
    """
    params = {"tenant_id": tenant_id}
    session.flush()  # the driver's connection sees only what the session has written
    db = Driver.of(session)
    orders = db.tuples(_ALL_ORDERS, params)
    customers: dict[str, int] = {}
    n = len(orders)
    order_customer = np.fromiter(
        (customers.setdefault(email, len(customers)) for email, _o, _m in orders), np.int64, n
    )
    order_ms = np.fromiter((ms for _e, _o, ms in orders), np.int64, n)
    order_index = {order_id: i for i, (_e, order_id, _m) in enumerate(orders)}
    refunds = db.tuples(_ALL_REFUNDS, params)
    m = len(refunds)
    refund_order = np.fromiter((order_index.get(o, -1) for o, _m, _a in refunds), np.int64, m)
    known = refund_order >= 0
    refund_order = refund_order[known]
    refund_ms = np.fromiter((ms for _o, ms, _a in refunds), np.int64, m)[known]
    refund_amount = np.fromiter((a for _o, _m, a in refunds), np.int64, m)[known]
    refund_customer = order_customer[refund_order]
    key_holders: dict[str, dict[str, int]] = defaultdict(dict)
    for digest, holder, first in db.tuples(_SHARED_HOLDERS, params):
        seen = key_holders[digest]
        if len(seen) < MAX_KEY_FANOUT:
            seen[holder] = int(first)
    by_key = {customer_key(email): i for email, i in customers.items()}
    holders = {h: by_key.get(h, -1) for seen in key_holders.values() for h in seen}
    tenant_ms: list[int] = []
    if claims or as_of is not None:
        cuts = [as_of] if as_of is not None else [c.created_at for c in claims]
        since = datetime.fromtimestamp(min(cuts) - 24 * HOUR, UTC)
        until = datetime.fromtimestamp(max(cuts), UTC)
        tenant_ms = [
            int(r[0])
            for r in db.tuples(
                _TENANT_TIMES, {"tenant_id": tenant_id, "since": since, "until": until}
            )
        ]
    return History(
        customers=customers,
        orders=order_index,
        refund_customer=refund_customer,
        refund_order=refund_order,
        refund_ms=refund_ms,
        refund_amount=refund_amount,
        order_customer=order_customer,
        order_ms=order_ms,
        key_holders=dict(key_holders),
        holders=holders,
        holder_refund=refund_customer,
        holder_refund_ms=refund_ms,
        holder_order=order_customer,
        holder_order_ms=order_ms,
        tenant_ms=np.sort(np.array(tenant_ms, dtype=np.int64)),
    )


def feature_matrix(
    session: Session,
    *,
    tenant_id: str,
    refund_ids: Sequence[str],
    as_of: datetime | None = None,
) -> FeatureMatrix:
    """Features of stored refunds of one tenant (rows in the order of refund_ids)."""
    cut = as_of.timestamp() if as_of is not None else None
    claims = load_claims(session, tenant_id=tenant_id, refund_ids=refund_ids)
    load = scan_history if len(claims) >= SCAN_FROM else load_history
    history = load(session, tenant_id=tenant_id, claims=claims, as_of=cut)
    return build_matrix(claims, history, as_of=cut)


# --- intake: one refund, not yet stored -------------------------------------------------------

_KEY_SLOTS = 6  # email, account, two addresses, device, payment
_ORDER: BindParameter[str] = bindparam("order_id")
_INTAKE_ORDER = Prepared(
    select(
        Order.payment_method,
        Order.customer_since,
        Order.customer_ref,
        Order.shipping_address,
        Order.billing_address,
        Order.device_id,
        Order.payment_fingerprint,
        Order.customer_email,
        OrderLine.sku,
        OrderLine.category,
        OrderLine.quantity,
        OrderLine.unit_price_minor,
        OrderLine.weight_grams,
    )
    .join(OrderLine, and_(OrderLine.tenant_id == Order.tenant_id, OrderLine.order_id == Order.id))
    .where(Order.tenant_id == _T, Order.id == _ORDER)
)
# The customer's orders (kind O) and refunds (kind R), one statement.
_INTAKE_HISTORY = Prepared(
    union_all(
        select(
            literal("O", String).label("kind"),
            epoch_ms(Order.purchased_at).label("ms"),
            literal(0, BigInteger).label("amount"),
            Order.id.label("order_id"),
        ).where(Order.tenant_id == _T, Order.customer_email == bindparam("email")),
        # IN (the customer's orders), not a join: planners then always start from the
        # customer's orders (SQLite, without statistics, would otherwise scan the refunds).
        select(
            literal("R", String),
            epoch_ms(Refund.created_at),
            Refund.amount_minor,
            Refund.order_id,
        ).where(
            Refund.tenant_id == _T,
            Refund.order_id.in_(
                select(Order.id).where(
                    Order.tenant_id == _T, Order.customer_email == bindparam("email")
                )
            ),
            _NOT_CANCELED,
        ),
    )
)
_INTAKE_HOLDERS = Prepared(
    select(
        IdentityKey.key_hash, IdentityKey.customer_key, func.min(epoch_ms(IdentityKey.created_at))
    )
    .where(
        IdentityKey.tenant_id == _T,
        IdentityKey.key_hash.in_([bindparam(f"k{i}") for i in range(_KEY_SLOTS)]),
    )
    .group_by(IdentityKey.key_hash, IdentityKey.customer_key)
    .limit(MAX_KEY_FANOUT * _KEY_SLOTS)
)
# Linked customers' orders (O: one row per order, as _HOLDER_ORDERS) and their refunds (R),
# for up to _HOLDER_SLOTS customers a statement.
_HOLDER_SLOTS = 16
_SLOTS: list[BindParameter[str]] = [bindparam(f"h{i}") for i in range(_HOLDER_SLOTS)]
_INTAKE_LINKED = Prepared(
    union_all(
        select(
            literal("O", String).label("kind"),
            IdentityKey.customer_key,
            IdentityKey.order_id,
            func.min(epoch_ms(IdentityKey.created_at)).label("ms"),
        )
        .where(IdentityKey.tenant_id == _T, IdentityKey.customer_key.in_(_SLOTS))
        .group_by(IdentityKey.customer_key, IdentityKey.order_id),
        select(
            literal("R", String),
            literal("", String),
            Refund.order_id,
            epoch_ms(Refund.created_at),
        ).where(
            Refund.tenant_id == _T,
            Refund.order_id.in_(
                select(IdentityKey.order_id).where(
                    IdentityKey.tenant_id == _T, IdentityKey.customer_key.in_(_SLOTS)
                )
            ),
            _NOT_CANCELED,
        ),
    )
)
_SINCE: BindParameter[datetime] = bindparam("since")
_VELOCITY = Prepared(
    select(
        func.count(),
        func.coalesce(func.sum(case((Refund.created_at >= bindparam("hour"), 1), else_=0)), 0),
    ).where(
        Refund.tenant_id == _T, Refund.created_at >= _SINCE, Refund.created_at < bindparam("now")
    )
)


@dataclass(frozen=True, slots=True)
class IntakeRequest:
    """A refund being requested, as intake has it before it is stored."""

    refund_id: str
    order_id: str
    created_at: datetime
    reason: str
    amount_minor: int
    evidence_count: int
    requested_method: str | None
    delivery_confirmation: str | None
    order_total_minor: int
    purchased_at: datetime
    delivered_at: datetime | None
    lines: Mapping[str, int]  # sku -> quantity (empty for a refund by amount)


def intake_claim(db: Driver, *, tenant_id: str, request: IntakeRequest) -> Claim:
    """The claim of a refund being requested: one statement for its order and lines."""
    rows = db.all(_INTAKE_ORDER, {"tenant_id": tenant_id, "order_id": request.order_id})
    first = rows[0]
    lines: list[ClaimLine] = []
    order_lines: list[ClaimLine] = []
    for row in rows:
        value = int(row.quantity) * int(row.unit_price_minor)
        order_lines.append(ClaimLine(row.category, int(row.quantity), value, row.weight_grams))
        quantity = request.lines.get(row.sku)
        if quantity:
            lines.append(
                ClaimLine(
                    row.category, quantity, quantity * int(row.unit_price_minor), row.weight_grams
                )
            )
    since = first.customer_since
    return Claim(
        refund_id=request.refund_id,
        order_id=request.order_id,
        created_at=request.created_at.timestamp(),
        reason=request.reason,
        amount_minor=request.amount_minor,
        evidence_count=request.evidence_count,
        requested_method=request.requested_method,
        delivery_confirmation=request.delivery_confirmation,
        order_total_minor=request.order_total_minor,
        payment_method=first.payment_method,
        purchased_at=request.purchased_at.timestamp(),
        delivered_at=request.delivered_at.timestamp() if request.delivered_at else None,
        email=first.customer_email,
        customer_since=since.timestamp() if since is not None else None,
        keys=identity_keys(identity_of(first)),
        lines=lines,
        order_lines=[] if lines else order_lines,
    )


def intake_history(db: Driver, *, tenant_id: str, claim: Claim) -> HistoryBuilder:
    """What one claim looks back at, as rows (compute_one reads them): three prepared
    statements, one more per 16 linked customers."""
    builder = HistoryBuilder()
    params = {"tenant_id": tenant_id, "email": claim.email}
    for kind, ms, amount, order_id in db.all(_INTAKE_HISTORY, params):
        if kind == "O":
            builder.order(claim.email, int(ms))
        else:
            builder.refund(claim.email, order_id, int(ms), int(amount))
    digests = list(claim.keys)[:_KEY_SLOTS]
    key_params: dict[str, Any] = {"tenant_id": tenant_id}
    for i in range(_KEY_SLOTS):
        key_params[f"k{i}"] = digests[i] if i < len(digests) else None
    own = customer_key(claim.email)
    for digest, holder, first in db.all(_INTAKE_HOLDERS, key_params):
        builder.holder(digest, holder, int(first))
        if holder != own:
            builder._group(builder.holders, holder)
    _intake_linked(db, tenant_id, builder)  # none for an honest customer
    builder.velocity = _velocity(db, tenant_id, datetime.fromtimestamp(claim.created_at, UTC))
    return builder


def _intake_linked(db: Driver, tenant_id: str, builder: HistoryBuilder) -> None:
    """_linked_holders with prepared statements: the linked customers' orders and refunds."""
    wanted = sorted(builder.holders)
    for start in range(0, len(wanted), _HOLDER_SLOTS):
        params: dict[str, Any] = {"tenant_id": tenant_id}
        for i in range(_HOLDER_SLOTS):
            params[f"h{i}"] = wanted[start + i] if start + i < len(wanted) else None
        holder_of: dict[str, str] = {}
        refunds: list[tuple[str, int]] = []
        for kind, holder, order_id, ms in db.all(_INTAKE_LINKED, params):
            if kind == "O":
                builder.holder_order(holder, int(ms))
                holder_of[order_id] = holder
            else:
                refunds.append((order_id, int(ms)))
        for order_id, ms in refunds:  # after every order: rows of a UNION come in any order
            builder.holder_refund(holder_of[order_id], ms)


# Velocity is a coarse signal: one count per tenant per few seconds serves every refund
# in them (counting a busy day of refunds costs more than the rest of a refund's features).
VELOCITY_SECONDS = 5
_velocity_cache: dict[tuple[str, int], tuple[int, int]] = {}


def _velocity(db: Driver, tenant_id: str, now: datetime) -> tuple[int, int]:
    """How many refunds the tenant had in the 24 hours and in the hour before now."""
    key = (tenant_id, int(now.timestamp()) // VELOCITY_SECONDS)
    found = _velocity_cache.get(key)
    if found is not None:
        return found
    if len(_velocity_cache) > 4096:
        _velocity_cache.clear()
    found = _velocity_cache[key] = _count_velocity(db, tenant_id, now)
    return found


def _count_velocity(db: Driver, tenant_id: str, now: datetime) -> tuple[int, int]:
    row = db.first(
        _VELOCITY,
        {
            "tenant_id": tenant_id,
            "since": now - timedelta(hours=24),
            "hour": now - timedelta(hours=1),
            "now": now,
        },
    )
    assert row is not None
    return int(row[0]), int(row[1])


def intake_features(
    session: Session, *, tenant_id: str, request: IntakeRequest
) -> tuple[Claim, np.ndarray, list[str]]:
    """Features of a refund being requested: its claim, a [1, k] row and the missing inputs."""
    db = Driver.of(session)
    claim = intake_claim(db, tenant_id=tenant_id, request=request)
    history = intake_history(db, tenant_id=tenant_id, claim=claim)
    return claim, compute_one(claim, history), missing_inputs(claim)
