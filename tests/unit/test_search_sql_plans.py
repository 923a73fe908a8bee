"""The portal's searches use indexes in SQLite: no step scans a table (EXPLAIN QUERY PLAN).

A plan that scans grows with the store; these stay flat from 10k to 1M resources. The store's own
schema is used, on an empty in-memory database (the plan does not depend on the data: the SQL
forces its driving index and keeps per-resource probes on primary keys).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from dataclasses import replace

import pytest

from fhir_server.search.parse import parse_search
from fhir_server.storage import sqlite_index
from fhir_server.storage.sqlite import CORE_SCHEMA


@pytest.fixture(scope="module")
def conn() -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(":memory:")
    for statement in [*CORE_SCHEMA, *sqlite_index.SCHEMA]:
        connection.execute(statement)
    yield connection
    connection.close()


PORTAL_QUERIES = [
    ("DocumentReference", "patient=p1&_sort=-date&_count=20"),
    ("Appointment", "patient=p1&date=ge2026-11-24&_sort=date"),
    ("Observation", "patient=p1&code=http://loinc.org|8480-6&date=ge2026-01-01&_sort=date"),
    ("Patient", "identifier=https://fhir.nhs.uk/Id/nhs-number|9990000018"),
    ("Patient", "name=smi"),
    ("Patient", "_id=p1&_revinclude=Consent:patient"),
    ("DocumentReference", "subject:Patient.identifier=https://fhir.nhs.uk/Id/nhs-number|9990000018"),
    ("Patient", "_has:Observation:patient:code=8480-6"),
    ("Observation", "subject=Patient/p1&_sort=-_lastUpdated"),
]


@pytest.mark.parametrize(("resource_type", "query"), PORTAL_QUERIES)
def test_portal_query_plans_never_scan(conn: sqlite3.Connection, resource_type: str, query: str) -> None:
    params = [(p.split("=", 1)[0], p.split("=", 1)[1]) for p in query.split("&")]
    plan = sqlite_index.explain(conn, parse_search(resource_type, params).query)
    assert plan[0] == "SEARCH r USING INTEGER PRIMARY KEY (rowid=?)"
    assert not [step for step in plan if step.startswith("SCAN")], plan


@pytest.mark.parametrize("materialized", [True, False])
@pytest.mark.parametrize(("resource_type", "query"), PORTAL_QUERIES)
def test_next_pages_by_cursor_never_scan_the_store(
    conn: sqlite3.Connection,
    monkeypatch: pytest.MonkeyPatch,
    resource_type: str,
    query: str,
    materialized: bool,
) -> None:
    """A page after a cursor reads the same indexes as the first page (only the page's own
    matches, materialised when their sort keys come from subqueries, are scanned)."""
    monkeypatch.setattr(sqlite_index, "_MATERIALIZED", materialized)
    params = [(p.split("=", 1)[0], p.split("=", 1)[1]) for p in query.split("&")]
    parsed = parse_search(resource_type, params).query
    after = (*([None] * len(parsed.sort)), 7)
    plan = sqlite_index.explain(conn, replace(parsed, offset=20), after)
    assert not [step for step in plan if step.startswith("SCAN") and step != "SCAN m"], plan


@pytest.mark.parametrize(
    ("resource_type", "query"),
    [
        ("Observation", "status=final"),
        ("Observation", "code=http://loinc.org|8480-6&status=final"),
        ("Observation", "status=final&value-quantity=gt100"),
    ],
)
@pytest.mark.parametrize("offset", [0, 40])
def test_a_walk_follows_the_type_in_order_and_sorts_nothing(
    conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch, resource_type: str, query: str, offset: int
) -> None:
    """When every driving set is large (here: from 0 entries), the page walks the type's own index
    in `res` order and stops at the page's end: no temporary b-tree, no driving set read whole.
    A page by `_offset` (as a `previous` link gives) walks too, from the start."""
    monkeypatch.setattr(sqlite_index, "FEW", 0)
    monkeypatch.setattr(sqlite_index, "WALK_FROM", 0)
    params = [(p.split("=", 1)[0], p.split("=", 1)[1]) for p in query.split("&")]
    plan = sqlite_index.explain(conn, replace(parse_search(resource_type, params).query, offset=offset))
    assert plan[0].startswith("SEARCH r USING INDEX resource_type (type=? AND rowid>? AND rowid<?)"), plan
    assert not [step for step in plan if "TEMP B-TREE" in step or "LIST SUBQUERY" in step], plan


def test_a_deep_offset_reads_the_driving_set(
    conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past WALK_OFFSET_MOST matches a walk would mostly give up: the page reads the driving set."""
    monkeypatch.setattr(sqlite_index, "FEW", 0)
    monkeypatch.setattr(sqlite_index, "WALK_FROM", 0)
    query = parse_search("Observation", [("status", "final")]).query
    deep = replace(query, offset=sqlite_index.WALK_OFFSET_MOST)
    assert sqlite_index.explain(conn, replace(query, offset=40))[0].startswith(
        "SEARCH r USING INDEX resource_type"
    )
    assert not sqlite_index.explain(conn, deep)[0].startswith("SEARCH r USING INDEX resource_type")


