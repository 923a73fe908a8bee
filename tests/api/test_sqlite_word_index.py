"""The SQLite store finds `_text`/`_content` matches through a full-text index (ix_words_fts, see
storage/sqlite_words.py), kept by every write and filled when an older store is opened. The index
only proposes candidates: answers must equal those of checking every word list, which these tests
get by switching the index off for the same store."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fhir_server.rest.writes import plan_put
from fhir_server.search.parse import parse_search
from fhir_server.storage import sqlite_index, sqlite_words
from fhir_server.storage.port import WriteOp
from fhir_server.storage.sqlite import SqliteStore

pytestmark = pytest.mark.skipif(not sqlite_words.AVAILABLE, reason="this SQLite has no FTS5")

WORDS = ["cardiology", "cardiac", "clinic", "clinical", "follow-up", "o'neil", "zoë", "leeds", "léeds", "x"]


def letter(id: str, text: str, narrative: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": id,
        "status": "current",
        "description": text,
        "content": [{"attachment": {"contentType": "text/plain", "title": "letter"}}],
    }
    if narrative is not None:
        div = f'<div xmlns="http://www.w3.org/1999/xhtml">{narrative}</div>'
        resource["text"] = {"status": "generated", "div": div}
    return resource


async def write(store: SqliteStore, *resources: dict[str, Any], expected: int = 0) -> None:
    now = datetime.now(UTC)
    await store.write([plan_put(r, r["id"], expected, now) for r in resources])


async def delete(store: SqliteStore, id: str, expected: int) -> None:
    await store.write([WriteOp("DocumentReference", id, expected, datetime.now(UTC), None)])


def found(db: Path, query: str, *, index: bool = True) -> list[str]:
    """Every match's id, page after page, on a bare connection (the index on or off)."""
    params = [tuple(p.split("=", 1)) for p in query.split("?", 1)[1].split("&")]
    parsed = parse_search(query.split("?")[0], params).query  # type: ignore[arg-type]
    conn = sqlite3.connect(db)
    original = sqlite_words.present
    sqlite_words.present = original if index else (lambda conn: False)  # type: ignore[assignment]
    try:
        ids: list[str] = []
        offset = 0
        while True:
            page = sqlite_index.search_sql(conn, replace(parsed, count=7, offset=offset))
            ids += [m.id for m in page.matches]
            if page.next_offset is None:
                return ids
            offset = page.next_offset
    finally:
        sqlite_words.present = original  # type: ignore[assignment]
        conn.close()


def candidates(db: Path, word: str) -> list[int]:
    """What the full-text index itself proposes for a `_content` word."""
    sql, args = sqlite_words.candidates("_content", [[word]]) or ("", [])
    conn = sqlite3.connect(db)
    try:
        return [row[0] for row in conn.execute(sql, args)]
    finally:
        conn.close()


def uses_index(db: Path, query: str) -> bool:
    resource_type, _, params = query.partition("?")
    parsed = parse_search(resource_type, [tuple(p.split("=", 1)) for p in params.split("&")])  # type: ignore[misc]
    conn = sqlite3.connect(db)
    try:
        return any("ix_words_fts" in step for step in sqlite_index.explain(conn, parsed.query))
    finally:
        conn.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    the_store = SqliteStore(tmp_path / "words.sqlite3")
    await the_store.open()
    try:
        yield the_store
    finally:
        await the_store.close()


async def test_a_rare_word_is_found_through_the_index(store: SqliteStore) -> None:
    """A word few resources hold drives the search from the index instead of every word list."""
    await write(store, *(letter(f"d{i}", "routine discharge summary") for i in range(30)))
    await write(store, letter("rare", "Seen in the cardiology clinic"))
    assert uses_index(store.path, "DocumentReference?_content=cardio")
    assert found(store.path, "DocumentReference?_content=cardio") == ["rare"]
    assert found(store.path, "DocumentReference?_content=cardiology clin") == ["rare"]
    assert found(store.path, "DocumentReference?_content=nothing,cardiology") == ["rare"]
    assert found(store.path, "DocumentReference?_content=cardiology routine") == []


async def test_updates_and_deletes_keep_the_index(store: SqliteStore) -> None:
    """Old words stop matching after an update or a delete; new words match at once."""
    await write(store, letter("a", "cardiology clinic"), letter("b", "leeds general"))
    await write(store, letter("a", "renal clinic"), expected=1)
    assert found(store.path, "DocumentReference?_content=cardiology") == []
    assert found(store.path, "DocumentReference?_content=renal") == ["a"]
    assert candidates(store.path, "cardiology") == []  # gone from the index, not only filtered out
    await delete(store, "b", 1)
    assert found(store.path, "DocumentReference?_content=leeds") == []
    assert candidates(store.path, "leeds") == []
    await write(store, letter("b", "leeds again"), expected=2)  # re-created after the delete
    assert found(store.path, "DocumentReference?_content=leeds") == ["b"]


