"""Batch scoring: the scan and the indexed history agree; rescoring; the returned weight."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from refunddesk.bootstrap import Container
from refunddesk.fraud import scoring
from refunddesk.fraud.features import (
    FEATURE_NAMES,
    build_matrix,
    load_claims,
    load_history,
    scan_history,
)
from refunddesk.orders.schemas import OrderCreate
from refunddesk.orders.service import create_order
from refunddesk.refunds.orm import Refund
from refunddesk.returns import service as returns
from tests.e2e.test_cli import run, run_json
from tests.factories import Factory, order_payload
from tests.fraud_support import tiny_model
from tests.integration.returns_support import returns_tenant
from tests.integration.support import request


@pytest.fixture(autouse=True)
def _model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scoring, "active_model", lambda session, *, tenant_id: tiny_model())


def order(container: Container, tenant_id: str, **overrides: Any) -> str:
    data = OrderCreate.model_validate(order_payload(**overrides))
    with container.db.write() as session:
        create_order(session, clock=container.clock, tenant_id=tenant_id, data=data)
    return data.external_id


def ring(n: int, device: str = "dev-ring") -> dict[str, Any]:
    return {
        "customer": {"email": f"Ring.{n}+x@example.net", "name": f"Ring {n}"},
        "device_id": device,
        "payment": {"method": "card", "gateway": "sandbox", "reference": f"pi_r{n}"},
    }


def busy_tenant(container: Container, factory: Factory, *, placed_now: bool = False) -> str:
    """Repeat customers, a ring sharing a device, customers linked by email pattern.

    placed_now: each order is placed when it is stored (else all on the factory's date, so
    a refund's history as of its creation holds orders stored after it).
    """
    tenant = factory.tenant()
    clock = container.clock

    def order(container: Container, tenant_id: str, **overrides: Any) -> str:
        if placed_now:
            at = clock.now().isoformat()
            overrides.update(purchased_at=at, delivered_at=at)
        return globals()["order"](container, tenant_id, **overrides)

    for n in range(1, 5):
        request(
            container, tenant.id, order_id=order(container, tenant.id, **ring(n)), amount_minor=700
        )
        clock.advance(timedelta(hours=5))  # type: ignore[attr-defined]
    repeat = {"customer": {"email": "repeat@example.com", "name": "Repeat"}}
    for _ in range(3):
        request(
            container, tenant.id, order_id=order(container, tenant.id, **repeat), amount_minor=300
        )
        clock.advance(timedelta(days=3))  # type: ignore[attr-defined]
    for email in ("j.doe@example.com", "jdoe+1@example.com"):
        pattern = {"customer": {"email": email, "name": "J Doe"}}
        request(
            container, tenant.id, order_id=order(container, tenant.id, **pattern), amount_minor=400
        )
        if placed_now:  # one after the other, as in life: not two at the same instant
            clock.advance(timedelta(minutes=1))  # type: ignore[attr-defined]
    return tenant.id


def test_the_scan_gives_the_same_features_as_the_indexed_lookups(
    container: Container, factory: Factory
) -> None:
    tenant_id = busy_tenant(container, factory)
    with container.db.read() as session:
        ids = list(session.scalars(select(Refund.id).where(Refund.tenant_id == tenant_id)))
        claims = load_claims(session, tenant_id=tenant_id, refund_ids=ids)
        for as_of in (None, container.clock.now().timestamp() + 3600):
            indexed = load_history(session, tenant_id=tenant_id, claims=claims, as_of=as_of)
            scanned = scan_history(session, tenant_id=tenant_id, claims=claims, as_of=as_of)
            a = build_matrix(claims, indexed, as_of=as_of).values
            b = build_matrix(claims, scanned, as_of=as_of).values
            assert np.allclose(a, b, equal_nan=True)
        # The email pattern and the ring were found.
        features = build_matrix(claims, indexed, as_of=as_of)
        assert features.values[:, features.names.index("linked_email_accounts")].max() == 1
        assert features.values[:, features.names.index("linked_device_accounts")].max() == 3


def test_batch_features_as_of_creation_are_what_intake_computed(
    container: Container, factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Intake (prepared lookups, compute_one) and the batch (IN-lists or the scan,
    compute_matrix) give a refund the same features as of its creation."""
    seen: dict[str, np.ndarray] = {}
    original = scoring.intake_features

    def capture(session: Any, *, tenant_id: str, request: Any) -> Any:
        claim, row, missing = original(session, tenant_id=tenant_id, request=request)
        seen[request.refund_id] = row[0]
        return claim, row, missing

    monkeypatch.setattr(scoring, "intake_features", capture)
    tenant_id = busy_tenant(container, factory, placed_now=True)
    ids = list(seen)
    assert len(ids) == 9
    with container.db.read() as session:
        claims = load_claims(session, tenant_id=tenant_id, refund_ids=ids)
        for load in (load_history, scan_history):
            history = load(session, tenant_id=tenant_id, claims=claims, as_of=None)
            batch = build_matrix(claims, history).values
            for i, refund_id in enumerate(ids):
                differs = {
                    name: (float(batch[i, j]), float(seen[refund_id][j]))
                    for j, name in enumerate(FEATURE_NAMES)
                    if not np.array_equal(batch[i, j], seen[refund_id][j], equal_nan=True)
                }
                assert differs == {}, (load.__name__, i, differs)


def test_rescoring_sees_a_ring_that_grew_and_leaves_statuses_alone(
    container: Container, factory: Factory
) -> None:
    tenant = factory.tenant()
    first, _ = request(
        container, tenant.id, order_id=order(container, tenant.id, **ring(1)), amount_minor=700
    )
    assert first.risk_level == "low"
    for n in range(2, 6):
        request(
            container, tenant.id, order_id=order(container, tenant.id, **ring(n)), amount_minor=700
        )
    with container.db.write() as session:
        result = scoring.rescore(session, tenant_id=tenant.id, now=container.clock.now())
    assert result.refunds >= 1
    assert result.changed >= 1
    with container.db.read() as session:
        again = session.get(Refund, (tenant.id, first.id))
        assert again is not None
        assert again.status == first.status
        assert again.risk_level == "high"
        assert again.risk_reasons is not None
        assert again.risk_reasons[0]["code"] == "linked_ring"
        assert again.risk_model_version == "test-tiny-1"


def test_a_light_returned_parcel_raises_the_refunds_risk(
    container: Container, factory: Factory
) -> None:
    tenant = returns_tenant(container, factory)
    lines = [
        {
            "sku": "SKU-A",
            "name": "Boots",
            "category": "shoes",
            "quantity": 1,
            "unit_price_minor": 9000,
            "weight_grams": 1200,
        },
    ]
    refund, _ = request(
        container,
        tenant.id,
        order_id=order(container, tenant.id, lines=lines),
        lines=[{"sku": "SKU-A", "quantity": 1}],
    )
    assert refund.status == "awaiting_return"
    with container.db.write() as session:
        returns.receive(
            session,
            clock=container.clock,
            tenant_id=tenant.id,
            refund_id=refund.id,
            quantities={"SKU-A": 1},
            conditions={"SKU-A": "unused"},
            actor="agent:test",
            weight_grams=90,
        )
    with container.db.read() as session:
        stored = session.get(Refund, (tenant.id, refund.id))
        assert stored is not None
        assert stored.risk_level == "high"
        assert stored.risk_reasons is not None
        messages = [r["message"] for r in stored.risk_reasons]
        assert any("weighs 8% of what the goods should weigh" in m for m in messages)


@pytest.mark.slow
def test_the_score_command_rescores_open_refunds(
    database_url: str, container: Container, factory: Factory
) -> None:
    tenant = factory.tenant()
    for n in range(1, 4):
        request(
            container, tenant.id, order_id=order(container, tenant.id, **ring(n)), amount_minor=700
        )
    out = run_json(database_url, "fraud", "score", "--tenant", tenant.id)
    assert out["refunds"] == 3
    assert sum(out["levels"].values()) == 3
    assert out["rules_version"].startswith("rules-")
    assert out["model_version"]
    missing = run_json(database_url, "fraud", "score", "--tenant", "nope", expect=2)
    assert missing["error"] == "not_found"
    text = run(database_url, "fraud", "score", "--tenant", tenant.id).stdout
    assert "Rescored 3 open refunds" in text
