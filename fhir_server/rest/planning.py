"""Validation and indexing of many resources at once, optionally in worker processes.

Checking a resource against the R4B model and extracting its index entries is pure CPU work
(~0.3 ms a resource), so large transactions and bulk imports spread it over processes. Results
come back as WriteOps or as `PlanError`s, which carry everything a FhirError needs (an exception
with issues does not survive pickling as itself).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir_server.errors import FhirError, Issue
from fhir_server.rest.common import require_type
from fhir_server.rest.writes import plan_put
from fhir_server.storage.port import WriteOp
from fhir_server.validation import validate_resource

Item = tuple[dict[str, Any], str, int]  # resource, id, the version it replaces (0: none)


@dataclass(frozen=True, slots=True)
class PlanError:
    where: str
    status: int
    code: str
    message: str
    issues: tuple[Issue, ...]

    def error(self) -> FhirError:
        return FhirError(self.message, list(self.issues), status=self.status, code=self.code)


def plan_items(items: list[Item], now: datetime) -> list[WriteOp | PlanError]:
    """Validate and index each resource as version `expected + 1` of Type/id (pure: runs anywhere)."""
    out: list[WriteOp | PlanError] = []
    for resource, id, expected in items:
        kind = str(resource.get("resourceType"))
        try:
            require_type(kind)
            validate_resource(resource, expected_type=kind, expected_id=id, require_id=True)
            out.append(plan_put(resource, id, expected, now, method="PUT" if expected else "POST"))
        except FhirError as error:
            out.append(
                PlanError(f"{kind}/{id}", error.status, error.code, error.message, tuple(error.issues))
            )
    return out


class Planner:
    """`plan_items` in a pool of processes, started on first use (spawn: the parent holds SQLite
    connections and threads that a fork would copy)."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._pool: ProcessPoolExecutor | None = None

    async def plan(self, items: list[Item], now: datetime) -> list[WriteOp | PlanError]:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        loop = asyncio.get_running_loop()
        share = -(-len(items) // self.workers)  # one slice per worker
        slices = [items[i : i + share] for i in range(0, len(items), share)]
        try:
            parts = await asyncio.gather(
                *(loop.run_in_executor(self._pool, plan_items, s, now) for s in slices)
            )
        except Exception:
            self.close()  # a broken pool is started afresh next time
            raise
        return [planned for part in parts for planned in part]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
