"""The demo trust: loaded into an empty store once, then readable and searchable through HTTP."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import httpx

from fhir_server.app import create_app
from fhir_server.settings import Settings
from fhir_server.storage.sqlite import SqliteStore
from seed_data.demo import DEMO_PATIENTS, DEMO_SEED, load_demo_once
from seed_data.generator import generate_trust, nhs_number_of
from tests.conftest import BASE

TODAY = date(2026, 11, 24)


async def test_demo_loads_into_an_empty_store_and_only_once(tmp_path: Path) -> None:
    """Every generated resource is written; a second call leaves a non-empty store alone."""
    expected = sum(1 for _ in generate_trust(patients=DEMO_PATIENTS, seed=DEMO_SEED, today=TODAY))
    store = SqliteStore(tmp_path / "fhir.sqlite3")
    await store.open()
    try:
        await load_demo_once(store, today=TODAY)
        assert (await store.stats()).resources == expected
        await load_demo_once(store, today=TODAY)
        stats = await store.stats()
        assert (stats.resources, stats.versions) == (expected, expected)
    finally:
        await store.close()


async def test_demo_patient_is_served_by_the_app_started_with_demo(tmp_path: Path) -> None:
    """`--demo` on first start: the first demo patient is readable by id and findable by NHS number."""
    first = next(
        r for r in generate_trust(patients=1, seed=DEMO_SEED, today=TODAY) if r["resourceType"] == "Patient"
    )
    app = create_app(Settings(data_dir=tmp_path, auth=False, demo=True, base_url=BASE))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as client:
            read = await client.get(f"Patient/{first['id']}")
            assert read.status_code == 200
            assert nhs_number_of(read.json()) == nhs_number_of(first)
            found = await client.get(
                "Patient", params={"identifier": f"https://fhir.nhs.uk/Id/nhs-number|{nhs_number_of(first)}"}
            )
            assert found.status_code == 200
            assert [e["resource"]["id"] for e in found.json().get("entry", [])] == [first["id"]]
