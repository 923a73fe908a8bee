"""Count the SQLite virtual-machine steps a piece of work takes on a connection: a measure of cost
that does not depend on the machine's speed or load, for tests of how cost grows."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def counting_steps(conn: sqlite3.Connection, every: int = 100) -> Iterator[list[int]]:
    """Yields a one-item list holding the number of `every`-instruction steps taken so far."""
    counted = [0]

    def step() -> int:
        counted[0] += 1
        return 0

    conn.set_progress_handler(step, every)
    try:
        yield counted
    finally:
        conn.set_progress_handler(None, every)