@pytest.mark.parametrize(
    ("resource_type", "query"),
    [
        ("Observation", "subject:Patient.name=smith"),
        ("Observation", "status=final&subject:Patient.name=smith"),
        ("Observation", "subject.organization.name=leeds"),
        ("Patient", "_has:Observation:patient:code=8480-6"),
        ("Patient", "gender=female&_has:Observation:patient:code=8480-6"),
    ],
)
def test_chains_and_has_probed_per_resource_never_read_a_whole_type(
    conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch, resource_type: str, query: str
) -> None:
    """A walk probes each resource for its chain or `_has`: from its own references (or those to
    it) to the other end by (type, id). Reading the other end's whole type for every resource probed
    took one chained search at 1M from 13 ms to beyond 15 s."""
    monkeypatch.setattr(sqlite_index, "FEW", 0)
    monkeypatch.setattr(sqlite_index, "WALK_FROM", 0)
    params = [(p.split("=", 1)[0], p.split("=", 1)[1]) for p in query.split("&")]
    plan = sqlite_index.explain(conn, parse_search(resource_type, params).query)
    assert plan[0].startswith("SEARCH r USING INDEX resource_type (type=? AND rowid>? AND rowid<?)"), plan
    assert not [step for step in plan[1:] if "resource_type" in step or step.startswith("SCAN")], plan


@pytest.mark.parametrize(
    ("resource_type", "param", "value"),
    [
        ("Observation", "subject:Patient.name", "smith"),
        ("Observation", "subject.organization.name", "leeds"),
        ("Patient", "_has:Observation:patient:code", "8480-6"),
        ("Patient", "_has:Observation:patient:code", "8480-6,8462-4"),
    ],
)
def test_chain_and_has_sets_stream_so_sizing_them_stops_early(
    conn: sqlite3.Connection, resource_type: str, param: str, value: str
) -> None:
    """Sizing a driving set reads at most n of its rows (LIMIT n). A chain's or `_has`'s inner set
    is read as the rows are wanted, not gathered whole first into a LIST SUBQUERY (every systolic
    reading's patient at 1M: ~120 ms before the first row)."""
    query = parse_search(resource_type, [(param, value)]).query
    found = sqlite_index._Builder(None).driving_set(query.criteria[0], query.resource_types)
    assert found is not None
    sql, args = found[1]
    explained = conn.execute(f"EXPLAIN QUERY PLAN SELECT count(*) FROM ({sql} LIMIT ?)", [*args, 500])
    plan = [str(row[3]) for row in explained]
    assert not [step for step in plan if "LIST SUBQUERY" in step or "TEMP B-TREE" in step], plan
    assert not [step for step in plan if step.startswith("SCAN") and "subquery" not in step], plan


