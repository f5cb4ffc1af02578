"""The per-tenant policy document: its schema, loading from YAML or TOML, and clear errors."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import (
    ROUND_CEILING,
    ROUND_DOWN,
    ROUND_FLOOR,
    ROUND_HALF_DOWN,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    ROUND_UP,
    Decimal,
)
from enum import StrEnum
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from refunddesk.core.errors import Invalid, InvalidCurrency
from refunddesk.core.money import currency_exponent
from refunddesk.fraud.rules import FraudRules
from refunddesk.refunds.domain import Reason
from refunddesk.sla.config import Escalation, Sla

# --- vocabulary -------------------------------------------------------------------------------


class Severity(StrEnum):
    """How much a finding weighs: hard rejects, soft sends to review, info only explains."""

    HARD = "hard"
    SOFT = "soft"
    INFO = "info"


class Counting(StrEnum):
    CALENDAR = "calendar"
    BUSINESS = "business"


class Condition(StrEnum):
    """The state of a returned item, best first."""

    UNOPENED = "unopened"
    UNUSED = "unused"
    USED = "used"
    DAMAGED = "damaged"


class RequiredCondition(StrEnum):
    UNOPENED = "unopened"
    UNUSED = "unused"
    ANY = "any"


class Evidence(StrEnum):
    PHOTO = "photo"
    RECEIPT = "receipt"
    VIDEO = "video"


class RefundMethod(StrEnum):
    ORIGINAL = "original"
    STORE_CREDIT = "store_credit"


class MethodRule(StrEnum):
    ORIGINAL = "original"
    STORE_CREDIT = "store_credit"
    CUSTOMER_CHOICE = "customer_choice"


class ReturnMode(StrEnum):
    """Instant: refund without the goods; return: the goods come back first."""

    INSTANT = "instant"
    RETURN = "return"


class Rounding(StrEnum):
    HALF_EVEN = "half_even"
    HALF_UP = "half_up"
    HALF_DOWN = "half_down"
    DOWN = "down"
    UP = "up"
    FLOOR = "floor"
    CEILING = "ceiling"

    @property
    def decimal_mode(self) -> str:
        return _DECIMAL_ROUNDING[self]


_DECIMAL_ROUNDING = {
    Rounding.HALF_EVEN: ROUND_HALF_EVEN,
    Rounding.HALF_UP: ROUND_HALF_UP,
    Rounding.HALF_DOWN: ROUND_HALF_DOWN,
    Rounding.DOWN: ROUND_DOWN,
    Rounding.UP: ROUND_UP,
    Rounding.FLOOR: ROUND_FLOOR,
    Rounding.CEILING: ROUND_CEILING,
}

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

# --- field types with plain-language errors -------------------------------------------------


def _percent(value: Decimal) -> Decimal:
    if not Decimal(0) <= value <= Decimal(100):
        raise ValueError("must be between 0 and 100")
    return value


def _non_negative(value: Decimal) -> Decimal:
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _days(value: int) -> int:
    if not 0 <= value <= 3650:
        raise ValueError("must be a whole number of days between 0 and 3650")
    return value


def _some_business_days(value: frozenset[str]) -> frozenset[str]:
    if len(value) >= 7:
        raise ValueError("a week needs at least one business day")
    return value


def _all_reasons(value: Any) -> Any:
    # `all` is shorthand for every reason; `none` for the empty set.
    if value == "all":
        return list(Reason)
    if value == "none" or value is None:
        return []
    return value


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


Percent = Annotated[Decimal, AfterValidator(_percent)]
# An amount in major units of the policy currency (12.50 EUR, 1000 JPY, 1.250 BHD).
Amount = Annotated[Decimal, AfterValidator(_non_negative)]
Days = Annotated[int, Field(strict=True), AfterValidator(_days)]
Reasons = Annotated[frozenset[Reason], BeforeValidator(_all_reasons)]
Name = Annotated[str, Field(min_length=1, max_length=100)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- sections ---------------------------------------------------------------------------------


class CategoryWindow(_Section):
    days: Days
    counting: Counting | None = None


class Window(_Section):
    """How long after delivery (or purchase, when undelivered) a refund may be asked for."""

    days: Days = 30
    counting: Counting = Counting.CALENDAR
    weekend: Annotated[frozenset[Weekday], AfterValidator(_some_business_days)] = frozenset(
        {"sat", "sun"}
    )
    holidays: frozenset[date] = frozenset()
    outside: Literal[Severity.HARD, Severity.SOFT] = Severity.SOFT
    exempt_reasons: Reasons = frozenset()
    categories: dict[Name, CategoryWindow] = Field(default_factory=dict)

    @cached_property
    def weekend_days(self) -> frozenset[int]:
        return frozenset(WEEKDAYS.index(d) for d in self.weekend)

    def for_category(self, category: str) -> tuple[int, Counting]:
        """Window length and counting for a category (the default when not listed)."""
        override = self.categories.get(category)
        if override is None:
            return self.days, self.counting
        return override.days, override.counting or self.counting


_RECOVERABLE = frozenset({Reason.DAMAGED, Reason.DEFECTIVE, Reason.WRONG_ITEM, Reason.NOT_RECEIVED})


class Exclusions(_Section):
    non_refundable_categories: frozenset[Name] = frozenset()
    non_refundable_skus: frozenset[Name] = frozenset()
    final_sale_categories: frozenset[Name] = frozenset()
    final_sale_skus: frozenset[Name] = frozenset()
    # Final sale means no change of mind; a broken or wrong item is still refunded.
    final_sale_allowed_reasons: Reasons = _RECOVERABLE


class Requirement(_Section):
    condition: RequiredCondition | None = None
    evidence: frozenset[Evidence] | None = None


class Requirements(_Section):
    """Condition of the goods and evidence the customer must give, per reason."""

    default: Requirement = Requirement(condition=RequiredCondition.ANY, evidence=frozenset())
    reasons: dict[Reason, Requirement] = Field(default_factory=dict)
    condition_severity: Literal[Severity.HARD, Severity.SOFT] = Severity.HARD
    evidence_severity: Literal[Severity.HARD, Severity.SOFT] = Severity.SOFT

    def for_reason(self, reason: Reason) -> tuple[RequiredCondition, frozenset[Evidence]]:
        own = self.reasons.get(reason)
        condition = (own.condition if own else None) or self.default.condition
        evidence = own.evidence if own and own.evidence is not None else self.default.evidence
        return condition or RequiredCondition.ANY, evidence or frozenset()


class ReturnRule(_Section):
    """When every condition given holds, `then` decides instant refund or goods back first."""

    then: ReturnMode
    amount_below: Amount | None = None
    reasons: Reasons | None = None
    categories: frozenset[Name] | None = None
    prior_refunds_below: Annotated[int, Field(ge=1, strict=True)] | None = None
    history_days: Days = 365


class Returns(_Section):
    default: ReturnMode = ReturnMode.INSTANT
    rules: list[ReturnRule] = Field(default_factory=list)
    # Days the customer has to send the goods back before the return authorization expires.
    deadline_days: Days = 30


class RestockingFee(_Section):
    """A fee per line: a percent of the line, or a fixed amount per unit."""

    percent: Percent | None = None
    per_unit: Amount | None = None
    categories: frozenset[Name] | None = None
    reasons: Reasons | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if (self.percent is None) == (self.per_unit is None):
            raise ValueError("give either percent or per_unit, not both and not neither")
        return self

    def applies(self, category: str, reason: Reason) -> bool:
        return (self.categories is None or category in self.categories) and (
            self.reasons is None or reason in self.reasons
        )


class ReturnShipping(_Section):
    """A fixed deduction per refund for the label the retailer pays."""

    amount: Amount
    reasons: Reasons | None = None


class Fees(_Section):
    restocking: list[RestockingFee] = Field(default_factory=list)
    return_shipping: list[ReturnShipping] = Field(default_factory=list)


class RoundingRules(_Section):
    default: Rounding = Rounding.HALF_EVEN
    currencies: dict[str, Rounding] = Field(default_factory=dict)

    def for_currency(self, currency: str) -> Rounding:
        return self.currencies.get(currency, self.default)


class RefundRules(_Section):
    """What is paid back besides the lines, how amounts round, and how the money goes."""

    shipping_for: Reasons = frozenset()
    tax_for: Reasons = frozenset()
    rounding: RoundingRules = RoundingRules()
    method: MethodRule = MethodRule.ORIGINAL
    store_credit_bonus_percent: Percent = Decimal(0)


class Authorization(_Section):
    """None means no limit: auto-approve everything, never need four eyes, role unlimited."""

    auto_approve_below: Amount | None = None
    four_eyes_above: Amount | None = None
    role_limits: dict[Name, Amount | None] = Field(default_factory=dict)


class Policy(_Section):
    """One tenant's refund policy. Parse once; evaluate() reuses the parsed model."""

    format: Literal[1] = 1
    name: Annotated[str, Field(min_length=1, max_length=200)] = "policy"
    currency: Annotated[str | None, BeforeValidator(_upper)] = None
    window: Window = Window()
    exclusions: Exclusions = Exclusions()
    requirements: Requirements = Requirements()
    returns: Returns = Returns()
    fees: Fees = Fees()
    refund: RefundRules = RefundRules()
    authorization: Authorization = Authorization()
    sla: Sla = Sla()
    escalation: Escalation = Escalation()
    fraud: FraudRules = FraudRules()

    def minor(self, amount: Decimal) -> int:
        """A policy amount (major units of the policy currency) in integer minor units."""
        if self.currency is None:
            raise InvalidCurrency("this policy has no currency, so it names no amounts")
        return int(amount.scaleb(currency_exponent(self.currency)))

    def amounts(self) -> Iterable[tuple[tuple[str | int, ...], Decimal]]:
        """Every money amount in the document, with its path."""
        auth = self.authorization
        if auth.auto_approve_below is not None:
            yield ("authorization", "auto_approve_below"), auth.auto_approve_below
        if auth.four_eyes_above is not None:
            yield ("authorization", "four_eyes_above"), auth.four_eyes_above
        for role, limit in auth.role_limits.items():
            if limit is not None:
                yield ("authorization", "role_limits", role), limit
        for i, rule in enumerate(self.returns.rules):
            if rule.amount_below is not None:
                yield ("returns", "rules", i, "amount_below"), rule.amount_below
        for i, fee in enumerate(self.fees.restocking):
            if fee.per_unit is not None:
                yield ("fees", "restocking", i, "per_unit"), fee.per_unit
        for i, ship in enumerate(self.fees.return_shipping):
            yield ("fees", "return_shipping", i, "amount"), ship.amount


