"""Search through HTTP: Bundles, links, strict/lenient, compartments, $everything, conditional create.

https://hl7.org/fhir/R4/search.html · https://hl7.org/fhir/R4/http.html#search
"""

from __future__ import annotations

import base64
from typing import Any

import httpx

from tests.conftest import BASE

FHIR_JSON = {"Content-Type": "application/fhir+json"}


async def put(client: httpx.AsyncClient, resource: dict[str, Any]) -> None:
    response = await client.put(f"{resource['resourceType']}/{resource['id']}", json=resource)
    assert response.status_code in (200, 201), response.text


async def seed(client: httpx.AsyncClient) -> None:
    await put(client, {"resourceType": "Patient", "id": "p1", "name": [{"family": "Smith"}]})
    await put(client, {"resourceType": "Patient", "id": "p2", "name": [{"family": "Jones"}]})
    for i, subject in enumerate(["p1", "p1", "p1", "p2"]):
        await put(
            client,
            {
                "resourceType": "Observation",
                "id": f"o{i}",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "subject": {"reference": f"Patient/{subject}"},
                "effectiveDateTime": f"2026-11-2{i}T10:00:00Z",
            },
        )


async def test_search_answers_a_searchset(app_client: httpx.AsyncClient) -> None:
    await seed(app_client)
    response = await app_client.get("Observation", params={"patient": "p1", "_sort": "-date"})
    assert response.status_code == 200
    bundle = response.json()
    assert bundle["type"] == "searchset" and bundle["total"] == 3
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["o2", "o1", "o0"]
    assert bundle["entry"][0]["fullUrl"] == f"{BASE}/Observation/o2"
    assert {e["search"]["mode"] for e in bundle["entry"]} == {"match"}
    assert bundle["link"][0] == {"relation": "self", "url": f"{BASE}/Observation?patient=p1&_sort=-date"}


async def test_next_links_walk_every_page(app_client: httpx.AsyncClient) -> None:
    await seed(app_client)
    seen: list[str] = []
    url: str | None = f"{BASE}/Observation?_count=3&_sort=date"
    while url:
        bundle = (await app_client.get(url)).json()
        seen += [e["resource"]["id"] for e in bundle.get("entry", [])]
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    assert seen == ["o0", "o1", "o2", "o3"]


async def test_unknown_parameter_is_400_naming_it(app_client: httpx.AsyncClient) -> None:
    response = await app_client.get("Patient", params={"nickname": "x"})
    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "nickname" in outcome["issue"][0]["diagnostics"]


async def test_lenient_handling_reports_ignored_parameters(app_client: httpx.AsyncClient) -> None:
    await seed(app_client)
    response = await app_client.get(
        "Patient", params={"nickname": "x", "name": "smi"}, headers={"Prefer": "handling=lenient"}
    )
    bundle = response.json()
    modes = [e["search"]["mode"] for e in bundle["entry"]]
    assert modes == ["match", "outcome"]
    assert bundle["link"][0]["url"] == f"{BASE}/Patient?name=smi"


async def test_post_search_and_summary_count(app_client: httpx.AsyncClient) -> None:
    await seed(app_client)
    response = await app_client.post("Observation/_search", data={"patient": "p1", "_summary": "count"})
    assert response.status_code == 200
    bundle = response.json()
    assert bundle["total"] == 3 and "entry" not in bundle


async def test_elements_subsets_and_tags(app_client: httpx.AsyncClient) -> None:
    await seed(app_client)
    bundle = (await app_client.get("Observation", params={"_id": "o0", "_elements": "subject"})).json()
    resource = bundle["entry"][0]["resource"]
    assert "effectiveDateTime" not in resource and resource["subject"] == {"reference": "Patient/p1"}
    assert any(t["code"] == "SUBSETTED" for t in resource["meta"]["tag"])