@pytest.mark.parametrize(
    "query",
    [
        "component-code-value-quantity=http://loinc.org|8480-6$gt140",
        "component-code-value-quantity=8480-6$gt140,8462-4$gt90",
        "code-value-quantity=8480-6$gt140&status=final",
    ],
)
def test_a_composite_drives_by_its_first_code(conn: sqlite3.Connection, query: str) -> None:
    """A composite whose first component is a code reads that code's rows through the partial index
    ix_composite_first, not every resource of the type (300 ms at 1M, for no match)."""
    params = [(p.split("=", 1)[0], p.split("=", 1)[1]) for p in query.split("&")]
    plan = sqlite_index.explain(conn, parse_search("Observation", params).query)
    assert plan[0] == "SEARCH r USING INTEGER PRIMARY KEY (rowid=?)", plan
    assert [step for step in plan if "ix_composite_first" in step], plan
    assert not [step for step in plan if step.startswith("SCAN")], plan


@pytest.mark.parametrize("sort", ["-_lastUpdated", "_lastUpdated"])
def test_sorted_by_last_updated_over_large_sets_walks_that_index(
    conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch, sort: str
) -> None:
    """With every driving set large (here: from 0 entries), a page sorted by `_lastUpdated` is read
    from the type's (type, last_updated) index in that order, each resource probed, instead of
    reading and sorting every match (`Observation?status=final&_sort=-_lastUpdated` at 1M: 234 ms)."""
    monkeypatch.setattr(sqlite_index, "FEW", 0)
    monkeypatch.setattr(sqlite_index, "WALK_FROM", 0)
    query = parse_search("Observation", [("status", "final"), ("_sort", sort)]).query
    plan = sqlite_index._plan(sqlite_index._Builder(None), query, conn)
    assert plan.updated_walk is not None and plan.walk is None and plan.key_walk is None


