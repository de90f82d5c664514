"""`analytics-ingestion bench`: the write path measured against the database's own ceiling.

Each run, on a fresh database with this project's schema and the contract's full index set:

1. ceiling: the same rows loaded with binary COPY straight into `analytics_events` from 1, 2
   and 4 connections (5,000-row transactions); the best rows/s is the ceiling. Also: the
   same from 2 connections without the unique index exactly once needs, to show its cost
   (first in odd runs, last in even ones);
2. end to end: the service (a separate process) under `wrk` posting 100-event shape-A
   batches rotated from pre-generated bodies of every catalog type; committed events/s are
   counted in the database; p50/p99 latency from wrk. Like each COPY phase, it starts from an
   empty table just checkpointed;
3. half load: p50/p99 at a fixed offered rate of half the requests/s found in 2;
4. cost: the service's CPU time per 1,000 events and its peak resident memory.

With `--without-gin` the GIN index on `data` is dropped first. Figures are medians of the
runs. wrk (a C load generator) keeps the load's own CPU well below the service's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import orjson

from analytics_ingestion import migrations, samples, wire
from analytics_ingestion.embedded import EmbeddedPostgres
from analytics_ingestion.store import IDENTITY_INDEX, WRITE_SESSION_SETTINGS, copy_events

BATCH = 100
COPY_ROWS = 5_000
CEILING_ROWS = 200_000
BODIES = 200


@dataclass
class Figures:
    ceiling_rows_per_s: dict[int, float]
    ceiling: float
    end_to_end_events_per_s: float
    ratio: float
    p50_ms: float
    p99_ms: float
    half_load_rate_events_per_s: float
    half_load_p50_ms: float
    half_load_p99_ms: float
    service_cpu_ms_per_1000_events: float
    service_peak_rss_mb: float
    average_event_bytes: float
    copy_without_identity_index_rows_per_s: float = 0.0
    events_per_flush: float = 0.0


# --- the database ----------------------------------------------------------------------------


@contextmanager
def database_server(url: str | None) -> Iterator[str]:
    """The given server, or a private durable one (fsync on) for the length of the bench."""
    if url:
        yield url
        return
    root = Path(tempfile.mkdtemp(prefix="analytics-bench-", dir="/tmp"))
    root.chmod(0o755)
    server = EmbeddedPostgres(root / "postgres", settings={"max_connections": "100"})
    server.start()
    try:
        yield server.url()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _with_database(url: str, name: str) -> str:
    if "?" in url:
        base, query = url.split("?", 1)
        return f"{base.rsplit('/', 1)[0]}/{name}?{query}"
    return f"{url.rsplit('/', 1)[0]}/{name}"


async def fresh_database(admin_url: str, name: str, without_gin: bool) -> str:
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = _with_database(admin_url, name)
    connection = await asyncpg.connect(url)
    try:
        await migrations.migrate(connection, "all", report=lambda _: None)
        if without_gin:
            await connection.execute("DROP INDEX idx_analytics_events_data")
    finally:
        await connection.close()
    return url


async def truncate(url: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("TRUNCATE analytics_events, analytics_dead_letters")
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()


async def count_events(url: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        return int(await connection.fetchval("SELECT count(*) FROM analytics_events"))
    finally:
        await connection.close()


async def copy_ceiling(url: str, rows: list[bytes], connections: int) -> float:
    """Rows/s of binary COPY straight into the table."""
    chunks = [rows[i : i + COPY_ROWS] for i in range(0, len(rows), COPY_ROWS)]

    async def load(mine: list[list[bytes]]) -> None:
        connection = await asyncpg.connect(url, server_settings=WRITE_SESSION_SETTINGS)
        try:
            for chunk in mine:
                async with connection.transaction():
                    await copy_events(connection, chunk, with_keys=False)
        finally:
            await connection.close()

    await truncate(url)
    started = time.perf_counter()
    await asyncio.gather(*(load(chunks[n::connections]) for n in range(connections)))
    return len(rows) / (time.perf_counter() - started)


async def copy_without_identity_index(url: str, rows: list[bytes]) -> float:
    """The 2-connection ceiling without the unique index on (event_id, timestamp)."""
    connection = await asyncpg.connect(url)
    try:
        definition = await connection.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE indexname = $1", IDENTITY_INDEX
        )
        await connection.execute(f"DROP INDEX {IDENTITY_INDEX}")
        try:
            return await copy_ceiling(url, rows, 2)
        finally:
            await connection.execute("TRUNCATE analytics_events")
            await connection.execute(definition)
    finally:
        await connection.close()


# --- the service and the load ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def service(url: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    environ = {
        **os.environ,
        "DATABASE_URL": url,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "MIGRATE_ON_START": "false",
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "analytics_ingestion", "serve"],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the service did not start") from None
                time.sleep(0.1)
        yield process, base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def flush_counters(base: str) -> tuple[float, float]:
    """(transactions, rows written) so far, from the service's /metrics."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    values = dict(re.findall(r"^(analytics_flush\w+_total) (\S+)$", text, re.M))
    return float(values.get("analytics_flushes_total", 0)), float(
        values.get("analytics_flushed_rows_total", 0)
    )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


