"""A small LightGBM fraud model trained inside the tests, on rows built from FEATURE_NAMES.

Fraud rows come from linked rings, serial refunders and empty boxes; legit rows are
first-time customers. Only the shape is realistic; the tests that use it check that the
scoring around a model works (levels, reasons, versions), not how good the model is.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from refunddesk.fraud.features import FEATURE_NAMES, INDEX


@dataclass
class TinyModel:
    version: str
    feature_names: tuple[str, ...]
    booster: lgb.Booster

    def predict(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
        return np.asarray(self.booster.predict(np.asarray(X, dtype=np.float64)), dtype=np.float64)

    def contributions(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
        raw = self.booster.predict(np.asarray(X, dtype=np.float64), pred_contrib=True)
        return np.asarray(raw, dtype=np.float64)[:, :-1]


def _rows(rng: np.random.Generator, n: int, fraud: bool) -> npt.NDArray[np.float64]:
    X = np.zeros((n, len(FEATURE_NAMES)))
    X[:, INDEX["refund_amount_minor"]] = rng.integers(500, 20_000, n)
    X[:, INDEX["refund_to_order_ratio"]] = rng.uniform(0.1, 1.0, n)
    X[:, INDEX["days_delivery_to_claim"]] = rng.uniform(0, 30, n)
    X[:, INDEX["days_purchase_to_claim"]] = rng.uniform(2, 35, n)
    X[:, INDEX["cust_orders_365d"]] = rng.integers(1, 6, n)
    X[:, INDEX["account_age_days"]] = np.nan
    X[:, INDEX["returned_weight_ratio"]] = np.nan
    X[:, INDEX["worn_window_used"]] = np.nan
    X[:, INDEX["linked_refund_rate"]] = np.nan
    X[:, INDEX["tenant_velocity_ratio"]] = rng.uniform(0.5, 2, n)
    if fraud:
        kind = rng.integers(0, 3, n)
        ring = kind == 0
        X[ring, INDEX["linked_accounts"]] = rng.integers(2, 6, ring.sum())
        X[ring, INDEX["linked_device_accounts"]] = X[ring, INDEX["linked_accounts"]]
        X[ring, INDEX["linked_refunds_30d"]] = rng.integers(3, 12, ring.sum())
        X[ring, INDEX["linked_device_refunds_30d"]] = X[ring, INDEX["linked_refunds_30d"]]
        X[ring, INDEX["linked_refund_rate"]] = rng.uniform(0.6, 1.0, ring.sum())
        serial = kind == 1
        X[serial, INDEX["cust_refunds_30d"]] = rng.integers(3, 10, serial.sum())
        X[serial, INDEX["cust_refunds_90d"]] = X[serial, INDEX["cust_refunds_30d"]] + 2
        box = kind == 2
        X[box, INDEX["returned_weight_ratio"]] = rng.uniform(0.0, 0.3, box.sum())
    else:
        some = rng.uniform(0, 1, n) < 0.2
        X[some, INDEX["returned_weight_ratio"]] = rng.uniform(0.9, 1.1, some.sum())
    return X


@cache
def tiny_model() -> TinyModel:
    rng = np.random.default_rng(7)
    X = np.vstack([_rows(rng, 600, False), _rows(rng, 300, True)])
    y = np.array([0] * 600 + [1] * 300)
    params = {
        "objective": "binary",
        "num_leaves": 7,
        "min_data_in_leaf": 10,
        "learning_rate": 0.2,
        "verbose": -1,
        "num_threads": 1,
        "deterministic": True,
        "seed": 7,
    }
    data = lgb.Dataset(X, label=y, feature_name=list(FEATURE_NAMES))
    booster = lgb.train(params, data, num_boost_round=40)
    return TinyModel("test-tiny-1", FEATURE_NAMES, booster)
