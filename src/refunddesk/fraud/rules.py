"""Per-tenant fraud rules: the `fraud:` section of the policy document, and how it fires.

Thresholds on features and block/allow lists, each with a reason code. Rules set a floor
on the risk level (the model may say more, never less); an allow-listed customer is low
whatever the model says; a block-listed one is high.

    fraud:
      on_high: hold            # or reject
      medium_at: 0.5           # override the model's thresholds (optional)
      rules:
        - code: ring
          level: high
          when: {linked_refunds_30d: {at_least: 3}, linked_accounts: {at_least: 2}}
      block: {devices: [dev-123], emails: [mallory@example.com]}
      allow: {customer_refs: [vip-42]}
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, Literal, Self

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from refunddesk.fraud.features import FEATURE_NAMES, INDEX
from refunddesk.fraud.linking import LinkKind, canonical_address, key_hash, normalise_email


class Level(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Level.LOW: 0, Level.MEDIUM: 1, Level.HIGH: 2}


def higher(a: Level, b: Level) -> Level:
    return a if a.rank >= b.rank else b


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Code = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
Score = Annotated[float, Field(ge=0, le=1)]


class Bound(_Section):
    """A condition on one feature: at least, and/or below, a value."""

    at_least: float | None = None
    below: float | None = None

    @model_validator(mode="after")
    def _some(self) -> Self:
        if self.at_least is None and self.below is None:
            raise ValueError("give at_least, below or both")
        return self

    def holds(self, value: float) -> bool:
        if math.isnan(value):
            return False  # a missing signal never fires a rule
        if self.at_least is not None and value < self.at_least:
            return False
        return self.below is None or value < self.below


class Rule(_Section):
    """Fires when every condition holds; sets the risk level to at least `level`."""

    code: Code
    level: Literal[Level.MEDIUM, Level.HIGH]
    when: Annotated[dict[str, Bound], Field(min_length=1)]
    message: Annotated[str, Field(min_length=1, max_length=300)] | None = None

    @field_validator("when")
    @classmethod
    def _known_features(cls, value: dict[str, Bound]) -> dict[str, Bound]:
        unknown = sorted(set(value) - set(FEATURE_NAMES))
        if unknown:
            raise ValueError(
                f"unknown feature {', '.join(unknown)}; known: {', '.join(FEATURE_NAMES)}"
            )
        return value

    def fires(self, values: Mapping[str, float]) -> bool:
        return all(bound.holds(values[name]) for name, bound in self.when.items())

    def mask(self, X: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        """fires() for every row of a feature matrix at once (NaN never satisfies a bound)."""
        out = np.ones(len(X), dtype=bool)
        for name, bound in self.when.items():
            column = X[:, INDEX[name]]
            with np.errstate(invalid="ignore"):
                if bound.at_least is not None:
                    out &= column >= bound.at_least
                if bound.below is not None:
                    out &= column < bound.below
        return out


class Lists(_Section):
    """Identities to block or allow; emails match once normalised, addresses canonicalised."""

    emails: frozenset[Annotated[str, Field(min_length=3, max_length=320)]] = frozenset()
    customer_refs: frozenset[Annotated[str, Field(min_length=1, max_length=200)]] = frozenset()
    devices: frozenset[Annotated[str, Field(min_length=1, max_length=200)]] = frozenset()
    payment_fingerprints: frozenset[Annotated[str, Field(min_length=1, max_length=128)]] = (
        frozenset()
    )
    addresses: tuple[dict[str, str], ...] = ()

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, value: tuple[dict[str, str], ...]) -> tuple[dict[str, str], ...]:
        for address in value:
            if canonical_address(address) is None:
                raise ValueError("an address needs at least line1")
        return value

    @cached_property
    def hashes(self) -> dict[str, str]:
        """key hash -> what it names, for matching against an order's identity keys."""
        out: dict[str, str] = {}
        for email in self.emails:
            out[key_hash(LinkKind.EMAIL, normalise_email(email))] = "email address"
        for ref in self.customer_refs:
            out[key_hash(LinkKind.ACCOUNT, ref.strip())] = "customer account"
        for device in self.devices:
            out[key_hash(LinkKind.DEVICE, device.strip())] = "device"
        for fingerprint in self.payment_fingerprints:
            out[key_hash(LinkKind.PAYMENT, fingerprint.strip())] = "payment card or account"
        for address in self.addresses:
            canonical = canonical_address(address)
            if canonical is not None:
                out[key_hash(LinkKind.ADDRESS, canonical)] = "address"
        return out

    def match(self, keys: Mapping[str, Any]) -> str | None:
        """What on the list an order's keys hit (device, email address, ...), if anything."""
        hashes = self.hashes
        for digest in keys:
            found = hashes.get(digest)
            if found is not None:
                return found
        return None