# wrk's Lua is LuaJIT: its FFI reads the monotonic clock for pacing.
_LUA_CLOCK = """local ffi = require("ffi")
ffi.cdef[[ typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
           int clock_gettime(int clock, bench_timespec *now); ]]
local now = ffi.new("bench_timespec")
local function milliseconds()
  ffi.C.clock_gettime(1, now)
  return tonumber(now.tv_sec) * 1000 + tonumber(now.tv_nsec) / 1e6
end
"""


def wrk_threads(connections: int) -> int:
    return min(2, connections)


def write_load_script(
    directory: Path, bodies: list[bytes], requests_per_s: float | None, connections: int
) -> Path:
    """A wrk script rotating `bodies`; with `requests_per_s`, it offers that rate exactly.

    At a fixed rate each wrk thread sends on an even schedule (a request every `interval` ms,
    on whichever of its connections is free), so requests neither bunch up nor fall behind the
    rate while answers take time; a request whose slot has passed goes at once."""
    lines = ["bodies = {"]
    lines += [f"[==[{body.decode()}]==]," for body in bodies]
    lines += [
        "}",
        "counter = 0",
        "request = function()",
        "  counter = counter % #bodies + 1",
        "  return wrk.format('POST', '/events/batch',"
        " {['Content-Type'] = 'application/json'}, bodies[counter])",
        "end",
    ]
    if requests_per_s is not None:
        interval_ms = wrk_threads(connections) * 1000 / requests_per_s
        lines += [
            _LUA_CLOCK,
            f"interval = {interval_ms:.6f}",
            "next_at = nil",
            "delay = function()",
            "  local now_ms = milliseconds()",
            "  next_at = next_at or now_ms",
            "  local wait = next_at - now_ms",
            "  next_at = next_at + interval",
            "  return math.max(wait, 0)",
            "end",
        ]
    script = directory / ("fixed-rate.lua" if requests_per_s is not None else "load.lua")
    script.write_text("\n".join(lines) + "\n")
    return script


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def run_wrk(script: Path, base: str, seconds: int, connections: int) -> dict[str, float]:
    result = subprocess.run(
        ["wrk", f"-t{wrk_threads(connections)}", f"-c{connections}", f"-d{seconds}s", "--latency",
         "-s", str(script), base],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return parse_wrk(result.stdout)


def parse_wrk(output: str) -> dict[str, float]:
    """p50/p99 (ms), requests/s and non-2xx answers from `wrk --latency`'s report."""
    figures = {}
    for percentile in ("50", "99"):
        match = re.search(rf"^\s+{percentile}(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if match is None:
            raise RuntimeError(f"wrk printed no {percentile}% latency:\n{output}")
        figures[f"p{percentile}_ms"] = float(match[1]) * _UNITS[match[2]]
    requests = re.search(r"Requests/sec:\s+([\d.]+)", output)
    figures["requests_per_s"] = float(requests[1]) if requests else 0.0
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    figures["non_2xx"] = float(errors[1]) if errors else 0.0
    return figures


# --- one run ---------------------------------------------------------------------------------


async def one_run(
    admin_url: str, run: int, seconds: int, connections: int, without_gin: bool, workdir: Path
) -> Figures:
    rng = random.Random(run)
    url = await fresh_database(admin_url, f"analytics_bench_{run}", without_gin)
    events = [samples.shape_a(rng=rng) for _ in range(CEILING_ROWS)]
    body = orjson.dumps(events)
    rows = wire.decode_batch(body, received_at=datetime.now(UTC)).tuples
    # The COPY without the unique index goes first in odd runs and last in even ones, so the
    # median across runs does not favour either side of the comparison.
    if run % 2:
        without_identity_index = await copy_without_identity_index(url, rows)
    ceiling = {n: await copy_ceiling(url, rows, n) for n in (1, 2, 4)}
    if not run % 2:
        without_identity_index = await copy_without_identity_index(url, rows)

    bodies = [orjson.dumps(events[i : i + BATCH]) for i in range(0, BODIES * BATCH, BATCH)]
    average_event_bytes = sum(len(b) for b in bodies) / (BODIES * BATCH)
    with service(url) as (process, base):
        warm_up = write_load_script(workdir, bodies[:10], None, connections)
        run_wrk(warm_up, base, 2, connections)
        # From the state each COPY ceiling starts from: an empty table, just checkpointed (the
        # ceilings' writes, still being flushed to disk, would otherwise slow this phase alone).
        await truncate(url)
        before_events, before_cpu = await count_events(url), cpu_seconds(process.pid)
        before_flushes, before_rows = flush_counters(base)
        started = time.monotonic()
        full = run_wrk(
            write_load_script(workdir, bodies, None, connections), base, seconds, connections
        )
        elapsed = time.monotonic() - started
        stored = await count_events(url) - before_events
        cpu = cpu_seconds(process.pid) - before_cpu
        after_flushes, after_rows = flush_counters(base)
        flushes = after_flushes - before_flushes
        half_rate = full["requests_per_s"] / 2
        paced = write_load_script(workdir, bodies, half_rate, connections)
        half = run_wrk(paced, base, seconds, connections)
        rss = peak_rss_mb(process.pid)
    end_to_end = stored / elapsed
    best = max(ceiling.values())
    return Figures(
        ceiling_rows_per_s={n: round(v) for n, v in ceiling.items()},
        ceiling=round(best),
        end_to_end_events_per_s=round(end_to_end),
        ratio=round(end_to_end / best, 3),
        p50_ms=round(full["p50_ms"], 1),
        p99_ms=round(full["p99_ms"], 1),
        half_load_rate_events_per_s=round(half["requests_per_s"] * BATCH),
        half_load_p50_ms=round(half["p50_ms"], 1),
        half_load_p99_ms=round(half["p99_ms"], 1),
        service_cpu_ms_per_1000_events=round(cpu * 1000 / stored * 1000, 1) if stored else 0.0,
        service_peak_rss_mb=round(rss, 1),
        average_event_bytes=round(average_event_bytes),
        copy_without_identity_index_rows_per_s=round(without_identity_index),
        events_per_flush=round((after_rows - before_rows) / flushes) if flushes else 0.0,
    )


def median_figures(runs: list[Figures]) -> Figures:
    def median(name: str) -> float:
        return float(statistics.median(getattr(run, name) for run in runs))

    values = {name: median(name) for name in asdict(runs[0]) if name != "ceiling_rows_per_s"}
    ceilings = {
        n: float(statistics.median(run.ceiling_rows_per_s[n] for run in runs))
        for n in runs[0].ceiling_rows_per_s
    }
    return Figures(ceiling_rows_per_s=ceilings, **values)


def render(median: Figures, runs: list[Figures], label: str) -> str:
    rows = [
        ("COPY ceiling, 1 / 2 / 4 connections (rows/s)",
         " / ".join(f"{v:,.0f}" for v in median.ceiling_rows_per_s.values())),
        ("ceiling (best, rows/s)", f"{median.ceiling:,.0f}"),
        ("COPY without the exactly-once unique index, 2 connections (rows/s)",
         f"{median.copy_without_identity_index_rows_per_s:,.0f}"),
        ("end to end (committed events/s)", f"{median.end_to_end_events_per_s:,.0f}"),
        ("end to end / ceiling", f"{median.ratio:.3f}"),
        ("latency at full load p50 / p99 (ms)", f"{median.p50_ms:.1f} / {median.p99_ms:.1f}"),
        ("half load, sent at an even rate (events/s)",
         f"{median.half_load_rate_events_per_s:,.0f}"),
        ("latency at half load p50 / p99 (ms)",
         f"{median.half_load_p50_ms:.1f} / {median.half_load_p99_ms:.1f}"),
        ("events per flush at full load (mean)", f"{median.events_per_flush:,.0f}"),
        ("service CPU per 1,000 events (ms)", f"{median.service_cpu_ms_per_1000_events:.1f}"),
        ("service peak RSS (MB)", f"{median.service_peak_rss_mb:.1f}"),
        ("average event size (bytes)", f"{median.average_event_bytes:.0f}"),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    lines = [f"{label}: median of {len(runs)} run(s); ratios per run: "
             + ", ".join(f"{run.ratio:.3f}" for run in runs)]  # fmt: skip
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="analytics-ingestion bench", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=20, help="length of each load phase")
    parser.add_argument("--connections", type=int, default=16, help="concurrent HTTP clients")
    parser.add_argument("--without-gin", action="store_true", help="drop the GIN index on data")
    parser.add_argument("--json", type=Path, default=Path("bench-results.json"))
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("analytics-ingestion bench: needs wrk (apt-get install wrk)", file=sys.stderr)
        return 2
    label = "without the GIN index" if args.without_gin else "full index set"
    results = []
    with (
        database_server(os.environ.get("DATABASE_URL")) as admin_url,
        tempfile.TemporaryDirectory() as workdir,
    ):
        for run in range(args.runs):
            figures = asyncio.run(
                one_run(
                    admin_url, run, args.seconds, args.connections, args.without_gin, Path(workdir)
                )
            )
            events_per_s = figures.end_to_end_events_per_s
            print(f"run {run + 1}: ratio {figures.ratio:.3f}, {events_per_s:,.0f} events/s")
            results.append(figures)
    median = median_figures(results)
    print(render(median, results, label))
    args.json.write_text(json.dumps(
        {"label": label, "median": asdict(median), "runs": [asdict(r) for r in results]}, indent=2
    ) + "\n")  # fmt: skip
    print(f"written to {args.json}")
    return 0
