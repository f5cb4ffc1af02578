"""The fraud model in memory, its metrics and its picture (no database)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from refunddesk.fraud.evaluate import Scored, better, flagged_at_rate, metrics, picture
from refunddesk.fraud.model import LoadedModel, Thresholds, train_booster
from refunddesk.fraud.training import fit, split

NAMES = ("a", "b", "c", "d")


def _data(n: int = 3_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(NAMES)))
    X[rng.random(X.shape) < 0.1] = np.nan  # missing signals
    logit = 2.5 * np.nan_to_num(X[:, 0]) + 1.5 * np.nan_to_num(X[:, 1]) - 5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int_)
    return X, y


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    X, y = _data()
    return fit(X, y, NAMES)


def test_contributions_add_up_to_the_raw_score(model: LoadedModel) -> None:
    X, _ = _data(500, seed=1)
    contrib = model.contributions(X)
    assert contrib.shape == (500, len(NAMES))
    raw = model.booster.predict(X, raw_score=True)
    np.testing.assert_allclose(model.bias + contrib.sum(axis=1), raw, atol=1e-9)
    scores = model.predict(X)
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-raw)), atol=1e-9)


def test_one_row_takes_the_single_row_path_to_the_same_contributions(
    model: LoadedModel,
) -> None:
    X, _ = _data(300, seed=4)  # a tenth of the values missing
    together = model.contributions(X)
    one_by_one = np.vstack([model.contributions(X[i : i + 1]) for i in range(len(X))])
    np.testing.assert_array_equal(one_by_one, together)


def test_contributions_credit_the_features_that_decide(model: LoadedModel) -> None:
    X, _ = _data(2_000, seed=2)
    spread = np.abs(model.contributions(X)).mean(axis=0)
    # a and b make the label; c and d are noise.
    assert spread[0] > spread[2]
    assert spread[0] > spread[3]
    assert spread[1] > spread[2]
    assert spread[1] > spread[3]


def test_one_row_and_empty_input_are_scored(model: LoadedModel) -> None:
    X, _ = _data(3, seed=3)
    assert model.predict(X[0]).shape == (1,)
    assert model.contributions(X[:1]).shape == (1, len(NAMES))
    assert model.predict(np.zeros((0, len(NAMES)))).shape == (0,)
    with pytest.raises(ValueError, match="features per row"):
        model.predict(np.zeros((1, 3)))


def test_thresholds_come_from_unseen_rows_and_order_the_levels(model: LoadedModel) -> None:
    t = model.thresholds
    assert 0 < t.medium <= t.high < 1
    assert t.level(t.high) == "high"
    assert t.level(t.medium) == "medium"
    assert t.level(t.medium / 2) == "low"


def test_time_split_keeps_the_latest_rows_for_the_hold_out() -> None:
    train, hold = split(100, 0.2)
    assert list(train) == list(range(80))
    assert list(hold) == list(range(80, 100))
    assert set(train).isdisjoint(hold)


def test_review_rate_flags_exactly_the_top_share() -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.95, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8])
    flags = flagged_at_rate(scores, 0.2)
    assert flags.sum() == 2
    assert flags[1]
    assert flags[3]


def _scored() -> Scored:
    # Five refunds: two frauds worth 100 and 300; the model ranks the 300 one first.
    return Scored(
        refund_ids=["r1", "r2", "r3", "r4", "r5"],
        y=np.array([1, 0, 1, 0, 0]),
        scores=np.array([0.9, 0.8, 0.1, 0.3, 0.2]),
        amounts=np.array([300.0, 50.0, 100.0, 70.0, 20.0]),
        customers=["x", "y", "z", "y", "w"],
    )


def test_metrics_count_value_caught_and_honest_customers_troubled() -> None:
    m = metrics(_scored(), Thresholds(medium=0.5, high=0.85))
    assert m["frauds"] == 2
    assert m["fraud_value_minor"] == 400
    at_medium = m["at_medium"]
    assert at_medium["precision"] == pytest.approx(0.5)
    assert at_medium["recall"] == pytest.approx(0.5)
    assert at_medium["value_caught"] == pytest.approx(0.75)
    # Honest customers: y and w; y is flagged once.
    assert at_medium["honest_customer_fpr"] == pytest.approx(0.5)
    assert m["at_high"]["precision"] == pytest.approx(1.0)
    # Pairs (fraud, legit) ranked right: the 0.9 fraud beats all three legit, the 0.1 none.
    assert m["roc_auc"] == pytest.approx(3 / 6)


def test_better_prefers_value_caught_then_auc() -> None:
    base = {"value_caught_at_review_rate": 0.8, "roc_auc": 0.95}
    assert better({"value_caught_at_review_rate": 0.85, "roc_auc": 0.90}, base)
    assert not better({"value_caught_at_review_rate": 0.75, "roc_auc": 0.99}, base)
    assert better({"value_caught_at_review_rate": 0.8, "roc_auc": 0.96}, base)
    assert not better(dict(base), base)


def test_picture_is_a_png_that_opens(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    n = 400
    y = (rng.random(n) < 0.1).astype(np.int_)
    scores = np.clip(rng.normal(0.2 + 0.6 * y, 0.15), 0, 1)
    scored = Scored(
        refund_ids=[str(i) for i in range(n)],
        y=y,
        scores=scores,
        amounts=rng.integers(100, 10_000, n).astype(float),
        customers=[f"c{i % 150}" for i in range(n)],
    )
    path = picture(scored, tmp_path / "eval.png", title="test", thresholds=Thresholds(0.5, 0.8))
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] > 500
        assert image.size[1] > 300


def test_training_is_deterministic() -> None:
    X, y = _data(1_500, seed=5)
    a = train_booster(X, y, feature_names=NAMES, rounds=30).model_to_string()
    b = train_booster(X, y, feature_names=NAMES, rounds=30).model_to_string()
    assert a == b