DEFAULT_RULES: tuple[Rule, ...] = (
    Rule(
        code="linked_ring",
        level=Level.HIGH,
        when={"linked_refunds_30d": Bound(at_least=3), "linked_accounts": Bound(at_least=2)},
    ),
    Rule(code="empty_box", level=Level.HIGH, when={"returned_weight_ratio": Bound(below=0.5)}),
    Rule(
        code="not_received_signed",
        level=Level.MEDIUM,
        when={"not_received_but_delivered": Bound(at_least=1)},
    ),
    Rule(code="serial_refunder", level=Level.MEDIUM, when={"cust_refunds_30d": Bound(at_least=5)}),
)


class FraudRules(_Section):
    """The `fraud:` section of a tenant's policy."""

    enabled: bool = True
    # Override the model's own thresholds for this tenant.
    medium_at: Score | None = None
    high_at: Score | None = None
    on_medium: Literal["review", "continue"] = "review"
    on_high: Literal["hold", "reject"] = "hold"
    rules: tuple[Rule, ...] = DEFAULT_RULES
    block: Lists = Lists()
    allow: Lists = Lists()

    @model_validator(mode="after")
    def _check(self) -> Self:
        medium, high = self.medium_at, self.high_at
        if medium is not None and high is not None and medium > high:
            raise ValueError("medium_at must not be above high_at")
        codes = [r.code for r in self.rules]
        if len(set(codes)) != len(codes):
            raise ValueError("each rule code may appear once")
        return self

    @cached_property
    def version(self) -> str:
        """A content hash: the same rules always carry the same version."""
        canonical = self.model_dump_json(exclude={"enabled"})
        return "rules-" + hashlib.sha256(canonical.encode()).hexdigest()[:10]


DEFAULT_RULES_DOC = FraudRules()


@dataclass(frozen=True, slots=True)
class Hit:
    """A rule or list that fired on a refund."""

    code: str
    level: Level
    message: str | None  # None: say it from the feature values


def fire(
    rules: FraudRules, values: Mapping[str, float], keys: Mapping[str, Any]
) -> tuple[list[Hit], bool]:
    """The rules and lists that fire on one refund; and whether it is allow-listed."""
    allowed = rules.allow.match(keys)
    if allowed is not None:
        return [Hit("allow_listed", Level.LOW, f"the {allowed} is on the allow list")], True
    hits: list[Hit] = []
    blocked = rules.block.match(keys)
    if blocked is not None:
        hits.append(Hit("block_listed", Level.HIGH, f"the {blocked} is on the block list"))
    hits.extend(Hit(r.code, r.level, r.message) for r in rules.rules if r.fires(values))
    return hits, False


def fire_matrix(
    rules: FraudRules, X: npt.NDArray[np.float64], keys: Sequence[Mapping[str, Any]]
) -> tuple[list[list[Hit]], list[bool]]:
    """fire() for every row of a feature matrix: the hits of each row, and which are allowed."""
    n = len(X)
    hits: list[list[Hit]] = [[] for _ in range(n)]
    allowed = [False] * n
    if rules.allow.hashes or rules.block.hashes:
        for i in range(n):
            allowed_by = rules.allow.match(keys[i])
            if allowed_by is not None:
                allowed[i] = True
                hits[i].append(
                    Hit("allow_listed", Level.LOW, f"the {allowed_by} is on the allow list")
                )
                continue
            blocked = rules.block.match(keys[i])
            if blocked is not None:
                hits[i].append(
                    Hit("block_listed", Level.HIGH, f"the {blocked} is on the block list")
                )
    if n == 1:  # intake: fires() on the row, cheaper than masks over a one-row matrix
        values = dict(zip(FEATURE_NAMES, X[0].tolist(), strict=True))
        if not allowed[0]:
            hits[0].extend(Hit(r.code, r.level, r.message) for r in rules.rules if r.fires(values))
        return hits, allowed
    for rule in rules.rules:
        for i in np.flatnonzero(rule.mask(X)).tolist():
            if not allowed[i]:
                hits[i].append(Hit(rule.code, rule.level, rule.message))
    return hits, allowed


def rule_features(rules: FraudRules, code: str) -> Sequence[str]:
    """The features a rule looks at, in the order written."""
    for rule in rules.rules:
        if rule.code == code:
            return list(rule.when)
    return []
