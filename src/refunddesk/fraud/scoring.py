"""Risk of a refund: the model's score, the tenant's rules, plain-language reasons, a level.

Intake scores each refund before it is decided (`score_request`, then `apply_risk` turns a
medium or high level into a review, a hold or a rejection with a visible finding); batch
rescoring (`rescore`) does the same for many stored refunds with set-based queries.
A score always names the model and the rules that made it; without a model (none could be
loaded) the rules alone set the level and no score is given.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from refunddesk.db.base import table_of
from refunddesk.db.prepared import Driver, Prepared
from refunddesk.fraud.features import (
    FEATURE_NAMES,
    SCAN_FROM,
    Claim,
    FeatureMatrix,
    IntakeRequest,
    build_matrix,
    intake_features,
    load_claims,
    load_history,
    scan_history,
)
from refunddesk.fraud.reasons import render
from refunddesk.fraud.rules import FraudRules, Hit, Level, fire_matrix, higher, rule_features
from refunddesk.policy.document import Severity
from refunddesk.policy.engine import Evaluation, Finding, PolicyDecision
from refunddesk.policy.service import CACHE, DEFAULT_VERSION
from refunddesk.refunds.domain import OPEN
from refunddesk.refunds.orm import Refund
from refunddesk.tenants.orm import Tenant

log = logging.getLogger(__name__)

MAX_MODEL_REASONS = 4
# Contributions (log-odds) smaller than this are noise, not a reason.
MIN_CONTRIBUTION = 0.05
RULE_WEIGHT = {Level.HIGH: 1.0, Level.MEDIUM: 0.5, Level.LOW: 0.0}
FINDING_CODES = {"review": "fraud_review", "hold": "fraud_hold", "reject": "fraud_reject"}


class Model(Protocol):
    """What scoring needs of a model (refunddesk.fraud.model.LoadedModel has it)."""

    @property
    def version(self) -> str: ...
    @property
    def feature_names(self) -> tuple[str, ...]: ...
    def predict(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]: ...
    def contributions(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]: ...


@dataclass(frozen=True, slots=True)
class Risk:
    """A refund's risk as stored on it (risk_* columns) and shown to agents."""

    score: float | None
    level: Level
    reasons: list[dict[str, Any]]
    model_version: str | None
    rules_version: str
    missing: list[str]

    def columns(self, at: datetime) -> dict[str, Any]:
        return {
            "risk_score": self.score,
            "risk_level": str(self.level),
            "risk_reasons": self.reasons,
            "risk_model_version": self.model_version,
            "risk_rules_version": self.rules_version,
            "risk_scored_at": at,
        }

    def summary(self) -> str:
        said = "; ".join(r["message"] for r in self.reasons[:3]) or "no single signal stands out"
        score = f" ({self.score:.2f})" if self.score is not None else ""
        return f"fraud risk {self.level}{score}: {said}"


def active_model(session: Session, *, tenant_id: str) -> Model | None:
    """The tenant's model (refunddesk.fraud.store), or None when none can be loaded."""
    try:
        from refunddesk.fraud.store import active_model as stored

        return stored(session, tenant_id=tenant_id)
    except Exception:  # a missing or broken model must not stop intake: rules still apply
        log.exception("no fraud model could be loaded for tenant %s; rules only", tenant_id)
        return None


# Thresholds when neither the tenant's rules nor the model name any.
DEFAULT_MEDIUM_AT, DEFAULT_HIGH_AT = 0.5, 0.8


def _level_of(score: float, model: Model, rules: FraudRules) -> Level:
    """The model's level for a score, unless the tenant's rules move the thresholds."""
    own = getattr(model, "level", None)
    base = Level(own(score)) if callable(own) else None
    medium, high = rules.medium_at, rules.high_at
    if base is None:
        medium = DEFAULT_MEDIUM_AT if medium is None else medium
        high = DEFAULT_HIGH_AT if high is None else high
    if high is not None and score >= high:
        return Level.HIGH
    if medium is not None:
        if score >= medium:
            return Level.MEDIUM if high is not None or base is not Level.HIGH else Level.HIGH
        return Level.LOW
    assert base is not None
    # Only high_at is the tenant's: below it, the model may say medium at most.
    return Level.MEDIUM if base is Level.HIGH else base


