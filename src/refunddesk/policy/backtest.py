"""Backtest a draft policy: replay a tenant's stored refunds against it, changing nothing.

Each refund is replayed as it was asked, at the moment it was asked, in the tenant's time
zone. The order's refund budget starts as it stood before the first replayed refund, and
each replayed decision that is not a rejection then takes its share, so later refunds on
the same order see what the draft would have left them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from refunddesk.core.clock import as_utc
from refunddesk.core.errors import NotFound
from refunddesk.db.prepared import Driver
from refunddesk.orders.orm import Order
from refunddesk.policy.document import Policy
from refunddesk.policy.engine import Evaluation, OrderFacts, PolicyDecision, evaluate
from refunddesk.policy.facts import customer_history, order_facts, request_facts_from_refund
from refunddesk.refunds.domain import RELEASES_BUDGET, EventType, RefundStatus
from refunddesk.refunds.orm import Refund, RefundEvent
from refunddesk.tenants.orm import Tenant

Progress = Callable[[int, int], None]
MAX_EXAMPLES = 20
# A refund the draft rejects takes nothing from the order's budget.
_TAKES_NOTHING = PolicyDecision.REJECTED
# Findings that explain but never change a decision; left out of the examples' reasons.
_ROUTINE = frozenset({"within_return_window", "return_window_not_applied", "instant_refund"})


@dataclass(frozen=True, slots=True)
class Change:
    """One refund whose decision or amount the draft would change."""

    reference: str
    before: str
    after: str
    before_minor: int
    after_minor: int
    currency: str
    findings: tuple[str, ...]


@dataclass
class BacktestResult:
    tenant_id: str
    policy_name: str
    since: datetime | None
    replayed: int = 0
    approved_before: int = 0
    approved_after: int = 0
    # Amount the policy lets through (every decision but rejected), per currency, minor units.
    totals_before: dict[str, int] = field(default_factory=dict)
    totals_after: dict[str, int] = field(default_factory=dict)
    # (decision before, decision after) -> refunds
    matrix: Counter[tuple[str, str]] = field(default_factory=Counter)
    findings_before: Counter[str] = field(default_factory=Counter)
    findings_after: Counter[str] = field(default_factory=Counter)
    amounts_changed: int = 0
    changes: list[Change] = field(default_factory=list)

    @property
    def decisions_changed(self) -> int:
        return sum(n for (old, new), n in self.matrix.items() if old != new)

    @property
    def auto_approve_rate_before(self) -> float:
        return self.approved_before / self.replayed if self.replayed else 0.0

    @property
    def auto_approve_rate_after(self) -> float:
        return self.approved_after / self.replayed if self.replayed else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready report."""
        return {
            "tenant_id": self.tenant_id,
            "policy_name": self.policy_name,
            "since": self.since.isoformat() if self.since else None,
            "replayed": self.replayed,
            "auto_approve_rate": {
                "before": round(self.auto_approve_rate_before, 4),
                "after": round(self.auto_approve_rate_after, 4),
            },
            "total_refunded_minor": {
                currency: {
                    "before": self.totals_before.get(currency, 0),
                    "after": self.totals_after.get(currency, 0),
                }
                for currency in sorted(set(self.totals_before) | set(self.totals_after))
            },
            "decisions_changed": self.decisions_changed,
            "amounts_changed": self.amounts_changed,
            "matrix": [
                {"before": old, "after": new, "count": n}
                for (old, new), n in sorted(self.matrix.items())
            ],
            "findings": {
                code: {
                    "before": self.findings_before.get(code, 0),
                    "after": self.findings_after.get(code, 0),
                }
                for code in sorted(set(self.findings_before) | set(self.findings_after))
            },
            "changes": [
                {
                    "reference": c.reference,
                    "before": c.before,
                    "after": c.after,
                    "before_minor": c.before_minor,
                    "after_minor": c.after_minor,
                    "currency": c.currency,
                    "findings": list(c.findings),
                }
                for c in self.changes
            ],
        }


def _first_decisions(session: Session, tenant_id: str, refund_ids: list[str]) -> dict[str, str]:
    """The status each refund was first decided into (its move out of `requested`)."""
    decided: dict[str, str] = {}
    for start in range(0, len(refund_ids), 500):
        chunk = refund_ids[start : start + 500]
        rows = session.execute(
            select(RefundEvent.refund_id, RefundEvent.to_status)
            .where(
                RefundEvent.tenant_id == tenant_id,
                RefundEvent.refund_id.in_(chunk),
                RefundEvent.type == str(EventType.STATUS_CHANGED),
                RefundEvent.from_status == str(RefundStatus.REQUESTED),
            )
            .order_by(RefundEvent.seq)
        )
        for refund_id, status in rows:
            decided.setdefault(refund_id, status)
    return decided


