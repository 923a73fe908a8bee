"""Access control on the FHIR API: issue 5's "Must show" negatives, through HTTP, with auth on.

Tokens are mapped to real `smart_auth` AccessToken values by a verifier double set as
`app.state.verify_token`; everything after verification (scopes, Consent grants, filters, storage)
is the real code. Data: patients p1, p2 (managed by the trust) and p3 (another organisation);
carer rp1 has a view-only GENERAL_HEALTH grant from p1; Person per1 links rp1 and rp2, and rp2 has
a view-and-add GENERAL + MENTAL grant from p2. RelatedPerson rp9 ("outsider") has no grant at all.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from fhir_server.app import create_app
from fhir_server.settings import Settings
from smart_auth.errors import InvalidToken
from smart_auth.models import AccessToken

BASE = "http://127.0.0.1/fhir"  # loopback: plain http is accepted only there by the auth server
PKB = "http://fhir.patientsknowbest.com/codesystem/privacy-label"
CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
VITALS = f"{CAT}|vital-signs"
Json = dict[str, Any]


def token(
    kind: str,
    scopes: str,
    *,
    fhir_user: str | None = None,
    patient: str | None = None,
    organization: str | None = None,
) -> AccessToken:
    return AccessToken(
        client_id="app",
        sub=fhir_user or "client",
        scopes=tuple(scopes.split()),
        patient=patient,
        encounter=None,
        fhir_user=fhir_user,
        user_kind=kind,  # type: ignore[arg-type]
        organization=organization,
        jti="j",
        exp=2**40,
    )


TOKENS: dict[str, AccessToken] = {
    "system": token("system", "system/*.cruds"),
    "system-obs": token("system", "system/Observation.rs"),
    "p1": token(
        "patient", "launch/patient openid fhirUser patient/*.cruds", fhir_user="Patient/p1", patient="p1"
    ),
    "p1-v1": token("patient", "patient/*.read patient/*.write", fhir_user="Patient/p1", patient="p1"),
    "p1-vitals": token(
        "patient",
        f"patient/Observation.rs?category={VITALS} patient/Patient.r",
        fhir_user="Patient/p1",
        patient="p1",
    ),
    "p1-obs-only": token("patient", "patient/Observation.rs", fhir_user="Patient/p1", patient="p1"),
    "carer": token("carer", "user/*.cruds", fhir_user="RelatedPerson/rp1"),
    "person": token("carer", "user/*.cruds", fhir_user="Person/per1"),
    "person-p2": token("carer", "patient/*.cruds", fhir_user="Person/per1", patient="p2"),
    "clinician": token("clinician", "user/*.cruds", fhir_user="Practitioner/d1", organization="trust"),
    "p2": token("patient", "patient/*.cruds", fhir_user="Patient/p2", patient="p2"),
    "rp2": token("carer", "user/*.cruds", fhir_user="RelatedPerson/rp2"),
    "outsider": token("carer", "user/*.cruds", fhir_user="RelatedPerson/rp9"),
}


def verify(raw: str) -> AccessToken:
    if raw not in TOKENS:  # expired, revoked, wrong aud: the verifier refuses them all alike
        raise InvalidToken("refused")
    return TOKENS[raw]


def obs(id: str, patient: str, category: str, label: str | None, **extra: Any) -> Json:
    body: Json = {"resourceType": "Observation", "id": id}
    if label:
        body["meta"] = {"security": [{"system": PKB, "code": label}]}
    return {
        **body,
        "status": "final",
        "category": [{"coding": [{"system": CAT, "code": category}]}],
        "code": {"text": category},
        "subject": {"reference": f"Patient/{patient}"},
        **extra,
    }


def consent(
    id: str, patient: str, actor: str, labels: list[str], actions: list[str], status: str = "active"
) -> Json:
    return {
        "resourceType": "Consent",
        "id": id,
        "status": status,
        "scope": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient}"},
        "provision": {
            "type": "permit",
            "period": {"start": "2020-01-01"},
            "actor": [
                {
                    "role": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                "code": "IRCP",
                            }
                        ]
                    },
                    "reference": {"reference": actor},
                }
            ],
            "action": [
                {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": a}]}
                for a in actions
            ],
            "securityLabel": [{"system": PKB, "code": code} for code in labels],
        },
    }


def patient(id: str, org: str) -> Json:
    return {
        "resourceType": "Patient",
        "id": id,
        "name": [{"family": f"Fam{id}"}],
        "managingOrganization": {"reference": f"Organization/{org}"},
    }


DATA: list[Json] = [
    {"resourceType": "Organization", "id": "trust", "name": "Trust"},
    {"resourceType": "Organization", "id": "other", "name": "Other"},
    patient("p1", "trust"),
    patient("p2", "trust"),
    patient("p3", "other"),
    {"resourceType": "RelatedPerson", "id": "rp1", "patient": {"reference": "Patient/p1"}},
    {"resourceType": "RelatedPerson", "id": "rp2", "patient": {"reference": "Patient/p2"}},
    {
        "resourceType": "Person",
        "id": "per1",
        "link": [
            {"target": {"reference": "RelatedPerson/rp1"}},
            {"target": {"reference": "RelatedPerson/rp2"}},
        ],
    },
    {"resourceType": "Practitioner", "id": "d1"},
    consent("c1", "p1", "RelatedPerson/rp1", ["GENERAL_HEALTH"], ["access"]),
    consent("c2", "p2", "RelatedPerson/rp2", ["GENERAL_HEALTH", "MENTAL_HEALTH"], ["access", "correct"]),
    obs("o1v", "p1", "vital-signs", "GENERAL_HEALTH"),
    obs("o1l", "p1", "laboratory", "MENTAL_HEALTH"),
    obs("o1u", "p1", "laboratory", None),
    obs("o2v", "p2", "vital-signs", "GENERAL_HEALTH"),
    obs("o2m", "p2", "laboratory", "MENTAL_HEALTH", hasMember=[{"reference": "Observation/o1v"}]),
    obs("o3v", "p3", "vital-signs", "GENERAL_HEALTH"),
    # p1's observation pointing at p2's: an _include from p1's data must not bring p2's in.
    obs("o1x", "p1", "laboratory", "GENERAL_HEALTH", hasMember=[{"reference": "Observation/o2v"}]),
]


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(data_dir=tmp_path, auth=True, base_url=BASE))
    app.state.verify_token = verify
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http,
    ):
        entries = [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in DATA
        ]
        loaded = await http.post(
            "",
            json={"resourceType": "Bundle", "type": "transaction", "entry": entries},
            headers=auth("system"),
        )
        assert loaded.status_code == 200, loaded.text
        yield http


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}"}


async def ids(http: httpx.AsyncClient, who: str, url: str) -> list[str]:
    response = await http.get(url, headers=auth(who))
    assert response.status_code == 200, response.text
    return sorted(e["resource"]["id"] for e in response.json().get("entry", []))


# -- tokens ----------------------------------------------------------------------------------------


async def test_no_token_is_401_with_a_bearer_challenge(client: httpx.AsyncClient) -> None:
    """No token: 401 and WWW-Authenticate: Bearer realm=... (no error code, RFC 6750 §3.1)."""
    response = await client.get("Patient/p1")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith(f'Bearer realm="{BASE}"')
    assert response.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("raw", ["expired-token", "revoked-token", "wrong-aud-token"])
async def test_a_token_the_verifier_refuses_is_401_invalid_token(client: httpx.AsyncClient, raw: str) -> None:
    """Expired, revoked or foreign-audience tokens: 401 with error="invalid_token", token not echoed."""
    response = await client.get("Observation", headers=auth(raw))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert raw not in response.text


async def test_metadata_stays_open(client: httpx.AsyncClient) -> None:
    """The CapabilityStatement needs no token."""
    assert (await client.get("metadata")).status_code == 200


async def test_a_path_ending_in_metadata_is_not_open(client: httpx.AsyncClient) -> None:
    """Only the exact /metadata path is open; a read of Basic/metadata still needs a token."""
    assert (await client.get("Basic/metadata")).status_code == 401


async def test_missing_scope_is_403_naming_the_scope(client: httpx.AsyncClient) -> None:
    """A token without a scope for the interaction on the type: 403 OperationOutcome naming it."""
    response = await client.get("Condition", headers=auth("p1-obs-only"))
    assert response.status_code == 403
    assert "Condition.s" in response.json()["issue"][0]["diagnostics"]
    create = await client.post(
        "Observation", json=obs("n", "p1", "vital-signs", None), headers=auth("p1-obs-only")
    )
    assert create.status_code == 403


# -- a patient and other patients ----------------------------------------------------------------------


async def test_patient_reads_own_but_not_another_patient_by_id(client: httpx.AsyncClient) -> None:
    """Another patient's resources answer 404, exactly as unknown ids do (no existence leak)."""
    assert (await client.get("Patient/p1", headers=auth("p1"))).status_code == 200
    assert (await client.get("Observation/o1l", headers=auth("p1"))).status_code == 200
    other = await client.get("Patient/p2", headers=auth("p1"))
    unknown = await client.get("Patient/nobody", headers=auth("p1"))
    assert other.status_code == unknown.status_code == 404
    assert (await client.get("Observation/o2v", headers=auth("p1"))).status_code == 404
    assert (await client.get("Observation/o2v/_history/1", headers=auth("p1"))).status_code == 404