@pytest.mark.parametrize(
    ("resource_type", "query"),
    [
        ("Patient", "_sort=family"),
        ("Patient", "gender=female&_sort=-family"),
        ("Observation", "_sort=date"),
        ("Observation", "status=final&_sort=-date"),
    ],
)
def test_a_walk_in_a_parameters_order_reads_its_index_and_sorts_nothing(
    conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch, resource_type: str, query: str
) -> None:
    """Sorted by one date or string, with every driving set large (here: from 0 entries), the page
    walks that parameter's entries through its value index in order: no statement the search runs
    builds a temporary b-tree to sort (sorting `Patient?_sort=family` at 1M took 35 ms)."""
    monkeypatch.setattr(sqlite_index, "FEW", 0)
    monkeypatch.setattr(sqlite_index, "WALK_FROM", 0)
    params = [(p.split("=", 1)[0], p.split("=", 1)[1]) for p in query.split("&")]
    parsed = parse_search(resource_type, params).query
    assert sqlite_index._plan(sqlite_index._Builder(None), parsed, conn).key_walk is not None
    ran: list[str] = []
    conn.set_trace_callback(ran.append)
    try:
        sqlite_index.search_sql(conn, replace(parsed, total="none"))
    finally:
        conn.set_trace_callback(None)
    # The walk reads (res, value) from the parameter's entries, joined to `resource` or not (_entry_walk).
    walks = [sql for sql in ran if re.match(r"SELECT e\.res, e\.\w+ FROM ix_\w+ e\b", sql)]
    assert walks, ran
    for sql in walks:
        plan = [str(row[3]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
        assert not [step for step in plan if "TEMP B-TREE" in step], plan


def _url_steps(plan: list[str]) -> list[str]:
    """Steps that meet a canonical: a url's reference entries (ix_ref_url) or `url` entries (ix_uri_value)."""
    return [step for step in plan if "ix_ref_url" in step or "ix_uri_value" in step]


@pytest.mark.parametrize(
    ("resource_type", "query"),
    [
        ("QuestionnaireResponse", "questionnaire.status=active"),
        ("QuestionnaireResponse", "status=completed&questionnaire:Questionnaire.title=phq"),
        ("CarePlan", "instantiates-canonical:PlanDefinition.definition:Questionnaire.title=phq"),
        ("Questionnaire", "_has:QuestionnaireResponse:questionnaire:status=completed"),
        ("Questionnaire", "status=active&_has:QuestionnaireResponse:questionnaire:status=completed"),
    ],
)
@pytest.mark.parametrize("walked", [False, True])
def test_chains_and_has_through_canonicals_follow_the_url_indexes(
    conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch, resource_type: str, query: str, walked: bool
) -> None:
    """A canonical is met through the url indexes, from its reference entry to the target's `url`
    entry or back, whether the chain or `_has` drives the page or each resource walked is probed:
    no step reads a whole table."""
    if walked:
        monkeypatch.setattr(sqlite_index, "FEW", 0)
        monkeypatch.setattr(sqlite_index, "WALK_FROM", 0)
    params = [(p.split("=", 1)[0], p.split("=", 1)[1]) for p in query.split("&")]
    plan = sqlite_index.explain(conn, parse_search(resource_type, params).query)
    assert _url_steps(plan), plan
    # Scans of a subquery or of a named inner set (`t1_in`, a WITH both kinds of reference read)
    # read the driving set, which is itself found through indexes; never a table.
    tables = [s for s in plan if s.startswith("SCAN") and "subquery" not in s and not s.endswith("_in")]
    assert not tables, plan


@pytest.mark.parametrize(
    ("resource_type", "param", "value"),
    [
        ("QuestionnaireResponse", "_include", "QuestionnaireResponse:questionnaire"),
        ("QuestionnaireResponse", "_include", "*"),
        ("Questionnaire", "_revinclude", "QuestionnaireResponse:questionnaire"),
        ("Questionnaire", "_revinclude", "*"),
    ],
)
def test_includes_of_canonicals_follow_the_url_indexes(
    conn: sqlite3.Connection, resource_type: str, param: str, value: str
) -> None:
    """An include reads the page's canonicals and their targets' `url` entries by index (and a
    revinclude the other way round), never a whole table."""
    query = parse_search(resource_type, [(param, value)]).query
    builder = sqlite_index._Builder(None)
    if query.includes:
        sql, args = sqlite_index._include_sql(builder, query.includes[0], [1, 2])
    else:
        sql, args = sqlite_index._revinclude_sql(builder, query.revincludes[0], [1, 2])
    plan = [str(row[3]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args)]
    assert _url_steps(plan), plan
    assert not [step for step in plan if step.startswith("SCAN")], plan


@pytest.mark.parametrize(
    ("name", "value"), [("depends-on.{}name", "n"), ("_has:Library:depends-on:{}name", "n")]
)
def test_chains_through_canonicals_grow_linearly_with_their_depth(name: str, value: str) -> None:
    """Each level through a parameter that may hold canonicals reads literal and canonical targets;
    written once per kind, the innermost criterion doubled per level (2^4 copies of 101 values at
    four levels: SQLite's parser overflowed, a 500). It is written once per level now."""
    values = ",".join(f"{value}{i}" for i in range(101))
    sizes = []
    for depth in (1, 4):
        repeat = "depends-on." if name.startswith("depends-on") else "_has:Library:depends-on:"
        param = name.format(repeat * (depth - 1))
        query = parse_search("Library", [(param, values)]).query
        builder = sqlite_index._Builder(query.access)
        exists = builder.exists(query.criteria[0], ("Library",), "r")
        found = builder.driving_set(query.criteria[0], ("Library",))  # None past 100 values
        sizes.append(len(exists[0]) + (len(found[1][0]) if found else 0))
    assert sizes[1] < 1.5 * sizes[0], sizes
