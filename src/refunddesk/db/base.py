"""Declarative base with a naming convention so Alembic diffs are stable on both databases."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, MetaData, Table, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase

from refunddesk.core.clock import as_utc

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always returned timezone-aware UTC, also from SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass an aware UTC datetime")
        value = as_utc(value)
        # SQLite stores text; keep it naive-UTC so lexical order is time order.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        return _sqlite_text  # the same text, in half the time of the two steps chained


def _sqlite_text(value: datetime | None) -> str | None:
    """process_bind_param, then SQLite DATETIME's default storage format, in one step."""
    if value is None:
        return None
    tz = value.tzinfo
    if tz is None:
        raise ValueError("naive datetimes are not stored; pass an aware UTC datetime")
    if tz is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]  # YYYY-MM-DD HH:MM:SS.ffffff


class NativeFloat(TypeDecorator[float]):
    """A float column read back as the driver gives it (both drivers return Python floats).

    Plain Float asks psycopg's numeric processor for the column's type code, which prepared
    statements (db/prepared.py) do not have.
    """

    impl = Float
    cache_ok = True

    def result_processor(self, dialect: Dialect, coltype: object) -> None:
        return None


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime, dict[str, Any]: JSON}


def table_of(model: type[Base]) -> Table:
    """The Core Table behind a mapped class, for Core statements on hot paths."""
    table = model.__table__
    assert isinstance(table, Table)
    return table
