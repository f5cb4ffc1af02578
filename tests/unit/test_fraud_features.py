"""Each fraud feature on hand-built refunds and histories (no database)."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest

from refunddesk.fraud.features import (
    DAY,
    FEATURE_NAMES,
    HOUR,
    MISSING_ACCOUNT_AGE,
    MISSING_DELIVERY,
    MISSING_DEVICE,
    MISSING_WEIGHT,
    Claim,
    ClaimLine,
    History,
    HistoryBuilder,
    compute,
    compute_matrix,
    compute_one,
    missing_inputs,
)
from refunddesk.fraud.linking import LinkKind, OrderIdentity, customer_key, identity_keys, key_hash

T0 = 1_800_000_000.0  # the claim's time


def claim(**overrides: Any) -> Claim:
    base: dict[str, Any] = {
        "refund_id": "R1",
        "order_id": "O1",
        "created_at": T0,
        "reason": "damaged",
        "amount_minor": 5_000,
        "evidence_count": 1,
        "requested_method": None,
        "delivery_confirmation": None,
        "order_total_minor": 10_000,
        "payment_method": "card",
        "purchased_at": T0 - 10 * DAY,
        "delivered_at": T0 - 7 * DAY,
        "email": "eve@example.com",
        "customer_since": None,
        "keys": identity_keys(OrderIdentity(email="eve@example.com", device_id="dev-1")),
        "lines": [ClaimLine("general", 1, 5_000, None)],
    }
    base.update(overrides)
    return Claim(**base)


def ms(seconds: float) -> int:
    return round(seconds * 1000)


def features(c: Claim, history: History | None = None, **kw: Any) -> dict[str, float]:
    h = history if history is not None else HistoryBuilder().build()
    return dict(zip(FEATURE_NAMES, compute(c, h, **kw), strict=True))


def test_every_feature_has_a_value_slot() -> None:
    assert len(compute(claim(), HistoryBuilder().build())) == len(FEATURE_NAMES)
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)


def test_customer_refund_counts_and_values_by_window_exclude_the_refund_itself() -> None:
    b = HistoryBuilder()
    for at, amount, order in [
        (T0 - 5 * DAY, 100, "O0"),
        (T0 - 60 * DAY, 200, "O0"),
        (T0 - 200 * DAY, 400, "O0"),
        (T0 - 400 * DAY, 800, "O0"),  # older than a year
        (T0, 5_000, "O1"),  # the refund itself
        (T0 + DAY, 1, "O0"),  # after the claim
    ]:
        b.refund("eve@example.com", order, ms(at), amount)
    f = features(claim(counted=True), b.build())
    assert (f["cust_refunds_30d"], f["cust_refunds_90d"], f["cust_refunds_365d"]) == (1, 2, 3)
    assert f["cust_refund_value_30d"] == 100
    assert f["cust_refund_value_90d"] == 300
    assert f["cust_refund_value_365d"] == 700


def test_as_of_counts_what_happened_since_the_claim() -> None:
    b = HistoryBuilder()
    b.refund("eve@example.com", "O0", ms(T0 + DAY), 1)
    h = b.build()
    assert features(claim(), h)["cust_refunds_30d"] == 0
    assert features(claim(), h, as_of=T0 + 2 * DAY)["cust_refunds_30d"] == 1


def test_refund_rate_counts_this_refund_over_orders_of_the_year() -> None:
    b = HistoryBuilder()
    for at in (T0 - 10 * DAY, T0 - 20 * DAY, T0 - 500 * DAY):
        b.order("eve@example.com", ms(at))
    b.refund("eve@example.com", "O0", ms(T0 - 15 * DAY), 100)
    f = features(claim(), b.build())
    assert f["cust_orders_365d"] == 2
    assert f["cust_refund_rate_365d"] == pytest.approx(2 / 2)


def test_prior_refunds_on_the_same_order() -> None:
    b = HistoryBuilder()
    b.refund("eve@example.com", "O1", ms(T0 - DAY), 100)
    b.refund("eve@example.com", "O2", ms(T0 - DAY), 100)
    b.refund("eve@example.com", "O1", ms(T0), 100)  # the refund itself
    assert features(claim(counted=True), b.build())["order_prior_refunds"] == 1


def test_account_age_is_missing_without_a_creation_date() -> None:
    assert math.isnan(features(claim())["account_age_days"])
    assert features(claim(customer_since=T0 - 3 * DAY))["account_age_days"] == pytest.approx(3)


def test_delivery_and_purchase_to_claim() -> None:
    f = features(claim())
    assert f["days_delivery_to_claim"] == pytest.approx(7)
    assert f["days_purchase_to_claim"] == pytest.approx(10)
    assert math.isnan(features(claim(delivered_at=None))["days_delivery_to_claim"])


@pytest.mark.parametrize(
    ("reason", "confirmation", "delivered", "expected"),
    [
        ("not_received", "signature", None, 1.0),
        ("not_received", "photo", T0 - DAY, 1.0),
        ("not_received", None, T0 - DAY, 0.5),
        ("not_received", "scan", None, 0.5),
        ("not_received", None, None, 0.0),
        ("damaged", "signature", T0 - DAY, 0.0),
    ],
)
def test_not_received_against_delivery_confirmation(
    reason: str, confirmation: str | None, delivered: float | None, expected: float
) -> None:
    c = claim(reason=reason, delivery_confirmation=confirmation, delivered_at=delivered)
    assert features(c)["not_received_but_delivered"] == expected


def test_returned_weight_against_expected_weight() -> None:
    lines = [ClaimLine("general", 2, 4_000, 500), ClaimLine("general", 1, 1_000, 1_000)]
    f = features(claim(lines=lines, returned_weight_grams=200))
    assert f["returned_weight_ratio"] == pytest.approx(200 / 2_000)
    # No scan, or a line without a weight: the signal is missing, never guessed.
    assert math.isnan(features(claim(lines=lines))["returned_weight_ratio"])
    partial = [ClaimLine("general", 1, 1_000, 500), ClaimLine("general", 1, 1_000, None)]
    assert math.isnan(
        features(claim(lines=partial, returned_weight_grams=500))["returned_weight_ratio"]
    )


def test_value_and_category_risk() -> None:
    lines = [ClaimLine("Consumer Electronics", 1, 7_500, None), ClaimLine("books", 1, 2_500, None)]
    f = features(claim(lines=lines, amount_minor=10_000, order_total_minor=12_500))
    assert f["refund_amount_minor"] == 10_000
    assert f["refund_to_order_ratio"] == pytest.approx(0.8)
    assert f["high_risk_category_share"] == pytest.approx(0.75)


def test_a_refund_by_amount_uses_the_orders_categories() -> None:
    c = claim(lines=[], order_lines=[ClaimLine("luxury watches", 1, 9_000, None)])
    assert features(c)["high_risk_category_share"] == pytest.approx(1.0)


def test_wardrobing_measures_the_window_used_for_worn_categories_only() -> None:
    worn = claim(lines=[ClaimLine("Apparel", 1, 5_000, None)], delivered_at=T0 - 27 * DAY)
    f = features(worn)
    assert f["worn_category"] == 1
    assert f["worn_window_used"] == pytest.approx(27 / 30)
    g = features(claim(delivered_at=T0 - 27 * DAY))
    assert g["worn_category"] == 0
    assert math.isnan(g["worn_window_used"])


def test_tenant_velocity_last_hour_against_the_days_rate() -> None:
    b = HistoryBuilder()
    b.tenant_ms = [ms(T0 - 20 * HOUR)] * 2 + [ms(T0 - 0.5 * HOUR)] * 10 + [ms(T0 + 1)]
    f = features(claim(), b.build())
    assert f["tenant_refunds_1h"] == 10
    assert f["tenant_velocity_ratio"] == pytest.approx((10 + 1) / ((12 + 1) / 24))
    # The intake path gives the counts directly; the same numbers come out.
    one = HistoryBuilder()
    one.velocity = (12, 10)
    g = features(claim(), one.build())
    assert g["tenant_refunds_1h"] == f["tenant_refunds_1h"]
    assert g["tenant_velocity_ratio"] == pytest.approx(f["tenant_velocity_ratio"])


def ring_history(c: Claim, *, late: bool = False) -> History:
    """Two other customers share the claim's device (a third only after the claim)."""
    b = HistoryBuilder()
    device = key_hash(LinkKind.DEVICE, "dev-1")
    own = customer_key(c.email)
    mallory, trent = customer_key("mallory@example.com"), customer_key("trent@example.com")
    for holder in (own, mallory, trent):
        b.holder(device, holder, ms(T0 - 50 * DAY))
        b._group(b.holders, holder)
    if late:
        b.holder(device, customer_key("late@example.com"), ms(T0 + DAY))
    for holder, at in [
        (mallory, T0 - DAY),
        (mallory, T0 - 2 * DAY),
        (mallory, T0 - 40 * DAY),
        (trent, T0 - 3 * DAY),
        (own, T0 - DAY),
    ]:
        b.holder_refund(holder, ms(at))
    for holder, orders in ((mallory, 3), (trent, 1), (own, 1)):
        for _ in range(orders):
            b.holder_order(holder, ms(T0 - 45 * DAY))
    return b.build()


