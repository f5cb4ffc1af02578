"""Escalation rules as pure functions: which triggers a refund meets now, and at what tier."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from refunddesk.refunds.domain import OPEN, RefundStatus
from refunddesk.sla.config import Escalation as EscalationSettings
from refunddesk.sla.config import Tier
from refunddesk.sla.domain import LABELS, Clock, ClockName, trigger_times


class Reason(StrEnum):
    NEAR_BREACH = "near_breach"
    BREACH = "breach"
    LEGAL_NEAR_BREACH = "legal_near_breach"
    PAYOUT_FAILED = "payout_failed"
    HIGH_VALUE = "high_value"
    HIGH_RISK = "high_risk"
    REPEATED_CONTACT = "repeated_contact"
    VIP = "vip"
    MANUAL = "manual"


class Status(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Facts:
    """What the rules look at, for one refund."""

    status: RefundStatus
    amount_minor: int
    currency: str
    updated_at: datetime
    risk_level: str | None
    risk_score: float | None
    contacts: int
    customer_keys: frozenset[str]  # the customer's e-mail and id, lower-case


@dataclass(frozen=True, slots=True)
class Hit:
    """A rule the refund meets: its trigger key (fires once), reason, tier and words."""

    key: str
    reason: Reason
    tier: Tier | None  # None: the tenant turned the rule off
    detail: str


def _tier(value: Tier | str) -> Tier | None:
    return None if value == "off" else Tier(value)


def evaluate(
    facts: Facts,
    clocks: Mapping[ClockName, Clock],
    fired: Iterable[str],
    settings: EscalationSettings,
    now: datetime,
) -> list[Hit]:
    """The triggers met at `now` that have not fired yet (each fires once per refund)."""
    if facts.status not in OPEN:
        return []
    done = set(fired)
    rules = settings.rules
    hits: list[Hit] = []
    for at, key in trigger_times(clocks, done):
        if at > now:
            continue
        kind, name = key.split(":", 1)
        clock = ClockName(name)
        label = LABELS[clock].lower()
        if kind == "near":
            legal = clock is ClockName.LEGAL
            reason = Reason.LEGAL_NEAR_BREACH if legal else Reason.NEAR_BREACH
            rule = rules.legal_near_breach if legal else rules.near_breach
            due = clocks[clock].due_at
            words = f"{label}: near its deadline ({due:%Y-%m-%d %H:%M} UTC)" if due else label
            hits.append(Hit(key, reason, _tier(rule), words))
        else:
            hits.append(Hit(key, Reason.BREACH, _tier(rules.breach), f"{label}: deadline passed"))
    failed_key = f"payout_failed:{facts.updated_at.isoformat()}"
    if facts.status is RefundStatus.FAILED and failed_key not in done:
        hits.append(
            Hit(failed_key, Reason.PAYOUT_FAILED, _tier(rules.payout_failed), "the payout failed")
        )
    if (
        settings.high_value_minor is not None
        and facts.amount_minor >= settings.high_value_minor
        and "high_value" not in done
    ):
        hits.append(
            Hit(
                "high_value",
                Reason.HIGH_VALUE,
                _tier(rules.high_value),
                f"high value: {facts.amount_minor} {facts.currency} (minor units)",
            )
        )
    risky = facts.risk_level == "high" or (
        facts.risk_score is not None and facts.risk_score >= settings.high_risk_score
    )
    if risky and "high_risk" not in done:
        score = "" if facts.risk_score is None else f" (score {facts.risk_score:.2f})"
        hits.append(
            Hit("high_risk", Reason.HIGH_RISK, _tier(rules.high_risk), f"high fraud risk{score}")
        )
    if facts.contacts >= settings.contact_threshold and "repeated_contact" not in done:
        hits.append(
            Hit(
                "repeated_contact",
                Reason.REPEATED_CONTACT,
                _tier(rules.repeated_contact),
                f"the customer got in touch {facts.contacts} times",
            )
        )
    if facts.customer_keys & settings.vip_keys() and "vip" not in done:
        hits.append(Hit("vip", Reason.VIP, _tier(rules.vip), "a VIP customer"))
    return hits


def top(hits: Iterable[Hit]) -> Hit | None:
    """The hit with the highest tier (the first of equals); None when every rule is off."""
    best: Hit | None = None
    for hit in hits:
        if hit.tier is not None and (best is None or hit.tier.rank > (best.tier or Tier.L1).rank):
            best = hit
    return best
