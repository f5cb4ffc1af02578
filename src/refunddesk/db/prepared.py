"""Core statements compiled once per dialect and run on the driver's own connection.

SQLAlchemy spends 100-150 µs around every statement it executes (cache lookup, execution
context, result wrapping), several times what SQLite needs to run one of ours. The hot paths
(refund intake, status reads) run a handful each, so they use `Prepared` statements: defined
once as Core, like every other query, compiled once per dialect by SQLAlchemy itself, and
run with SQLAlchemy's own bind and result processors for each column type. Values are
therefore stored and read back exactly as the ORM stores and reads them (tests pin this);
only the per-call machinery is skipped.

A `Driver` is the driver's connection of a session (inside its transaction) or of a pooled
connection checked out for a read, with the dialect that compiles for it. Errors are raised
as SQLAlchemy's exception classes (IntegrityError, OperationalError, ...), as from a session.
"""

from __future__ import annotations

import threading
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import Dialect
from sqlalchemy.engine.interfaces import DBAPIConnection, DBAPICursor
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import SelectBase

Processor = Callable[[Any], Any]
_REQUIRED = object()
# Rows come back as named tuples (attribute access, like SQLAlchemy's rows); a typed alias,
# since the fields are only known once a statement is compiled.
_row_type: Callable[..., type[tuple[Any, ...]]] = partial(namedtuple, "Row", rename=True)


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A statement as one dialect runs it: SQL text, how to bind, how to read rows."""

    sql: str
    positional: bool
    binds: tuple[tuple[str, Any, Processor | None], ...]  # name, default, processor
    results: tuple[tuple[int, Processor], ...]  # column index, processor
    row: type[tuple[Any, ...]] | None

    def params(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        out = []
        for name, default, process in self.binds:
            value = values[name] if default is _REQUIRED else values.get(name, default)
            # Also for None: SQLAlchemy's JSON stores None as JSON null, not SQL NULL.
            out.append(value if process is None else process(value))
        if self.positional:
            return out
        return {name: value for (name, _, _), value in zip(self.binds, out, strict=True)}

    def processed(self, raw: Sequence[Any]) -> tuple[Any, ...]:
        values = list(raw)
        for index, process in self.results:
            values[index] = process(values[index])
        return tuple(values)

    def make_row(self, raw: Sequence[Any]) -> Any:
        assert self.row is not None, "not a statement that returns rows"
        if not self.results:
            return self.row._make(raw)  # type: ignore[attr-defined]
        values = list(raw)
        for index, process in self.results:
            values[index] = process(values[index])
        return self.row._make(values)  # type: ignore[attr-defined]


class Prepared:
    """A Core statement, compiled once per dialect, with its bind and result processing.

    keys: for an INSERT, the columns it sets (as executing it with a dict of them would).
    Statements with expanding (IN-list) or post-compile parameters are refused: their SQL
    changes with their values.
    """

    def __init__(self, statement: ClauseElement, *, keys: Sequence[str] | None = None) -> None:
        self.statement = statement
        self.keys = list(keys) if keys is not None else None
        self._compiled: dict[tuple[str, str], _Compiled] = {}
        self._lock = threading.Lock()

    def compiled(self, dialect: Dialect) -> _Compiled:
        key = (dialect.name, dialect.driver)
        found = self._compiled.get(key)
        if found is None:
            with self._lock:
                found = self._compiled.get(key) or self._compile(dialect)
                self._compiled[key] = found
        return found

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect, column_keys=self.keys)
        assert isinstance(compiled, SQLCompiler)
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("a prepared statement cannot have expanding or post-compile binds")
        by_name = {name: bind for bind, name in compiled.bind_names.items()}
        order = compiled.positiontup if compiled.positional else list(by_name)
        assert order is not None
        binds = []
        for name in order:
            bind = by_name[name]
            default = _REQUIRED if bind.required else bind.effective_value
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            binds.append((name, default, process))
        row: type[tuple[Any, ...]] | None = None
        results: list[tuple[int, Processor]] = []
        if isinstance(self.statement, SelectBase):
            columns = list(self.statement.selected_columns)
            row = _row_type([str(c.key) for c in columns])
            for index, column in enumerate(columns):
                process = column.type.dialect_impl(dialect).result_processor(dialect, None)
                if process is not None:
                    results.append((index, process))
        return _Compiled(compiled.string, compiled.positional, tuple(binds), tuple(results), row)


_NO_PARAMS: Mapping[str, Any] = {}


@dataclass(frozen=True, slots=True)
class Driver:
    """The driver's connection (in whatever transaction it is in) and the dialect it speaks."""

    dialect: Dialect
    connection: DBAPIConnection

    @classmethod
    def of(cls, bind: Session | Connection) -> Driver:
        """The driver connection under a session's (or Core connection's) transaction."""
        conn = bind.connection() if isinstance(bind, Session) else bind
        return cls(conn.dialect, conn.connection.dbapi_connection)  # type: ignore[arg-type]

    def first(self, stmt: Prepared, params: Mapping[str, Any] = _NO_PARAMS) -> Any | None:
        """The first row (a named tuple), or None."""
        compiled = stmt.compiled(self.dialect)
        with self._cursor(compiled, params) as cursor:
            raw = cursor.fetchone()
        return None if raw is None else compiled.make_row(raw)

    def all(self, stmt: Prepared, params: Mapping[str, Any] = _NO_PARAMS) -> list[Any]:
        """Every row, as named tuples."""
        compiled = stmt.compiled(self.dialect)
        with self._cursor(compiled, params) as cursor:
            raws = cursor.fetchall()
        return [compiled.make_row(raw) for raw in raws]

    def tuples(self, stmt: Prepared, params: Mapping[str, Any] = _NO_PARAMS) -> list[Any]:
        """Every row as a plain tuple: for reads of many rows, where names cost."""
        compiled = stmt.compiled(self.dialect)
        with self._cursor(compiled, params) as cursor:
            raws = cursor.fetchall()
        if not compiled.results:
            return list(raws)
        return [compiled.processed(raw) for raw in raws]

    def execute(self, stmt: Prepared, params: Mapping[str, Any] = _NO_PARAMS) -> int:
        """Run a statement that returns no rows; the number of rows it changed."""
        compiled = stmt.compiled(self.dialect)
        with self._cursor(compiled, params) as cursor:
            return int(cursor.rowcount)

    def execute_many(self, stmt: Prepared, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run a statement once per parameter set (bulk INSERT)."""
        if not rows:
            return
        compiled = stmt.compiled(self.dialect)
        params: Any = [compiled.params(row) for row in rows]
        cursor = self.connection.cursor()
        try:
            cursor.executemany(compiled.sql, params)
        except self.dialect.loaded_dbapi.Error as exc:
            raise self._wrap(compiled.sql, params, exc) from exc
        finally:
            cursor.close()

    @contextmanager
    def _cursor(self, compiled: _Compiled, values: Mapping[str, Any]) -> Iterator[DBAPICursor]:
        params = compiled.params(values)
        cursor = self.connection.cursor()
        try:
            cursor.execute(compiled.sql, params)
            yield cursor
        except self.dialect.loaded_dbapi.Error as exc:
            raise self._wrap(compiled.sql, params, exc) from exc
        finally:
            cursor.close()

    def _wrap(self, sql: str, params: Any, exc: Exception) -> BaseException:
        return DBAPIError.instance(
            sql, params, exc, self.dialect.loaded_dbapi.Error, dialect=self.dialect
        )


@contextmanager
def reading(engine: Engine) -> Iterator[Driver]:
    """A pooled driver connection for a few prepared queries in one read transaction."""
    pooled = engine.raw_connection()
    try:
        dbapi = pooled.dbapi_connection
        assert dbapi is not None
        if engine.dialect.name == "sqlite":
            # The connection is in autocommit mode (db/engine.py): one snapshot for all the
            # queries needs a transaction. PostgreSQL drivers open one on the first query.
            cursor = dbapi.cursor()
            cursor.execute("BEGIN")
            cursor.close()
        yield Driver(engine.dialect, dbapi)
    finally:
        pooled.close()  # back to the pool, which rolls the read transaction back
