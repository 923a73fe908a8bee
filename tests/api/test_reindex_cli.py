"""`fhir-server reindex` on a store whose index an older version made, and the warning the server
gives at start until it is run (see INDEX_VERSION)."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.indexing.entries import INDEX_VERSION
from fhir_server.rest.writes import plan_put
from fhir_server.settings import Settings
from fhir_server.storage.sqlite import SqliteStore

NOW = datetime(2026, 11, 30, tzinfo=UTC)


async def older_store(data_dir: Path) -> None:
    """A store as a version before INDEX_VERSION was recorded left it: resources whose decimal
    values have no entries, and no recorded version."""
    store = SqliteStore(data_dir / "fhir.sqlite3")
    await store.open()
    try:
        for i, value in enumerate([6.3, 7.5]):
            glucose = {"resourceType": "Observation", "id": f"o{i}", "status": "final",
                       "code": {"text": "glucose"}, "valueQuantity": {"value": value}}  # fmt: skip
            op = plan_put(glucose, f"o{i}", 0, NOW)
            await store.write([replace(op, entries=[e for e in op.entries if "quantity" not in e.param])])
    finally:
        await store.close()
    conn = sqlite3.connect(data_dir / "fhir.sqlite3")
    conn.execute("DELETE FROM store_meta WHERE name = 'index-version'")
    conn.commit()
    conn.close()


async def above_six(data: Path, caplog: pytest.LogCaptureFixture) -> int:
    """Start the server on `data` (what it logs goes to caplog) and count `value-quantity=gt6`."""
    app = create_app(Settings(data_dir=data, auth=False))
    with caplog.at_level(logging.WARNING):
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t/fhir/") as client:
                found = (await client.get("Observation", params={"value-quantity": "gt6"})).json()
    return int(found["total"])


async def test_an_older_store_is_reported_at_start_and_fixed_by_reindex(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    await older_store(data)
    assert await above_six(data, caplog) == 0
    assert any("fhir-server reindex" in r.getMessage() for r in caplog.records)
    assert "index version 1, now" in caplog.text

    done = subprocess.run(
        [sys.executable, "-m", "fhir_server.cli", "reindex", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"2 resources reindexed; the index is at version {INDEX_VERSION}" in done.stderr

    caplog.clear()
    assert await above_six(data, caplog) == 2
    assert "reindex" not in caplog.text