async def test_patient_search_sees_own_compartment_only(client: httpx.AsyncClient) -> None:
    """Searches, even naming the other patient, find only the caller's own data; total agrees."""
    assert await ids(client, "p1", "Observation") == ["o1l", "o1u", "o1v", "o1x"]
    assert await ids(client, "p1", "Observation?subject=Patient/p2") == []
    assert await ids(client, "p1", "Patient") == ["p1"]
    body = (await client.get("Observation?_count=1", headers=auth("p1"))).json()
    assert body["total"] == 4 and len(body["entry"]) == 1
    assert await ids(client, "p1", "Patient/p2/Observation") == []


async def test_compartment_search_across_all_types_stays_in_reach(client: httpx.AsyncClient) -> None:
    """`Patient/[id]/*` is narrowed like any search: another patient's compartment shows nothing,
    and only the types (and labels) the token allows show."""
    own = await ids(client, "p1", "Patient/p1/*")
    assert {"o1l", "o1u", "o1v", "o1x", "p1"} <= set(own)
    assert await ids(client, "p1", "Patient/p2/*") == []
    assert await ids(client, "p1-obs-only", "Patient/p1/*") == ["o1l", "o1u", "o1v", "o1x"]
    assert await ids(client, "p1", "Patient/p1/*?_id=o1v,o2m") == ["o1v"]


async def test_v1_scopes_work_like_v2(client: httpx.AsyncClient) -> None:
    """patient/*.read patient/*.write = patient/*.cruds."""
    assert await ids(client, "p1-v1", "Observation") == ["o1l", "o1u", "o1v", "o1x"]


