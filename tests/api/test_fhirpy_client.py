"""fhirpy, an independent FHIR client, against a real `fhir-server serve` process.

It builds its own requests and follows the server's own `next` links, so these tests check the
wire format (ids, versions, search Bundles, paging links, conditional create, 410 after delete) as a
client written by someone else reads it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fhirpy import AsyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome, ResourceNotFound

from tests.live_server import live_server

pytestmark = pytest.mark.slow
NHS = "https://fhir.nhs.uk/Id/nhs-number"


async def test_fhirpy_creates_pages_updates_and_deletes(tmp_path: Path) -> None:
    with live_server(tmp_path, "--no-auth") as (base, _):
        client = AsyncFHIRClient(base, extra_headers={"Accept": "application/fhir+json"})
        for n in range(23):
            patient = client.resource(
                "Patient",
                name=[{"family": "Paging" if n % 2 else "Other", "given": [f"P{n}"]}],
                identifier=[{"system": NHS, "value": f"99900000{n:02d}"}],
            )
            await patient.save()
            assert patient.id and patient["meta"]["versionId"] == "1"

        # Paging: fetch_all follows the server's next links until there are none.
        found = await client.resources("Patient").search(family="paging").limit(5).fetch_all()
        assert sorted(p["name"][0]["given"][0] for p in found) == sorted(f"P{n}" for n in range(1, 23, 2))
        # fhirpy's count() adds Aidbox's `_totalMethod`: refused under strict handling (our default),
        # ignored and reported when the client asks for lenient handling.
        with pytest.raises(OperationOutcome, match="_totalMethod"):
            await client.resources("Patient").search(family="paging").count()
        lenient = AsyncFHIRClient(base, extra_headers={"Prefer": "handling=lenient"})
        assert await lenient.resources("Patient").search(family="paging").count() == 11

        # Update through the client: version 2, and the search sees the new value.
        first = await client.resources("Patient").search(identifier=f"{NHS}|9990000001").get()
        first["active"] = False
        await first.save()
        again = await client.resources("Patient").search(identifier=f"{NHS}|9990000001").get()
        assert again["meta"]["versionId"] == "2" and again["active"] is False

        # Delete: the resource is gone for the client.
        await again.delete()
        with pytest.raises(ResourceNotFound):
            await client.resources("Patient").search(identifier=f"{NHS}|9990000001").get()


async def test_fhirpy_get_or_create_creates_once(tmp_path: Path) -> None:
    """get_or_create is a conditional create: the second call finds the first one's Patient."""
    with live_server(tmp_path, "--no-auth") as (base, _):
        client = AsyncFHIRClient(base)
        body = client.resource("Patient", identifier=[{"system": NHS, "value": "9990000999"}])
        search = client.resources("Patient").search(identifier=f"{NHS}|9990000999")
        made, created = await search.get_or_create(body)
        found, created_again = await search.get_or_create(body)
        assert created is True and created_again is False
        assert made.id == found.id
        assert len(await search.fetch_all()) == 1
