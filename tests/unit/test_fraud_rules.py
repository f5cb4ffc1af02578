"""Fraud rules, block/allow lists, levels, truthful reasons and the decision they lead to."""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from refunddesk.fraud.features import FEATURE_NAMES, INDEX, Claim
from refunddesk.fraud.linking import OrderIdentity, identity_keys
from refunddesk.fraud.reasons import RENDER, render
from refunddesk.fraud.rules import DEFAULT_RULES_DOC, FraudRules, Level, fire, fire_matrix
from refunddesk.fraud.scoring import Risk, apply_risk, assess, scores_and_contributions
from refunddesk.policy.document import RefundMethod, Severity, parse_policy
from refunddesk.policy.engine import Breakdown, Evaluation, PolicyDecision
from tests.fraud_support import tiny_model


def values(**set_: float) -> dict[str, float]:
    out = dict.fromkeys(FEATURE_NAMES, 0.0)
    for name in ("account_age_days", "returned_weight_ratio", "worn_window_used"):
        out[name] = math.nan
    out.update(set_)
    return out


def row(v: dict[str, float]) -> np.ndarray:
    return np.array([[v[n] for n in FEATURE_NAMES]], dtype=np.float64)


def claim(email: str = "eve@example.com", **identity: Any) -> Claim:
    return Claim(
        refund_id="R1",
        order_id="O1",
        created_at=0.0,
        reason="damaged",
        amount_minor=1000,
        evidence_count=0,
        requested_method=None,
        delivery_confirmation=None,
        order_total_minor=1000,
        payment_method="card",
        purchased_at=0.0,
        delivered_at=None,
        email=email,
        customer_since=None,
        keys=identity_keys(OrderIdentity(email=email, **identity)),
    )


@pytest.mark.parametrize(
    ("code", "firing", "quiet"),
    [
        (
            "linked_ring",
            {"linked_refunds_30d": 3, "linked_accounts": 2},
            {"linked_refunds_30d": 3, "linked_accounts": 1},
        ),
        ("empty_box", {"returned_weight_ratio": 0.2}, {"returned_weight_ratio": 0.95}),
        (
            "not_received_signed",
            {"not_received_but_delivered": 1.0},
            {"not_received_but_delivered": 0.5},
        ),
        ("serial_refunder", {"cust_refunds_30d": 5}, {"cust_refunds_30d": 4}),
    ],
)
def test_each_default_rule_fires_at_its_threshold_and_not_below(
    code: str, firing: dict[str, float], quiet: dict[str, float]
) -> None:
    hits, _ = fire(DEFAULT_RULES_DOC, values(**firing), claim().keys)
    assert code in [h.code for h in hits]
    hits, _ = fire(DEFAULT_RULES_DOC, values(**quiet), claim().keys)
    assert code not in [h.code for h in hits]


def test_a_missing_signal_never_fires_a_rule() -> None:
    hits, _ = fire(DEFAULT_RULES_DOC, values(returned_weight_ratio=math.nan), claim().keys)
    assert hits == []


def test_block_list_matches_normalised_email_and_device() -> None:
    rules = FraudRules(block={"emails": ["Mal.Lory+x@gmail.com"], "devices": ["dev-9"]})
    hits, allowed = fire(rules, values(), claim("mallory@gmail.com").keys)
    assert [(h.code, h.level) for h in hits] == [("block_listed", Level.HIGH)]
    assert not allowed
    hits, _ = fire(rules, values(), claim(device_id="dev-9").keys)
    assert hits[0].code == "block_listed"
    assert "device" in (hits[0].message or "")


def test_allow_list_wins_over_rules_and_model() -> None:
    rules = FraudRules(allow={"customer_refs": ["vip-1"]})
    c = claim(customer_ref="vip-1")
    ring = values(linked_refunds_30d=9, linked_accounts=4)
    risk = assess(
        row(ring), claims=[c], missing=[[]], currencies=["EUR"], model=tiny_model(), rules=rules
    )[0]
    assert risk.level is Level.LOW
    assert [r["code"] for r in risk.reasons] == ["allow_listed"]


def test_policy_fraud_section_parses_with_custom_rules_and_lists() -> None:
    policy = parse_policy(
        """
fraud:
  on_high: reject
  medium_at: 0.4
  rules:
    - code: big_electronics
      level: medium
      when: {high_risk_category_share: {at_least: 0.5}, refund_amount_minor: {at_least: 50000}}
  block: {payment_fingerprints: [fp-bad]}
"""
    )
    fraud = policy.fraud
    assert fraud.on_high == "reject"
    assert [r.code for r in fraud.rules] == ["big_electronics"]
    assert fraud.version.startswith("rules-")
    assert fraud.version != DEFAULT_RULES_DOC.version


