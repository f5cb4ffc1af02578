"""Unit of work: one session, one transaction; commit explicitly or roll back on exit."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from refunddesk.db.engine import writer


class Database:
    """Owns the engine and hands out sessions for reading and for writing."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        # SQLite has one writer at a time. Threads of this process queue here, and wake the
        # moment the writer before them commits, instead of in SQLite's busy handler, which
        # polls with sleeps of up to 100 ms. Other processes still wait in the busy handler.
        self._write_lock: threading.Lock | None = threading.Lock() if self.is_sqlite else None
        self._read = sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)
        self._write = sessionmaker(bind=writer(engine), expire_on_commit=False, autoflush=False)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for queries only; its transaction is rolled back at the end."""
        with self._read() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose transaction commits when the block ends without error."""
        if self._write_lock is None:
            with self._write() as session, session.begin():
                yield session
            return
        # Wait as long as SQLite's own busy timeout would, then fail loudly rather than hang.
        if not self._write_lock.acquire(timeout=30):
            raise TimeoutError("waited 30 s for the SQLite write lock")
        try:
            with self._write() as session, session.begin():
                yield session
        finally:
            self._write_lock.release()

    def dispose(self) -> None:
        self.engine.dispose()
