"""Engines for SQLite (embedded) and PostgreSQL (production), made by bootstrap, never at import."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.pool import ConnectionPoolEntry

from refunddesk.settings import Settings

WRITE_OPTION = "refunddesk_write"
SQLITE_MIN_POOL = 64


ANALYSIS_LIMIT = 1000


def _json_text(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


# JSON columns (events' data, SLA clocks, policies' findings) through orjson: several values
# per refund on every hot path, at a fifth of the json module's cost. Keys that are not
# strings are written as strings, as json.dumps writes them.
JSON_CODEC: dict[str, Any] = {"json_serializer": _json_text, "json_deserializer": orjson.loads}


def make_engine(settings: Settings) -> Engine:
    """Create the engine for settings.database_url with the pragmas and hooks we rely on."""
    url = settings.database_url
    if url.startswith("sqlite"):
        return _sqlite_engine(url, settings)
    return create_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=True,
        **JSON_CODEC,
    )


def _sqlite_engine(url: str, settings: Settings) -> Engine:
    # A connection is a file handle, but a new one parses the schema on its first statement:
    # keep one for every thread that may hold one (request threads, the worker, payout
    # threads) so that none is opened and closed per request under load.
    size = max(settings.db_pool_size, SQLITE_MIN_POOL)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=size,
        max_overflow=size,
        **JSON_CODEC,
    )
    synchronous = settings.sqlite_synchronous

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (see "begin" below).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        # ANALYZE samples this many rows per index: statistics in milliseconds at any size.
        cursor.execute(f"PRAGMA analysis_limit={ANALYSIS_LIMIT}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take SQLite's write lock up front (BEGIN IMMEDIATE): a read-then-write
        # transaction can then never fail on lock upgrade, and the refund budget check and
        # its insert are serialised, as SELECT ... FOR UPDATE does on PostgreSQL.
        options: dict[str, Any] = dict(conn.get_execution_options())
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get(WRITE_OPTION) else "BEGIN")

    return engine


def writer(engine: Engine) -> Engine:
    """The same engine (same pool), marked so its transactions take the write lock on SQLite."""
    return engine.execution_options(**{WRITE_OPTION: True})