def test_linked_accounts_by_shared_device_with_their_recent_refunds() -> None:
    c = claim()
    f = features(c, ring_history(c))
    assert f["linked_accounts"] == 2
    assert f["linked_device_accounts"] == 2
    assert f["linked_device_refunds_30d"] == 3
    assert f["linked_refunds_30d"] == 3
    assert f["linked_refund_rate"] == pytest.approx(4 / 4)
    assert f["linked_payment_accounts"] == 0
    assert f["linked_email_accounts"] == 0


def test_accounts_that_share_a_key_only_after_the_claim_are_not_linked_yet() -> None:
    c = claim()
    assert features(c, ring_history(c, late=True))["linked_accounts"] == 2
    assert features(c, ring_history(c, late=True), as_of=T0 + 2 * DAY)["linked_accounts"] == 3


def test_no_links_for_a_customer_alone_on_their_keys() -> None:
    c = claim()
    b = HistoryBuilder()
    b.holder(key_hash(LinkKind.DEVICE, "dev-1"), customer_key(c.email), ms(T0 - DAY))
    f = features(c, b.build())
    assert f["linked_accounts"] == 0
    assert f["linked_refunds_30d"] == 0
    assert math.isnan(f["linked_refund_rate"])


def test_payout_method_differs_from_payment() -> None:
    assert features(claim(requested_method="bank_transfer"))["payout_method_differs"] == 1
    assert features(claim(requested_method="original"))["payout_method_differs"] == 0
    assert features(claim(requested_method=None))["payout_method_differs"] == 0


