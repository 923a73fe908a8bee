"""Fixtures every test layer shares: the official examples, a real app on a real SQLite file, and
`store`, one fixture over every storage adapter that can run here (DESIGN.md habit 3): the embedded
SQLite store always; a real MongoDB when MONGODB_URI is set; and the in-process MongoDB stand-in
(mongomock) only to exercise the Mongo adapter's code paths where no real MongoDB can run."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from fhir_server.app import create_app
from fhir_server.settings import Settings
from fhir_server.storage.port import Store

EXAMPLES = Path(__file__).parent / "fixtures" / "fhir-r4-examples"
BASE = "http://testserver/fhir"


def example(name: str) -> dict[str, Any]:
    """An official R4 example by file name without .json, e.g. example("Patient-example")."""
    value: dict[str, Any] = orjson.loads((EXAMPLES / f"{name}.json").read_bytes())
    return value


@pytest.fixture
async def app_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the app, no auth, store in a fresh SQLite file."""
    app = create_app(Settings(data_dir=tmp_path, auth=False, base_url=BASE))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as client:
            yield client


def _adapters() -> list[str]:
    names = ["sqlite"]
    try:
        import fhir_server.storage.mongo  # noqa: F401

        names.append("mongomock")
        if os.environ.get("MONGODB_URI"):
            names.append("mongodb")
    except ImportError:
        pass
    return names


@pytest.fixture(params=_adapters())
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    adapter: Store
    if request.param == "sqlite":
        from fhir_server.storage.sqlite import SqliteStore

        adapter = SqliteStore(tmp_path / "contract.sqlite3")
    else:
        from fhir_server.storage.mongo import MongoStore

        database = f"contract_{uuid.uuid4().hex[:12]}"
        if request.param == "mongodb":
            adapter = MongoStore(os.environ["MONGODB_URI"], database=database)
        else:
            adapter = MongoStore.in_memory_stand_in(database=database)
    await adapter.open()
    try:
        yield adapter
    finally:
        drop = getattr(adapter, "drop_database", None)
        if drop is not None:
            await drop()
        await adapter.close()