def _semantic_problems(policy: Policy) -> list[tuple[tuple[str | int, ...], str]]:
    """Checks across fields, each with the path it is about."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    exponent: int | None = None
    if policy.currency is not None:
        try:
            exponent = currency_exponent(policy.currency)
        except InvalidCurrency as exc:
            problems.append((("currency",), str(exc)))
    amounts = list(policy.amounts())
    if policy.currency is None and amounts:
        problems.append((("currency",), "is required when the policy names amounts"))
    if exponent is not None:
        for path, amount in amounts:
            if amount != amount.quantize(Decimal(1).scaleb(-exponent)):
                problems.append(
                    (path, f"{amount} has more decimals than {policy.currency} allows ({exponent})")
                )
    for code in policy.refund.rounding.currencies:
        try:
            currency_exponent(code)
        except InvalidCurrency as exc:
            problems.append((("refund", "rounding", "currencies", code), str(exc)))
    auth = policy.authorization
    if (
        auth.auto_approve_below is not None
        and auth.four_eyes_above is not None
        and auth.four_eyes_above < auth.auto_approve_below
    ):
        problems.append(
            (("authorization", "four_eyes_above"), "must not be below auto_approve_below")
        )
    return problems


# --- errors -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        field = f"{self.path}: " if self.path else ""
        return f"{where}{field}{self.message}"


class PolicyError(Invalid):
    """A policy document that cannot be used; lists every problem with its line and field."""

    code = "invalid_policy"
    title = "Invalid policy document"

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(str(p) for p in self.problems)
        super().__init__(
            f"the policy has {len(self.problems)} problem(s):\n{lines}",
            field="policy",
            problems=[{"line": p.line, "path": p.path, "message": p.message} for p in problems],
        )


def _path_text(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _line_of(node: yaml.Node | None, loc: Sequence[str | int]) -> int | None:
    """The YAML line (1-based) of the key or list item deepest along loc."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    line, node = key.start_mark.line + 1, value
                    break
            else:
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "is required"
    text = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        text = text.removeprefix(prefix)
    return text[:1].lower() + text[1:]