def _rule_message(hit: Hit, rules: FraudRules, values: Mapping[str, float], currency: str) -> str:
    if hit.message is not None:
        return hit.message
    said = [render(name, values, currency) for name in rule_features(rules, hit.code)]
    text = [s for s in dict.fromkeys(said) if s]
    if text:
        return "; ".join(text)
    shown = ", ".join(f"{n} = {values[n]:g}" for n in rule_features(rules, hit.code))
    return f"rule {hit.code}: {shown}"


def explain(
    values: Mapping[str, float],
    contributions: npt.NDArray[np.float64] | Sequence[float] | None,
    hits: Sequence[Hit],
    rules: FraudRules,
    currency: str,
    *,
    top: npt.NDArray[np.int_] | Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """Reasons, strongest first: fired rules, then the features that pushed the score up most,
    each said only when its value on this refund supports the sentence."""
    reasons: list[dict[str, Any]] = []
    said: set[str] = set()
    covered: set[str] = set()
    for hit in hits:
        message = _rule_message(hit, rules, values, currency)
        reasons.append({"code": hit.code, "message": message, "weight": RULE_WEIGHT[hit.level]})
        said.add(message)
        covered.update(rule_features(rules, hit.code))
    if contributions is None:
        return reasons
    order = list(top) if top is not None else np.argsort(-np.asarray(contributions)).tolist()
    added = 0
    for j in order:
        weight = float(contributions[j])  # a list or an array
        if weight < MIN_CONTRIBUTION or added >= MAX_MODEL_REASONS:
            break
        name = FEATURE_NAMES[j]
        if name in covered:
            continue
        sentence = render(name, values, currency)
        if sentence is None or sentence in said:
            continue
        reasons.append({"code": name, "message": sentence, "weight": round(weight, 4)})
        said.add(sentence)
        added += 1
    return reasons


class _Bias:
    """A model's bias (expected log-odds), so one contributions call also gives the score."""

    def __init__(self) -> None:
        self._known: dict[int, tuple[Model, float]] = {}

    def of(
        self, model: Model, row: npt.NDArray[np.float64], contrib: npt.NDArray[np.float64]
    ) -> float:
        found = self._known.get(id(model))
        if found is not None and found[0] is model:
            return found[1]
        p = float(np.clip(model.predict(row)[0], 1e-12, 1 - 1e-12))
        bias = math.log(p / (1 - p)) - float(contrib.sum())
        if len(self._known) > 64:
            self._known.clear()
        self._known[id(model)] = (model, bias)
        return bias


_BIAS = _Bias()


def scores_and_contributions(
    model: Model, X: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Scores 0..1 and per-feature contributions with one pass of the trees."""
    contrib = model.contributions(X)
    if len(X) == 0:
        return np.zeros(0), contrib
    bias = _BIAS.of(model, X[:1], contrib[0])
    raw = bias + contrib.sum(axis=1)
    return 1.0 / (1.0 + np.exp(-raw)), contrib


def assess(
    values: npt.NDArray[np.float64],
    *,
    claims: Sequence[Claim],
    missing: Sequence[list[str]],
    currencies: Sequence[str],
    model: Model | None,
    rules: FraudRules,
) -> list[Risk]:
    """Risk of each row of a feature matrix (rows in the order of claims)."""
    if model is not None and tuple(model.feature_names) != FEATURE_NAMES:
        log.warning("fraud model %s has other features; rules only", model.version)
        model = None
    if model is not None and len(claims):
        scores, contrib = scores_and_contributions(model, values)
    else:
        scores, contrib = np.full(len(claims), np.nan), None
    hits, allowed = fire_matrix(rules, values, [c.keys for c in claims])
    # Whole-matrix conversions to lists once: numpy's per-element access costs more per row.
    order = np.argsort(-contrib, axis=1)[:, :12].tolist() if contrib is not None else None
    contrib_rows = contrib.tolist() if contrib is not None else None
    rows = values.tolist()
    score_list = scores.tolist()
    version = None if model is None else model.version
    out: list[Risk] = []
    for i in range(len(claims)):
        named = dict(zip(FEATURE_NAMES, rows[i], strict=True))
        score = None if model is None else score_list[i]
        level = Level.LOW
        if not allowed[i]:
            if model is not None and score is not None:
                level = _level_of(score, model, rules)
            for hit in hits[i]:
                level = higher(level, hit.level)
        row_contrib = None if contrib_rows is None or allowed[i] else contrib_rows[i]
        top = None if order is None else order[i]
        out.append(
            Risk(
                score=None if score is None else round(score, 6),
                level=level,
                reasons=explain(named, row_contrib, hits[i], rules, currencies[i], top=top),
                model_version=version,
                rules_version=rules.version,
                missing=list(missing[i]),
            )
        )
    return out


def assess_matrix(
    matrix: FeatureMatrix,
    claims: Sequence[Claim],
    currencies: Sequence[str],
    model: Model | None,
    rules: FraudRules,
) -> list[Risk]:
    return assess(
        matrix.values,
        claims=claims,
        missing=matrix.missing,
        currencies=currencies,
        model=model,
        rules=rules,
    )


def score_request(
    session: Session,
    *,
    tenant_id: str,
    request: IntakeRequest,
    rules: FraudRules,
    currency: str,
    model: Model | None = None,
) -> Risk:
    """Risk of a refund being requested (intake): a few indexed lookups and one model pass."""
    claim, row, missing = intake_features(session, tenant_id=tenant_id, request=request)
    if model is None:
        model = active_model(session, tenant_id=tenant_id)
    return assess(
        row, claims=[claim], missing=[missing], currencies=[currency], model=model, rules=rules
    )[0]


def apply_risk(evaluation: Evaluation, risk: Risk, rules: FraudRules) -> Evaluation:
    """The policy's decision after the risk: medium -> review, high -> hold or reject.

    The fraud finding says why, so the decision reasons show it; a refund the policy already
    rejects stays rejected; a low risk changes nothing.
    """
    if not rules.enabled or risk.level is Level.LOW:
        return evaluation
    if evaluation.decision is PolicyDecision.REJECTED:
        return evaluation
    action = rules.on_high if risk.level is Level.HIGH else rules.on_medium
    if action == "continue":
        return evaluation
    severity = Severity.HARD if action == "reject" else Severity.SOFT
    finding = Finding(FINDING_CODES[action], severity, risk.summary())
    if action == "reject":
        return replace(
            evaluation,
            decision=PolicyDecision.REJECTED,
            findings=(*evaluation.findings, finding),
            approvals_required=0,
            return_required=False,
            return_by=None,
        )
    if evaluation.decision is PolicyDecision.AWAITING_RETURN:
        # The goods still come back first; on receipt the refund goes to review (a return
        # received with approvals required is reviewed), so it never pays without them.
        return replace(
            evaluation,
            findings=(*evaluation.findings, finding),
            approvals_required=max(evaluation.approvals_required, 1),
        )
    return replace(
        evaluation,
        decision=PolicyDecision.PENDING_REVIEW,
        findings=(*evaluation.findings, finding),
        approvals_required=max(evaluation.approvals_required, 1),
    )


# --- batch rescoring --------------------------------------------------------------------------

BATCH = 5_000
RISK_COLUMNS = (
    "risk_score",
    "risk_level",
    "risk_reasons",
    "risk_model_version",
    "risk_rules_version",
    "risk_scored_at",
)
_UPDATE_RISK = Prepared(
    update(table_of(Refund))
    .where(
        table_of(Refund).c.tenant_id == bindparam("t_id"),
        table_of(Refund).c.id == bindparam("r_id"),
    )
    .values({name: bindparam(f"v_{name}") for name in RISK_COLUMNS})
)


def _prefixed(columns: Mapping[str, Any]) -> dict[str, Any]:
    return {f"v_{name}": value for name, value in columns.items()}


@dataclass
class RescoreResult:
    tenant_id: str
    refunds: int = 0
    levels: dict[str, int] = field(default_factory=lambda: {"low": 0, "medium": 0, "high": 0})
    changed: int = 0  # refunds whose level is not what it was
    model_version: str | None = None
    rules_version: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "refunds": self.refunds,
            "levels": self.levels,
            "changed": self.changed,
            "model_version": self.model_version,
            "rules_version": self.rules_version,
            "seconds": round(self.seconds, 3),
            "refunds_per_second": round(self.refunds / self.seconds) if self.seconds else None,
        }


def tenant_rules(session: Session, *, tenant_id: str) -> FraudRules:
    """The fraud section of the tenant's active policy."""
    version = session.scalar(select(Tenant.active_policy_version).where(Tenant.id == tenant_id))
    return CACHE.parsed(session, tenant_id, version or DEFAULT_VERSION).fraud


def open_refund_ids(session: Session, *, tenant_id: str) -> list[str]:
    """The tenant's refunds not yet final, oldest first."""
    return list(
        session.scalars(
            select(Refund.id)
            .where(Refund.tenant_id == tenant_id, Refund.status.in_(sorted(str(s) for s in OPEN)))
            .order_by(Refund.id)
        )
    )


def rescore(
    session: Session,
    *,
    tenant_id: str,
    now: datetime,
    refund_ids: Sequence[str] | None = None,
    model: Model | None = None,
    rules: FraudRules | None = None,
    progress: Callable[[int], None] | None = None,
) -> RescoreResult:
    """Score refunds again (by default every open one) with what is known now; store the risk.

    Statuses are left alone: a refund already decided is for an agent to look at again.
    """
    started = time.perf_counter()
    ids = (
        list(refund_ids)
        if refund_ids is not None
        else open_refund_ids(session, tenant_id=tenant_id)
    )
    rules = rules if rules is not None else tenant_rules(session, tenant_id=tenant_id)
    model = model if model is not None else active_model(session, tenant_id=tenant_id)
    result = RescoreResult(
        tenant_id=tenant_id,
        model_version=None if model is None else model.version,
        rules_version=rules.version,
    )
    cut = now.timestamp()
    # Many refunds: one scan of the tenant's history serves every chunk.
    shared = (
        scan_history(session, tenant_id=tenant_id, claims=[], as_of=cut)
        if len(ids) >= SCAN_FROM
        else None
    )
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        claims = load_claims(session, tenant_id=tenant_id, refund_ids=chunk)
        history = shared or load_history(session, tenant_id=tenant_id, claims=claims, as_of=cut)
        matrix = build_matrix(claims, history, as_of=now.timestamp())
        risks = assess_matrix(matrix, claims, [c.currency for c in claims], model, rules)
        rows = []
        for claim, risk in zip(claims, risks, strict=True):
            cols = risk.columns(now)
            rows.append({"t_id": tenant_id, "r_id": claim.refund_id, **_prefixed(cols)})
            result.levels[str(risk.level)] += 1
            if claim.risk_level != str(risk.level):
                result.changed += 1
        if rows:
            Driver.of(session).execute_many(_UPDATE_RISK, rows)
        result.refunds += len(rows)
        if progress is not None:
            progress(len(chunk))
    result.seconds = time.perf_counter() - started
    return result