async def test_patient_chained_search_cannot_reach_another_patient(client: httpx.AsyncClient) -> None:
    """A chain or _has only follows resources within reach."""
    assert await ids(client, "p1", "Observation?subject:Patient.name=Famp2") == []
    assert await ids(client, "p1", "Observation?subject:Patient.name=Famp1") == ["o1l", "o1u", "o1v", "o1x"]
    assert await ids(client, "p1", "Patient?_has:Observation:subject:code:text=vital") == ["p1"]
    # o1v is a member of p2's o2m: the reverse chain must not see o2m.
    assert await ids(client, "p1", "Observation?_has:Observation:has-member:status=final") == []


async def test_patient_include_and_revinclude_stay_in_reach(client: httpx.AsyncClient) -> None:
    """_include of p2's observation (through o1x.hasMember) and _revinclude of o2m are dropped."""
    body = (
        await client.get("Observation?_id=o1x&_include=Observation:has-member", headers=auth("p1"))
    ).json()
    assert [e["resource"]["id"] for e in body["entry"]] == ["o1x"]
    body = (
        await client.get("Observation?_id=o1v&_revinclude=Observation:has-member", headers=auth("p1"))
    ).json()
    assert [e["resource"]["id"] for e in body["entry"]] == ["o1v"]
    body = (await client.get("Patient?_revinclude=Observation:subject", headers=auth("p1"))).json()
    assert sorted(e["resource"]["id"] for e in body["entry"]) == ["o1l", "o1u", "o1v", "o1x", "p1"]


async def test_patient_everything_of_another_patient_is_404(client: httpx.AsyncClient) -> None:
    """$everything on someone else is unknown to the caller; on oneself it has own data only."""
    assert (await client.get("Patient/p2/$everything", headers=auth("p1"))).status_code == 404
    mine = await ids(client, "p1", "Patient/p1/$everything")
    assert mine == ["c1", "o1l", "o1u", "o1v", "o1x", "p1", "rp1"]  # the Consent and RelatedPerson too


async def test_patient_transaction_cannot_touch_another_patient(client: httpx.AsyncClient) -> None:
    """A GET entry for p2 answers 404 in its entry; a write for p2 fails the whole transaction."""
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "GET", "url": "Patient/p2"}},
            {"request": {"method": "GET", "url": "Observation?subject=Patient/p2"}},
        ],
    }
    response = (await client.post("", json=bundle, headers=auth("p1"))).json()
    assert response["entry"][0]["response"]["status"].startswith("404")
    assert response["entry"][1]["resource"]["total"] == 0
    write = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:1",
                "resource": obs("x", "p1", "vital-signs", None),
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "fullUrl": "urn:uuid:2",
                "resource": obs("y", "p2", "vital-signs", None),
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    refused = await client.post("", json=write, headers=auth("p1"))
    assert refused.status_code == 403
    assert await ids(client, "system", "Observation?code:text=vital&_lastUpdated=gt2000") == [
        "o1v",
        "o2v",
        "o3v",
    ]


async def test_patient_writes_only_into_own_compartment(client: httpx.AsyncClient) -> None:
    """Create for another patient: 403. Moving own data to p2: 403. Taking p2's data: 405 on PUT (as for
    an unknown id: patients do not choose ids), 404 on DELETE and PATCH."""
    assert (
        await client.post("Observation", json=obs("n", "p2", "vital-signs", None), headers=auth("p1"))
    ).status_code == 403
    assert (
        await client.post("Observation", json=obs("n", "p1", "vital-signs", None), headers=auth("p1"))
    ).status_code == 201
    moved = await client.put(
        "Observation/o1v", json=obs("o1v", "p2", "vital-signs", None), headers=auth("p1")
    )
    assert moved.status_code == 403
    taken = await client.put(
        "Observation/o2v", json=obs("o2v", "p1", "vital-signs", None), headers=auth("p1")
    )
    assert taken.status_code == 405
    assert (await client.delete("Observation/o2v", headers=auth("p1"))).status_code == 404
    patch = [{"op": "replace", "path": "/status", "value": "amended"}]
    patched = await client.patch(
        "Observation/o2v",
        content=orjson.dumps(patch),
        headers={**auth("p1"), "Content-Type": "application/json-patch+json"},
    )
    assert patched.status_code == 404
    # Conditional forms only ever match what is in reach.
    assert (await client.delete("Observation?_id=o2v", headers=auth("p1"))).status_code == 204
    assert (await client.get("Observation/o2v", headers=auth("system"))).status_code == 200


async def test_patient_may_not_edit_demographics(client: httpx.AsyncClient) -> None:
    """Patient resources belong to the GP / hospital feed (portal.md)."""
    response = await client.put("Patient/p1", json=patient("p1", "trust"), headers=auth("p1"))
    assert response.status_code == 403


async def test_patient_history(client: httpx.AsyncClient) -> None:
    """Instance history of own data works, of another's is 404; type/system history is refused."""
    assert (await client.get("Observation/o1v/_history", headers=auth("p1"))).status_code == 200
    assert (await client.get("Observation/o2v/_history", headers=auth("p1"))).status_code == 404
    assert (await client.get("Observation/_history", headers=auth("p1"))).status_code == 403
    assert (await client.get("_history", headers=auth("p1"))).status_code == 403
    assert (await client.get("Observation/_history", headers=auth("system-obs"))).status_code == 200
    assert (await client.get("Patient/_history", headers=auth("system-obs"))).status_code == 403


async def test_history_hides_versions_out_of_reach(client: httpx.AsyncClient) -> None:
    """A resource relabelled from MENTAL to GENERAL: the carer sees the new version only."""
    await client.put(
        "Observation/o1l", json=obs("o1l", "p1", "laboratory", "GENERAL_HEALTH"), headers=auth("system")
    )
    body = (await client.get("Observation/o1l/_history", headers=auth("carer"))).json()
    assert body["total"] == 1 and body["entry"][0]["response"]["etag"] == 'W/"2"'
    assert (await client.get("Observation/o1l/_history/1", headers=auth("carer"))).status_code == 404
    assert (await client.get("Observation/o1l/_history/2", headers=auth("carer"))).status_code == 200