async def test_compartment_search_and_everything(app_client: httpx.AsyncClient) -> None:
    await seed(app_client)
    compartment = (await app_client.get("Patient/p2/Observation")).json()
    assert [e["resource"]["id"] for e in compartment["entry"]] == ["o3"]
    everything = (await app_client.get("Patient/p2/$everything")).json()
    assert sorted(e["resource"]["id"] for e in everything["entry"]) == ["o3", "p2"]
    assert (await app_client.get("Patient/nobody/$everything")).status_code == 404


async def test_compartment_search_across_all_types(app_client: httpx.AsyncClient) -> None:
    """`GET Patient/[id]/*` (http.html#search): every type in the compartment, with the parameters
    of a search across all types; a type's own parameters need `_type` naming it (400 otherwise)."""
    await seed(app_client)
    await put(app_client, {"resourceType": "Encounter", "id": "e1", "status": "finished",
                           "class": {"code": "AMB"}, "subject": {"reference": "Patient/p2"},
                           "meta": {"tag": [{"system": "urn:t", "code": "T1"}]}})  # fmt: skip
    bundle = (await app_client.get("Patient/p2/*")).json()
    assert sorted(e["fullUrl"].split("/fhir/")[1] for e in bundle["entry"]) == [
        "Encounter/e1", "Observation/o3", "Patient/p2",
    ]  # fmt: skip
    assert next(link["url"] for link in bundle["link"] if link["relation"] == "self").startswith(
        "http://testserver/fhir/Patient/p2/*"
    )
    tagged = (await app_client.get("Patient/p2/*", params={"_tag": "urn:t|T1"})).json()
    assert [e["resource"]["id"] for e in tagged["entry"]] == ["e1"]
    typed = (await app_client.get("Patient/p2/*", params={"_type": "Observation", "code": "8480-6"})).json()
    assert [e["resource"]["id"] for e in typed["entry"]] == ["o3"]
    assert (await app_client.get("Patient/p2/*", params={"code": "8480-6"})).status_code == 400


async def test_revinclude_and_chain(app_client: httpx.AsyncClient) -> None:
    await seed(app_client)
    bundle = (
        await app_client.get("Patient", params={"_id": "p2", "_revinclude": "Observation:subject"})
    ).json()
    assert [(e["resource"]["id"], e["search"]["mode"]) for e in bundle["entry"]] == [
        ("p2", "match"),
        ("o3", "include"),
    ]
    chained = (await app_client.get("Observation", params={"subject:Patient.name": "jones"})).json()
    assert [e["resource"]["id"] for e in chained["entry"]] == ["o3"]


async def test_canonical_questionnaire_is_included_revincluded_and_chained(
    app_client: httpx.AsyncClient,
) -> None:
    """QuestionnaireResponse.questionnaire is a canonical: it names the Questionnaire with that
    `url` in `_include`, `_revinclude` and chains (search.html#reference)."""
    url = "http://example.org/Questionnaire/phq9"
    await put(app_client, {"resourceType": "Questionnaire", "id": "q1", "url": url, "status": "active"})
    await put(
        app_client,
        {"resourceType": "QuestionnaireResponse", "id": "r1", "status": "completed", "questionnaire": url},
    )

    async def entries(resource_type: str, **params: str) -> list[tuple[str, str]]:
        response = await app_client.get(resource_type, params=params)
        assert response.status_code == 200, response.text
        return [(e["resource"]["id"], e["search"]["mode"]) for e in response.json().get("entry", [])]

    included = await entries("QuestionnaireResponse", _include="QuestionnaireResponse:questionnaire")
    assert included == [("r1", "match"), ("q1", "include")]
    revincluded = await entries("Questionnaire", _revinclude="QuestionnaireResponse:questionnaire")
    assert revincluded == [("q1", "match"), ("r1", "include")]
    assert await entries("QuestionnaireResponse", **{"questionnaire.status": "active"}) == [("r1", "match")]
    assert await entries("QuestionnaireResponse", **{"questionnaire.status": "retired"}) == []


async def test_conditional_create_finds_the_existing_match(app_client: httpx.AsyncClient) -> None:
    await seed(app_client)
    response = await app_client.post(
        "Patient",
        json={"resourceType": "Patient", "name": [{"family": "Smith"}]},
        headers={**FHIR_JSON, "If-None-Exist": "name=smith"},
    )
    assert response.status_code == 200
    assert (await app_client.get("Patient", params={"name": "smith"})).json()["total"] == 1


