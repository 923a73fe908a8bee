"""Optimistic concurrency and durability against a real server process (two uvicorn workers)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx
import pytest

from fhir_server.storage.sqlite import SqliteStore
from tests.live_server import live_server

pytestmark = pytest.mark.slow


def patient(pid: str, family: str) -> dict[str, object]:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": family}]}


async def test_twenty_concurrent_if_match_updates_one_wins_per_version(tmp_path: Path) -> None:
    """20 racing updates of version 1: exactly one succeeds, 19 get 412, and nothing is lost."""
    with live_server(tmp_path, "--no-auth", "--workers", "2") as (base, _):
        async with httpx.AsyncClient(base_url=base + "/", timeout=30) as client:
            assert (await client.put("Patient/race", json=patient("race", "v1"))).status_code == 201
            responses = await asyncio.gather(
                *(
                    client.put(
                        "Patient/race", json=patient("race", f"writer-{n}"), headers={"If-Match": 'W/"1"'}
                    )
                    for n in range(20)
                )
            )
            statuses = sorted(r.status_code for r in responses)
            assert statuses == [200] + [412] * 19
            winner = next(r for r in responses if r.status_code == 200).json()
            current = (await client.get("Patient/race")).json()
            assert current["meta"]["versionId"] == "2"
            assert current["name"] == winner["name"]


async def test_racing_writers_that_retry_never_lose_an_update(tmp_path: Path) -> None:
    """20 writers each read-then-update with If-Match until they win: 21 versions, every write kept."""
    with live_server(tmp_path, "--no-auth", "--workers", "2") as (base, _):
        async with httpx.AsyncClient(base_url=base + "/", timeout=30) as client:
            await client.put("Patient/counter", json=patient("counter", "start"))

            async def writer(n: int) -> None:
                for _ in range(200):
                    current = await client.get("Patient/counter")
                    tag = current.headers["etag"]
                    response = await client.put(
                        "Patient/counter", json=patient("counter", f"writer-{n}"), headers={"If-Match": tag}
                    )
                    if response.status_code == 200:
                        return
                    assert response.status_code == 412
                raise AssertionError(f"writer {n} never won")

            await asyncio.gather(*(writer(n) for n in range(20)))
            history = (await client.get("Patient/counter/_history?_count=100")).json()
            assert history["total"] == 21
            families = {e["resource"]["name"][0]["family"] for e in history["entry"]}
            assert families == {"start", *(f"writer-{n}" for n in range(20))}


async def test_twenty_racing_conditional_creates_make_one_resource(tmp_path: Path) -> None:
    """If-None-Exist sent 20 times at once to two worker processes: one 201, nineteen 200 naming the
    same Patient, and one Patient with that identifier in the store."""
    body = {"resourceType": "Patient", "identifier": [{"system": "urn:race", "value": "1"}]}
    with live_server(tmp_path, "--no-auth", "--workers", "2") as (base, _):
        async with httpx.AsyncClient(base_url=base + "/", timeout=30) as client:
            responses = await asyncio.gather(
                *(
                    client.post("Patient", json=body, headers={"If-None-Exist": "identifier=urn:race|1"})
                    for _ in range(20)
                )
            )
            assert sorted(r.status_code for r in responses) == [200] * 19 + [201]
            assert len({r.headers["location"].split("/_history")[0] for r in responses}) == 1
            found = (await client.get("Patient?identifier=urn:race|1&_total=accurate")).json()
            assert found["total"] == 1


async def test_twenty_racing_conditional_updates_create_once(tmp_path: Path) -> None:
    """PUT Patient?identifier=... with no match creates: racing ones create one Patient, then update it."""
    body = {"resourceType": "Patient", "identifier": [{"system": "urn:race", "value": "2"}], "active": True}
    with live_server(tmp_path, "--no-auth", "--workers", "2") as (base, _):
        async with httpx.AsyncClient(base_url=base + "/", timeout=30) as client:
            responses = await asyncio.gather(
                *(client.put("Patient?identifier=urn:race|2", json=body) for _ in range(20))
            )
            statuses = sorted(r.status_code for r in responses)
            # 409: an update that lost the race to other updates more times than the server retries
            assert statuses.count(201) == 1 and set(statuses) <= {200, 201, 409}, statuses
            found = (await client.get("Patient?identifier=urn:race|2&_total=accurate")).json()
            assert found["total"] == 1


async def test_acknowledged_write_survives_kill_9(tmp_path: Path) -> None:
    """Once the server answered 201, the write is on disk even if the process is killed at once."""
    with live_server(tmp_path, "--no-auth") as (base, process):
        async with httpx.AsyncClient(base_url=base + "/") as client:
            created = await client.put("Patient/durable", json=patient("durable", "Kept"))
            assert created.status_code == 201
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    store = SqliteStore(tmp_path / "fhir.sqlite3")
    await store.open()
    try:
        stored = await store.read("Patient", "durable")
        assert stored is not None and b"Kept" in stored.body
    finally:
        await store.close()