def _clean_loc(loc: Sequence[str | int]) -> tuple[str | int, ...]:
    # Pydantic adds `[key]` markers for dict keys that fail; the key itself is the useful part.
    return tuple(part for part in loc if part != "[key]")


def _validate(data: Any, node: yaml.Node | None) -> Policy:
    if data is None:
        data = {}  # an empty document is the default policy
    if not isinstance(data, dict):
        raise PolicyError([Problem(_line_of(node, ()), "", "the document must be a mapping")])
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = _clean_loc(error["loc"])
            problems.append(Problem(_line_of(node, loc), _path_text(loc), _message(error)))
        raise PolicyError(problems) from None
    semantic = _semantic_problems(policy)
    if semantic:
        raise PolicyError(
            [Problem(_line_of(node, loc), _path_text(loc), msg) for loc, msg in semantic]
        )
    return policy


def parse_policy(text: str, *, fmt: Literal["yaml", "toml"] = "yaml") -> Policy:
    """Parse and validate a policy document; raise PolicyError naming each line and field."""
    if fmt == "toml":
        try:
            table = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError([Problem(None, "", f"malformed TOML: {exc}")]) from None
        return _validate(table, None)
    try:
        # The loader checks for unprintable characters as it is made: inside the try.
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:
        raise PolicyError([Problem(None, "", f"malformed YAML: {exc}")]) from None
    try:
        node = loader.get_single_node()
        data: Any = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        context = f" ({exc.context})" if exc.context else ""
        problem = f"malformed YAML: {exc.problem}{context}"
        raise PolicyError([Problem(line, "", problem)]) from None
    except yaml.YAMLError as exc:
        raise PolicyError([Problem(None, "", f"malformed YAML: {exc}")]) from None
    finally:
        loader.dispose()
    return _validate(data, node)


def policy_from_data(data: Mapping[str, Any]) -> Policy:
    """Validate an already-decoded document (a JSON body); errors carry paths, not lines."""
    return _validate(dict(data), None)


def load_policy(path: str | Path) -> Policy:
    """Read a .yaml, .yml or .toml policy file."""
    path = Path(path)
    fmt: Literal["yaml", "toml"] = "toml" if path.suffix == ".toml" else "yaml"
    return parse_policy(path.read_text(encoding="utf-8"), fmt=fmt)


EXAMPLES = ("northwind", "sakura", "maple")


def example_text(name: str) -> str:
    """The source of a bundled example policy (northwind, sakura, maple)."""
    if name not in EXAMPLES:
        raise KeyError(f"no example policy {name!r}; choose from {', '.join(EXAMPLES)}")
    return (resources.files("refunddesk.policy") / "examples" / f"{name}.yaml").read_text(
        encoding="utf-8"
    )


def example_policy(name: str) -> Policy:
    """A bundled example policy, parsed."""
    return parse_policy(example_text(name))


def default_policy() -> Policy:
    """The built-in rule as a policy: 30 calendar days, auto-approve, no fees, lines only."""
    return _DEFAULT


_DEFAULT = Policy(name="built-in default")