async def test_conditional_create_criteria_may_come_in_the_query(app_client: httpx.AsyncClient) -> None:
    """`POST Patient?name=smith` means what If-None-Exist: name=smith means; both at once is a 400."""
    body = {"resourceType": "Patient", "name": [{"family": "Brown"}]}
    first = await app_client.post("Patient?name=brown&_format=json", json=body, headers=FHIR_JSON)
    second = await app_client.post("Patient?name=brown", json=body, headers=FHIR_JSON)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    both = await app_client.post(
        "Patient?name=brown", json=body, headers={**FHIR_JSON, "If-None-Exist": "name=brown"}
    )
    assert both.status_code == 400 and "not both" in both.text


async def test_conditional_criteria_that_select_nothing_are_a_400(app_client: httpx.AsyncClient) -> None:
    """Only result parameters would match every resource of the type: refused, nothing written."""
    await put(app_client, {"resourceType": "Patient", "id": "only", "active": True})
    body = {"resourceType": "Patient", "active": False}
    for response in (
        await app_client.post("Patient?_count=1", json=body, headers=FHIR_JSON),
        await app_client.post("Patient", json=body, headers={**FHIR_JSON, "If-None-Exist": "_sort=name"}),
        await app_client.put("Patient?_count=1", json=body, headers=FHIR_JSON),
        await app_client.delete("Patient?_total=none"),
    ):
        assert response.status_code == 400, response.text
        assert "select" in response.json()["issue"][0]["diagnostics"]
    assert (await app_client.get("Patient?_total=accurate")).json()["total"] == 1
    assert (await app_client.get("Patient/only")).json()["active"] is True


async def test_search_parameters_on_an_instance_write_are_refused(app_client: httpx.AsyncClient) -> None:
    """PUT/PATCH/DELETE [type]/[id]?x=y: strict handling names what would otherwise be ignored."""
    await put(app_client, {"resourceType": "Patient", "id": "q1", "active": True})
    update = await app_client.put(
        "Patient/q1?name=smith", json={"resourceType": "Patient", "id": "q1"}, headers=FHIR_JSON
    )
    assert update.status_code == 400 and "name" in update.json()["issue"][0]["diagnostics"]
    deleted = await app_client.delete("Patient/q1?identifier=x")
    assert deleted.status_code == 400
    assert (await app_client.get("Patient/q1")).json()["active"] is True  # nothing changed
    lenient = await app_client.delete("Patient/q1?identifier=x", headers={"Prefer": "handling=lenient"})
    assert lenient.status_code in (200, 204)
    assert (await app_client.get("Patient/q1")).status_code == 410
    formatted = await app_client.put(
        "Patient/q2?_format=json", json={"resourceType": "Patient", "id": "q2"}, headers=FHIR_JSON
    )
    assert formatted.status_code == 201


async def test_token_in_a_value_set_held_here(app_client: httpx.AsyncClient) -> None:
    await seed(app_client)
    value_set = {
        "resourceType": "ValueSet",
        "id": "bp",
        "url": "http://example.org/vs/bp",
        "status": "active",
        "compose": {"include": [{"system": "http://loinc.org", "concept": [{"code": "8480-6"}]}]},
    }
    await put(app_client, value_set)
    found = (await app_client.get("Observation", params={"code:in": "http://example.org/vs/bp"})).json()
    assert found["total"] == 4
    none = (await app_client.get("Observation", params={"code:not-in": "http://example.org/vs/bp"})).json()
    assert none["total"] == 0
    unknown = await app_client.get("Observation", params={"code:in": "http://example.org/vs/unknown"})
    assert unknown.status_code == 400


def letter(id: str, date: str) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "id": id,
        "status": "current",
        "subject": {"reference": "Patient/p1"},
        "date": date,
        "content": [{"attachment": {"contentType": "application/pdf", "title": f"{id}.pdf"}}],
    }


