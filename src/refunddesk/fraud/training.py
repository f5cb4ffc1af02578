"""Train a tenant's fraud model from labelled refunds; evaluate; keep it only if it is better.

Rows are the tenant's labelled refunds (the latest label of each wins), with features as
they were when each refund was requested (refunddesk.fraud.features computes every row as of
its own creation time, so no row sees its future). The latest HOLDOUT_SHARE of refunds by
creation time is the hold-out: never trained on, and the one yardstick a new model and the
active one are both measured with.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.orm import Session

from refunddesk.core.clock import as_utc
from refunddesk.core.errors import Conflict, Invalid
from refunddesk.db.uow import Database
from refunddesk.fraud import store
from refunddesk.fraud.evaluate import REVIEW_RATE, Scored, better, metrics
from refunddesk.fraud.model import LoadedModel, Thresholds, fingerprint, train_booster
from refunddesk.fraud.model_orm import FraudModel
from refunddesk.fraud.orm import FraudLabel
from refunddesk.fraud.simulate import SIM_ACTOR
from refunddesk.orders.orm import Order
from refunddesk.refunds.orm import Refund

HOLDOUT_SHARE = 0.2
VALIDATION_SHARE = 0.2  # of the training part, its latest refunds: early stopping
MIN_LABELLED = 200
MIN_FRAUD = 20
# The score levels, as review rates on the training part: the top 5% of refunds are at
# least medium (reviewed), the top 1% high.
MEDIUM_RATE = REVIEW_RATE
HIGH_RATE = 0.01

Step = Callable[[str], None]


class NotEnoughLabels(Invalid):
    """Too few labelled refunds (or frauds among them) to train and judge a model."""


@dataclass
class LabelledSet:
    """A tenant's labelled refunds in time order, with their features."""

    refund_ids: list[str]
    created_at: list[datetime]
    y: npt.NDArray[np.int_]
    amounts: npt.NDArray[np.float64]
    customers: list[str]
    X: npt.NDArray[np.float64]
    names: tuple[str, ...]
    simulated: bool = False

    def __len__(self) -> int:
        return len(self.refund_ids)

    def scored(self, idx: npt.NDArray[np.int_], scores: npt.NDArray[np.float64]) -> Scored:
        return Scored(
            refund_ids=[self.refund_ids[i] for i in idx],
            y=self.y[idx],
            scores=scores,
            amounts=self.amounts[idx],
            customers=[self.customers[i] for i in idx],
        )


@dataclass
class TrainResult:
    tenant_id: str
    rows: int
    train_rows: int
    holdout_rows: int
    holdout_from: str
    candidate: dict[str, Any]
    incumbent: dict[str, Any] | None
    incumbent_version: str
    promoted: bool
    stored_version: int | None
    model_version: str | None
    thresholds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def labelled(session: Session, *, tenant_id: str, step: Step | None = None) -> LabelledSet:
    """The tenant's labelled refunds (latest label wins), oldest first, with features."""
    from refunddesk.fraud.features import FEATURE_NAMES, feature_matrix

    rows = session.execute(
        select(
            FraudLabel.refund_id,
            FraudLabel.label,
            FraudLabel.actor,
            Refund.created_at,
            Refund.amount_minor,
            Order.customer_email,
        )
        .join(
            Refund,
            (Refund.tenant_id == FraudLabel.tenant_id) & (Refund.id == FraudLabel.refund_id),
        )
        .join(Order, (Order.tenant_id == Refund.tenant_id) & (Order.id == Refund.order_id))
        .where(FraudLabel.tenant_id == tenant_id)
        .order_by(FraudLabel.at, FraudLabel.id)
    ).all()
    latest: dict[str, tuple[str, datetime, int, str]] = {}
    actors: set[str] = set()
    for refund_id, label, actor, created, amount, email in rows:
        latest[refund_id] = (label, as_utc(created), int(amount), email.lower())
        actors.add(actor)
    ordered = sorted(latest, key=lambda r: (latest[r][1], r))
    if step:
        step(f"features of {len(ordered)} labelled refunds")
    fm = feature_matrix(session, tenant_id=tenant_id, refund_ids=ordered)
    index = {rid: i for i, rid in enumerate(fm.refund_ids)}
    keep = [rid for rid in ordered if rid in index]
    X = fm.values[[index[r] for r in keep]] if keep else np.zeros((0, len(FEATURE_NAMES)))
    return LabelledSet(
        refund_ids=keep,
        created_at=[latest[r][1] for r in keep],
        y=np.array([1 if latest[r][0] == "fraud" else 0 for r in keep], dtype=np.int_),
        amounts=np.array([latest[r][2] for r in keep], dtype=np.float64),
        customers=[latest[r][3] for r in keep],
        X=X,
        names=tuple(fm.names),
        simulated=actors == {SIM_ACTOR},
    )


def split(
    n: int, share: float = HOLDOUT_SHARE
) -> tuple[npt.NDArray[np.int_], npt.NDArray[np.int_]]:
    """Indices of the earlier part and of the latest `share` of n time-ordered rows."""
    cut = n - round(n * share)
    return np.arange(cut), np.arange(cut, n)


