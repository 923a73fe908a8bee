"""Bulk loading: Bundles, NDJSON files and plain resource lists straight into a store.

Resources keep their ids (an update-as-create), are validated and indexed like any write, and go
to the store in chunks of one atomic write each, which is far faster than one write per resource.
Transaction and batch Bundles are processed exactly as if POSTed to the server.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from fhir_server import jsonio
from fhir_server.errors import FhirError, VersionConflict
from fhir_server.rest.bundle import process_bundle
from fhir_server.rest.commit import commit
from fhir_server.rest.context import RequestContext
from fhir_server.rest.dispatch import run_get
from fhir_server.rest.planning import Item, PlanError, Planner, plan_items
from fhir_server.rest.update import plan_update
from fhir_server.rest.writes import new_id, utc_now
from fhir_server.storage.port import Store, WriteOp

Json = dict[str, Any]
CHUNK = 200


@dataclass
class ImportReport:
    written: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)  # "<where>: <problem>", at most MAX_ERRORS kept

    MAX_ERRORS = 50

    def fail(self, where: str, problem: str) -> None:
        self.failed += 1
        if len(self.errors) < self.MAX_ERRORS:
            self.errors.append(f"{where}: {problem}")


def read_file(path: Path) -> Iterator[Json]:
    """The resources in a .json (resource or Bundle) or .ndjson file (one resource a line)."""
    if path.suffix == ".ndjson":
        with path.open("rb") as lines:
            for line in lines:
                if line.strip():
                    yield jsonio.loads(line)
        return
    yield jsonio.loads(path.read_bytes())


async def import_resources(
    store: Store,
    resources: Iterable[Json],
    *,
    base_url: str = "http://localhost/fhir",
    progress: Callable[[int], None] | None = None,
    workers: int = 0,
) -> ImportReport:
    """Write every resource (Bundles of type transaction/batch are processed as such).

    With `workers` > 0, validation and indexing (the CPU-bound part) run in that many processes
    while the store writes the previous chunk, and chunks are still written in order.
    """
    ctx = RequestContext(store, base_url)
    report = ImportReport()
    with _planner(workers) as plan:
        pipeline = _Pipeline(ctx, report, progress, plan, depth=max(1, workers) + 3)
        try:
            await _feed(pipeline, ctx, resources, report, progress)
        finally:
            pipeline.cancel()  # after an error: no planning left running in the background
    return report


async def _feed(
    pipeline: _Pipeline,
    ctx: RequestContext,
    resources: Iterable[Json],
    report: ImportReport,
    progress: Callable[[int], None] | None,
) -> None:
    chunk: list[Json] = []
    for resource in resources:
        if resource.get("resourceType") == "Bundle" and resource.get("type") in ("transaction", "batch"):
            await pipeline.submit(chunk)
            await pipeline.drain()
            chunk = []
            await _process_bundle(ctx, resource, report, progress)
            continue
        for item in _unbundle(resource):
            chunk.append(item)
            if len(chunk) >= CHUNK:
                await pipeline.submit(chunk)
                chunk = []
    await pipeline.submit(chunk)
    await pipeline.drain()


def _unbundle(resource: Json) -> Iterator[Json]:
    """A collection/searchset Bundle contributes its entries; anything else itself."""
    if resource.get("resourceType") == "Bundle" and resource.get("type") in ("collection", "searchset"):
        for entry in resource.get("entry") or []:
            if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                yield entry["resource"]
        return
    yield resource


async def _process_bundle(
    ctx: RequestContext, bundle: Json, report: ImportReport, progress: Callable[[int], None] | None
) -> None:
    count = len(bundle.get("entry") or [])
    try:
        await process_bundle(ctx, bundle, run_get)
        report.written += count
    except FhirError as error:
        report.fail(f"Bundle {bundle.get('id', '')}", error.message)
    if progress:
        progress(count)


# -- planning: validate + index, in this process or in a pool ---------------------------------------

Planned = WriteOp | PlanError
PlanFn = Callable[[list[Item], datetime], Awaitable[list[Planned]]]


@contextmanager
def _planner(workers: int) -> Iterator[PlanFn]:
    if workers <= 0:

        async def inline(items: list[Item], now: datetime) -> list[Planned]:
            return plan_items(items, now)

        yield inline
        return
    planner = Planner(workers)

    async def pooled(items: list[Item], now: datetime) -> list[Planned]:
        return await planner.plan(items, now)

    try:
        yield pooled
    finally:
        planner.close()


# -- the pipeline: plan ahead, write in order --------------------------------------------------------


class _Pipeline:
    def __init__(
        self,
        ctx: RequestContext,
        report: ImportReport,
        progress: Callable[[int], None] | None,
        plan: PlanFn,
        depth: int,
    ) -> None:
        self.ctx, self.report, self.progress, self.plan, self.depth = ctx, report, progress, plan, depth
        self.in_flight: deque[tuple[list[Item], asyncio.Task[list[Planned]]]] = deque()

    async def submit(self, chunk: list[Json]) -> None:
        if not chunk:
            return
        for part in _without_repeats(chunk):
            items = await self._items(part)
            self.in_flight.append((items, asyncio.ensure_future(self.plan(items, utc_now()))))
            if len(self.in_flight) >= self.depth:
                await self._write_oldest()

    def cancel(self) -> None:
        for _, task in self.in_flight:
            task.cancel()
        self.in_flight.clear()

    async def drain(self) -> None:
        while self.in_flight:
            await self._write_oldest()

    async def _items(self, chunk: list[Json]) -> list[Item]:
        """Each resource with its id (a new one if it has none) and the version it will replace."""
        items: list[Item] = []
        for resource in chunk:
            kind, id = str(resource.get("resourceType")), resource.get("id")
            if not isinstance(id, str):
                id = new_id()
                resource = {**resource, "id": id}
            current = await self.ctx.store.read(kind, id) if kind[:1].isupper() else None
            items.append((resource, id, current.version_id if current else 0))
        return items

    async def _write_oldest(self) -> None:
        items, task = self.in_flight.popleft()
        planned = await task
        ops = [p for p in planned if isinstance(p, WriteOp)]
        for p in planned:
            if isinstance(p, PlanError):
                self.report.fail(p.where, p.message)
        try:
            await self.ctx.store.write(ops)
            self.report.written += len(ops)
        except VersionConflict:  # planned on a version another write changed since: one at a time
            await self._write_one_by_one(items)
        if self.progress:
            self.progress(len(items))

    async def _write_one_by_one(self, items: list[Item]) -> None:
        for resource, id, _ in items:
            kind = str(resource.get("resourceType"))
            try:
                result = await commit(self.ctx, _replan(self.ctx, kind, id, resource))
                self.report.written += int(result.stored is not None)
            except FhirError as error:
                self.report.fail(f"{kind}/{id}", error.message)


def _replan(ctx: RequestContext, kind: str, id: str, resource: Json) -> Callable[[], Awaitable[Any]]:
    async def plan() -> Any:
        return await plan_update(ctx, kind, id, resource, utc_now())

    return plan


def _without_repeats(chunk: list[Json]) -> Iterator[list[Json]]:
    """Split a chunk where a resource repeats, so each write holds one version of each."""
    part: list[Json] = []
    seen: set[tuple[str, str]] = set()
    for resource in chunk:
        key = (str(resource.get("resourceType")), str(resource.get("id")))
        if key in seen and resource.get("id") is not None:
            yield part
            part, seen = [], set()
        part.append(resource)
        seen.add(key)
    if part:
        yield part
