"""Fixtures every test layer shares: the official examples and a real app on a real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from fhir_server.app import create_app
from fhir_server.settings import Settings

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
