"""Bulk import: files and resource streams into a real SQLite store, in-process and with worker processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from fhir_server.importer import import_resources, read_file
from fhir_server.search.query import SearchQuery
from fhir_server.storage.port import HistoryQuery
from fhir_server.storage.sqlite import SqliteStore
from seed_data.generator import generate_trust


def patient(pid: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, **extra}


async def open_store(path: Path) -> SqliteStore:
    store = SqliteStore(path)
    await store.open()
    return store


async def test_workers_give_the_same_store_as_in_process(tmp_path: Path) -> None:
    resources = list(generate_trust(patients=6, seed=7))
    stores = [await open_store(tmp_path / f"{n}.sqlite3") for n in (0, 2)]
    try:
        reports = [
            await import_resources(s, resources, workers=w) for s, w in zip(stores, (0, 2), strict=True)
        ]
        assert [r.written for r in reports] == [len(resources)] * 2
        for resource in resources[:: max(1, len(resources) // 40)]:
            kind, rid = resource["resourceType"], resource["id"]
            a, b = [await s.read(kind, rid) for s in stores]
            assert a is not None and b is not None
            assert orjson.loads(a.body) | {"meta": None} == orjson.loads(b.body) | {"meta": None}
    finally:
        for store in stores:
            await store.close()


async def test_invalid_resources_are_reported_and_the_rest_written(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "s.sqlite3")
    try:
        report = await import_resources(
            store,
            [
                patient("ok"),
                patient("bad", gender="robot"),
                {"resourceType": "Spaceship", "id": "x"},
                patient("ok2"),
            ],
        )
        assert (report.written, report.failed) == (2, 2)
        assert any("Patient/bad" in e for e in report.errors)
        assert await store.read("Patient", "bad") is None
    finally:
        await store.close()


async def test_a_resource_twice_becomes_two_versions(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "s.sqlite3")
    try:
        await import_resources(store, [patient("p", active=True), patient("p", active=False)])
        page = await store.history(HistoryQuery("Patient", "p"))
        assert [e.version_id for e in page.entries] == [2, 1]
        current = await store.read("Patient", "p")
        assert current is not None and orjson.loads(current.body)["active"] is False
    finally:
        await store.close()


async def test_one_transaction_bundle_imported_twice_refers_within_each_import(tmp_path: Path) -> None:
    """A transaction's `urn:uuid:` references are rewritten to the ids it assigns; the caller's
    Bundle must be left as it was, so the same Bundle sent again refers to its own new Patient,
    not to the one the first import created."""
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000001",
                "resource": patient("ignored"),
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "weight"},
                    "subject": {"reference": "urn:uuid:00000000-0000-4000-8000-000000000001"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    sent = orjson.dumps(bundle)
    for n in range(2):
        store = await open_store(tmp_path / f"{n}.sqlite3")
        try:
            report = await import_resources(store, [bundle])
            assert report.written == 2, report.errors
            [obs] = (await store.search(SearchQuery(resource_types=("Observation",)))).matches
            subject = orjson.loads(obs.body)["subject"]["reference"]
            assert subject.startswith("Patient/")
            assert await store.read("Patient", subject.removeprefix("Patient/")) is not None
        finally:
            await store.close()
        assert orjson.dumps(bundle) == sent


async def test_ndjson_lines_are_imported_with_their_problems_reported(tmp_path: Path) -> None:
    """Lines go to the workers unparsed when they start with type and id; the others are parsed
    here. A broken line is reported by its number and the rest still written."""
    source = tmp_path / "mixed.ndjson"
    source.write_bytes(
        b'{"resourceType":"Patient","id":"a","active":true}\n'
        b"\n"
        b'{"active":false,"id":"b","resourceType":"Patient"}\n'
        b'{"resourceType":"Patient","id":"c",\n'
        b'{"id":"e","resourceType":\n'
        b'{"resourceType":"Patient","id":"a","active":false}\n'
        b'{"resourceType":"Patient","id":"d","gender":"robot"}\n'
        b'{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.50}}\n'
        b"[1]\n"
        b"null\n"
        b'{"resourceType":"Patient","id":"d","gender":"female"}\n'
    )
    for workers in (0, 2):
        store = await open_store(tmp_path / f"{workers}.sqlite3")
        try:
            report = await import_resources(store, read_file(source), workers=workers)
            assert (report.written, report.failed) == (5, 5), report.errors
            assert any(e.startswith("Patient/c:") and "not valid JSON" in e for e in report.errors)
            assert any(e.startswith("line 5:") and "not valid JSON" in e for e in report.errors)
            assert any(e.startswith("line 9:") and "JSON array, not an object" in e for e in report.errors)
            assert any(e.startswith("line 10:") and "JSON null" in e for e in report.errors)
            assert any("Patient/d" in e for e in report.errors)
            a, b = await store.read("Patient", "a"), await store.read("Patient", "b")
            assert a is not None and a.version_id == 2 and orjson.loads(a.body)["active"] is False
            assert b is not None and b.version_id == 1
            assert await store.read("Patient", "c") is None
            d = await store.read("Patient", "d")  # its first line failed; the later one is version 1
            assert d is not None and d.version_id == 1
            page = await store.search(SearchQuery(("Observation",)))
            assert len(page.matches) == 1 and b'"value":1.50' in page.matches[0].body
        finally:
            await store.close()


def test_cli_imports_an_ndjson_file(tmp_path: Path) -> None:
    source = tmp_path / "trust.ndjson"
    resources = list(generate_trust(patients=3, seed=2))
    source.write_bytes(b"\n".join(orjson.dumps(r) for r in resources) + b"\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fhir_server.cli",
            "import",
            "--data-dir",
            str(tmp_path / "data"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"{len(resources)} written, 0 failed" in done.stderr