def test_missing_inputs_name_the_signals_not_given() -> None:
    bare = claim(delivered_at=None, keys={})
    missing = missing_inputs(bare)
    assert MISSING_ACCOUNT_AGE in missing
    assert MISSING_DELIVERY in missing
    assert MISSING_WEIGHT in missing
    assert MISSING_DEVICE in missing
    full = claim(
        customer_since=T0 - DAY,
        returned_weight_grams=100,
        lines=[ClaimLine("general", 1, 5_000, 100)],
        keys=identity_keys(
            OrderIdentity(
                email="eve@example.com",
                device_id="d",
                payment_fingerprint="p",
                shipping_address={"line1": "1 A St", "country": "DE"},
            )
        ),
    )
    assert missing_inputs(full) == []


def random_case(rng: random.Random) -> tuple[Claim, HistoryBuilder]:
    """A claim and a history around it: the customer's and linked customers' orders and
    refunds across the windows' edges, keys shared before and after the claim."""
    devices = ["dev-1", "dev-2"]
    email = rng.choice(["eve@example.com", "Eve@Example.com"])
    c = claim(
        email=email,
        counted=rng.random() < 0.5,
        customer_since=rng.choice([None, T0 - 400 * DAY, T0 + DAY]),
        delivered_at=rng.choice([None, T0 - 7 * DAY]),
        reason=rng.choice(["damaged", "not_received"]),
        keys=identity_keys(OrderIdentity(email=email, device_id=rng.choice(devices))),
        lines=rng.choice(
            [[ClaimLine("apparel", 2, 4_000, 300)], [ClaimLine("electronics", 1, 9_000, None)]]
        ),
    )
    edges = [0, 1, 30 * DAY, 90 * DAY, 365 * DAY, 366 * DAY, HOUR, -DAY]
    b = HistoryBuilder()
    for _ in range(rng.randrange(12)):
        at = T0 - rng.choice(edges) + rng.choice([-0.001, 0, 0.001])
        b.refund(c.email, rng.choice(["O1", "O2", "O3"]), ms(at), rng.randrange(100, 9_000))
        b.order(c.email, ms(at - DAY))
    b.refund("other@example.com", "O9", ms(T0 - DAY), 100)
    own = customer_key(c.email)
    for n in range(rng.randrange(5)):
        holder = customer_key(f"h{n}@example.com")
        device = key_hash(LinkKind.DEVICE, rng.choice(devices))
        b.holder(device, holder, ms(T0 - rng.choice([-DAY, 0, DAY, 40 * DAY])))
        b.holder(device, own, ms(T0 - 100 * DAY))
        b._group(b.holders, holder)
        for _ in range(rng.randrange(4)):
            at = T0 - rng.choice(edges)
            b.holder_refund(holder, ms(at))
            b.holder_order(holder, ms(at - DAY))
    if rng.random() < 0.5:
        b.velocity = (rng.randrange(100), rng.randrange(10))
    else:
        b.tenant_ms = [ms(T0 - rng.choice(edges) + rng.random()) for _ in range(rng.randrange(9))]
    return c, b


def test_the_single_claim_path_gives_exactly_the_matrix_features() -> None:
    rng = random.Random(11)
    for _ in range(500):
        c, b = random_case(rng)
        one = compute_one(c, b)
        matrix = compute_matrix([c], b.build())
        assert one.shape == matrix.shape
        assert np.array_equal(one, matrix, equal_nan=True), dict(
            zip(FEATURE_NAMES, (one - matrix)[0].tolist(), strict=True)
        )