async def test_next_links_page_stably_while_letters_arrive(app_client: httpx.AsyncClient) -> None:
    """A patient reads their letters newest first, 2 a page; new letters arrive between pages. The
    `next` links carry a cursor, so no letter is shown twice and none of the first view is missed."""
    await seed(app_client)
    for day in range(1, 8):
        await put(app_client, letter(f"l{day}", f"2026-10-0{day}T09:00:00Z"))
    url: str | None = "DocumentReference?patient=p1&_sort=-date&_count=2"
    seen: list[str] = []
    while url is not None:
        bundle = (await app_client.get(url)).json()
        seen += [e["resource"]["id"] for e in bundle.get("entry", [])]
        await put(app_client, letter(f"new{len(seen)}", "2026-11-01T09:00:00Z"))  # newest: page 1's place
        following = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        assert not following or "_cursor=" in following[0]
        url = following[0].removeprefix(BASE + "/") if following else None
    assert seen == [f"l{day}" for day in range(7, 0, -1)]


async def test_a_cursor_the_server_did_not_write_is_a_400(app_client: httpx.AsyncClient) -> None:
    """Junk, a forged token of the right form, and [2^64] in plain base64 (once a 500): all 400."""
    await seed(app_client)
    for bad in ("not-base64!", "e30", "A" * 40, "WzE4NDQ2NzQ0MDczNzA5NTUxNjE1XQ"):
        response = await app_client.get("Observation", params={"_cursor": bad, "_sort": "date"})
        assert response.status_code == 400, bad
        assert "_cursor" in response.json()["issue"][0]["diagnostics"]


def next_url(bundle: dict[str, Any]) -> str:
    return next(link["url"] for link in bundle["link"] if link["relation"] == "next").removeprefix(BASE + "/")


async def test_a_cursor_opens_only_for_its_own_search(app_client: httpx.AsyncClient) -> None:
    """A next link's cursor taken to another search (other criteria, or another order) is a 400."""
    await seed(app_client)
    first = (await app_client.get("Observation?_sort=date&_count=1")).json()
    cursor = next_url(first).split("_cursor=")[1]
    assert (await app_client.get(next_url(first))).status_code == 200
    for other in ("Observation?_sort=-date", "Observation?_sort=date&subject=Patient/p1"):
        moved = await app_client.get(f"{other}&_count=1&_cursor={cursor}")
        assert moved.status_code == 400, other


async def test_a_cursor_shows_nothing_of_what_it_holds(app_client: httpx.AsyncClient) -> None:
    """Sorted by identifier, the last match's NHS number is the position; the link must not show it."""
    for n, nhs in enumerate(("9990000018", "9990000026", "9990000034")):
        patient = {
            "resourceType": "Patient",
            "id": f"n{n}",
            "identifier": [{"system": "urn:nhs", "value": nhs}],
        }
        await put(app_client, patient)
    first = (await app_client.get("Patient?_sort=identifier&_count=1")).json()
    token = next_url(first).split("_cursor=")[1].split("&")[0]
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert b"999000" not in raw and b"urn:nhs" not in raw
    second = (await app_client.get(next_url(first))).json()
    assert [e["resource"]["id"] for e in second["entry"]] == ["n1"]