async def test_relabelling_out_of_a_grant_hides_the_earlier_versions_too(client: httpx.AsyncClient) -> None:
    """The patient moves o1v from GENERAL to MENTAL, out of the carer's grant: version 1 still
    carries GENERAL, but what the patient chose now decides; its history is as unknown as o3v's."""
    assert (await client.get("Observation/o1v/_history/1", headers=auth("carer"))).status_code == 200
    await client.put(
        "Observation/o1v", json=obs("o1v", "p1", "vital-signs", "MENTAL_HEALTH"), headers=auth("system")
    )
    for path in ("Observation/o1v", "Observation/o1v/_history/1", "Observation/o1v/_history"):
        assert (await client.get(path, headers=auth("carer"))).status_code == 404, path
    assert (await client.get("Observation/o1v/_history/1", headers=auth("p1"))).status_code == 200


async def test_a_clinician_loses_the_history_of_a_patient_who_moves_away(client: httpx.AsyncClient) -> None:
    assert (await client.get("Patient/p2/_history/1", headers=auth("clinician"))).status_code == 200
    await client.put("Patient/p2", json=patient("p2", "other"), headers=auth("system"))
    for path in ("Patient/p2", "Patient/p2/_history/1", "Patient/p2/_history"):
        assert (await client.get(path, headers=auth("clinician"))).status_code == 404, path


async def test_instance_history_answers_alike_for_hidden_and_unknown_ids(client: httpx.AsyncClient) -> None:
    """A bad parameter was a 400 for an existing id (another patient's) and a 404 for an unknown one."""
    for query in ("_count=x", "foo=1", "_since=yesterday"):
        hidden = await client.get(f"Observation/o2v/_history?{query}", headers=auth("p1"))
        unknown = await client.get(f"Observation/nobody/_history?{query}", headers=auth("p1"))
        assert hidden.status_code == unknown.status_code == 400, query
        assert hidden.json()["issue"][0]["diagnostics"] == unknown.json()["issue"][0]["diagnostics"]


# -- granular scopes ---------------------------------------------------------------------------------


async def test_granular_scope_returns_vital_signs_only(client: httpx.AsyncClient) -> None:
    """patient/Observation.rs?category=...|vital-signs: searches find vital signs; a lab read is refused."""
    assert await ids(client, "p1-vitals", "Observation") == ["o1v"]
    assert (await client.get("Observation/o1l", headers=auth("p1-vitals"))).status_code == 404
    assert (await client.get("Observation/o1v", headers=auth("p1-vitals"))).status_code == 200
    body = (await client.get("Observation?_count=1", headers=auth("p1-vitals"))).json()
    assert body["total"] == 1 and not any(link["relation"] == "next" for link in body["link"])