def check_enough(ds: LabelledSet) -> None:
    frauds = int(ds.y.sum())
    if len(ds) < MIN_LABELLED or frauds < MIN_FRAUD:
        raise NotEnoughLabels(
            f"{len(ds)} labelled refunds ({frauds} fraud) are too few to train a model: "
            f"at least {MIN_LABELLED} with {MIN_FRAUD} fraud are needed; until then the "
            "rules and the cold-start model score this tenant",
            field="tenant",
        )


def fit(X: npt.NDArray[np.float64], y: npt.NDArray[np.int_], names: tuple[str, ...]) -> LoadedModel:
    """Trees on time-ordered rows: early stopping on the latest part, then all rows again."""
    inner, valid = split(len(y), VALIDATION_SHARE)
    first = train_booster(
        X[inner], y[inner], feature_names=names, X_valid=X[valid], y_valid=y[valid]
    )
    rounds = max(int(first.best_iteration or first.current_iteration()), 20)
    # The levels are review rates on refunds the first model had not seen (in-sample scores
    # of fraud are inflated, so their quantiles would flag too few).
    held = np.asarray(first.predict(X[valid], num_threads=1), dtype=np.float64)
    medium = float(np.quantile(held, 1 - MEDIUM_RATE))
    high = max(float(np.quantile(held, 1 - HIGH_RATE)), medium)
    booster = train_booster(X, y, feature_names=names, rounds=rounds)
    text = booster.model_to_string()
    return LoadedModel(
        version=f"candidate-{fingerprint(text)}",
        feature_names=names,
        booster=booster,
        thresholds=Thresholds(medium=medium, high=high),
        source="labels",
    )


def score(
    model: LoadedModel, ds: LabelledSet, idx: npt.NDArray[np.int_]
) -> npt.NDArray[np.float64]:
    if model.feature_names != ds.names:
        raise Invalid(
            f"model {model.version} was trained on other features than today's", field="model"
        )
    return model.predict(ds.X[idx])


def train(
    session: Session,
    *,
    tenant_id: str,
    actor: str,
    now: datetime,
    step: Step | None = None,
    db: Database | None = None,
) -> TrainResult:
    """Train, evaluate on the hold-out, and store + activate only if it beats the active model.

    With `db`, `session` may be a read session: the work (seconds to minutes) holds no write
    lock, and a better model is stored in a short write transaction of its own, provided the
    model it was compared with is still the active one.
    """
    ds = labelled(session, tenant_id=tenant_id, step=step)
    check_enough(ds)
    train_idx, hold_idx = split(len(ds))
    if int(ds.y[hold_idx].sum()) == 0 or int(ds.y[train_idx].sum()) < MIN_FRAUD // 2:
        raise NotEnoughLabels(
            "the hold-out or the training part has too few frauds to judge a model",
            field="tenant",
        )
    if step:
        step(f"training on {len(train_idx)} refunds")
    candidate = fit(ds.X[train_idx], ds.y[train_idx], ds.names)
    candidate.source = "simulator" if ds.simulated else "labels"
    if step:
        step(f"evaluating on the latest {len(hold_idx)} refunds")
    cand_metrics = metrics(
        ds.scored(hold_idx, score(candidate, ds, hold_idx)), candidate.thresholds
    )
    incumbent = store.active_model(session, tenant_id=tenant_id)
    inc_metrics: dict[str, Any] | None = None
    if incumbent.feature_names == ds.names:
        inc_metrics = metrics(
            ds.scored(hold_idx, score(incumbent, ds, hold_idx)), incumbent.thresholds
        )
    promoted = inc_metrics is None or better(cand_metrics, inc_metrics)
    stored: int | None = None
    version: str | None = None
    if promoted:
        candidate.metrics = {
            **cand_metrics,
            "train_rows": len(train_idx),
            "holdout_rows": len(hold_idx),
            "holdout_from": ds.created_at[int(hold_idx[0])].isoformat(),
        }
        if step:
            step("storing the new model")
        if db is None:
            row = _save(session, tenant_id, candidate, actor, now, incumbent.version)
        else:
            with db.write() as writing:
                row = _save(writing, tenant_id, candidate, actor, now, incumbent.version)
        stored, version = row.version, store.tenant_version(row.version)
    return TrainResult(
        tenant_id=tenant_id,
        rows=len(ds),
        train_rows=len(train_idx),
        holdout_rows=len(hold_idx),
        holdout_from=ds.created_at[int(hold_idx[0])].isoformat(),
        candidate=cand_metrics,
        incumbent=inc_metrics,
        incumbent_version=incumbent.version,
        promoted=promoted,
        stored_version=stored,
        model_version=version,
        thresholds=candidate.thresholds.as_dict(),
    )


def _save(
    session: Session,
    tenant_id: str,
    candidate: LoadedModel,
    actor: str,
    now: datetime,
    compared_with: str,
) -> FraudModel:
    if store.active_model(session, tenant_id=tenant_id).version != compared_with:
        raise Conflict(
            "another model was activated while this one trained; train again to compare with it",
            field="tenant",
        )
    return store.save_model(
        session,
        tenant_id=tenant_id,
        model=candidate,
        source=candidate.source,
        actor=actor,
        now=now,
        activate=True,
    )


