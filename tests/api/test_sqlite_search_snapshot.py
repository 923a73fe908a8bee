"""A search's statements (sizing, walk, fallback, loads, total) all read one SQLite snapshot."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from fhir_server.storage import sqlite as sqlite_module
from fhir_server.storage import sqlite_index
from fhir_server.storage.sqlite import SqliteStore
from tests.contract.test_search_store import _op, find, obs


async def test_a_write_committed_mid_search_is_not_half_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A walk in date order that cannot fill its page finishes with a second query. Another
    connection moves o00's date between the two: the page still lists each match once, as of the
    moment the search began."""
    path = tmp_path / "fhir.sqlite3"
    store = SqliteStore(path)
    await store.open()
    try:
        await store.write(
            [
                _op(
                    obs(
                        f"o{i:02}",
                        status="amended" if i % 4 == 0 else "final",
                        code="8462-4" if i % 2 == 0 else "8480-6",
                        effectiveDateTime=f"2026-01-{10 + i % 20}",
                    )
                )
                for i in range(40)
            ]
        )
        monkeypatch.setattr(sqlite_index, "FEW", 2)
        monkeypatch.setattr(sqlite_index, "WALK_FROM", 4)
        monkeypatch.setattr(sqlite_index, "WALK_MOST", 6)
        # Kept on the event loop whatever the write costs (past the budget it would start again,
        # afresh, on a reader thread, and see the write whole).
        monkeypatch.setattr(sqlite_module, "INLINE_SECONDS", 60.0)
        finish = sqlite_index._keyset_sql
        moved: list[bool] = []

        def finish_after_another_write(*args: Any) -> Any:
            if not moved:  # another request commits now: o00's date moves four years on
                other = sqlite3.connect(path, isolation_level=None)
                res = other.execute("SELECT res FROM resource WHERE id = 'o00'").fetchone()[0]
                years = 4 * 365 * 86_400 * 1_000_000
                other.execute(
                    "UPDATE ix_date SET low = low + ?, high = high + ? WHERE res = ?", (years, years, res)
                )
                other.close()
                moved.append(True)
            return finish(*args)

        monkeypatch.setattr(sqlite_index, "_keyset_sql", finish_after_another_write)
        page = await find(store, "Observation", "code=8462-4&status=amended&_sort=date&_count=50")
        found = [m.id for m in page.matches]
        assert moved, "the walk did not need its second query"
        assert found == ["o00", "o20", "o04", "o24", "o08", "o28", "o12", "o32", "o16", "o36"]
    finally:
        await store.close()


async def test_a_search_past_the_inline_budget_is_answered_from_a_reader_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Searches start on the event loop's connection; SQLite stops one that runs too long, and a
    reader thread answers it in full. With no budget at all, every search that takes more than a
    few steps moves, and the answers are the same."""
    store = SqliteStore(tmp_path / "fhir.sqlite3")
    await store.open()
    try:
        await store.write([_op(obs(f"o{i:03}", status="final" if i % 3 else "amended")) for i in range(300)])
        query = "status=final&_sort=-_id&_count=500&_total=accurate"
        inline = await find(store, "Observation", query)
        moved: list[bool] = []
        in_reader = store._in_reader

        async def counted(work: Any) -> Any:
            moved.append(True)
            return await in_reader(work)

        monkeypatch.setattr(store, "_in_reader", counted)
        monkeypatch.setattr(sqlite_module, "INLINE_SECONDS", 0.0)
        threaded = await find(store, "Observation", query)
        assert moved == [True]
        assert not store.reader.in_transaction  # the stopped search left no snapshot open behind it
        assert [m.id for m in threaded.matches] == [m.id for m in inline.matches]
        assert threaded.total == inline.total == 200
    finally:
        await store.close()
