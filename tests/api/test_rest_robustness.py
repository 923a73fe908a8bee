"""Malformed or extreme requests: each answers an OperationOutcome with a 4xx status that says what to
change, never a 500, and changes nothing."""

from __future__ import annotations

from typing import Any

import httpx

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def patient(family: str = "Smith", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family}], **extra}


async def created(client: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(resource["resourceType"], json=resource, headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def refused(response: httpx.Response, status: int, *words: str) -> None:
    """`response` is an OperationOutcome with `status` whose diagnostics mention each of `words`."""
    assert response.status_code == status, (response.status_code, response.text)
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    text = " ".join(issue.get("diagnostics", "") for issue in outcome["issue"])
    for word in words:
        assert word in text, (word, text)


async def test_paging_numbers_must_be_ascii_digits(app_client: httpx.AsyncClient) -> None:
    """`²` is a digit to str.isdigit() but not a number: 400 naming the parameter, wherever paging is."""
    pid = (await created(app_client, patient()))["id"]
    for path in (
        "Patient?_count=%C2%B2",
        "Patient?_offset=%C2%B2",
        "_history?_count=%C2%B2",
        "Patient/_history?_offset=%D9%A1",
        f"Patient/{pid}/$everything?_count=%C2%B2",
    ):
        refused(await app_client.get(path), 400, "_", "0-9")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    refused(await app_client.post("Patient/_search", content="_count=%C2%B2", headers=form), 400, "_count")


async def test_huge_offsets_are_refused_or_answered(app_client: httpx.AsyncClient) -> None:
    """An offset beyond what a 64-bit store holds is a 400 naming the limit for search; history keeps
    its clamp (an empty page); a huge _count is still clamped to the largest page."""
    pid = (await created(app_client, patient()))["id"]
    for path in (
        "Patient?_offset=9223372036854775808",
        f"Patient/{pid}/$everything?_offset=99999999999999999999",
    ):
        refused(await app_client.get(path), 400, "_offset", "1,000,000,000")
    history = await app_client.get("_history?_offset=" + "9" * 5000)
    assert history.status_code == 200 and not history.json().get("entry")
    assert (await app_client.get("Patient?_count=" + "9" * 5000)).json()["total"] == 1


async def test_vread_of_an_impossible_version_is_404(app_client: httpx.AsyncClient) -> None:
    pid = (await created(app_client, patient()))["id"]
    for version in ("%C2%B2", "999999999999999999999999999999", "9" * 5000):
        refused(await app_client.get(f"Patient/{pid}/_history/{version}"), 404, f"Patient/{pid}")


async def test_etags_with_odd_or_huge_numbers(app_client: httpx.AsyncClient) -> None:
    """If-Match `W/"²"` is not a version ETag (400); a 5000-digit version matches nothing (412), and
    as If-None-Match it is simply not the current version (200)."""
    pid = (await created(app_client, patient()))["id"]
    put = {**FHIR_JSON, "If-Match": 'W/"²"'.encode("latin-1")}
    refused(await app_client.put(f"Patient/{pid}", json=patient(id=pid), headers=put), 400, "If-Match")
    huge = 'W/"' + "9" * 5000 + '"'
    put = {**FHIR_JSON, "If-Match": huge}
    refused(await app_client.put(f"Patient/{pid}", json=patient(id=pid), headers=put), 412)
    for tag in ('W/"²"'.encode("latin-1"), huge.encode()):
        assert (await app_client.get(f"Patient/{pid}", headers={"If-None-Match": tag})).status_code == 200
    assert (await app_client.get(f"Patient/{pid}")).json()["meta"]["versionId"] == "1"


async def test_if_modified_since_with_minus_zero_zone_is_utc(app_client: httpx.AsyncClient) -> None:
    """RFC 9110: `-0000` is an HTTP date in UTC (Python reads it as naive)."""
    pid = (await created(app_client, patient()))["id"]
    old = await app_client.get(
        f"Patient/{pid}", headers={"If-Modified-Since": "Mon, 01 Jan 2024 00:00:00 -0000"}
    )
    assert old.status_code == 200
    new = await app_client.get(
        f"Patient/{pid}", headers={"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 -0000"}
    )
    assert new.status_code == 304


async def test_history_moments_outside_years_1_to_9999(app_client: httpx.AsyncClient) -> None:
    """`_since` before year 1 selects every version, `_at` before it none, `_at` after 9999 all."""
    await created(app_client, patient())
    for query, expected in (
        ("_since=0000-01-01T00:00:00Z", 1),
        ("_since=0001-01-01T00:00:00%2B14:00", 1),
        ("_at=0000-01-01T00:00:00Z", 0),
        ("_at=9999-12-31T23:59:59-14:00", 1),
    ):
        response = await app_client.get(f"_history?{query}")
        assert response.status_code == 200, (query, response.text)
        assert len(response.json().get("entry", [])) == expected, query


async def test_a_bad_get_entry_fails_only_itself(app_client: httpx.AsyncClient) -> None:
    """In a batch (and for a transaction's reads) each bad GET is reported in its own entry."""
    pid = (await created(app_client, patient()))["id"]
    urls = ["Patient?_count=%C2%B2", f"Patient/{pid}/_history/%C2%B2", "Patient?_offset=99999999999999999999"]
    for kind in ("batch", "transaction"):
        entries = [{"request": {"method": "GET", "url": url}} for url in [*urls, f"Patient/{pid}"]]
        response = await app_client.post("", json={"resourceType": "Bundle", "type": kind, "entry": entries})
        assert response.status_code == 200, (kind, response.text)
        statuses = [e["response"]["status"] for e in response.json()["entry"]]
        assert statuses == ["400", "404", "400", "200 OK"], (kind, statuses)


def observation(value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "weight"},
        "valueQuantity": {"value": value, "unit": "kg"},
    }


async def test_decimals_beyond_double_range_are_refused(app_client: httpx.AsyncClient) -> None:
    """A decimal no double can hold is a 422 naming the element, before anything is stored."""
    for text in ("1e400", "-1E+309", "1" + "0" * 400):
        body = '{"resourceType":"Observation","status":"final","code":{"text":"w"},'
        body += '"valueQuantity":{"value":' + text + "}}"
        response = await app_client.post("Observation", content=body, headers=FHIR_JSON)
        refused(response, 422, "out of range")
        assert response.json()["issue"][0]["expression"] == ["Observation.valueQuantity.value"]
    assert (await app_client.get("Observation")).json()["total"] == 0
    tiny = (
        '{"resourceType":"Observation","status":"final","code":{"text":"w"},"valueQuantity":{"value":1e-400}}'
    )
    assert (await app_client.post("Observation", content=tiny, headers=FHIR_JSON)).status_code == 201


async def test_summary_and_elements_keep_decimal_precision(app_client: httpx.AsyncClient) -> None:
    """_summary / _elements re-read the stored body; its decimals come back as written."""
    body = '{"resourceType":"Observation","status":"final","code":{"text":"w"},'
    body += '"valueQuantity":{"value":0.10,"unit":"kg"}}'
    oid = (await app_client.post("Observation", content=body, headers=FHIR_JSON)).json()["id"]
    for path in (
        "Observation?_summary=data",
        "Observation?_elements=valueQuantity",
        "Observation?_summary=true",
        f"Observation/{oid}?_summary=data",
    ):
        response = await app_client.get(path)
        assert response.status_code == 200, (path, response.text)
        assert b'"value":0.10' in response.content, (path, response.text)


def nested_extensions(levels: int) -> dict[str, Any]:
    extension: dict[str, Any] = {"url": "http://example.org/x", "valueString": "leaf"}
    for _ in range(levels):
        extension = {"url": "http://example.org/x", "extension": [extension]}
    return {"resourceType": "Patient", "extension": [extension]}


async def test_deep_nesting_is_refused_naming_the_limit(app_client: httpx.AsyncClient) -> None:
    """JSON nested past 100 levels is a 400 before any parse or validation: as a resource (150
    nested extensions, ~5 KB), as raw arrays (2000 levels), in $validate, a Bundle, a JSON Patch."""
    deep_resource = nested_extensions(150)
    deep_array = b"[" * 2000 + b"]" * 2000
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": deep_resource, "request": {"method": "POST", "url": "Patient"}}],
    }
    for method, path, body in (
        ("POST", "Patient", deep_resource),
        ("PUT", "Patient/deep", {**deep_resource, "id": "deep"}),
        ("POST", "Patient/$validate", deep_resource),
        ("POST", "", transaction),
    ):
        response = await app_client.request(method, path, json=body, headers=FHIR_JSON)
        refused(response, 400, "100 levels")
    refused(await app_client.post("Patient", content=deep_array, headers=FHIR_JSON), 400, "100 levels")
    pid = (await created(app_client, patient()))["id"]
    patch = [{"op": "add", "path": "/extension", "value": deep_resource["extension"]}]
    headers = {"Content-Type": "application/json-patch+json"}
    refused(await app_client.patch(f"Patient/{pid}", json=patch, headers=headers), 400, "100 levels")
    assert (await app_client.get("Patient")).json()["total"] == 1


