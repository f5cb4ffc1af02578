"""The fraud simulator: every pattern is there, with the signals that define it."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from refunddesk.fraud import simulate as sim_mod
from refunddesk.fraud.simulate import (
    EMPTY_BOX,
    INR_WITH_PROOF,
    LABEL_SWITCH,
    LEGIT,
    PATTERNS,
    RING,
    SERIAL_RETURNER,
    STOLEN_CARD,
    WARDROBING,
    Simulation,
    simulate,
)

END = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return simulate(orders=30_000, seed=11, end=END)


def _index(sim: Simulation) -> dict[str, Any]:
    orders = {o["id"]: o for o in sim.orders}
    lines: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in sim.order_lines:
        lines[line["order_id"]].append(line)
    returns = {r["refund_id"]: r for r in sim.returns}
    return {"orders": orders, "lines": lines, "returns": returns}


def _of(sim: Simulation, pattern: str) -> list[dict[str, Any]]:
    return [r for r in sim.refunds if sim.truth[r["id"]] == pattern]


def _weight_ratio(refund: dict[str, Any], sim: Simulation, idx: dict[str, Any]) -> float | None:
    ret = idx["returns"].get(refund["id"])
    if ret is None or ret["returned_weight_grams"] is None:
        return None
    expected = sum(
        line["quantity"] * sim_mod.BY_SKU[line["sku"]].grams
        for line in sim.return_lines
        if line["return_id"] == ret["id"]
    )
    return float(ret["returned_weight_grams"]) / expected


def test_every_fraud_pattern_is_simulated_among_mostly_honest_refunds(sim: Simulation) -> None:
    summary = sim.summary()
    for pattern in PATTERNS:
        assert summary["refunds_by_pattern"].get(pattern, 0) >= 5, pattern
    # Fraud is rare, as on a real desk, but worth more per refund than an honest one.
    assert 0.02 <= summary["fraud_share"] <= 0.06
    assert summary["fraud_value_share"] > summary["fraud_share"]


def test_same_seed_gives_the_same_data_and_another_seed_other_data() -> None:
    a = simulate(orders=2_000, seed=5, end=END)
    b = simulate(orders=2_000, seed=5, end=END)
    c = simulate(orders=2_000, seed=6, end=END)
    assert a.refunds == b.refunds
    assert a.labels == b.labels
    assert [r["amount_minor"] for r in a.refunds] != [r["amount_minor"] for r in c.refunds]


def test_tenant_salt_changes_ids_but_not_content() -> None:
    a = simulate(orders=1_000, seed=5, end=END, id_salt="tenant-a")
    b = simulate(orders=1_000, seed=5, end=END, id_salt="tenant-b")
    assert [r["amount_minor"] for r in a.refunds] == [r["amount_minor"] for r in b.refunds]
    assert {r["id"] for r in a.refunds}.isdisjoint({r["id"] for r in b.refunds})


def test_timestamps_run_forward_within_the_simulated_months(sim: Simulation) -> None:
    idx = _index(sim)
    for order in sim.orders:
        assert sim.start <= order["purchased_at"] <= END
        if order["delivered_at"] is not None:
            assert order["purchased_at"] < order["delivered_at"] <= END
    for refund in sim.refunds:
        order = idx["orders"][refund["order_id"]]
        assert order["purchased_at"] < refund["created_at"] <= refund["updated_at"] <= END
        ret = idx["returns"].get(refund["id"])
        if ret is not None:
            assert refund["created_at"] < ret["received_at"] <= END
    assert all(label["at"] <= END for label in sim.labels)
    # Months of history, so the latest fifth is a meaningful hold-out.
    created = sorted(r["created_at"] for r in sim.refunds)
    assert created[-1] - created[0] > timedelta(days=150)


def test_empty_boxes_weigh_a_fraction_of_the_goods(sim: Simulation) -> None:
    idx = _index(sim)
    ratios = [_weight_ratio(r, sim, idx) for r in _of(sim, EMPTY_BOX)]
    weighed = [x for x in ratios if x is not None]
    assert weighed
    assert all(x < 0.3 for x in weighed)
    # Some were never weighed: the signal is missing at a realistic rate.
    assert len(weighed) < len(ratios) or len(ratios) < 10


def test_switched_labels_send_back_something_of_another_weight(sim: Simulation) -> None:
    idx = _index(sim)
    weighed = [x for r in _of(sim, LABEL_SWITCH) if (x := _weight_ratio(r, sim, idx)) is not None]
    assert weighed
    assert all(x < 0.8 or x > 1.3 for x in weighed)
    # Honest parcels weigh the goods plus packaging, with a few odd ones (noise).
    honest = [x for r in _of(sim, LEGIT) if (x := _weight_ratio(r, sim, idx)) is not None]
    normal = [x for x in honest if 0.9 <= x <= 1.3]
    assert len(normal) / len(honest) > 0.9
    assert len(normal) < len(honest)


def test_not_received_claims_against_a_delivery_scan(sim: Simulation) -> None:
    idx = _index(sim)
    inr = _of(sim, INR_WITH_PROOF)
    assert all(r["reason"] == "not_received" for r in inr)
    assert all(idx["orders"][r["order_id"]]["delivered_at"] is not None for r in inr)
    assert all(r["delivery_confirmation"] is not None for r in inr)
    # Honest customers' parcels vanish too, some after a delivery scan (porch theft).
    honest = [r for r in _of(sim, LEGIT) if r["reason"] == "not_received"]
    scanned = [r for r in honest if idx["orders"][r["order_id"]]["delivered_at"] is not None]
    assert 0 < len(scanned) < len(honest)


def test_wardrobing_returns_worn_goods_late_in_the_window(sim: Simulation) -> None:
    idx = _index(sim)
    late = 0
    refunds = _of(sim, WARDROBING)
    for r in refunds:
        delivered = idx["orders"][r["order_id"]]["delivered_at"]
        if delivered is not None and r["created_at"] - delivered >= timedelta(days=20):
            late += 1
    assert late / len(refunds) > 0.6


def test_serial_returners_return_most_of_what_they_buy(sim: Simulation) -> None:
    idx = _index(sim)
    refunds_by_customer: dict[str, int] = defaultdict(int)
    for r in _of(sim, SERIAL_RETURNER):
        refunds_by_customer[idx["orders"][r["order_id"]]["customer_email"]] += 1
    assert refunds_by_customer
    # Labelled abuse from the third return on: each has at least one before.
    orders_by_customer: dict[str, int] = defaultdict(int)
    for o in sim.orders:
        orders_by_customer[o["customer_email"]] += 1
    for email, n in refunds_by_customer.items():
        assert n >= 1
        assert orders_by_customer[email] >= n + 2


def test_rings_share_devices_cards_or_addresses_across_accounts(sim: Simulation) -> None:
    idx = _index(sim)
    ring_orders = [idx["orders"][r["order_id"]] for r in _of(sim, RING)]
    holders: dict[str, set[str]] = defaultdict(set)
    for o in ring_orders:
        for key in ("device_id", "payment_fingerprint"):
            if o[key]:
                holders[f"{key}:{o[key]}"].add(o["customer_email"])
    shared = [emails for emails in holders.values() if len(emails) > 1]
    assert shared
    # Accounts opened days before they cash out.
    young = [o for o in ring_orders if o["customer_since"] is not None]
    assert all(o["purchased_at"] - o["customer_since"] < timedelta(days=20) for o in young)


def test_stolen_cards_are_refunded_quickly_to_another_method(sim: Simulation) -> None:
    refunds = _of(sim, STOLEN_CARD)
    other = [r for r in refunds if r["refund_method"] != "original" or r["payout_override"]]
    assert len(other) / len(refunds) > 0.7
    idx = _index(sim)
    for r in refunds:
        order = idx["orders"][r["order_id"]]
        assert r["created_at"] - order["purchased_at"] < timedelta(days=12)
    # Chargebacks label them weeks later, so the latest ones are not labelled yet.
    labelled = {lab["refund_id"]: lab for lab in sim.labels}
    sources = {labelled[r["id"]]["source"] for r in refunds if r["id"] in labelled}
    assert "chargeback" in sources


def test_honest_households_share_addresses(sim: Simulation) -> None:
    idx = _index(sim)
    by_address: dict[str, set[str]] = defaultdict(set)
    for r in _of(sim, LEGIT):
        order = idx["orders"][r["order_id"]]
        by_address[repr(sorted(order["shipping_address"].items()))].add(order["customer_email"])
    assert any(len(emails) > 1 for emails in by_address.values())


def test_signals_go_missing_at_realistic_rates(sim: Simulation) -> None:
    n = len(sim.orders)
    for column, rate in (("device_id", 0.20), ("customer_ref", 0.12), ("ip_address", 0.08)):
        missing = sum(1 for o in sim.orders if o[column] is None) / n
        assert rate * 0.6 < missing < rate * 1.8, column


def test_labels_are_mostly_right_but_not_all(sim: Simulation) -> None:
    labels = {lab["refund_id"]: lab["label"] for lab in sim.labels}
    wrong = sum(
        1
        for refund_id, label in labels.items()
        if (label == "fraud") != (sim.truth[refund_id] != LEGIT)
    )
    assert 0 < wrong < 0.01 * len(labels)
