"""The pure policy engine: facts about an order and a request in, a decision with reasons out.

No database, no clock, no I/O: the caller gathers the facts and passes `now` and the tenant's
time zone, so any decision can be replayed later against the policy version that made it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from refunddesk.core.money import Money, currency_exponent
from refunddesk.policy.calendar import end_of_day, last_day
from refunddesk.policy.document import (
    Condition,
    Counting,
    Evidence,
    MethodRule,
    Policy,
    RefundMethod,
    RequiredCondition,
    ReturnMode,
    ReturnRule,
    Severity,
)
from refunddesk.refunds.domain import Reason, RefundStatus

# --- inputs -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderLineFacts:
    sku: str
    category: str
    quantity: int
    unit_price_minor: int


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """The order as paid, and what refunds that still hold budget already took from it."""

    currency: str
    lines: tuple[OrderLineFacts, ...]
    purchased_at: datetime
    delivered_at: datetime | None = None
    shipping_minor: int = 0
    tax_minor: int = 0
    refunded_quantities: Mapping[str, int] = field(default_factory=dict)
    committed_minor: int = 0
    refunded_shipping_minor: int = 0

    @property
    def lines_minor(self) -> int:
        return sum(line.quantity * line.unit_price_minor for line in self.lines)

    @property
    def paid_minor(self) -> int:
        return self.lines_minor + self.shipping_minor + self.tax_minor

    @property
    def remaining_minor(self) -> int:
        return max(self.paid_minor - self.committed_minor, 0)


@dataclass(frozen=True, slots=True)
class RequestLine:
    sku: str
    quantity: int
    reason: Reason | None = None  # the request's reason when None
    condition: str | None = None


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """A refund request: lines of goods, or a plain amount (a price adjustment, a fee)."""

    reason: Reason
    lines: tuple[RequestLine, ...] = ()
    amount_minor: int | None = None
    evidence: frozenset[Evidence] = frozenset()
    refund_method: RefundMethod | None = None
    # True once the goods are back (RMA received): the return rule is then satisfied.
    return_received: bool = False

    def __post_init__(self) -> None:
        if bool(self.lines) == (self.amount_minor is not None):
            raise ValueError("a request has either lines or amount_minor, not both, not neither")


@dataclass(frozen=True, slots=True)
class CustomerHistory:
    """When the customer's earlier refunds (that were not rejected or canceled) were asked."""

    refund_times: tuple[datetime, ...] = ()

    def count_within(self, now: datetime, days: int) -> int:
        since = now - timedelta(days=days)
        return sum(1 for at in self.refund_times if since < at <= now)


NO_HISTORY = CustomerHistory()

# --- outputs ----------------------------------------------------------------------------------


class PolicyDecision(StrEnum):
    APPROVED = "approved"
    PENDING_REVIEW = "pending_review"
    REJECTED = "rejected"
    AWAITING_RETURN = "awaiting_return"

    @property
    def status(self) -> RefundStatus:
        return RefundStatus(self.value)


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    severity: Severity
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(frozen=True, slots=True)
class LineAmount:
    sku: str
    category: str
    reason: Reason
    quantity: int
    gross_minor: int
    restocking_fee_minor: int


@dataclass(frozen=True, slots=True)
class Breakdown:
    """How amount_minor was reached: lines + shipping + tax - fees, clamped to the budget."""

    lines: tuple[LineAmount, ...]
    lines_minor: int
    shipping_minor: int
    tax_minor: int
    restocking_fee_minor: int
    return_shipping_minor: int
    remaining_before_minor: int
    # Extra store credit on top of amount_minor; not taken from the order's budget.
    store_credit_bonus_minor: int = 0