async def test_granular_scope_by_category_code_alone(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`?category=vital-signs` (any system) narrows as the full system|code form does."""
    scope = "patient/Observation.rs?category=vital-signs"
    vitals = token("patient", scope, fhir_user="Patient/p1", patient="p1")
    monkeypatch.setitem(TOKENS, "p1-vitals-code", vitals)
    assert await ids(client, "p1-vitals-code", "Observation") == ["o1v"]
    assert await ids(client, "p1-vitals-code", "Observation?category=laboratory") == []


ORACLE_SCOPES = [
    "patient/Observation.rs?focus:Patient.family=Famp2",
    "patient/Observation.rs?focus.family=Famp2",
    "patient/Observation.rs?focus:Patient._has:DocumentReference:subject:description=Dermatology",
    f"patient/Observation.rs?category={VITALS}&focus:Patient.birthdate=lt2000",
]


@pytest.mark.parametrize("scope", ORACLE_SCOPES)
async def test_granular_scope_criteria_cannot_probe_another_patient(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, scope: str
) -> None:
    """p1 writes an Observation of their own whose focus is p2, then asks for a scope whose criteria
    chain through that focus: the answer must not depend on p2's data (the rule is judged outside
    the access filter, so a chain there would read p2's name, birth date or letters). The scope
    grants nothing: not the type without its criteria either."""
    probing = token("patient", f"{scope} patient/Patient.rs", fhir_user="Patient/p1", patient="p1")
    monkeypatch.setitem(TOKENS, "p1-probe", probing)
    probe = obs("probe", "p1", "vital-signs", None, focus=[{"reference": "Patient/p2"}])
    assert (await client.post("Observation", json=probe, headers=auth("p1"))).status_code == 201

    async def answer() -> tuple[int, object]:
        url = "Observation?code:text=vital-signs&_summary=count"
        response = await client.get(url, headers=auth("p1-probe"))
        return response.status_code, response.json().get("total")

    async def p2_is(family: str, born: str, letter: str) -> None:
        p2 = {**patient("p2", "trust"), "name": [{"family": family}], "birthDate": born}
        assert (await client.put("Patient/p2", json=p2, headers=auth("system"))).status_code == 200
        doc = {
            "resourceType": "DocumentReference",
            "id": "d2",
            "status": "current",
            "subject": {"reference": "Patient/p2"},
            "description": letter,
            "content": [{"attachment": {"contentType": "text/plain", "data": "aGk="}}],
        }
        assert (await client.put("DocumentReference/d2", json=doc, headers=auth("system"))).status_code in (
            200,
            201,
        )

    await p2_is("Famp2", "1990-01-01", "Dermatology clinic")
    matching = await answer()
    await p2_is("Zzz", "2010-01-01", "Fracture clinic")
    assert await answer() == matching
    assert matching[0] == 403  # no usable scope for Observation: the chained one grants nothing


async def test_granular_scope_with_an_unknown_parameter_grants_nothing(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A criterion the server cannot judge is not dropped from the scope (which would widen it to every
    Observation): the whole scope grants nothing."""
    scopes = "patient/Observation.rs?nonsense=1 patient/Patient.rs"
    monkeypatch.setitem(TOKENS, "p1-unknown", token("patient", scopes, fhir_user="Patient/p1", patient="p1"))
    assert (await client.get("Observation", headers=auth("p1-unknown"))).status_code == 403
    assert (await client.get("Observation/o1v", headers=auth("p1-unknown"))).status_code == 403
    assert await ids(client, "p1-unknown", "Patient") == ["p1"]


# -- carers ----------------------------------------------------------------------------------------------


async def test_carer_sees_granted_labels_only(client: httpx.AsyncClient) -> None:
    """rp1 has GENERAL_HEALTH of p1: the mental-health and unlabeled items are out of reach."""
    assert await ids(client, "carer", "Observation") == ["o1v", "o1x"]
    assert (await client.get("Observation/o1l", headers=auth("carer"))).status_code == 404
    assert (await client.get("Observation/o1u", headers=auth("carer"))).status_code == 404
    assert (await client.get("Observation/o2v", headers=auth("carer"))).status_code == 404


async def test_view_only_carer_cannot_write(client: httpx.AsyncClient) -> None:
    """Access (view only) grants no create."""
    new = obs("n", "p1", "vital-signs", "GENERAL_HEALTH")
    assert (await client.post("Observation", json=new, headers=auth("carer"))).status_code == 403


async def test_carer_loses_access_on_the_next_request_after_revocation(client: httpx.AsyncClient) -> None:
    """The patient revokes (Consent -> inactive); the same live token reads nothing next time."""
    assert (await client.get("Observation/o1v", headers=auth("carer"))).status_code == 200
    revoked = consent("c1", "p1", "RelatedPerson/rp1", ["GENERAL_HEALTH"], ["access"], status="inactive")
    assert (await client.put("Consent/c1", json=revoked, headers=auth("system"))).status_code == 200
    assert (await client.get("Observation/o1v", headers=auth("carer"))).status_code == 404
    assert await ids(client, "carer", "Observation") == []


async def test_grant_past_its_end_date_grants_nothing(client: httpx.AsyncClient) -> None:
    """provision.period.end in the past: expired grant."""
    ended = consent("c1", "p1", "RelatedPerson/rp1", ["GENERAL_HEALTH"], ["access"])
    ended["provision"]["period"]["end"] = "2021-01-01"
    await client.put("Consent/c1", json=ended, headers=auth("system"))
    assert await ids(client, "carer", "Observation") == []


async def test_person_acts_for_several_patients_each_with_own_labels(client: httpx.AsyncClient) -> None:
    """Person per1 (rp1 + rp2): p1 GENERAL only, p2 GENERAL + MENTAL — not p1's MENTAL."""
    assert await ids(client, "person", "Observation") == ["o1v", "o1x", "o2m", "o2v"]
    assert await ids(client, "person-p2", "Observation") == ["o2m", "o2v"]


async def test_view_and_add_carer_adds_within_grant_only(client: httpx.AsyncClient) -> None:
    """rp2 may add GENERAL/MENTAL items for p2; not SEXUAL_HEALTH, not unlabeled, not for p1."""

    def post(body: Json) -> Any:
        return client.post("Observation", json=body, headers=auth("person"))

    assert (await post(obs("n", "p2", "vital-signs", "MENTAL_HEALTH"))).status_code == 201
    assert (await post(obs("n", "p2", "vital-signs", "SEXUAL_HEALTH"))).status_code == 403
    assert (await post(obs("n", "p2", "vital-signs", None))).status_code == 403
    assert (await post(obs("n", "p1", "vital-signs", "GENERAL_HEALTH"))).status_code == 403


# -- clinicians and systems ----------------------------------------------------------------------------------


async def test_clinician_reaches_the_patients_of_their_organisation(client: httpx.AsyncClient) -> None:
    """d1 works for the trust: p1 and p2, not p3 (another organisation)."""
    assert await ids(client, "clinician", "Patient") == ["p1", "p2"]
    assert (await client.get("Observation/o3v", headers=auth("clinician"))).status_code == 404
    assert (await client.get("Observation/o2m", headers=auth("clinician"))).status_code == 200
    created = await client.post(
        "Observation", json=obs("n", "p3", "vital-signs", None), headers=auth("clinician")
    )
    assert created.status_code == 403


async def test_system_client_is_bound_by_its_system_scopes(client: httpx.AsyncClient) -> None:
    """system/Observation.rs: every Observation, no Patient, no writes."""
    assert len(await ids(client, "system-obs", "Observation")) == 7
    assert (await client.get("Patient/p1", headers=auth("system-obs"))).status_code == 403
    new = obs("n", "p1", "vital-signs", None)
    assert (await client.post("Observation", json=new, headers=auth("system-obs"))).status_code == 403


async def test_batch_patch_entry_is_checked(client: httpx.AsyncClient) -> None:
    """A PATCH entry in a batch on another patient's resource fails in its entry (404)."""
    patch = base64.b64encode(
        orjson.dumps([{"op": "replace", "path": "/status", "value": "amended"}])
    ).decode()
    binary = {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": patch}
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": binary, "request": {"method": "PATCH", "url": "Observation/o2v"}},
            {"resource": binary, "request": {"method": "PATCH", "url": "Observation/o1v"}},
        ],
    }
    body = (await client.post("", json=bundle, headers=auth("p1"))).json()
    assert [e["response"]["status"][:3] for e in body["entry"]] == ["404", "200"]


