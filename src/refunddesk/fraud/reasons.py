"""Plain-language reasons from feature values, each said only when it is true of the refund."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import lru_cache

from refunddesk.core.errors import InvalidCurrency
from refunddesk.core.money import Money

# A renderer gets the refund's feature values and currency and returns the sentence, or None
# when the value does not support one (the signal is absent or benign on this refund).
Render = Callable[[Mapping[str, float], str], str | None]


def _n(value: float) -> int:
    return round(value)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _pct(value: float) -> str:
    return f"{round(value * 100)}%"


def _money(value: float, currency: str) -> str:
    return _format_money(round(value), currency)


@lru_cache(maxsize=65_536)  # batch rescoring says the same amounts many times
def _format_money(minor: int, currency: str) -> str:
    try:
        return Money(minor, currency).format()
    except InvalidCurrency:
        return f"{minor} {currency} minor units"


def _count(name: str, text: Callable[[int], str], *, at_least: int = 1) -> Render:
    def render(v: Mapping[str, float], _currency: str) -> str | None:
        value = v[name]
        if math.isnan(value) or _n(value) < at_least:
            return None
        return text(_n(value))

    return render


def _when(name: str, ok: Callable[[float], bool], text: Callable[[float, str], str]) -> Render:
    def render(v: Mapping[str, float], currency: str) -> str | None:
        value = v[name]
        if math.isnan(value) or not ok(value):
            return None
        return text(value, currency)

    return render


def _customer_refunds(days: int) -> Render:
    return _count(
        f"cust_refunds_{days}d",
        lambda n: f"{_plural(n, 'earlier refund')} by this customer in {days} days",
    )


def _customer_value(days: int) -> Render:
    return _when(
        f"cust_refund_value_{days}d",
        lambda x: x > 0,
        lambda x, c: f"earlier refunds worth {_money(x, c)} by this customer in {days} days",
    )


_KIND_WORDS = {
    "device": "this device",
    "payment": "this payment card or account",
    "address": "this address",
    "email": "this email address pattern",
}


def _kind_accounts(kind: str) -> Render:
    return _count(
        f"linked_{kind}_accounts",
        lambda n: (
            f"{_plural(n, 'other account')} {'shares' if n == 1 else 'share'} {_KIND_WORDS[kind]}"
        ),
    )


def _kind_refunds(kind: str) -> Render:
    return _count(
        f"linked_{kind}_refunds_30d",
        lambda n: f"{_plural(n, 'refund')} in 30 days from accounts sharing {_KIND_WORDS[kind]}",
    )


def _not_received(v: Mapping[str, float], _currency: str) -> str | None:
    value = v["not_received_but_delivered"]
    if value >= 1.0:
        return "claims not received, but the carrier has a signature or photo of the delivery"
    if value >= 0.5:
        return "claims not received, but the carrier recorded the parcel as delivered"
    return None


def _weight(v: Mapping[str, float], _currency: str) -> str | None:
    ratio = v["returned_weight_ratio"]
    if math.isnan(ratio):
        return None
    if ratio < 0.8:
        return f"the returned parcel weighs {_pct(ratio)} of what the goods should weigh"
    if ratio > 1.25:
        return f"the returned parcel weighs {_pct(ratio)} of what the goods should (other goods?)"
    return None


def _wardrobing(v: Mapping[str, float], _currency: str) -> str | None:
    used = v["worn_window_used"]
    if v["worn_category"] < 1 or math.isnan(used) or used < 0.6:
        return None
    return f"worn-use items returned {_pct(min(used, 9.99))} of the way into the return window"


def _repeat_rate(v: Mapping[str, float], _currency: str) -> str | None:
    # The rate counts this refund: said only for a customer who has asked before.
    rate = v["cust_refund_rate_365d"]
    if math.isnan(rate) or rate < 0.5 or v["cust_refunds_365d"] < 1:
        return None
    return (
        f"the customer asked for refunds on {_pct(min(rate, 9.99))} of their orders in the "
        "last year"
    )


RENDER: dict[str, Render] = {
    "cust_refunds_30d": _customer_refunds(30),
    "cust_refunds_90d": _customer_refunds(90),
    "cust_refunds_365d": _customer_refunds(365),
    "cust_refund_value_30d": _customer_value(30),
    "cust_refund_value_90d": _customer_value(90),
    "cust_refund_value_365d": _customer_value(365),
    "cust_orders_365d": _when(
        "cust_orders_365d",
        lambda x: x <= 2,
        lambda x, _: f"the customer placed only {_plural(_n(x), 'order')} in the last year",
    ),
    "cust_refund_rate_365d": _repeat_rate,
    "order_prior_refunds": _count(
        "order_prior_refunds", lambda n: f"{_plural(n, 'earlier refund')} on this order"
    ),
    "account_age_days": _when(
        "account_age_days",
        lambda x: x < 30,
        lambda x, _: f"the account was created {_plural(math.floor(x), 'day')} before the claim",
    ),
    "days_delivery_to_claim": _when(
        "days_delivery_to_claim",
        lambda x: x >= 0,
        lambda x, _: f"claimed {_plural(math.floor(x), 'day')} after delivery",
    ),
    "days_purchase_to_claim": _when(
        "days_purchase_to_claim",
        lambda x: x >= 0,
        lambda x, _: f"claimed {_plural(math.floor(x), 'day')} after purchase",
    ),
    "not_received_but_delivered": _not_received,
    "returned_weight_ratio": _weight,
    "refund_amount_minor": _when(
        "refund_amount_minor", lambda x: x > 0, lambda x, c: f"a refund of {_money(x, c)}"
    ),
    "refund_to_order_ratio": _when(
        "refund_to_order_ratio",
        lambda x: x >= 0.9,
        lambda x, _: f"the refund is {_pct(x)} of the order",
    ),
    "high_risk_category_share": _when(
        "high_risk_category_share",
        lambda x: x > 0,
        lambda x, _: f"{_pct(x)} of the value is in high-risk categories (electronics, luxury)",
    ),
    "worn_category": _wardrobing,
    "worn_window_used": _wardrobing,
    "tenant_refunds_1h": _count(
        "tenant_refunds_1h",
        lambda n: f"{_plural(n, 'refund')} across the store in the last hour",
        at_least=2,
    ),
    "tenant_velocity_ratio": _when(
        "tenant_velocity_ratio",
        lambda x: x >= 2,
        lambda x, _: f"refunds across the store run at {x:.1f}x the usual hourly rate",
    ),
    "linked_accounts": _count(
        "linked_accounts",
        lambda n: (
            f"linked to {_plural(n, 'other account')} by a shared device, card, address "
            "or email pattern"
        ),
    ),
    "linked_refunds_30d": _count(
        "linked_refunds_30d", lambda n: f"{_plural(n, 'refund')} in 30 days from linked accounts"
    ),
    "linked_refund_rate": _when(
        "linked_refund_rate",
        lambda x: x >= 0.3,
        lambda x, _: f"linked accounts asked for refunds on {_pct(min(x, 9.99))} of their orders",
    ),
    "payout_method_differs": _when(
        "payout_method_differs",
        lambda x: x >= 1,
        lambda x, _: "the refund is to go to a different method than the one paid with",
    ),
    "evidence_count": _when(
        "evidence_count", lambda x: x == 0, lambda x, _: "no evidence (photo, receipt) given"
    ),
}
for _kind in _KIND_WORDS:
    RENDER[f"linked_{_kind}_accounts"] = _kind_accounts(_kind)
    RENDER[f"linked_{_kind}_refunds_30d"] = _kind_refunds(_kind)


def render(name: str, values: Mapping[str, float], currency: str) -> str | None:
    """The sentence for one feature on one refund, or None when it says nothing true."""
    renderer = RENDER.get(name)
    return renderer(values, currency) if renderer is not None else None
