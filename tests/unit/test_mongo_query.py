"""SearchQuery -> MongoDB filter and sort, compared as plain values (fhir_server.storage.mongo_query)."""

from __future__ import annotations

import pytest

from fhir_server.indexing.entries import (
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
from fhir_server.search.query import (
    AccessFilter,
    CanonicalParam,
    ChainClause,
    Clause,
    CompositeValue,
    DateValue,
    HasClause,
    Include,
    MissingValue,
    NumberValue,
    Prefix,
    QuantityValue,
    ReferenceValue,
    SearchQuery,
    SortKey,
    StringValue,
    TokenValue,
    TypeRule,
    UriValue,
)
from fhir_server.storage import mongo_query as mq
from fhir_server.storage.mongo_docs import entry_doc, sort_keys
from fhir_server.storage.mongo_paging import KeysetMemo, after_filter

LABELS = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"


def em(param: str, **cond: object) -> dict[str, object]:
    """`ix` has one entry of `param` meeting `cond`."""
    return {"ix": {"$elemMatch": {"p": param, **cond}}}


def clause(param: str, kind: str, *values: object, negate: bool = False) -> Clause:
    return Clause(param, kind, values, negate=negate)  # type: ignore[arg-type]


# -- dates: every prefix against the entry range [lo, hi) -------------------------------------------

S_LOW, S_HIGH = 100, 200
WITHIN: dict[str, object] = {"lo": {"$gte": S_LOW, "$lt": S_HIGH}, "hi": {"$lte": S_HIGH}}
DATE_PREFIXES: dict[Prefix, dict[str, object]] = {
    "eq": WITHIN,
    "ne": {"$nor": [WITHIN]},
    "gt": {"hi": {"$gt": S_HIGH}},
    "lt": {"lo": {"$lt": S_LOW}},
    "ge": {"$or": [{"hi": {"$gt": S_HIGH}}, WITHIN]},
    "le": {"$or": [{"lo": {"$lt": S_LOW}}, WITHIN]},
    "sa": {"lo": {"$gte": S_HIGH}},
    "eb": {"lo": {"$lt": S_LOW}, "hi": {"$lte": S_LOW}},
    "ap": {"lo": {"$lt": S_HIGH}, "hi": {"$gt": S_LOW}},
}


@pytest.mark.parametrize("prefix", DATE_PREFIXES)
def test_date_prefix(prefix: Prefix) -> None:
    found = mq.clause_filter(clause("date", "date", DateValue(prefix, S_LOW, S_HIGH)))
    assert found == em("date", **DATE_PREFIXES[prefix])


LAST_UPDATED: dict[Prefix, dict[str, int]] = {
    "eq": {"$gte": S_LOW, "$lt": S_HIGH},
    "gt": {"$gte": S_HIGH},
    "lt": {"$lt": S_LOW},
    "ge": {"$gte": S_LOW},
    "le": {"$lt": S_HIGH},
    "sa": {"$gte": S_HIGH},
    "eb": {"$lt": S_LOW},
    "ap": {"$gte": S_LOW, "$lt": S_HIGH},
}


@pytest.mark.parametrize("prefix", LAST_UPDATED)
def test_last_updated_prefix_is_a_bound_on_the_instant(prefix: Prefix) -> None:
    found = mq.criterion_filter(
        clause("_lastUpdated", "lastUpdated", DateValue(prefix, S_LOW, S_HIGH)), None, {}
    )
    assert found == {"last_updated": LAST_UPDATED[prefix]}


def test_last_updated_ne_excludes_the_range() -> None:
    found = mq.column_filter(clause("_lastUpdated", "lastUpdated", DateValue("ne", S_LOW, S_HIGH)))
    assert found == {"$nor": [{"last_updated": {"$gte": S_LOW, "$lt": S_HIGH}}]}


# -- numbers and quantities ----------------------------------------------------------------------

NUMBER_PREFIXES: dict[Prefix, dict[str, object]] = {
    "eq": {"v": {"$gte": 99.5, "$lt": 100.5}},
    "ne": {"$nor": [{"v": {"$gte": 99.5, "$lt": 100.5}}]},
    "gt": {"v": {"$gt": 100.0}},
    "sa": {"v": {"$gt": 100.0}},
    "lt": {"v": {"$lt": 100.0}},
    "eb": {"v": {"$lt": 100.0}},
    "ge": {"v": {"$gte": 100.0}},
    "le": {"v": {"$lte": 100.0}},
    "ap": {"v": {"$gte": 99.5, "$lte": 100.5}},
}


# A Range entry (marked `rg`) against the same search value: its ends [lo, hi] decide.
SPAN_WITHIN: dict[str, object] = {"lo": {"$gte": 99.5}, "hi": {"$lt": 100.5}}
SPAN_PREFIXES: dict[Prefix, dict[str, object]] = {
    "eq": SPAN_WITHIN,
    "ne": {"$nor": [SPAN_WITHIN]},
    "gt": {"hi": {"$gt": 100.0}},
    "sa": {"lo": {"$gt": 100.0}},
    "lt": {"lo": {"$lt": 100.0}},
    "eb": {"hi": {"$lt": 100.0}},
    "ge": {"$or": [{"hi": {"$gte": 100.0}}, SPAN_WITHIN]},
    "le": {"$or": [{"lo": {"$lte": 100.0}}, SPAN_WITHIN]},
    "ap": {"lo": {"$lte": 100.5}, "hi": {"$gte": 99.5}},
}


def number_or_span(point: dict[str, object], span: dict[str, object]) -> dict[str, object]:
    return {"$or": [{"rg": {"$ne": True}, **point}, {"rg": True, **span}]}


@pytest.mark.parametrize("prefix", NUMBER_PREFIXES)
def test_number_prefix(prefix: Prefix) -> None:
    found = mq.clause_filter(clause("probability", "number", NumberValue(prefix, 100.0, 99.5, 100.5)))
    assert found == em("probability", **number_or_span(NUMBER_PREFIXES[prefix], SPAN_PREFIXES[prefix]))


def test_quantity_with_system_and_code() -> None:
    value = QuantityValue("gt", 5.4, 5.35, 5.45, "http://unitsofmeasure.org", "mg")
    found = mq.clause_filter(clause("value-quantity", "quantity", value))
    number = number_or_span({"v": {"$gt": 5.4}}, {"hi": {"$gt": 5.4}})
    assert found == em("value-quantity", **number, s="http://unitsofmeasure.org", c="mg")


def test_quantity_code_without_system_matches_code_or_unit() -> None:
    value = QuantityValue("eq", 5.4, 5.35, 5.45, None, "mg")
    found = mq.clause_filter(clause("value-quantity", "quantity", value))
    number = number_or_span({"v": {"$gte": 5.35, "$lt": 5.45}}, {"lo": {"$gte": 5.35}, "hi": {"$lt": 5.45}})
    assert found == em("value-quantity", **{"$and": [number, {"$or": [{"c": "mg"}, {"un": "mg"}]}]})


def test_quantity_ne_with_unit_keeps_both_conditions_apart() -> None:
    value = QuantityValue("ne", 5.4, 5.35, 5.45, None, "mg")
    found = mq.clause_filter(clause("value-quantity", "quantity", value))
    ne = number_or_span(
        {"$nor": [{"v": {"$gte": 5.35, "$lt": 5.45}}]},
        {"$nor": [{"lo": {"$gte": 5.35}, "hi": {"$lt": 5.45}}]},
    )
    assert found == em("value-quantity", **{"$and": [ne, {"$or": [{"c": "mg"}, {"un": "mg"}]}]})


def test_range_entries_are_marked() -> None:
    """Entries from a Range carry `rg`, so filters can compare them by their ends."""
    assert entry_doc(NumberEntry("n", 20.0, 20.0, 30.0))["rg"] is True
    assert entry_doc(NumberEntry("n", 28.0, 28.0, float("inf")))["rg"] is True
    assert "rg" not in entry_doc(NumberEntry("n", 25.0, 24.5, 25.5))


# -- strings, tokens, uris, references --------------------------------------------------------------


def test_string_default_is_an_anchored_prefix_of_the_folded_value() -> None:
    found = mq.clause_filter(clause("name", "string", StringValue("o.b")))
    assert found == em("name", v={"$regex": r"^o\.b"})


def test_string_exact_compares_the_text_as_written() -> None:
    found = mq.clause_filter(clause("name", "string", StringValue("obi", "exact", "Obi")))
    assert found == em("name", v="obi", e="Obi")


def test_string_contains_is_unanchored() -> None:
    found = mq.clause_filter(clause("name", "string", StringValue("b+", "contains")))
    assert found == em("name", v={"$regex": r"b\+"})


def test_several_values_are_a_top_level_or_of_entries() -> None:
    found = mq.clause_filter(clause("name", "string", StringValue("a"), StringValue("b")))
    assert found == {"$or": [em("name", v={"$regex": "^a"}), em("name", v={"$regex": "^b"})]}


@pytest.mark.parametrize(
    ("value", "cond"),
    [
        (TokenValue("http://loinc.org", "1-8"), {"c": "1-8", "s": "http://loinc.org"}),
        (TokenValue(None, "1-8"), {"c": "1-8"}),
        (TokenValue("", "1-8"), {"c": "1-8", "s": None}),
        (TokenValue("http://loinc.org", None), {"s": "http://loinc.org"}),
        (TokenValue(None, "heart rate", "text"), {"x": {"$regex": r"heart\ rate"}}),
    ],
)
def test_token_forms(value: TokenValue, cond: dict[str, object]) -> None:
    assert mq.clause_filter(clause("code", "token", value)) == em("code", **cond)


def test_token_not_is_the_negation_of_any_value() -> None:
    found = mq.clause_filter(clause("status", "token", TokenValue(None, "final"), negate=True))
    assert found == {"$nor": [em("status", c="final")]}


_BELOW_AB = [{"v": {"$regex": r"^http://a/b/"}}, {"v": {"$regex": r"^http://a/b\|"}}]  # paths, versions


@pytest.mark.parametrize(
    ("value", "cond"),
    [
        (UriValue("http://a/b"), {"v": "http://a/b"}),
        (UriValue("http://a/b", "below"), {"$or": [{"v": "http://a/b"}, *_BELOW_AB]}),
        (UriValue("http://a/b/", "below"), {"$or": [{"v": "http://a/b"}, *_BELOW_AB]}),
        (
            UriValue("http://a/b/c", "above"),
            {"v": {"$in": ["http://a/b/c", "http://a/b/", "http://a/b", "http://a/", "http://a"]}},
        ),
    ],
)
def test_uri_forms(value: UriValue, cond: dict[str, object]) -> None:
    assert mq.clause_filter(clause("url", "uri", value)) == em("url", **cond)


@pytest.mark.parametrize(
    ("value", "cond"),
    [
        (ReferenceValue("Patient", "1"), {"rt": "Patient", "ri": "1"}),
        (ReferenceValue(None, "1"), {"ri": "1"}),
        (ReferenceValue(url="http://x/Patient/1"), {"u": "http://x/Patient/1"}),
        (ReferenceValue(identifier_system="urn:s", identifier_value="9"), {"iv": "9", "is": "urn:s"}),
        (ReferenceValue(identifier_value="9"), {"iv": "9"}),
        (ReferenceValue(identifier_system="", identifier_value="9"), {"iv": "9", "is": None}),
    ],
)
def test_reference_forms(value: ReferenceValue, cond: dict[str, object]) -> None:
    assert mq.clause_filter(clause("subject", "reference", value)) == em("subject", **cond)


def test_composite_parts_match_within_one_combination() -> None:
    value = CompositeValue((TokenValue("http://loinc.org", "8480-6"), QuantityValue("gt", 100, 99.5, 100.5)))
    found = mq.clause_filter(
        Clause("code-value-quantity", "composite", (value,), components=("token", "quantity"))
    )
    assert found == em(
        "code-value-quantity",
        **{
            "$and": [
                {"c0.c": "8480-6", "c0.s": "http://loinc.org"},
                {
                    "$or": [
                        {"c1.rg": {"$ne": True}, "c1.v": {"$gt": 100}},
                        {"c1.rg": True, "c1.hi": {"$gt": 100}},
                    ]
                },
            ]
        },
    )


@pytest.mark.parametrize(
    ("missing", "expected"), [(True, {"ix.p": {"$ne": "gender"}}), (False, {"ix.p": "gender"})]
)
def test_missing(missing: bool, expected: dict[str, object]) -> None:
    assert mq.clause_filter(clause("gender", "token", MissingValue(missing))) == expected


def test_id_and_words() -> None:
    assert mq.column_filter(clause("_id", "id", TokenValue(None, "a"), TokenValue(None, "b"))) == {
        "id": {"$in": ["a", "b"]}
    }
    words = mq.column_filter(clause("_text", "text", StringValue("body wei")))
    starts = [{"v": {"$regex": "(?:^| )body"}}, {"v": {"$regex": "(?:^| )wei"}}]
    assert words == {"ix": {"$elemMatch": {"p": "_text", "$and": starts}}}


def test_id_and_last_updated_are_never_missing() -> None:
    assert mq.column_filter(clause("_id", "id", MissingValue(True))) == mq.FALSE
    assert mq.column_filter(clause("_id", "id", MissingValue(False))) == mq.TRUE


# -- chains and _has -------------------------------------------------------------------------------

NAME_PETER = clause("name", "string", StringValue("peter"))
CHAIN = ChainClause("subject", ("Patient", "Group"), NAME_PETER)
HAS = HasClause("Observation", "patient", clause("code", "token", TokenValue(None, "1-8")))


def test_a_chain_asks_for_its_targets_first() -> None:
    with pytest.raises(mq.Unresolved) as asked:
        mq.criterion_filter(CHAIN, None, {})
    assert asked.value.lookup == mq.Lookup(CHAIN, None)
    assert mq.chain_lookup_filter(asked.value.lookup, {}) == {
        "$and": [
            {"type": {"$in": ["Patient", "Group"]}, "deleted": False},
            em("name", v={"$regex": "^peter"}),
        ]
    }


def test_a_resolved_chain_matches_references_to_its_targets_by_type() -> None:
    resolved = {mq.Lookup(CHAIN, None): ["Patient/1", "Patient/2", "Group/g"]}
    found = mq.criterion_filter(CHAIN, None, resolved)
    refs = [{"rt": "Group", "ri": "g"}, {"rt": "Patient", "ri": {"$in": ["1", "2"]}}]
    assert found == {"ix": {"$elemMatch": {"p": "subject", "$or": refs}}}


def test_a_chain_without_targets_matches_nothing() -> None:
    assert mq.criterion_filter(CHAIN, None, {mq.Lookup(CHAIN, None): []}) == mq.FALSE


def test_has_looks_up_the_sources_references_then_matches_those_keys() -> None:
    lookup = mq.Lookup(HAS, None)
    assert mq.has_source_pipeline(lookup, {}) == [
        {"$match": {"$and": [{"type": "Observation", "deleted": False}, em("code", c="1-8")]}},
        {"$unwind": "$ix"},
        {"$match": {"ix.p": "patient", "ix.ri": {"$ne": None}, "ix.rt": {"$ne": None}}},
        {"$group": {"_id": {"rt": "$ix.rt", "ri": "$ix.ri"}}},
    ]
    assert mq.criterion_filter(HAS, None, {lookup: ["Patient/b", "Patient/a"]}) == {
        "_id": {"$in": ["Patient/a", "Patient/b"]}
    }


QUESTIONNAIRE = "http://example.org/Questionnaire/phq9"
ACTIVE = clause("status", "token", TokenValue(None, "active"))
CANONICAL_CHAIN = ChainClause("questionnaire", ("Questionnaire",), ACTIVE, ("Questionnaire",))


def test_a_chain_through_a_canonical_also_asks_for_its_targets_urls() -> None:
    """The targets' `url` values, which canonicals name them by; a literal chain never asks."""
    keys = mq.Lookup(CANONICAL_CHAIN, None)
    with pytest.raises(mq.Unresolved) as asked:
        mq.criterion_filter(CANONICAL_CHAIN, None, {keys: ["Questionnaire/q1"]})
    urls = mq.Lookup(mq.CanonicalUrls(CANONICAL_CHAIN), None)
    assert asked.value.lookup == urls
    assert mq.canonical_urls_pipeline(urls, {}) == [
        {"$match": {"$and": [{"type": "Questionnaire", "deleted": False}, em("status", c="active")]}},
        {"$unwind": "$ix"},
        {"$match": {"ix.p": "url", "ix.k": "u"}},
        {"$group": {"_id": "$ix.v"}},
    ]
    found = mq.criterion_filter(CANONICAL_CHAIN, None, {keys: ["Questionnaire/q1"], urls: [QUESTIONNAIRE]})
    assert found == {
        "$or": [
            em("questionnaire", rt="Questionnaire", ri="q1"),
            em("questionnaire", rt=None, ri=None, u=QUESTIONNAIRE),
        ]
    }


def test_has_through_a_canonical_also_matches_the_url_its_sources_name() -> None:
    has = HasClause("QuestionnaireResponse", "questionnaire", ACTIVE, ("Questionnaire",))
    resolved = {mq.Lookup(has, None): [], mq.Lookup(mq.CanonicalUrls(has), None): [QUESTIONNAIRE]}
    assert mq.criterion_filter(has, None, resolved) == {
        "$and": [{"type": {"$in": ["Questionnaire"]}}, em("url", v=QUESTIONNAIRE)]
    }


def test_canonical_includes_resolve_through_the_parameters_target_types() -> None:
    """A canonical found in a source names the resources of its parameter's target types with that
    `url`; a revinclude matches the sources whose canonical is one of the targets' urls."""
    param = CanonicalParam("QuestionnaireResponse", "questionnaire", ("Questionnaire",))
    found = [("QuestionnaireResponse", "questionnaire", QUESTIONNAIRE), ("Observation", "subject", "urn:x")]
    assert mq.named_by_canonicals([param], found) == {
        "$and": [{"type": {"$in": ["Questionnaire"]}}, em("url", v=QUESTIONNAIRE)]
    }
    include = Include("QuestionnaireResponse", "questionnaire", canonical=(param,))
    urls = [("Questionnaire", QUESTIONNAIRE), ("ValueSet", "http://example.org/vs")]
    assert mq.revinclude_filter(include, [], None, {}, urls) == {
        "$and": [
            {"type": "QuestionnaireResponse", "deleted": False},
            {
                "$and": [
                    {"type": "QuestionnaireResponse"},
                    em("questionnaire", rt=None, ri=None, u=QUESTIONNAIRE),
                ]
            },
        ]
    }


def test_lookups_carry_the_access_filter() -> None:
    access = AccessFilter(types=frozenset({"Patient", "Observation"}))
    lookup = mq.Lookup(CHAIN, access)
    assert mq.chain_lookup_filter(lookup, {}) == {
        "$and": [
            {"type": {"$in": ["Patient", "Group"]}, "deleted": False},
            em("name", v={"$regex": "^peter"}),
            {"type": {"$in": ["Observation", "Patient"]}},
        ]
    }


# -- access ----------------------------------------------------------------------------------------


def test_access_types_and_compartments() -> None:
    access = AccessFilter(
        types=frozenset({"Observation"}), compartments=frozenset({"Patient/2", "Patient/1"})
    )
    assert mq.access_filter(access, {}) == {
        "$and": [{"type": {"$in": ["Observation"]}}, {"compartments": {"$in": ["Patient/1", "Patient/2"]}}]
    }


def test_empty_access_sets_allow_nothing() -> None:
    assert mq.access_filter(AccessFilter(types=frozenset()), {}) == mq.FALSE
    assert mq.access_filter(AccessFilter(compartments=frozenset()), {}) == mq.FALSE
    assert mq.access_filter(None, {}) == mq.TRUE


def test_labels_forbid_any_other_code_of_the_label_system() -> None:
    access = AccessFilter(allowed_labels=frozenset({(LABELS, "N"), ("http://other", "X")}))
    forbidden = {"ix": {"$elemMatch": {"p": "_security", "s": LABELS, "c": {"$nin": ["N"]}}}}
    assert mq.access_filter(access, {}) == {"$nor": [forbidden]}


def test_labels_can_require_a_label() -> None:
    access = AccessFilter(allowed_labels=frozenset({(LABELS, "N")}), allow_unlabeled=False)
    forbidden = {"ix": {"$elemMatch": {"p": "_security", "s": LABELS, "c": {"$nin": ["N"]}}}}
    labelled = {"ix": {"$elemMatch": {"p": "_security", "s": LABELS}}}
    assert mq.access_filter(access, {}) == {"$and": [{"$nor": [forbidden]}, labelled]}


def test_patient_criteria_ask_for_the_patients_then_match_their_compartments() -> None:
    criteria = (clause("organization", "reference", ReferenceValue("Organization", "1")),)
    access = AccessFilter(patient_criteria=criteria)
    with pytest.raises(mq.Unresolved) as asked:
        mq.access_filter(access, {})
    lookup = asked.value.lookup
    assert lookup == mq.Lookup(mq.PatientsMeeting(criteria), None)
    assert mq.chain_lookup_filter(lookup, {}) == {
        "$and": [{"type": "Patient", "deleted": False}, em("organization", rt="Organization", ri="1")]
    }
    assert mq.access_filter(access, {lookup: ["Patient/b", "Patient/a"]}) == {
        "compartments": {"$in": ["Patient/a", "Patient/b"]}
    }
    assert mq.access_filter(access, {lookup: []}) == mq.FALSE


def test_any_of_is_a_union_of_access_filters() -> None:
    access = AccessFilter(
        types=frozenset({"Observation"}),
        any_of=(AccessFilter(compartments=frozenset({"Patient/1"})), AccessFilter(types=frozenset())),
    )
    assert mq.access_filter(access, {}) == {
        "$and": [{"type": {"$in": ["Observation"]}}, {"compartments": {"$in": ["Patient/1"]}}]
    }


def test_type_rules_apply_to_their_type_only() -> None:
    vitals = clause("category", "token", TokenValue(None, "vital-signs"))
    access = AccessFilter(extra=(TypeRule("Observation", ((vitals,),)),))
    assert mq.access_filter(access, {}) == {
        "$or": [{"type": {"$ne": "Observation"}}, em("category", c="vital-signs")]
    }


def test_the_whole_query_ands_type_compartment_criteria_and_access() -> None:
    query = SearchQuery(
        resource_types=("Observation",),
        criteria=(clause("status", "token", TokenValue(None, "final")),),
        compartment="Patient/1",
        access=AccessFilter(types=frozenset({"Observation"})),
    )
    assert mq.search_filter(query, {}) == {
        "$and": [
            {"type": "Observation", "deleted": False},
            {"compartments": "Patient/1"},
            em("status", c="final"),
            {"type": {"$in": ["Observation"]}},
        ]
    }


def test_system_level_search_has_no_type_condition() -> None:
    assert mq.search_filter(SearchQuery(), {}) == {"deleted": False}


# -- includes --------------------------------------------------------------------------------------


def test_include_collects_the_targets_of_one_parameter() -> None:
    pipeline = mq.include_pipeline(Include("Observation", "subject", "Patient"), ["Observation/1"])
    assert pipeline[0] == {"$match": {"_id": {"$in": ["Observation/1"]}, "type": "Observation"}}
    assert pipeline[2] == {"$match": {"ix.rt": "Patient", "ix.ri": {"$ne": None}, "ix.p": "subject"}}


def test_revinclude_finds_sources_referring_to_the_page() -> None:
    found = mq.revinclude_filter(Include("Observation", "subject"), ["Patient/1", "Group/2"], None, {})
    refs = [{"rt": "Group", "ri": "2"}, {"rt": "Patient", "ri": "1"}]
    assert found == {
        "$and": [
            {"type": "Observation", "deleted": False},
            {"ix": {"$elemMatch": {"p": "subject", "$or": refs}}},
        ]
    }


def test_revinclude_of_any_parameter() -> None:
    found = mq.revinclude_filter(Include(None, None, "Patient"), ["Patient/1", "Group/2"], None, {})
    assert found == {"$and": [{"deleted": False}, {"ix": {"$elemMatch": {"rt": "Patient", "ri": "1"}}}]}


# -- sort and paging -------------------------------------------------------------------------------


def test_sort_by_parameter_puts_missing_values_last_then_creation_order() -> None:
    keys = (
        SortKey("birthdate", "date", descending=True),
        SortKey("_id", "id"),
        SortKey("_lastUpdated", "lastUpdated"),
    )
    assert mq.sort_order(keys) == [
        ("sk.birthdate.h", -1),
        ("sk.birthdate.d", -1),
        ("id", 1),
        ("last_updated", 1),
        ("cs", 1),
        ("_id", 1),
    ]


def test_ascending_sort_uses_the_smallest_value() -> None:
    assert mq.sort_order((SortKey("name", "string"),))[:2] == [("sk.name.h", -1), ("sk.name.a", 1)]


def test_after_filter_continues_after_the_last_key() -> None:
    order = [("sk.d.h", -1), ("sk.d.a", 1), ("cs", 1), ("_id", 1)]
    assert after_filter(order, [1, 5, 9, "A/1"]) == {
        "$or": [
            {"$or": [{"sk.d.h": {"$lt": 1}}, {"sk.d.h": None}]},
            {"sk.d.h": 1, "sk.d.a": {"$gt": 5}},
            {"sk.d.h": 1, "sk.d.a": 5, "cs": {"$gt": 9}},
            {"sk.d.h": 1, "sk.d.a": 5, "cs": 9, "_id": {"$gt": "A/1"}},
        ]
    }


def test_after_filter_past_a_missing_value() -> None:
    order = [("sk.d.h", -1), ("sk.d.a", 1), ("_id", 1)]
    assert after_filter(order, [None, None, "A/1"]) == {
        "$or": [
            {"sk.d.h": None, "sk.d.a": {"$ne": None}},
            {"sk.d.h": None, "sk.d.a": None, "_id": {"$gt": "A/1"}},
        ]
    }


def test_keyset_memo_remembers_per_query_and_offset() -> None:
    memo = KeysetMemo(capacity=2)
    memo.put(("q", 1), 20, [1, "A/1"])
    assert memo.get(("q", 1), 20) == [1, "A/1"]
    assert memo.get(("q", 2), 20) is None
    assert memo.get(("q", 1), 0) is None
    memo.put("a", 1, [1])
    memo.put("b", 1, [2])
    assert memo.get(("q", 1), 20) is None  # evicted, least recently used


# -- the stored layout of entries ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "doc"),
    [
        (TokenEntry("code", "s", "c", "t"), {"p": "code", "k": "t", "s": "s", "c": "c", "x": "t"}),
        (StringEntry("name", "obi", "Obi"), {"p": "name", "k": "s", "v": "obi", "e": "Obi"}),
        (StringEntry("_content", "a b", "a b"), {"p": "_content", "k": "s", "v": "a b"}),
        (DateEntry("date", 1, 2), {"p": "date", "k": "d", "lo": 1, "hi": 2}),
        (NumberEntry("n", 1.0, 0.5, 1.5), {"p": "n", "k": "n", "v": 1.0, "lo": 0.5, "hi": 1.5}),
        (
            QuantityEntry("q", 1.0, 0.5, 1.5, "u", "mg", "milligram"),
            {"p": "q", "k": "q", "v": 1.0, "lo": 0.5, "hi": 1.5, "s": "u", "c": "mg", "un": "milligram"},
        ),
        (
            ReferenceEntry("subject", "Patient", "1"),
            {"p": "subject", "k": "r", "rt": "Patient", "ri": "1", "u": None, "is": None, "iv": None},
        ),
        (UriEntry("url", "http://a"), {"p": "url", "k": "u", "v": "http://a"}),
        (
            CompositeEntry("cv", (TokenEntry("cv", None, "c"), DateEntry("cv", 1, 2))),
            {
                "p": "cv",
                "k": "c",
                "c0": {"k": "t", "s": None, "c": "c", "x": None},
                "c1": {"k": "d", "lo": 1, "hi": 2},
            },
        ),
    ],
)
def test_entry_layout(entry: object, doc: dict[str, object]) -> None:
    assert entry_doc(entry) == doc  # type: ignore[arg-type]


def test_sort_keys_hold_the_smallest_and_largest_value_per_parameter() -> None:
    entries: list[IndexEntry] = [
        DateEntry("date", 5, 6),
        DateEntry("date", 1, 2),
        StringEntry("_text", "x", "x"),
        TokenEntry("code", "s", None),
    ]
    assert sort_keys(entries) == {"date": {"h": 1, "a": 1, "d": 6}}