# -- who manages the Consents that share a record ------------------------------------------------------

ALL_LABELS = ["GENERAL_HEALTH", "MENTAL_HEALTH", "SEXUAL_HEALTH", "SOCIAL_CARE"]


def labelled_grant(patient: str, actor: str, actions: list[str] | None = None) -> Json:
    """A grant of every label, itself labelled GENERAL_HEALTH (so a carer's label rules would pass it)."""
    body = consent("ignored", patient, actor, ALL_LABELS, actions or ["access", "correct"])
    del body["id"]
    body["meta"] = {"security": [{"system": PKB, "code": "GENERAL_HEALTH"}]}
    return body


JSON_PATCH = {"Content-Type": "application/json-patch+json"}


async def consent_ids(http: httpx.AsyncClient) -> list[str]:
    return await ids(http, "system", "Consent")


async def test_carer_with_view_and_add_cannot_grant_themself_more(client: httpx.AsyncClient) -> None:
    """A "view and add" carer POSTing a Consent naming themself: 403 OperationOutcome, nothing stored."""
    response = await client.post(
        "Consent", json=labelled_grant("p2", "RelatedPerson/rp2"), headers=auth("rp2")
    )
    assert response.status_code == 403
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "patient" in outcome["issue"][0]["diagnostics"]
    assert await consent_ids(client) == ["c1", "c2"]


async def test_carer_cannot_grant_a_third_party(client: httpx.AsyncClient) -> None:
    """A carer's Consent naming someone else is refused, and that person sees nothing."""
    response = await client.post(
        "Consent", json=labelled_grant("p2", "RelatedPerson/rp9", ["access"]), headers=auth("person")
    )
    assert response.status_code == 403
    assert await ids(client, "outsider", "Observation") == []


async def test_carer_cannot_change_or_remove_the_patients_consent(client: httpx.AsyncClient) -> None:
    """PUT (e.g. to inactive), PATCH and DELETE of the patient's Consent by their carer: 403 each."""
    labelled = consent("c2", "p2", "RelatedPerson/rp2", ["GENERAL_HEALTH"], ["access", "correct"])
    labelled["meta"] = {"security": [{"system": PKB, "code": "GENERAL_HEALTH"}]}  # within rp2's labels
    assert (await client.put("Consent/c2", json=labelled, headers=auth("system"))).status_code == 200
    revoked = {**labelled, "status": "inactive"}
    assert (await client.put("Consent/c2", json=revoked, headers=auth("rp2"))).status_code == 403
    patch = [{"op": "replace", "path": "/status", "value": "inactive"}]
    patched = await client.patch(
        "Consent/c2", content=orjson.dumps(patch), headers={**auth("rp2"), **JSON_PATCH}
    )
    assert patched.status_code == 403
    assert (await client.delete("Consent/c2", headers=auth("rp2"))).status_code == 403
    assert (await client.get("Consent/c2", headers=auth("system"))).json()["status"] == "active"


async def test_clinician_cannot_grant_an_outsider_access(client: httpx.AsyncClient) -> None:
    """A clinician's Consent for a trust patient naming an outsider: 403, and the outsider sees nothing."""
    grant = labelled_grant("p1", "RelatedPerson/rp9", ["access"])
    assert (await client.post("Consent", json=grant, headers=auth("clinician"))).status_code == 403
    assert await ids(client, "outsider", "Observation") == []
    assert (await client.delete("Consent/c1", headers=auth("clinician"))).status_code == 403
    revoked = consent("c1", "p1", "RelatedPerson/rp1", ["GENERAL_HEALTH"], ["access"], status="inactive")
    assert (await client.put("Consent/c1", json=revoked, headers=auth("clinician"))).status_code == 403


async def test_consent_writes_in_bundles_and_conditional_forms_are_refused(client: httpx.AsyncClient) -> None:
    """Transaction, batch, conditional create/update/delete of Consents by a carer: all 403."""
    grant = labelled_grant("p2", "RelatedPerson/rp2")
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": grant, "request": {"method": "POST", "url": "Consent"}}],
    }
    assert (await client.post("", json=transaction, headers=auth("rp2"))).status_code == 403
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": grant, "request": {"method": "POST", "url": "Consent"}},
            {"resource": grant, "request": {"method": "PUT", "url": "Consent?patient=Patient/p2"}},
        ],
    }
    body = (await client.post("", json=batch, headers=auth("rp2"))).json()
    assert [e["response"]["status"][:3] for e in body["entry"]] == ["403", "403"]
    conditional_create = await client.post(
        "Consent", json=grant, headers={**auth("rp2"), "If-None-Exist": "actor=RelatedPerson/nobody"}
    )
    assert conditional_create.status_code == 403
    conditional_update = await client.put(
        "Consent?actor=RelatedPerson/nobody", json=grant, headers=auth("rp2")
    )
    assert conditional_update.status_code == 403
    assert (await client.delete("Consent?patient=Patient/p2", headers=auth("rp2"))).status_code == 403
    assert await consent_ids(client) == ["c1", "c2"]


async def test_patient_manages_their_own_consents(client: httpx.AsyncClient) -> None:
    """The patient shares with a new person and revokes a grant; the grants take effect."""
    created = await client.post(
        "Consent", json=labelled_grant("p1", "RelatedPerson/rp9", ["access"]), headers=auth("p1")
    )
    assert created.status_code == 201, created.text
    assert await ids(client, "outsider", "Observation") == ["o1l", "o1u", "o1v", "o1x"]
    revoked = consent("c1", "p1", "RelatedPerson/rp1", ["GENERAL_HEALTH"], ["access"], status="inactive")
    assert (await client.put("Consent/c1", json=revoked, headers=auth("p1"))).status_code == 200
    assert await ids(client, "carer", "Observation") == []