async def test_a_patch_cannot_build_a_resource_deeper_than_the_limit(app_client: httpx.AsyncClient) -> None:
    """Each patch value is within the limit but where it goes is not: the result is checked too (422)."""
    pid = (await created(app_client, nested_extensions(45)))["id"]
    path = "/extension/0" + "/extension/0" * 45
    patch = [{"op": "add", "path": path + "/extension", "value": nested_extensions(45)["extension"]}]
    headers = {"Content-Type": "application/json-patch+json"}
    refused(await app_client.patch(f"Patient/{pid}", json=patch, headers=headers), 422, "100 levels")


async def test_json_patch_operations_must_be_objects(app_client: httpx.AsyncClient) -> None:
    pid = (await created(app_client, patient()))["id"]
    headers = {"Content-Type": "application/json-patch+json"}
    for body, kind in (([1], "a number"), ([None], "null"), (["x"], "a string"), ([[]], "an array")):
        response = await app_client.patch(f"Patient/{pid}", json=body, headers=headers)
        refused(response, 400, "operation 0 must be an object", kind)
    assert (await app_client.get(f"Patient/{pid}")).json()["meta"]["versionId"] == "1"


def transaction(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def post_entry(resource: dict[str, Any], full_url: str | None = None, **request: Any) -> dict[str, Any]:
    entry = {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"], **request}}
    return {**entry, "fullUrl": full_url} if full_url else entry


def about(reference: str) -> dict[str, Any]:
    return {**observation(1), "subject": {"reference": reference}}


async def test_entry_if_match_that_is_no_etag_is_refused(app_client: httpx.AsyncClient) -> None:
    """As the If-Match header: `garbage` or a number in request.ifMatch is a 400, nothing written."""
    pid = (await created(app_client, patient("Before")))["id"]
    for if_match in ("garbage", 1, 'W/"²"'):
        put = {
            "resource": patient("After", id=pid),
            "request": {"method": "PUT", "url": f"Patient/{pid}", "ifMatch": if_match},
        }
        for kind in ("transaction", "batch"):
            response = await app_client.post("", json={**transaction(put), "type": kind})
            if kind == "transaction":
                refused(response, 400, "Bundle.entry[0].request.ifMatch")
            else:
                assert response.json()["entry"][0]["response"]["status"] == "400"
    assert (await app_client.get(f"Patient/{pid}")).json()["name"][0]["family"] == "Before"


async def test_empty_if_none_exist_is_refused(app_client: httpx.AsyncClient) -> None:
    """An empty If-None-Exist (header or ifNoneExist) is no criteria: 400, not an unconditional create."""
    response = await app_client.post("Patient", json=patient(), headers={**FHIR_JSON, "If-None-Exist": ""})
    refused(response, 400, "If-None-Exist")
    refused(
        await app_client.post("", json=transaction(post_entry(patient(), ifNoneExist=""))), 400, "ifNoneExist"
    )
    assert (await app_client.get("Patient")).json()["total"] == 0


async def test_duplicate_full_urls_are_refused(app_client: httpx.AsyncClient) -> None:
    urn = "urn:uuid:8f0b9d4e-3c1a-4f7e-9a55-2b6c0e1d7a01"
    bundle = transaction(
        post_entry(patient("One"), urn), post_entry(patient("Two"), urn), post_entry(about(urn))
    )
    refused(await app_client.post("", json=bundle), 400, "Bundle.entry[1]", "Bundle.entry[0]", urn)
    assert (await app_client.get("_history")).json()["total"] == 0


async def test_a_urn_uuid_reference_to_no_entry_is_refused(app_client: httpx.AsyncClient) -> None:
    """bundle.html#references: a urn:uuid names an entry of the Bundle; naming none is a 400."""
    urn, other = (
        "urn:uuid:8f0b9d4e-3c1a-4f7e-9a55-2b6c0e1d7a02",
        "urn:uuid:8f0b9d4e-3c1a-4f7e-9a55-2b6c0e1d7a03",
    )
    bundle = transaction(post_entry(patient(), urn), post_entry(about(other)))
    refused(await app_client.post("", json=bundle), 400, "Bundle.entry[1]", other)
    assert (await app_client.get("_history")).json()["total"] == 0
    ok = await app_client.post("", json=transaction(post_entry(patient(), urn), post_entry(about(urn))))
    assert ok.status_code == 200, ok.text


async def test_searches_with_too_many_filters_or_values_are_refused(app_client: httpx.AsyncClient) -> None:
    """1000 ANDed parameters broke SQLite (a 500); the limits are 100 filters and 5000 values."""
    await created(app_client, patient("a"))
    many = "&".join(["name=a"] * 1000)
    refused(await app_client.get(f"Patient?{many}"), 400, "at most 100 filter parameters")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    refused(await app_client.post("Patient/_search", content=many, headers=form), 400, "at most 100")
    values = "name=" + ",".join(f"x{i}" for i in range(5001))
    refused(
        await app_client.post("Patient/_search", content=values, headers=form), 400, "at most 5000 values"
    )
    within = "&".join(["name=a"] * 99) + "&_id=" + ",".join(f"x{i}" for i in range(4901))
    response = await app_client.post("Patient/_search", content=within, headers=form)
    assert response.status_code == 200 and response.json()["total"] == 0, response.text


async def test_post_search_takes_only_a_form_body(app_client: httpx.AsyncClient) -> None:
    """A body the server would ignore answers everything: a non-form type is a 415, a broken form a 400."""
    await created(app_client, patient("Smith"))
    await created(app_client, patient("Jones"))
    response = await app_client.post("Patient/_search", json={"name": "Smith"})
    refused(response, 415, "application/x-www-form-urlencoded")
    boundary = "multipart/form-data; boundary=xyz"
    broken = b'--xyz\r\nContent-Disposition: form-data; name="name"\r\n\r\nSmith'
    refused(await app_client.post("Patient/_search", content=broken, headers={"Content-Type": boundary}), 415)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    refused(await app_client.post("Patient/_search", content=b"name", headers=form), 400, "name=value")
    refused(await app_client.post("Patient/_search", content=b"name=\xff", headers=form), 400, "UTF-8")
    found = await app_client.post("Patient/_search", content=b"name=Smith&", headers=form)
    assert found.status_code == 200 and found.json()["total"] == 1
    empty = await app_client.post("Patient/_search?name=Jones", headers={"Content-Type": "application/json"})
    assert empty.status_code == 200 and empty.json()["total"] == 1


async def test_dot_segment_ids_are_refused(app_client: httpx.AsyncClient) -> None:
    """`.` and `..` match the id rule but URLs resolve them away (RFC 3986): not ids on this server."""
    for id in (".", ".."):
        put = {"resource": patient(id=id), "request": {"method": "PUT", "url": f"Patient/{id}"}}
        refused(await app_client.post("", json=transaction(put)), 400, "RFC 3986")
    assert (await app_client.get("_history")).json()["total"] == 0
    put = {"resource": patient(id="..."), "request": {"method": "PUT", "url": "Patient/..."}}
    assert (await app_client.post("", json=transaction(put))).status_code == 200


async def test_a_trailing_slash_means_the_same_for_every_method(app_client: httpx.AsyncClient) -> None:
    """GET `Patient/1/` always worked; PUT, PATCH, DELETE and POST answered 405."""
    assert (await app_client.post("Patient/", json=patient(), headers=FHIR_JSON)).status_code == 201
    put = await app_client.put("Patient/p1/", json=patient(id="p1"), headers=FHIR_JSON)
    assert put.status_code == 201, put.text
    patch = [{"op": "add", "path": "/active", "value": True}]
    headers = {"Content-Type": "application/json-patch+json"}
    assert (await app_client.patch("Patient/p1/", json=patch, headers=headers)).status_code == 200
    assert (await app_client.get("Patient/p1/")).json()["active"] is True
    assert (await app_client.delete("Patient/p1/")).status_code == 204
    assert (await app_client.get("Patient/p1")).status_code == 410


async def test_a_transaction_may_carry_a_document_bundle(app_client: httpx.AsyncClient) -> None:
    """A document Bundle's urn:uuid references name its own entries, not the transaction's: it is
    stored as written (they were refused as references to no entry)."""
    composition = "urn:uuid:0c3e2b7a-1d4f-4e6b-8a9c-5f2d1e0b7a11"
    subject = "urn:uuid:0c3e2b7a-1d4f-4e6b-8a9c-5f2d1e0b7a12"
    document = {
        "resourceType": "Bundle",
        "type": "document",
        "identifier": {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:0c3e2b7a-1d4f-4e6b-8a9c-5f2d1e0b7a"},
        "timestamp": "2026-11-30T10:00:00Z",
        "entry": [
            {"fullUrl": composition, "resource": {
                "resourceType": "Composition", "status": "final", "date": "2026-11-30",
                "type": {"text": "Discharge letter"}, "title": "Discharge", "subject": {"reference": subject},
                "author": [{"reference": subject}]}},
            {"fullUrl": subject, "resource": patient("Doc")},
        ],
    }  # fmt: skip
    response = await app_client.post("", json=transaction(post_entry(document)))
    assert response.status_code == 200, response.text
    stored = (await app_client.get("Bundle")).json()["entry"][0]["resource"]
    assert stored["entry"][0]["resource"]["subject"] == {"reference": subject}


async def test_uri_above_takes_a_bounded_number_of_segments(app_client: httpx.AsyncClient) -> None:
    """`:above` looks up every ancestor of its url: thousands of segments are a 400, not minutes."""
    long_url = "http://x.org/" + "a/" * 20_000
    refused(await app_client.post("ValueSet/_search", data={"url:above": long_url}), 400, "64 path segments")
    found = await app_client.get("ValueSet", params={"url:above": "http://x.org/" + "a/" * 60})
    assert found.status_code == 200


async def test_value_set_lookups_are_bounded_and_versions_are_any_text(app_client: httpx.AsyncClient) -> None:
    """A search names at most 20 value sets for :in (each is looked up before the search runs); a
    stored ValueSet whose version has odd digits is ordered, not a 500."""
    many = ",".join(f"http://x.org/v{i}" for i in range(21))
    refused(await app_client.get("Observation", params={"code:in": many}), 400, "20 value sets")
    for version in ("1.²", "1." + "9" * 5000, "2"):
        include = {"system": "http://loinc.org", "concept": [{"code": "8480-6"}]}
        value_set = {
            "resourceType": "ValueSet",
            "status": "active",
            "url": "http://x.org/vs",
            "version": version,
        }
        await created(app_client, {**value_set, "compose": {"include": [include]}})
    response = await app_client.get("Observation", params={"code:in": "http://x.org/vs"})
    assert response.status_code == 200, response.text


async def test_json_patch_copies_cannot_blow_up_the_resource(app_client: httpx.AsyncClient) -> None:
    """`copy` can double a resource per operation, or nest it one level deeper each time: the result
    is measured after each copy (422), and a patch holds at most 1000 operations (400)."""
    pid = (await created(app_client, patient(address=[{"line": ["1 High Street"]}])))["id"]
    headers = {"Content-Type": "application/json-patch+json"}
    doubling = [{"op": "copy", "from": "/address", "path": "/address/-"} for _ in range(22)]
    refused(await app_client.patch(f"Patient/{pid}", json=doubling, headers=headers), 422, "operation")
    nesting = [{"op": "copy", "from": "/address/0", "path": "/address/0/x"} for _ in range(1000)]
    refused(await app_client.patch(f"Patient/{pid}", json=nesting, headers=headers), 422, "100 levels")
    refused(
        await app_client.patch(f"Patient/{pid}", json=nesting * 2, headers=headers), 400, "1000 operations"
    )
    small = [{"op": "copy", "from": "/address/0", "path": "/address/-"}]
    assert (await app_client.patch(f"Patient/{pid}", json=small, headers=headers)).status_code == 200


async def test_sort_takes_a_bounded_number_of_keys(app_client: httpx.AsyncClient) -> None:
    """1,000 `_sort` keys broke SQLite (a 500): more than 10 is a 400 naming the limit."""
    await created(app_client, patient())
    refused(await app_client.get("Patient", params={"_sort": ",".join(["family"] * 1000)}), 400, "10 keys")
    ten = await app_client.get("Patient", params={"_sort": ",".join(["family", "-birthdate"] * 5)})
    assert ten.status_code == 200
