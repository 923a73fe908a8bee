"""Validation and indexing of many resources at once, optionally in worker processes.

Checking a resource against the R4B model and extracting its index entries is pure CPU work
(~0.3 ms a resource), so large transactions and bulk imports spread it over processes. Results
come back as WriteOps or as `PlanError`s, which carry everything a FhirError needs (an exception
with issues does not survive pickling as itself).
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir_server import jsonio
from fhir_server.errors import BadRequest, FhirError, Issue
from fhir_server.indexing.extract import extractors_for
from fhir_server.rest.common import require_type
from fhir_server.rest.writes import plan_put
from fhir_server.storage.port import WriteOp
from fhir_server.validation import validate_resource
from fhir_server.validation.validator import supported_types

# The resource (parsed, or an NDJSON line whose `jsonio.head_of` gave its type and `id`), its id, and the
# version it replaces (0: none). A line is parsed by whoever plans it: sending bytes to a worker
# process is far cheaper than pickling the parsed resource.
Item = tuple[dict[str, Any] | bytes, str, int]


@dataclass(frozen=True, slots=True)
class PlanError:
    where: str
    status: int
    code: str
    message: str
    issues: tuple[Issue, ...]

    def error(self) -> FhirError:
        return FhirError(self.message, list(self.issues), status=self.status, code=self.code)


def plan_items(items: list[Item], now: datetime, own_base: str | None = None) -> list[WriteOp | PlanError]:
    """Validate and index each resource as version `expected + 1` of Type/id (pure: runs anywhere);
    references to `own_base` are stored relative (writes.plan_put)."""
    out: list[WriteOp | PlanError] = []
    for item, id, expected in items:
        kind = item_type(item)
        try:
            resource = item if isinstance(item, dict) else _parsed_line(item, kind, id)
            require_type(kind)
            validate_resource(resource, expected_type=kind, expected_id=id, require_id=True)
            method = "PUT" if expected else "POST"
            out.append(plan_put(resource, id, expected, now, method, own_base=own_base))
        except FhirError as error:
            out.append(
                PlanError(f"{kind}/{id}", error.status, error.code, error.message, tuple(error.issues))
            )
    return out


def item_type(item: dict[str, Any] | bytes) -> str:
    """An item's resourceType: the parsed resource's, or the one its line starts with."""
    if isinstance(item, dict):
        return str(item.get("resourceType"))
    head = jsonio.head_of(item)
    return head[0] if head else "?"


def _parsed_line(line: bytes, kind: str, id: str) -> dict[str, Any]:
    """The resource on one NDJSON line, which must be the `kind`/`id` its start announced."""
    try:
        resource = jsonio.loads_request(line)
    except ValueError as error:
        raise BadRequest(f"The line is not valid JSON: {error}") from None
    if not isinstance(resource, dict) or (resource.get("resourceType"), resource.get("id")) != (kind, id):
        raise BadRequest(f"The line starts as {kind}/{id} but parses as something else (a repeated key?)")
    return resource


def _worker_ready() -> None:
    """Load what every plan needs, then keep the collector from walking it on every collection."""
    supported_types()
    extractors_for("Patient")
    gc.collect()
    gc.freeze()


class Planner:
    """`plan_items` in a pool of processes, started on first use (spawn: the parent holds SQLite
    connections and threads that a fork would copy)."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._pool: ProcessPoolExecutor | None = None

    async def plan(
        self, items: list[Item], now: datetime, own_base: str | None = None
    ) -> list[WriteOp | PlanError]:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_ready
            )
        loop = asyncio.get_running_loop()
        share = -(-len(items) // self.workers)  # one slice per worker
        slices = [items[i : i + share] for i in range(0, len(items), share)]
        try:
            parts = await asyncio.gather(
                *(loop.run_in_executor(self._pool, plan_items, s, now, own_base) for s in slices)
            )
        except Exception:
            self.close()  # a broken pool is started afresh next time
            raise
        return [planned for part in parts for planned in part]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
