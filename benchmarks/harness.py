"""What the benchmarks share: servers in subprocesses, wrk or an httpx load, timing, statistics.

Every load targets 127.0.0.1 only and is bounded in time and in request count.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
RESULTS = BENCH / "results"
HOST = "127.0.0.1"  # never anything else
MAX_REQUESTS = 2_000_000  # a hard cap on any one load run

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


class Server:
    """A uvicorn server in its own process group; `with Server(...) as s:` starts and stops it."""

    def __init__(self, name: str, argv: Sequence[str], port: int, log: Path) -> None:
        self.name, self.argv, self.port, self.log = name, list(argv), port, log
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as sink:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=subprocess_env(),
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # the group we started: uvicorn and its workers
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def _wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log}")
            try:
                if get(self.port, "/")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not start within {timeout:.0f} s; see {self.log}")


def our_server(data_dir: Path, port: int, workers: int, log: Path) -> Server:
    argv = [
        sys.executable,
        "-m",
        "fhir_server.cli",
        "serve",
        "--no-auth",
        "--host",
        HOST,
        "--port",
        str(port),
    ]
    argv += ["--data-dir", str(data_dir), "--workers", str(workers)]
    return Server("fhir-server", argv, port, log)


def bare_server(port: int, workers: int, log: Path) -> Server:
    argv = [sys.executable, "-m", "uvicorn", "bare_app:app", "--app-dir", str(BENCH), "--host", HOST]
    argv += ["--port", str(port), "--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    return Server("bare FastAPI", argv, port, log)


def import_ndjson(path: Path, data_dir: Path) -> float:
    """`fhir-server import` the file into data_dir (progress bar on the terminal); seconds taken."""
    argv = [sys.executable, "-m", "fhir_server.cli", "import", "--data-dir", str(data_dir), str(path)]
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=subprocess_env(), check=False)
    if done.returncode != 0:
        raise RuntimeError(f"fhir-server import {path.name} failed with exit code {done.returncode}")
    return time.perf_counter() - started


# --- single requests ----------------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1 (little client overhead, for latencies)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection(HOST, port, timeout=120)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Accept": "application/fhir+json"}
        if body is not None:
            headers["Content-Type"] = "application/fhir+json"
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        return response.status, response.read()

    def timed(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes, float]:
        """Status, body and milliseconds taken."""
        started = time.perf_counter()
        status, data = self.request(method, path, body)
        return status, data, (time.perf_counter() - started) * 1000

    def close(self) -> None:
        self.conn.close()


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = Connection(port)
    try:
        return conn.request("GET", path)
    finally:
        conn.close()


# --- statistics ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --- sustained load -----------------------------------------------------------------------------


@dataclass
class LoadResult:
    tool: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


WRK_SCRIPT = """
local paths = {%(paths)s}
local counter = 0
function setup(thread) thread:set("offset", math.random(#paths)) end
function request()
  counter = counter + 1
  return wrk.format("GET", paths[(offset + counter) %% #paths + 1], {["Accept"] = "application/fhir+json"})
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, ' ..
    '"errors": %%d}\\n', summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def run_load(port: int, paths: Sequence[str], *, seconds: float, connections: int = 8) -> LoadResult:
    """Keep `connections` connections busy reading `paths` for `seconds`: wrk if installed, else httpx."""
    if shutil.which("wrk"):
        return _wrk(port, paths, seconds, connections)
    return asyncio.run(_httpx_load(port, paths, seconds, connections))


def _wrk(port: int, paths: Sequence[str], seconds: float, connections: int) -> LoadResult:
    lua = WRK_SCRIPT % {"paths": ",".join(json.dumps(p) for p in paths)}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    try:
        threads = str(min(2, connections))
        argv = ["wrk", "-t", threads, "-c", str(connections), "-d", f"{seconds:.0f}s", "--timeout", "5s"]
        argv += ["-s", script.name, f"http://{HOST}:{port}"]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    finally:
        os.unlink(script.name)
    line = next(line for line in out.splitlines() if line.startswith("WRKJSON "))
    figures: dict[str, Any] = json.loads(line.removeprefix("WRKJSON "))
    return LoadResult(
        "wrk",
        figures["requests"],
        figures["duration_us"] / 1e6,
        figures["p50_us"] / 1000,
        figures["p99_us"] / 1000,
        figures["errors"],
    )


async def _httpx_load(port: int, paths: Sequence[str], seconds: float, connections: int) -> LoadResult:
    import httpx

    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)

    async def worker(client: httpx.AsyncClient, offset: int) -> None:
        nonlocal errors
        n = offset
        while time.perf_counter() < deadline and len(latencies) < MAX_REQUESTS:
            started = time.perf_counter()
            response = await client.get(paths[n % len(paths)])
            latencies.append((time.perf_counter() - started) * 1000)
            errors += response.status_code != 200
            n += 1

    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", limits=limits) as client:
        await asyncio.gather(*(worker(client, i * 997) for i in range(connections)))
    elapsed = time.perf_counter() - started
    return LoadResult(
        "httpx", len(latencies), elapsed, percentile(latencies, 50), percentile(latencies, 99), errors
    )


def runtime() -> str:
    """Which uvicorn event loop and HTTP parser the servers will get (uvicorn picks the fastest)."""
    import importlib.util

    import uvicorn

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    parser = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"uvicorn {uvicorn.__version__}, loop {loop}, http {parser}, {os.cpu_count()} CPUs"
