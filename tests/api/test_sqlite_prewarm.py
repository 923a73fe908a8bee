"""Opening a store reads every table and index once through the connection searches use first."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from fhir_server.storage.sqlite import SqliteStore


@pytest.mark.parametrize("prewarm", [True, False])
async def test_opening_reads_every_table_and_index_unless_told_not_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prewarm: bool
) -> None:
    db = tmp_path / "fhir.sqlite3"
    first = SqliteStore(db)
    await first.open()  # make the schema
    await first.close()
    expected = {
        name
        for (name,) in sqlite3.connect(db).execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'index')"
        )
    }
    read: list[str] = []
    connect = SqliteStore._connect

    def traced(store: SqliteStore) -> sqlite3.Connection:
        conn = connect(store)
        conn.set_trace_callback(read.append)
        return conn

    monkeypatch.setattr(SqliteStore, "_connect", traced)
    store = SqliteStore(db, prewarm=prewarm)
    await store.open()
    try:
        counted = " ".join(s for s in read if s.startswith("SELECT count(*) FROM"))
        missed = {name for name in expected if f'"{name}"' not in counted}
        assert missed == (set() if prewarm else expected)
        if prewarm:  # a partial index is counted under its own condition, or SQLite would refuse it
            assert 'INDEXED BY "ix_ref_target" WHERE target_id IS NOT NULL' in counted
    finally:
        await store.close()


async def test_a_prewarm_past_its_time_stops_and_the_store_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no time allowed, opening reads nothing ahead, and the store works as usual."""
    from datetime import UTC, datetime

    from fhir_server.storage import sqlite as sqlite_module
    from fhir_server.storage.port import WriteOp

    db = tmp_path / "fhir.sqlite3"
    first = SqliteStore(db)
    await first.open()
    now = datetime.now(UTC)
    body = '{{"resourceType":"Patient","id":"p{}"}}'
    await first.write([WriteOp("Patient", f"p{n}", 0, now, body.format(n).encode()) for n in range(2000)])
    await first.close()
    monkeypatch.setattr(sqlite_module, "PREWARM_SECONDS", 0.0)
    read: list[str] = []
    connect = SqliteStore._connect

    def traced(store: SqliteStore) -> sqlite3.Connection:
        conn = connect(store)
        conn.set_trace_callback(read.append)
        return conn

    monkeypatch.setattr(SqliteStore, "_connect", traced)
    store = SqliteStore(db)
    await store.open()
    try:
        counts = [s for s in read if s.startswith("SELECT count(*) FROM") and "sqlite_master" not in s]
        assert counts == []  # out of time before the first
        assert not store.reader.in_transaction
        stored = await store.read("Patient", "p1999")
        assert stored is not None and stored.id == "p1999"
    finally:
        await store.close()