async def test_decimals_sent_over_http_are_searchable(app_client: httpx.AsyncClient) -> None:
    """Numbers with a fraction or exponent (parsed exactly, as Decimal) are indexed like any other:
    by value, prefix, unit, `:missing` and `_sort`, from PUT, POST and a transaction alike."""

    def obs(id: str, value: str) -> bytes:
        quantity = f'{{"value":{value},"system":"http://unitsofmeasure.org","code":"mmol/L"}}'
        body = f'{{"resourceType":"Observation","id":"{id}","status":"final","code":{{"text":"glucose"}},'
        return (body + f'"valueQuantity":{quantity}}}').encode()

    for id, value in [("o1", "6.3"), ("o2", "1e1"), ("o3", "5")]:
        assert (
            await app_client.put(f"Observation/{id}", content=obs(id, value), headers=FHIR_JSON)
        ).is_success
    created = await app_client.post(
        "Observation", content=obs("x", "7.25").replace(b'"id":"x",', b""), headers=FHIR_JSON
    )
    assert created.status_code == 201
    risk = (
        b'{"resourceType":"RiskAssessment","id":"r1","status":"final","subject":{"reference":"Patient/p1"},'
    )
    risk += b'"prediction":[{"probabilityDecimal":0.02}]}'
    assert (await app_client.put("RiskAssessment/r1", content=risk, headers=FHIR_JSON)).is_success

    async def found(resource_type: str, **params: str) -> list[str]:
        bundle = (await app_client.get(resource_type, params=params)).json()
        return [e["resource"].get("id") for e in bundle.get("entry", [])]

    assert await found("Observation", **{"value-quantity": "6.3"}) == ["o1"]
    assert await found("Observation", **{"value-quantity": "6.3|http://unitsofmeasure.org|mmol/L"}) == ["o1"]
    assert len(await found("Observation", **{"value-quantity": "gt6"})) == 3  # 6.3, 10 and 7.25
    assert await found("Observation", **{"value-quantity": "10"}) == ["o2"]  # stored as 1e1
    assert len(await found("Observation", **{"value-quantity:missing": "false"})) == 4
    values = (await app_client.get("Observation", params={"_sort": "value-quantity"})).json()["entry"]
    assert [e["resource"]["valueQuantity"]["value"] for e in values] == [5, 6.3, 7.25, 10]
    assert await found("RiskAssessment", probability="0.02") == ["r1"]
    assert await found("RiskAssessment", **{"probability:missing": "true"}) == []


async def test_post_search_at_system_level_and_in_a_compartment(app_client: httpx.AsyncClient) -> None:
    """`POST [base]/_search` and `POST [base]/Patient/[id]/[type]/_search` answer as their GETs do,
    the form's parameters joining the URL's (http.html#search); a JSON body is a 415 there too."""
    await seed(app_client)
    form = {"Content-Type": "application/x-www-form-urlencoded"}

    def ids(response: httpx.Response) -> list[str]:
        assert response.status_code == 200, response.text
        return [e["resource"]["id"] for e in response.json().get("entry", [])]

    system = await app_client.post("_search?_type=Patient", content=b"name=smith", headers=form)
    assert (
        ids(system) == ids(await app_client.get("", params={"_type": "Patient", "name": "smith"})) == ["p1"]
    )
    compartment = await app_client.post(
        "Patient/p1/Observation/_search", content=b"_sort=-date", headers=form
    )
    assert ids(compartment) == ["o2", "o1", "o0"]
    unknown = await app_client.post("_search", content=b"nosuchparameter=1", headers=form)
    assert unknown.status_code == 400
    as_json = await app_client.post("_search", json={"name": "smith"})
    assert as_json.status_code == 415


# -- found by the search review of 2026-11-30 ------------------------------------------------------


async def test_elements_do_not_apply_to_included_resources(app_client: httpx.AsyncClient) -> None:
    """search.html#elements: "The list of elements does not apply to included resources"."""
    await seed(app_client)
    params = {"_id": "o0", "_include": "Observation:subject", "_elements": "status"}
    bundle = (await app_client.get("Observation", params=params)).json()
    by_mode = {e["search"]["mode"]: e["resource"] for e in bundle["entry"]}
    assert "subject" not in by_mode["match"] and by_mode["match"]["status"] == "final"
    assert by_mode["include"]["name"] == [{"family": "Smith"}]
    assert "tag" not in by_mode["include"].get("meta", {})  # not marked SUBSETTED either


async def test_summary_count_returns_only_the_count_whatever_the_order(app_client: httpx.AsyncClient) -> None:
    await seed(app_client)
    for query in ("_summary=count&_count=2", "_count=2&_summary=count", "_summary=count&_total=none"):
        bundle = (await app_client.get(f"Observation?{query}")).json()
        assert bundle["total"] == 4 and "entry" not in bundle, query


