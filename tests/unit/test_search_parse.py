"""The search parser: query-string pairs -> typed, normalised SearchQuery values.

https://hl7.org/fhir/R4/search.html — pure functions, so plain values are compared by equality.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_server.errors import BadRequest
from fhir_server.indexing.normalize import date_bounds
from fhir_server.search import values as v
from fhir_server.search.parse import MAX_COUNT, parse_include, parse_search, value_set_urls
from fhir_server.search.query import (
    CanonicalParam,
    ChainClause,
    Clause,
    CompositeValue,
    DateValue,
    HasClause,
    Include,
    MissingValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    SortKey,
    StringValue,
    TokenValue,
    UriValue,
)
from fhir_server.search.valuesets import pick_value_set, value_set_codes

DAY = 86_400_000_000


def criteria(resource_type: str | None, query: str) -> tuple[object, ...]:
    params = [(p.split("=", 1)[0], p.split("=", 1)[1]) for p in query.split("&")]
    return parse_search(resource_type, params).query.criteria


def only(resource_type: str, query: str) -> object:
    (clause,) = criteria(resource_type, query)
    return clause


def us(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * 1_000_000


# -- types -----------------------------------------------------------------------------------------


def test_string_default_is_folded_prefix() -> None:
    assert only("Patient", "name=Émile") == Clause("name", "string", (StringValue("emile"),))


def test_string_modifiers() -> None:
    assert only("Patient", "name:exact=Smith") == Clause(
        "name", "string", (StringValue("smith", "exact", "Smith"),)
    )
    assert only("Patient", "name:contains=MIT") == Clause("name", "string", (StringValue("mit", "contains"),))


def test_token_forms() -> None:
    clause = only("Patient", "identifier=a|1,|2,b|,3")
    assert isinstance(clause, Clause)
    assert clause.values == (
        TokenValue("a", "1"),
        TokenValue("", "2"),
        TokenValue("b", None),
        TokenValue(None, "3"),
    )


def test_token_modifiers() -> None:
    assert only("Patient", "gender:not=male") == Clause(
        "gender", "token", (TokenValue(None, "male"),), negate=True
    )
    assert only("Observation", "code:text=Blood Pressure") == Clause(
        "code", "token", (TokenValue(None, "blood pressure", "text"),)
    )
    assert only("Patient", "identifier:of-type=s|MR|42") == Clause(
        "identifier:of-type", "token", (TokenValue("s", "MR|42"),)
    )


def test_number_carries_its_precision_range() -> None:
    assert only("RiskAssessment", "probability=gt0.5") == Clause(
        "probability", "number", (NumberValue("gt", 0.5, 0.45, 0.55),)
    )


def test_ap_widens_by_ten_percent() -> None:
    clause = only("RiskAssessment", "probability=ap100")
    assert isinstance(clause, Clause)
    assert clause.values == (NumberValue("ap", 100.0, 90.0, 110.0),)


def test_quantity_with_system_and_code() -> None:
    assert only("Observation", "value-quantity=le5.4|http://unitsofmeasure.org|mg") == Clause(
        "value-quantity",
        "quantity",
        (QuantityValue("le", 5.4, 5.35, 5.45, "http://unitsofmeasure.org", "mg"),),
    )
    clause = only("Observation", "value-quantity=5||mg")
    assert isinstance(clause, Clause) and clause.values[0] == QuantityValue("eq", 5, 4.5, 5.5, None, "mg")


def test_partial_dates_become_ranges() -> None:
    """2026 covers the year; 2026-11 the month; a minute the minute."""
    year, month, minute = (only("Observation", f"date={d}") for d in ("2026", "2026-11", "2026-11-24T10:00Z"))
    assert year == Clause("date", "date", (DateValue("eq", us("2026-01-01"), us("2027-01-01")),))
    assert month == Clause("date", "date", (DateValue("eq", us("2026-11-01"), us("2026-12-01")),))
    start = us("2026-11-24T10:00:00")
    assert minute == Clause("date", "date", (DateValue("eq", start, start + 60_000_000),))


@pytest.mark.parametrize("prefix", ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"])
def test_date_prefixes(prefix: str) -> None:
    clause = only("Observation", f"date={prefix}2026-11-24")
    assert clause == Clause("date", "date", (DateValue(prefix, us("2026-11-24"), us("2026-11-25")),))  # type: ignore[arg-type]


def test_date_ap_widens_by_a_tenth_of_the_distance_to_now() -> None:
    value = v.parse_date("ap2016-01-01", now_us=us("2026-01-01"))
    gap = (us("2026-01-01") - us("2016-01-01")) // 10
    assert value == DateValue("ap", us("2016-01-01") - gap, us("2016-01-02") + gap)


def test_date_ap_reads_the_same_all_day() -> None:
    """Its width is measured from today's start, so one search's cursor holds across its pages."""
    morning = v.parse_date("ap2016-01-01", now_us=us("2026-01-01T00:00:01Z"))
    evening = v.parse_date("ap2016-01-01", now_us=us("2026-01-01T23:59:59Z"))
    assert morning == evening == v.parse_date("ap2016-01-01", now_us=us("2026-01-01"))
    assert v.parse_date("ap2016-01-01", now_us=us("2026-01-02")) != morning


def test_reference_forms() -> None:
    def ref(query: str) -> object:
        clause = only("Observation", query)
        assert isinstance(clause, Clause)
        return clause.values[0]

    assert ref("subject=Patient/1") == ReferenceValue("Patient", "1")
    assert ref("subject=1") == ReferenceValue(None, "1")
    assert ref("patient=1") == ReferenceValue(None, "1") or ref("patient=1") == ReferenceValue("Patient", "1")
    assert ref("subject:Patient=1") == ReferenceValue("Patient", "1")
    assert ref("subject=http://x.org/fhir/Patient/1") == ReferenceValue(url="http://x.org/fhir/Patient/1")
    assert ref("subject:identifier=nhs|9") == ReferenceValue(identifier_system="nhs", identifier_value="9")


def test_own_absolute_urls_are_local_references() -> None:
    params = [("subject", "http://me/fhir/Patient/1")]
    (clause,) = parse_search("Observation", params, base_url="http://me/fhir").query.criteria
    assert isinstance(clause, Clause) and clause.values[0] == ReferenceValue("Patient", "1")


def test_local_references_also_match_relative_canonicals() -> None:
    clause = only("QuestionnaireResponse", "questionnaire=Questionnaire/gcs")
    assert isinstance(clause, Clause)
    assert clause.values == (ReferenceValue("Questionnaire", "gcs"), ReferenceValue(url="Questionnaire/gcs"))


def test_uri_modifiers() -> None:
    assert only("ValueSet", "url:below=http://a/") == Clause("url", "uri", (UriValue("http://a/", "below"),))
    assert only("ValueSet", "url:above=http://a/b") == Clause(
        "url", "uri", (UriValue("http://a/b", "above"),)
    )


def test_composite_parts_are_typed() -> None:
    clause = only("Observation", "code-value-quantity=http://loinc.org|8480-6$gt100")
    assert isinstance(clause, Clause)
    assert clause.components == ("token", "quantity")
    assert clause.values == (
        CompositeValue((TokenValue("http://loinc.org", "8480-6"), QuantityValue("gt", 100, 99.5, 100.5))),
    )


def test_missing_on_any_type() -> None:
    assert only("Observation", "date:missing=true") == Clause("date", "date", (MissingValue(True),))
    assert only("Patient", "name:missing=false") == Clause("name", "string", (MissingValue(False),))


def test_comma_is_or_and_repeats_are_and() -> None:
    found = criteria("Observation", "code=a,b&code=c")
    assert found == (
        Clause("code", "token", (TokenValue(None, "a"), TokenValue(None, "b"))),
        Clause("code", "token", (TokenValue(None, "c"),)),
    )


def test_escaped_separators_stay_in_values() -> None:
    clause = only("Patient", r"identifier=sys\|x|a\,b\$c\\d")
    assert isinstance(clause, Clause)
    assert clause.values == (TokenValue("sys|x", "a,b$c\\d"),)


# -- special parameters ----------------------------------------------------------------------------


def test_special_parameters() -> None:
    assert only("Patient", "_id=a,b") == Clause("_id", "id", (TokenValue(None, "a"), TokenValue(None, "b")))
    assert only("Patient", "_lastUpdated=gt2026") == Clause(
        "_lastUpdated", "lastUpdated", (DateValue("gt", us("2026-01-01"), us("2027-01-01")),)
    )
    assert only("Patient", "_tag=s|c") == Clause("_tag", "token", (TokenValue("s", "c"),))
    assert only("Patient", "_text=Chest Pain") == Clause(
        "_text", "text", (StringValue("chest pain", "contains"),)
    )
    assert only("Patient", "_list=42") == HasClause(
        "List", "item", Clause("_id", "id", (TokenValue(None, "42"),))
    )


def test_system_level_allows_only_common_parameters() -> None:
    assert criteria(None, "_id=1") == (Clause("_id", "id", (TokenValue(None, "1"),)),)
    with pytest.raises(BadRequest, match="across all types"):
        parse_search(None, [("code", "x")])
    parsed = parse_search(None, [("_type", "Observation,Condition"), ("code", "x")])
    assert parsed.query.resource_types == ("Observation", "Condition")


# -- chains ------------------------------------------------------------------------------------------


def test_chain_several_levels() -> None:
    found = only("Observation", "subject:Patient.organization.name=leeds")
    assert found == ChainClause(
        "subject",
        ("Patient",),
        ChainClause("organization", ("Organization",), Clause("name", "string", (StringValue("leeds"),))),
    )


def test_chain_without_type_uses_targets_that_know_the_parameter() -> None:
    found = only("Observation", "subject.birthdate=2000")
    assert isinstance(found, ChainClause) and found.target_types == ("Patient",)


def test_has() -> None:
    assert only("Patient", "_has:Observation:patient:code=1234") == HasClause(
        "Observation", "patient", Clause("code", "token", (TokenValue(None, "1234"),))
    )
    nested = only("Patient", "_has:Observation:patient:_has:Provenance:target:agent=Practitioner/1")
    assert isinstance(nested, HasClause) and isinstance(nested.inner, HasClause)


def test_a_parameter_that_holds_canonicals_names_the_types_they_refer_to() -> None:
    """QuestionnaireResponse.questionnaire is a canonical(Questionnaire): chains, `_has` and
    includes through it carry the target types with a `url` (search.html#reference); a parameter
    that selects Reference only carries none."""
    chain = only("QuestionnaireResponse", "questionnaire.status=active")
    assert isinstance(chain, ChainClause) and chain.canonical_types == ("Questionnaire",)
    literal = only("Observation", "subject:Patient.name=smith")
    assert isinstance(literal, ChainClause) and literal.canonical_types == ()
    has = only("Questionnaire", "_has:QuestionnaireResponse:questionnaire:status=completed")
    assert isinstance(has, HasClause) and has.canonical_types == ("Questionnaire",)
    assert parse_include("QuestionnaireResponse:questionnaire", iterate=False) == Include(
        "QuestionnaireResponse",
        "questionnaire",
        canonical=(CanonicalParam("QuestionnaireResponse", "questionnaire", ("Questionnaire",)),),
    )
    typed = parse_include("CarePlan:instantiates-canonical:Questionnaire", iterate=True)
    assert typed.canonical == (CanonicalParam("CarePlan", "instantiates-canonical", ("Questionnaire",)),)
    assert parse_include("Observation:subject", iterate=False).canonical == ()
    assert CanonicalParam("QuestionnaireResponse", "questionnaire", ("Questionnaire",)) in (
        parse_include("*", iterate=False).canonical
    )


# -- result parameters ---------------------------------------------------------------------------


def test_result_parameters() -> None:
    parsed = parse_search(
        "Observation",
        [
            ("_sort", "-date,code"),
            ("_count", "5000"),
            ("_total", "none"),
            ("_include", "Observation:subject:Patient"),
            ("_include:iterate", "Patient:organization"),
            ("_revinclude", "Provenance:target"),
            ("_elements", "status,code"),
            ("_summary", "data"),
            ("_format", "json"),
        ],
    )
    query = parsed.query
    assert query.sort == (SortKey("date", "date", True), SortKey("code", "token", False))
    assert query.count == MAX_COUNT and query.total == "none"
    assert query.includes == (
        Include("Observation", "subject", "Patient"),
        Include("Patient", "organization", None, True),
    )
    assert query.revincludes == (Include("Provenance", "target"),)
    assert parsed.elements == ("status", "code") and parsed.summary == "data"
    assert ("_format", "json") not in parsed.used


def test_a_total_is_bounded_unless_the_client_asks() -> None:
    """Unasked, the matches are counted up to a cap (the store reports no total past it)."""
    assert parse_search("Patient", []).query.total == "bounded"
    assert parse_search("Patient", [("_total", "accurate")]).query.total == "accurate"
    assert parse_search("Patient", [("_total", "estimate")]).query.total == "estimate"


def test_summary_count_asks_for_no_entries_and_a_total() -> None:
    query = parse_search("Patient", [("_summary", "count")]).query
    assert query.count == 0 and query.total == "accurate"


def test_in_and_not_in_use_the_given_value_sets() -> None:
    sets = {"http://vs": (("http://s", "a"), ("http://t", None))}
    parsed = parse_search(
        "Observation", [("code:in", "http://vs"), ("category:not-in", "http://vs")], value_sets=sets
    )
    assert parsed.query.criteria == (
        Clause("code", "token", (TokenValue("http://s", "a"), TokenValue("http://t", None))),
        Clause("category", "token", (TokenValue("http://s", "a"), TokenValue("http://t", None)), negate=True),
    )
    assert value_set_urls([("code:in", "http://vs"), ("subject:Patient.gender:not-in", "http://g")]) == [
        "http://vs",
        "http://g",
    ]


def test_a_type_modifier_the_value_contradicts_is_refused() -> None:
    """`subject:Patient=Group/p1` would be a Patient that is a Group: 400, not a silent match."""
    with pytest.raises(BadRequest, match="names a Group, not a Patient"):
        parse_search("Observation", [("subject:Patient", "p2,Group/p1")])
    agreeing = parse_search("Observation", [("subject:Patient", "Patient/p1")]).query.criteria
    assert isinstance(agreeing[0], Clause) and agreeing[0].values[0] == ReferenceValue("Patient", "p1")
    lenient = parse_search("Observation", [("subject:Patient", "Group/p1")], strict=False)
    assert lenient.query.criteria == () and lenient.ignored[0].name == "subject:Patient"
    assert parse_search("Observation", [("patient", "Group/p1")]).query.criteria  # no modifier: no match


def test_in_with_a_list_of_value_sets_is_any_of_them() -> None:
    """`code:in=a,b|2,ValueSet/c`: each reference as written is a key of `value_sets`; codes OR."""
    sets = {"http://a": (("http://s", "a"),), "http://b|2": (("http://s", "b"), ("http://s", "a"))}
    sets["ValueSet/c"] = (("http://t", None),)
    parsed = parse_search("Observation", [("code:in", "http://a,http://b|2,ValueSet/c")], value_sets=sets)
    codes = (TokenValue("http://s", "a"), TokenValue("http://s", "b"), TokenValue("http://t", None))
    assert parsed.query.criteria == (Clause("code", "token", codes),)
    assert value_set_urls([("code:in", "http://a,http://b|2"), ("code:not-in", "ValueSet/c")]) == [
        "http://a",
        "http://b|2",
        "ValueSet/c",
    ]


def test_the_latest_value_set_is_the_highest_version() -> None:
    def vs(version: str | None, updated: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
        return {"version": version, "meta": {"lastUpdated": updated}} if version else {"meta": {}}

    held = [vs("1.9"), vs("1.10"), vs(None), vs("1.2-beta")]
    assert pick_value_set(held, None) == vs("1.10")
    assert pick_value_set(held, "1.9") == vs("1.9")
    assert pick_value_set(held, "3") is None
    assert pick_value_set([vs(None)], None) == vs(None)
    same = [vs("2", "2026-01-02T00:00:00Z"), vs("2", "2026-03-01T00:00:00Z")]
    assert pick_value_set(same, None) == same[1]


def test_value_set_codes_only_from_enumerated_content() -> None:
    include = {"system": "http://s", "concept": [{"code": "a"}, {"code": "b"}]}
    assert value_set_codes({"compose": {"include": [include, {"system": "http://t"}]}}) == (
        ("http://s", "a"),
        ("http://s", "b"),
        ("http://t", None),
    )
    nested = {
        "contains": [{"system": "http://s", "code": "a", "contains": [{"system": "http://s", "code": "b"}]}]
    }
    assert value_set_codes({"expansion": nested}) == (("http://s", "a"), ("http://s", "b"))
    assert value_set_codes({"compose": {"include": [{"system": "http://s", "filter": [{}]}]}}) is None
    assert value_set_codes({"compose": {"include": [include], "exclude": [include]}}) is None


# -- errors (strict) and lenient handling ----------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("foo=1", "Unknown search parameter 'foo' for Patient. Known: "),
        ("name:nonsense=x", "Modifier ':nonsense'"),
        ("gender:in=http://vs", "value set 'http://vs' is not one this server holds"),
        ("gender:above=x", "':above' on token search parameter 'gender' is not supported"),
        ("birthdate=2026-13", "birthdate"),
        ("birthdate=xx2026", "birthdate"),
        ("_count=-1", "_count"),
        ("_total=maybe", "_total"),
        ("_sort=nope", "nope"),
        ("_include=Patient:name", "not a reference"),
        ("name:missing=perhaps", "true or false"),
        ("general-practitioner.nope=1", "no target type"),
        ("_has:Observation:code:status=final", "not a reference"),
        ("identifier=a|b|c", "not a token"),
    ],
)
def test_strict_errors_name_the_problem(query: str, message: str) -> None:
    name, _, value = query.partition("=")
    with pytest.raises(BadRequest) as raised:
        parse_search("Patient", [(name, value)])
    assert message in raised.value.message


def test_lenient_ignores_and_reports() -> None:
    parsed = parse_search("Patient", [("foo", "1"), ("name", "smith"), ("gender", "")], strict=False)
    assert parsed.query.criteria == (Clause("name", "string", (StringValue("smith"),)),)
    assert [i.name for i in parsed.ignored] == ["foo", "gender"]
    assert parsed.used == (("name", "smith"),)


# -- properties ---------------------------------------------------------------------------------------

_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)


@given(st.lists(_TEXT, min_size=1, max_size=5))
def test_escaped_values_survive_splitting(parts: list[str]) -> None:
    """Escaping each value and joining with `,` splits back into exactly those values."""
    joined = ",".join(v.escape(p) for p in parts)
    assert [v.unescape(p) for p in v.split_unescaped(joined, ",")] == parts


@given(_TEXT, _TEXT)
def test_escaped_token_parts_survive(system: str, code: str) -> None:
    assert v.parse_token(f"{v.escape(system)}|{v.escape(code)}", None) == TokenValue(system, code)


_PRECISIONS = {
    "year": ("%Y", None),
    "month": ("%Y-%m", None),
    "day": ("%Y-%m-%d", DAY),
    "minute": ("%Y-%m-%dT%H:%MZ", 60_000_000),
    "second": ("%Y-%m-%dT%H:%M:%SZ", 1_000_000),
}


@given(
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 12, 31)),
    st.sampled_from(sorted(_PRECISIONS)),
    st.sampled_from(["", "ge", "lt", "sa"]),
)
def test_partial_dates_contain_the_moment(moment: datetime, precision: str, prefix: str) -> None:
    """A date of any precision is the range that contains the moment it was cut from."""
    fmt, width = _PRECISIONS[precision]
    text = moment.strftime(fmt)
    value = v.parse_date(prefix + text)
    instant = int((moment.replace(tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))
    assert value.prefix == (prefix or "eq")
    assert value.low <= instant < value.high
    assert (value.low, value.high) == date_bounds(text)
    if width is not None:
        assert value.high - value.low == width


def test_the_same_include_twice_is_one_include() -> None:
    """Twenty copies of `_revinclude:iterate=*` ran twenty times (10 s on a store of canonicals)."""
    params = [("_revinclude:iterate", "*")] * 20 + [("_include", "Observation:subject")] * 2
    query = parse_search("Observation", params).query
    assert len(query.revincludes) == 1 and len(query.includes) == 1
