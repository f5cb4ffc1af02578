"""Simulate into a tenant, train, store, activate and evaluate fraud models (SQLite and PG)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from refunddesk.bootstrap import Container
from refunddesk.core.errors import Conflict
from refunddesk.fraud import store, training
from refunddesk.fraud.evaluate import Scored, metrics
from refunddesk.fraud.features import FEATURE_NAMES, feature_matrix
from refunddesk.fraud.labels import record_label
from refunddesk.fraud.model_orm import FraudModel
from refunddesk.fraud.orm import FraudLabel, IdentityKey
from refunddesk.fraud.rules import DEFAULT_RULES_DOC, Level, fire
from refunddesk.fraud.simulate import SIM_ACTOR, Simulation, simulate, write
from refunddesk.jobs.orm import Job
from refunddesk.refunds.orm import Refund, RefundEvent
from tests.factories import Factory

ORDERS = 12_000


@pytest.fixture
def simulated(container: Container, factory: Factory) -> tuple[str, Simulation]:
    tenant = factory.tenant("Simulator")
    sim = simulate(
        orders=ORDERS, seed=3, end=container.clock.now() - timedelta(days=1), id_salt=tenant.id
    )
    with container.db.write() as session:
        write(session, tenant_id=tenant.id, sim=sim)
    store.clear_cache()
    return tenant.id, sim


def _bad_model(container: Container, tenant_id: str) -> int:
    """Store and activate a model trained on shuffled labels: worse than anything sensible."""
    with container.db.write() as session:
        ds = training.labelled(session, tenant_id=tenant_id)
        rng = np.random.default_rng(0)
        shuffled = rng.permutation(ds.y)
        model = training.fit(ds.X, shuffled, ds.names)
        row = store.save_model(
            session,
            tenant_id=tenant_id,
            model=model,
            source="labels",
            actor="test",
            now=container.clock.now(),
            activate=True,
        )
        return row.version


def test_simulated_refunds_are_final_unpaid_and_silent(
    container: Container, simulated: tuple[str, Simulation]
) -> None:
    tenant_id, sim = simulated
    with container.db.read() as session:
        statuses = set(
            session.scalars(select(Refund.status).where(Refund.tenant_id == tenant_id).distinct())
        )
        assert statuses <= {"succeeded", "rejected", "canceled"}
        count = session.scalar(
            select(func.count()).select_from(Refund).where(Refund.tenant_id == tenant_id)
        )
        assert count == len(sim.refunds)
        # No payout job: nothing is paid out. Events are marked dispatched: nobody is told.
        assert session.scalar(select(func.count()).select_from(Job)) == 0
        undispatched = session.scalar(
            select(func.count())
            .select_from(RefundEvent)
            .where(RefundEvent.tenant_id == tenant_id, RefundEvent.dispatched.is_(False))
        )
        assert undispatched == 0
        labels = session.scalar(
            select(func.count()).select_from(FraudLabel).where(FraudLabel.tenant_id == tenant_id)
        )
        assert labels == len(sim.labels)
        # Identity keys for linking, written with linking's own definition.
        keys = session.scalar(
            select(func.count()).select_from(IdentityKey).where(IdentityKey.tenant_id == tenant_id)
        )
        assert keys >= len(sim.orders) * 2


def test_without_a_stored_model_the_cold_start_model_scores(
    container: Container, factory: Factory
) -> None:
    tenant = factory.tenant()
    with container.db.read() as session:
        model = store.active_model(session, tenant_id=tenant.id)
    assert model.version.startswith("cold-start-")
    assert model.feature_names == FEATURE_NAMES


def test_training_replaces_a_worse_model_and_refuses_an_equal_one(
    container: Container, simulated: tuple[str, Simulation]
) -> None:
    tenant_id, _ = simulated
    bad = _bad_model(container, tenant_id)
    with container.db.write() as session:
        first = training.train(
            session, tenant_id=tenant_id, actor="test", now=container.clock.now()
        )
    assert first.incumbent_version == store.tenant_version(bad)
    assert first.incumbent is not None
    assert first.promoted
    assert first.stored_version == bad + 1
    assert first.candidate["roc_auc"] > first.incumbent["roc_auc"]
    with container.db.read() as session:
        active = store.active_model(session, tenant_id=tenant_id)
        assert active.version == store.tenant_version(bad + 1)
        # Cached: the same loaded model while the version stays.
        assert store.active_model(session, tenant_id=tenant_id) is active
        np.testing.assert_array_less(-1e-12, active.predict(np.zeros((2, len(FEATURE_NAMES)))))

    # The same labels again: the new model is no better, so it is not stored.
    with container.db.write() as session:
        again = training.train(
            session, tenant_id=tenant_id, actor="test", now=container.clock.now()
        )
    assert not again.promoted
    assert again.stored_version is None
    assert again.incumbent_version == store.tenant_version(bad + 1)
    with container.db.read() as session:
        versions = [r.version for r in store.list_models(session, tenant_id=tenant_id)]
        assert versions == [bad + 1, bad]
        assert store.active_record(session, tenant_id=tenant_id).version == bad + 1  # type: ignore[union-attr]


def test_training_reads_and_stores_apart_and_refuses_if_the_active_model_changed(
    container: Container, simulated: tuple[str, Simulation]
) -> None:
    tenant_id, _ = simulated
    bad = _bad_model(container, tenant_id)

    def meanwhile(text: str) -> None:
        if text.startswith("storing"):  # someone else activates a model in between
            with container.db.write() as session:
                store.activate_version(session, tenant_id=tenant_id, version=bad)
                row = session.get(FraudModel, (tenant_id, bad))
                assert row is not None
                store.save_model(
                    session,
                    tenant_id=tenant_id,
                    model=store._load(row),
                    source="labels",
                    actor="someone else",
                    now=container.clock.now(),
                    activate=True,
                )

    with container.db.read() as session, pytest.raises(Conflict, match="train again"):
        training.train(
            session,
            tenant_id=tenant_id,
            actor="test",
            now=container.clock.now(),
            db=container.db,
            step=meanwhile,
        )
    with container.db.read() as session:
        assert [r.version for r in store.list_models(session, tenant_id=tenant_id)] == [
            bad + 1,
            bad,
        ]
    # Without interference, the read-then-write path stores and activates the better model.
    with container.db.read() as session:
        result = training.train(
            session, tenant_id=tenant_id, actor="test", now=container.clock.now(), db=container.db
        )
    assert result.promoted
    with container.db.read() as session:
        assert store.active_record(session, tenant_id=tenant_id).version == bad + 2  # type: ignore[union-attr]


def test_a_model_of_other_features_gives_way_to_the_cold_start_model(
    container: Container, simulated: tuple[str, Simulation]
) -> None:
    tenant_id, _ = simulated
    version = _bad_model(container, tenant_id)
    with container.db.write() as session:
        row = session.get(FraudModel, (tenant_id, version))
        assert row is not None
        row.feature_names = [*row.feature_names[:-1], "a_feature_that_is_gone"]
    store.clear_cache()
    with container.db.read() as session:
        assert store.active_model(session, tenant_id=tenant_id).version.startswith("cold-start-")


def test_agent_labels_change_the_next_model(
    container: Container, simulated: tuple[str, Simulation]
) -> None:
    tenant_id, _ = simulated
    with container.db.read() as session:
        before = training.labelled(session, tenant_id=tenant_id)
    train_idx, _ = training.split(len(before))
    first = training.fit(before.X[train_idx], before.y[train_idx], before.names)
    # Agents overturn a third of the training part's frauds: a later label wins.
    frauds = [before.refund_ids[i] for i in train_idx if before.y[i] == 1][::3]
    with container.db.write() as session:
        for refund_id in frauds:
            record_label(
                session,
                tenant_id=tenant_id,
                refund_id=refund_id,
                label="legit",
                actor="agent:test",
                source="agent",
                at=container.clock.now(),
            )
    with container.db.read() as session:
        after = training.labelled(session, tenant_id=tenant_id)
    assert after.refund_ids == before.refund_ids
    assert int(after.y.sum()) == int(before.y.sum()) - len(frauds)
    assert not after.simulated  # an agent's labels are in it now
    second = training.fit(after.X[train_idx], after.y[train_idx], after.names)
    assert second.to_text() != first.to_text()
    overturned = [after.refund_ids.index(r) for r in frauds]
    assert second.predict(after.X[overturned]).mean() < first.predict(after.X[overturned]).mean()


def _before(sim: Simulation, cut: datetime) -> Simulation:
    """The part of a simulation that existed at `cut` (returns of its refunds included)."""
    early = Simulation(start=sim.start, end=cut)
    early.orders = [o for o in sim.orders if o["created_at"] <= cut]
    orders = {o["id"] for o in early.orders}
    early.order_lines = [x for x in sim.order_lines if x["order_id"] in orders]
    early.refunds = [
        {**r, "reference": "SE" + r["reference"][2:]}
        for r in sim.refunds
        if r["created_at"] <= cut and r["order_id"] in orders
    ]
    refunds = {r["id"] for r in early.refunds}
    early.refund_lines = [x for x in sim.refund_lines if x["refund_id"] in refunds]
    early.events = [x for x in sim.events if x["refund_id"] in refunds]
    early.returns = [x for x in sim.returns if x["refund_id"] in refunds]
    returns = {x["id"] for x in early.returns}
    early.return_lines = [x for x in sim.return_lines if x["return_id"] in returns]
    return early


def test_features_as_of_a_refund_ignore_everything_that_came_later(
    container: Container, factory: Factory
) -> None:
    """The time-based hold-out is honest only if no training row sees the hold-out period."""
    sim = simulate(orders=5_000, seed=8, end=container.clock.now() - timedelta(days=1))
    created = sorted(r["created_at"] for r in sim.refunds)
    cut = created[int(len(created) * 0.6)]
    full, early = factory.tenant("full"), factory.tenant("early")
    with container.db.write() as session:
        write(session, tenant_id=full.id, sim=sim)
        write(session, tenant_id=early.id, sim=_before(sim, cut))
    ids = [
        r["id"]
        for r in sorted(sim.refunds, key=lambda r: r["created_at"])
        if r["created_at"] <= cut
    ]
    with container.db.read() as session:
        a = feature_matrix(session, tenant_id=full.id, refund_ids=ids)
        b = feature_matrix(session, tenant_id=early.id, refund_ids=ids)
    assert a.refund_ids == b.refund_ids == ids
    differs = {
        name
        for j, name in enumerate(FEATURE_NAMES)
        if not np.allclose(a.values[:, j], b.values[:, j], equal_nan=True)
    }
    assert differs == set()


def test_the_model_beats_the_rules_alone(
    container: Container, simulated: tuple[str, Simulation]
) -> None:
    tenant_id, _ = simulated
    with container.db.read() as session:
        ds = training.labelled(session, tenant_id=tenant_id)
    train_idx, hold_idx = training.split(len(ds))
    model = training.fit(ds.X[train_idx], ds.y[train_idx], ds.names)
    model_m = metrics(ds.scored(hold_idx, model.predict(ds.X[hold_idx])))
    rank = {Level.LOW: 0.0, Level.MEDIUM: 1.0, Level.HIGH: 2.0}
    rule_scores = []
    for i in hold_idx:
        values = dict(zip(FEATURE_NAMES, ds.X[i], strict=True))
        hits, _ = fire(DEFAULT_RULES_DOC, values, {})
        # Rules rank by their worst level, then by how many fired.
        rule_scores.append(max((rank[h.level] for h in hits), default=0.0) + 0.01 * len(hits))
    rules_m = metrics(
        Scored(
            refund_ids=[ds.refund_ids[i] for i in hold_idx],
            y=ds.y[hold_idx],
            scores=np.array(rule_scores),
            amounts=ds.amounts[hold_idx],
            customers=[ds.customers[i] for i in hold_idx],
        )
    )
    assert model_m["roc_auc"] > rules_m["roc_auc"]
    assert model_m["value_caught_at_review_rate"] > rules_m["value_caught_at_review_rate"]


def test_evaluate_writes_a_picture_and_metrics(
    container: Container, simulated: tuple[str, Simulation], tmp_path: Path
) -> None:
    tenant_id, _ = simulated
    with container.db.read() as session:
        result = training.evaluate_active(
            session, tenant_id=tenant_id, picture=tmp_path / "eval.png"
        )
    assert result.model_version.startswith("cold-start-")
    assert result.metrics["frauds"] > 0
    assert 0.5 < result.metrics["roc_auc"] <= 1.0
    with Image.open(tmp_path / "eval.png") as image:
        assert image.format == "PNG"


def test_training_refuses_too_few_labels(container: Container, factory: Factory) -> None:
    tenant = factory.tenant()
    sim = simulate(orders=300, seed=1, end=container.clock.now(), id_salt=tenant.id)
    with container.db.write() as session:
        write(session, tenant_id=tenant.id, sim=sim)
    with (
        container.db.write() as session,
        pytest.raises(training.NotEnoughLabels, match="too few"),
    ):
        training.train(session, tenant_id=tenant.id, actor="test", now=container.clock.now())
    with container.db.read() as session:
        assert store.list_models(session, tenant_id=tenant.id) == []


def test_simulator_labels_are_recognised_as_simulated(
    container: Container, simulated: tuple[str, Simulation]
) -> None:
    tenant_id, _ = simulated
    with container.db.read() as session:
        ds = training.labelled(session, tenant_id=tenant_id)
        actors = set(session.scalars(select(FraudLabel.actor).distinct()))
    assert actors == {SIM_ACTOR}
    assert ds.simulated
