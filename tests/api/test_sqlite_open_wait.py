"""Opening the store waits for another process that holds the write lock (say, building the indexes
a new version adds, at the first start after an upgrade) longer than a statement normally waits."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from fhir_server.storage import sqlite as sqlite_module
from fhir_server.storage.sqlite import SqliteStore


async def test_opening_outwaits_another_process_holding_the_write_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "shared.sqlite3"
    made = SqliteStore(db)
    await made.open()
    await made.close()
    monkeypatch.setattr(sqlite_module, "BUSY_SECONDS", 0.05)
    monkeypatch.setattr(sqlite_module, "OPEN_WAIT_SECONDS", 10.0)

    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another worker, upgrading the store
    release = threading.Timer(0.5, lambda: other.execute("COMMIT"))
    release.start()
    store = SqliteStore(db)
    started = time.perf_counter()
    try:
        await store.open()
        waited = time.perf_counter() - started
        writer = store._writer
        assert writer is not None
        after_opening = writer.execute("PRAGMA busy_timeout").fetchone()[0]
    finally:
        release.join()
        await store.close()
        other.close()
    assert waited >= 0.4  # it waited for the other process, far past BUSY_SECONDS
    assert after_opening == 50  # and statements after opening wait as long as ever
