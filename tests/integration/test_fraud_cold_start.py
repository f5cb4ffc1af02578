"""The cold-start model that ships with the package: today's features, and good enough."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from refunddesk.fraud import store, training
from refunddesk.fraud.evaluate import TARGETS, metrics
from refunddesk.fraud.features import FEATURE_NAMES

# A simulation the model never saw (another seed than the one it was built from), smaller
# than the build's so the test stays quick; the full-size figures are in docs/fraud-model.md.
FRESH_ORDERS = 30_000
FRESH_SEED = 7


def test_the_shipped_model_reads_todays_features() -> None:
    model = store.cold_start_model()
    assert model.feature_names == FEATURE_NAMES
    assert model.version.startswith("cold-start-")
    assert 0 < model.thresholds.medium <= model.thresholds.high < 1
    # Built from the documented command: the simulator, with its fixed seed.
    assert model.metrics["simulation"]["seed"] == training.COLD_START_SEED


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> training.LabelledSet:
    folder: Path = tmp_path_factory.mktemp("fresh")
    session, tenant_id = training.simulated_session(
        orders=FRESH_ORDERS, seed=FRESH_SEED, end=training.COLD_START_END, folder=folder
    )
    try:
        return training.labelled(session, tenant_id=tenant_id)
    finally:
        session.close()


def test_the_shipped_model_meets_the_targets_on_a_fresh_simulation(
    fresh: training.LabelledSet,
) -> None:
    model = store.cold_start_model()
    everything = np.arange(len(fresh))
    m = metrics(fresh.scored(everything, model.predict(fresh.X)), model.thresholds)
    assert m["frauds"] >= 100
    assert m["roc_auc"] >= TARGETS["roc_auc"]
    assert m["value_caught_at_review_rate"] >= TARGETS["value_caught_at_review_rate"]
    assert m["honest_customer_fpr_at_review_rate"] <= TARGETS["honest_customer_fpr_at_review_rate"]
    # Its thresholds carry over: about the review rate it was set for is flagged medium.
    assert 0.02 <= m["at_medium"]["flagged_share"] <= 0.08
