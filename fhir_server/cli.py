"""`fhir-server`: serve the API, import data, reindex. Long work shows a rich progress bar."""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import os
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from fhir_server.settings import Settings

console = Console(stderr=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        sys.exit(2)
    args.run(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fhir-server", description="FHIR R4 server for patient portals")
    commands = parser.add_subparsers(dest="command")

    serve = commands.add_parser("serve", help="run the HTTP server")
    _storage_options(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (SQLite is shared)")
    serve.add_argument("--base-url", help="public FHIR base URL (default: http://HOST:PORT/fhir)")
    serve.add_argument("--demo", action="store_true", help="load demo data on first start")
    serve.add_argument(
        "--no-auth", action="store_true", help="serve the FHIR API without tokens (local development only)"
    )
    serve.set_defaults(run=_serve)

    load = commands.add_parser("import", help="load Bundles (.json) or NDJSON files into the store")
    _storage_options(load)
    load.add_argument("files", nargs="+", type=Path)
    load.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes that validate and index (0: none)"
    )
    load.set_defaults(run=_import)

    reindex = commands.add_parser(
        "reindex", help="make the search index again from the stored resources (after an upgrade)"
    )
    _storage_options(reindex)
    reindex.add_argument(
        "--base-url",
        help="the server's public FHIR base (default: FHIR_BASE_URL): references to it are indexed as "
        "relative ones, as the server stores them",
    )
    reindex.set_defaults(run=_reindex)

    from smart_auth.cli import add_auth_commands

    add_auth_commands(commands, lambda args: _settings(args).data_dir / "auth.sqlite3", _storage_options)
    return parser


def _storage_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, help="folder of the embedded store (default ./data)")
    parser.add_argument("--storage", help="storage URL: sqlite:///path/file.sqlite3 or mongodb://...")


def _settings(args: argparse.Namespace, **extra: object) -> Settings:
    return Settings.from_env(data_dir=args.data_dir, storage_url=args.storage, **extra)


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    base_url = args.base_url or f"http://{args.host}:{args.port}/fhir"
    if args.no_auth and not _is_loopback(args.host):
        console.print("[red]--no-auth is only allowed on a loopback address (127.0.0.1, ::1)[/red]")
        sys.exit(2)
    overrides: dict[str, object] = {"base_url": base_url}
    if args.no_auth:
        overrides["auth"] = False
    if args.demo:
        overrides["demo"] = True
    settings = _settings(args, **overrides)
    # Workers are separate processes: pass the settings through the environment to the app factory.
    os.environ.update(_settings_env(settings))
    console.print(f"FHIR base: {base_url}  (store: {settings.storage_url or settings.sqlite_path})")
    uvicorn.run(
        "fhir_server.app:server_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,  # URLs carry search parameters, which can be patient data
    )


def _settings_env(settings: Settings) -> dict[str, str]:
    env = {
        "FHIR_DATA_DIR": str(settings.data_dir),
        "FHIR_BASE_URL": settings.base_url or "",
        "FHIR_AUTH": "on" if settings.auth else "off",
        "FHIR_DEMO": "1" if settings.demo else "",
        "FHIR_SQLITE_SYNCHRONOUS": settings.sqlite_synchronous,
    }
    if settings.storage_url:
        env["FHIR_STORAGE_URL"] = settings.storage_url
    return env


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _import(args: argparse.Namespace) -> None:
    failed = asyncio.run(_import_files(_settings(args), args.files, args.workers))
    sys.exit(1 if failed else 0)


async def _import_files(settings: Settings, files: list[Path], workers: int) -> int:
    from fhir_server.app import make_store
    from fhir_server.importer import import_resources, read_file

    store = make_store(settings)
    await store.open()
    gc.collect()
    gc.freeze()  # what is loaded by now lives on: the collector need not walk it again and again
    failed = 0
    try:
        for path in files:
            if not path.exists():
                console.print(f"[red]{path}: no such file[/red]")
                failed += 1
                continue
            total = _count_resources(path)
            with _progress() as progress:
                task = progress.add_task(path.name, total=total)

                def advance(done: int, task: TaskID = task) -> None:
                    progress.advance(task, done)

                report = await import_resources(
                    store, read_file(path), base_url=settings.base_url, progress=advance, workers=workers
                )
            console.print(f"{path.name}: {report.written} written, {report.failed} failed")
            for problem in report.errors:
                console.print(f"  [yellow]{problem}[/yellow]")
            failed += report.failed
    finally:
        await store.close()
    return failed


def _reindex(args: argparse.Namespace) -> None:
    extra = {"base_url": args.base_url.rstrip("/")} if args.base_url else {}
    asyncio.run(_reindex_store(_settings(args, **extra)))


async def _reindex_store(settings: Settings) -> int:
    """Every current resource's entries made again by this version's extraction. The server may
    keep running meanwhile: each batch is one write, and no version changes."""
    from fhir_server.app import make_store
    from fhir_server.indexing.entries import INDEX_VERSION
    from fhir_server.rest.writes import stored_index

    store = make_store(settings)
    await store.open()
    try:
        before, total = await store.index_version(), (await store.stats()).resources
        with _progress() as progress:
            task = progress.add_task(f"reindex (index version {before} -> {INDEX_VERSION})", total=total)
            index_of = partial(stored_index, own_base=settings.base_url)
            done = await store.reindex(index_of, progress=lambda n: progress.advance(task, n))
        console.print(f"{done} resources reindexed; the index is at version {INDEX_VERSION}")
        if not settings.base_url:
            console.print(
                "(no --base-url or FHIR_BASE_URL: references to this server's base were indexed as written)"
            )
        return done
    finally:
        await store.close()


def _count_resources(path: Path) -> int | None:
    """Lines of an NDJSON file (cheap); None (unknown total) for other files."""
    if path.suffix != ".ndjson":
        return None
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


if __name__ == "__main__":
    main()