@dataclass
class EvaluationResult:
    tenant_id: str
    model_version: str
    rows: int
    holdout_only: bool
    metrics: dict[str, Any]
    picture: str | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def evaluate_active(
    session: Session,
    *,
    tenant_id: str,
    picture: Path | None,
    holdout_only: bool = True,
    model: LoadedModel | None = None,
    step: Step | None = None,
) -> EvaluationResult:
    """The active model's metrics on the tenant's hold-out (or all labelled refunds)."""
    from refunddesk.fraud.evaluate import picture as draw

    model = model or store.active_model(session, tenant_id=tenant_id)
    ds = labelled(session, tenant_id=tenant_id, step=step)
    if len(ds) == 0 or int(ds.y.sum()) == 0:
        raise NotEnoughLabels(
            f"{len(ds)} labelled refunds, {int(ds.y.sum())} of them fraud: nothing to measure",
            field="tenant",
        )
    idx = split(len(ds))[1] if holdout_only else np.arange(len(ds))
    scored = ds.scored(idx, score(model, ds, idx))
    result = metrics(scored, model.thresholds)
    path = None
    if picture is not None:
        what = "hold-out (latest 20%)" if holdout_only else "all labelled refunds"
        draw(
            scored,
            picture,
            title=f"fraud model {model.version} on {len(idx)} refunds, {what}",
            thresholds=model.thresholds,
        )
        path = str(picture)
    return EvaluationResult(
        tenant_id=tenant_id,
        model_version=model.version,
        rows=len(idx),
        holdout_only=holdout_only,
        metrics=result,
        picture=path,
    )


# ------------------------------------------------------------------ the cold-start model
COLD_START_ORDERS = 150_000
COLD_START_SEED = 20261122
COLD_START_END = datetime.fromisoformat("2026-11-01T00:00:00+00:00")
VOLUME_FEATURES = ("tenant_refunds_1h", "tenant_velocity_ratio")


def simulated_session(
    *, orders: int, seed: int, end: datetime, folder: Path, step: Step | None = None
) -> tuple[Session, str]:
    """A scratch SQLite database holding one simulated tenant: (session, tenant id)."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    from refunddesk.core.clock import FrozenClock
    from refunddesk.db.models import Base
    from refunddesk.fraud.simulate import simulate, write
    from refunddesk.tenants.service import create_tenant

    engine = create_engine(f"sqlite:///{folder / 'simulation.db'}")
    Base.metadata.create_all(engine)
    session = sessionmaker(engine)()
    tenant, _ = create_tenant(session, clock=FrozenClock(end), name="Fraud simulator")
    if step:
        step(f"simulating {orders} orders (seed {seed})")
    sim = simulate(orders=orders, seed=seed, end=end, id_salt=tenant.id)
    write(session, tenant_id=tenant.id, sim=sim)
    session.commit()
    return session, tenant.id


def build_cold_start(
    *,
    out: Path,
    orders: int = COLD_START_ORDERS,
    seed: int = COLD_START_SEED,
    step: Step | None = None,
) -> dict[str, Any]:
    """Train the shipped model on a fresh simulation; write it (text + metadata) to `out`."""
    from refunddesk.fraud.model import metadata_json

    with tempfile.TemporaryDirectory() as tmp:
        session, tenant_id = simulated_session(
            orders=orders, seed=seed, end=COLD_START_END, folder=Path(tmp), step=step
        )
        try:
            ds = labelled(session, tenant_id=tenant_id, step=step)
        finally:
            session.close()
            bind = session.get_bind()
            bind.dispose()  # type: ignore[union-attr]
    train_idx, hold_idx = split(len(ds))
    if step:
        step(f"training on {len(train_idx)} simulated refunds")
    # A desk-wide model cannot know a tenant's normal volume, and the simulator's is
    # arbitrary: without values in training, the trees never split on these features.
    X = ds.X.copy()
    for name in VOLUME_FEATURES:
        if name in ds.names:
            X[:, ds.names.index(name)] = np.nan
    model = fit(X[train_idx], ds.y[train_idx], ds.names)
    model.source = "simulator"
    held = metrics(ds.scored(hold_idx, model.predict(ds.X[hold_idx])), model.thresholds)
    held["blank_features"] = list(VOLUME_FEATURES)
    text = model.to_text()
    model.version = f"cold-start-{fingerprint(text)}"
    model.metrics = {
        **held,
        "simulation": {"orders": orders, "seed": seed, "end": COLD_START_END.isoformat()},
        "train_rows": len(train_idx),
        "holdout_rows": len(hold_idx),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / store.COLD_START_TEXT).write_text(text, encoding="utf-8")
    (out / store.COLD_START_META).write_text(metadata_json(model) + "\n", encoding="utf-8")
    return {"version": model.version, "metrics": model.metrics, "out": str(out)}
