"""Returns (RMA): the state machine, receipt, inspection, expiry and settlement."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refunddesk.core.errors import Conflict, IllegalTransition, Invalid
from refunddesk.refunds.domain import TRANSITIONS as REFUND_TRANSITIONS
from refunddesk.refunds.domain import RefundStatus
from refunddesk.returns.domain import (
    TERMINAL,
    ItemCondition,
    LineInspection,
    NotYetExpired,
    OverReceipt,
    ReturnAuthorization,
    ReturnLine,
    ReturnStatus,
    Settlement,
    check_transition,
    received_moves_refund_to,
    settle,
)

R = ReturnStatus
AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
DEADLINE = AT + timedelta(days=14)
A, B = "SKU-A", "SKU-B"

# Written out from the issue and the brief, independently of returns/domain.py's table.
EXPECTED: dict[str, set[str]] = {
    "authorized": {"in_transit", "received", "expired", "canceled"},
    "in_transit": {"received", "lost_in_transit", "canceled"},
    "received": {"inspected"},
    "inspected": set(),
    "lost_in_transit": set(),
    "expired": set(),
    "canceled": set(),
}
ALL_PAIRS = list(itertools.product(list(R), repeat=2))
LEGAL = [(a, b) for a, b in ALL_PAIRS if str(b) in EXPECTED[str(a)]]
ILLEGAL = [(a, b) for a, b in ALL_PAIRS if str(b) not in EXPECTED[str(a)]]


def _rma(
    lines: tuple[ReturnLine, ...] = (ReturnLine(A, 3, 1000), ReturnLine(B, 1, 2500)),
    currency: str = "EUR",
) -> ReturnAuthorization:
    return ReturnAuthorization.authorize(
        refund_id="R" * 26,
        currency=currency,
        lines=lines,
        expires_at=DEADLINE,
        at=AT,
        actor="agent:ada",
    )


def _in(status: ReturnStatus) -> ReturnAuthorization:
    """A return brought to status by legal moves only."""
    rma = _rma()
    path = {
        R.AUTHORIZED: [],
        R.IN_TRANSIT: [R.IN_TRANSIT],
        R.RECEIVED: [R.IN_TRANSIT, R.RECEIVED],
        R.INSPECTED: [R.IN_TRANSIT, R.RECEIVED, R.INSPECTED],
        R.LOST_IN_TRANSIT: [R.IN_TRANSIT, R.LOST_IN_TRANSIT],
        R.EXPIRED: [R.EXPIRED],
        R.CANCELED: [R.CANCELED],
    }[status]
    for step in path:
        _MOVES[step](rma)
    assert rma.status is status
    return rma


_MOVES: dict[ReturnStatus, Callable[[ReturnAuthorization], object]] = {
    R.IN_TRANSIT: lambda r: r.mark_in_transit("DHL", "jd 0146 0000", at=AT, actor="portal"),
    R.RECEIVED: lambda r: r.receive({A: 3, B: 1}, {A: "unopened", B: "used"}, at=AT, actor="wh"),
    R.INSPECTED: lambda r: r.inspect(
        {A: LineInspection.accept(), B: LineInspection.accept()}, at=AT, actor="inspector"
    ),
    R.LOST_IN_TRANSIT: lambda r: r.mark_lost(at=AT, actor="carrier"),
    R.EXPIRED: lambda r: r.expire(DEADLINE + timedelta(seconds=1), actor="system"),
    R.CANCELED: lambda r: r.cancel(at=AT, actor="agent:ada", reason="refund canceled"),
}


# -- the transitions table ------------------------------------------------------------


def test_the_expected_table_names_every_state() -> None:
    assert set(EXPECTED) == {str(s) for s in R}
    assert len(LEGAL) == 8
    assert len(ILLEGAL) == 41


def test_the_final_states_are_inspected_lost_expired_and_canceled() -> None:
    assert {str(s) for s in TERMINAL} == {"inspected", "lost_in_transit", "expired", "canceled"}


@pytest.mark.parametrize(("current", "target"), LEGAL, ids=str)
def test_the_table_allows_each_legal_move(current: ReturnStatus, target: ReturnStatus) -> None:
    check_transition(current, target)


@pytest.mark.parametrize(("current", "target"), ILLEGAL, ids=str)
def test_the_table_refuses_each_illegal_move_with_a_409(
    current: ReturnStatus, target: ReturnStatus
) -> None:
    with pytest.raises(IllegalTransition) as caught:
        check_transition(current, target)
    assert caught.value.status == 409
    assert caught.value.extra == {"current": str(current), "target": str(target)}


@pytest.mark.parametrize(("current", "target"), LEGAL, ids=str)
def test_each_legal_move_through_the_aggregate_records_one_event(
    current: ReturnStatus, target: ReturnStatus
) -> None:
    rma = _in(current)
    before = len(rma.events)
    event = _MOVES[target](rma)
    assert rma.status is target
    assert rma.events[before:] == [event]
    assert rma.events[-1].data["from_status"] == str(current)
    assert rma.events[-1].data["to_status"] == str(target)


@pytest.mark.parametrize(
    ("current", "target"), [(a, b) for a, b in ILLEGAL if b is not R.AUTHORIZED], ids=str
)
def test_each_illegal_move_through_the_aggregate_changes_nothing(
    current: ReturnStatus, target: ReturnStatus
) -> None:
    rma = _in(current)
    events = list(rma.events)
    with pytest.raises(IllegalTransition):
        _MOVES[target](rma)
    assert rma.status is current
    assert rma.events == events


def test_an_illegal_move_explains_which_moves_are_allowed() -> None:
    with pytest.raises(IllegalTransition, match="allowed from received: inspected"):
        check_transition(R.RECEIVED, R.EXPIRED)
    with pytest.raises(IllegalTransition, match="allowed from expired: none"):
        check_transition(R.EXPIRED, R.RECEIVED)


def test_authorizing_records_the_lines_and_deadline() -> None:
    rma = _rma()
    assert rma.status is R.AUTHORIZED
    assert rma.authorized_minor == 5500
    [event] = rma.events
    assert (event.type, event.actor, event.at) == ("return.authorized", "agent:ada", AT)
    assert event.data["lines"][0] == {"sku": A, "quantity": 3, "unit_refund_minor": 1000}
    assert event.data["expires_at"] == DEADLINE.isoformat()


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ((), "at least one line"),
        ((ReturnLine(A, 1, 100), ReturnLine(A, 2, 100)), "one return line only: SKU-A"),
    ],
)
def test_a_return_with_no_lines_or_a_doubled_sku_is_refused(
    lines: tuple[ReturnLine, ...], message: str
) -> None:
    with pytest.raises(Invalid, match=message):
        _rma(lines)


@pytest.mark.parametrize(
    ("sku", "quantity", "unit"), [("", 1, 100), (A, 0, 100), (A, 1, -1), (A, True, 100)]
)
def test_a_return_line_needs_a_sku_a_positive_quantity_and_a_non_negative_price(
    sku: str, quantity: int, unit: int
) -> None:
    with pytest.raises(Invalid):
        ReturnLine(sku, quantity, unit)


def test_a_naive_time_is_refused() -> None:
    rma = _rma()
    with pytest.raises(Invalid, match="timezone-aware"):
        rma.mark_in_transit("DHL", "1", at=datetime(2026, 11, 21), actor="x")
    assert rma.status is R.AUTHORIZED


def test_the_tracking_number_is_kept_in_canonical_form() -> None:
    rma = _in(R.IN_TRANSIT)
    assert (rma.carrier, rma.tracking_number) == ("DHL", "JD01460000")


# -- the refund side ------------------------------------------------------------------


def test_receipt_moves_an_awaiting_refund_to_return_received() -> None:
    assert received_moves_refund_to(RefundStatus.AWAITING_RETURN) is RefundStatus.RETURN_RECEIVED


def test_receipt_for_a_refund_not_awaiting_its_return_is_an_illegal_refund_move() -> None:
    with pytest.raises(IllegalTransition, match="a refund cannot go from approved"):
        received_moves_refund_to(RefundStatus.APPROVED)


def test_every_settlement_state_is_legal_from_return_received() -> None:
    allowed = REFUND_TRANSITIONS[RefundStatus.RETURN_RECEIVED]
    assert {RefundStatus.APPROVED, RefundStatus.REJECTED, RefundStatus.PENDING_REVIEW} <= allowed


# -- receipt --------------------------------------------------------------------------


def test_a_partial_receipt_is_recorded_with_short_lines_at_zero() -> None:
    rma = _in(R.IN_TRANSIT)
    event = rma.receive({A: 2}, {A: ItemCondition.USED}, at=AT, actor="wh")
    assert rma.status is R.RECEIVED
    assert (rma.received[A].quantity, rma.received[A].condition) == (2, ItemCondition.USED)
    assert (rma.received[B].quantity, rma.received[B].condition) == (0, None)
    assert event.data["lines"] == [
        {"sku": A, "authorized": 3, "received": 2, "condition": "used"},
        {"sku": B, "authorized": 1, "received": 0, "condition": None},
    ]


def test_goods_dropped_off_without_a_carrier_can_be_received_straight_away() -> None:
    rma = _rma()
    rma.receive({A: 3, B: 1}, {A: "Unopened", B: "unused"}, at=AT, actor="store")
    assert rma.status is R.RECEIVED
    assert rma.tracking_number is None


@pytest.mark.parametrize(
    ("quantities", "conditions", "error", "message"),
    [
        ({A: 4}, {A: "used"}, OverReceipt, "4 of SKU-A received but only 3 authorized"),
        ({B: 2}, {B: "used"}, OverReceipt, "2 of SKU-B received but only 1 authorized"),
        ({"SKU-Z": 1}, {"SKU-Z": "used"}, Invalid, "not authorized for this return: SKU-Z"),
        ({A: 1}, {A: "used", "SKU-Z": "used"}, Invalid, "not authorized for this return"),
        ({A: -1}, {}, Invalid, "0 or more"),
        ({A: 1}, {}, Invalid, "SKU-A: a condition is required"),
        ({A: 1}, {A: "soggy"}, Invalid, "unknown condition 'soggy'"),
    ],
    ids=["over A", "over B", "unknown sku", "unknown sku condition", "negative", "no cond", "bad"],
)
def test_a_bad_receipt_is_refused_and_changes_nothing(
    quantities: dict[str, int],
    conditions: dict[str, str],
    error: type[Exception],
    message: str,
) -> None:
    rma = _in(R.IN_TRANSIT)
    events = list(rma.events)
    with pytest.raises(error, match=message):
        rma.receive(quantities, conditions, at=AT, actor="wh")
    assert rma.status is R.IN_TRANSIT
    assert rma.received == {}
    assert rma.events == events


def test_over_receipt_is_a_422_with_a_stable_code() -> None:
    with pytest.raises(OverReceipt) as caught:
        _in(R.IN_TRANSIT).receive({A: 5}, {A: "used"}, at=AT, actor="wh")
    assert (caught.value.status, caught.value.code) == (422, "over_receipt")
    assert caught.value.extra == {"sku": A, "authorized": 3, "received": 5}


def test_a_second_receipt_for_the_same_return_is_an_illegal_move() -> None:
    rma = _in(R.RECEIVED)
    with pytest.raises(IllegalTransition):
        rma.receive({A: 1}, {A: "used"}, at=AT, actor="wh")


# -- inspection -----------------------------------------------------------------------


def _received(quantities: dict[str, int], currency: str = "EUR") -> ReturnAuthorization:
    rma = _rma(currency=currency)
    rma.receive(quantities, dict.fromkeys(quantities, "used"), at=AT, actor="wh")
    return rma


def test_inspection_resolves_remaining_units_and_records_each_verdict() -> None:
    rma = _received({A: 3, B: 1})
    event = rma.inspect(
        {
            A: [LineInspection.reject("water damage", quantity=1), LineInspection.accept()],
            B: LineInspection.partial(percent=50, reason="scratched"),
        },
        at=AT,
        actor="inspector",
    )
    assert rma.status is R.INSPECTED
    assert [(p.outcome, p.quantity, p.credit_minor) for p in rma.inspection[A]] == [
        ("reject", 1, 0),
        ("accept", 2, 2000),
    ]
    assert [(p.outcome, p.quantity, p.credit_minor) for p in rma.inspection[B]] == [
        ("partial", 1, 1250)
    ]
    assert event.data["parts"][0] == {
        "sku": A,
        "outcome": "reject",
        "quantity": 1,
        "credit_minor": 0,
        "reason": "water damage",
        "percent": None,
    }


@pytest.mark.parametrize(
    ("results", "message"),
    [
        ({A: LineInspection.accept()}, "SKU-B: 1 received but not inspected"),
        ({A: [LineInspection.accept(quantity=2)], B: LineInspection.accept()}, "cover 2 of the 3"),
        (
            {A: LineInspection.accept(quantity=4), B: LineInspection.accept()},
            "cover more than the 3",
        ),
        (
            {A: [LineInspection.accept(quantity=3), LineInspection.reject("x")], B: []},
            "cover more than the 3",
        ),
        (
            {A: [LineInspection.accept(), LineInspection.reject("x")], B: LineInspection.accept()},
            "only one verdict may cover the remaining",
        ),
        (
            {A: LineInspection.accept(), B: LineInspection.partial(credit_minor=2501)},
            "credit of 25.01 EUR is more than the 25.00 EUR",
        ),
        (
            {A: LineInspection.accept(), B: LineInspection.accept(), "SKU-Z": []},
            "not authorized for this return: SKU-Z",
        ),
    ],
    ids=[
        "missing line",
        "units left",
        "too many",
        "too many with rest",
        "two rests",
        "credit",
        "z",
    ],
)
def test_an_incomplete_or_excessive_inspection_is_refused_and_changes_nothing(
    results: dict[str, LineInspection | list[LineInspection]], message: str
) -> None:
    rma = _received({A: 3, B: 1})
    with pytest.raises(Invalid, match=message):
        rma.inspect(results, at=AT, actor="inspector")
    assert rma.status is R.RECEIVED
    assert rma.inspection == {}


def test_inspecting_a_line_that_never_arrived_is_refused() -> None:
    rma = _received({A: 3})
    with pytest.raises(Invalid, match="SKU-B: nothing was received"):
        rma.inspect({A: LineInspection.accept(), B: LineInspection.accept()}, at=AT, actor="i")


@pytest.mark.parametrize(
    "make",
    [
        lambda: LineInspection.reject(""),
        lambda: LineInspection.partial(),
        lambda: LineInspection.partial(percent=10, credit_minor=5),
        lambda: LineInspection.partial(percent=101),
        lambda: LineInspection.partial(percent=-1),
        lambda: LineInspection.partial(percent="NaN"),
        lambda: LineInspection.partial(percent="ten"),
        lambda: LineInspection.partial(credit_minor=-1),
        lambda: LineInspection.accept(quantity=0),
    ],
    ids=[
        "reject without reason",
        "partial without terms",
        "partial with both",
        "over 100%",
        "negative %",
        "nan %",
        "words",
        "negative credit",
        "zero quantity",
    ],
)
def test_a_malformed_verdict_is_refused(make: Callable[[], LineInspection]) -> None:
    with pytest.raises(Invalid):
        make()


# -- expiry and loss ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expires"),
    [
        (DEADLINE - timedelta(days=1), False),
        (DEADLINE, False),
        (DEADLINE + timedelta(microseconds=1), True),
        (DEADLINE + timedelta(days=30), True),
    ],
    ids=["a day before", "at the deadline", "just after", "a month after"],
)
def test_a_return_expires_only_after_its_deadline(now: datetime, expires: bool) -> None:
    rma = _rma()
    if expires:
        event = rma.expire(now, actor="system")
        assert rma.status is R.EXPIRED
        assert (event.type, event.at) == ("return.expired", now)
    else:
        with pytest.raises(NotYetExpired) as caught:
            rma.expire(now, actor="system")
        assert caught.value.status == 409
        assert rma.status is R.AUTHORIZED
        assert len(rma.events) == 1


def test_the_deadline_compares_across_time_zones() -> None:
    from zoneinfo import ZoneInfo

    local = DEADLINE.astimezone(ZoneInfo("Asia/Tokyo"))
    assert not _rma().is_past_deadline(local)
    assert _rma().is_past_deadline(local + timedelta(seconds=1))


def test_a_parcel_in_transit_does_not_expire_even_after_the_deadline() -> None:
    with pytest.raises(IllegalTransition):
        _in(R.IN_TRANSIT).expire(DEADLINE + timedelta(days=1), actor="system")


def test_a_lost_parcel_is_recorded_with_its_carrier_and_tracking() -> None:
    rma = _in(R.IN_TRANSIT)
    event = rma.mark_lost(at=AT, actor="carrier", note="claim 42")
    assert rma.status is R.LOST_IN_TRANSIT
    assert event.data["tracking_number"] == "JD01460000"
    assert event.data["note"] == "claim 42"


def test_a_parcel_found_after_it_was_declared_lost_cannot_be_received() -> None:
    with pytest.raises(IllegalTransition, match="lost_in_transit to received"):
        _in(R.LOST_IN_TRANSIT).receive({A: 1}, {A: "used"}, at=AT, actor="wh")


def test_nothing_can_be_lost_before_it_was_shipped() -> None:
    with pytest.raises(IllegalTransition):
        _rma().mark_lost(at=AT, actor="carrier")


# -- settlement -----------------------------------------------------------------------


def _settled(
    received: dict[str, int],
    results: dict[str, LineInspection | list[LineInspection]],
    *,
    currency: str = "EUR",
    review_partial: bool = False,
) -> Settlement:
    rma = _received(received, currency)
    rma.inspect(results, at=AT, actor="inspector")
    return settle(rma, review_partial=review_partial)


OK = LineInspection.accept()

SETTLEMENT_CASES = [
    # (received, results, review_partial, status, amount, codes)
    ({A: 3, B: 1}, {A: OK, B: OK}, False, "approved", 5500, ("accepted_in_full",)),
    ({A: 3, B: 1}, {A: OK, B: OK}, True, "approved", 5500, ("accepted_in_full",)),
    (
        {A: 3, B: 1},
        {A: LineInspection.reject("opened"), B: LineInspection.reject("worn")},
        False,
        "rejected",
        0,
        ("line_rejected", "nothing_to_refund"),
    ),
    ({}, {}, False, "rejected", 0, ("short_shipment", "nothing_to_refund")),
    (
        {A: 2, B: 1},
        {A: OK, B: OK},
        False,
        "approved",
        4500,
        ("short_shipment",),
    ),
    (
        {A: 2, B: 1},
        {A: OK, B: OK},
        True,
        "pending_review",
        4500,
        ("short_shipment", "held_for_review"),
    ),
    (
        {A: 3, B: 1},
        {A: OK, B: LineInspection.partial(percent=40, reason="scuffed")},
        False,
        "approved",
        4000,
        ("partial_credit",),
    ),
    (
        {A: 3, B: 1},
        {A: OK, B: LineInspection.partial(credit_minor=999)},
        True,
        "pending_review",
        3999,
        ("partial_credit", "held_for_review"),
    ),
    (
        {A: 3, B: 1},
        {A: OK, B: LineInspection.partial(percent=100)},
        False,
        "approved",
        5500,
        ("partial_credit",),
    ),
    (
        {A: 1},
        {A: LineInspection.partial(percent=0, reason="unsellable")},
        False,
        "rejected",
        0,
        ("short_shipment", "partial_credit", "nothing_to_refund"),
    ),
]


@pytest.mark.parametrize(
    ("received", "results", "review_partial", "status", "amount", "codes"),
    SETTLEMENT_CASES,
    ids=[
        "all accepted",
        "all accepted, review flag irrelevant",
        "all rejected",
        "empty parcel",
        "short shipment approved at less",
        "short shipment held for review",
        "partial credit by percent",
        "partial credit by amount held for review",
        "partial 100% is still partial",
        "zero credit is a rejection",
    ],
)
def test_settlement_decides_the_refunds_next_state_and_amount(
    received: dict[str, int],
    results: dict[str, LineInspection | list[LineInspection]],
    review_partial: bool,
    status: str,
    amount: int,
    codes: tuple[str, ...],
) -> None:
    rma = _received(received)
    rma.inspect(results, at=AT, actor="inspector")
    result = settle(rma, review_partial=review_partial)
    assert (result.status, result.amount_minor, result.codes) == (status, amount, codes)
    assert result.authorized_minor == 5500
    assert result.adjustment_minor == amount - 5500


def test_settlement_explains_each_line_in_plain_language() -> None:
    rma = _received({A: 2, B: 1})
    rma.inspect(
        {
            A: [LineInspection.reject("water damage", quantity=1), OK],
            B: LineInspection.partial(percent="12.5", reason="missing manual"),
        },
        at=AT,
        actor="inspector",
    )
    result = settle(rma)
    assert result.reasons == (
        "2 of 3 SKU-A received; 1 rejected: water damage",
        "1 of 1 SKU-B received; 1 credited 12.5% (3.13 EUR): missing manual",
        "refund adjusted from 55.00 EUR to 13.13 EUR",
    )
    assert result.status is RefundStatus.APPROVED
    assert [(s.sku, s.accepted, s.rejected, s.partial, s.short) for s in result.lines] == [
        (A, 1, 1, 0, 1),
        (B, 0, 0, 1, 0),
    ]


def test_a_full_return_says_so() -> None:
    assert _settled({A: 3, B: 1}, {A: OK, B: OK}).reasons == (
        "3 of 3 SKU-A received and accepted",
        "1 of 1 SKU-B received and accepted",
        "everything came back and passed inspection: 55.00 EUR in full",
    )


def test_a_fixed_credit_is_explained_against_what_the_units_were_worth() -> None:
    result = _settled({A: 3, B: 1}, {A: OK, B: LineInspection.partial(credit_minor=999)})
    assert "1 of 1 SKU-B received; 1 credited 9.99 EUR of 25.00 EUR" in result.reasons


@pytest.mark.parametrize("status", [s for s in R if s is not R.INSPECTED], ids=str)
def test_only_an_inspected_return_can_be_settled(status: ReturnStatus) -> None:
    with pytest.raises(Conflict, match="must be inspected first"):
        settle(_in(status))


@pytest.mark.parametrize(
    ("unit", "percent", "credit"),
    [(999, 33, 330), (1000, "33.3", 333), (1, 50, 1), (1, 49, 0), (3, "50", 2), (101, 50, 51)],
)
def test_a_zero_decimal_currency_rounds_percent_credit_half_up_to_whole_yen(
    unit: int, percent: int | str, credit: int
) -> None:
    rma = _rma((ReturnLine(A, 1, unit),), currency="JPY")
    rma.receive({A: 1}, {A: "used"}, at=AT, actor="wh")
    rma.inspect({A: LineInspection.partial(percent=percent)}, at=AT, actor="i")
    result = settle(rma)
    assert result.amount_minor == credit
    assert result.amount.currency == "JPY"


def test_zero_decimal_amounts_are_written_without_decimals() -> None:
    rma = _rma((ReturnLine(A, 3, 1200),), currency="jpy")
    rma.receive({A: 2}, {A: "used"}, at=AT, actor="wh")
    rma.inspect({A: OK}, at=AT, actor="i")
    result = settle(rma)
    assert result.reasons[-1] == "refund adjusted from 3600 JPY to 2400 JPY"
    assert result.amount_minor == 2400


def test_a_three_decimal_currency_keeps_its_three_decimals() -> None:
    rma = _rma((ReturnLine(A, 1, 1005),), currency="BHD")
    rma.receive({A: 1}, {A: "used"}, at=AT, actor="wh")
    rma.inspect({A: LineInspection.partial(percent=50)}, at=AT, actor="i")
    result = settle(rma)
    assert result.amount_minor == 503
    assert result.reasons[-1] == "refund adjusted from 1.005 BHD to 0.503 BHD"


# -- property -------------------------------------------------------------------------


@st.composite
def _inspected_returns(draw: st.DrawFn) -> ReturnAuthorization:
    count = draw(st.integers(1, 4))
    lines = tuple(
        ReturnLine(f"SKU-{i}", draw(st.integers(1, 5)), draw(st.integers(0, 10**9)))
        for i in range(count)
    )
    rma = _rma(lines, currency=draw(st.sampled_from(["EUR", "JPY", "BHD"])))
    received = {line.sku: draw(st.integers(0, line.quantity)) for line in lines}
    rma.receive(received, dict.fromkeys(received, "used"), at=AT, actor="wh")
    results: dict[str, list[LineInspection]] = {}
    for line in lines:
        left = received[line.sku]
        verdicts: list[LineInspection] = []
        while left:
            quantity = draw(st.integers(1, left))
            left -= quantity
            value = quantity * line.unit_refund_minor
            kind = draw(st.sampled_from(["accept", "reject", "percent", "amount"]))
            if kind == "accept":
                verdicts.append(LineInspection.accept(quantity=quantity))
            elif kind == "reject":
                verdicts.append(LineInspection.reject("worn", quantity=quantity))
            elif kind == "percent":
                percent = draw(st.decimals(0, 100, places=3))
                verdicts.append(LineInspection.partial(percent=percent, quantity=quantity))
            else:
                credit = draw(st.integers(0, value))
                verdicts.append(LineInspection.partial(credit_minor=credit, quantity=quantity))
        if verdicts:
            results[line.sku] = verdicts
    rma.inspect(results, at=AT, actor="inspector")
    return rma


@settings(max_examples=300, deadline=None)
@given(rma=_inspected_returns(), review_partial=st.booleans())
def test_the_settled_amount_is_never_negative_nor_above_what_was_authorized(
    rma: ReturnAuthorization, review_partial: bool
) -> None:
    result = settle(rma, review_partial=review_partial)
    assert 0 <= result.amount_minor <= rma.authorized_minor
    assert result.amount_minor == sum(s.credit_minor for s in result.lines)
    assert result.status in REFUND_TRANSITIONS[RefundStatus.RETURN_RECEIVED]
    if result.status is RefundStatus.REJECTED:
        assert result.amount_minor == 0
    if result.status is RefundStatus.PENDING_REVIEW:
        assert review_partial
