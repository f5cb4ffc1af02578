"""How good a fraud model is: metrics on labelled refunds, and a picture of them.

The figures that matter to a refund desk are not only ROC AUC: with reviewers for a fixed
share of refunds (REVIEW_RATE), how much of the fraudulent money do they stop, and how many
honest customers are troubled for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from refunddesk.fraud.model import Thresholds

REVIEW_RATE = 0.05
# The targets of issue #7, on the project's simulator with a time-based hold-out.
TARGETS = {
    "roc_auc": 0.95,
    "value_caught_at_review_rate": 0.80,
    "honest_customer_fpr_at_review_rate": 0.03,
}


@dataclass(frozen=True)
class Scored:
    """Labelled refunds with a model's scores: the input of every metric."""

    refund_ids: list[str]
    y: npt.NDArray[np.int_]  # 1 = fraud
    scores: npt.NDArray[np.float64]
    amounts: npt.NDArray[np.float64]  # refund value in minor units
    customers: list[str]


def flagged_at_rate(scores: npt.NDArray[np.float64], rate: float) -> npt.NDArray[np.bool_]:
    """The top `rate` share of rows by score (ties broken by position, so exactly that many)."""
    n = len(scores)
    k = int(np.ceil(rate * n)) if n else 0
    flags = np.zeros(n, dtype=bool)
    if k:
        order = np.argsort(-scores, kind="stable")
        flags[order[:k]] = True
    return flags


def _at(s: Scored, flags: npt.NDArray[np.bool_]) -> dict[str, float]:
    y = s.y.astype(bool)
    fraud_value = float(s.amounts[y].sum())
    tp = int((flags & y).sum())
    fp = int((flags & ~y).sum())
    honest_customers = {c for c, f in zip(s.customers, y, strict=True)} - {
        c for c, f in zip(s.customers, y, strict=True) if f
    }
    troubled = {c for c, f in zip(s.customers, flags, strict=True) if f} & honest_customers
    return {
        "flagged_share": float(flags.mean()) if len(flags) else 0.0,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / int(y.sum()) if y.any() else 0.0,
        "value_caught": float(s.amounts[flags & y].sum()) / fraud_value if fraud_value else 0.0,
        "fpr": fp / int((~y).sum()) if (~y).any() else 0.0,
        "honest_customer_fpr": len(troubled) / len(honest_customers) if honest_customers else 0.0,
    }


def metrics(s: Scored, thresholds: Thresholds | None = None) -> dict[str, Any]:
    """ROC AUC, average precision, and the desk's figures at the review rate and thresholds."""
    from sklearn.metrics import (  # type: ignore[import-untyped]
        average_precision_score,
        roc_auc_score,
    )

    y = s.y
    both = 0 < int(y.sum()) < len(y)
    at_rate = _at(s, flagged_at_rate(s.scores, REVIEW_RATE))
    out: dict[str, Any] = {
        "refunds": len(y),
        "frauds": int(y.sum()),
        "fraud_value_minor": int(s.amounts[y.astype(bool)].sum()),
        "roc_auc": float(roc_auc_score(y, s.scores)) if both else None,
        "average_precision": float(average_precision_score(y, s.scores)) if both else None,
        "review_rate": REVIEW_RATE,
        "value_caught_at_review_rate": at_rate["value_caught"],
        "recall_at_review_rate": at_rate["recall"],
        "precision_at_review_rate": at_rate["precision"],
        "fpr_at_review_rate": at_rate["fpr"],
        "honest_customer_fpr_at_review_rate": at_rate["honest_customer_fpr"],
    }
    if thresholds is not None:
        for level, cut in (("medium", thresholds.medium), ("high", thresholds.high)):
            figures = _at(s, s.scores >= cut)
            out[f"at_{level}"] = {"threshold": cut, **figures}
    out["targets_met"] = targets_met(out)
    return out


def targets_met(m: dict[str, Any]) -> dict[str, bool]:
    auc = m.get("roc_auc")
    return {
        "roc_auc": auc is not None and auc >= TARGETS["roc_auc"],
        "value_caught_at_review_rate": m["value_caught_at_review_rate"]
        >= TARGETS["value_caught_at_review_rate"],
        "honest_customer_fpr_at_review_rate": m["honest_customer_fpr_at_review_rate"]
        <= TARGETS["honest_customer_fpr_at_review_rate"],
    }


def better(candidate: dict[str, Any], incumbent: dict[str, Any]) -> bool:
    """Whether candidate metrics beat the incumbent's on the same rows.

    First the fraudulent value caught at the review rate (what the desk is for), then ROC AUC.
    """
    a = candidate["value_caught_at_review_rate"]
    b = incumbent["value_caught_at_review_rate"]
    if abs(a - b) > 1e-9:
        return bool(a > b)
    return bool((candidate.get("roc_auc") or 0.0) > (incumbent.get("roc_auc") or 0.0))


def picture(s: Scored, path: Path, *, title: str, thresholds: Thresholds | None = None) -> Path:
    """A PNG: the precision / recall curve, and score histograms of fraud and legit refunds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=100)
    try:
        if 0 < int(s.y.sum()) < len(s.y):
            precision, recall, _ = precision_recall_curve(s.y, s.scores)
            left.plot(recall, precision, color="#1f5fa8", linewidth=2)
            at = _at(s, flagged_at_rate(s.scores, REVIEW_RATE))
            left.scatter(
                [at["recall"]],
                [at["precision"]],
                color="#c0392b",
                zorder=3,
                label=f"review {REVIEW_RATE:.0%}: recall {at['recall']:.2f}, "
                f"precision {at['precision']:.2f}",
            )
            left.legend(loc="lower left", fontsize=8)
        left.set_xlabel("recall")
        left.set_ylabel("precision")
        left.set_xlim(0, 1.02)
        left.set_ylim(0, 1.02)
        left.set_title("precision / recall")
        left.grid(alpha=0.3)
        bins = np.linspace(0, 1, 41)
        y = s.y.astype(bool)
        right.hist(s.scores[~y], bins=bins, alpha=0.6, label=f"legit ({int((~y).sum())})")
        right.hist(s.scores[y], bins=bins, alpha=0.7, label=f"fraud ({int(y.sum())})")
        right.set_yscale("log")
        if thresholds is not None:
            for cut, name in ((thresholds.medium, "medium"), (thresholds.high, "high")):
                right.axvline(cut, color="#555", linestyle="--", linewidth=1)
                right.text(cut, right.get_ylim()[1] * 0.5, f" {name}", fontsize=8)
        right.set_xlabel("score")
        right.set_ylabel("refunds (log)")
        right.set_title("scores by label")
        right.legend(fontsize=8)
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path
