"""A full-text index (SQLite FTS5) that finds the resources whose `_text` / `_content` words match.

https://hl7.org/fhir/R4/search.html#content and https://www.sqlite.org/fts5.html

`ix_words` keeps each resource's folded word list per parameter, and a search checks a value there
(each of its words begins a word of the list). Without an index on those words, a search across a
type reads every list: `DocumentReference?_content=...` took 165 ms at 1M resources for a word no
letter holds. `ix_words_fts` indexes the same lists, one row per resource (rowid = res), one column
per parameter, and gives the driving set; the check on `ix_words` still decides each match, so the
index only has to find every resource that might match (a superset), never judge one.

- Contentless (`content=''`): `ix_words` already holds the text, which deleting a row needs.
- Tokenizer `ascii`: it splits where the extraction has already put spaces (ASCII punctuation) and
  keeps every other character, so its tokens are our words; it has no Unicode tables whose change
  between SQLite versions could make a later delete differ from the insert it undoes.
- A query word is searched as a quoted prefix (`"word"*`), which FTS5 tokenizes the same way as the
  text: a word with ASCII punctuation becomes a phrase that matches a superset.
- Filled from `ix_words` when a store made before it is opened (`fill`: seconds at 1M resources).

A build of SQLite without FTS5 runs as before: `AVAILABLE` is false, and every word search reads the
lists (and the index is made afresh when a SQLite with FTS5 opens the store again). Do not run an
older build of this server on a store this version has opened: it would not
keep the index, and this one would then miss what the older one wrote.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

Sql = tuple[str, list[Any]]

TABLE = "ix_words_fts"
COLUMNS = {"_text": "t", "_content": "c"}  # parameter -> its column
_MARK = "word-index"  # store_meta: the index has been filled
_SCHEMA = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {TABLE} USING fts5(t, c, content='', columnsize=0, tokenize='ascii')"
)


def _probe() -> bool:
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(_SCHEMA)
        return True
    except sqlite3.OperationalError:  # "no such module: fts5"
        return False
    finally:
        conn.close()


AVAILABLE = _probe()
SCHEMA: list[str] = [_SCHEMA] if AVAILABLE else []


def fill(conn: sqlite3.Connection, pids: dict[str, int]) -> None:
    """Index every word list in `ix_words` unless the store is marked as indexed (in the transaction
    that creates the table, so no search meets it empty while `ix_words` is not). A store opened by
    a SQLite without FTS5 loses the mark, since its writes then leave the index behind: the next
    opening with FTS5 indexes it afresh."""
    if not AVAILABLE:
        conn.execute("DELETE FROM store_meta WHERE name = ?", (_MARK,))
        return
    if conn.execute("SELECT 1 FROM store_meta WHERE name = ?", (_MARK,)).fetchone():
        return
    conn.execute(f"INSERT INTO {TABLE}({TABLE}) VALUES ('delete-all')")
    conn.execute(
        f"INSERT INTO {TABLE}(rowid, t, c) SELECT res, max(CASE WHEN pid = ? THEN words END),"
        " max(CASE WHEN pid = ? THEN words END) FROM ix_words GROUP BY res",
        (pids["_text"], pids["_content"]),
    )
    conn.execute("INSERT INTO store_meta VALUES (?, x'01')", (_MARK,))


def insert(conn: sqlite3.Connection, rows: Sequence[tuple[int, int, str]], pids: dict[str, int]) -> None:
    """Index new `ix_words` rows (res, pid, words): one row per resource, both columns at once."""
    if not AVAILABLE:
        return
    slot = {pids["_text"]: 0, pids["_content"]: 1}
    by_res: dict[int, list[str | None]] = {}
    for res, p, words in rows:
        by_res.setdefault(res, [None, None])[slot[p]] = words
    conn.executemany(
        f"INSERT INTO {TABLE}(rowid, t, c) VALUES (?, ?, ?)", [(r, *c) for r, c in by_res.items()]
    )


def delete(conn: sqlite3.Connection, res: int, pids: dict[str, int]) -> None:
    """Take one resource out of the index, before its `ix_words` rows go: a contentless FTS5 table
    deletes a row given exactly the text it was given."""
    if not AVAILABLE:
        return
    old = dict(conn.execute("SELECT pid, words FROM ix_words WHERE res = ?", (res,)).fetchall())
    if old:
        conn.execute(
            f"INSERT INTO {TABLE}({TABLE}, rowid, t, c) VALUES ('delete', ?, ?, ?)",
            (res, old.get(pids["_text"]), old.get(pids["_content"])),
        )


def present(conn: sqlite3.Connection) -> bool:
    """Whether this store has the index (one opened by this version of the server, with FTS5)."""
    if not AVAILABLE:
        return False
    return conn.execute("SELECT 1 FROM store_meta WHERE name = ?", (_MARK,)).fetchone() is not None


def candidates(param: str, values: Sequence[Sequence[str]]) -> Sql | None:
    """SELECT res of every resource whose `param` words might hold one of `values` (each a list of
    words, all of which must begin a word); None when a value has no word to look up."""
    if not values or any(not words for words in values):
        return None
    column = COLUMNS[param]
    options = [" AND ".join(_prefix(w) for w in words) for words in values]
    match = f"{column} : (" + " OR ".join(f"({o})" for o in options) + ")"
    return f"SELECT rowid AS res FROM {TABLE} WHERE {TABLE} MATCH ?", [match]


def _prefix(word: str) -> str:
    return '"' + word.replace('"', '""') + '"*'
