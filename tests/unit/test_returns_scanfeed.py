"""The warehouse scan feed: good rows parsed, bad rows reported by line, nothing lost."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest

from refunddesk.returns.domain import (
    ItemCondition,
    ReturnAuthorization,
    ReturnLine,
    ReturnStatus,
)
from refunddesk.returns.scanfeed import (
    BadScanFeed,
    ScanRow,
    match,
    parse_scan_feed,
    receipt_of,
)

AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
C = ItemCondition


def _feed(text: str) -> io.StringIO:
    return io.StringIO(text, newline="")


GOOD = """tracking_number,sku,quantity,condition
1Z999AA10123456784,SKU-A,2,unopened
1Z999AA10123456784,SKU-B,1,used
JD014600000000,SKU-C,3,damaged
1Z999AA10123456784,SKU-A,1,Damaged
"""


def test_good_rows_are_parsed_in_file_order_with_their_line_numbers() -> None:
    feed = parse_scan_feed(_feed(GOOD))
    assert feed.bad_rows == ()
    assert feed.rows == (
        ScanRow(2, "1Z999AA10123456784", "SKU-A", 2, C.UNOPENED),
        ScanRow(3, "1Z999AA10123456784", "SKU-B", 1, C.USED),
        ScanRow(4, "JD014600000000", "SKU-C", 3, C.DAMAGED),
        ScanRow(5, "1Z999AA10123456784", "SKU-A", 1, C.DAMAGED),
    )


def test_rows_are_grouped_by_tracking_number_in_the_order_first_scanned() -> None:
    groups = parse_scan_feed(_feed(GOOD)).by_tracking()
    assert list(groups) == ["1Z999AA10123456784", "JD014600000000"]
    assert [r.line for r in groups["1Z999AA10123456784"]] == [2, 3, 5]


def test_columns_are_found_by_name_in_any_order_and_case_with_extras_ignored() -> None:
    text = "\ufeffCondition, SKU ,Scanned By,Quantity,Tracking_Number\nused,SKU-A,bob,2,ab 12\n"
    feed = parse_scan_feed(_feed(text))
    assert feed.rows == (ScanRow(2, "AB12", "SKU-A", 2, C.USED),)


def test_a_plain_list_of_lines_is_a_feed_too() -> None:
    feed = parse_scan_feed(["tracking_number,sku,quantity,condition", "T1,SKU-A,1,unused"])
    assert feed.rows == (ScanRow(2, "T1", "SKU-A", 1, C.UNUSED),)


BAD_ROWS = [
    ("T1,SKU-A,two,used", "bad quantity 'two'"),
    ("T1,SKU-A,0,used", "bad quantity '0'"),
    ("T1,SKU-A,-1,used", "bad quantity '-1'"),
    ("T1,SKU-A,1.5,used", "bad quantity '1.5'"),
    ("T1,SKU-A,²,used", "bad quantity '²'"),
    ("T1,SKU-A,,used", "missing quantity"),
    (",SKU-A,1,used", "missing tracking_number"),
    ("T1, ,1,used", "missing sku"),
    ("T1,SKU-A,1,", "missing condition"),
    ("T1,SKU-A,1", "missing condition"),
    ("T1,SKU-A,1,soggy", "unknown condition 'soggy'; expected one of unopened, unused"),
    ("T1,SKU-A,1,used,extra", "5 fields but the header has 4"),
]


@pytest.mark.parametrize(("row", "reason"), BAD_ROWS, ids=[r for r, _ in BAD_ROWS])
def test_a_bad_row_is_reported_with_its_line_number_and_reason(row: str, reason: str) -> None:
    feed = parse_scan_feed(_feed(f"tracking_number,sku,quantity,condition\n{row}\n"))
    assert feed.rows == ()
    [bad] = feed.bad_rows
    assert bad.line == 2
    assert reason in bad.reason


def test_every_problem_in_a_row_is_reported_together() -> None:
    feed = parse_scan_feed(_feed("tracking_number,sku,quantity,condition\n,,x,wet\n"))
    assert feed.bad_rows[0].problems == (
        "missing tracking_number",
        "missing sku",
        "bad quantity 'x': expected a whole number of 1 or more",
        "unknown condition 'wet'; expected one of unopened, unused, used, defective, damaged",
    )
    assert feed.bad_rows[0].raw == ("", "", "x", "wet")


def test_bad_rows_do_not_stop_the_good_ones_and_line_numbers_count_blank_and_quoted_lines() -> None:
    text = (
        "tracking_number,sku,quantity,condition\n"  # 1
        "T1,SKU-A,1,used\n"  # 2
        "\n"  # 3: blank, skipped silently
        'T1,"SKU\n-B",x,used\n'  # 4-5: a quoted field spanning two lines, bad quantity
        "T2,SKU-C,2,wet\n"  # 6
        "T2,SKU-D,2,unopened\n"  # 7
    )
    feed = parse_scan_feed(_feed(text))
    assert [(r.line, r.sku) for r in feed.rows] == [(2, "SKU-A"), (7, "SKU-D")]
    assert [(b.line, b.reason.split(" ")[0]) for b in feed.bad_rows] == [(4, "bad"), (6, "unknown")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the scan feed is empty"),
        ("T1,SKU-A,1,used\n", "lacks tracking_number, sku, quantity, condition"),
        ("tracking_number,sku,condition\nT1,SKU-A,used\n", "lacks quantity"),
        ("tracking_number,sku,sku,quantity,condition\n", "names sku more than once"),
    ],
    ids=["empty", "no header", "missing column", "doubled column"],
)
def test_a_feed_without_a_proper_header_is_refused_as_a_whole(text: str, message: str) -> None:
    with pytest.raises(BadScanFeed, match=message) as caught:
        parse_scan_feed(_feed(text))
    assert (caught.value.status, caught.value.code) == (422, "bad_scan_feed")


def test_a_header_only_feed_has_no_rows_and_no_errors() -> None:
    feed = parse_scan_feed(_feed("tracking_number,sku,quantity,condition\n"))
    assert (feed.rows, feed.bad_rows) == ((), ())


# -- matching -------------------------------------------------------------------------


def test_a_receipt_for_an_unknown_tracking_number_is_reported_not_lost() -> None:
    rows = parse_scan_feed(_feed(GOOD)).rows
    matched, unmatched = match(rows, {"1z999aa1 0123456784", "NEVER-SCANNED"})
    assert list(matched) == ["1z999aa1 0123456784"]
    assert [r.line for r in matched["1z999aa1 0123456784"]] == [2, 3, 5]
    assert [(r.line, r.tracking_number) for r in unmatched] == [(4, "JD014600000000")]


def test_every_row_is_either_matched_or_unmatched() -> None:
    rows = parse_scan_feed(_feed(GOOD)).rows
    for known in (set(), {"JD014600000000"}, {"1Z999AA10123456784", "JD014600000000"}):
        matched, unmatched = match(rows, known)
        every = sorted([r.line for g in matched.values() for r in g] + [r.line for r in unmatched])
        assert every == [r.line for r in rows]


def test_nothing_known_means_everything_is_unmatched() -> None:
    rows = parse_scan_feed(_feed(GOOD)).rows
    assert match(rows, []) == ({}, list(rows))


def test_a_parcels_scans_add_up_per_sku_keeping_the_worst_condition() -> None:
    rows = parse_scan_feed(_feed(GOOD)).by_tracking()["1Z999AA10123456784"]
    receipt = receipt_of("1Z999AA10123456784", rows)
    assert dict(receipt.quantities) == {"SKU-A": 3, "SKU-B": 1}
    assert dict(receipt.conditions) == {"SKU-A": C.DAMAGED, "SKU-B": C.USED}
    assert receipt.lines == (2, 3, 5)


def test_a_matched_parcel_is_received_by_its_return() -> None:
    # given a return in transit with a tracking number typed in lower case with spaces
    rma = ReturnAuthorization.authorize(
        refund_id="R" * 26,
        currency="EUR",
        lines=(ReturnLine("SKU-A", 3, 1000), ReturnLine("SKU-B", 2, 500)),
        expires_at=AT + timedelta(days=14),
        at=AT,
        actor="agent:ada",
    )
    rma.mark_in_transit("UPS", "1z999aa1 0123456784", at=AT, actor="portal")
    assert rma.tracking_number is not None
    # when the warehouse feed is matched against it
    rows = parse_scan_feed(_feed(GOOD)).rows
    matched, unmatched = match(rows, [rma.tracking_number])
    receipt = receipt_of(rma.tracking_number, matched[rma.tracking_number])
    rma.receive(receipt.quantities, receipt.conditions, at=AT, actor="warehouse")
    # then the return is received short of one SKU-B, and the other parcel is reported
    assert rma.status is ReturnStatus.RECEIVED
    assert {s: r.quantity for s, r in rma.received.items()} == {"SKU-A": 3, "SKU-B": 1}
    assert [r.tracking_number for r in unmatched] == ["JD014600000000"]
