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
from fhir_server.rest.planning import Item, PlanError, Planner, item_type, plan_items
from fhir_server.rest.update import plan_update
from fhir_server.rest.writes import new_id, utc_now
from fhir_server.storage.port import Store, WriteOp

Json = dict[str, Any]
# Stands in where no base is known: `.invalid` is reserved (RFC 2606), so no reference names it.
_NO_BASE = "http://fhir-server.invalid/fhir"
CHUNK = 1000  # resources per store write: larger writes dirty each index page fewer times


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


Source = Json | bytes  # a parsed resource or Bundle, or one NDJSON line as read


def read_file(path: Path) -> Iterator[Source]:
    """The resources in a .json (resource or Bundle) or .ndjson file (one resource a line, left
    unparsed: the importer routes lines by their start and parses them where it validates them)."""
    if path.suffix == ".ndjson":
        with path.open("rb") as lines:
            yield from lines  # blank ones too, so that a problem can be reported by its line number
        return
    yield path.read_bytes()


async def import_resources(
    store: Store,
    resources: Iterable[Source],
    *,
    base_url: str | None = None,
    progress: Callable[[int], None] | None = None,
    workers: int = 0,
) -> ImportReport:
    """Write every resource (Bundles of type transaction/batch are processed as such).

    With `workers` > 0, validation and indexing (the CPU-bound part) run in that many processes
    while the store writes the previous chunk, and chunks are still written in order.

    `base_url`: the FHIR base of the server that will serve the store. References to it are stored
    relative, as the server stores those written to it (writes.relative_references). Without one,
    references are stored as written, and a placeholder base serves transaction Bundles' fullUrls.
    """
    ctx = RequestContext(store, base_url or _NO_BASE)
    own_base = base_url
    report = ImportReport()
    with _planner(workers, own_base) as plan:
        pipeline = _Pipeline(ctx, report, progress, plan, depth=max(1, workers) + 3)
        try:
            await _feed(pipeline, ctx, resources, report, progress)
        finally:
            pipeline.cancel()  # after an error: no planning left running in the background
    return report


async def _feed(
    pipeline: _Pipeline,
    ctx: RequestContext,
    sources: Iterable[Source],
    report: ImportReport,
    progress: Callable[[int], None] | None,
) -> None:
    chunk: list[Pending] = []
    for number, source in enumerate(sources, start=1):
        resource = _routable(source, number, report, progress)
        if resource is None:
            continue
        if isinstance(resource, dict) and _is_bundle(resource, "transaction", "batch"):
            await pipeline.submit(chunk)
            await pipeline.drain()
            chunk = []
            await _process_bundle(ctx, resource, report, progress)
            continue
        for pending in _unbundle(resource):
            chunk.append(pending)
            if len(chunk) >= CHUNK:
                await pipeline.submit(chunk)
                chunk = []
    await pipeline.submit(chunk)
    await pipeline.drain()


def _routable(
    source: Source, number: int, report: ImportReport, progress: Callable[[int], None] | None
) -> Source | None:
    """A line that starts with its resourceType and id as it is; anything else parsed (None, and
    reported, if it is not a JSON object)."""
    if isinstance(source, dict):
        return source
    if not source.strip():
        return None  # a blank line of an NDJSON file
    head = jsonio.head_of(source)
    if head is not None and head[0] != "Bundle":
        return source
    try:
        parsed = jsonio.loads_request(source)
    except ValueError as error:
        problem = f"not valid JSON: {error}"
    else:
        if isinstance(parsed, dict):
            return parsed
        problem = f"a JSON {_json_kind(parsed)}, not an object holding a resource"
    report.fail(f"line {number}", problem)
    if progress:
        progress(1)
    return None


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, list):
        return "array"
    return "string" if isinstance(value, str) else "number"


def _is_bundle(resource: Json, *types: str) -> bool:
    return resource.get("resourceType") == "Bundle" and resource.get("type") in types


Pending = tuple[Source, str, str | None]  # a resource or line, its type, its id (None: to be assigned)


