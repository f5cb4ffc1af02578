"""Matching rows by composite key, in a form both databases answer from an index."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_
from sqlalchemy.orm import QueryableAttribute

Column = ColumnElement[Any] | QueryableAttribute[Any]


def keys_in(columns: Sequence[Column], keys: Iterable[Sequence[Any]]) -> ColumnElement[bool]:
    """`(columns...) IN keys`, grouped by all columns but the last.

    SQLite plans a row-value IN list as a scan of the whole table, so a batch query naming
    200 (tenant_id, id) pairs would read every row. Grouped, it is
    `tenant_id = ? AND id IN (...)` per tenant (OR-ed when there are several), which an
    index on the same columns serves on SQLite and PostgreSQL alike.
    """
    *lead, last = columns
    grouped: dict[tuple[Any, ...], set[Any]] = {}
    for key in keys:
        grouped.setdefault(tuple(key[:-1]), set()).add(key[-1])
    clauses = [
        and_(
            *(column == value for column, value in zip(lead, prefix, strict=True)),
            last.in_(sorted(values)),
        )
        for prefix, values in sorted(grouped.items())
    ]
    if not clauses:
        return false()
    return clauses[0] if len(clauses) == 1 else or_(*clauses)


def pairs_in(
    first: Column, second: Column, pairs: Iterable[tuple[Any, Any]]
) -> ColumnElement[bool]:
    """`(first, second) IN pairs`, as keys_in does it."""
    return keys_in((first, second), pairs)