def test_a_rule_on_an_unknown_feature_is_refused() -> None:
    with pytest.raises(ValidationError, match="unknown feature"):
        FraudRules(rules=[{"code": "x", "level": "high", "when": {"shoe_size": {"at_least": 1}}}])


def test_rules_version_is_stable_for_the_same_rules() -> None:
    assert FraudRules().version == FraudRules().version
    assert FraudRules(on_high="reject").version != FraudRules().version


def test_every_feature_can_be_said_in_plain_language() -> None:
    assert set(RENDER) == set(FEATURE_NAMES)


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("linked_device_refunds_30d", 4, "4 refunds in 30 days from accounts sharing this device"),
        ("linked_payment_accounts", 1, "1 other account shares this payment card or account"),
        ("cust_refunds_30d", 2, "2 earlier refunds by this customer in 30 days"),
        ("returned_weight_ratio", 0.1, "the returned parcel weighs 10% of what the goods"),
        ("cust_refund_value_30d", 12_345, "earlier refunds worth 123.45 EUR"),
    ],
)
def test_reasons_say_the_value_on_the_refund(name: str, value: float, text: str) -> None:
    said = render(name, values(**{name: value}), "EUR")
    assert said is not None
    assert text in said


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("linked_device_refunds_30d", 0),
        ("cust_refunds_30d", 0),
        ("returned_weight_ratio", math.nan),
        ("returned_weight_ratio", 1.0),
        ("account_age_days", math.nan),
        ("account_age_days", 400),
        ("not_received_but_delivered", 0),
        ("cust_refund_rate_365d", 1.0),  # this refund alone: a first-time customer
    ],
)
def test_no_reason_is_said_when_the_signal_is_absent_or_benign(name: str, value: float) -> None:
    assert render(name, values(**{name: value}), "EUR") is None


def test_model_reasons_are_true_of_the_refund_and_rules_come_first() -> None:
    model = tiny_model()
    ring = values(
        linked_accounts=3,
        linked_device_accounts=3,
        linked_refunds_30d=6,
        linked_device_refunds_30d=6,
        linked_refund_rate=0.9,
        refund_amount_minor=9000,
        cust_orders_365d=1,
        tenant_velocity_ratio=1,
    )
    risk = assess(
        row(ring),
        claims=[claim()],
        missing=[[]],
        currencies=["EUR"],
        model=model,
        rules=DEFAULT_RULES_DOC,
    )[0]
    assert risk.level is Level.HIGH
    assert risk.reasons[0]["code"] == "linked_ring"
    assert "6 refunds in 30 days from linked accounts" in risk.reasons[0]["message"]
    for reason in risk.reasons[1:]:
        # Each model reason names a feature whose value on this refund supports the sentence.
        assert reason["code"] in FEATURE_NAMES
        assert reason["message"] == render(reason["code"], ring, "EUR")
        assert reason["weight"] > 0
    assert risk.model_version == "test-tiny-1"
    assert risk.rules_version == DEFAULT_RULES_DOC.version


def test_one_pass_scores_equal_the_models_predictions() -> None:
    model = tiny_model()
    X = np.vstack(
        [
            row(values(linked_refunds_30d=n, linked_accounts=n, tenant_velocity_ratio=1))
            for n in range(6)
        ]
    )
    scores, contrib = scores_and_contributions(model, X)
    assert np.allclose(scores, model.predict(X), atol=1e-9)
    assert contrib.shape == (6, len(FEATURE_NAMES))


def test_without_a_model_there_is_no_score_but_rules_still_set_the_level() -> None:
    risk = assess(
        row(values(returned_weight_ratio=0.1)),
        claims=[claim()],
        missing=[[]],
        currencies=["EUR"],
        model=None,
        rules=DEFAULT_RULES_DOC,
    )[0]
    assert risk.score is None
    assert risk.model_version is None
    assert risk.level is Level.HIGH
    assert risk.reasons[0]["code"] == "empty_box"


