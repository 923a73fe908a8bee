"""WAL checkpoints run on their own thread, after writes, never inside a write's commit."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from fhir_server.storage.port import WriteOp
from fhir_server.storage.sqlite import SqliteStore


def _ops(start: int, count: int) -> list[WriteOp]:
    now = datetime.now(UTC)
    filler = "x" * 3000  # about a page of body each: a few hundred writes pass SQLite's 1,000-page mark
    body = '{{"resourceType":"Patient","id":"p{}","text":"{}"}}'
    return [
        WriteOp("Patient", f"p{n}", 0, now, body.format(n, filler).encode())
        for n in range(start, start + count)
    ]


def _in_main_file(db: Path, tmp_path: Path) -> int:
    """Patients in the database file alone, as if its WAL were lost: what checkpoints have moved."""
    copy = tmp_path / "main-only.sqlite3"
    shutil.copyfile(db, copy)
    conn = sqlite3.connect(copy)
    try:
        return int(conn.execute("SELECT count(*) FROM resource").fetchone()[0])
    except sqlite3.OperationalError:  # the schema itself is still only in the WAL
        return 0
    finally:
        conn.close()


async def test_writes_reach_the_database_file_soon_after_they_stop(tmp_path: Path) -> None:
    db = tmp_path / "fhir.sqlite3"
    store = SqliteStore(db, checkpoint_every=0.05)
    await store.open()
    try:
        for start in range(0, 200, 50):
            await store.write(_ops(start, 50))
        for _ in range(100):
            if _in_main_file(db, tmp_path) == 200:
                break
            await asyncio.sleep(0.05)
        assert _in_main_file(db, tmp_path) == 200
    finally:
        await store.close()


async def test_a_commit_does_not_checkpoint_and_closing_does(tmp_path: Path) -> None:
    """With the checkpointer held off, about 2,000 pages of writes stay in the WAL (SQLite's default would
    have copied them at 1,000 inside some commit); closing the store checkpoints them, even while
    another process's connection is open (SQLite's own checkpoint at the last close cannot run)."""
    db = tmp_path / "fhir.sqlite3"
    store = SqliteStore(db, checkpoint_every=3600)
    await store.open()
    other = sqlite3.connect(db)  # another uvicorn worker's connection, say
    try:
        other.execute("SELECT count(*) FROM resource").fetchone()
        await store.write(_ops(0, 1))
        await asyncio.sleep(0.2)  # the first nudge's checkpoint (nothing held it off yet) is done
        before = _in_main_file(db, tmp_path)
        for start in range(1, 1601, 100):
            await store.write(_ops(start, 100))
        assert db.with_name(db.name + "-wal").stat().st_size > 1000 * 4096
        assert _in_main_file(db, tmp_path) == before
        await store.close()
        assert _in_main_file(db, tmp_path) == 1601
    finally:
        await store.close()
        other.close()
