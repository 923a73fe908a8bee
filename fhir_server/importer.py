"""Bulk loading: Bundles, NDJSON files and plain resource lists straight into a store.

Resources keep their ids (an update-as-create), are validated and indexed like any write, and go
to the store in chunks of one atomic write each, which is far faster than one write per resource.
Transaction and batch Bundles are processed exactly as if POSTed to the server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fhir_server import jsonio
from fhir_server.errors import FhirError
from fhir_server.rest.bundle import process_bundle
from fhir_server.rest.context import RequestContext
from fhir_server.rest.create import plan_create
from fhir_server.rest.dispatch import run_get
from fhir_server.rest.update import plan_update
from fhir_server.rest.writes import utc_now
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
) -> ImportReport:
    """Write every resource (Bundles of type transaction/batch are processed as such)."""
    ctx = RequestContext(store, base_url)
    report = ImportReport()
    chunk: list[Json] = []
    for resource in resources:
        if resource.get("resourceType") == "Bundle" and resource.get("type") in ("transaction", "batch"):
            await _flush(ctx, chunk, report, progress)
            chunk = []
            await _process_bundle(ctx, resource, report, progress)
            continue
        for item in _unbundle(resource):
            chunk.append(item)
            if len(chunk) >= CHUNK:
                await _flush(ctx, chunk, report, progress)
                chunk = []
    await _flush(ctx, chunk, report, progress)
    return report


def _unbundle(resource: Json) -> Iterator[Json]:
    """A collection/searchset/document Bundle contributes its entries; anything else itself."""
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


async def _flush(
    ctx: RequestContext, chunk: list[Json], report: ImportReport, progress: Callable[[int], None] | None
) -> None:
    if not chunk:
        return
    ops: list[WriteOp] = []
    seen: set[tuple[str, str]] = set()
    now = utc_now()
    for resource in chunk:
        key = (str(resource.get("resourceType")), str(resource.get("id")))
        if key in seen:  # the same resource twice in a chunk: write what came before, then plan it
            await _write(ctx, ops, report)
            ops, seen = [], set()
        op = await _plan(ctx, resource, now, report)
        if op is not None:
            ops.append(op)
            seen.add((op.resource_type, op.id))
    await _write(ctx, ops, report)
    if progress:
        progress(len(chunk))


async def _plan(ctx: RequestContext, resource: Json, now: Any, report: ImportReport) -> WriteOp | None:
    kind, id = resource.get("resourceType"), resource.get("id")
    try:
        if isinstance(id, str) and isinstance(kind, str):
            planned = await plan_update(ctx, kind, id, resource, now)
        else:
            planned = await plan_create(ctx, str(kind), resource, now)
    except FhirError as error:
        report.fail(f"{kind}/{id}" if id else str(kind), error.message)
        return None
    return planned.op


async def _write(ctx: RequestContext, ops: list[WriteOp], report: ImportReport) -> None:
    if not ops:
        return
    try:
        await ctx.store.write(ops)
        report.written += len(ops)
    except Exception as error:  # a conflicting concurrent writer: report, keep going
        report.fail(f"chunk of {len(ops)}", type(error).__name__)
