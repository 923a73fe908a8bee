"""The generated access matrix: roles x scopes x Consents x resource types x interactions.

Every case runs through the real app (one batch Bundle per token and Consent configuration, so each
entry goes through the same dispatch, access checks and storage as a lone request) and its HTTP
status is compared with ORACLE below: a small function written from the rules in
docs/portal.md and docs/smart.md, deliberately NOT using fhir_server.access.

Rules the oracle encodes (and the server documents):
- a scope `ctx/Type.letters[?category=...]` covers an interaction letter on a type; `patient/`
  scopes reach only the token's launch patient; backend clients use `system/` scopes only.
- patient: own compartment; carer: a patient's compartment when that patient's active, in-date,
  privacy Consent names them, only items labelled with a granted label (unlabeled items: only with
  all four labels; the Patient resource itself is readable with any grant: it says whom they care
  for), `access` = read/search, `correct` = also create/update, never delete;
  clinician: patients whose managingOrganization is theirs; system: everything.
- portal users (patients, carers) never write Patient (demographics belong to the source systems).
- the Consents that share a record are written by the patient or a backend system only: carers,
  professionals, clinicians and admins get 403 for every Consent write.
- answers: no covering scope -> 403; a resource out of read reach -> 404; readable but not
  writable -> 403; new content out of reach -> 403. Patients and carers do not choose ids: their PUT
  to a resource out of reach answers 405 (as it would for an unknown id: create with POST).
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.settings import Settings
from smart_auth.errors import InvalidToken
from smart_auth.models import AccessToken

BASE = "http://127.0.0.1/fhir"  # loopback: plain http is accepted only there by the auth server
PKB = "http://fhir.patientsknowbest.com/codesystem/privacy-label"
CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
LABELS = ("GENERAL_HEALTH", "MENTAL_HEALTH", "SEXUAL_HEALTH", "SOCIAL_CARE")
ALL_LABELS = frozenset(LABELS)
PATIENT_ORG = {"P1": "trust", "P2": "trust", "P3": "other"}
CLINICAL = ("Observation", "Condition", "AllergyIntolerance")
COUNTED = (
    "Observation",
    "Condition",
    "AllergyIntolerance",
    "Patient",
    "RelatedPerson",
    "Consent",
    "Organization",
)
Json = dict[str, Any]


# -- the world, as the test models it -----------------------------------------------------------


@dataclass(frozen=True)
class Res:
    type: str
    id: str
    patient: str | None  # the Patient compartment it is in ("P1"), None for none
    label: str | None = None
    category: str | None = None  # Observation category code


@dataclass(frozen=True)
class Share:
    """One Consent: patient -> related person, labels, actions, and whether it is in force."""

    labels: frozenset[str]
    actions: frozenset[str]
    status: str = "active"
    start: str = "2020-01-01"
    end: str | None = None

    @property
    def in_force(self) -> bool:
        # "now" is after 2025 and before 2100 for as long as this test lives.
        return self.status == "active" and self.start < "2025" and (self.end is None or self.end > "2100")


@dataclass(frozen=True)
class Who:
    name: str
    role: str
    scopes: tuple[str, ...]
    user: str | None = None  # fhirUser
    launch: str | None = None  # patient context id
    org: str | None = None


# -- the oracle ------------------------------------------------------------------------------------

LETTER = {"read": "r", "vread": "r", "search": "s", "create": "c", "update": "u", "delete": "d"}
V1 = {"read": "rs", "write": "cud", "*": "cruds"}


def scope_allows(scope: str, who: Who, letter: str, res: Res) -> bool:
    """Does this one scope string allow `letter` on `res`?"""
    if "/" not in scope or scope.startswith("launch"):
        return False
    context, rest = scope.split("/", 1)
    if (who.role == "system") != (context == "system"):
        return False
    rest, _, query = rest.partition("?")
    rtype, _, perms = rest.partition(".")
    if rtype not in ("*", res.type) or letter not in V1.get(perms, perms):
        return False
    # granular: only `category=system|code` is used in this matrix
    if query and (res.category is None or query.split("|")[-1] != res.category):
        return False
    if context == "patient":
        return who.launch is not None and res.patient == who.launch
    return True


def role_allows(who: Who, letter: str, res: Res, shares: dict[str, Share]) -> bool:
    """Does the person (whatever the token says) reach `res` for `letter`?"""
    if who.role == "system":
        return True
    if res.patient is None:
        return False
    if who.role == "patient":
        return who.user == f"Patient/{res.patient}"
    if who.role == "clinician":
        return PATIENT_ORG[res.patient] == who.org
    share = shares.get(res.patient)
    if share is None or not share.in_force or res.patient not in carer_patients(who):
        return False
    if letter in "rs":
        ok_action = True
    elif letter in "cu":
        ok_action = "correct" in share.actions
    else:
        ok_action = False  # carers never delete
    ok_label = (res.label in share.labels) if res.label else share.labels == ALL_LABELS
    if res.type == "Patient" and letter in "rs":
        ok_label = True  # whom they care for is visible with any grant
    return ok_action and ok_label


def carer_patients(who: Who) -> set[str]:
    """rp1 acts for P1, rp2 for P2; Person per1 is both."""
    return {"RelatedPerson/rp1": {"P1"}, "RelatedPerson/rp2": {"P2"}, "Person/per1": {"P1", "P2"}}.get(
        who.user or "", set()
    )


def reach(who: Who, letter: str, res: Res, shares: dict[str, Share]) -> bool:
    scoped = any(scope_allows(s, who, letter, res) for s in who.scopes)
    return scoped and role_allows(who, letter, res, shares)


def has_scope(who: Who, letter: str, rtype: str) -> bool:
    for scope in who.scopes:
        if "/" not in scope or scope.startswith("launch"):
            continue
        context, rest = scope.split("/", 1)
        rtype_s, _, perms = rest.partition("?")[0].partition(".")
        if (
            (who.role == "system") == (context == "system")
            and rtype_s in ("*", rtype)
            and letter in V1.get(perms, perms)
        ):
            return True
    return False


def demographics(who: Who, letter: str, rtype: str) -> bool:
    return who.role in ("patient", "carer") and letter in "cud" and rtype == "Patient"


def sharing(who: Who, letter: str, rtype: str) -> bool:
    return who.role not in ("patient", "system") and letter in "cud" and rtype == "Consent"


def oracle(who: Who, interaction: str, res: Res, shares: dict[str, Share]) -> int:
    """The HTTP status the rules call for."""
    letter = LETTER[interaction]
    if (
        not has_scope(who, letter, res.type)
        or demographics(who, letter, res.type)
        or sharing(who, letter, res.type)
    ):
        return 403
    if interaction in ("read", "vread"):
        return 200 if reach(who, "r", res, shares) else 404
    if interaction == "search":
        return 200  # presence is checked by ORACLE_FOUND
    if interaction == "create":
        return 201 if reach(who, "c", res, shares) else 403
    if reach(who, letter, res, shares):
        return 412  # allowed; the test's If-Match names a version that does not exist
    if reach(who, "r", res, shares):
        return 403
    return 405 if interaction == "update" and who.role in ("patient", "carer") else 404


# -- the data --------------------------------------------------------------------------------------


def body_of(res: Res) -> Json:
    body: Json = {"resourceType": res.type, "id": res.id}
    if res.label:
        body["meta"] = {"security": [{"system": PKB, "code": res.label}]}
    ref = {"reference": f"Patient/{res.patient}"}
    if res.type == "Observation":
        body |= {
            "status": "final",
            "code": {"text": "x"},
            "subject": ref,
            "category": [{"coding": [{"system": CAT, "code": res.category}]}],
        }
    elif res.type == "Condition":
        body |= {"subject": ref, "code": {"text": "x"}}
    elif res.type == "AllergyIntolerance":
        body |= {"patient": ref}
    elif res.type == "Patient":
        body |= {"managingOrganization": {"reference": f"Organization/{PATIENT_ORG[res.id]}"}}
    elif res.type == "RelatedPerson":
        body |= {"patient": ref}
    elif res.type == "Person":
        body |= {
            "link": [
                {"target": {"reference": "RelatedPerson/rp1"}},
                {"target": {"reference": "RelatedPerson/rp2"}},
            ]
        }
    return body


def current_body(res: Res, shares: dict[str, Share]) -> Json:
    if res.type != "Consent":
        return body_of(res)
    patient = res.patient or ""
    return consent_body(
        res.id, patient, "RelatedPerson/rp1" if patient == "P1" else "RelatedPerson/rp2", shares[patient]
    )


def consent_body(id: str, patient: str, actor: str, share: Share) -> Json:
    period = {"start": share.start} | ({"end": share.end} if share.end else {})
    return {
        "resourceType": "Consent",
        "id": id,
        "status": share.status,
        "scope": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient}"},
        "provision": {
            "type": "permit",
            "period": period,
            "actor": [{"role": {"coding": [{"code": "IRCP"}]}, "reference": {"reference": actor}}],
            "action": [
                {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": a}]}
                for a in sorted(share.actions)
            ],
            "securityLabel": [{"system": PKB, "code": c} for c in sorted(share.labels)],
        },
    }


def world() -> list[Res]:
    items = [
        Res("Organization", "trust", None),
        Res("Organization", "other", None),
        Res("Practitioner", "d1", None),
        Res("Person", "per1", None),
        Res("RelatedPerson", "rp1", "P1"),
        Res("RelatedPerson", "rp2", "P2"),
        Res("Consent", "c1", "P1"),
        Res("Consent", "c2", "P2"),
    ]
    items += [Res("Patient", p, p) for p in PATIENT_ORG]
    for n, (p, rtype, label) in enumerate(itertools.product(PATIENT_ORG, CLINICAL, (*LABELS, None))):
        category = ("vital-signs" if n % 2 else "laboratory") if rtype == "Observation" else None
        items.append(
            Res(rtype, f"{rtype[:3]}-{p}-{label or 'none'}".lower().replace("_", "-"), p, label, category)
        )
    return items


NONE = Share(frozenset({"GENERAL_HEALTH"}), frozenset({"access"}), status="inactive")
CONFIGS: list[dict[str, Share]] = [
    {"P1": NONE, "P2": NONE},
    {"P1": Share(frozenset({"GENERAL_HEALTH"}), frozenset({"access"})), "P2": NONE},
    {
        "P1": Share(frozenset({"GENERAL_HEALTH", "MENTAL_HEALTH"}), frozenset({"access", "correct"})),
        "P2": Share(frozenset({"SEXUAL_HEALTH"}), frozenset({"access"})),
    },
    {
        "P1": Share(ALL_LABELS, frozenset({"access"})),
        "P2": Share(frozenset({"GENERAL_HEALTH"}), frozenset({"access", "correct"})),
    },
    {
        "P1": Share(ALL_LABELS, frozenset({"correct"}), status="inactive"),
        "P2": Share(ALL_LABELS, frozenset({"access", "correct"}), end="2021-01-01"),
    },
    {
        "P1": Share(frozenset({"MENTAL_HEALTH"}), frozenset({"access", "correct"}), start="2999-01-01"),
        "P2": Share(ALL_LABELS, frozenset({"access"})),
    },
]

VITALS = f"patient/Observation.rs?category={CAT}|vital-signs"
PEOPLE: list[Who] = [
    *(
        Who(f"patient-{i}", "patient", tuple(s.split()), "Patient/P1", "P1")
        for i, s in enumerate(
            [
                "patient/*.rs",
                "patient/*.cruds",
                "patient/Observation.rs",
                f"{VITALS} patient/Condition.r",
                "user/*.cruds",
                "patient/*.read patient/*.write",
                "launch/patient openid fhirUser",
            ]
        )
    ),
    Who("patient-p2", "patient", ("patient/*.cruds",), "Patient/P2", "P2"),
    Who("patient-mismatch", "patient", ("patient/*.rs",), "Patient/P1", "P2"),
    Who("clinician-rs", "clinician", ("user/*.rs",), "Practitioner/d1", None, "trust"),
    Who("clinician-all", "clinician", ("user/*.cruds",), "Practitioner/d1", None, "trust"),
    Who(
        "clinician-cond",
        "clinician",
        ("user/Condition.crud", "system/*.cruds"),
        "Practitioner/d1",
        None,
        "trust",
    ),
    Who("system-rs", "system", ("system/*.rs",)),
    Who("system-all", "system", ("system/*.cruds", "user/*.cruds")),
    Who("system-obs", "system", ("system/Observation.cruds",)),
]
CARERS: list[Who] = [
    Who("carer-rs", "carer", ("user/*.rs",), "RelatedPerson/rp1"),
    Who("carer-all", "carer", ("user/*.cruds",), "RelatedPerson/rp1"),
    Who("carer-launch", "carer", ("patient/*.cruds",), "RelatedPerson/rp1", "P1"),
    Who("carer-obs", "carer", ("user/Observation.rs",), "RelatedPerson/rp1"),
    Who("carer-v1", "carer", ("user/*.read", "user/*.write"), "RelatedPerson/rp1"),
    Who("person-all", "carer", ("user/*.cruds",), "Person/per1"),
    Who("person-p2", "carer", ("patient/*.cruds",), "Person/per1", "P2"),
]
ADMIN = Who("admin", "system", ("system/*.cruds",))


def access_token(who: Who) -> AccessToken:
    return AccessToken(
        client_id="matrix",
        sub=who.name,
        scopes=who.scopes,
        patient=who.launch,
        encounter=None,
        fhir_user=who.user,
        user_kind=who.role,  # type: ignore[arg-type]
        organization=who.org,
        jti=who.name,
        exp=2**40,
    )


TOKENS = {who.name: access_token(who) for who in [*PEOPLE, *CARERS, ADMIN]}


def verify(raw: str) -> AccessToken:
    if raw not in TOKENS:
        raise InvalidToken("unknown")
    return TOKENS[raw]


# -- running the matrix ----------------------------------------------------------------------------


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(data_dir=tmp_path, auth=True, base_url=BASE))
    app.state.verify_token = verify
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=BASE + "/") as client,
    ):
        yield client


def _entry(method: str, url: str, resource: Json | None = None, if_match: str | None = None) -> Json:
    request: Json = {"method": method, "url": url} | ({"ifMatch": if_match} if if_match else {})
    return {"request": request} | ({"resource": resource} if resource is not None else {})


async def batch(http: httpx.AsyncClient, token: str, entries: list[Json]) -> list[Json]:
    response = await http.post(
        "",
        json={"resourceType": "Bundle", "type": "batch", "entry": entries},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text[:500]
    answered: list[Json] = response.json()["entry"]
    return answered


async def set_shares(http: httpx.AsyncClient, shares: dict[str, Share]) -> None:
    puts = [
        _entry("PUT", f"Consent/{cid}", consent_body(cid, p, actor, shares[p]))
        for cid, p, actor in (("c1", "P1", "RelatedPerson/rp1"), ("c2", "P2", "RelatedPerson/rp2"))
    ]
    answers = await batch(http, "admin", puts)
    assert all(e["response"]["status"][:3] in ("200", "201") for e in answers), answers


@dataclass
class Case:
    who: str
    interaction: str
    target: str
    expected: int
    got: int


async def run_person(
    http: httpx.AsyncClient, who: Who, model: list[Res], shares: dict[str, Share], serial: int
) -> list[Case]:
    """One batch: reads, vreads, searches, counts, guarded updates/deletes, then creates."""
    planned: list[tuple[str, Res | str, Json]] = []
    for res in model:
        url = f"{res.type}/{res.id}"
        planned += [
            ("read", res, _entry("GET", url)),
            ("vread", res, _entry("GET", f"{url}/_history/1")),
            ("search", res, _entry("GET", f"{res.type}?_id={res.id}")),
            ("update", res, _entry("PUT", url, current_body(res, shares), if_match='W/"999"')),
            ("delete", res, _entry("DELETE", url, if_match='W/"999"')),
        ]
    planned += [("count", rtype, _entry("GET", f"{rtype}?_summary=count")) for rtype in COUNTED]
    news = [
        Res(rtype, f"new-{serial}-{n}", p, label, "vital-signs" if rtype == "Observation" else None)
        for n, (p, rtype, label) in enumerate(itertools.product(PATIENT_ORG, CLINICAL, (*LABELS, None)))
    ]
    planned += [
        ("create", res, _entry("POST", res.type, {k: v for k, v in body_of(res).items() if k != "id"}))
        for res in news
    ]
    answers = await batch(http, who.name, [p[2] for p in planned])
    cases: list[Case] = []
    for (interaction, target, _), answer in zip(planned, answers, strict=True):
        status = int(answer["response"]["status"][:3])
        if isinstance(target, str):  # a count: compare totals with the oracle's
            expected_total = sum(1 for r in model if r.type == target and reach(who, "s", r, shares))
            expected = 403 if not has_scope(who, "s", target) else 200
            got_total = answer.get("resource", {}).get("total") if status == 200 else None
            cases.append(Case(who.name, "count", target, expected, status))
            if expected == 200:
                cases.append(
                    Case(
                        who.name, "total", target, expected_total, got_total if got_total is not None else -1
                    )
                )
            continue
        expected = oracle(who, interaction, target, shares)
        cases.append(Case(who.name, interaction, f"{target.type}/{target.id}", expected, status))
        if interaction == "search" and status == 200:
            found = answer["resource"]["total"]
            cases.append(
                Case(
                    who.name,
                    "found",
                    f"{target.type}/{target.id}",
                    int(reach(who, "s", target, shares)),
                    found,
                )
            )
        if interaction == "create" and status == 201:
            location = answer["response"]["location"].split("/")
            model.append(Res(target.type, location[1], target.patient, target.label, target.category))
    return cases


async def test_access_matrix_agrees_with_the_oracle(http: httpx.AsyncClient) -> None:
    """Several thousand decisions, each equal to what the rules call for."""
    started = time.monotonic()
    model = world()
    await set_shares(http, CONFIGS[0])
    load = [_entry("PUT", f"{r.type}/{r.id}", body_of(r)) for r in model if r.type != "Consent"]
    loaded = await batch(http, "admin", load)
    assert all(e["response"]["status"][:3] in ("200", "201") for e in loaded), [
        e for e in loaded if e["response"]["status"][:3] not in ("200", "201")
    ][:2]
    cases: list[Case] = []
    serial = 0
    for who in PEOPLE:
        serial += 1
        cases += await run_person(http, who, model, CONFIGS[0], serial)
    for shares in CONFIGS:
        await set_shares(http, shares)
        for who in CARERS:
            serial += 1
            cases += await run_person(http, who, model, shares, serial)
    wrong = [c for c in cases if c.expected != c.got]
    elapsed = time.monotonic() - started
    assert not wrong, f"{len(wrong)} of {len(cases)} disagree, e.g. {wrong[:5]}"
    assert len(cases) >= 5000, len(cases)
    assert elapsed < 60, elapsed
    spread = Counter(
        f"{c.interaction}:{c.expected}" for c in cases if c.interaction not in ("found", "total")
    )
    print(
        f"access matrix: {len(cases)} cases agree with the oracle in {elapsed:.1f}s; {sorted(spread.items())}"
    )
    assert all(
        spread[k] > 100
        for k in ("read:200", "read:404", "read:403", "create:201", "create:403", "update:412")
    )
