"""One contract suite, every storage adapter. https://github.com/ — see DESIGN.md habit 3.

`store` is parametrised over the adapters that can run here: the embedded SQLite store always; a
real MongoDB when MONGODB_URI is set; and the in-process MongoDB stand-in (mongomock) only to
exercise the Mongo adapter's code paths where no real MongoDB can run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fhir_server.storage.port import Store


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