async def test_patient_cannot_write_another_patients_consent(client: httpx.AsyncClient) -> None:
    """A patient's Consent for another patient's record: 403."""
    grant = labelled_grant("p2", "RelatedPerson/rp9", ["access"])
    assert (await client.post("Consent", json=grant, headers=auth("p1"))).status_code == 403


# -- a write must be writable in EVERY patient compartment it belongs to ---------------------------------


def performed_by(ref: str) -> Json:
    return {"performer": [{"reference": ref}]}


async def test_patient_cannot_create_for_another_patient_by_naming_themself(
    client: httpx.AsyncClient,
) -> None:
    """subject p2, performer p1 (so also in p1's compartment): 403, and p2's record is unchanged."""
    body = obs("x", "p2", "laboratory", "GENERAL_HEALTH", **performed_by("Patient/p1"))
    response = await client.post("Observation", json=body, headers=auth("p1"))
    assert response.status_code == 403
    assert response.json()["resourceType"] == "OperationOutcome"
    assert await ids(client, "p2", "Observation") == ["o2m", "o2v"]


async def test_patient_cannot_send_a_document_into_another_record(client: httpx.AsyncClient) -> None:
    """A DocumentReference about p2 authored by p1: 403."""
    doc = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": "Patient/p2"},
        "author": [{"reference": "Patient/p1"}],
        "content": [{"attachment": {"contentType": "text/plain", "data": "aGk="}}],
    }
    assert (await client.post("DocumentReference", json=doc, headers=auth("p1"))).status_code == 403


async def test_patient_cannot_move_own_item_into_another_record(client: httpx.AsyncClient) -> None:
    """PUT of own o1v with subject p2 and performer p1: 403 (the new content is in p2's record too)."""
    body = obs("o1v", "p2", "vital-signs", None, **performed_by("Patient/p1"))
    assert (await client.put("Observation/o1v", json=body, headers=auth("p1"))).status_code == 403
    patch = [{"op": "replace", "path": "/subject/reference", "value": "Patient/p2"}]
    patch.append({"op": "add", "path": "/performer", "value": [{"reference": "Patient/p1"}]})
    patched = await client.patch(
        "Observation/o1v", content=orjson.dumps(patch), headers={**auth("p1"), **JSON_PATCH}
    )
    assert patched.status_code == 403
    assert (await client.get("Observation/o1v", headers=auth("p2"))).status_code == 404


async def test_patient_cannot_change_an_item_shared_with_another_record(client: httpx.AsyncClient) -> None:
    """p2's observation that names p1 as performer: p1 may read it, not change or delete it (403)."""
    shared = obs("o2p", "p2", "laboratory", "GENERAL_HEALTH", **performed_by("Patient/p1"))
    assert (await client.put("Observation/o2p", json=shared, headers=auth("system"))).status_code == 201
    assert (await client.get("Observation/o2p", headers=auth("p1"))).status_code == 200
    changed = {**shared, "status": "amended"}
    assert (await client.put("Observation/o2p", json=changed, headers=auth("p1"))).status_code == 403
    patch = [{"op": "remove", "path": "/subject"}]
    patched = await client.patch(
        "Observation/o2p", content=orjson.dumps(patch), headers={**auth("p1"), **JSON_PATCH}
    )
    assert patched.status_code == 403
    assert (await client.delete("Observation/o2p", headers=auth("p1"))).status_code == 403
    assert (await client.get("Observation/o2p", headers=auth("system"))).json()["meta"]["versionId"] == "1"


async def test_carer_cannot_add_to_a_record_they_may_not_add_to(client: httpx.AsyncClient) -> None:
    """rp2 may add for p2 only: an item about p1 that also names p2 is refused (403)."""
    body = obs("y", "p1", "laboratory", "GENERAL_HEALTH", **performed_by("Patient/p2"))
    assert (await client.post("Observation", json=body, headers=auth("rp2"))).status_code == 403
    assert (await client.post("Observation", json=body, headers=auth("person"))).status_code == 403


async def test_clinician_cannot_write_into_another_organisations_patient(client: httpx.AsyncClient) -> None:
    """subject p3 (another organisation) with performer p1 (the trust's): 403."""
    body = obs("z", "p3", "laboratory", None, **performed_by("Patient/p1"))
    assert (await client.post("Observation", json=body, headers=auth("clinician"))).status_code == 403


async def test_transaction_entry_in_two_records_fails_the_transaction(client: httpx.AsyncClient) -> None:
    """A transaction's POST about p2 naming p1: 403 for the whole transaction."""
    body = obs("x", "p2", "laboratory", None, **performed_by("Patient/p1"))
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": body, "request": {"method": "POST", "url": "Observation"}}],
    }
    assert (await client.post("", json=bundle, headers=auth("p1"))).status_code == 403


async def test_own_item_performed_by_oneself_is_still_written(client: httpx.AsyncClient) -> None:
    """A patient's own observation naming themself as performer: 201."""
    body = obs("n", "p1", "vital-signs", None, **performed_by("Patient/p1"))
    assert (await client.post("Observation", json=body, headers=auth("p1"))).status_code == 201


async def test_carer_adds_an_item_they_performed(client: httpx.AsyncClient) -> None:
    """rp2 adds for p2 naming themself (a RelatedPerson, not a Patient compartment) as performer: 201."""
    body = obs("n", "p2", "vital-signs", "GENERAL_HEALTH", **performed_by("RelatedPerson/rp2"))
    assert (await client.post("Observation", json=body, headers=auth("rp2"))).status_code == 201


