"""The embedded storage adapter: one SQLite file in WAL mode, no setup.

One logical write (`Store.write`) is one SQLite transaction (BEGIN IMMEDIATE): new versions, the
current-version pointer, compartments and search-index entries commit together or not at all.
The version check happens inside that transaction, so two racing writers based on the same version
cannot both win, whether they are tasks in one process or uvicorn workers sharing the file.

Point reads, and searches while they take under INLINE_SECONDS, run inline on a dedicated read
connection: most cost less than a hop to a thread and back. A longer search is stopped and run again
on one of a small pool of reader threads, each with its own connection (WAL lets readers run beside
the writer). Writes run on one writer thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from fhir_server.errors import ConditionConflict, VersionConflict
from fhir_server.indexing.entries import INDEX_VERSION, IndexEntry
from fhir_server.instants import from_micros, to_micros
from fhir_server.storage import sqlite_index
from fhir_server.storage.cursors import CursorSealer, new_key
from fhir_server.storage.port import (
    HistoryPage,
    HistoryQuery,
    IndexOf,
    StoredResource,
    StoreStats,
    WriteOp,
)
from fhir_server.storage.sqlite_checkpoint import Checkpointer

if TYPE_CHECKING:
    from fhir_server.search.query import SearchPage, SearchQuery

T = TypeVar("T")
_MMAP_REQUEST = 1 << 40  # SQLite lowers it to its own limit
# Reading the store once through the search connection on opening (_prewarm): not past this long,
# and not at all for a file much larger than SQLite maps (2 GB in common builds).
PREWARM_SECONDS = 3.0
PREWARM_MAX_BYTES = 4 << 30
INLINE_SECONDS = 0.002  # a search may run this long on the event loop before a reader thread takes it
BUSY_SECONDS = 30.0  # how long a statement waits for another process's write lock
# Opening waits longer: the first opening after an upgrade builds new indexes (seconds at 1M
# resources, more on a larger store) while every other worker process opens the same file.
OPEN_WAIT_SECONDS = 600.0
REINDEX_BATCH = 1000  # resources reindexed per write transaction
_INDEX_VERSION = "index-version"  # store_meta: the INDEX_VERSION of the stored entries
_IN_LIMIT = 500  # ids bound in one `IN (...)`: well under SQLite's limit on host parameters

CORE_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS resource (
        res INTEGER PRIMARY KEY, type TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,
        last_updated INTEGER NOT NULL, deleted INTEGER NOT NULL, UNIQUE(type, id))""",
    """CREATE TABLE IF NOT EXISTS version (
        vid INTEGER PRIMARY KEY, res INTEGER NOT NULL, type TEXT NOT NULL, version INTEGER NOT NULL,
        last_updated INTEGER NOT NULL, deleted INTEGER NOT NULL, method TEXT NOT NULL, body BLOB,
        UNIQUE(res, version))""",
    "CREATE INDEX IF NOT EXISTS version_type ON version(type, vid)",
    "CREATE INDEX IF NOT EXISTS version_time ON version(last_updated)",
    """CREATE TABLE IF NOT EXISTS compartment (
        res INTEGER NOT NULL, compartment TEXT NOT NULL, PRIMARY KEY(compartment, res)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS compartment_res ON compartment(res)",
    "CREATE TABLE IF NOT EXISTS store_meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)",
    # How many live resources each type has: a search with no criteria (`Observation?_summary=count`)
    # reads it instead of counting a million rows (~90 ms). Kept by every write (_TypeCounts), which
    # stamps it with the newest version row it accounts for; a store whose newest version is another
    # (written by code that does not keep it) is counted instead, and filled again on opening.
    "CREATE TABLE IF NOT EXISTS type_count (type TEXT PRIMARY KEY, live INTEGER NOT NULL) WITHOUT ROWID",
]

_READ_CURRENT = """SELECT r.type, r.id, v.version, v.last_updated, v.deleted, v.method, v.body
    FROM resource r JOIN version v ON v.res = r.res AND v.version = r.version
    WHERE r.type = ? AND r.id = ?"""
_READ_VERSION = """SELECT v.type, r.id, v.version, v.last_updated, v.deleted, v.method, v.body
    FROM resource r JOIN version v ON v.res = r.res
    WHERE r.type = ? AND r.id = ? AND v.version = ?"""


def _row_to_stored(row: tuple[str, str, int, int, int, str, bytes | None]) -> StoredResource:
    rtype, rid, version, updated, deleted, method, body = row
    return StoredResource(rtype, rid, version, from_micros(updated), bool(deleted), body or b"", method)


class SqliteStore:
    """Implements `fhir_server.storage.port.Store` on one SQLite file."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "NORMAL",
        readers: int = 2,
        checkpoint_every: float = 0.2,
        prewarm: bool = True,
    ) -> None:
        # synchronous=NORMAL in WAL mode: a committed write survives a crash of the process (kill -9);
        # FULL adds an fsync per commit and survives power loss too. `checkpoint_every`: seconds
        # between WAL checkpoints while writes go on (see sqlite_checkpoint). `prewarm`: read every
        # table and index once through the event loop's connection on opening (see _prewarm).
        self.path = Path(path)
        self._checkpoint_every = checkpoint_every
        self._prewarm = prewarm
        self._synchronous = synchronous
        self._readers = readers
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._write_pool: ThreadPoolExecutor | None = None
        self._read_pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._pool_connections: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        self._cursors: CursorSealer | None = None
        self._checkpointer: Checkpointer | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_SECONDS)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache per connection
        # Map as much of the file as this SQLite allows (its compile-time cap, 2 GB in common builds):
        # a page read through the map costs no system call, and a large store's searches read many.
        conn.execute(f"PRAGMA mmap_size={_MMAP_REQUEST}")
        conn.execute("PRAGMA temp_store=MEMORY")
        return conn

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = self._connect()
        self._writer.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer thread does it instead
        self._writer.execute(f"PRAGMA busy_timeout={int(OPEN_WAIT_SECONDS * 1000)}")
        with _transaction(self._writer):
            for statement in [*CORE_SCHEMA, *sqlite_index.SCHEMA]:
                self._writer.execute(statement)
            sqlite_index.fill_date_spans(self._writer)
            sqlite_index.fill_word_index(self._writer)
            _fill_type_counts(self._writer)
            _record_index_version(self._writer)
            # The key that seals paging cursors: made once, then the same for every process.
            self._writer.execute("INSERT OR IGNORE INTO store_meta VALUES ('cursor-key', ?)", (new_key(),))
            key = self._writer.execute("SELECT value FROM store_meta WHERE name = 'cursor-key'").fetchone()[0]
        self._writer.execute(f"PRAGMA busy_timeout={int(BUSY_SECONDS * 1000)}")
        self._cursors = CursorSealer(bytes(key))
        checkpointer = Checkpointer(self._connect, interval=self._checkpoint_every)
        try:
            checkpointer.start()  # before the pools: when it cannot connect, only the writer is open
        except BaseException:
            self._writer.close()
            self._writer = None
            raise
        self._checkpointer = checkpointer
        self._reader = self._connect()
        if self._prewarm and self.path.stat().st_size <= PREWARM_MAX_BYTES:
            reader = self._reader
            await asyncio.get_running_loop().run_in_executor(None, lambda: _prewarm(reader, PREWARM_SECONDS))
        self._write_pool = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._read_pool = ThreadPoolExecutor(self._readers, thread_name_prefix="sqlite-reader")

    async def close(self) -> None:
        for pool in (self._write_pool, self._read_pool):
            if pool is not None:
                pool.shutdown(wait=True)
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        for conn in [self._writer, self._reader, *self._pool_connections]:
            if conn is not None:
                conn.close()
        self._writer = self._reader = None
        self._pool_connections = []

    # -- helpers ---------------------------------------------------------------------------------

    def _read_conn(self) -> sqlite3.Connection:
        """This reader thread's own connection."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._pool_lock:
                self._pool_connections.append(conn)
        return conn

    async def _in_reader(self, work: Callable[[sqlite3.Connection], T]) -> T:
        assert self._read_pool is not None, "store is not open"
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read_pool, lambda: work(self._read_conn()))

    @property
    def reader(self) -> sqlite3.Connection:
        assert self._reader is not None, "store is not open"
        return self._reader

    # -- reads -----------------------------------------------------------------------------------

    async def read(self, resource_type: str, id: str) -> StoredResource | None:
        row = self.reader.execute(_READ_CURRENT, (resource_type, id)).fetchone()
        return _row_to_stored(row) if row else None

    async def vread(self, resource_type: str, id: str, version_id: int) -> StoredResource | None:
        row = self.reader.execute(_READ_VERSION, (resource_type, id, version_id)).fetchone()
        return _row_to_stored(row) if row else None

    async def current_versions(self, resource_type: str, ids: Sequence[str]) -> dict[str, int]:
        return {id: version for id, _, version, _ in _resource_rows(self.reader, resource_type, ids)}

    async def history(self, query: HistoryQuery) -> HistoryPage:
        return await self._in_reader(_in_snapshot(lambda conn: _history(conn, query)))

    async def search(self, query: SearchQuery) -> SearchPage:
        cursors = self._cursors
        work = _in_snapshot(lambda conn: sqlite_index.search_sql(conn, query, cursors))
        # Most searches take a fraction of a millisecond: on the event loop's own connection they
        # skip the hop to a reader thread and back (~0.13 ms at the median, ~0.25 ms at p95). One
        # that runs past INLINE_SECONDS is stopped and run again on a reader thread.
        page = _unless_slow(self.reader, work, INLINE_SECONDS)
        return page if page is not None else await self._in_reader(work)

    async def stats(self) -> StoreStats:
        def count(conn: sqlite3.Connection) -> StoreStats:
            live = conn.execute("SELECT count(*) FROM resource WHERE deleted = 0").fetchone()[0]
            versions = conn.execute("SELECT count(*) FROM version").fetchone()[0]
            return StoreStats(resources=live, versions=versions)

        return await self._in_reader(count)

    async def index_version(self) -> int:
        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT value FROM store_meta WHERE name = ?", (_INDEX_VERSION,)).fetchone()
            return int(row[0]) if row else 1

        return await self._in_reader(read)

    async def reindex(self, index_of: IndexOf, *, progress: Callable[[int], None] | None = None) -> int:
        assert self._write_pool is not None and self._writer is not None, "store is not open"
        writer, loop = self._writer, asyncio.get_running_loop()
        done, after = 0, 0
        while True:
            count, after = await loop.run_in_executor(
                self._write_pool, _reindex_batch, writer, index_of, after, REINDEX_BATCH
            )
            if not count:
                break
            done += count
            if progress is not None:
                progress(count)
        await loop.run_in_executor(self._write_pool, _record_index_version, writer, INDEX_VERSION)
        return done

    # -- writes ----------------------------------------------------------------------------------

    async def write(self, ops: Sequence[WriteOp]) -> list[StoredResource]:
        assert self._write_pool is not None and self._writer is not None, "store is not open"
        writer, checkpointer = self._writer, self._checkpointer
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._write_pool, lambda: _write_all(writer, ops))
        finally:
            if checkpointer is not None:
                checkpointer.nudge()


def _prewarm(conn: sqlite3.Connection, seconds: float) -> None:
    """Read every table and index once through `conn`. SQLite maps the file, and a process meets
    each page of the map for the first time through a page fault: without this, a server just
    started pays them on its first searches (a patient's letters at 1M, p95 in the store: ~0.46 ms
    the first time in a process, ~0.2 ms after). It costs ~0.9 s at 1M resources when the OS has
    the file cached. Each count is one step inside SQLite, so the time is checked between them."""
    deadline = time.perf_counter() + seconds
    objects = conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE type IN ('table', 'index')"
    )
    for kind, name, table, sql in objects.fetchall():
        if time.perf_counter() > deadline:
            return
        if (sql or "").startswith("CREATE VIRTUAL TABLE"):
            continue  # full-text tables cannot be scanned; their own (shadow) tables are read
        if kind == "table":
            source = f'"{name}" NOT INDEXED'
        else:  # a partial index serves only a count under its own condition
            where = f" WHERE {sql.split(' WHERE ', 1)[1]}" if sql and " WHERE " in sql else ""
            source = f'"{table}" INDEXED BY "{name}"{where}'
        conn.execute(f"SELECT count(*) FROM {source}").fetchone()


def _unless_slow(
    conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T], seconds: float
) -> T | None:
    """`work(conn)`, or None when its SQL ran past `seconds` and SQLite was made to stop it."""
    deadline = time.perf_counter() + seconds
    stopped = False

    def check() -> int:
        nonlocal stopped
        stopped = time.perf_counter() > deadline
        return int(stopped)

    conn.set_progress_handler(check, 1000)  # every 1,000 virtual-machine steps: ~15-100 us
    try:
        return work(conn)
    except sqlite3.OperationalError:
        if stopped:
            return None
        raise
    finally:
        conn.set_progress_handler(None, 0)
        if conn.in_transaction:  # a read transaction whose COMMIT the handler stopped: end it now
            conn.execute("COMMIT")


def _in_snapshot(work: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
    """`work`'s statements in one read transaction: for a search (sizing, page, a walk and its
    fallback, loads, total, includes) or a history page and its total, a write committed meanwhile
    is seen by all of them or by none."""

    def run(conn: sqlite3.Connection) -> T:
        conn.execute("BEGIN")
        try:
            return work(conn)
        finally:
            if conn.in_transaction:  # (an error SQLite rolled back itself has ended it already)
                conn.execute("COMMIT")

    return run


def _resource_rows(
    conn: sqlite3.Connection, resource_type: str, ids: Sequence[str]
) -> Iterator[tuple[str, int, int, int]]:
    """(id, res, current version, deleted) of each of `ids` ever written, a bounded `IN (...)` at a
    time."""
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), _IN_LIMIT):
        part = unique[start : start + _IN_LIMIT]
        marks = ",".join("?" * len(part))
        yield from conn.execute(
            f"SELECT id, res, version, deleted FROM resource WHERE type = ? AND id IN ({marks})",
            (resource_type, *part),
        )


def _fill_type_counts(conn: sqlite3.Connection) -> None:
    """Count each type's live resources, and find the multi-valued parameters, each unless it
    accounts for the newest version already (a store made before it, or last written by code that
    did not keep it: ~0.2 s and several seconds at 1M)."""
    if not sqlite_index.stamp_current(conn, sqlite_index.TYPE_COUNTS):
        conn.execute("DELETE FROM type_count")
        conn.execute(
            "INSERT INTO type_count SELECT type, count(*) FROM resource WHERE deleted = 0 GROUP BY type"
        )
        sqlite_index.set_stamp(conn, sqlite_index.TYPE_COUNTS)
    if not sqlite_index.stamp_current(conn, sqlite_index.MULTI):
        sqlite_index.fill_multi(conn)
        sqlite_index.set_stamp(conn, sqlite_index.MULTI)


class _TypeCounts:
    """A write's changes to the live count of each type, applied at its end, when the counts were
    current at its start (else they stay as they are, to be counted again on opening); and the
    stamp of ix_multi, moved on when it was current (the write's own rows keep it complete)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.kept = sqlite_index.stamp_current(conn, sqlite_index.TYPE_COUNTS)
        self.multi_kept = sqlite_index.stamp_current(conn, sqlite_index.MULTI)  # rows: add_entry_rows
        self.changes: dict[str, int] = {}

    def change(self, resource_type: str, by: int) -> None:
        self.changes[resource_type] = self.changes.get(resource_type, 0) + by

    def save(self) -> None:
        if self.multi_kept:
            sqlite_index.set_stamp(self.conn, sqlite_index.MULTI)
        if not self.kept:
            return
        self.conn.executemany(
            "INSERT INTO type_count VALUES (?, ?) ON CONFLICT(type) DO UPDATE"
            " SET live = live + excluded.live",
            [(kind, by) for kind, by in self.changes.items() if by],
        )
        sqlite_index.set_stamp(self.conn, sqlite_index.TYPE_COUNTS)


def _record_index_version(conn: sqlite3.Connection, version: int | None = None) -> None:
    """Record `version`; without one, a store opened for the first time takes INDEX_VERSION if it
    holds no resources yet, else 1 (made before versions were recorded)."""
    if version is not None:
        with _transaction(conn):
            conn.execute("INSERT OR REPLACE INTO store_meta VALUES (?, ?)", (_INDEX_VERSION, version))
        return
    empty = conn.execute("SELECT 1 FROM resource LIMIT 1").fetchone() is None
    conn.execute(
        "INSERT OR IGNORE INTO store_meta VALUES (?, ?)", (_INDEX_VERSION, INDEX_VERSION if empty else 1)
    )


def _reindex_batch(conn: sqlite3.Connection, index_of: IndexOf, after: int, size: int) -> tuple[int, int]:
    """Index again the next `size` live resources after `res` = `after`, in one transaction:
    (how many, the last res)."""
    with _transaction(conn):
        rows = conn.execute(
            "SELECT r.res, r.type, r.id, v.body FROM resource r JOIN version v"
            " ON v.res = r.res AND v.version = r.version WHERE r.res > ? AND r.deleted = 0"
            " ORDER BY r.res LIMIT ?",
            (after, size),
        ).fetchall()
        pending: sqlite_index.Rows = {}
        for res, resource_type, id, body in rows:
            entries, compartments = index_of(resource_type, id, body or b"")
            _drop_index(conn, res)
            _add_index(pending, res, resource_type, entries, compartments)
        sqlite_index.insert_rows(conn, pending)
    return len(rows), rows[-1][0] if rows else after


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (so no partial write survives)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


class _Pending:
    """Rows of one write gathered across its ops and inserted table by table at the end: a few
    executemany calls instead of several per resource. A resource written twice in one write
    flushes first, so its second version's clean-up sees the first's rows."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.rows: sqlite_index.Rows = {}
        self.updates: list[tuple[int, int, int, int]] = []
        self.touched: set[int] = set()

    def claim(self, res: int) -> None:
        if res in self.touched:
            self.flush()
        self.touched.add(res)

    def add(self, table: str, row: tuple[object, ...]) -> None:
        self.rows.setdefault(table, []).append(row)

    def flush(self) -> None:
        sqlite_index.insert_rows(self.conn, self.rows)
        self.conn.executemany(
            "UPDATE resource SET version = ?, last_updated = ?, deleted = ? WHERE res = ?", self.updates
        )
        self.rows, self.updates, self.touched = {}, [], set()


class _Resources:
    """The `resource` rows a write touches, read in one query per type up front (the write holds
    the database's write lock, so they cannot change meanwhile); new rows get the next numbers."""

    def __init__(self, conn: sqlite3.Connection, ops: Sequence[WriteOp]) -> None:
        self.known: dict[tuple[str, str], tuple[int, int, int]] = {}
        ids_by_type: dict[str, list[str]] = {}
        for op in ops:
            ids_by_type.setdefault(op.resource_type, []).append(op.id)
        for kind, ids in ids_by_type.items():
            self.known.update(
                ((kind, id), (res, version, deleted))
                for id, res, version, deleted in _resource_rows(conn, kind, ids)
            )
        self.last_res: int = conn.execute("SELECT coalesce(max(res), 0) FROM resource").fetchone()[0]

    def current(self, op: WriteOp) -> tuple[int, int, int] | None:
        """(res, version, deleted) of the resource `op` writes, None when it is new."""
        return self.known.get((op.resource_type, op.id))

    def new_res(self) -> int:
        self.last_res += 1
        return self.last_res

    def set(self, op: WriteOp, res: int, version: int, deleted: int) -> None:
        self.known[(op.resource_type, op.id)] = (res, version, deleted)


def _write_all(conn: sqlite3.Connection, ops: Sequence[WriteOp]) -> list[StoredResource]:
    with _transaction(conn):
        _check_conditions(conn, ops)
        resources = _Resources(conn, ops)
        pending = _Pending(conn)
        counts = _TypeCounts(conn)
        written = [_write_one(op, resources, pending, counts) for op in ops]
        pending.flush()
        counts.save()
        return written


def _check_conditions(conn: sqlite3.Connection, ops: Sequence[WriteOp]) -> None:
    """Conditional creates: their criteria must still match nothing. Checked before any op is
    applied, against what other writes committed (inside BEGIN IMMEDIATE no other writer runs, so
    nothing can come to match before the commit); the write's own ops are judged as the client
    planned them, all against the state before it."""
    for op in ops:
        if op.unless_match is not None and sqlite_index.search_sql(conn, op.unless_match).matches:
            raise ConditionConflict(op.resource_type, op.id, op.expected_version)


def _write_one(op: WriteOp, resources: _Resources, pending: _Pending, counts: _TypeCounts) -> StoredResource:
    row = resources.current(op)
    current = row[1] if row else 0
    if current != op.expected_version:
        raise VersionConflict(op.resource_type, op.id, op.expected_version, current)
    version, updated, deleted = current + 1, to_micros(op.last_updated), int(op.body is None)
    if row is None:
        res = resources.new_res()
        pending.claim(res)
        pending.add("resource", (res, op.resource_type, op.id, version, updated, deleted))
    else:
        res = row[0]
        pending.claim(res)
        pending.updates.append((version, updated, deleted, res))
    resources.set(op, res, version, deleted)
    was_live = row is not None and not row[2]
    if was_live == bool(deleted):  # created or re-created (+1), or deleted (-1)
        counts.change(op.resource_type, -1 if deleted else 1)
    # Column order of `version` (vid first: NULL lets SQLite assign it).
    pending.add("version", (None, res, op.resource_type, version, updated, deleted, op.method, op.body))
    _replace_index(pending.conn, res, op, pending, had_previous=row is not None)
    return StoredResource(
        op.resource_type, op.id, version, op.last_updated, op.body is None, op.body or b"", op.method
    )


def _replace_index(
    conn: sqlite3.Connection, res: int, op: WriteOp, pending: _Pending, *, had_previous: bool
) -> None:
    if had_previous:
        _drop_index(conn, res)
    if op.body is not None:  # a tombstone is found by no search
        _add_index(pending.rows, res, op.resource_type, op.entries, op.compartments)


def _drop_index(conn: sqlite3.Connection, res: int) -> None:
    """Remove a resource's compartments and index entries (at once: a later add sees them gone)."""
    conn.execute("DELETE FROM compartment WHERE res = ?", (res,))
    sqlite_index.delete_entries(conn, res)


def _add_index(
    rows: sqlite_index.Rows,
    res: int,
    resource_type: str,
    entries: Sequence[IndexEntry],
    compartments: Sequence[str],
) -> None:
    """Add a resource's compartments and index entries to the rows to insert."""
    rows.setdefault("compartment", []).extend((res, c) for c in dict.fromkeys(compartments))
    sqlite_index.add_entry_rows(rows, res, resource_type, entries)


def _history(conn: sqlite3.Connection, query: HistoryQuery) -> HistoryPage:
    where, args = _history_filter(query)
    base = f"FROM version v JOIN resource r ON r.res = v.res WHERE {where}"
    total = conn.execute(f"SELECT count(*) {base}", args).fetchone()[0]
    rows = conn.execute(
        f"SELECT v.type, r.id, v.version, v.last_updated, v.deleted, v.method, v.body {base}"
        " ORDER BY v.last_updated DESC, v.vid DESC LIMIT ? OFFSET ?",
        [*args, query.count, query.offset],
    ).fetchall()
    entries = [_row_to_stored(row) for row in rows]
    following = query.offset + len(entries)
    return HistoryPage(entries, total, following if following < total else None)


def _history_filter(query: HistoryQuery) -> tuple[str, list[object]]:
    clauses: list[str] = ["1 = 1"]
    args: list[object] = []
    if query.resource_type is not None:
        clauses.append("v.type = ?")
        args.append(query.resource_type)
    if query.id is not None:
        clauses.append("r.id = ?")
        args.append(query.id)
    if query.type_filter is not None:
        clauses.append(f"v.type IN ({','.join('?' * len(query.type_filter))})")
        args.extend(sorted(query.type_filter))
    if query.since is not None:
        clauses.append("v.last_updated >= ?")
        args.append(to_micros(query.since))
    if query.at is not None:
        # The version current at `at`: the newest version of each resource written at or before it.
        clauses.append(
            "v.version = (SELECT max(w.version) FROM version w WHERE w.res = v.res AND w.last_updated <= ?)"
        )
        args.append(to_micros(query.at))
    return " AND ".join(clauses), args
