"""The SQLite search index: typed entry tables, and `SearchQuery` -> SQL. https://hl7.org/fhir/R4/search.html

Layout. One table per entry kind, clustered by resource (`PRIMARY KEY(res, pid, n) WITHOUT ROWID`),
so deleting or checking one resource's entries is a prefix range, plus one value index per table
for the lookups that drive a search. `pid` is a stable 31-bit hash of (resource type, parameter
code) — per type, so `Observation.patient` and `DocumentReference.patient` never share index
ranges; resource-level parameters (`_tag`, `_security`, ...) hash under type "*" so access checks
and system searches use one pid. A 4-byte integer keeps rows small; a unit test proves the official
registry has no collisions.

Query shape. The most selective positive criterion (an `_id`, a reference, a compartment, a token
...) becomes the driving set `r.res IN (SELECT res FROM <index> ...)`; every other criterion is a
correlated EXISTS probed through the per-resource primary key. The type test is written `+r.type` so
the planner cannot prefer scanning a whole type. Values are always bound parameters.

Access narrowing (`AccessFilter`) is a WHERE fragment on a `resource` alias, applied to matches,
chained targets, `_has` sources, includes and revincludes alike, so totals and paging never count
what the caller may not see.

Canonicals. A reference parameter may hold canonical urls (search.html#reference), indexed as
entries with only `url`. Where the query says a parameter may (`ChainClause.canonical_types`,
`HasClause.canonical_types`, `Include.canonical`), chains, `_has` and includes also join such an
entry to the target types' `url` entries (ix_uri) by value, through ix_ref_url and ix_uri_value.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cache, lru_cache
from operator import attrgetter
from typing import Any

from fhir_server.errors import BadRequest
from fhir_server.indexing.entries import (
    MAX_INSTANT,
    MIN_INSTANT,
    CompositeEntry,
    DateEntry,
    IndexEntry,
    NumberEntry,
    QuantityEntry,
    ReferenceEntry,
    StringEntry,
    TokenEntry,
    UriEntry,
)
from fhir_server.indexing.normalize import search_words
from fhir_server.instants import from_micros
from fhir_server.search.query import (
    AccessFilter,
    CanonicalParam,
    ChainClause,
    Clause,
    CompositeValue,
    Criterion,
    DateValue,
    HasClause,
    Include,
    MissingValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    SearchPage,
    SearchQuery,
    SortKey,
    StringValue,
    TokenValue,
    UriValue,
    Value,
)
from fhir_server.storage import sqlite_words
from fhir_server.storage.cursors import CursorSealer, Position
from fhir_server.storage.port import StoredResource

Sql = tuple[str, list[Any]]
_TRUE: Sql = ("1", [])
_FALSE: Sql = ("0", [])
_HIGHEST = "\U0010ffff"  # sorts after any character: prefix p matches [p, p + _HIGHEST)
MAX_INCLUDES = 1000
MAX_DRIVING_VALUES = 100  # SQLite allows 500 terms in a compound SELECT
MAX_ITERATIONS = 4
# Driving sets of this many index entries or more are not read whole: sizing one costs well under a
# millisecond, and a criterion at least this common is met within a short walk of its type in `res`
# order (on average count x the type's resources / matches probes). See _plan.
WALK_FROM = 5_000
WALK_MOST = 10_000  # resources a walk probes before reading the driving set after all
FEW = 500  # a driving set under this many entries is taken without sizing the others
# Pages by `_offset` (a `previous` link, or a client that counts) walk too while the matches before
# and on the page are at most this many; deeper ones read the driving set, as a walk would give up.
WALK_OFFSET_MOST = 1_000
_MATERIALIZED = sqlite3.sqlite_version_info >= (3, 35)  # `AS MATERIALIZED` is understood from 3.35
# Parameters answered from the resource table itself, so their entries are not stored twice.
_RESOURCE_COLUMNS = {"_id", "_lastUpdated"}

SCHEMA: list[str] = [
    """CREATE TABLE IF NOT EXISTS ix_token (res INTEGER NOT NULL, pid INTEGER NOT NULL, n INTEGER NOT NULL,
        system TEXT, code TEXT, text TEXT, PRIMARY KEY(res, pid, n)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS ix_token_value ON ix_token(pid, code, system)",
    """CREATE TABLE IF NOT EXISTS ix_string (res INTEGER NOT NULL, pid INTEGER NOT NULL, n INTEGER NOT NULL,
        value TEXT NOT NULL, exact TEXT NOT NULL, PRIMARY KEY(res, pid, n)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS ix_string_value ON ix_string(pid, value)",
    """CREATE TABLE IF NOT EXISTS ix_date (res INTEGER NOT NULL, pid INTEGER NOT NULL, n INTEGER NOT NULL,
        low INTEGER NOT NULL, high INTEGER NOT NULL, PRIMARY KEY(res, pid, n)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS ix_date_value ON ix_date(pid, low, high)",
    # Newest first (`_sort=-date`) walks a date's entries by `high`, descending (_key_walked), and
    # `ge` / `gt` read a range of `high`; with `low` too, neither looks at the table.
    "DROP INDEX IF EXISTS ix_date_high",  # (pid, high): made by earlier builds of 2026-11-29
    "CREATE INDEX IF NOT EXISTS ix_date_upper ON ix_date(pid, high, low)",
    """CREATE TABLE IF NOT EXISTS ix_number (res INTEGER NOT NULL, pid INTEGER NOT NULL, n INTEGER NOT NULL,
        value REAL NOT NULL, low REAL NOT NULL, high REAL NOT NULL,
        PRIMARY KEY(res, pid, n)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS ix_number_value ON ix_number(pid, value)",
    """CREATE TABLE IF NOT EXISTS ix_quantity (res INTEGER NOT NULL, pid INTEGER NOT NULL, n INTEGER NOT NULL,
        value REAL NOT NULL, low REAL NOT NULL, high REAL NOT NULL, system TEXT, code TEXT, unit TEXT,
        PRIMARY KEY(res, pid, n)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS ix_quantity_value ON ix_quantity(pid, value)",
    """CREATE TABLE IF NOT EXISTS ix_ref (res INTEGER NOT NULL, pid INTEGER NOT NULL, n INTEGER NOT NULL,
        target_type TEXT, target_id TEXT, url TEXT, id_system TEXT, id_value TEXT,
        PRIMARY KEY(res, pid, n)) WITHOUT ROWID""",
    # target_id first: serves `subject=123` (any type), `Type/id`, and revincludes of one resource.
    """CREATE INDEX IF NOT EXISTS ix_ref_target ON ix_ref(target_id, target_type, pid)
        WHERE target_id IS NOT NULL""",
    "CREATE INDEX IF NOT EXISTS ix_ref_url ON ix_ref(pid, url) WHERE url IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS ix_ref_identifier ON ix_ref(pid, id_value) WHERE id_value IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS ix_uri (res INTEGER NOT NULL, pid INTEGER NOT NULL, n INTEGER NOT NULL,
        value TEXT NOT NULL, PRIMARY KEY(res, pid, n)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS ix_uri_value ON ix_uri(pid, value)",
    # One row per component of each composite value; `grp` ties the components of one value together.
    # Generic columns: s1-s3 text, n1-n3 real, i1-i2 integer (see _COMPOSITE_COLUMNS).
    """CREATE TABLE IF NOT EXISTS ix_composite (
        res INTEGER NOT NULL, pid INTEGER NOT NULL, n INTEGER NOT NULL, grp INTEGER NOT NULL,
        comp INTEGER NOT NULL, s1 TEXT, s2 TEXT, s3 TEXT, n1 REAL, n2 REAL, n3 REAL,
        i1 INTEGER, i2 INTEGER, PRIMARY KEY(res, pid, n)) WITHOUT ROWID""",
    # A composite searched by its first component's code (`component-code-value-quantity=8480-6$gt140`)
    "CREATE INDEX IF NOT EXISTS ix_composite_first ON ix_composite(pid, s2) WHERE comp = 0",
    # _text/_content word lists: matched by scanning one resource's row, so no value index (an index on
    # these long strings would cost every write and much of the file, and never serve a query).
    """CREATE TABLE IF NOT EXISTS ix_words (res INTEGER NOT NULL, pid INTEGER NOT NULL, words TEXT NOT NULL,
        PRIMARY KEY(res, pid)) WITHOUT ROWID""",
    # _lastUpdated searches and sorts within a type.
    "CREATE INDEX IF NOT EXISTS resource_type_updated ON resource(type, last_updated)",
    # A type's resources in `res` order: a search with no selective criterion walks it (_plan).
    "CREATE INDEX IF NOT EXISTS resource_type ON resource(type)",
    # Parameters of which some resource has had more than one entry (in the value tables): a count
    # of another's matches needs no DISTINCT (_total). Kept by every write (add_entry_rows), only
    # ever growing; trusted, like type_count, while stamped with the newest version (stamp_current).
    "CREATE TABLE IF NOT EXISTS ix_multi (pid INTEGER PRIMARY KEY) WITHOUT ROWID",
    # Per date parameter: the widest entry ever written (high - low; MAX_INSTANT when one has an open
    # end) and whether a resource ever had more than one entry. Kept by every write (insert_rows);
    # filled by `fill_date_spans` when new. See _date_bounds.
    """CREATE TABLE IF NOT EXISTS ix_date_span (pid INTEGER PRIMARY KEY, span INTEGER NOT NULL,
        multi INTEGER NOT NULL) WITHOUT ROWID""",
    # A full-text index of ix_words (sqlite_words), where this SQLite has FTS5.
    *sqlite_words.SCHEMA,
]


def fill_date_spans(conn: sqlite3.Connection) -> None:
    """Fill ix_date_span from ix_date when it is empty (a store made before it was): run in the
    transaction that creates it, so no search meets it empty while ix_date is not (~1.5 s at 1M)."""
    if conn.execute("SELECT 1 FROM ix_date_span LIMIT 1").fetchone() is None:
        conn.execute(
            f"""INSERT INTO ix_date_span
            SELECT pid, max(span), max(entries > 1) FROM (
                SELECT pid, count(*) AS entries, max(CASE WHEN low <= {MIN_INSTANT} OR high >= {MAX_INSTANT}
                    THEN {MAX_INSTANT} ELSE high - low END) AS span
                FROM ix_date GROUP BY pid, res)
            GROUP BY pid"""
        )


_WORD_PARAMS = frozenset({"_text", "_content"})


@cache
def _word_pids() -> dict[str, int]:
    return {code: pid("*", code) for code in _WORD_PARAMS}


def fill_word_index(conn: sqlite3.Connection) -> None:
    """Index the word lists of a store made before the full-text index (see sqlite_words)."""
    sqlite_words.fill(conn, _word_pids())


_TABLES = (
    *("ix_token", "ix_string", "ix_date", "ix_number", "ix_quantity", "ix_ref", "ix_uri", "ix_composite"),
    "ix_words",
)
_KIND_TABLE: dict[str, str] = {
    "token": "ix_token",
    "string": "ix_string",
    "date": "ix_date",
    "number": "ix_number",
    "quantity": "ix_quantity",
    "reference": "ix_ref",
    "uri": "ix_uri",
    "composite": "ix_composite",
}


# -- parameter ids --------------------------------------------------------------------------------


@lru_cache(maxsize=8192)
def pid(resource_type: str, code: str) -> int:
    """A stable 31-bit id for (type, code); resource-level `_x` parameters share type "*"."""
    owner = "*" if code.startswith("_") else resource_type
    digest = hashlib.blake2b(f"{owner}.{code}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def _pids(types: Sequence[str], code: str) -> list[int]:
    if code.startswith("_") or not types:
        return [pid("*", code)]
    return sorted({pid(t, code) for t in types})


# -- writing entries ------------------------------------------------------------------------------


def delete_entries(conn: sqlite3.Connection, res: int) -> None:
    """Remove every index entry of one resource (a primary-key prefix range per table)."""
    sqlite_words.delete(conn, res, _word_pids())  # reads the ix_words rows about to go
    for table in _TABLES:
        conn.execute(f"DELETE FROM {table} WHERE res = ?", (res,))


Rows = dict[str, list[tuple[Any, ...]]]  # table -> rows to insert


def _one(name: str) -> Callable[[Any], tuple[Any, ...]]:
    get = attrgetter(name)
    return lambda entry: (get(entry),)


def write_entries(
    conn: sqlite3.Connection, res: int, resource_type: str, entries: Sequence[IndexEntry]
) -> None:
    """Insert a resource's entries, duplicates dropped, grouped per table in one executemany each."""
    rows: Rows = {}
    add_entry_rows(rows, res, resource_type, entries)
    insert_rows(conn, rows)


def insert_rows(conn: sqlite3.Connection, rows: Rows) -> None:
    """One executemany per table: a whole write's entries go in a handful of calls."""
    for table, table_rows in rows.items():
        if table == "ix_multi":  # a fact, not an entry: kept once
            conn.executemany("INSERT OR IGNORE INTO ix_multi VALUES (?)", dict.fromkeys(table_rows))
        elif table_rows:
            marks = ",".join("?" * len(table_rows[0]))
            conn.executemany(f"INSERT INTO {table} VALUES ({marks})", table_rows)
    if rows.get("ix_date"):
        _widen_date_spans(conn, rows["ix_date"])
    if rows.get("ix_words"):
        sqlite_words.insert(conn, rows["ix_words"], _word_pids())


def _widen_date_spans(conn: sqlite3.Connection, date_rows: list[tuple[Any, ...]]) -> None:
    """Keep ix_date_span covering these (res, pid, n, low, high) rows. A resource's entries are all
    written together (an update replaces them all), so they tell whether it has more than one."""
    spans: dict[int, int] = {}
    seen: set[tuple[int, int]] = set()
    multi: set[int] = set()
    for res, p, _, low, high in date_rows:
        width = MAX_INSTANT if low <= MIN_INSTANT or high >= MAX_INSTANT else high - low  # open: unbounded
        spans[p] = max(spans.get(p, 0), width)
        if (res, p) in seen:
            multi.add(p)
        seen.add((res, p))
    conn.executemany(
        "INSERT INTO ix_date_span VALUES (?, ?, ?) ON CONFLICT(pid) DO UPDATE"
        " SET span = max(span, excluded.span), multi = max(multi, excluded.multi)",
        [(p, span, int(p in multi)) for p, span in spans.items()],
    )


def add_entry_rows(rows: Rows, res: int, resource_type: str, entries: Sequence[IndexEntry]) -> None:
    """Add one resource's index rows to `rows` (entries come without duplicates: `extract_entries`),
    and to `ix_multi` the parameters it has more than one value entry for."""
    seen: set[int] = set()
    for n, entry in enumerate(entries):
        param = entry.param
        if param in _RESOURCE_COLUMNS:
            continue
        p = pid(resource_type, param)
        kind = type(entry)
        if kind is CompositeEntry:
            rows.setdefault("ix_composite", []).extend(_composite_rows(res, p, n, entry))  # type: ignore[arg-type]
        elif param in _WORD_PARAMS and kind is StringEntry:
            rows.setdefault("ix_words", []).append((res, p, entry.value))  # type: ignore[union-attr]
        else:
            table, values = _ROW_OF[kind]
            rows.setdefault(table, []).append((res, p, n, *values(entry)))
            if p in seen:
                rows.setdefault("ix_multi", []).append((p,))
            seen.add(p)


def fill_multi(conn: sqlite3.Connection) -> None:
    """ix_multi from the entries themselves (each table read once in its (res, pid, n) order:
    several seconds at 1M resources; only when the store's counts are not current)."""
    conn.execute("DELETE FROM ix_multi")
    for table in _VALUE_TABLES:
        conn.execute(
            f"INSERT OR IGNORE INTO ix_multi SELECT pid FROM {table} GROUP BY res, pid HAVING count(*) > 1"
        )


def single_valued(conn: sqlite3.Connection, pids: Sequence[int]) -> bool:
    """Whether no resource has ever had two value entries for any of `pids`, as far as the store
    knows for certain (ix_multi current: stamp_current)."""
    if not stamp_current(conn, MULTI):
        return False
    found, args = _in("pid", pids)
    return conn.execute(f"SELECT 1 FROM ix_multi WHERE {found} LIMIT 1", args).fetchone() is None


# Each entry kind's table, and its value columns in table order: the fields after `param`.
_ROW_OF: dict[type, tuple[str, Callable[[Any], tuple[Any, ...]]]] = {
    kind: (table, attrgetter(*kind.__slots__[1:]) if len(kind.__slots__) > 2 else _one(kind.__slots__[1]))
    for kind, table in (
        (TokenEntry, "ix_token"),
        (StringEntry, "ix_string"),
        (DateEntry, "ix_date"),
        (NumberEntry, "ix_number"),
        (QuantityEntry, "ix_quantity"),
        (ReferenceEntry, "ix_ref"),
        (UriEntry, "ix_uri"),
    )
}
_VALUE_TABLES = tuple(table for table, _ in _ROW_OF.values())  # one value entry per row


# Where each component kind lives in ix_composite's generic columns.
_COMPOSITE_COLUMNS: dict[str, dict[str, str]] = {
    "token": {"system": "s1", "code": "s2", "text": "s3"},
    "string": {"value": "s1", "exact": "s2"},
    "reference": {"target_type": "s1", "target_id": "s2", "url": "s3"},
    "uri": {"value": "s1"},
    "date": {"low": "i1", "high": "i2"},
    "number": {"value": "n1", "low": "n2", "high": "n3"},
    "quantity": {"value": "n1", "low": "n2", "high": "n3", "system": "s1", "code": "s2", "unit": "s3"},
}
_GENERIC = ("s1", "s2", "s3", "n1", "n2", "n3", "i1", "i2")
_ENTRY_KIND = {
    TokenEntry: "token",
    StringEntry: "string",
    ReferenceEntry: "reference",
    UriEntry: "uri",
    DateEntry: "date",
    NumberEntry: "number",
    QuantityEntry: "quantity",
}


def _composite_rows(res: int, p: int, grp: int, entry: CompositeEntry) -> list[tuple[Any, ...]]:
    """One row per component; `n` packs (grp, comp) so the primary key stays unique."""
    rows = []
    for comp, part in enumerate(entry.components):
        columns = _COMPOSITE_COLUMNS[_ENTRY_KIND[type(part)]]
        values = {column: getattr(part, name) for name, column in columns.items()}
        generic = tuple(values.get(g) for g in _GENERIC)
        rows.append((res, p, grp * 16 + comp, grp, comp, *generic))
    return rows


# -- value conditions ------------------------------------------------------------------------------

Col = Callable[[str], str]


def _value_sql(kind: str, value: Value, col: Col) -> Sql:
    """A condition on one entry row (columns named through `col`) for one search value."""
    if isinstance(value, DateValue):
        return _range_sql(value.prefix, col("low"), col("high"), value.low, value.high)
    if isinstance(value, QuantityValue):
        return _quantity_sql(value, col)
    if isinstance(value, NumberValue):
        return _number_sql(value.prefix, col, value.value, value.low, value.high)
    if isinstance(value, StringValue):
        return _string_sql(value, col)
    if isinstance(value, TokenValue):
        return _token_sql(value, col)
    if isinstance(value, ReferenceValue):
        return _reference_sql(value, col)
    if isinstance(value, UriValue):
        return _uri_sql(value, col)
    raise TypeError(f"no condition for {kind} value {value!r}")


def _driving_conditions(kind: str, value: Value) -> list[Sql]:
    """`_value_sql` as one or more conditions that each read one index range. A date `ge` is
    "ends after the search range, or lies within it": as one OR it reads every entry of the
    parameter; as two selects, a range of `high` and a range of `low` (the two never both hold)."""
    if isinstance(value, DateValue) and value.prefix == "ge":
        return [
            ("e.high > ?", [value.high]),
            ("(e.low >= ? AND e.low < ? AND e.high <= ?)", [value.low, value.high, value.high]),
        ]
    return [_value_sql(kind, value, _plain("e"))]


def _range_sql(prefix: str, low: str, high: str, s_low: int, s_high: int) -> Sql:
    """The spec's range comparisons: entry [low, high) against search [s_low, s_high)."""
    # `low < s_high` in eq and `low < s_low` in eb are implied (low < high); they bound index scans.
    within = (f"({low} >= ? AND {low} < ? AND {high} <= ?)", [s_low, s_high, s_high])
    table: dict[str, Sql] = {
        "eq": within,
        "ne": (f"NOT {within[0]}", within[1]),
        "gt": (f"{high} > ?", [s_high]),
        "lt": (f"{low} < ?", [s_low]),
        "ge": (f"({high} > ? OR {within[0]})", [s_high, *within[1]]),
        # The first conjunct follows from the rest (s_low < s_high); it lets a driving set read a
        # range of the (pid, low, high) index. (ge is split in two for that: see driving_set.)
        "le": (f"({low} < ? AND ({low} < ? OR {within[0]}))", [s_high, s_low, *within[1]]),
        "sa": (f"{low} >= ?", [s_high]),
        "eb": (f"({low} < ? AND {high} <= ?)", [s_low, s_low]),
        "ap": (f"({low} < ? AND {high} > ?)", [s_high, s_low]),
    }
    return table[prefix]


def _number_sql(prefix: str, col: Col, value: float, low: float, high: float) -> Sql:
    """A number (or quantity) entry against a search value: a single number by `_point_sql`, an
    entry from a Range by `_span_sql`. Which one an entry is follows from its columns (see
    `entries.is_range`): a single number's precision range lies strictly around its value, a
    Range's value is one of its ends."""
    v, lo, hi = col("value"), col("low"), col("high")
    point, span = _point_sql(prefix, v, value, low, high), _span_sql(prefix, lo, hi, value, low, high)
    single = f"({lo} < {v} AND {v} < {hi})"
    return f"(({single} AND {point[0]}) OR (NOT {single} AND {span[0]}))", [*point[1], *span[1]]


def _point_sql(prefix: str, column: str, value: float, low: float, high: float) -> Sql:
    """eq/ne/ap use the precision range of the search value; the others compare with the value."""
    table: dict[str, Sql] = {
        "eq": (f"({column} >= ? AND {column} < ?)", [low, high]),
        "ne": (f"NOT ({column} >= ? AND {column} < ?)", [low, high]),
        "gt": (f"{column} > ?", [value]),
        "sa": (f"{column} > ?", [value]),
        "lt": (f"{column} < ?", [value]),
        "eb": (f"{column} < ?", [value]),
        "ge": (f"{column} >= ?", [value]),
        "le": (f"{column} <= ?", [value]),
        "ap": (f"({column} >= ? AND {column} <= ?)", [low, high]),
    }
    return table[prefix]


def _span_sql(prefix: str, lo: str, hi: str, value: float, low: float, high: float) -> Sql:
    """The spec's range comparisons for a target range [lo, hi] (a Range, ends included): eq = the
    search value's precision range [low, high) contains it; gt/lt/ge/le/sa/eb compare it with the
    value itself, as `_point_sql` does for a single number; ap = it overlaps the `ap` range."""
    within = (f"({lo} >= ? AND {hi} < ?)", [low, high])
    table: dict[str, Sql] = {
        "eq": within,
        "ne": (f"NOT {within[0]}", within[1]),
        "gt": (f"{hi} > ?", [value]),  # the values above the search value meet the range
        "lt": (f"{lo} < ?", [value]),
        "ge": (f"({hi} >= ? OR {within[0]})", [value, *within[1]]),
        "le": (f"({lo} <= ? OR {within[0]})", [value, *within[1]]),
        "sa": (f"{lo} > ?", [value]),  # the whole range lies above the search value
        "eb": (f"{hi} < ?", [value]),
        "ap": (f"({lo} <= ? AND {hi} >= ?)", [high, low]),
    }
    return table[prefix]


def _quantity_sql(value: QuantityValue, col: Col) -> Sql:
    sql, args = _number_sql(value.prefix, col, value.value, value.low, value.high)
    if value.system is not None:
        sql, args = f"{sql} AND {col('system')} = ?", [*args, value.system]
    if value.code is not None and value.system is not None:
        sql, args = f"{sql} AND {col('code')} = ?", [*args, value.code]
    elif value.code is not None:  # no system: the code may be a coded unit or the human unit
        sql, args = f"{sql} AND ({col('code')} = ? OR {col('unit')} = ?)", [*args, value.code, value.code]
    return f"({sql})", args


def _string_sql(value: StringValue, col: Col) -> Sql:
    if value.match == "exact":
        return f"({col('value')} = ? AND {col('exact')} = ?)", [value.value, value.exact]
    if value.match == "contains":
        return f"instr({col('value')}, ?) > 0", [value.value]
    return f"({col('value')} >= ? AND {col('value')} < ?)", [value.value, value.value + _HIGHEST]


def _token_sql(value: TokenValue, col: Col) -> Sql:
    if value.match == "text":
        return f"instr({col('text')}, ?) > 0", [value.code]
    parts: list[str] = []
    args: list[Any] = []
    if value.code is not None:
        parts.append(f"{col('code')} = ?")
        args.append(value.code)
    if value.system == "":
        parts.append(f"{col('system')} IS NULL")
    elif value.system is not None:
        parts.append(f"{col('system')} = ?")
        args.append(value.system)
    return f"({' AND '.join(parts)})", args


def _reference_sql(value: ReferenceValue, col: Col) -> Sql:
    if value.identifier_value is not None:
        sql, args = f"{col('id_value')} = ?", [value.identifier_value]
        if value.identifier_system == "":  # `|value`: an Identifier without a system, as for tokens
            sql = f"{sql} AND {col('id_system')} IS NULL"
        elif value.identifier_system is not None:
            sql, args = f"{sql} AND {col('id_system')} = ?", [*args, value.identifier_system]
        return f"({sql})", args
    if value.url is not None:
        return f"{col('url')} = ?", [value.url]
    if value.target_type is not None:
        return f"({col('target_id')} = ? AND {col('target_type')} = ?)", [value.target_id, value.target_type]
    return f"{col('target_id')} = ?", [value.target_id]


def _uri_sql(value: UriValue, col: Col) -> Sql:
    """Whole path segments for `:below` / `:above` (UriValue)."""
    if value.match == "below":
        ranges = [(p, p + _HIGHEST) for p in (value.below_prefix(), value.versions_prefix())]
        below = " OR ".join(f"({col('value')} >= ? AND {col('value')} < ?)" for _ in ranges)
        args = [value.value.rstrip("/") or value.value, *(end for r in ranges for end in r)]
        return f"({col('value')} = ? OR {below})", args
    if value.match == "above":
        return _in(col("value"), value.ancestors())
    return f"{col('value')} = ?", [value.value]


def _any_of(parts: Iterable[Sql]) -> Sql:
    """OR of the parts as a balanced tree: SQLite refuses expressions nested over 1000 deep, which
    a flat chain of a large value set's codes would be."""
    items = list(parts)
    if not items:
        return _FALSE
    if len(items) == 1:
        return f"({items[0][0]})", items[0][1]
    left, right = _any_of(items[: len(items) // 2]), _any_of(items[len(items) // 2 :])
    return f"({left[0]} OR {right[0]})", [*left[1], *right[1]]


def _all_of(parts: Iterable[Sql]) -> Sql:
    items = [p for p in parts if p != _TRUE]
    if not items:
        return _TRUE
    return "(" + " AND ".join(p[0] for p in items) + ")", [a for p in items for a in p[1]]


def _in(column: str, items: Sequence[Any]) -> Sql:
    return f"{column} IN ({','.join('?' * len(items))})", list(items)


def _canonical_entry(f: str) -> Sql:
    """A reference entry `f` that is a url alone: a canonical (extract.reference_entries). It names
    the resources of its parameter's target types whose `url` entry equals it; a versioned
    `url|1.2`, also indexed as `url`, never equals a url, so it resolves through the plain one."""
    return f"{f}.target_id IS NULL AND {f}.target_type IS NULL", []


def _canonical_groups(params: Iterable[CanonicalParam]) -> list[tuple[list[int], list[int]]]:
    """(pids of the parameters, pids of their targets' `url`) for each set of target types among
    `params`: a canonical in one of those parameters names a resource with one of those urls."""
    groups: dict[tuple[str, ...], set[int]] = {}
    for param in params:
        groups.setdefault(param.target_types, set()).add(pid(param.source_type, param.param))
    return [(sorted(sources), _pids(types, "url")) for types, sources in groups.items()]


# -- criteria as conditions on a resource alias --------------------------------------------------


@dataclass
class _Builder:
    """Turns criteria into SQL on a `resource` alias; fresh aliases keep nested subqueries apart."""

    access: AccessFilter | None
    counter: int = 0
    word_index: bool = False  # `_text`/`_content` may drive through ix_words_fts (sqlite_words)

    def alias(self, stem: str) -> str:
        self.counter += 1
        return f"{stem}{self.counter}"

    # -- boolean conditions (correlated) ---------------------------------------------------------

    def exists(self, crit: Criterion, types: Sequence[str], r: str) -> Sql:
        if isinstance(crit, ChainClause):
            return self._chain_exists(crit, types, r)
        if isinstance(crit, HasClause):
            return self._has_exists(crit, r)
        if crit.kind in ("id", "lastUpdated", "text", "content"):
            return self._column_clause(crit, r)
        return self._entry_clause(crit, types, r)

    def _entry_clause(self, clause: Clause, types: Sequence[str], r: str) -> Sql:
        table = _KIND_TABLE[clause.kind]
        pid_sql, pid_args = _in("{e}.pid", _pids(types, clause.param))
        missing = [x for x in clause.values if isinstance(x, MissingValue)]
        if missing:
            e = self.alias("e")
            probe = f"EXISTS (SELECT 1 FROM {table} {e} WHERE {e}.res = {r}.res AND {pid_sql.format(e=e)})"
            return (f"NOT {probe}" if missing[0].missing else probe), pid_args
        if clause.kind == "composite":
            found = _any_of(
                self._composite_exists(clause, value, pid_sql, pid_args, r) for value in clause.values
            )
        else:
            e = self.alias("e")
            cond = _any_of(_value_sql(clause.kind, x, _probe(e)) for x in clause.values)
            where = f"{e}.res = {r}.res AND {pid_sql.format(e=e)} AND {cond[0]}"
            found = f"EXISTS (SELECT 1 FROM {table} {e} WHERE {where})", [*pid_args, *cond[1]]
        return (f"NOT {found[0]}", found[1]) if clause.negate else found

    def _composite_exists(
        self, clause: Clause, value: Value, pid_sql: str, pid_args: list[Any], r: str
    ) -> Sql:
        first, joins, cond = self._composite_rows_sql(clause, value, drive=False)
        where = f"{first}.res = {r}.res AND {pid_sql.format(e=first)} AND {first}.comp = 0 AND {cond[0]}"
        return f"EXISTS (SELECT 1 FROM ix_composite {first} {joins} WHERE {where})", [*pid_args, *cond[1]]

    def _composite_rows_sql(self, clause: Clause, value: Value, *, drive: bool) -> tuple[str, str, Sql]:
        """The first component's alias, the joins to the others (same value: `grp`) and the
        condition on them all. `drive`: the first component's columns as an index may read them."""
        assert isinstance(value, CompositeValue)
        names = [self.alias("c") for _ in value.parts]
        joins = " ".join(
            f"JOIN ix_composite {c} ON {c}.res = {names[0]}.res AND {c}.pid = {names[0]}.pid"
            f" AND {c}.grp = {names[0]}.grp AND {c}.comp = {i}"
            for i, c in enumerate(names[1:], start=1)
        )
        conds = [
            _value_sql(kind, part, _generic(c, kind, plain=drive and i == 0))
            for i, (c, kind, part) in enumerate(zip(names, clause.components, value.parts, strict=True))
        ]
        return names[0], joins, _all_of(conds)

    def _composite_set(self, clause: Clause, types: Sequence[str]) -> tuple[float, Sql] | None:
        """A composite whose first component is a token code (`component-code-value-quantity=
        8480-6$gt140`) drives through that code (the partial index ix_composite_first)."""
        if clause.components[:1] != ("token",):
            return None
        firsts = [v.parts[0] if isinstance(v, CompositeValue) else None for v in clause.values]
        if not all(isinstance(x, TokenValue) and x.match == "code" and x.code for x in firsts):
            return None
        pid_sql, pid_args = _in("{e}.pid", _pids(types, clause.param))
        selects: list[Sql] = []
        for value in clause.values:
            first, joins, cond = self._composite_rows_sql(clause, value, drive=True)
            where = f"{pid_sql.format(e=first)} AND {first}.comp = 0 AND {cond[0]}"
            selects.append(
                (f"SELECT {first}.res FROM ix_composite {first} {joins} WHERE {where}", [*pid_args, *cond[1]])
            )
        return 2, (" UNION ALL ".join(s[0] for s in selects), [a for s in selects for a in s[1]])

    def _column_clause(self, clause: Clause, r: str) -> Sql:
        """`_id`, `_lastUpdated` from the resource row; `_text`/`_content` from the stored body."""
        if any(isinstance(x, MissingValue) for x in clause.values):
            missing = next(x for x in clause.values if isinstance(x, MissingValue))
            return _FALSE if missing.missing else _TRUE  # every resource has an id and lastUpdated
        if clause.kind == "id":
            return _in(f"{r}.id", [x.code for x in clause.values if isinstance(x, TokenValue)])
        if clause.kind == "lastUpdated":
            return _any_of(
                _range_sql(x.prefix, f"{r}.last_updated", f"({r}.last_updated + 1)", x.low, x.high)
                for x in clause.values
                if isinstance(x, DateValue)
            )
        return self._words_clause(clause, r)

    def _words_clause(self, clause: Clause, r: str) -> Sql:
        """`_text`/`_content`: each word of the value begins a word of the stored word list."""
        e = self.alias("e")
        cond = _words_match(clause, e)
        where = f"{e}.res = {r}.res AND {e}.pid = ? AND {cond[0]}"
        return f"EXISTS (SELECT 1 FROM ix_words {e} WHERE {where})", [pid("*", clause.param), *cond[1]]

    def _words_set(self, clause: Clause, *, exact: bool) -> tuple[float, Sql] | None:
        """The resources whose word lists might match, from the full-text index (a superset:
        sqlite_words); `exact`: only those whose lists do match, each checked here."""
        found = sqlite_words.candidates(clause.param, _value_words(clause)) if self.word_index else None
        if found is None or not exact:
            return (3, found) if found else None
        e = self.alias("e")
        cond = _words_match(clause, e)
        sql = (
            f"SELECT {e}.res FROM ({found[0]}) {e}_in CROSS JOIN ix_words {e} ON {e}.res = {e}_in.res"
            f" AND {e}.pid = ? WHERE {cond[0]}"
        )
        return 3, (sql, [*found[1], pid("*", clause.param), *cond[1]])

    def _chain_exists(self, chain: ChainClause, types: Sequence[str], r: str) -> Sql:
        if chain.canonical_types and not isinstance(chain.inner, Clause):
            return self._chain_or_canonical_exists(chain, types, r)
        f, t = self.alias("f"), self.alias("t")
        pid_sql, pid_args = _in(f"{f}.pid", _pids(types, chain.param))
        type_sql, type_args = _in(f"+{t}.type", chain.target_types)
        inner = self.exists(chain.inner, chain.target_types, t)
        access = self.access_sql(t)
        # CROSS JOIN and `+`: from this resource's own references to each target by its (type, id),
        # never the other way round (through every resource of the target type).
        sql = (
            f"EXISTS (SELECT 1 FROM ix_ref {f} CROSS JOIN resource {t} ON {t}.type = {f}.target_type"
            f" AND {t}.id = {f}.target_id WHERE {f}.res = {r}.res AND {pid_sql} AND {type_sql}"
            f" AND {t}.deleted = 0 AND {inner[0]} AND {access[0]})"
        )
        literal = sql, [*pid_args, *type_args, *inner[1], *access[1]]
        if not chain.canonical_types:
            return literal
        # The last level of a chain: its plain criterion written for each kind of reference costs
        # one copy, and two EXISTS probe each resource far faster than building a list of targets
        # for it (20k probes: 0.2 against 0.7 s). Deeper levels use _chain_or_canonical_exists.
        return _any_of([literal, self._canonical_chain_exists(chain, types, r)])

    def _canonical_chain_exists(self, chain: ChainClause, types: Sequence[str], r: str) -> Sql:
        """From this resource's canonicals in `chain.param` to the targets with that `url`, each by
        the (pid, value) index of their url entries (as _chain_exists, never through a whole type)."""
        f, u, t = self.alias("f"), self.alias("u"), self.alias("t")
        where = _all_of(
            [
                (f"{f}.res = {r}.res", []),
                _in(f"{f}.pid", _pids(types, chain.param)),
                _canonical_entry(f),
                _in(f"{u}.pid", _pids(chain.canonical_types, "url")),
                (f"{u}.value = {f}.url AND {t}.res = {u}.res AND {t}.deleted = 0", []),
                self.exists(chain.inner, chain.canonical_types, t),
                self.access_sql(t),
            ]
        )
        tables = f"ix_ref {f} CROSS JOIN ix_uri {u} CROSS JOIN resource {t}"
        return f"EXISTS (SELECT 1 FROM {tables} WHERE {where[0]})", where[1]

    def _chain_or_canonical_exists(self, chain: ChainClause, types: Sequence[str], r: str) -> Sql:
        """As _chain_exists, the targets also found from this resource's canonicals in `chain.param`
        by the (pid, value) index of their url entries. The inner criterion is written once, over
        both kinds of target: written per kind, a chain of n levels would repeat it 2^n times."""
        f, ft, fc, u, t = (self.alias(a) for a in ("f", "t", "f", "u", "t"))
        pids = _pids(types, chain.param)
        literal = _all_of([(f"{f}.res = {r}.res", []), _in(f"{f}.pid", pids)])
        canonical = _all_of([(f"{fc}.res = {r}.res", []), _in(f"{fc}.pid", pids), _canonical_entry(fc)])
        urls = _in(f"{u}.pid", _pids(chain.canonical_types, "url"))
        targets = (
            f"SELECT {ft}.res FROM ix_ref {f} CROSS JOIN resource {ft} ON {ft}.type = {f}.target_type"
            f" AND {ft}.id = {f}.target_id WHERE {literal[0]}"
            f" UNION ALL SELECT {u}.res FROM ix_uri {u} WHERE {urls[0]} AND {u}.value IN"
            f" (SELECT {fc}.url FROM ix_ref {fc} WHERE {canonical[0]})"
        )
        where = _all_of(
            [
                (f"{t}.res IN ({targets})", [*literal[1], *urls[1], *canonical[1]]),
                _in(f"+{t}.type", chain.target_types),
                (f"{t}.deleted = 0", []),
                self.exists(chain.inner, chain.target_types, t),
                self.access_sql(t),
            ]
        )
        return f"EXISTS (SELECT 1 FROM resource {t} WHERE {where[0]})", where[1]

    def _has_exists(self, has: HasClause, r: str) -> Sql:
        if has.canonical_types and not isinstance(has.inner, Clause):
            return self._has_or_canonical_exists(has, r)
        f, s = self.alias("f"), self.alias("s")
        inner = self.exists(has.inner, (has.source_type,), s)
        access = self.access_sql(s)
        sql = (  # as in _chain_exists: from the references to this resource, never from the type
            f"EXISTS (SELECT 1 FROM ix_ref {f} CROSS JOIN resource {s} ON {s}.res = {f}.res"
            f" WHERE {f}.target_id = {r}.id AND {f}.target_type = {r}.type AND {f}.pid = ?"
            f" AND +{s}.type = ? AND {s}.deleted = 0 AND {inner[0]} AND {access[0]})"
        )
        literal = sql, [pid(has.source_type, has.param), has.source_type, *inner[1], *access[1]]
        if not has.canonical_types:
            return literal
        return _any_of([literal, self._canonical_has_exists(has, r)])  # the last level: see _chain_exists

    def _canonical_has_exists(self, has: HasClause, r: str) -> Sql:
        """From this resource's `url` to the sources naming it as a canonical in `has.param`."""
        u, f, s = self.alias("u"), self.alias("f"), self.alias("s")
        where = _all_of(
            [
                (f"{u}.res = {r}.res", []),
                _in(f"{u}.pid", _pids(has.canonical_types, "url")),
                (f"{f}.pid = ? AND {f}.url = {u}.value", [pid(has.source_type, has.param)]),
                _canonical_entry(f),
                (f"{s}.res = {f}.res AND +{s}.type = ? AND {s}.deleted = 0", [has.source_type]),
                self.exists(has.inner, (has.source_type,), s),
                self.access_sql(s),
            ]
        )
        tables = f"ix_uri {u} CROSS JOIN ix_ref {f} CROSS JOIN resource {s}"
        return f"EXISTS (SELECT 1 FROM {tables} WHERE {where[0]})", where[1]

    def _has_or_canonical_exists(self, has: HasClause, r: str) -> Sql:
        """As _has_exists, the sources also found by this resource's `url` (a canonical naming it),
        with the inner criterion written once (see _chain_or_canonical_exists)."""
        f, fc, u, s = (self.alias(a) for a in ("f", "f", "u", "s"))
        param = pid(has.source_type, has.param)
        urls = _in(f"{u}.pid", _pids(has.canonical_types, "url"))
        canonical = _all_of([(f"{fc}.pid = ?", [param]), _canonical_entry(fc)])
        sources = (
            f"SELECT {f}.res FROM ix_ref {f} WHERE {f}.target_id = {r}.id AND {f}.target_type = {r}.type"
            f" AND {f}.pid = ? UNION ALL SELECT {fc}.res FROM ix_ref {fc} WHERE {canonical[0]}"
            f" AND {fc}.url IN (SELECT {u}.value FROM ix_uri {u} WHERE {u}.res = {r}.res AND {urls[0]})"
        )
        where = _all_of(
            [
                (f"{s}.res IN ({sources})", [param, *canonical[1], *urls[1]]),
                (f"+{s}.type = ? AND {s}.deleted = 0", [has.source_type]),
                self.exists(has.inner, (has.source_type,), s),
                self.access_sql(s),
            ]
        )
        return f"EXISTS (SELECT 1 FROM resource {s} WHERE {where[0]})", where[1]

    # -- driving sets (uncorrelated SELECT res ...) ----------------------------------------------

    def driving_set(
        self,
        crit: Criterion,
        types: Sequence[str],
        low_within: LowBounds = (None, None),
        *,
        exact: bool = True,
    ) -> tuple[float, Sql] | None:
        """(selectivity rank, SELECT res ...) for criteria an index can answer alone; lower is better.
        `low_within`: for a date clause, bounds on its entries' `low` that the matches keep to.
        Not `exact`: the set may hold more than the matches where the criterion is checked again
        on each one anyway (`_where`, for a `_text`/`_content` set: _superset_drive)."""
        if isinstance(crit, ChainClause):
            return self._chain_set(crit, types)
        if isinstance(crit, HasClause):
            return self._has_set(crit)
        if crit.negate or any(isinstance(x, MissingValue) for x in crit.values):
            return None
        if crit.kind == "id":
            return self._id_set(crit, types)
        if crit.kind in ("text", "content"):
            return self._words_set(crit, exact=exact)
        if crit.kind == "composite":
            return self._composite_set(crit, types) if 0 < len(crit.values) <= MAX_DRIVING_VALUES else None
        rank = _rank(crit)
        if rank is None:
            return None
        table = _KIND_TABLE[crit.kind]
        pid_sql, pid_args = _in("e.pid", _pids(types, crit.param))
        within = _all_of(
            [("e.low >= ?", [low_within[0]])] * (low_within[0] is not None)
            + [("e.low < ?", [low_within[1]])] * (low_within[1] is not None)
        )
        selects = []
        for value in crit.values:
            for cond in _driving_conditions(crit.kind, value):
                where = f"{pid_sql} AND {cond[0]} AND {within[0]}"
                selects.append(
                    (f"SELECT e.res FROM {table} e WHERE {where}", [*pid_args, *cond[1], *within[1]])
                )
        return rank, (" UNION ALL ".join(s[0] for s in selects), [a for s in selects for a in s[1]])

    def _id_set(self, clause: Clause, types: Sequence[str]) -> tuple[float, Sql] | None:
        if not types:
            return None  # no index on id alone; the type-less scan checks ids as it goes
        ids = [x.code for x in clause.values if isinstance(x, TokenValue)]
        type_sql, type_args = _in("type", types)
        id_sql, id_args = _in("id", ids)
        return 0, (f"SELECT res FROM resource WHERE {type_sql} AND {id_sql}", [*type_args, *id_args])

    def _chain_set(self, chain: ChainClause, types: Sequence[str]) -> tuple[float, Sql] | None:
        inner = self.driving_set(chain.inner, chain.target_types)
        if inner is None:
            return None
        t, f = self.alias("t"), self.alias("f")
        pid_sql, pid_args = _in(f"{f}.pid", _pids(types, chain.param))
        type_sql, type_args = _in(f"+{t}.type", chain.target_types)
        access = self.access_sql(t)
        # The inner set as a subquery in FROM, not `IN (...)`: its rows then stream, so sizing the
        # set (LIMIT n) stops early instead of first reading the inner set whole.
        source = f"{t}_in" if chain.canonical_types else f"({inner[1][0]}) {t}_in"
        sql = (
            f"SELECT {f}.res FROM {source} CROSS JOIN resource {t} ON {t}.res = {t}_in.res"
            f" CROSS JOIN ix_ref {f} ON {f}.target_id = {t}.id AND {f}.target_type = {t}.type AND {pid_sql}"
            f" WHERE {type_sql} AND {t}.deleted = 0 AND {access[0]}"
        )
        literal = sql, [*pid_args, *type_args, *access[1]]
        if not chain.canonical_types:
            return inner[0] + 0.5, (sql, [*inner[1][1], *literal[1]])
        # With canonicals too, the inner set is named once (a WITH) and read by both kinds of
        # reference: written twice, a chain of n levels would repeat it 2^n times. It is made
        # distinct, or the paths through a densely linked graph would multiply level by level.
        canonical = self._canonical_chain_set(chain, types, f"{t}_in")
        union = f"{literal[0]} UNION ALL {canonical[0]}"
        sql = f"SELECT res FROM (WITH {t}_in(res) AS (SELECT DISTINCT res FROM ({inner[1][0]})) {union})"
        return inner[0] + 0.5, (sql, [*inner[1][1], *literal[1], *canonical[1]])

    def _canonical_chain_set(self, chain: ChainClause, types: Sequence[str], targets: str) -> Sql:
        """The resources naming one of `targets` (a named set of res) by a canonical in
        `chain.param`: from each live target's url entries to the canonicals with that url
        (ix_ref_url), as a join, so that sizing the set (LIMIT n) stops early. (A url list built
        first would read every target before the first row: 52 -> 263 ms over 20k Libraries.)"""
        t, u, f = self.alias("t"), self.alias("u"), self.alias("f")
        where = _all_of(
            [
                (f"{t}.deleted = 0", []),
                _in(f"{u}.pid", _pids(chain.canonical_types, "url")),
                _in(f"{f}.pid", _pids(types, chain.param)),
                (f"{f}.url = {u}.value", []),
                _canonical_entry(f),
                self.access_sql(t),
            ]
        )
        sql = (
            f"SELECT {f}.res FROM {targets} CROSS JOIN resource {t} ON {t}.res = {targets}.res"
            f" CROSS JOIN ix_uri {u} ON {u}.res = {t}.res CROSS JOIN ix_ref {f} WHERE {where[0]}"
        )
        return sql, where[1]

    def _has_set(self, has: HasClause) -> tuple[float, Sql] | None:
        inner = self.driving_set(has.inner, (has.source_type,))
        if inner is None:
            return None
        s, f, t = self.alias("s"), self.alias("f"), self.alias("t")
        access = self.access_sql(s)
        source = f"{s}_in" if has.canonical_types else f"({inner[1][0]}) {s}_in"
        sql = (  # the inner set in FROM, as in _chain_set
            f"SELECT {t}.res FROM {source} CROSS JOIN resource {s} ON {s}.res = {s}_in.res"
            f" CROSS JOIN ix_ref {f} ON {f}.res = {s}.res AND {f}.pid = ?"
            f" CROSS JOIN resource {t} ON {t}.type = {f}.target_type AND {t}.id = {f}.target_id"
            f" WHERE +{s}.type = ? AND {s}.deleted = 0 AND {access[0]}"
        )
        args = [pid(has.source_type, has.param), has.source_type, *access[1]]
        if not has.canonical_types:
            return inner[0] + 0.5, (sql, [*inner[1][1], *args])
        canonical = self._canonical_has_set(has, f"{s}_in")  # named once and distinct, as in _chain_set
        union = f"{sql} UNION ALL {canonical[0]}"
        named = f"SELECT res FROM (WITH {s}_in(res) AS (SELECT DISTINCT res FROM ({inner[1][0]})) {union})"
        return inner[0] + 0.5, (named, [*inner[1][1], *args, *canonical[1]])

    def _canonical_has_set(self, has: HasClause, sources: str) -> Sql:
        """The resources of `has.canonical_types` whose `url` one of `sources` (a named set of res)
        names by a canonical in `has.param`: a join from each source's canonicals to the url
        entries, streaming as in _canonical_chain_set."""
        s, f, u = self.alias("s"), self.alias("f"), self.alias("u")
        where = _all_of(
            [
                (f"+{s}.type = ? AND {s}.deleted = 0", [has.source_type]),
                _canonical_entry(f),
                _in(f"{u}.pid", _pids(has.canonical_types, "url")),
                (f"{u}.value = {f}.url", []),
                self.access_sql(s),
            ]
        )
        sql = (
            f"SELECT {u}.res FROM {sources} CROSS JOIN resource {s} ON {s}.res = {sources}.res"
            f" CROSS JOIN ix_ref {f} ON {f}.res = {s}.res AND {f}.pid = ? CROSS JOIN ix_uri {u}"
            f" WHERE {where[0]}"
        )
        return sql, [pid(has.source_type, has.param), *where[1]]

    # -- access ----------------------------------------------------------------------------------

    def access_sql(self, r: str) -> Sql:
        """What `self.access` allows, as a condition on resource alias `r` ("1" when unrestricted)."""
        return _TRUE if self.access is None else self._filter_sql(self.access, r)

    def _filter_sql(self, access: AccessFilter, r: str) -> Sql:
        parts: list[Sql] = []
        if access.types is not None:
            parts.append(_in(f"{r}.type", sorted(access.types)) if access.types else _FALSE)
        if access.compartments is not None:
            parts.append(_compartment_sql(sorted(access.compartments), r))
        if access.allowed_labels is not None:
            parts.append(_labels_sql(access, r))
        parts.extend(self._rule_sql(rule.resource_type, rule.any_of, r) for rule in access.extra)
        if access.patient_criteria:
            parts.append(self._patient_sql(access.patient_criteria, r))
        if access.any_of:
            parts.append(_any_of(self._filter_sql(member, r) for member in access.any_of))
        return _all_of(parts)

    def _patient_sql(self, criteria: tuple[Criterion, ...], r: str) -> Sql:
        """In the compartment of a live Patient meeting every criterion; a Patient judged by itself."""
        inner = _Builder(None, self.counter + 1000)  # criteria on the patient are not access-narrowed
        pc, p = inner.alias("pc"), inner.alias("p")
        on_p = _all_of(inner.exists(c, ("Patient",), p) for c in criteria)
        on_r = _all_of(inner.exists(c, ("Patient",), r) for c in criteria)
        self.counter = inner.counter
        sql = (
            f"(EXISTS (SELECT 1 FROM compartment {pc} CROSS JOIN resource {p}"
            f" ON {p}.type = 'Patient' AND {p}.id = substr({pc}.compartment, 9)"
            f" WHERE {pc}.res = {r}.res AND {pc}.compartment LIKE 'Patient/%' AND {p}.deleted = 0"
            f" AND {on_p[0]}) OR ({r}.type = 'Patient' AND {on_r[0]}))"
        )
        return sql, [*on_p[1], *on_r[1]]

    def _rule_sql(self, resource_type: str, any_of: tuple[tuple[Criterion, ...], ...], r: str) -> Sql:
        # Rules themselves are not access-narrowed: they are part of the access filter. That is safe
        # because a rule holds only plain clauses on the resource's own entries (access/scopes.py
        # refuses chains, _has and _list in granular scopes); a chain here would read out of reach.
        inner = _Builder(None, self.counter + 1000)
        groups = _any_of(_all_of(inner.exists(c, (resource_type,), r) for c in group) for group in any_of)
        self.counter = inner.counter
        return f"({r}.type <> ? OR {groups[0]})", [resource_type, *groups[1]]


def _value_words(clause: Clause) -> list[list[str]]:
    """Each value's words, split as the stored word lists are (see indexing.extract.search_words)."""
    return [search_words(x.value) if isinstance(x, StringValue) else [] for x in clause.values]


def _words_match(clause: Clause, e: str) -> Sql:
    """On the word list `e.words`: all of some value's words begin one of its words."""
    return _any_of(
        _all_of((f"instr(' ' || {e}.words, ?) > 0", [f" {w}"]) for w in words)
        for words in _value_words(clause)
    )


def _plain(alias: str) -> Col:
    """Columns of an index lookup that drives a search: the value index may serve them."""
    return lambda name: f"{alias}.{name}"


def _probe(alias: str) -> Col:
    """Columns of a per-resource probe. The unary `+` keeps the planner on the (res, pid) primary
    key: without statistics it would otherwise scan the parameter's whole value index."""
    return lambda name: f"+{alias}.{name}"


def _generic(alias: str, kind: str, *, plain: bool = False) -> Col:
    columns = _COMPOSITE_COLUMNS[kind]
    return lambda name: f"{'' if plain else '+'}{alias}.{columns[name]}"


def _rank(clause: Clause) -> float | None:
    """How selective an index lookup for this clause is likely to be (None: not index-friendly)."""
    values = clause.values
    if not values or len(values) > MAX_DRIVING_VALUES:
        return None  # nothing to look up, or more lookups than one UNION may hold: probe instead
    if clause.kind == "reference":
        return 1
    if clause.kind == "token" and all(
        isinstance(x, TokenValue) and x.match == "code" and x.code for x in values
    ):
        return 2
    if clause.kind == "string" and all(isinstance(x, StringValue) and x.match != "contains" for x in values):
        return 3
    if clause.kind == "uri" and all(isinstance(x, UriValue) and x.match != "above" for x in values):
        return 3
    if clause.kind == "date" and all(
        isinstance(x, DateValue) and x.prefix in ("eq", "lt", "le", "gt", "ge", "sa", "eb") for x in values
    ):
        return 5
    return None


def _access_compartments(access: AccessFilter | None) -> frozenset[str] | None:
    """Patient compartments that bound everything `access` passes (None: unbounded), to drive by."""
    if access is None:
        return None
    if access.compartments is not None:
        return access.compartments
    if not access.any_of:
        return None
    members = [_access_compartments(member) for member in access.any_of]
    if any(m is None for m in members):
        return None
    return frozenset().union(*(m for m in members if m is not None))


def _compartment_sql(compartments: Sequence[str], r: str) -> Sql:
    """In one of these Patient compartments; a Patient is in its own."""
    comp_sql, comp_args = _in("c.compartment", compartments)
    own = [c.split("/", 1)[1] for c in compartments if c.startswith("Patient/")]
    own_sql, own_args = _in(f"{r}.id", own)
    sql = (
        f"(EXISTS (SELECT 1 FROM compartment c WHERE c.res = {r}.res AND {comp_sql})"
        f" OR ({r}.type = 'Patient' AND {own_sql}))"
    )
    return sql, [*comp_args, *own_args]


def _compartment_set(compartments: Sequence[str]) -> Sql:
    comp_sql, comp_args = _in("compartment", compartments)
    own = [c.split("/", 1)[1] for c in compartments if c.startswith("Patient/")]
    own_sql, own_args = _in("id", own)
    sql = (
        f"SELECT res FROM compartment WHERE {comp_sql}"
        f" UNION SELECT res FROM resource WHERE type = 'Patient' AND {own_sql}"
    )
    return sql, [*comp_args, *own_args]


def _labels_sql(access: AccessFilter, r: str) -> Sql:
    """Every meta.security code of the label system must be allowed; unlabeled per allow_unlabeled."""
    allowed = sorted(code for system, code in access.allowed_labels or () if system == access.label_system)
    security = pid("*", "_security")
    allowed_sql, allowed_args = _in("l.code", allowed) if allowed else ("0", [])
    sql = (
        f"NOT EXISTS (SELECT 1 FROM ix_token l WHERE l.res = {r}.res AND l.pid = ? AND +l.system = ?"
        f" AND (l.code IS NULL OR NOT ({allowed_sql})))"
    )
    args: list[Any] = [security, access.label_system, *allowed_args]
    if not access.allow_unlabeled:
        sql += f" AND EXISTS (SELECT 1 FROM ix_token l WHERE l.res = {r}.res AND l.pid = ? AND +l.system = ?)"
        args += [security, access.label_system]
    return f"({sql})", args


# -- the search ---------------------------------------------------------------------------------


@dataclass
class _Plan:
    where: str
    args: list[Any]
    keys: str = ""  # extra result columns k0, k1, ... holding the sort keys
    keys_args: list[Any] = field(default_factory=list)
    order: str = "r.res"
    counted: Sql | None = None  # the matches as rows cheaper to count, when there is such a query
    # The same as entries, one per match when its parameters are single-valued (single_valued)
    counted_once: tuple[Sql, list[int]] | None = None
    # The same matches with no driving set, each resource of the type probed in `res` order (_walked)
    walk: Sql | None = None
    # The same matches with no driving set, read in the order of the one date or string sort key
    # (_key_walked)
    key_walk: Sql | None = None
    # Its conditions are written on the entry `e` alone (_entry_walk): no `resource` row is read
    key_walk_on_entry: bool = False
    # The same matches with no driving set, read in `_lastUpdated` order (_updated_walked)
    updated_walk: Sql | None = None
    # The driving set (`SELECT res ...`, holding every match) a walk that found too few may filter by
    driving: Sql | None = None
    # A lone negated criterion (`status:not=final`): the entries its value matches and their pids,
    # whose resources are all the type's live ones but the matches (_walked counts them to stop early)
    complement: tuple[Sql, list[int]] | None = None
    known_total: int | None = None  # the matches' number, when the planning already counted them
    # The criteria were sized store-wide to choose between reading a set and walking (_by_size):
    # past the caller's access, so what the plan became must not show in the answer (_total).
    sized: bool = False
    terms: list[tuple[str, bool, bool]] = field(default_factory=list)  # sort keys: alias, desc, nullable


def search_sql(
    conn: sqlite3.Connection, query: SearchQuery, cursors: CursorSealer | None = None
) -> SearchPage:
    """Run one search on `conn` (blocking; the store picks the thread). `cursors` opens
    `query.after` and seals the page's own cursor; without it pages are by offset only."""
    builder = _Builder(query.access)
    plan = _plan(builder, query, conn)
    after = None
    if query.after is not None:
        if cursors is None:
            raise BadRequest("This search cannot continue from a _cursor; use _offset")
        after = cursors.open(query, query.after)
    page = _page_rows(conn, plan, query, after)
    has_next = len(page) > query.count
    page = page[: query.count]
    rows = [row[0] for row in page]
    matches = _load(conn, rows)
    total = _total(conn, plan, query, len(matches), has_next)
    included = _included(conn, builder, query, rows) if rows else []
    next_offset = query.offset + query.count if has_next else None
    # The last row's sort keys, then its `res`: where the next page continues (SearchQuery.after).
    last = page[-1] if has_next and page else None
    cursor = cursors.seal(query, (*last[1:], last[0])) if last is not None and cursors else None
    return SearchPage(matches, included, total, next_offset, cursor)


def _plan(builder: _Builder, query: SearchQuery, conn: sqlite3.Connection | None = None) -> _Plan:
    """The page query. Given `conn`, the driving set is chosen by size: when several criteria could
    drive, the smallest set is read (sizes are counted only up to WALK_FROM entries); when every one
    is that large and the order is `res`, the type is walked in that order instead, each resource
    probed (for `status=final` the first page is a few dozen probes, where the driving set would
    gather every match first)."""
    types = query.resource_types
    if conn is not None and _mentions_words(query.criteria):
        builder.word_index = sqlite_words.present(conn)
    drives: list[tuple[float, int, Sql]] = []
    for i, crit in enumerate(query.criteria):
        found = builder.driving_set(crit, types, exact=False)
        if found is not None:
            drives.append((found[0], i, found[1]))
    if query.compartment is not None:
        drives.append((1.2, -1, _compartment_set([query.compartment])))
    reach = _access_compartments(query.access)
    if reach:
        drives.append((1.4, -2, _compartment_set(sorted(reach))))
    best = min(drives, key=lambda d: (d[0], d[1])) if drives else None
    walk, listed, sized = False, None, False  # listed: how many resources a small driving set holds
    near_start = query.after is not None or query.offset + query.count < WALK_OFFSET_MOST  # a walk reaches it
    by_key = near_start and _key_ordered(query)
    by_updated = near_start and _updated_ordered(query)
    # `_id` and references (a patient's record, most often) are taken as selective without sizing:
    # sizing costs ~20 us, a tenth of a patient-scoped search.
    if conn is not None and best is not None and best[0] > 1 and best[1] >= 0:
        drives = _within_date_bounds(conn, builder, query, drives)
        best = min(drives, key=lambda d: (d[0], d[1]))
        walkable = (not query.sort and near_start) or by_key or by_updated
        supersets = frozenset(i for i, crit in enumerate(query.criteria) if _superset_drive(crit))
        countable = _index_matches(query, best[2]) is not None  # a lone set's resources are the matches
        best, walk, listed, sized = _by_size(
            conn, drives, best, walkable=walkable, supersets=supersets, countable=countable
        )
    walk = walk or (conn is not None and best is None and by_key)
    complement = _complement(builder, query) if conn is not None and best is None else None
    walk = walk or (complement is not None and not query.sort and near_start)
    counted = _index_matches(query, best[2] if best else None)
    known = listed if counted is not None else None  # the set's distinct resources are its matches
    plan = _Plan(
        *_where(builder, query, best, by_type_index=best is None),
        counted=counted,
        known_total=known,
        sized=sized,
        complement=complement,
    )
    lone = query.criteria[0] if query.criteria else None
    # One SELECT over one table: each entry at most once (an OR list's selects may meet the same
    # entry twice: `date=ge2020,ge2021`), so one entry per match when the parameter is single-valued.
    one_select = best is not None and " UNION ALL " not in best[2][0]
    if counted is not None and best is not None and isinstance(lone, Clause) and one_select:
        plan.counted_once = best[2], _pids(types, lone.param)
    if walk and not query.sort:
        plan.walk = _where(builder, query, None, by_type_index=len(types) == 1)
    elif walk and by_updated:
        plan.updated_walk = _where(builder, query, None, by_type_index=False)
    elif walk:
        on_entry = _entry_walk(builder, query)
        plan.key_walk = on_entry or _where(builder, query, None, by_type_index=False)
        plan.key_walk_on_entry = on_entry is not None
        plan.driving = best[2] if best is not None else None
    return _with_order(plan, query.sort, types)


def _superset_drive(crit: Criterion) -> bool:
    """A criterion whose driving set (at the top of a query) may hold resources it does not match:
    `_text`/`_content` sets are the full-text index's candidates, which are cheap to count (sizing
    a common word's exact set would check thousands of word lists) and checked as the page is read."""
    return isinstance(crit, Clause) and crit.kind in ("text", "content")


def _entry_walk(builder: _Builder, query: SearchQuery) -> Sql | None:
    """A key walk's conditions written on its entry `e`, when nothing in them needs the resource's
    row: each entry of the sort parameter already belongs to a live resource of the type (its `pid`
    names the type; a deletion drops a resource's entries), and plain criteria probe their own
    entries by `res`. Not with access or a compartment, nor criteria on `_id`, `_lastUpdated`,
    words, chains or `_has`. Reading no `resource` row per entry: systolic newest first at 1M,
    6.6 -> 5.1 ms a search (its page query alone 2.9-3.5 -> 1.7 ms)."""
    if query.access is not None or query.compartment is not None or len(query.resource_types) != 1:
        return None
    if not all(isinstance(c, Clause) and _entries_are_matches(c) for c in query.criteria):
        return None
    return _all_of(builder.exists(crit, query.resource_types, "e") for crit in query.criteria)


def _complement(builder: _Builder, query: SearchQuery) -> tuple[Sql, list[int]] | None:
    """For a query of one negated criterion and nothing else (`status:not=final`), the entries of
    the value it negates, with their pids: the matches are the types' live resources without such an
    entry (those without the parameter at all included, as search.html#modifiers has it)."""
    if query.access is not None or query.compartment is not None or not query.resource_types:
        return None
    if len(query.criteria) != 1 or not isinstance(query.criteria[0], Clause) or not query.criteria[0].negate:
        return None
    positive = replace(query.criteria[0], negate=False)
    if positive.kind == "composite" or not _entries_are_matches(positive):
        return None
    found = builder.driving_set(positive, query.resource_types)
    return None if found is None else (found[1], _pids(query.resource_types, positive.param))


def _complement_matches(
    conn: sqlite3.Connection, complement: tuple[Sql, list[int]], types: Sequence[str]
) -> int:
    """How many resources of `types` a lone negated criterion matches: the live ones less those
    with an entry of the value it negates (counted once each; with no DISTINCT when no resource has
    two entries of the parameter). One read of those entries: 726k `final` statuses, ~36 ms."""
    (sql, args), pids = complement
    once = " UNION ALL " not in sql and single_valued(conn, pids)
    counted = f"SELECT count(*) FROM ({sql})" if once else f"SELECT count(DISTINCT res) FROM ({sql})"
    return _live(conn, types) - int(conn.execute(counted, args).fetchone()[0])


def _mentions_words(criteria: Sequence[Criterion]) -> bool:
    """Whether `_text`/`_content` is searched, here or inside a chain or `_has`."""
    return any(
        _superset_drive(crit) or (isinstance(crit, ChainClause | HasClause) and _mentions_words([crit.inner]))
        for crit in criteria
    )


LowBounds = tuple[int | None, int | None]  # [lower, upper) on a date entry's `low`; None: no bound


def _within_date_bounds(
    conn: sqlite3.Connection, builder: _Builder, query: SearchQuery, drives: list[Drive]
) -> list[Drive]:
    """Date criteria's driving sets narrowed to the `low` range all the query's clauses on their
    parameter imply (_date_bounds): `date=ge X&date=lt Y` then reads the entries in between, not
    every entry after X and every one before Y."""
    out: list[Drive] = []
    for rank, i, sql in drives:
        crit = query.criteria[i] if i >= 0 else None
        if isinstance(crit, Clause) and crit.kind == "date":
            bounds = _date_bounds(conn, query, crit.param)
            found = builder.driving_set(crit, query.resource_types, bounds[:2]) if bounds else None
            sql = found[1] if found else sql
        out.append((rank, i, sql))
    return out


def _date_bounds(
    conn: sqlite3.Connection, query: SearchQuery, param: str
) -> tuple[int | None, int | None, int] | None:
    """Bounds on `low` that the one entry of every match for the date `param` keeps to, from all
    the query's clauses on it, and the parameter's widest entry (`span`). Only where no resource
    ever had two entries for it (ix_date_span): with one entry, the one that matches a clause is
    the one that matches the others and gives the sort key; a `gt` on `high` becomes `low` past
    the value less the span."""
    pids = _pids(query.resource_types, param) if len(query.resource_types) == 1 else []
    if len(pids) != 1:
        return None
    try:
        row = conn.execute("SELECT span, multi FROM ix_date_span WHERE pid = ?", (pids[0],)).fetchone()
    except sqlite3.OperationalError as error:  # a store no server of this version has opened yet
        if "no such table" not in str(error):
            raise
        return None
    if row is None or row[1]:
        return None
    span = int(row[0])
    lower: int | None = None
    upper: int | None = None
    for crit in query.criteria:
        if not (isinstance(crit, Clause) and crit.kind == "date" and crit.param == param) or crit.negate:
            continue
        bounds = [_low_bounds(v, span) if isinstance(v, DateValue) else (None, None) for v in crit.values]
        lows, highs = [b[0] for b in bounds], [b[1] for b in bounds]
        if bounds and None not in lows:  # one value or another (OR): the loosest bound holds
            low = min(x for x in lows if x is not None)
            lower = low if lower is None else max(lower, low)
        if bounds and None not in highs:
            high = max(x for x in highs if x is not None)
            upper = high if upper is None else min(upper, high)
    return lower, upper, span


def _low_bounds(value: DateValue, span: int) -> LowBounds:
    """[lower, upper) on `low` of an entry that matches `value` (see _range_sql), when no entry of
    the parameter is wider than `span`."""
    narrow = span < MAX_INSTANT  # an open end somewhere: `high` says nothing of `low`
    s_low, s_high = value.low, value.high
    lower = {
        "eq": s_low,
        "sa": s_high,
        "gt": s_high - span if narrow else None,
        "ge": min(s_low, s_high - span) if narrow else None,
        "ap": s_low - span if narrow else None,
    }.get(value.prefix)
    upper = {"eq": s_high, "ap": s_high, "lt": s_low, "le": s_high, "eb": s_low}.get(value.prefix)
    return lower, upper


def _updated_ordered(query: SearchQuery) -> bool:
    """Sorted by `_lastUpdated` alone, in one type: its index on (type, last_updated) gives that order."""
    if len(query.sort) != 1 or query.sort[0].kind != "lastUpdated" or len(query.resource_types) != 1:
        return False
    return query.compartment is None


def _key_ordered(query: SearchQuery) -> bool:
    """Sorted by one date or string parameter of one type: its entries can be read in that order
    (_key_walked)."""
    if len(query.sort) != 1 or query.sort[0].kind not in _WALK_ORDERS or len(query.resource_types) != 1:
        return False
    return query.compartment is None and len(_pids(query.resource_types, query.sort[0].param)) == 1


def _where(builder: _Builder, query: SearchQuery, best: Drive | None, *, by_type_index: bool) -> Sql:
    """The match condition on `resource r`: the driving set, the type, every other criterion.
    Unless `by_type_index`, the type test is written `+r.type`: the planner then cannot prefer
    reading the type's index over the driving set, or over the rows asked for by `res`."""
    types = query.resource_types
    conds: list[Sql] = [("r.deleted = 0", [])]
    if best is not None:
        conds.append((f"r.res IN ({best[2][0]})", best[2][1]))
    if types:
        conds.append(_in("r.type" if by_type_index else "+r.type", types))
    for i, crit in enumerate(query.criteria):
        # The driving set already applies its own criterion, unless it holds more (_superset_drive).
        if best is None or best[1] != i or _superset_drive(crit):
            conds.append(builder.exists(crit, types, "r"))
    if query.compartment is not None:
        conds.append(_compartment_sql([query.compartment], "r"))
    conds.append(builder.access_sql("r"))
    return _all_of(conds)


Drive = tuple[float, int, Sql]  # (rank, criterion index or -1/-2 for compartments, SELECT res ...)


def _by_size(
    conn: sqlite3.Connection,
    drives: list[Drive],
    best: Drive,
    *,
    walkable: bool,
    supersets: frozenset[int] = frozenset(),
    countable: bool = False,
) -> tuple[Drive, bool, int | None, bool]:
    """The smallest of the criteria's driving sets; whether to walk the type instead; for a set of
    under FEW entries, how many distinct resources it holds; and whether any set was sized (with
    one set and no walk to weigh it against, none is). Such a set is taken at once: reading
    it costs less than sizing the others. A lone criterion's set whose resources are the matches
    (`countable`) has them counted up to WALK_FROM entries too: the total then needs no count of its
    own (a chain over thousands of targets runs twice, not three times). A set of candidates
    (`supersets`: _superset_drive) is sized in one count, as its distinct count is never a total: a
    full-text prefix query merges its candidates whole before the first is read, so each count of
    it costs the same."""
    candidates = sorted((d for d in drives if d[1] >= 0), key=lambda d: (d[0], d[1]))
    if len(candidates) < 2 and not walkable:
        return best, False, None, False
    sized: list[tuple[int, Drive]] = []
    for drive in candidates:
        if drive[1] in supersets:
            size = _entries_upto(conn, drive[2], WALK_FROM)
            if size < FEW:
                return drive, False, None, True
            sized.append((size, drive))
            continue
        sql, args = drive[2]
        entries, distinct = conn.execute(
            f"SELECT count(*), count(DISTINCT res) FROM ({sql} LIMIT ?)", [*args, FEW]
        ).fetchone()
        if entries < FEW:
            return drive, False, int(distinct), True
        if countable and len(candidates) == 1:
            entries, distinct = conn.execute(
                f"SELECT count(*), count(DISTINCT res) FROM ({sql} LIMIT ?)", [*args, WALK_FROM]
            ).fetchone()
            walk = walkable and entries >= WALK_FROM
            return drive, walk, None if entries >= WALK_FROM else int(distinct), True
        sized.append((_entries_upto(conn, drive[2], WALK_FROM), drive))
    size, smallest = min(sized, key=lambda s: s[0])
    return smallest, walkable and size >= WALK_FROM, None, True


def _entries_upto(conn: sqlite3.Connection, rows: Sql, most: int) -> int:
    """How many rows the query `rows` gives, counting no further than `most`."""
    sql = f"SELECT count(*) FROM ({rows[0]} LIMIT ?)"
    return int(conn.execute(sql, [*rows[1], most]).fetchone()[0])


def _index_matches(query: SearchQuery, driving: Sql | None) -> Sql | None:
    """For one plain criterion and nothing else, the matches are exactly the distinct resources of
    its index entries: entries belong to one type through their `pid`, and a deleted resource has
    none. Counting them reads the value index alone, not every match's resource row."""
    if driving is None or query.compartment is not None or query.access is not None:
        return None
    if not query.resource_types or len(query.criteria) != 1 or not _entries_are_matches(query.criteria[0]):
        return None
    return f"SELECT DISTINCT res FROM ({driving[0]})", driving[1]


def _entries_are_matches(crit: Criterion) -> bool:
    """A plain criterion, or a chain ending in one (`subject:Patient.gender=female`: the chain's set
    is the searched type's own reference entries to live targets that match)."""
    if isinstance(crit, ChainClause):
        return isinstance(crit.inner, ChainClause | Clause) and _entries_are_matches(crit.inner)
    return isinstance(crit, Clause) and not crit.param.startswith("_") and crit.kind in _KIND_TABLE


def _with_order(plan: _Plan, keys: Sequence[SortKey], types: Sequence[str]) -> _Plan:
    """Sort keys as result columns; ORDER BY each with missing values last, then `res` (stable)."""
    columns: list[str] = []
    terms: list[str] = []
    for i, key in enumerate(keys):
        direction = "DESC" if key.descending else "ASC"
        expr, expr_args = _sort_expr(key, types)
        if key.kind in ("id", "lastUpdated"):  # never missing; a plain column can follow an index
            columns.append(f", {expr} AS k{i}")
            terms.append(f"{expr} {direction}")
            plan.terms.append((f"k{i}", key.descending, False))
            continue
        columns.append(f", ({expr}) AS k{i}")
        plan.keys_args += expr_args
        terms.append(f"k{i} IS NULL, k{i} {direction}")
        plan.terms.append((f"k{i}", key.descending, True))
    plan.keys = "".join(columns)
    plan.order = ", ".join([*terms, "r.res"])
    return plan


def _sort_expr(key: SortKey, types: Sequence[str]) -> Sql:
    if key.kind == "id":
        return "r.id", []
    if key.kind == "lastUpdated":
        return "r.last_updated", []
    agg = "max" if key.descending else "min"
    # `+` as in _probe: read this resource's entries through the primary key, not the value index.
    column = {
        "date": "+e.high" if key.descending else "+e.low",
        "reference": "coalesce(e.target_type || '/' || e.target_id, e.url)",
        "token": "+e.code",
    }.get(key.kind, "+e.value")
    pid_sql, pid_args = _in("e.pid", _pids(types, key.param))
    table = _KIND_TABLE[key.kind]
    return f"SELECT {agg}({column}) FROM {table} e WHERE e.res = r.res AND {pid_sql}", pid_args


def _page_sql(plan: _Plan, query: SearchQuery) -> Sql:
    sql = f"SELECT r.res{plan.keys} FROM resource r WHERE {plan.where} ORDER BY {plan.order} LIMIT ? OFFSET ?"
    return sql, [*plan.keys_args, *plan.args, query.count + 1, query.offset]


def _page_rows(
    conn: sqlite3.Connection, plan: _Plan, query: SearchQuery, after: Position | None
) -> list[tuple[Any, ...]]:
    """The page's rows, `count + 1` at most: (res, sort key values...)."""
    if query.count == 0:
        return []
    key_walk = plan.key_walk if after is None or after[0] is not None else None
    if plan.walk is None and key_walk is None and plan.updated_walk is None:
        sql, args = _page_sql(plan, query) if after is None else _keyset_sql(plan, query, after)
        return list(conn.execute(sql, args))
    # A walk reads from the start, or from the cursor (which replaces the offset): the offset's
    # matches are found, then dropped.
    skip = query.offset if after is None else 0
    from_start = replace(query, count=skip + query.count, offset=0)
    if plan.walk is not None:
        return _walked(conn, plan, plan.walk, from_start, 0 if after is None else after[-1])[skip:]
    if plan.updated_walk is not None:
        return _updated_walked(conn, plan, plan.updated_walk, from_start, after)[skip:]
    assert key_walk is not None
    return _key_walked(conn, plan, key_walk, from_start, after)[skip:]


def _updated_walked(
    conn: sqlite3.Connection, plan: _Plan, walk: Sql, query: SearchQuery, after: Position | None
) -> list[tuple[Any, ...]]:
    """The page sorted by `_lastUpdated`, read from the type's (type, last_updated) index in that
    order, each resource probed; ties by `res`. The walk reads whole tie groups (resources written
    together share their time) and stops before the WALK_MOST-th resource's time; when that holds
    too few matches, the driving-set plan finishes the page after the last match found."""
    desc, want = query.sort[0].descending, query.count + 1
    (kind,) = query.resource_types
    op = "<=" if desc else ">="
    start: Sql = _TRUE if after is None else (f"r.last_updated {op} ?", [after[0]])
    order = "r.last_updated DESC" if desc else "r.last_updated"
    index = "FROM resource r INDEXED BY resource_type_updated WHERE r.type = ?"
    edge = conn.execute(
        f"SELECT r.last_updated {index} AND {start[0]} ORDER BY {order} LIMIT 1 OFFSET ?",
        [kind, *start[1], WALK_MOST - 1],
    ).fetchone()
    # Up to the edge's time, not into it: a tie group there may hold any number of resources.
    upto: Sql = (f"r.last_updated {'>' if desc else '<'} ?", [edge[0]]) if edge else _TRUE
    rows = conn.execute(
        f"SELECT r.res, r.last_updated {index} AND {start[0]} AND {upto[0]} AND {walk[0]} ORDER BY {order}",
        [kind, *start[1], *upto[1], *walk[1]],
    )
    found: list[tuple[Any, int]] = []  # (time, res) of matches, in walk order
    for res, updated in rows:
        if len(found) >= want and updated != found[want - 1][0]:
            break  # the page is full, and nothing further ties with its last match
        if _beyond((updated, res), after, desc):
            found.append((updated, res))
    # Short of a page only when walked to the edge's time (or through the whole type: then no more).
    return _finish_walk(conn, plan, query, found, after, more=edge is not None)


def _walked(
    conn: sqlite3.Connection, plan: _Plan, walk: Sql, query: SearchQuery, start: int
) -> list[tuple[Any, ...]]:
    """The page in `res` order after `start`, walking at most WALK_MOST resources of the type; when
    those hold too few matches (a rare combination of common criteria), the rest of the page comes
    from the driving-set plan, after the last resource walked."""
    want = query.count + 1
    types = query.resource_types
    one_type = len(types) == 1
    edge_sql = (
        "SELECT res FROM resource WHERE type = ? AND res > ? ORDER BY res LIMIT 1 OFFSET ?"
        if one_type
        else "SELECT res FROM resource WHERE res > ? ORDER BY res LIMIT 1 OFFSET ?"
    )
    edge = conn.execute(edge_sql, [*(types if one_type else ()), start, WALK_MOST - 1]).fetchone()
    rows = list(conn.execute(*_walk_sql(walk, start, edge[0] if edge else None, want)))
    if len(rows) < want and edge:
        more = want - len(rows)
        if plan.complement is not None and start == 0:
            # The matches of a negated criterion are rare here: count them, and stop reading once
            # the last is found (none left: `status:not=final` where every Observation is final
            # read all 726k of them, 0.5 s; counted, ~36 ms). The walk found every match up to
            # the edge, and the count is the total.
            plan.known_total = _complement_matches(conn, plan.complement, types)
            more = min(more, plan.known_total - len(rows))
        if more > 0:
            sql = f"SELECT r.res FROM resource r WHERE {plan.where} AND r.res > ? ORDER BY r.res LIMIT ?"
            rows += conn.execute(sql, [*plan.args, edge[0], more])
    return rows


def _key_walked(
    conn: sqlite3.Connection, plan: _Plan, walk: Sql, query: SearchQuery, after: Position | None
) -> list[tuple[Any, ...]]:
    """The page sorted by one date (or string) parameter, read from its entries in that order:
    ascending by the lowest `low` (value) of each resource, its first entry in that order,
    descending by the highest `high` (value), ties by `res`. SQLite probes each entry's resource
    against the criteria; the walk stops once the page is full and no later entry can tie with its
    last match. Past WALK_MOST entries, or at the entries' end (resources without the parameter
    sort last), the driving-set plan finishes the page, after the last match found."""
    key = query.sort[0]
    desc, want = key.descending, query.count + 1
    (p,) = _pids(query.resource_types, key.param)
    key_sql, key_args = _sort_expr(key, query.resource_types)
    table, columns = _WALK_ORDERS[key.kind][desc]
    value = columns[0]
    order = ", ".join(f"{c} DESC" if desc else c for c in columns)
    entry = f"({', '.join(columns)})"
    start: Sql = _TRUE if after is None else (f"{value} {'<=' if desc else '>='} ?", [after[0]])
    bounds = _date_bounds(conn, query, key.param) if after is None and key.kind == "date" else None
    if bounds is not None:  # start where the first match can be (from the cursor, it is after that)
        lower, upper, span = bounds
        if not desc and lower is not None:
            start = ("e.low >= ?", [lower])
        elif desc and upper is not None and span < MAX_INSTANT:
            start = ("e.high < ?", [upper + span])  # high <= low + span < upper + span
    ahead = f"SELECT {entry[1:-1]} FROM {table} e WHERE e.pid = ? AND {start[0]} ORDER BY {order}"
    edge = conn.execute(f"{ahead} LIMIT 1 OFFSET ?", [p, *start[1], WALK_MOST - 1]).fetchone()
    upto: Sql = (
        (f"{entry} {'>=' if desc else '<='} ({','.join('?' * len(edge))})", list(edge)) if edge else _TRUE
    )
    joined = "" if plan.key_walk_on_entry else " CROSS JOIN resource r ON r.res = e.res"
    walked = f"SELECT e.res, {value} FROM {table} e{joined} WHERE e.pid = ? AND {start[0]}"
    rows = conn.execute(
        f"{walked} AND {upto[0]} AND {walk[0]} ORDER BY {order}", [p, *start[1], *upto[1], *walk[1]]
    )
    # From the first entry, each resource's first entry in walk order holds its key. From a start
    # (a cursor, a date bound), earlier entries were skipped: the key is looked up, once per
    # resource met (never per entry: one with 5,000 names made that quadratic, 2 s a page).
    key_of: Sql | None = (
        (f"SELECT ({key_sql}) FROM resource r WHERE r.res = ?", key_args) if start != _TRUE else None
    )
    found, ended = _keys_met(conn, rows, want, key_of, after, desc)
    if ended and edge and plan.driving is not None:
        # Too few matches among the first WALK_MOST entries (the criteria match entries late in this
        # order: `booked` appointments by date come after years of past ones). Walk again, to the
        # end, reading the driving set once and probing only the entries of resources in it: it
        # holds every match, and each entry's test is then a lookup in memory. `+` keeps SQLite
        # from reading the set first and sorting it, which is what the driving-set plan would do.
        driving_sql, driving_args = plan.driving
        rows = conn.execute(
            f"{walked} AND +e.res IN ({driving_sql}) AND {walk[0]} ORDER BY {order}",
            [p, *start[1], *driving_args, *walk[1]],
        )
        found, ended = _keys_met(conn, rows, want, key_of, after, desc)
        edge = None
    if ended:
        # Walked to the edge, or to the end (then only resources without the key are left).
        last = edge[0] if edge else None
        found = [f for f in found if last is None or f[0] != last]  # ties at the edge may go on
    # Short of a page only after a walk to the edge or the end: a full page stopped early.
    return _finish_walk(conn, plan, query, found, after, more=True)


def _keys_met(
    conn: sqlite3.Connection,
    rows: Iterable[tuple[int, Any]],
    want: int,
    key_of: Sql | None,
    after: Position | None,
    desc: bool,
) -> tuple[list[tuple[Any, int]], bool]:
    """The (key, res) of the matches a key walk's entries (res, value) meet, in walk order, and
    whether the walk ran out of entries (else it stopped with a full page, nothing further tying
    with its last match). `key_of` looks up a resource's key when the walk did not start at the
    first entry."""
    seen: set[int] = set()
    found: list[tuple[Any, int]] = []
    for res, reached in rows:
        if len(found) >= want and reached != found[want - 1][0]:
            return found, False  # the page is full, and nothing further ties with its last match
        if res in seen:
            continue
        seen.add(res)
        k = reached if key_of is None else conn.execute(key_of[0], [*key_of[1], res]).fetchone()[0]
        # Its key is this entry's value unless an earlier entry (before the cursor) holds it.
        if k == reached and _beyond((k, res), after, desc):
            found.append((k, res))
    return found, True


def _finish_walk(
    conn: sqlite3.Connection,
    plan: _Plan,
    query: SearchQuery,
    found: list[tuple[Any, int]],
    after: Position | None,
    *,
    more: bool,
) -> list[tuple[Any, ...]]:
    """The page's rows from the (key, res) matches a walk in one sort key's order found: by that key,
    ties by `res`; when they are short of a page and `more` may lie past the walk, the driving-set
    plan finishes the page after the last of them (or after the cursor)."""
    want = query.count + 1
    found.sort(key=lambda f: f[1])  # ties by `res`, ascending either way (the sort is stable)
    found.sort(key=lambda f: f[0], reverse=query.sort[0].descending)
    done = [(res, k) for k, res in found[:want]]
    if len(done) < want and more:
        position: Position | None = (done[-1][1], done[-1][0]) if done else after
        rest = replace(query, count=want - len(done) - 1)
        sql, args = _page_sql(plan, rest) if position is None else _keyset_sql(plan, rest, position)
        done += conn.execute(sql, args).fetchall()
    return done


# The entries a walk in one parameter's order reads, by kind and direction: their table and the
# columns of that order (then `res`, `n`), which an index on (pid, those columns) serves: ascending
# by each resource's lowest `low` (or value), descending by its highest `high` (or value).
_WALK_ORDERS: dict[str, dict[bool, tuple[str, tuple[str, ...]]]] = {
    "date": {
        False: ("ix_date", ("e.low", "e.high", "e.res", "e.n")),
        True: ("ix_date", ("e.high", "e.low", "e.res", "e.n")),
    },
    "string": {
        False: ("ix_string", ("e.value", "e.res", "e.n")),
        True: ("ix_string", ("e.value", "e.res", "e.n")),
    },
}


def _beyond(match: tuple[Any, int], after: Position | None, desc: bool) -> bool:
    """Whether (key, res) comes after the cursor's position in the sort order."""
    if after is None:
        return True
    key, res = match
    if key != after[0]:
        return bool(key < after[0]) if desc else bool(key > after[0])
    return bool(res > after[-1])


def _walk_sql(walk: Sql, start: int, edge: int | None, want: int) -> Sql:
    upto = ("r.res <= ?", [edge]) if edge is not None else _TRUE
    sql = f"SELECT r.res FROM resource r WHERE {walk[0]} AND r.res > ? AND {upto[0]} ORDER BY r.res LIMIT ?"
    return sql, [*walk[1], start, *upto[1], want]


def _keyset_sql(plan: _Plan, query: SearchQuery, after: Sequence[Any]) -> Sql:
    """The page that follows the row whose sort keys and `res` are `after`, by the same order:
    the match query as a subquery, then "strictly after" over its key columns."""
    if len(after) != len(plan.terms) + 1:
        raise BadRequest(
            "The _cursor value belongs to a search sorted another way; start again from the first page"
        )
    order: list[str] = []
    ordered: list[tuple[str, bool, Any]] = []  # expression, descending, the value after which to go on
    for (alias, descending, nullable), value in zip(plan.terms, after, strict=False):
        if nullable:  # missing values sort last: first the flag, then the value itself
            order.append(f"{alias} IS NULL")
            ordered.append((f"({alias} IS NULL)", False, int(value is None)))
        order.append(f"{alias} {'DESC' if descending else 'ASC'}")
        ordered.append((alias, descending, value))
    ordered.append(("res", False, after[-1]))
    where, args = _strictly_after(ordered)
    inner = f"SELECT r.res AS res{plan.keys} FROM resource r WHERE {plan.where}"
    tail = f"WHERE {where} ORDER BY {', '.join([*order, 'res'])} LIMIT ?"
    if any(nullable for _, _, nullable in plan.terms) and _MATERIALIZED:
        # Keys computed by subqueries: compute each once per match. Flattened, SQLite would run a
        # key's subquery again for every place the condition and the order name it.
        sql = f"WITH m AS MATERIALIZED ({inner}) SELECT * FROM m {tail}"
    else:  # plain columns: flattened, the planner can follow an index and stop at the page's end
        sql = f"SELECT * FROM ({inner}) {tail}"
    return sql, [*plan.keys_args, *plan.args, *args, query.count + 1]


def _strictly_after(ordered: Sequence[tuple[str, bool, Any]]) -> Sql:
    """(a > x) OR (a = x AND b > y) OR ...; a NULL value has nothing after it within its group."""
    branches: list[str] = []
    branch_args: list[Any] = []
    same: list[str] = []
    same_args: list[Any] = []
    for expr, descending, value in ordered:
        if value is not None:
            branches.append(" AND ".join([*same, f"{expr} {'<' if descending else '>'} ?"]))
            branch_args += [*same_args, value]
            same.append(f"{expr} = ?")
            same_args.append(value)
        else:
            same.append(f"{expr} IS NULL")
    if not branches:
        return _FALSE
    return " OR ".join(f"({b})" for b in branches), branch_args


def explain(conn: sqlite3.Connection, query: SearchQuery, after: Position | None = None) -> list[str]:
    """EXPLAIN QUERY PLAN of the page query (continuing after `after`), one line per step."""
    plan = _plan(_Builder(query.access), query, conn)
    if plan.walk is not None:
        sql, args = _walk_sql(plan.walk, 0 if after is None else after[-1], 1 << 40, query.count + 1)
    else:
        sql, args = _page_sql(plan, query) if after is None else _keyset_sql(plan, query, after)
    return [str(row[3]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args)]


def _total(
    conn: sqlite3.Connection, plan: _Plan, query: SearchQuery, found: int, has_next: bool
) -> int | None:
    if query.total == "none" and query.count > 0:
        return None
    if query.count > 0 and not has_next and (found or query.offset == 0):
        return query.offset + found  # the last page tells the total without counting
    if not query.criteria and query.compartment is None and query.access is None:
        live = _live(conn, query.resource_types)  # every resource of the types: counted at write time
        return None if query.total == "bounded" and live > query.total_cap else live
    if (
        plan.known_total is None
        and plan.complement is not None
        and (query.count == 0 or query.total != "bounded")
    ):
        # Asked for, or all the answer holds: the live resources less those with the negated
        # value, without probing each resource (an unasked total beside a page is left as below).
        plan.known_total = _complement_matches(conn, plan.complement, query.resource_types)
    if plan.known_total is not None:
        bounded = query.total == "bounded" and plan.known_total > query.total_cap
        return None if bounded else plan.known_total
    if query.total == "bounded" and query.count > 0 and query.access is not None and plan.sized:
        # Sized past the caller's access, the criteria were either read or walked, and a walked
        # page has no total (below): whether one appeared would tell them about resources out of
        # their reach (padded to WALK_FROM, whether one more NHS number is registered elsewhere).
        # So neither gives one unasked; `_total=accurate` counts within reach.
        return None
    # (A lone negation's walk in `res` order probes as the plan before it did: its bounded count too.)
    res_walk = plan.walk is not None and plan.complement is None
    walked = res_walk or (plan.key_walk or plan.updated_walk) is not None
    if query.total == "bounded" and query.count > 0 and walked and query.criteria and plan.counted is None:
        # Walked because the criteria match too much to read (or have no index): counting even to
        # the cap would probe the matches one by one (a `_has` over every systolic reading at 1M:
        # 116 ms for 1,001). With no criteria the walk is the type's own, and counting it is cheap;
        # with `_count=0` the total is all the answer holds, and no page was walked for it.
        return None
    rows, args = plan.counted or (f"SELECT 1 FROM resource r WHERE {plan.where}", plan.args)
    if plan.counted_once is not None and single_valued(conn, plan.counted_once[1]):
        rows, args = plan.counted_once[0]  # no DISTINCT: 124 -> ~35 ms for 726k matches
    if query.total != "bounded":
        return int(conn.execute(f"SELECT count(*) FROM ({rows})", args).fetchone()[0])
    counted = _entries_upto(conn, (rows, args), query.total_cap + 1)  # past the cap, no total
    return counted if counted <= query.total_cap else None


def _live(conn: sqlite3.Connection, types: Sequence[str]) -> int:
    """How many live resources `types` (none: every type) have: as the writes keep count, or
    counted, when code that keeps no count wrote last (stamp_current)."""
    where, args = _in("type", types) if types else ("1", [])
    if not stamp_current(conn, TYPE_COUNTS):
        sql = f"SELECT count(*) FROM resource WHERE {where} AND deleted = 0"
    else:
        sql = f"SELECT coalesce(sum(live), 0) FROM type_count WHERE {where}"
    return int(conn.execute(sql, args).fetchone()[0])


# store_meta stamps: the newest version `vid` that each table kept by the writes accounts for.
TYPE_COUNTS = "type-counts"  # type_count
MULTI = "multi-pids"  # ix_multi


def stamp_current(conn: sqlite3.Connection, name: str) -> bool:
    """Whether the table stamped `name` accounts for every version written (two primary-key
    lookups): not when code that does not keep it wrote last."""
    row = conn.execute("SELECT value FROM store_meta WHERE name = ?", (name,)).fetchone()
    return row is not None and row[0] == newest_vid(conn)


def set_stamp(conn: sqlite3.Connection, name: str) -> None:
    conn.execute("INSERT OR REPLACE INTO store_meta VALUES (?, ?)", (name, newest_vid(conn)))


def newest_vid(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(vid), 0) FROM version").fetchone()[0])


_LOAD = """SELECT r.res, r.type, r.id, v.version, v.last_updated, v.deleted, v.method, v.body
    FROM resource r JOIN version v ON v.res = r.res AND v.version = r.version WHERE r.res IN ({})"""


def _load(conn: sqlite3.Connection, res_ids: Sequence[int]) -> list[StoredResource]:
    """The current versions of `res_ids`, in that order."""
    if not res_ids:
        return []
    found: dict[int, StoredResource] = {}
    for res, rtype, rid, version, updated, deleted, method, body in conn.execute(
        _LOAD.format(",".join("?" * len(res_ids))), list(res_ids)
    ):
        found[res] = StoredResource(
            rtype, rid, version, from_micros(updated), bool(deleted), body or b"", method
        )
    return [found[r] for r in res_ids if r in found]


# -- _include / _revinclude ---------------------------------------------------------------------


def _included(
    conn: sqlite3.Connection, builder: _Builder, query: SearchQuery, matched: list[int]
) -> list[StoredResource]:
    """Resources the page includes or that refer to it, within the access filter; no duplicates."""
    seen = set(matched)
    added: list[int] = []
    frontier = matched
    tagged = [(i, False) for i in query.includes] + [(i, True) for i in query.revincludes]
    for round_ in range(MAX_ITERATIONS + 1):
        wanted = [(i, reverse) for i, reverse in tagged if round_ == 0 or i.iterate]
        if not wanted or not frontier:
            break
        new: list[int] = []
        for include, reverse in wanted:
            for res in _include_step(conn, builder, include, frontier, reverse=reverse):
                if res not in seen and len(added) + len(new) < MAX_INCLUDES:
                    seen.add(res)
                    new.append(res)
        added += new
        frontier = new
    return _load(conn, added)


def _include_step(
    conn: sqlite3.Connection, builder: _Builder, include: Include, sources: list[int], *, reverse: bool
) -> list[int]:
    sql, args = (_revinclude_sql if reverse else _include_sql)(builder, include, sources)
    return [row[0] for row in conn.execute(sql, args)]


def _include_sql(builder: _Builder, include: Include, sources: list[int]) -> Sql:
    """Targets of the sources' references through `include.param` (any reference for `*`)."""
    src_sql, src_args = _in("f.res", sources)
    conds: list[Sql] = [(src_sql, src_args), ("t.deleted = 0", [])]
    if include.param is not None and include.source_type is not None:
        conds.append(("f.pid = ?", [pid(include.source_type, include.param)]))
    if include.source_type is not None:
        conds.append(("s.type = ?", [include.source_type]))
    if include.target_type is not None:
        conds.append(("t.type = ?", [include.target_type]))
    conds.append(builder.access_sql("t"))
    where, args = _all_of(conds)
    sql = (
        "SELECT DISTINCT t.res FROM ix_ref f CROSS JOIN resource s ON s.res = f.res"
        f" CROSS JOIN resource t ON t.type = f.target_type AND t.id = f.target_id WHERE {where}"
    )
    for params, urls in _canonical_groups(include.canonical):
        # the sources' distinct canonicals first, then the targets holding each url (all versions once)
        named = _all_of([_in("f.res", sources), _in("f.pid", params), _canonical_entry("f")])
        canonical = _all_of(
            [
                _in("u.pid", urls),
                (f"u.value IN (SELECT f.url FROM ix_ref f WHERE {named[0]})", named[1]),
                ("t.deleted = 0", []),
                builder.access_sql("t"),
            ]
        )
        sql += (
            f" UNION SELECT t.res FROM ix_uri u CROSS JOIN resource t ON t.res = u.res WHERE {canonical[0]}"
        )
        args += canonical[1]
    return sql, args


def _revinclude_sql(builder: _Builder, include: Include, targets: list[int]) -> Sql:
    """Resources whose `include.param` refers to one of `targets` (any reference for `*`)."""
    tgt_sql, tgt_args = _in("t.res", targets)
    conds: list[Sql] = [(tgt_sql, tgt_args)]
    if include.param is not None and include.source_type is not None:
        conds.append(("f.pid = ?", [pid(include.source_type, include.param)]))
    if include.source_type is not None:
        conds.append(("s.type = ?", [include.source_type]))
    if include.target_type is not None:
        conds.append(("t.type = ?", [include.target_type]))
    conds.append(builder.access_sql("s"))
    where, args = _all_of(conds)
    sql = (
        "SELECT DISTINCT s.res FROM resource t CROSS JOIN ix_ref f ON f.target_id = t.id"
        f" AND f.target_type = t.type CROSS JOIN resource s ON s.res = f.res WHERE {where}"
    )
    for params, urls in _canonical_groups(include.canonical):
        # the targets' distinct urls first, then the canonicals naming each (every version once)
        named = _all_of([_in("u.res", targets), _in("u.pid", urls)])
        canonical = _all_of(
            [
                _in("f.pid", params),
                _canonical_entry("f"),
                (f"f.url IN (SELECT u.value FROM ix_uri u WHERE {named[0]})", named[1]),
                builder.access_sql("s"),
            ]
        )
        sql += (
            f" UNION SELECT s.res FROM ix_ref f CROSS JOIN resource s ON s.res = f.res WHERE {canonical[0]}"
        )
        args += canonical[1]
    return sql, args
