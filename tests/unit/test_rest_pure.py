"""Pure helpers of the REST and HTTP layers."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_server import jsonio
from fhir_server.errors import BadRequest, NotAcceptable, UnsupportedMediaType
from fhir_server.http.negotiation import check_request_media_type, response_media_type
from fhir_server.instants import from_micros, to_micros
from fhir_server.rest.bundle import _references, _replace_refs
from fhir_server.rest.planned import criteria_params
from fhir_server.rest.writes import parse_etag, stamp


def test_etags_weak_and_strong() -> None:
    assert parse_etag('W/"3"') == 3
    assert parse_etag('"12"') == 12
    assert parse_etag('W/"x"') is None
    assert parse_etag("") is None


@pytest.mark.parametrize(
    ("accept", "fmt", "expected"),
    [
        (None, None, "application/fhir+json"),
        ("*/*", None, "application/fhir+json"),
        ("application/json", None, "application/json"),
        ("application/fhir+json;q=0.9, */*;q=0.1", None, "application/fhir+json"),
        ("application/fhir+xml", "json", "application/fhir+json"),
        (None, "application/fhir+json", "application/fhir+json"),
    ],
)
def test_json_is_negotiated(accept: str | None, fmt: str | None, expected: str) -> None:
    assert response_media_type(accept, fmt) == expected


@pytest.mark.parametrize(
    ("accept", "fmt"), [("application/fhir+xml", None), (None, "xml"), (None, "ttl"), ("text/html", None)]
)
def test_other_formats_are_406(accept: str | None, fmt: str | None) -> None:
    with pytest.raises(NotAcceptable):
        response_media_type(accept, fmt)


def test_request_media_types() -> None:
    check_request_media_type("application/fhir+json; charset=utf-8")
    check_request_media_type(None)
    check_request_media_type("application/json-patch+json", patch=True)
    with pytest.raises(UnsupportedMediaType):
        check_request_media_type("application/fhir+xml")
    with pytest.raises(UnsupportedMediaType):
        check_request_media_type("application/fhir+json", patch=True)


def test_criteria_params_from_url_or_query() -> None:
    assert criteria_params("Patient?identifier=a|b&name=x") == [("identifier", "a|b"), ("name", "x")]
    assert criteria_params("identifier=a%7Cb") == [("identifier", "a|b")]
    with pytest.raises(BadRequest):
        criteria_params("Patient?")


def test_references_to_full_urls_are_rewritten_everywhere() -> None:
    resource: dict[str, Any] = {
        "subject": {"reference": "urn:uuid:1"},
        "contained": [{"performer": [{"reference": "urn:uuid:1"}, {"reference": "Practitioner/x"}]}],
        "note": [{"text": "urn:uuid:1"}],
    }
    holders = _references(resource)
    _replace_refs(holders, {"urn:uuid:1": "Patient/abc"})
    assert resource["subject"] == {"reference": "Patient/abc"}
    assert resource["contained"][0]["performer"] == [
        {"reference": "Patient/abc"},
        {"reference": "Practitioner/x"},
    ]
    assert resource["note"] == [{"text": "urn:uuid:1"}]  # only references, not any text
    assert sorted(holders) == ["Patient/abc", "Practitioner/x"] and len(holders["Patient/abc"]) == 2


def test_references_are_rewritten_as_they_were_not_as_an_earlier_rewrite_left_them() -> None:
    resource: dict[str, Any] = {"a": {"reference": "urn:uuid:1"}, "b": {"reference": "urn:uuid:2"}}
    holders = _references(resource)
    _replace_refs(holders, {"urn:uuid:1": "urn:uuid:2", "urn:uuid:2": "Patient/2"})
    assert resource == {"a": {"reference": "urn:uuid:2"}, "b": {"reference": "Patient/2"}}


def test_stamp_sets_server_parts_and_keeps_client_meta() -> None:
    moment = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    stamped = stamp(
        {"resourceType": "Patient", "meta": {"versionId": "9", "tag": [{"code": "t"}]}}, "p", 2, moment
    )
    assert stamped["id"] == "p"
    assert stamped["meta"] == {
        "versionId": "2",
        "lastUpdated": "2026-11-24T10:00:00.000000+00:00",
        "tag": [{"code": "t"}],
    }
    assert list(stamped)[:3] == ["resourceType", "id", "meta"]


@given(st.integers(min_value=-(2**53), max_value=2**53))
def test_micros_round_trip(micros: int) -> None:
    assert to_micros(from_micros(micros)) == micros


@given(st.decimals(allow_nan=False, allow_infinity=False, places=None))
def test_decimals_survive_json_exactly(value: Decimal) -> None:
    text = jsonio.dumps({"v": value})
    assert str(jsonio.loads(text)["v"]) == str(value) or jsonio.loads(text)["v"] == value
