"""The portal's queries (the ones benchmarks/search_bench.py times) answer what the seed data holds.

A generated trust is imported once; each query's answer is compared with what the generated
resources say it must be, so a silently ignored parameter or a wrong sort shows up here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.importer import import_resources
from fhir_server.settings import Settings
from fhir_server.storage.sqlite import SqliteStore
from seed_data.generator import generate_trust, nhs_number_of
from tests.conftest import BASE

Json = dict[str, Any]
TODAY = date(2026, 11, 24)
NHS = "https://fhir.nhs.uk/Id/nhs-number"
TRUST = tuple(generate_trust(patients=6, seed=11, today=TODAY))
X = "pat-000003"


def of(kind: str, patient: str | None = None) -> list[Json]:
    """Generated resources of a type, optionally only those about one patient."""
    ref = f"Patient/{patient}" if patient else None
    return [
        r
        for r in TRUST
        if r["resourceType"] == kind
        and (ref is None or (r.get("subject") or {}).get("reference") == ref or _participant(r, ref))
    ]


def _participant(resource: Json, ref: str) -> bool:
    return any(p.get("actor", {}).get("reference") == ref for p in resource.get("participant", []))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("seeded")

    async def load() -> None:
        store = SqliteStore(folder / "fhir.sqlite3")
        await store.open()
        try:
            report = await import_resources(store, TRUST)
            assert (report.written, report.failed) == (len(TRUST), 0), report.errors
        finally:
            await store.close()

    asyncio.run(load())
    return folder


@pytest.fixture
async def client(data_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(data_dir=data_dir, auth=False, base_url=BASE))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http:
            yield http


async def search(client: httpx.AsyncClient, path: str, **params: str) -> list[Json]:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return [e["resource"] for e in response.json().get("entry", [])]


async def test_letters_newest_first(client: httpx.AsyncClient) -> None:
    found = await search(client, "DocumentReference", patient=X, _sort="-date", _count="20")
    expected = sorted(of("DocumentReference", X), key=lambda r: r["date"], reverse=True)
    assert [r["id"] for r in found] == [r["id"] for r in expected]


async def test_upcoming_appointments_in_date_order(client: httpx.AsyncClient) -> None:
    found = await search(client, "Appointment", patient=X, date=f"ge{TODAY}", _sort="date")
    upcoming = sorted(
        (r for r in of("Appointment", X) if r["start"] >= TODAY.isoformat()), key=lambda r: r["start"]
    )
    assert upcoming
    assert [r["id"] for r in found] == [r["id"] for r in upcoming]


async def test_symptom_series_for_one_code_since_a_date(client: httpx.AsyncClient) -> None:
    first = next(r for r in of("Observation", X) if r["category"][0]["coding"][0]["code"] == "survey")
    coding = first["code"]["coding"][0]
    since = "2026-06-01"
    found = await search(
        client,
        "Observation",
        patient=X,
        code=f"{coding['system']}|{coding['code']}",
        date=f"ge{since}",
        _sort="date",
    )
    series = [
        r
        for r in of("Observation", X)
        if r["code"]["coding"][0] == coding and r["effectiveDateTime"] >= since
    ]
    assert [r["id"] for r in found] == [r["id"] for r in sorted(series, key=lambda r: r["effectiveDateTime"])]


async def test_patient_by_nhs_number(client: httpx.AsyncClient) -> None:
    patient = next(r for r in of("Patient") if r["id"] == X)
    found = await search(client, "Patient", identifier=f"{NHS}|{nhs_number_of(patient)}")
    assert [r["id"] for r in found] == [X]


async def test_patient_name_prefix(client: httpx.AsyncClient) -> None:
    family = next(r for r in of("Patient") if r["id"] == X)["name"][0]["family"]
    prefix = family[:3].lower()
    found = await search(client, "Patient", name=prefix, _count="100")
    expected = {
        r["id"]
        for r in of("Patient")
        if any(
            part.lower().startswith(prefix) for name in r["name"] for part in [name["family"], *name["given"]]
        )
    }
    assert {r["id"] for r in found} == expected


async def test_revinclude_brings_the_patients_appointments(client: httpx.AsyncClient) -> None:
    response = await client.get("Patient", params={"_id": X, "_revinclude": "Appointment:patient"})
    entries = response.json().get("entry", [])
    modes = {(e["resource"]["resourceType"], e["resource"]["id"]): e["search"]["mode"] for e in entries}
    assert modes.pop(("Patient", X)) == "match"
    assert set(modes) == {("Appointment", r["id"]) for r in of("Appointment", X)}
    assert set(modes.values()) == {"include"}


async def test_chained_search_on_the_subjects_nhs_number(client: httpx.AsyncClient) -> None:
    patient = next(r for r in of("Patient") if r["id"] == X)
    found = await search(
        client,
        "Observation",
        **{"subject:Patient.identifier": f"{NHS}|{nhs_number_of(patient)}", "_count": "20"},
    )
    assert len(found) == 20
    assert {r["subject"]["reference"] for r in found} == {f"Patient/{X}"}
