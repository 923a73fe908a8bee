"""WAL checkpoints off the write path. https://www.sqlite.org/wal.html#ckpt

By default SQLite checkpoints inside the COMMIT that takes the WAL past 1,000 pages, so every so
often one write pays for copying the pages of many (measured on 50-resource transactions: a commit
costs ~1.2 ms at the median and ~11 ms when it checkpoints; 3.0 ms on average). Here the store's
writer never checkpoints (`wal_autocheckpoint=0`); after a write it nudges this thread, which runs a
PASSIVE checkpoint on its own connection once `interval` has passed since the last one. PASSIVE
waits for no reader or writer, and SQLite releases the GIL while copying, so the copy overlaps the
next request's validation and indexing instead of holding up a response.

Readers and writers see the same data either way: checkpointing only moves committed pages from the
WAL into the database file. A checkpoint that other connections' readers keep from finishing is
completed by a later one, as with SQLite's own automatic checkpoints.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Checkpointer:
    """One daemon thread, started by `start`, stopped (after a last checkpoint) by `stop`."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], *, interval: float = 0.2) -> None:
        self._connect = connect
        self._interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Connect here, so that a store which cannot be checkpointed fails to open, loudly."""
        conn = self._connect()
        self._thread = threading.Thread(
            target=self._run, args=(conn,), name="sqlite-checkpointer", daemon=True
        )
        self._thread.start()

    def nudge(self) -> None:
        """A write committed: its pages are in the WAL until the next checkpoint."""
        self._wake.set()

    def stop(self) -> None:
        """End the thread after a last checkpoint (which also covers a write that raced with stop)."""
        if self._thread is None:
            return
        self._stop.set()
        self._wake.set()
        self._thread.join()
        self._thread = None

    def _run(self, conn: sqlite3.Connection) -> None:
        last = 0.0
        try:
            while not self._stop.is_set():
                self._wake.wait()
                # Let a burst of writes gather: checkpointing after each would copy the same index
                # pages again and again and fsync the file each time. `stop` cuts the pause short.
                self._stop.wait(last + self._interval - time.monotonic())
                self._wake.clear()
                self._checkpoint(conn)
                last = time.monotonic()
            self._checkpoint(conn)
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            busy = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[0]
        except sqlite3.Error as error:  # locked or gone: the next write's nudge tries again
            log.warning("WAL checkpoint failed: %s", error)
            return
        if busy:  # another process's checkpoint was running: try again after the pause
            self._wake.set()