async def test_words_split_on_punctuation_as_stored(store: SqliteStore) -> None:
    """`o'neil` and `follow-up` are stored as two words each; searching them as written finds them."""
    await write(store, letter("a", "Letter for Mrs O'Neil: follow-up in 6 weeks"), letter("b", "Mr Neil"))
    assert found(store.path, "DocumentReference?_content=o'neil") == ["a"]
    assert found(store.path, "DocumentReference?_content=follow-up") == ["a"]
    assert found(store.path, "DocumentReference?_content=O'Neil&_content=weeks") == ["a"]


async def test_the_index_answers_as_reading_every_word_list_would(store: SqliteStore) -> None:
    """Random word lists, updates and deletes; random searches of one or two words, OR-ed values,
    prefixes, `_text` and `_content`: the same matches, in the same order, with the index as without."""
    rng = random.Random(7)
    version: dict[str, int] = {}
    for round_ in range(4):
        batch = []
        for i in rng.sample(range(60), 25):
            id = f"d{i}"
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))
            narrative = " ".join(rng.choice(WORDS) for _ in range(2)) if rng.random() < 0.5 else None
            batch.append((letter(id, text, narrative), version.get(id, 0)))
        now = datetime.now(UTC)
        await store.write([plan_put(r, r["id"], v, now) for r, v in batch])
        for r, v in batch:
            version[r["id"]] = v + 1
        if round_ == 2:  # delete some: a tombstone's words must leave the index
            gone = rng.sample(sorted(version), 8)
            for id in gone:
                await delete(store, id, version[id])
                version[id] += 1
    queries = []
    for _ in range(60):
        param = rng.choice(["_content", "_text"])
        values = [
            " ".join(rng.choice(WORDS)[: rng.randint(1, 6)] for _ in range(rng.randint(1, 2)))
            for _ in range(rng.randint(1, 2))
        ]
        queries.append(f"DocumentReference?{param}={','.join(values)}")
    for query in queries:
        assert found(store.path, query) == found(store.path, query, index=False), query


async def test_a_store_made_before_the_index_has_it_filled_on_opening(tmp_path: Path) -> None:
    """Opening an older store (no index, no mark) indexes the word lists it already has."""
    db = tmp_path / "older.sqlite3"
    store = SqliteStore(db)
    await store.open()
    await write(store, letter("a", "cardiology clinic", "seen today"), letter("b", "leeds"))
    await store.close()
    conn = sqlite3.connect(db)
    conn.execute("DROP TABLE ix_words_fts")
    conn.execute("DELETE FROM store_meta WHERE name = 'word-index'")
    conn.commit()
    conn.close()
    assert found(db, "DocumentReference?_content=cardiology") == ["a"]  # without the index, as before
    store = SqliteStore(db)
    await store.open()
    try:
        assert uses_index(db, "DocumentReference?_content=cardiology")
        assert found(db, "DocumentReference?_content=cardiology") == ["a"]
        assert found(db, "DocumentReference?_text=today") == ["a"]
        await write(store, letter("a", "renal"), expected=1)  # deleting what the fill inserted
        assert found(db, "DocumentReference?_content=cardiology") == []
        assert found(db, "DocumentReference?_content=renal") == ["a"]
    finally:
        await store.close()


async def test_writes_without_fts5_make_the_next_opening_with_it_index_afresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store written by a SQLite without FTS5 (its index left behind) is indexed afresh when a
    SQLite with FTS5 opens it again: nothing written meanwhile is missed, nothing deleted is kept."""
    db = tmp_path / "moved.sqlite3"
    store = SqliteStore(db)
    await store.open()
    await write(store, letter("a", "cardiology"), letter("b", "renal"))
    await store.close()
    monkeypatch.setattr(sqlite_words, "AVAILABLE", False)
    store = SqliteStore(db)
    await store.open()
    await write(store, letter("c", "cardiology"))
    await delete(store, "a", 1)
    await store.close()
    assert found(db, "DocumentReference?_content=cardiology") == ["c"]  # by the word lists alone
    monkeypatch.setattr(sqlite_words, "AVAILABLE", True)
    store = SqliteStore(db)
    await store.open()
    try:
        assert uses_index(db, "DocumentReference?_content=cardiology")
        assert found(db, "DocumentReference?_content=cardiology") == ["c"]
        assert len(candidates(db, "cardiology")) == 1  # "c" only: "a", deleted meanwhile, is gone
    finally:
        await store.close()