def test_tenant_thresholds_override_the_models() -> None:
    model = tiny_model()
    benign = values(cust_orders_365d=3, refund_amount_minor=2000, tenant_velocity_ratio=1)
    low = assess(
        row(benign),
        claims=[claim()],
        missing=[[]],
        currencies=["EUR"],
        model=model,
        rules=DEFAULT_RULES_DOC,
    )[0]
    assert low.score is not None
    strict = FraudRules(medium_at=0.0, high_at=1.0)
    assert (
        assess(
            row(benign),
            claims=[claim()],
            missing=[[]],
            currencies=["EUR"],
            model=model,
            rules=strict,
        )[0].level
        is Level.MEDIUM
    )


def evaluation(decision: PolicyDecision = PolicyDecision.APPROVED) -> Evaluation:
    return Evaluation(
        decision=decision,
        findings=(),
        amount_minor=1000,
        currency="EUR",
        breakdown=Breakdown((), 1000, 0, 0, 0, 0, 1000),
        refund_method=RefundMethod.ORIGINAL,
        approvals_required=0,
        return_required=decision is PolicyDecision.AWAITING_RETURN,
        return_by=date(2026, 12, 1) if decision is PolicyDecision.AWAITING_RETURN else None,
        policy_version=0,
    )


def risk(level: Level) -> Risk:
    return Risk(
        score=0.9,
        level=level,
        reasons=[{"code": "linked_ring", "message": "4 refunds in 30 days", "weight": 1.0}],
        model_version="m",
        rules_version="r",
        missing=[],
    )


def test_low_risk_changes_nothing() -> None:
    ev = evaluation()
    assert apply_risk(ev, risk(Level.LOW), DEFAULT_RULES_DOC) is ev


def test_medium_risk_sends_to_review_with_a_visible_finding() -> None:
    ev = apply_risk(evaluation(), risk(Level.MEDIUM), DEFAULT_RULES_DOC)
    assert ev.decision is PolicyDecision.PENDING_REVIEW
    assert ev.approvals_required == 1
    assert ev.findings[-1].code == "fraud_review"
    assert "4 refunds in 30 days" in ev.reasons[-1]


def test_high_risk_holds_or_rejects_per_tenant() -> None:
    held = apply_risk(evaluation(), risk(Level.HIGH), FraudRules())
    assert held.decision is PolicyDecision.PENDING_REVIEW
    assert held.findings[-1].code == "fraud_hold"
    assert held.findings[-1].severity is Severity.SOFT
    rejected = apply_risk(evaluation(), risk(Level.HIGH), FraudRules(on_high="reject"))
    assert rejected.decision is PolicyDecision.REJECTED
    assert rejected.findings[-1].code == "fraud_reject"


def test_a_held_refund_that_needs_the_goods_back_still_waits_for_them_then_is_reviewed() -> None:
    held = apply_risk(evaluation(PolicyDecision.AWAITING_RETURN), risk(Level.HIGH), FraudRules())
    assert held.decision is PolicyDecision.AWAITING_RETURN
    assert held.return_required
    assert held.return_by == date(2026, 12, 1)
    # A return received with approvals required goes to review, not straight to payout.
    assert held.approvals_required == 1
    assert held.findings[-1].code == "fraud_hold"


def test_rules_that_are_off_or_continue_leave_the_decision() -> None:
    ev = evaluation()
    assert apply_risk(ev, risk(Level.HIGH), FraudRules(enabled=False)) is ev
    assert apply_risk(ev, risk(Level.MEDIUM), FraudRules(on_medium="continue")) is ev


def test_a_refund_the_policy_rejects_stays_rejected() -> None:
    ev = evaluation(PolicyDecision.REJECTED)
    assert apply_risk(ev, risk(Level.HIGH), DEFAULT_RULES_DOC) is ev


def test_index_matches_feature_names() -> None:
    assert all(FEATURE_NAMES[i] == n for n, i in INDEX.items())


def test_one_row_fires_the_same_rules_as_a_matrix_of_rows() -> None:
    rng = np.random.default_rng(5)
    edges = [0.0, 0.2, 0.5, 0.95, 1.0, 2.0, 3.0, 4.0, 5.0, math.nan]
    X = rng.choice(edges, size=(400, len(FEATURE_NAMES)))
    keys = [claim().keys] * len(X)
    together, _ = fire_matrix(DEFAULT_RULES_DOC, X, keys)
    assert any(together)
    for i in range(len(X)):
        alone, _ = fire_matrix(DEFAULT_RULES_DOC, X[i : i + 1], keys[:1])
        assert alone == [together[i]]
