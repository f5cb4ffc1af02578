"""A policy in plain language: sentences a retailer's staff can read without the YAML."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from decimal import Decimal

from refunddesk.core.errors import InvalidCurrency
from refunddesk.core.money import currency_exponent
from refunddesk.policy.document import (
    Counting,
    MethodRule,
    Policy,
    RequiredCondition,
    ReturnMode,
    ReturnRule,
    Severity,
)
from refunddesk.refunds.domain import Reason

# "returned for ..." / "claims of ...": each reason as the words that follow.
_FOR = {
    Reason.DAMAGED: "damage",
    Reason.DEFECTIVE: "a defect",
    Reason.WRONG_ITEM: "a wrong item",
    Reason.NOT_AS_DESCRIBED: "not being as described",
    Reason.NOT_RECEIVED: "non-delivery",
    Reason.LATE_DELIVERY: "late delivery",
    Reason.CHANGED_MIND: "a change of mind",
    Reason.DUPLICATE_CHARGE: "a duplicate charge",
    Reason.PRICE_ADJUSTMENT: "a price adjustment",
    Reason.OTHER: "other reasons",
}
# The refunds a reason names, as the subject of a sentence.
_SUBJECT = {
    Reason.DAMAGED: "Damaged-item returns",
    Reason.DEFECTIVE: "Defective-item returns",
    Reason.WRONG_ITEM: "Wrong-item returns",
    Reason.NOT_AS_DESCRIBED: "Not-as-described returns",
    Reason.NOT_RECEIVED: "Non-delivery claims",
    Reason.LATE_DELIVERY: "Late-delivery claims",
    Reason.CHANGED_MIND: "Changed-mind returns",
    Reason.DUPLICATE_CHARGE: "Duplicate-charge claims",
    Reason.PRICE_ADJUSTMENT: "Price adjustments",
    Reason.OTHER: "Returns for other reasons",
}
_WEEKDAY_NAMES = {
    "mon": "Monday",
    "tue": "Tuesday",
    "wed": "Wednesday",
    "thu": "Thursday",
    "fri": "Friday",
    "sat": "Saturday",
    "sun": "Sunday",
}
_EVIDENCE = {"photo": "a photo", "receipt": "a receipt", "video": "a video"}
_ROLE_NAMES = {"agent": "an agent", "supervisor": "a supervisor", "admin": "an admin"}


def _join(items: Iterable[str], last: str = "and") -> str:
    words = list(items)
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} {last} {words[-1]}"


def _reasons(reasons: Collection[Reason], last: str = "or") -> str:
    return _join((_FOR[r] for r in sorted(reasons)), last)


def _words(name: str) -> str:
    return name.replace("_", " ")


def _categories(names: Collection[str]) -> str:
    return _join(sorted(_words(n) for n in names))


def _evidence(items: Collection[str]) -> str:
    return _join(_EVIDENCE.get(str(e), str(e)) for e in sorted(items))


def _days(days: int, counting: Counting) -> str:
    unit = "business" if counting is Counting.BUSINESS else "calendar"
    return f"{days} {unit} day{'s' if days != 1 else ''}"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


class _Describer:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.out: list[str] = []

    def say(self, sentence: str) -> None:
        self.out.append(sentence[:1].upper() + sentence[1:])

    def money(self, amount: Decimal) -> str:
        currency = self.policy.currency or ""
        try:
            exponent = currency_exponent(currency)
        except InvalidCurrency:
            exponent = max(-int(amount.as_tuple().exponent), 0)
        return f"{amount:,.{exponent}f} {currency}".strip()

    # -- sections -------------------------------------------------------------------------

    def window(self) -> None:
        w = self.policy.window
        text = f"Returns are accepted within {_days(w.days, w.counting)} of delivery"
        others = []
        for name, override in sorted(w.categories.items()):
            counting = override.counting or w.counting
            length = (
                str(override.days) if counting is w.counting else _days(override.days, counting)
            )
            others.append(f"{_words(name)} within {length}")
        self.say(text + (f"; {_join(others)}." if others else "."))
        self.say("Without a delivery date the window starts on the day of purchase.")
        business = w.counting is Counting.BUSINESS or any(
            c.counting is Counting.BUSINESS for c in w.categories.values()
        )
        if business:
            weekend = _join(_WEEKDAY_NAMES[d] for d in sorted(w.weekend, key=_day_order))
            holidays = f" and {_plural(len(w.holidays), 'public holiday')}" if w.holidays else ""
            self.say(f"Business days leave out {weekend or 'no weekday'}{holidays}.")
        if w.outside is Severity.HARD:
            self.say("Requests after the window are refused.")
        else:
            self.say("Requests after the window go to a person for review.")
        if w.exempt_reasons:
            self.say(f"No time limit applies to refunds for {_reasons(w.exempt_reasons)}.")

    def exclusions(self) -> None:
        ex = self.policy.exclusions
        if ex.non_refundable_categories:
            self.say(f"{_categories(ex.non_refundable_categories)} items are never refunded.")
        if ex.non_refundable_skus:
            skus = _join(sorted(ex.non_refundable_skus))
            self.say(f"These items are never refunded: {skus}.")
        final = [_words(c) for c in sorted(ex.final_sale_categories)] + sorted(ex.final_sale_skus)
        if final:
            allowed = (
                f"refunded only for {_reasons(ex.final_sale_allowed_reasons)}"
                if ex.final_sale_allowed_reasons
                else "never refunded"
            )
            self.say(f"Final sale ({_join(final)}): {allowed}, not for a change of mind.")

    def requirements(self) -> None:
        req = self.policy.requirements
        if req.default.condition not in (None, RequiredCondition.ANY):
            self.say(f"Returned items must be {req.default.condition} unless stated below.")
        if req.default.evidence:
            self.say(f"Every request needs {_evidence(req.default.evidence)} unless stated below.")
        for reason, own in sorted(req.reasons.items()):
            if own.condition not in (None, RequiredCondition.ANY, req.default.condition):
                self.say(f"{_SUBJECT[reason]} must be {own.condition}.")
            if own.evidence is not None and own.evidence != (req.default.evidence or frozenset()):
                if own.evidence:
                    self.say(f"{_SUBJECT[reason]} need {_evidence(own.evidence)}.")
                else:
                    self.say(f"{_SUBJECT[reason]} need no evidence.")
        conditions = {req.for_reason(r)[0] for r in Reason} - {RequiredCondition.ANY}
        if conditions:
            if req.condition_severity is Severity.HARD:
                self.say("Items in a worse condition than required are not refunded.")
            else:
                self.say("Items in a worse condition than required go to a person for review.")
        evidence = any(req.for_reason(r)[1] for r in Reason)
        if evidence:
            if req.evidence_severity is Severity.HARD:
                self.say("Requests without the evidence asked for are refused.")
            else:
                self.say("Requests without the evidence asked for go to a person for review.")

    def returns(self) -> None:
        r = self.policy.returns
        paid = "paid at once"
        back = "the goods come back first"
        if len(r.rules) == 1 and _only_amount(r.rules[0]) and r.rules[0].then != r.default:
            limit = self.money(r.rules[0].amount_below or Decimal(0))
            first, second = (paid, back) if r.rules[0].then is ReturnMode.INSTANT else (back, paid)
            self.say(f"Refunds under {limit} are {first}; above that, {second}.")
        else:
            for rule in r.rules:
                outcome = (
                    paid if rule.then is ReturnMode.INSTANT else "only paid once the goods are back"
                )
                self.say(f"{self._rule_subject(rule)} are {outcome}.")
            if r.rules:
                self.say(
                    "Otherwise refunds are paid at once, without a return."
                    if r.default is ReturnMode.INSTANT
                    else "Otherwise the goods come back first."
                )
            elif r.default is ReturnMode.INSTANT:
                self.say("Refunds are paid at once; the goods do not have to come back.")
            else:
                self.say("The goods come back before any refund is paid.")
        if r.default is ReturnMode.RETURN or any(x.then is ReturnMode.RETURN for x in r.rules):
            self.say(f"Customers have {_plural(r.deadline_days, 'day')} to send the goods back.")

    def _rule_subject(self, rule: ReturnRule) -> str:
        parts = []
        if rule.reasons is not None:
            parts.append(f"for {_reasons(rule.reasons)}")
        if rule.categories is not None:
            parts.append(f"for {_categories(rule.categories)}")
        if rule.amount_below is not None:
            parts.append(f"under {self.money(rule.amount_below)}")
        if rule.prior_refunds_below is not None:
            parts.append(
                f"for customers with fewer than {_plural(rule.prior_refunds_below, 'refund')} "
                f"in the last {rule.history_days} days"
            )
        return "Refunds " + " ".join(parts) if parts else "All refunds"

    def fees(self) -> None:
        fees = self.policy.fees
        for fee in fees.restocking:
            scope = f" to {_categories(fee.categories)}" if fee.categories else ""
            why = f" returned for {_reasons(fee.reasons)}" if fee.reasons is not None else ""
            if not scope and why:
                scope = " to items"
            if fee.percent is not None:
                self.say(f"A {_percent(fee.percent)} restocking fee applies{scope}{why}.")
            else:
                amount = self.money(fee.per_unit or Decimal(0))
                self.say(f"A restocking fee of {amount} per unit applies{scope}{why}.")
        for ship in fees.return_shipping:
            why = f" for {_reasons(ship.reasons)}" if ship.reasons is not None else ""
            self.say(
                f"When goods come back{why}, {self.money(ship.amount)} is deducted "
                "for the return label."
            )
        if not fees.restocking and not fees.return_shipping:
            self.say("Returns are free: no restocking fee and no deduction for the label.")

    def refund(self) -> None:
        rules = self.policy.refund
        everything = frozenset(Reason)
        if rules.shipping_for == everything:
            self.say("The original shipping cost is always refunded.")
        elif rules.shipping_for:
            self.say(f"The original shipping cost is refunded for {_reasons(rules.shipping_for)}.")
        else:
            self.say("The original shipping cost is not refunded.")
        if rules.tax_for == everything:
            self.say("Tax is refunded in proportion to the items returned.")
        elif rules.tax_for:
            self.say(f"Tax is refunded for {_reasons(rules.tax_for)}.")
        else:
            self.say("Tax is not refunded.")
        if rules.method is MethodRule.ORIGINAL:
            self.say("Refunds go back to the original payment method.")
        elif rules.method is MethodRule.STORE_CREDIT:
            self.say("Refunds are paid as store credit.")
        else:
            self.say("The customer chooses the original payment method or store credit.")
        bonus = rules.store_credit_bonus_percent
        if bonus and rules.method is not MethodRule.ORIGINAL:
            self.say(f"Store credit comes with a {_percent(bonus)} bonus.")
        for currency, mode in sorted(rules.rounding.currencies.items()):
            self.say(f"Amounts in {currency} are rounded {_rounding(mode.value)}.")

    def authorization(self) -> None:
        auth = self.policy.authorization
        if auth.auto_approve_below is None:
            self.say("Refunds that meet the policy are approved automatically, at any amount.")
        elif auth.auto_approve_below == 0:
            self.say("Every refund needs an approver.")
        else:
            self.say(
                f"Refunds under {self.money(auth.auto_approve_below)} are approved "
                "automatically; larger ones need an approver."
            )
        if auth.four_eyes_above is not None:
            self.say(
                f"Refunds above {self.money(auth.four_eyes_above)} need two different approvers."
            )
        limits = []
        for role, limit in sorted(auth.role_limits.items()):
            who = _ROLE_NAMES.get(role, _words(role))
            limits.append(
                f"{who} without limit" if limit is None else f"{who} up to {self.money(limit)}"
            )
        if limits:
            self.say(f"Who may approve: {_join(limits)}; other roles may not approve.")


def _only_amount(rule: ReturnRule) -> bool:
    return (
        rule.amount_below is not None
        and rule.reasons is None
        and rule.categories is None
        and rule.prior_refunds_below is None
    )


def _percent(value: Decimal) -> str:
    return f"{value.normalize():f}%"


def _rounding(mode: str) -> str:
    return {
        "half_even": "to the nearest unit (halves to even)",
        "half_up": "to the nearest unit (halves up)",
        "half_down": "to the nearest unit (halves down)",
        "down": "down",
        "up": "up",
        "floor": "down (toward minus infinity)",
        "ceiling": "up (toward plus infinity)",
    }[mode]


def _day_order(day: str) -> int:
    return list(_WEEKDAY_NAMES).index(day)


def describe(policy: Policy) -> list[str]:
    """The policy as plain sentences, in the order a customer's request meets the rules."""
    d = _Describer(policy)
    d.window()
    d.exclusions()
    d.requirements()
    d.returns()
    d.fees()
    d.refund()
    d.authorization()
    return d.out