def _release(facts: OrderFacts, refunds: Iterable[Refund]) -> OrderFacts:
    """The order's ledger without what these refunds (replayed ones) hold today."""
    quantities = dict(facts.refunded_quantities)
    committed, shipping = facts.committed_minor, facts.refunded_shipping_minor
    for refund in refunds:
        if refund.state in RELEASES_BUDGET:
            continue
        committed -= refund.amount_minor
        shipping -= int((refund.breakdown or {}).get("shipping_minor") or 0)
        for line in refund.lines:
            quantities[line.sku] = quantities.get(line.sku, 0) - line.quantity
    return replace(
        facts,
        refunded_quantities={k: v for k, v in quantities.items() if v > 0},
        committed_minor=max(committed, 0),
        refunded_shipping_minor=max(shipping, 0),
    )


def _take(facts: OrderFacts, evaluation: Evaluation) -> OrderFacts:
    """The ledger after a replayed decision takes its share of the budget."""
    if evaluation.decision is _TAKES_NOTHING:
        return facts
    quantities = dict(facts.refunded_quantities)
    for line in evaluation.breakdown.lines:
        quantities[line.sku] = quantities.get(line.sku, 0) + line.quantity
    return replace(
        facts,
        refunded_quantities=quantities,
        committed_minor=facts.committed_minor + evaluation.amount_minor,
        refunded_shipping_minor=facts.refunded_shipping_minor + evaluation.breakdown.shipping_minor,
    )


def backtest(
    session: Session,
    *,
    tenant_id: str,
    policy: Policy,
    since: datetime | None = None,
    progress: Progress | None = None,
) -> BacktestResult:
    """Replay the tenant's refunds (asked since `since`) against policy; only reads."""
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound(f"no tenant {tenant_id}")
    tz = ZoneInfo(tenant.timezone)
    query = (
        select(Refund, Order.customer_email)
        .join(Order, (Order.tenant_id == Refund.tenant_id) & (Order.id == Refund.order_id))
        .where(Refund.tenant_id == tenant_id)
        .order_by(Refund.created_at, Refund.id)
    )
    if since is not None:
        query = query.where(Refund.created_at >= since)
    rows = [(refund, email) for refund, email in session.execute(query)]
    result = BacktestResult(tenant_id=tenant_id, policy_name=policy.name, since=since)
    first = _first_decisions(session, tenant_id, [r.id for r, _ in rows])
    by_order: dict[str, list[Refund]] = defaultdict(list)
    for refund, _ in rows:
        by_order[refund.order_id].append(refund)

    db = Driver.of(session)
    ledgers: dict[str, OrderFacts] = {}
    total = len(rows)
    for done, (refund, email) in enumerate(rows, start=1):
        facts = ledgers.get(refund.order_id)
        if facts is None:
            facts = order_facts(db, tenant_id=tenant_id, order_id=refund.order_id)
            facts = _release(facts, by_order[refund.order_id])
        asked_at = as_utc(refund.created_at)
        evaluation = evaluate(
            policy,
            order=facts,
            request=request_facts_from_refund(refund, refund.lines),
            history=customer_history(db, tenant_id=tenant_id, email=email, before=asked_at),
            now=asked_at,
            tz=tz,
        )
        ledgers[refund.order_id] = _take(facts, evaluation)
        _count(result, refund, first.get(refund.id, refund.status), evaluation)
        if progress is not None:
            progress(done, total)
    return result


def _count(result: BacktestResult, refund: Refund, before: str, evaluation: Evaluation) -> None:
    after = str(evaluation.decision)
    currency = refund.currency
    result.replayed += 1
    result.matrix[(before, after)] += 1
    result.approved_before += before == str(RefundStatus.APPROVED)
    result.approved_after += evaluation.decision is PolicyDecision.APPROVED
    if before != str(RefundStatus.REJECTED):
        result.totals_before[currency] = result.totals_before.get(currency, 0) + (
            refund.amount_minor
        )
    if evaluation.decision is not PolicyDecision.REJECTED:
        result.totals_after[currency] = (
            result.totals_after.get(currency, 0) + evaluation.amount_minor
        )
    result.findings_before.update({str(f.get("code")) for f in refund.findings or ()})
    result.findings_after.update({f.code for f in evaluation.findings})
    rejected = str(RefundStatus.REJECTED) in (before, after)
    amount_changed = not rejected and evaluation.amount_minor != refund.amount_minor
    result.amounts_changed += amount_changed
    if (before != after or amount_changed) and len(result.changes) < MAX_EXAMPLES:
        result.changes.append(
            Change(
                reference=refund.reference,
                before=before,
                after=after,
                before_minor=refund.amount_minor,
                after_minor=evaluation.amount_minor,
                currency=currency,
                findings=tuple(str(f) for f in evaluation.findings if f.code not in _ROUTINE),
            )
        )
