"""The warehouse scan feed: a CSV of tracking_number, sku, quantity, condition.

Parsing never stops at a bad row: each one is reported with its line number and why, and
the good rows go on. Matching never drops a receipt: a scan for a tracking number no open
return knows comes back in ``unmatched`` for someone to look at.
"""

from __future__ import annotations

import csv
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from refunddesk.core.errors import Invalid
from refunddesk.returns.domain import (
    ItemCondition,
    normalize_tracking_number,
    parse_condition,
    worst_condition,
)

COLUMNS = ("tracking_number", "sku", "quantity", "condition")


class BadScanFeed(Invalid):
    """The feed as a whole cannot be read (no header, or a column is missing)."""

    code = "bad_scan_feed"
    title = "The scan feed cannot be read"


@dataclass(frozen=True, slots=True)
class ScanRow:
    """One valid scan; ``line`` is the row's first line in the file (the header is line 1)."""

    line: int
    tracking_number: str
    sku: str
    quantity: int
    condition: ItemCondition


@dataclass(frozen=True, slots=True)
class BadRow:
    """A row that was skipped, with every problem found in it."""

    line: int
    problems: tuple[str, ...]
    raw: tuple[str, ...]

    @property
    def reason(self) -> str:
        return "; ".join(self.problems)


@dataclass(frozen=True, slots=True)
class ScanFeed:
    """A parsed feed: the good rows in file order and the bad rows with their reasons."""

    rows: tuple[ScanRow, ...]
    bad_rows: tuple[BadRow, ...]

    def by_tracking(self) -> dict[str, tuple[ScanRow, ...]]:
        return group_by_tracking(self.rows)


@dataclass(frozen=True, slots=True)
class Receipt:
    """A parcel's scans added up: units per SKU and, per SKU, the worst condition seen."""

    tracking_number: str
    quantities: Mapping[str, int]
    conditions: Mapping[str, ItemCondition]
    lines: tuple[int, ...] = field(default=())


def _quantity(text: str) -> int | str:
    """The quantity, or why it is not one."""
    cleaned = text.strip()
    if not cleaned:
        return "missing quantity"
    if not cleaned.isascii() or not cleaned.isdigit():
        return f"bad quantity {text!r}: expected a whole number of 1 or more"
    value = int(cleaned)
    if value < 1:
        return f"bad quantity {text!r}: expected a whole number of 1 or more"
    return value


def parse_scan_feed(source: Iterable[str]) -> ScanFeed:
    """Read a scan feed (an open text file or lines); raise BadScanFeed if it has no header.

    Columns are found by name (any order, any case; extra columns are ignored). Blank
    lines are skipped. Open files with ``newline=""`` so quoted fields keep their breaks.
    """
    reader = csv.reader(source)
    header = next(reader, None)
    if header is None:
        raise BadScanFeed("the scan feed is empty; it needs a header row: " + ",".join(COLUMNS))
    names = [h.strip().lower().lstrip("\ufeff") for h in header]
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise BadScanFeed(
            f"the header (line 1) lacks {', '.join(missing)}; "
            f"expected columns: {','.join(COLUMNS)}",
            missing=missing,
        )
    doubled = sorted({n for n in names if n in COLUMNS and names.count(n) > 1})
    if doubled:
        raise BadScanFeed(f"the header (line 1) names {', '.join(doubled)} more than once")
    at = {c: names.index(c) for c in COLUMNS}

    rows: list[ScanRow] = []
    bad: list[BadRow] = []
    ended = reader.line_num
    for record in reader:
        line, ended = ended + 1, reader.line_num
        if not any(cell.strip() for cell in record):
            continue
        problems: list[str] = []
        if len(record) > len(names):
            problems.append(f"{len(record)} fields but the header has {len(names)}")
        cells = {c: record[i] if i < len(record) else "" for c, i in at.items()}
        tracking = "".join(cells["tracking_number"].split()).upper()
        if not tracking:
            problems.append("missing tracking_number")
        sku = cells["sku"].strip()
        if not sku:
            problems.append("missing sku")
        quantity = _quantity(cells["quantity"])
        if isinstance(quantity, str):
            problems.append(quantity)
        condition: ItemCondition | None = None
        if not cells["condition"].strip():
            problems.append("missing condition")
        else:
            try:
                condition = parse_condition(cells["condition"])
            except Invalid as exc:
                problems.append(exc.detail)
        if problems or condition is None or isinstance(quantity, str):
            bad.append(BadRow(line, tuple(problems), tuple(record)))
            continue
        rows.append(ScanRow(line, tracking, sku, quantity, condition))
    return ScanFeed(tuple(rows), tuple(bad))


def group_by_tracking(rows: Iterable[ScanRow]) -> dict[str, tuple[ScanRow, ...]]:
    """The rows of each parcel, parcels in the order first scanned."""
    groups: dict[str, list[ScanRow]] = {}
    for row in rows:
        groups.setdefault(row.tracking_number, []).append(row)
    return {t: tuple(g) for t, g in groups.items()}


def match(
    rows: Iterable[ScanRow], known_tracking_numbers: Collection[str]
) -> tuple[dict[str, tuple[ScanRow, ...]], list[ScanRow]]:
    """Split scans into those of known parcels (grouped by tracking) and unmatched ones.

    Every row ends up in exactly one of the two; tracking numbers compare in canonical
    form, and the groups are keyed by the caller's own spelling of the known number.
    """
    known = {normalize_tracking_number(t): t for t in known_tracking_numbers if t.strip()}
    matched: dict[str, list[ScanRow]] = {}
    unmatched: list[ScanRow] = []
    for row in rows:
        key = known.get(normalize_tracking_number(row.tracking_number))
        if key is None:
            unmatched.append(row)
        else:
            matched.setdefault(key, []).append(row)
    return {t: tuple(g) for t, g in matched.items()}, unmatched


def receipt_of(tracking_number: str, rows: Iterable[ScanRow]) -> Receipt:
    """Add up one parcel's scans into what ``ReturnAuthorization.receive`` takes.

    A SKU scanned several times sums its quantities and keeps its worst condition, so the
    inspector looks for the worst; the individual rows stay in the feed for the record.
    """
    quantities: dict[str, int] = {}
    seen: dict[str, list[ItemCondition]] = {}
    lines: list[int] = []
    for row in rows:
        quantities[row.sku] = quantities.get(row.sku, 0) + row.quantity
        seen.setdefault(row.sku, []).append(row.condition)
        lines.append(row.line)
    conditions = {sku: worst_condition(found) for sku, found in seen.items()}
    return Receipt(tracking_number, quantities, conditions, tuple(lines))
