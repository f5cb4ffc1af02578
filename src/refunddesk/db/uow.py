"""Unit of work: sessions for reading, and write transactions that are durable when they end.

On PostgreSQL each ``write()`` block is its own transaction; many run at once.

On SQLite there is one writer at a time and, with ``synchronous=FULL``, every commit waits
for the disk (a few hundred fsyncs a second on ordinary disks). So writers of this process
share transactions (group commit): each ``write()`` block runs alone, in its own SAVEPOINT
of the open transaction, one after another; the block that finds nobody else waiting
commits the transaction for all of them. A block's changes are rolled back alone if it
fails; ``write()`` returns only after the commit that made its changes durable, so nothing
is acknowledged before it is on disk. Threads wait on a lock that wakes them the moment the
writer before them is done, not in SQLite's busy handler, which polls with sleeps of up to
100 ms. (Other processes still meet this one in the busy handler.)
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator
from contextlib import AbstractContextManager, contextmanager

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from refunddesk.db.engine import writer
from refunddesk.db.prepared import Driver, reading

LOCK_TIMEOUT_SECONDS = 30.0
MAX_GROUP = 128  # write blocks per shared SQLite transaction, at most


class _Group:
    """One SQLite transaction shared by consecutive write blocks."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.members = 0
        self.done = threading.Event()
        self.error: BaseException | None = None


class Database:
    """Owns the engine and hands out sessions for reading and for writing."""

    def __init__(self, engine: Engine, *, max_group: int = MAX_GROUP) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self.max_group = max_group
        self._read = sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)
        self._write = sessionmaker(bind=writer(engine), expire_on_commit=False, autoflush=False)
        self._mutex = threading.Lock()  # SQLite: the one write block running now
        self._count = threading.Lock()
        self._waiting = 0  # SQLite: write blocks queued for the mutex
        self._group: _Group | None = None

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for queries only; its transaction is rolled back at the end."""
        with self._read() as session:
            yield session

    def reading(self) -> AbstractContextManager[Driver]:
        """A driver connection for prepared queries only (hot read paths), in one snapshot."""
        return reading(self.engine)

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose changes are committed, durably, when the block ends without error."""
        if not self.is_sqlite:
            with self._write() as session, session.begin():
                yield session
            return
        group = yield from self._grouped_write()
        if not group.done.wait(LOCK_TIMEOUT_SECONDS * 2):
            raise TimeoutError("the shared SQLite transaction did not commit in time")
        if group.error is not None:
            raise group.error

    def _grouped_write(self) -> Generator[Session, None, _Group]:
        with self._count:
            self._waiting += 1
        acquired = self._mutex.acquire(timeout=LOCK_TIMEOUT_SECONDS)
        with self._count:
            self._waiting -= 1
        if not acquired:
            raise TimeoutError(f"waited {LOCK_TIMEOUT_SECONDS:.0f} s for the SQLite write lock")
        group = self._group
        if group is None:
            session = self._write()
            session.begin()
            group = self._group = _Group(session)
        try:
            savepoint = group.session.begin_nested()
            try:
                yield group.session
                savepoint.commit()
            except BaseException:
                if savepoint.is_active:
                    savepoint.rollback()
                raise
            group.members += 1
        finally:
            with self._count:
                last = self._waiting == 0
            if last or group.members >= self.max_group:
                self._finish(group)
            self._mutex.release()
        return group

    def _finish(self, group: _Group) -> None:
        """Commit the shared transaction (called with the mutex held) and wake its members."""
        self._group = None
        try:
            if group.members:
                group.session.commit()
            else:
                group.session.rollback()
        except BaseException as exc:
            group.error = exc
            group.session.rollback()
        finally:
            group.session.close()
            group.done.set()

    def refresh_statistics(self, *, postgresql: bool = False) -> None:
        """Gather the query planner's statistics (ANALYZE; sampled on SQLite).

        Without them SQLite guesses that `tenant_id = ?` matches about ten rows, so for
        `tenant_id = ? AND id IN (...)` it walks a tenant-leading index through the tenant's
        every row rather than looking the ids up by primary key: fine on a fresh database,
        tens of milliseconds a batch once a tenant has tens of thousands of refunds.
        PostgreSQL's autovacuum keeps its own statistics, so the worker's periodic call
        leaves it alone; postgresql=True analyzes it too (after a bulk load).
        """
        if self.is_sqlite or postgresql:
            with self.write() as session:
                session.execute(text("ANALYZE"))

    def dispose(self) -> None:
        self.engine.dispose()