async def test_empty_parameters_are_ignored_not_an_error(app_client: httpx.AsyncClient) -> None:
    """search.html: "Empty parameters are not an error - they are just ignored by the server"."""
    await seed(app_client)
    response = await app_client.get("Patient?name=&_count=&family=jones")
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert [e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "match"] == ["p2"]
    assert bundle["link"][0]["url"] == f"{BASE}/Patient?family=jones"  # what was used, only


async def test_conditional_criteria_with_an_empty_value_are_refused(app_client: httpx.AsyncClient) -> None:
    """A search ignores `name=`; a conditional update must not, or it would change what else matches."""
    await seed(app_client)
    body = {"resourceType": "Patient", "name": [{"family": "Smith"}], "active": True}
    response = await app_client.put("Patient?family=smith&given=", json=body, headers=FHIR_JSON)
    assert response.status_code == 400 and "given=" in response.text
    assert "active" not in (await app_client.get("Patient/p1")).json()
    # a blank value folds to nothing and would match every named patient: refused alike
    assert (await app_client.delete("Patient?name=%20&_id=p1")).status_code == 400
    assert (await app_client.get("Patient/p1")).status_code == 200
    searched = (await app_client.get("Patient?name=%20%20&family=jones")).json()
    assert [e["resource"]["id"] for e in searched["entry"] if e["search"]["mode"] == "match"] == ["p2"]


async def test_an_unknown_named_query_is_refused_even_when_lenient(app_client: httpx.AsyncClient) -> None:
    """search.html: servers SHALL refuse a search whose _query they do not recognise."""
    await seed(app_client)
    response = await app_client.get("Patient?_query=everyone", headers={"Prefer": "handling=lenient"})
    assert response.status_code == 400 and "_query" in response.json()["issue"][0]["diagnostics"]
    named = await app_client.get("Patient?_query:x=everyone", headers={"Prefer": "handling=lenient"})
    assert named.status_code == 400 and "'_query:x=everyone'" in named.json()["issue"][0]["diagnostics"]
    assert (await app_client.get("Patient?_query=")).status_code == 200  # empty: ignored like any other


async def test_summary_text_cannot_be_mixed_with_includes(app_client: httpx.AsyncClient) -> None:
    """search.html#summary: _include and _revinclude cannot be mixed with _summary=text."""
    await seed(app_client)
    query = "Observation?_id=o0&_summary=text&_include=Observation:subject"
    assert (await app_client.get(query)).status_code == 400
    lenient = (await app_client.get(query, headers={"Prefer": "handling=lenient"})).json()
    assert [e["search"]["mode"] for e in lenient["entry"]] == ["match", "outcome"]
    assert "_include" not in lenient["link"][0]["url"]


async def test_type_is_for_searches_across_types(app_client: httpx.AsyncClient) -> None:
    """`Patient?_type=Observation` was answered as `Patient?` with `_type` echoed as if used."""
    await seed(app_client)
    response = await app_client.get("Patient?_type=Observation&_id=p1")
    assert response.status_code == 400 and "_type" in response.json()["issue"][0]["diagnostics"]
    across = (await app_client.get("?_type=Patient&_id=p1")).json()
    assert [e["resource"]["id"] for e in across["entry"]] == ["p1"]


async def test_deep_chains_through_canonicals_with_many_values_answer(app_client: httpx.AsyncClient) -> None:
    """Four levels through `depends-on` (canonicals) with 101 values was a 500 (SQLite's parser stack)."""
    await put(app_client, {"resourceType": "Library", "id": "l1", "status": "active", "type": {"text": "x"}})
    names = ",".join(f"n{i}" for i in range(101))
    for query in (
        f"Library?depends-on.depends-on.depends-on.depends-on.name={names}",
        f"Library?{'_has:Library:depends-on:' * 4}name={names}",
        f"CarePlan?instantiates-canonical.depends-on.depends-on.depends-on.name={names}",
    ):
        response = await app_client.get(query)
        assert response.status_code == 200, (query[:60], response.text[:300])