@dataclass(frozen=True, slots=True)
class Evaluation:
    decision: PolicyDecision
    findings: tuple[Finding, ...]
    amount_minor: int
    currency: str
    breakdown: Breakdown
    refund_method: RefundMethod
    approvals_required: int
    return_required: bool
    return_by: date | None
    policy_version: int

    @property
    def reasons(self) -> tuple[str, ...]:
        """Findings as `code: message` strings, the shape refunds store as decision reasons."""
        return tuple(str(f) for f in self.findings)

    def has(self, code: str) -> bool:
        return any(f.code == code for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record of the evaluation."""
        data = asdict(self)
        data["return_by"] = self.return_by.isoformat() if self.return_by else None
        return data


# --- authorization ----------------------------------------------------------------------------


def approvals_required(policy: Policy, amount_minor: int) -> int:
    """0 below the auto-approve amount, 2 above the four-eyes amount, else 1."""
    auth = policy.authorization
    if auth.four_eyes_above is not None and amount_minor > policy.minor(auth.four_eyes_above):
        return 2
    if auth.auto_approve_below is None or amount_minor < policy.minor(auth.auto_approve_below):
        return 0
    return 1


def role_may_approve(policy: Policy, role: str, amount_minor: int) -> bool:
    """Whether a user with this role may approve this amount (no role limits: anyone may)."""
    limits = policy.authorization.role_limits
    if not limits:
        return True
    if role not in limits:
        return False
    limit = limits[role]
    return limit is None or amount_minor <= policy.minor(limit)


def needs_second_approver(policy: Policy, *, amount_minor: int, approvers: Iterable[str]) -> bool:
    """True while a four-eyes amount has fewer than two different approvers."""
    return approvals_required(policy, amount_minor) == 2 and len(set(approvers)) < 2


# --- evaluation -------------------------------------------------------------------------------

_CONDITION_RANK = {
    Condition.UNOPENED: 0,
    Condition.UNUSED: 1,
    Condition.USED: 2,
    Condition.DAMAGED: 3,
}
_REQUIRED_RANK = {RequiredCondition.UNOPENED: 0, RequiredCondition.UNUSED: 1}


_RETURN_CODES = frozenset({"return_required", "instant_refund"})


def _round(value: Decimal, mode: str) -> int:
    return int(value.quantize(Decimal(1), rounding=mode))


class _Run:
    """The working state of one evaluation."""

    def __init__(self, policy: Policy, order: OrderFacts, now: datetime, tz: ZoneInfo) -> None:
        self.policy = policy
        self.order = order
        self.now = now
        self.tz = tz
        self.findings: list[Finding] = []
        self._seen: set[tuple[str, str]] = set()
        self.rounding = policy.refund.rounding.for_currency(order.currency).decimal_mode
        # Fixed amounts are in the policy currency; they only apply to orders in it.
        self.money_ok = policy.currency is None or policy.currency == order.currency

    def add(self, code: str, severity: Severity, message: str) -> None:
        if (code, message) not in self._seen:
            self._seen.add((code, message))
            self.findings.append(Finding(code, severity, message))

    def money(self, minor: int) -> str:
        return Money(minor, self.order.currency).format()

    def policy_money(self, amount: Decimal) -> str:
        exponent = currency_exponent(self.policy.currency or self.order.currency)
        return f"{amount:.{exponent}f} {self.policy.currency}"

    def minor(self, amount: Decimal) -> int:
        return self.policy.minor(amount)

    # -- rules ----------------------------------------------------------------------------

    def window(self, categories: Collection[str]) -> None:
        window = self.policy.window
        order = self.order
        start = order.delivered_at or order.purchased_at
        basis = "delivered" if order.delivered_at else "purchased"
        start_day = start.astimezone(self.tz).date()
        for category in sorted(categories):
            days, counting = window.for_category(category)
            last = last_day(
                start_day,
                days,
                counting,
                weekend=window.weekend_days,
                holidays=window.holidays,
            )
            unit = "business days" if counting is Counting.BUSINESS else "days"
            scope = f" for {category}" if category in window.categories else ""
            if self.now < end_of_day(last, self.tz):
                self.add(
                    "within_return_window",
                    Severity.INFO,
                    f"{basis} {start_day}, window{scope} {days} {unit} ends {last}",
                )
            else:
                self.add(
                    "outside_return_window",
                    window.outside,
                    f"{basis} {start_day}, window{scope} {days} {unit} ended {last}",
                )

    def exclusions(self, line: OrderLineFacts, reason: Reason) -> bool:
        """Record exclusion findings; True when the line may be refunded at all."""
        ex = self.policy.exclusions
        if line.sku in ex.non_refundable_skus or line.category in ex.non_refundable_categories:
            self.add(
                "non_refundable",
                Severity.HARD,
                f"{line.sku} ({line.category}) cannot be refunded under this policy",
            )
            return False
        final = line.sku in ex.final_sale_skus or line.category in ex.final_sale_categories
        if final and reason not in ex.final_sale_allowed_reasons:
            allowed = ", ".join(sorted(ex.final_sale_allowed_reasons)) or "no reason"
            self.add(
                "final_sale",
                Severity.HARD,
                f"{line.sku} was sold as final sale; refunds only for {allowed}, not {reason}",
            )
            return False
        return True

    def condition(self, sku: str, reason: Reason, stated: str | None) -> None:
        required, _ = self.policy.requirements.for_reason(reason)
        if required is RequiredCondition.ANY:
            return
        severity = self.policy.requirements.condition_severity
        if stated is None:
            self.add(
                "condition_not_stated",
                Severity.SOFT,
                f"{sku}: {reason} requires the item {required}; no condition was given",
            )
            return
        try:
            condition = Condition(stated.strip().lower())
        except ValueError:
            self.add(
                "condition_unknown",
                Severity.SOFT,
                f"{sku}: condition {stated!r} is not one of "
                f"{', '.join(Condition)}; {reason} requires {required}",
            )
            return
        if _CONDITION_RANK[condition] > _REQUIRED_RANK[required]:
            self.add(
                "condition_not_accepted",
                severity,
                f"{sku} is {condition}; {reason} requires it {required}",
            )

    def evidence(self, reasons: Collection[Reason], given: frozenset[Evidence]) -> None:
        for reason in sorted(reasons):
            _, needed = self.policy.requirements.for_reason(reason)
            missing = needed - given
            if missing:
                self.add(
                    "missing_evidence",
                    self.policy.requirements.evidence_severity,
                    f"{reason} requires {', '.join(sorted(needed))}; missing "
                    f"{', '.join(sorted(missing))}",
                )

    def restocking(self, line: OrderLineFacts, reason: Reason, quantity: int, gross: int) -> int:
        for rule in self.policy.fees.restocking:
            if not rule.applies(line.category, reason):
                continue
            if rule.percent is not None:
                return _round(Decimal(gross) * rule.percent / 100, self.rounding)
            if rule.per_unit is not None and self.money_ok:
                return self.minor(rule.per_unit) * quantity
            return 0
        return 0

    def return_rule(
        self,
        goods_minor: int,
        reasons: Collection[Reason],
        categories: Collection[str],
        history: CustomerHistory,
    ) -> tuple[ReturnMode, str]:
        for number, rule in enumerate(self.policy.returns.rules, start=1):
            why = self._matches(rule, goods_minor, reasons, categories, history)
            if why is not None:
                return rule.then, f"rule {number}" + (f" ({why})" if why else "")
        return self.policy.returns.default, "the policy default"

    def _matches(
        self,
        rule: ReturnRule,
        goods_minor: int,
        reasons: Collection[Reason],
        categories: Collection[str],
        history: CustomerHistory,
    ) -> str | None:
        """None when the rule does not apply; else the conditions that matched, in words."""
        parts: list[str] = []
        if rule.amount_below is not None:
            if not self.money_ok or goods_minor >= self.minor(rule.amount_below):
                return None
            parts.append(f"goods under {self.policy_money(rule.amount_below)}")
        if rule.reasons is not None:
            if not set(reasons) <= rule.reasons:
                return None
            parts.append(f"reason {', '.join(sorted(reasons))}")
        if rule.categories is not None:
            if not set(categories) <= rule.categories:
                return None
            parts.append(f"category {', '.join(sorted(categories))}")
        if rule.prior_refunds_below is not None:
            prior = history.count_within(self.now, rule.history_days)
            if prior >= rule.prior_refunds_below:
                return None
            parts.append(f"{prior} refunds in {rule.history_days} days")
        return ", ".join(parts)


def _method(policy: Policy, requested: RefundMethod | None, run: _Run) -> RefundMethod:
    rule = policy.refund.method
    if rule is MethodRule.CUSTOMER_CHOICE:
        return requested or RefundMethod.ORIGINAL
    chosen = RefundMethod(rule.value)
    if requested is not None and requested is not chosen:
        run.add(
            "refund_method_fixed",
            Severity.INFO,
            f"this policy refunds to {chosen}, not {requested}",
        )
    return chosen


def evaluate(
    policy: Policy,
    *,
    order: OrderFacts,
    request: RequestFacts,
    history: CustomerHistory = NO_HISTORY,
    now: datetime,
    tz: ZoneInfo,
    policy_version: int = 0,
) -> Evaluation:
    """Decide a refund request under a policy; pure and deterministic."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    run = _Run(policy, order, now, tz)
    if not run.money_ok:
        run.add(
            "policy_currency_mismatch",
            Severity.SOFT,
            f"the order is in {order.currency}, the policy's amounts in {policy.currency}",
        )
    remaining = order.remaining_minor
    if remaining <= 0:
        run.add(
            "nothing_left_to_refund",
            Severity.HARD,
            f"all {run.money(order.paid_minor)} paid on this order is already refunded",
        )

    by_sku = {line.sku: line for line in order.lines}
    used: dict[str, int] = {}
    priced: list[LineAmount] = []
    window_categories: set[str] = set()
    line_reasons: set[Reason] = set()
    exempt: set[Reason] = set()
    for line in request.lines:
        reason = line.reason or request.reason
        line_reasons.add(reason)
        ordered = by_sku.get(line.sku)
        if ordered is None:
            run.add("unknown_sku", Severity.HARD, f"the order has no line with sku {line.sku}")
            continue
        if reason in policy.window.exempt_reasons:
            exempt.add(reason)
        else:
            window_categories.add(ordered.category)
        if line.quantity <= 0:
            run.add("invalid_quantity", Severity.HARD, f"{line.sku}: quantity must be positive")
            continue
        left = ordered.quantity - order.refunded_quantities.get(line.sku, 0) - used.get(line.sku, 0)
        quantity = line.quantity
        if quantity > left:
            run.add(
                "quantity_exceeds_remaining",
                Severity.HARD,
                f"{line.sku}: {quantity} requested but only {max(left, 0)} of "
                f"{ordered.quantity} left to refund",
            )
            quantity = max(left, 0)
        used[line.sku] = used.get(line.sku, 0) + quantity
        if not run.exclusions(ordered, reason):
            continue
        run.condition(line.sku, reason, line.condition)
        gross = quantity * ordered.unit_price_minor
        fee = run.restocking(ordered, reason, quantity, gross)
        priced.append(LineAmount(line.sku, ordered.category, reason, quantity, gross, fee))

    if request.amount_minor is not None:
        line_reasons.add(request.reason)
        if request.reason in policy.window.exempt_reasons:
            exempt.add(request.reason)
        else:
            window_categories.add("")  # the default window: a plain amount has no category
    if window_categories:
        run.window(window_categories)
    elif exempt:
        run.add(
            "return_window_not_applied",
            Severity.INFO,
            f"no return window applies to {', '.join(sorted(exempt))}",
        )
    run.evidence(line_reasons, request.evidence)

    lines_minor = sum(p.gross_minor for p in priced)
    restocking_minor = sum(p.restocking_fee_minor for p in priced)
    shipping_minor = tax_minor = return_shipping_minor = 0
    return_required = False
    return_by: date | None = None
    if request.amount_minor is not None:
        gross_total = request.amount_minor
        if gross_total <= 0:
            run.add("nothing_to_refund", Severity.HARD, "the amount must be positive")
        elif gross_total > remaining:
            run.add(
                "over_refund_budget",
                Severity.HARD,
                f"requested {run.money(gross_total)} but only {run.money(remaining)} "
                "is left to refund on this order",
            )
    else:
        tax_gross = sum(p.gross_minor for p in priced if p.reason in policy.refund.tax_for)
        order_lines = order.lines_minor
        if tax_gross and order_lines:
            tax_minor = _round(Decimal(order.tax_minor) * tax_gross / order_lines, run.rounding)
        if priced and request.reason in policy.refund.shipping_for:
            shipping_minor = max(order.shipping_minor - order.refunded_shipping_minor, 0)
        if priced and not request.return_received:
            categories = {p.category for p in priced}
            mode, why = run.return_rule(
                lines_minor, {p.reason for p in priced}, categories, history
            )
            if mode is ReturnMode.RETURN:
                return_required = True
                days = policy.returns.deadline_days
                return_by = now.astimezone(tz).date() + timedelta(days=days)
                run.add(
                    "return_required",
                    Severity.INFO,
                    f"the goods must come back first ({why}); send them by {return_by}",
                )
            else:
                run.add("instant_refund", Severity.INFO, f"no return needed ({why})")
        if priced and (return_required or request.return_received):
            for rule in policy.fees.return_shipping:
                if rule.reasons is None or request.reason in rule.reasons:
                    if run.money_ok:
                        return_shipping_minor = run.minor(rule.amount)
                    break
        gross_total = lines_minor + shipping_minor + tax_minor

    fees = restocking_minor + return_shipping_minor
    amount = gross_total - fees
    if amount > remaining:
        if request.amount_minor is None:
            run.add(
                "clamped_to_budget",
                Severity.SOFT,
                f"{run.money(amount)} reduced to the {run.money(remaining)} left on the order",
            )
        amount = remaining
    if amount < 0 or (amount == 0 and fees > 0):
        run.add(
            "fees_exceed_refund",
            Severity.SOFT,
            f"fees of {run.money(fees)} exceed the {run.money(gross_total)} refund; refunding 0",
        )
        amount = 0
    elif amount == 0 and priced and remaining > 0:
        run.add("nothing_to_refund", Severity.HARD, "the requested lines are worth nothing")
    amount = max(amount, 0)

    method = _method(policy, request.refund_method, run)
    bonus = 0
    if method is RefundMethod.STORE_CREDIT and amount > 0:
        bonus = _round(
            Decimal(amount) * policy.refund.store_credit_bonus_percent / 100, run.rounding
        )

    if run.money_ok:
        approvals = approvals_required(policy, amount)
    else:
        approvals = 2 if policy.authorization.four_eyes_above is not None else 1
    severities = {f.severity for f in run.findings}
    if Severity.HARD in severities:
        decision, approvals = PolicyDecision.REJECTED, 0
        return_required, return_by = False, None
        # A rejected refund needs no return; say only why it was rejected and what applied.
        run.findings = [f for f in run.findings if f.code not in _RETURN_CODES]
    elif Severity.SOFT in severities:
        decision, approvals = PolicyDecision.PENDING_REVIEW, max(approvals, 1)
    elif return_required:
        decision = PolicyDecision.AWAITING_RETURN
    elif approvals:
        decision = PolicyDecision.PENDING_REVIEW
        who = "two different approvers" if approvals == 2 else "an approver"
        run.add("approval_required", Severity.INFO, f"{run.money(amount)} needs {who}")
    else:
        decision = PolicyDecision.APPROVED

    return Evaluation(
        decision=decision,
        findings=tuple(run.findings),
        amount_minor=amount,
        currency=order.currency,
        breakdown=Breakdown(
            lines=tuple(priced),
            lines_minor=lines_minor,
            shipping_minor=shipping_minor,
            tax_minor=tax_minor,
            restocking_fee_minor=restocking_minor,
            return_shipping_minor=return_shipping_minor,
            remaining_before_minor=remaining,
            store_credit_bonus_minor=bonus,
        ),
        refund_method=method,
        approvals_required=approvals,
        return_required=return_required,
        return_by=return_by,
        policy_version=policy_version,
    )