def _unbundle(resource: Source) -> Iterator[Pending]:
    """A collection/searchset Bundle contributes its entries; anything else itself."""
    if isinstance(resource, bytes):
        head = jsonio.head_of(resource)
        assert head is not None  # _routable parsed any line without one
        yield resource, head[0], head[1]
        return
    if _is_bundle(resource, "collection", "searchset"):
        for entry in resource.get("entry") or []:
            if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                yield from _unbundle(entry["resource"])
        return
    id = resource.get("id")
    yield resource, str(resource.get("resourceType")), id if isinstance(id, str) else None


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
def _planner(workers: int, own_base: str | None) -> Iterator[PlanFn]:
    if workers <= 0:

        async def inline(items: list[Item], now: datetime) -> list[Planned]:
            return plan_items(items, now, own_base)

        yield inline
        return
    planner = Planner(workers)

    async def pooled(items: list[Item], now: datetime) -> list[Planned]:
        return await planner.plan(items, now, own_base)

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
        self.ahead: dict[tuple[str, str], int] = {}  # (type, id) -> the version planned, not yet written

    async def submit(self, chunk: list[Pending]) -> None:
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

    async def _items(self, chunk: list[Pending]) -> list[Item]:
        """Each resource with its id (a new one if it has none) and the version it will replace,
        looked up for the whole chunk at once."""
        named: list[tuple[Source, str, str]] = []
        for resource, kind, id in chunk:
            if id is None:
                id = new_id()
                resource = {**resource, "id": id} if isinstance(resource, dict) else resource
            named.append((resource, kind, id))
        ids_by_type: dict[str, list[str]] = {}
        for _, kind, id in named:
            if kind[:1].isupper():
                ids_by_type.setdefault(kind, []).append(id)
        current = {
            (kind, id): version
            for kind, ids in ids_by_type.items()
            for id, version in (await self.ctx.store.current_versions(kind, ids)).items()
        }
        current.update(self.ahead)  # versions that chunks still in flight will have written
        items: list[Item] = []
        for resource, kind, id in named:
            expected = current.get((kind, id), 0)
            self.ahead[(kind, id)] = expected + 1
            items.append((resource, id, expected))
        return items

    async def _write_oldest(self) -> None:
        items, task = self.in_flight.popleft()
        planned = await task
        ops = [p for p in planned if isinstance(p, WriteOp)]
        for (item, id, expected), p in zip(items, planned, strict=True):
            if isinstance(p, PlanError):
                self.report.fail(p.where, p.message)
                self._forget((item_type(item), id), expected + 1)
        try:
            await self.ctx.store.write(ops)
            self.report.written += len(ops)
        except VersionConflict:  # planned on a version another write changed since: one at a time
            planned_ok = [item for item, p in zip(items, planned, strict=True) if isinstance(p, WriteOp)]
            await self._write_one_by_one(planned_ok)
        for op in ops:
            self._forget((op.resource_type, op.id), op.expected_version + 1)
        if self.progress:
            self.progress(len(items))

    def _forget(self, key: tuple[str, str], version: int) -> None:
        """Written, or never to be (its plan failed): later chunks read the version from the store."""
        if self.ahead.get(key) == version:
            del self.ahead[key]

    async def _write_one_by_one(self, items: list[Item]) -> None:
        for item, id, _ in items:
            try:
                resource = item if isinstance(item, dict) else jsonio.loads_request(item)
            except ValueError as error:
                self.report.fail(f"{id}", f"not valid JSON: {error}")
                continue
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


def _without_repeats(chunk: list[Pending]) -> Iterator[list[Pending]]:
    """Split a chunk where a resource repeats, so each write holds one version of each."""
    part: list[Pending] = []
    seen: set[tuple[str, str]] = set()
    for pending in chunk:
        _, kind, id = pending
        if id is not None and (kind, id) in seen:
            yield part
            part, seen = [], set()
        part.append(pending)
        if id is not None:
            seen.add((kind, id))
    if part:
        yield part
