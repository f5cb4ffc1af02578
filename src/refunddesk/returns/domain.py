"""The return authorization (RMA): its states, the one transitions table, and settlement.

Read this file to see every state a return can be in, how it gets there, and how a
receipt and an inspection turn into the refund's next state and amount. Pure: no
database, no HTTP, no clock (times are passed in).

The table, beyond the issue's happy path:
- ``authorized -> received``: goods dropped at a store or warehouse without a carrier scan.
- ``authorized | in_transit -> canceled``: the refund was canceled while awaiting its
  return (the refund's own table allows ``awaiting_return -> canceled``); without it the
  RMA of a canceled refund would wait in transit forever.
- Not ``in_transit -> expired``: the deadline is for handing the parcel over; once the
  carrier has it, it can only arrive or be lost.
- ``inspected``, ``lost_in_transit``, ``expired`` and ``canceled`` are final. A parcel that
  turns up after it was declared lost or expired is refused here (IllegalTransition) so
  the caller reports it to an agent rather than silently reopening a settled refund.
- One receipt per RMA: the warehouse scan feed groups a parcel's scans by tracking number
  first, so a second receipt for the same RMA is an illegal move, not a merge.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from refunddesk.core.errors import Conflict, IllegalTransition, Invalid
from refunddesk.core.ids import new_id
from refunddesk.core.money import Money, normalize_currency
from refunddesk.refunds.domain import RefundStatus
from refunddesk.refunds.domain import check_transition as check_refund_transition


class ReturnStatus(StrEnum):
    AUTHORIZED = "authorized"
    IN_TRANSIT = "in_transit"
    RECEIVED = "received"
    INSPECTED = "inspected"
    LOST_IN_TRANSIT = "lost_in_transit"
    EXPIRED = "expired"
    CANCELED = "canceled"


R = ReturnStatus

# The transitions table: the only place that says which moves of a return are legal.
TRANSITIONS: Mapping[ReturnStatus, frozenset[ReturnStatus]] = {
    R.AUTHORIZED: frozenset({R.IN_TRANSIT, R.RECEIVED, R.EXPIRED, R.CANCELED}),
    R.IN_TRANSIT: frozenset({R.RECEIVED, R.LOST_IN_TRANSIT, R.CANCELED}),
    R.RECEIVED: frozenset({R.INSPECTED}),
    R.INSPECTED: frozenset(),
    R.LOST_IN_TRANSIT: frozenset(),
    R.EXPIRED: frozenset(),
    R.CANCELED: frozenset(),
}

TERMINAL: frozenset[ReturnStatus] = frozenset(s for s, t in TRANSITIONS.items() if not t)
OPEN: frozenset[ReturnStatus] = frozenset(TRANSITIONS) - TERMINAL


def check_transition(current: ReturnStatus, target: ReturnStatus) -> None:
    """Raise IllegalTransition unless the table allows current -> target."""
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none (final state)"
        raise IllegalTransition(
            f"a return cannot go from {current} to {target}; allowed from {current}: {allowed}",
            current=str(current),
            target=str(target),
        )


def received_moves_refund_to(refund_status: RefundStatus) -> RefundStatus:
    """The refund's state once its return is received: awaiting_return -> return_received.

    Raises IllegalTransition (from the refund's own table) when the refund is not awaiting
    its return. After inspection, ``settle`` says where it goes next: approved, rejected or
    pending_review, all legal from return_received.
    """
    check_refund_transition(refund_status, RefundStatus.RETURN_RECEIVED)
    return RefundStatus.RETURN_RECEIVED


class OverReceipt(Invalid):
    code = "over_receipt"
    title = "More items received than were authorized for return"


class NotYetExpired(Conflict):
    code = "return_not_expired"
    title = "The return's deadline has not passed"


class ItemCondition(StrEnum):
    """The condition a warehouse records for received goods, from best to worst."""

    UNOPENED = "unopened"
    UNUSED = "unused"
    USED = "used"
    DEFECTIVE = "defective"
    DAMAGED = "damaged"


_CONDITION_RANK = {c: i for i, c in enumerate(ItemCondition)}


def worst_condition(conditions: Iterable[ItemCondition]) -> ItemCondition:
    """The worst of several conditions (damaged is worse than used is worse than unopened)."""
    return max(conditions, key=_CONDITION_RANK.__getitem__)


def parse_condition(text: str) -> ItemCondition:
    """Read a condition as typed or scanned (any case, spaces); raise Invalid if unknown."""
    cleaned = text.strip().lower().replace(" ", "_").replace("-", "_")
    try:
        return ItemCondition(cleaned)
    except ValueError:
        known = ", ".join(ItemCondition)
        raise Invalid(
            f"unknown condition {text!r}; expected one of {known}", field="condition"
        ) from None


def normalize_tracking_number(text: str) -> str:
    """Canonical tracking number: no whitespace, upper case, as carriers print them."""
    cleaned = "".join(text.split()).upper()
    if not cleaned:
        raise Invalid("a tracking number cannot be empty", field="tracking_number")
    return cleaned


class ReturnEventType(StrEnum):
    AUTHORIZED = "return.authorized"
    IN_TRANSIT = "return.in_transit"
    RECEIVED = "return.received"
    INSPECTED = "return.inspected"
    LOST_IN_TRANSIT = "return.lost_in_transit"
    EXPIRED = "return.expired"
    CANCELED = "return.canceled"


@dataclass(frozen=True, slots=True)
class ReturnEvent:
    """One step in a return's life; ``data`` is JSON-ready and names from and to status."""

    type: ReturnEventType
    at: datetime
    actor: str
    data: dict[str, Any]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise Invalid(f"{name} must be a timezone-aware time", field=name)
    return value


@dataclass(frozen=True, slots=True)
class ReturnLine:
    """What may come back: a SKU, how many, and the refund per unit in minor units."""

    sku: str
    quantity: int
    unit_refund_minor: int

    def __post_init__(self) -> None:
        if not self.sku.strip():
            raise Invalid("a return line needs a SKU", field="sku")
        if not _is_int(self.quantity) or self.quantity < 1:
            raise Invalid(f"{self.sku}: quantity must be a whole number of 1 or more")
        if not _is_int(self.unit_refund_minor) or self.unit_refund_minor < 0:
            raise Invalid(f"{self.sku}: unit refund must be whole minor units, 0 or more")

    @property
    def authorized_minor(self) -> int:
        return self.quantity * self.unit_refund_minor


@dataclass(frozen=True, slots=True)
class ReceivedLine:
    """What the warehouse counted for one SKU; condition is None when nothing arrived."""

    sku: str
    quantity: int
    condition: ItemCondition | None


class Outcome(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    PARTIAL = "partial"


@dataclass(frozen=True, slots=True)
class LineInspection:
    """An inspector's verdict on some or all received units of one SKU.

    ``quantity`` None means "every received unit of this SKU not covered by another
    verdict". A partial credit gives either ``percent`` of those units' value or a fixed
    ``credit_minor`` for all of those units together.
    """

    outcome: Outcome
    quantity: int | None = None
    reason: str | None = None
    percent: Decimal | None = None
    credit_minor: int | None = None

    def __post_init__(self) -> None:
        if self.quantity is not None and (not _is_int(self.quantity) or self.quantity < 1):
            raise Invalid("an inspected quantity must be a whole number of 1 or more")
        if self.outcome is Outcome.REJECT and not (self.reason and self.reason.strip()):
            raise Invalid("a rejection needs a reason", field="reason")
        if self.outcome is Outcome.PARTIAL:
            if (self.percent is None) == (self.credit_minor is None):
                raise Invalid("a partial credit needs either a percent or an amount, not both")
            if self.percent is not None and not Decimal(0) <= self.percent <= Decimal(100):
                raise Invalid("a partial credit percent must be between 0 and 100")
            if self.credit_minor is not None and (
                not _is_int(self.credit_minor) or self.credit_minor < 0
            ):
                raise Invalid("a partial credit amount must be whole minor units, 0 or more")
        elif self.percent is not None or self.credit_minor is not None:
            raise Invalid(f"only a partial credit carries a percent or an amount ({self.outcome})")

    @classmethod
    def accept(cls, *, quantity: int | None = None) -> LineInspection:
        return cls(Outcome.ACCEPT, quantity=quantity)

    @classmethod
    def reject(cls, reason: str, *, quantity: int | None = None) -> LineInspection:
        return cls(Outcome.REJECT, quantity=quantity, reason=reason)

    @classmethod
    def partial(
        cls,
        *,
        percent: Decimal | int | str | None = None,
        credit_minor: int | None = None,
        reason: str | None = None,
        quantity: int | None = None,
    ) -> LineInspection:
        pct: Decimal | None = None
        if percent is not None:
            try:
                pct = Decimal(percent)
            except InvalidOperation:
                raise Invalid(f"{percent!r} is not a percent") from None
            if not pct.is_finite():
                raise Invalid(f"{percent!r} is not a percent")
        return cls(
            Outcome.PARTIAL,
            quantity=quantity,
            reason=reason,
            percent=pct,
            credit_minor=credit_minor,
        )


@dataclass(frozen=True, slots=True)
class InspectedPart:
    """A verdict resolved against the line: a definite quantity and the credit it earns."""

    sku: str
    outcome: Outcome
    quantity: int
    credit_minor: int
    reason: str | None = None
    percent: Decimal | None = None

    def as_data(self) -> dict[str, Any]:
        return {
            "sku": self.sku,
            "outcome": str(self.outcome),
            "quantity": self.quantity,
            "credit_minor": self.credit_minor,
            "reason": self.reason,
            "percent": None if self.percent is None else str(self.percent),
        }


def _percent_of(value_minor: int, percent: Decimal) -> int:
    """percent of value, rounded half up to whole minor units (the half goes to the customer)."""
    exact = Decimal(value_minor) * percent / Decimal(100)
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(eq=False)
class ReturnAuthorization:
    """The return of goods a refund waits for; every change goes through a method below."""

    refund_id: str
    currency: str
    lines: tuple[ReturnLine, ...]
    expires_at: datetime
    id: str = field(default_factory=new_id)
    status: ReturnStatus = ReturnStatus.AUTHORIZED
    carrier: str | None = None
    tracking_number: str | None = None
    received: dict[str, ReceivedLine] = field(default_factory=dict)
    inspection: dict[str, tuple[InspectedPart, ...]] = field(default_factory=dict)
    events: list[ReturnEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.currency = normalize_currency(self.currency)
        self.lines = tuple(self.lines)
        if not self.lines:
            raise Invalid("a return needs at least one line", field="lines")
        skus = [line.sku for line in self.lines]
        duplicates = sorted({s for s in skus if skus.count(s) > 1})
        if duplicates:
            raise Invalid(
                f"each SKU may appear on one return line only: {', '.join(duplicates)}",
                field="lines",
            )
        _aware(self.expires_at, "expires_at")

    @classmethod
    def authorize(
        cls,
        *,
        refund_id: str,
        currency: str,
        lines: Iterable[ReturnLine],
        expires_at: datetime,
        at: datetime,
        actor: str,
        id: str | None = None,
    ) -> ReturnAuthorization:
        """Open a return for a refund and record that it was authorized."""
        rma = cls(
            refund_id=refund_id,
            currency=currency,
            lines=tuple(lines),
            expires_at=expires_at,
            id=id or new_id(),
        )
        rma._record(
            ReturnEventType.AUTHORIZED,
            at=at,
            actor=actor,
            data={
                "from_status": None,
                "to_status": str(rma.status),
                "refund_id": refund_id,
                "currency": rma.currency,
                "expires_at": rma.expires_at.isoformat(),
                "lines": [
                    {"sku": x.sku, "quantity": x.quantity, "unit_refund_minor": x.unit_refund_minor}
                    for x in rma.lines
                ],
            },
        )
        return rma

    # -- reading ----------------------------------------------------------------------

    @property
    def line_by_sku(self) -> dict[str, ReturnLine]:
        return {line.sku: line for line in self.lines}

    @property
    def authorized_minor(self) -> int:
        """The refund the whole return is worth if everything comes back and passes."""
        return sum(line.authorized_minor for line in self.lines)

    def is_past_deadline(self, now: datetime) -> bool:
        return _aware(now, "now") > self.expires_at

    # -- behaviour --------------------------------------------------------------------

    def mark_in_transit(
        self, carrier: str, tracking_number: str, *, at: datetime, actor: str
    ) -> ReturnEvent:
        """The customer handed the parcel to a carrier."""
        check_transition(self.status, R.IN_TRANSIT)
        if not carrier.strip():
            raise Invalid("a carrier is required", field="carrier")
        tracking = normalize_tracking_number(tracking_number)
        self.carrier = carrier.strip()
        self.tracking_number = tracking
        return self._move(
            R.IN_TRANSIT,
            ReturnEventType.IN_TRANSIT,
            at=at,
            actor=actor,
            data={"carrier": self.carrier, "tracking_number": tracking},
        )

    def receive(
        self,
        quantities: Mapping[str, int],
        conditions: Mapping[str, ItemCondition | str],
        *,
        at: datetime,
        actor: str,
    ) -> ReturnEvent:
        """The warehouse counted the parcel: SKUs not listed count as none received.

        Short shipments are allowed (settlement removes what did not arrive); more than
        was authorized, or a SKU that was never authorized, is refused and changes nothing.
        """
        check_transition(self.status, R.RECEIVED)
        lines = self.line_by_sku
        unknown = sorted(set(quantities) - set(lines))
        if unknown:
            raise Invalid(
                f"not authorized for this return: {', '.join(unknown)}", field="quantities"
            )
        unknown = sorted(set(conditions) - set(lines))
        if unknown:
            raise Invalid(
                f"not authorized for this return: {', '.join(unknown)}", field="conditions"
            )
        received: dict[str, ReceivedLine] = {}
        for line in self.lines:
            count = quantities.get(line.sku, 0)
            if not _is_int(count) or count < 0:
                raise Invalid(
                    f"{line.sku}: a received quantity must be a whole number, 0 or more",
                    field="quantities",
                )
            if count > line.quantity:
                raise OverReceipt(
                    f"{count} of {line.sku} received but only {line.quantity} authorized",
                    field="quantities",
                    sku=line.sku,
                    authorized=line.quantity,
                    received=count,
                )
            raw = conditions.get(line.sku)
            if count and raw is None:
                raise Invalid(f"{line.sku}: a condition is required", field="conditions")
            condition = None if raw is None else parse_condition(str(raw))
            received[line.sku] = ReceivedLine(line.sku, count, condition if count else None)
        event = self._move(
            R.RECEIVED,
            ReturnEventType.RECEIVED,
            at=at,
            actor=actor,
            data={
                "lines": [
                    {
                        "sku": r.sku,
                        "authorized": lines[r.sku].quantity,
                        "received": r.quantity,
                        "condition": None if r.condition is None else str(r.condition),
                    }
                    for r in received.values()
                ]
            },
        )
        self.received = received
        return event

    def inspect(
        self,
        results: Mapping[str, LineInspection | Sequence[LineInspection]],
        *,
        at: datetime,
        actor: str,
    ) -> ReturnEvent:
        """Record a verdict on every received unit; if any is missing, nothing changes."""
        check_transition(self.status, R.INSPECTED)
        lines = self.line_by_sku
        unknown = sorted(set(results) - set(lines))
        if unknown:
            raise Invalid(f"not authorized for this return: {', '.join(unknown)}", field="results")
        resolved: dict[str, tuple[InspectedPart, ...]] = {}
        for line in self.lines:
            got = self.received[line.sku].quantity
            given = results.get(line.sku)
            verdicts = [given] if isinstance(given, LineInspection) else list(given or [])
            if not got:
                if verdicts:
                    raise Invalid(f"{line.sku}: nothing was received, so nothing to inspect")
                resolved[line.sku] = ()
                continue
            resolved[line.sku] = self._resolve(line, got, verdicts)
        event = self._move(
            R.INSPECTED,
            ReturnEventType.INSPECTED,
            at=at,
            actor=actor,
            data={"parts": [p.as_data() for parts in resolved.values() for p in parts]},
        )
        self.inspection = resolved
        return event

    def _resolve(
        self, line: ReturnLine, received: int, verdicts: Sequence[LineInspection]
    ) -> tuple[InspectedPart, ...]:
        sku = line.sku
        if not verdicts:
            raise Invalid(f"{sku}: {received} received but not inspected", field="results")
        rest = [v for v in verdicts if v.quantity is None]
        if len(rest) > 1:
            raise Invalid(f"{sku}: only one verdict may cover the remaining units")
        counted = sum(v.quantity for v in verdicts if v.quantity is not None)
        if counted > received or (counted == received and rest):
            raise Invalid(f"{sku}: verdicts cover more than the {received} received")
        if counted < received and not rest:
            raise Invalid(f"{sku}: verdicts cover {counted} of the {received} received")
        parts: list[InspectedPart] = []
        for v in verdicts:
            quantity = received - counted if v.quantity is None else v.quantity
            value = quantity * line.unit_refund_minor
            if v.outcome is Outcome.ACCEPT:
                credit = value
            elif v.outcome is Outcome.REJECT:
                credit = 0
            elif v.percent is not None:
                credit = _percent_of(value, v.percent)
            else:
                credit = v.credit_minor or 0
                if credit > value:
                    raise Invalid(
                        f"{sku}: a credit of {self._money(credit)} is more than the "
                        f"{self._money(value)} those {quantity} are worth"
                    )
            parts.append(InspectedPart(sku, v.outcome, quantity, credit, v.reason, v.percent))
        return tuple(parts)

    def expire(self, now: datetime, *, actor: str) -> ReturnEvent:
        """Close a return whose parcel never left before the deadline."""
        check_transition(self.status, R.EXPIRED)
        if not self.is_past_deadline(now):
            raise NotYetExpired(
                f"the return is open until {self.expires_at.isoformat()}",
                expires_at=self.expires_at.isoformat(),
            )
        return self._move(
            R.EXPIRED,
            ReturnEventType.EXPIRED,
            at=now,
            actor=actor,
            data={"expires_at": self.expires_at.isoformat()},
        )

    def mark_lost(self, *, at: datetime, actor: str, note: str | None = None) -> ReturnEvent:
        """The carrier lost the parcel."""
        check_transition(self.status, R.LOST_IN_TRANSIT)
        return self._move(
            R.LOST_IN_TRANSIT,
            ReturnEventType.LOST_IN_TRANSIT,
            at=at,
            actor=actor,
            data={"carrier": self.carrier, "tracking_number": self.tracking_number, "note": note},
        )

    def cancel(self, *, at: datetime, actor: str, reason: str) -> ReturnEvent:
        """Stop waiting for goods: the refund this return belongs to was canceled."""
        check_transition(self.status, R.CANCELED)
        return self._move(
            R.CANCELED, ReturnEventType.CANCELED, at=at, actor=actor, data={"reason": reason}
        )

    # -- internals --------------------------------------------------------------------

    def _money(self, minor: int) -> str:
        return Money(minor, self.currency).format()

    def _move(
        self,
        target: ReturnStatus,
        type_: ReturnEventType,
        *,
        at: datetime,
        actor: str,
        data: dict[str, Any],
    ) -> ReturnEvent:
        current = self.status
        check_transition(current, target)
        _aware(at, "at")
        event = self._record(
            type_,
            at=at,
            actor=actor,
            data={"from_status": str(current), "to_status": str(target), **data},
        )
        self.status = target
        return event

    def _record(
        self, type_: ReturnEventType, *, at: datetime, actor: str, data: dict[str, Any]
    ) -> ReturnEvent:
        _aware(at, "at")
        if not actor.strip():
            raise Invalid("every change to a return needs an actor", field="actor")
        event = ReturnEvent(type=type_, at=at, actor=actor, data=data)
        self.events.append(event)
        return event


# -- settlement -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SettledLine:
    """One line after inspection: where each authorized unit ended up, and its credit."""

    sku: str
    authorized: int
    received: int
    accepted: int
    rejected: int
    partial: int
    authorized_minor: int
    credit_minor: int

    @property
    def short(self) -> int:
        return self.authorized - self.received


@dataclass(frozen=True, slots=True)
class Settlement:
    """What an inspected return means for its refund: next state, amount and why."""

    status: RefundStatus
    amount_minor: int
    authorized_minor: int
    currency: str
    lines: tuple[SettledLine, ...]
    reasons: tuple[str, ...]
    codes: tuple[str, ...]

    @property
    def adjustment_minor(self) -> int:
        """Change to the refund amount: 0 when everything passed, negative otherwise."""
        return self.amount_minor - self.authorized_minor

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.currency)


def settle(rma: ReturnAuthorization, *, review_partial: bool = False) -> Settlement:
    """Turn an inspected return into the refund's next state, amount and reasons.

    Everything received and accepted: approved in full. Nothing to refund (all rejected,
    nothing received, or zero credit): rejected. Anything else is approved at the adjusted
    amount, or sent to pending_review when the policy sets ``review_partial``.
    """
    if rma.status is not R.INSPECTED:
        raise Conflict(
            f"a return that is {rma.status} cannot be settled; it must be inspected first",
            status=str(rma.status),
        )

    def money(minor: int) -> str:
        return Money(minor, rma.currency).format()

    settled: list[SettledLine] = []
    reasons: list[str] = []
    codes: list[str] = []
    for line in rma.lines:
        parts = rma.inspection.get(line.sku, ())
        got = rma.received[line.sku].quantity
        by = {o: sum(p.quantity for p in parts if p.outcome is o) for o in Outcome}
        credit = sum(p.credit_minor for p in parts)
        # Each part is within its units' value by construction; clamp anyway so no stored
        # or hand-built inspection can pay out more than the line or less than nothing.
        credit = min(max(credit, 0), line.authorized_minor)
        settled.append(
            SettledLine(
                line.sku,
                line.quantity,
                got,
                by[Outcome.ACCEPT],
                by[Outcome.REJECT],
                by[Outcome.PARTIAL],
                line.authorized_minor,
                credit,
            )
        )
        if got < line.quantity:
            codes.append("short_shipment")
        if by[Outcome.ACCEPT] == line.quantity:
            reasons.append(f"{line.quantity} of {line.quantity} {line.sku} received and accepted")
            continue
        text = [f"{got} of {line.quantity} {line.sku} received"]
        for part in parts:
            if part.outcome is Outcome.REJECT:
                codes.append("line_rejected")
                text.append(f"{part.quantity} rejected: {part.reason}")
            elif part.outcome is Outcome.PARTIAL:
                codes.append("partial_credit")
                value = part.quantity * line.unit_refund_minor
                if part.percent is not None:
                    said = f"{part.quantity} credited {part.percent}% ({money(part.credit_minor)})"
                else:
                    said = f"{part.quantity} credited {money(part.credit_minor)} of {money(value)}"
                text.append(f"{said}: {part.reason}" if part.reason else said)
        reasons.append("; ".join(text))

    authorized = rma.authorized_minor
    amount = min(max(sum(s.credit_minor for s in settled), 0), authorized)
    in_full = all(s.accepted == s.authorized for s in settled)
    if in_full:
        status = RefundStatus.APPROVED
        codes.append("accepted_in_full")
        reasons.append(f"everything came back and passed inspection: {money(amount)} in full")
    elif amount == 0:
        status = RefundStatus.REJECTED
        codes.append("nothing_to_refund")
        reasons.append(f"nothing to refund of the {money(authorized)} authorized")
    else:
        status = RefundStatus.PENDING_REVIEW if review_partial else RefundStatus.APPROVED
        reasons.append(f"refund adjusted from {money(authorized)} to {money(amount)}")
        if review_partial:
            codes.append("held_for_review")
            reasons.append("a partial return goes to review under this policy")
    return Settlement(
        status=status,
        amount_minor=amount,
        authorized_minor=authorized,
        currency=rma.currency,
        lines=tuple(settled),
        reasons=tuple(reasons),
        codes=tuple(dict.fromkeys(codes)),
    )
