"""One SQLite connection per adapter: WAL, a lock for threads, explicit transactions, errors as StoreError."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from mcpdo.errors import StoreError

SqlFunction = tuple[str, int, Callable[..., Any]]
Migration = tuple[str, str, str]
"""A column added after its table first shipped: (table, column, definition). `CREATE TABLE IF NOT EXISTS`
leaves an existing file's tables as they were, so each is added when missing; its DEFAULT fills old rows."""

# The page cache of logs that are appended to and read rarely (audit, runs): appends touch a few pages.
APPEND_LOG_CACHE_KIB = 256


class SqliteDatabase:
    """A connection to the state database guarded by a lock; writes run in `BEGIN IMMEDIATE` transactions.

    `what` names the store in error messages ("entity store", "delivery store", ...), which never carry data.
    `cache_kib` caps the connection's page cache (SQLite's default is 2 MiB per connection).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        what: str,
        schema: str,
        functions: Sequence[SqlFunction] = (),
        migrations: Sequence[Migration] = (),
        connection: sqlite3.Connection | None = None,
        cache_kib: int | None = None,
    ) -> None:
        self.what = what
        self._lock = threading.RLock()
        try:
            self._conn = connection or sqlite3.connect(os.fspath(path), check_same_thread=False)
            self._conn.isolation_level = None  # transactions are explicit
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=5000")
            if cache_kib is not None:
                self._conn.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
            for name, arity, function in functions:
                self._conn.create_function(name, arity, function, deterministic=True)
            self._conn.executescript(schema)
        except sqlite3.Error as exc:
            raise StoreError(f"Cannot open the {what} at {os.fspath(path)!r}: {exc}") from exc
        if migrations:
            self._migrate(migrations)

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        with self.transaction(immediate=False) as conn:
            missing = [m for m in migrations if not _has_column(conn, m[0], m[1])]
        if not missing:
            return
        # Several adapters (or processes) may open an old file at once: look again under the write lock.
        with self.transaction() as conn:
            for table, column, definition in missing:
                if not _has_column(conn, table, column):
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")

    @contextmanager
    def transaction(self, immediate: bool = True) -> Iterator[sqlite3.Connection]:
        """A transaction: committed on success, rolled back on any error (SQLite errors become StoreError)."""
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            except sqlite3.Error as exc:
                raise StoreError(f"The {self.what} is unavailable: {exc}") from exc
            try:
                yield conn
            except sqlite3.Error as exc:
                _rollback(conn)
                raise StoreError(f"The {self.what} operation failed: {exc}") from exc
            except BaseException:
                _rollback(conn)
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(conn)
                raise StoreError(f"The {self.what} commit failed: {exc}") from exc

    def close(self) -> None:
        """Release the connection."""
        with self._lock:
            self._conn.close()


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with suppress(sqlite3.Error):  # the original error is the one worth reporting
            conn.execute("ROLLBACK")


def _has_column(conn: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in conn.execute(f"PRAGMA table_info({table})"))
