"""Opening a store reads every table and index once through the connection searches use first."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fhir_server.storage import sqlite as sqlite_module
from fhir_server.storage import sqlite_words
from fhir_server.storage.port import WriteOp
from fhir_server.storage.sqlite import SqliteStore


def _counts_made(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every `SELECT count(*)` the store's connections run from now on, as they run."""
    made: list[str] = []
    connect = SqliteStore._connect

    def traced(store: SqliteStore) -> sqlite3.Connection:
        conn = connect(store)
        conn.set_trace_callback(
            lambda sql: made.append(sql) if sql.startswith("SELECT count(*) FROM") else None
        )
        return conn

    monkeypatch.setattr(SqliteStore, "_connect", traced)
    return made


async def _made(db: Path, patients: int = 0) -> None:
    first = SqliteStore(db)
    await first.open()
    body = '{{"resourceType":"Patient","id":"p{}"}}'
    now = datetime.now(UTC)
    await first.write([WriteOp("Patient", f"p{n}", 0, now, body.format(n).encode()) for n in range(patients)])
    await first.close()


@pytest.mark.parametrize("prewarm", [True, False])
async def test_opening_reads_every_table_and_index_unless_told_not_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prewarm: bool
) -> None:
    db = tmp_path / "fhir.sqlite3"
    await _made(db)
    # A full-text table cannot be read itself; its data is in its own tables (ix_words_fts_data, ...).
    schema = sqlite3.connect(db).execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'index')"
        " AND coalesce(sql, '') NOT LIKE 'CREATE VIRTUAL TABLE%'"
    )
    expected = {name for (name,) in schema}
    assert not sqlite_words.AVAILABLE or "ix_words_fts_data" in expected
    made = _counts_made(monkeypatch)
    store = SqliteStore(db, prewarm=prewarm)
    await store.open()
    try:
        counted = " ".join(made)
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
    db = tmp_path / "fhir.sqlite3"
    await _made(db, patients=2000)
    monkeypatch.setattr(sqlite_module, "PREWARM_SECONDS", 0.0)
    made = _counts_made(monkeypatch)
    store = SqliteStore(db)
    await store.open()
    try:
        assert made == []  # out of time before the first
        assert not store.reader.in_transaction
        stored = await store.read("Patient", "p1999")
        assert stored is not None and stored.id == "p1999"
    finally:
        await store.close()