# -- patients and carers do not choose ids: PUT never creates for them -------------------------------


def refusal(response: httpx.Response, id: str) -> tuple[int, str, str]:
    """The status, issue code and message (with the id taken out) of a refused PUT."""
    issue = response.json()["issue"][0]
    return response.status_code, issue["code"], issue["diagnostics"].replace(id, "<id>")


async def test_patient_put_to_an_unknown_id_is_refused_with_a_pointer_to_post(
    client: httpx.AsyncClient,
) -> None:
    """PUT Observation/<unknown> by a patient: 405 OperationOutcome telling them to POST; nothing stored."""
    response = await client.put(
        "Observation/mine", json=obs("mine", "p1", "vital-signs", None), headers=auth("p1")
    )
    assert response.status_code == 405
    assert response.json()["resourceType"] == "OperationOutcome"
    assert "POST" in response.json()["issue"][0]["diagnostics"]
    assert (await client.get("Observation/mine", headers=auth("system"))).status_code == 404


async def test_put_to_hidden_unknown_and_deleted_ids_answer_alike(client: httpx.AsyncClient) -> None:
    """Another patient's live id, an unknown id and another's deleted id: the same 405 answer."""
    await client.delete("Observation/o2m", headers=auth("system"))

    async def put(id: str) -> tuple[int, str, str]:
        body = obs(id, "p1", "vital-signs", None)
        return refusal(await client.put(f"Observation/{id}", json=body, headers=auth("p1")), id)

    hidden, unknown, deleted = await put("o2v"), await put("nosuch"), await put("o2m")
    assert hidden == unknown == deleted
    assert hidden[0] == 405


async def test_put_does_not_take_over_a_deleted_id(client: httpx.AsyncClient) -> None:
    """After p2's item is deleted, p1's PUT to its id leaves it deleted and its history unchanged."""
    await client.delete("Observation/o2v", headers=auth("system"))
    body = obs("o2v", "p1", "vital-signs", None)
    assert (await client.put("Observation/o2v", json=body, headers=auth("p1"))).status_code == 405
    assert (await client.get("Observation/o2v", headers=auth("system"))).status_code == 410
    history = (await client.get("Observation/o2v/_history", headers=auth("system"))).json()
    assert history["total"] == 2


async def test_patient_put_to_own_deleted_item_is_refused_too(client: httpx.AsyncClient) -> None:
    """A patient recreates with POST: PUT to their own deleted id answers 405 like any other."""
    assert (await client.delete("Observation/o1v", headers=auth("p1"))).status_code == 204
    body = obs("o1v", "p1", "vital-signs", None)
    assert (await client.put("Observation/o1v", json=body, headers=auth("p1"))).status_code == 405


async def test_carer_put_to_an_unknown_id_is_refused(client: httpx.AsyncClient) -> None:
    """A view-and-add carer cannot choose ids either: 405, as for a hidden id."""
    body = obs("fresh1", "p2", "vital-signs", "GENERAL_HEALTH")
    unknown = await client.put("Observation/fresh1", json=body, headers=auth("rp2"))
    hidden = await client.put("Observation/o1v", json={**body, "id": "o1v"}, headers=auth("rp2"))
    assert refusal(unknown, "fresh1") == refusal(hidden, "o1v")
    assert unknown.status_code == 405


async def test_patient_still_updates_own_items_with_put(client: httpx.AsyncClient) -> None:
    """PUT of an existing own item: 200 (an update, not a create)."""
    body = obs("o1v", "p1", "vital-signs", "GENERAL_HEALTH", valueString="home reading")
    assert (await client.put("Observation/o1v", json=body, headers=auth("p1"))).status_code == 200


async def test_conditional_update_with_no_match_creates_only_with_a_server_id(
    client: httpx.AsyncClient,
) -> None:
    """No match and no body id: 201 with a server-assigned id; no match with a body id: 405."""
    url = "Observation?identifier=urn:x|home-1"
    body = obs("x", "p1", "vital-signs", None, identifier=[{"system": "urn:x", "value": "home-1"}])
    del body["id"]
    created = await client.put(url, json=body, headers=auth("p1"))
    assert created.status_code == 201, created.text
    chosen = await client.put(
        "Observation?identifier=urn:x|home-2", json={**body, "id": "chosen"}, headers=auth("p1")
    )
    assert chosen.status_code == 405


async def test_batch_and_transaction_puts_to_unknown_ids_are_refused(client: httpx.AsyncClient) -> None:
    """A batch PUT entry to an unknown id fails in its entry (405); a transaction fails whole."""
    entry = {
        "resource": obs("nosuch", "p1", "vital-signs", None),
        "request": {"method": "PUT", "url": "Observation/nosuch"},
    }
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [entry]}
    body = (await client.post("", json=batch, headers=auth("p1"))).json()
    assert body["entry"][0]["response"]["status"].startswith("405")
    transaction = {**batch, "type": "transaction"}
    assert (await client.post("", json=transaction, headers=auth("p1"))).status_code == 405


async def test_clinicians_and_systems_keep_update_as_create(client: httpx.AsyncClient) -> None:
    """PUT to a new id by a clinician (for their organisation's patient) or a backend system: 201."""
    body = obs("by-clinician", "p1", "vital-signs", None)
    assert (
        await client.put("Observation/by-clinician", json=body, headers=auth("clinician"))
    ).status_code == 201
    body = obs("by-system", "p3", "vital-signs", None)
    assert (await client.put("Observation/by-system", json=body, headers=auth("system"))).status_code == 201
