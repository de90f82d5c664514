"""The Python client against the real service and a real database: every event tracked
arrives exactly once, from threads and from asyncio, through the service going away and
coming back, through a storm of 503s, across a fork, and shutdown stays bounded when the
service hangs.

Exactly once is checked in the database: one row per event id the client handed out.
Timings are recorded in the reliability report printed at the end of the run.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import random
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from analytics_client import AnalyticsClient, AsyncAnalyticsClient, Options
from analytics_client import events as client_events
from analytics_client.events import Event
from analytics_ingestion.bench import free_port
from analytics_ingestion.catalog import load_catalog
from analytics_ingestion.samples import event_object
from tests.integration.conftest import query, running_service
from tests.integration.test_faults import service_process

WRITE_KEY = "client-test-write-key-0123456789"


def catalog_event(rng: random.Random) -> Event:
    """An event of a random catalog type, as a typed helper, with realistic values."""
    event_type = rng.choice(load_catalog().types)
    fields = event_object(event_type, rng)
    helper = client_events.EVENT_TYPES_BY_NAME[fields.pop("type")]
    return helper(**fields)


async def copies_by_event_id(database: str) -> dict[str, int]:
    rows = await query(
        database, "SELECT event_id::text AS id, count(*) AS copies FROM analytics_events GROUP BY 1"
    )
    return {row["id"]: row["copies"] for row in rows}


async def assert_exactly_once(database: str, event_ids: list[str | None]) -> None:
    assert None not in event_ids
    assert len(set(event_ids)) == len(event_ids)
    copies = await copies_by_event_id(database)
    assert {event_id: copies.get(str(event_id), 0) for event_id in event_ids} == dict.fromkeys(
        event_ids, 1
    )
    assert len(copies) == len(event_ids)  # nothing else arrived either


async def test_threads_and_asyncio_deliver_every_event_exactly_once(
    timescale_database: str, reliability: dict[str, Any]
) -> None:
    started = time.monotonic()
    options = Options(write_key=WRITE_KEY, max_batch_events=100, flush_interval=0.2)
    with running_service(timescale_database, WRITE_KEYS=WRITE_KEY) as service:
        client = AnalyticsClient(service.url, options)
        per_thread: list[list[str | None]] = [[] for _ in range(4)]

        def work(number: int) -> None:
            rng = random.Random(number)
            for index in range(300):
                if index % 3:
                    result = client.track(catalog_event(rng))
                else:
                    result = client.track_flat(
                        "TaskCreated", {"task_id": uuid.uuid4()}, user_id=uuid.uuid4()
                    )
                assert result, result
                per_thread[number].append(result.event_id)

        def threads() -> None:
            workers = [threading.Thread(target=work, args=(n,)) for n in range(4)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()

        await asyncio.to_thread(threads)
        threaded_report = await asyncio.to_thread(client.shutdown, 30)
        threaded = client.counters()

        async_client = AsyncAnalyticsClient(service.url, options)

        async def task(number: int) -> list[str | None]:
            rng = random.Random(100 + number)
            ids = []
            for _ in range(300):
                ids.append(async_client.track(catalog_event(rng)).event_id)
                if len(ids) % 50 == 0:
                    await asyncio.sleep(0)  # let the sender run between bursts
            return ids

        per_task = await asyncio.gather(*(task(n) for n in range(4)))
        async_report = await async_client.shutdown(30)
        in_asyncio = async_client.counters()
    assert (threaded_report.pending, async_report.pending) == (0, 0)
    assert (threaded.tracked, threaded.delivered, threaded.duplicates) == (1200, 1200, 0)
    assert (in_asyncio.tracked, in_asyncio.delivered, in_asyncio.duplicates) == (1200, 1200, 0)
    all_ids = [i for ids in per_thread for i in ids] + [i for ids in per_task for i in ids]
    await assert_exactly_once(timescale_database, all_ids)
    stored_types = await query(
        timescale_database, "SELECT DISTINCT event_type FROM analytics_events"
    )
    assert len(stored_types) > 30  # the typed helpers of nearly every catalog type, accepted
    reliability["client: threads and asyncio"] = {
        "events": len(all_ids),
        "stored once": len(all_ids),
        "seconds": round(time.monotonic() - started, 1),
    }


EXIT_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys, uuid
    from analytics_client import AnalyticsClient, AsyncAnalyticsClient, Options
    from analytics_client.events import TaskCreated

    # Nothing is sent before the exit: the batches would wait a minute for company.
    options = Options(flush_interval=60)

    def event():
        return TaskCreated(task_id=uuid.uuid4(), user_id=uuid.uuid4(), command="exit")

    threaded = AnalyticsClient(sys.argv[1], options)
    ids = [threaded.track(event()).event_id for _ in range(20)]
    in_asyncio = AsyncAnalyticsClient(sys.argv[1], options)

    async def main():
        return [in_asyncio.track(event()).event_id for _ in range(20)]

    ids += asyncio.run(main())  # the loop ends with its events still queued
    print(json.dumps(ids))
    # No flush, no shutdown: the interpreter exits here.
    """
)


async def test_events_still_queued_at_interpreter_exit_are_delivered(
    timescale_database: str, tmp_path: Path
) -> None:
    script = tmp_path / "exit.py"
    script.write_text(EXIT_SCRIPT)
    with running_service(timescale_database) as service:
        completed = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, str(script), service.url],
            capture_output=True,
            timeout=60,
            check=False,
        )
    assert completed.returncode == 0, completed.stderr.decode()
    await assert_exactly_once(timescale_database, json.loads(completed.stdout))


class Producer:
    """Tracks events from a thread until stopped, timing every `track` call."""

    def __init__(self, client: AnalyticsClient, interval: float = 0.002) -> None:
        self.client = client
        self.interval = interval
        self.ids: list[str | None] = []
        self.refused = 0
        self.longest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        rng = random.Random(7)
        while not self._stop.is_set():
            event = catalog_event(rng)
            before = time.perf_counter()
            result = self.client.track(event)
            self.longest = max(self.longest, time.perf_counter() - before)
            if result:
                self.ids.append(result.event_id)
            else:
                self.refused += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> Producer:
        self._thread.start()
        return self

    def __exit__(self, *exception: object) -> None:
        self._stop.set()
        self._thread.join()


async def test_the_service_stopped_and_started_again_loses_and_duplicates_nothing(
    timescale_database: str, reliability: dict[str, Any]
) -> None:
    port = free_port()
    client = AnalyticsClient(
        f"http://127.0.0.1:{port}",
        Options(flush_interval=0.2, max_batch_events=50, backoff_cap=1.0),
    )
    started = time.monotonic()
    with Producer(client) as producer:
        with service_process(timescale_database, port):
            await asyncio.sleep(1.5)
            sent_before = client.counters().delivered
        stopped_at, tracked_at_stop = time.monotonic(), len(producer.ids)  # killed (SIGKILL)
        await asyncio.sleep(3.0)
        with service_process(timescale_database, port):
            restarted_after = time.monotonic() - stopped_at
            tracked_while_away = len(producer.ids) - tracked_at_stop
            await asyncio.sleep(1.5)
            producer.__exit__()
            report = await asyncio.to_thread(client.flush, 30)
            counters = client.counters()
    client.shutdown(1)
    assert sent_before > 0
    assert report.pending == 0
    assert producer.refused == 0
    await assert_exactly_once(timescale_database, producer.ids)
    assert counters.retries > 0  # it did meet the service away
    assert producer.longest < 0.05  # track never waited for the service
    reliability["client: service stopped and started"] = {
        "events": len(producer.ids),
        "stored once": len(producer.ids),
        "tracked while it was away": tracked_while_away,
        "seconds away": round(restarted_after, 1),
        "retries": counters.retries,
        "duplicates answered": counters.duplicates,
        "longest track (ms)": round(producer.longest * 1000, 2),
        "seconds": round(time.monotonic() - started, 1),
    }


@dataclass
class StormProxy:
    """In front of the service: answers 503 with `Retry-After: 1` until `storm_until`, then
    forwards. Records when each request came and when each 503 went out."""

    upstream_port: int
    storm_until: float = 0.0
    arrivals: list[float] = field(default_factory=list)
    storm_answers: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                arrived = time.monotonic()
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with proxy.lock:
                    proxy.arrivals.append(arrived)
                if arrived < proxy.storm_until:
                    self.answer(503, {"retry-after": "1"}, b'{"error":"storm"}')
                    with proxy.lock:
                        proxy.storm_answers.append(time.monotonic())
                    return
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=30)
                names = ("Content-Type", "Content-Encoding", "Idempotency-Key", "Authorization")
                headers = {name: self.headers[name] for name in names if self.headers[name]}
                upstream.request("POST", self.path, body=body, headers=headers)
                response = upstream.getresponse()
                self.answer(response.status, {}, response.read())
                upstream.close()

            def answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in {**headers, "content-length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    @contextmanager
    def running(self) -> Iterator[str]:
        server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()


@pytest.mark.parametrize(
    "twin", [pytest.param("threaded", id="threaded"), pytest.param("asyncio", id="asyncio")]
)
async def test_a_503_storm_with_retry_after_is_waited_out(
    timescale_database: str, reliability: dict[str, Any], twin: str
) -> None:
    # Backoff alone would come back within 0.05 s: only Retry-After explains longer waits.
    options = Options(flush_interval=0.1, max_batch_events=20, backoff_base=0.05, backoff_cap=0.05)
    started = time.monotonic()
    with running_service(timescale_database) as service:
        proxy = StormProxy(int(service.url.rsplit(":", 1)[1]))
        with proxy.running() as proxy_url:
            proxy.storm_until = time.monotonic() + 4.0
            ids: list[str | None] = []
            if twin == "threaded":
                client = AnalyticsClient(proxy_url, options)
                for number in range(200):
                    ids.append(client.track(catalog_event(random.Random(number))).event_id)
                    if number % 20 == 0:
                        await asyncio.sleep(0.1)  # tracked all through the storm
                report = await asyncio.to_thread(client.shutdown, 30)
            else:
                async_client = AsyncAnalyticsClient(proxy_url, options)
                for number in range(200):
                    ids.append(async_client.track(catalog_event(random.Random(number))).event_id)
                    if number % 20 == 0:
                        await asyncio.sleep(0.1)
                report = await async_client.shutdown(30)
            recovered_after = time.monotonic() - proxy.storm_until
    assert (report.delivered, report.pending) == (200, 0)
    await assert_exactly_once(timescale_database, ids)
    assert len(proxy.storm_answers) >= 3
    # No request came sooner than the 503 before it said.
    for answered in proxy.storm_answers:
        later = [arrival for arrival in proxy.arrivals if arrival > answered]
        assert later and later[0] >= answered + 1.0, (answered, later[:1])
    reliability[f"client: 503 storm ({twin})"] = {
        "503 answers": len(proxy.storm_answers),
        "requests": len(proxy.arrivals),
        "shortest wait after a 503 (s)": round(
            min(min(a for a in proxy.arrivals if a > t) - t for t in proxy.storm_answers), 3
        ),
        "delivered after the storm within (s)": round(recovered_after, 1),
        "stored once": len(ids),
        "seconds": round(time.monotonic() - started, 1),
    }


FORK_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, uuid
    from analytics_client import AnalyticsClient, Options
    from analytics_client.events import TaskCreated

    client = AnalyticsClient(sys.argv[1], Options(flush_interval=0.05, max_batch_events=10))

    def track(count, command):
        return [
            client.track(TaskCreated(task_id=uuid.uuid4(), user_id=uuid.uuid4(), command=command)).event_id
            for _ in range(count)
        ]

    before = track(40, "before the fork")
    client.flush(10)
    queued = track(30, "queued at the fork")  # some still queued or in flight at the fork
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        ids = track(25, "in the child")
        report = client.flush(10)
        counters = client.counters()
        result = {"ids": ids, "delivered": report.delivered, "tracked": counters.tracked,
                  "sent": counters.delivered}
        os.write(write_end, json.dumps(result).encode())
        os._exit(0)
    os.close(write_end)
    ids = track(25, "in the parent after the fork")
    report = client.flush(10)
    with os.fdopen(read_end) as pipe:
        child = json.loads(pipe.read())
    _, status = os.waitpid(pid, 0)
    counters = client.counters()
    print(json.dumps({
        "parent": {"ids": before + queued + ids, "tracked": counters.tracked,
                   "sent": counters.delivered, "pending": report.pending},
        "child": child,
        "child_status": status,
    }))
    client.shutdown(5)
    """
)


async def test_a_forked_child_tracks_and_delivers_and_so_does_its_parent(
    timescale_database: str, tmp_path: Path, reliability: dict[str, Any]
) -> None:
    script = tmp_path / "fork.py"
    script.write_text(FORK_SCRIPT)
    started = time.monotonic()
    with running_service(timescale_database) as service:
        completed = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, str(script), service.url],
            capture_output=True,
            timeout=120,
            check=False,
        )
    assert completed.returncode == 0, completed.stderr.decode()
    result = json.loads(completed.stdout)
    parent, child = result["parent"], result["child"]
    assert result["child_status"] == 0
    # The child started clean: it sent its own 25 events, none of its parent's.
    assert (child["tracked"], child["sent"], child["delivered"]) == (25, 25, 25)
    assert (parent["tracked"], parent["sent"], parent["pending"]) == (95, 95, 0)
    await assert_exactly_once(timescale_database, parent["ids"] + child["ids"])
    reliability["client: fork"] = {
        "parent events": len(parent["ids"]),
        "child events": len(child["ids"]),
        "stored once": len(parent["ids"]) + len(child["ids"]),
        "seconds": round(time.monotonic() - started, 1),
    }


@contextmanager
def hanging_server() -> Iterator[str]:
    """Accepts connections (the kernel does, into the backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize(
    "twin", [pytest.param("threaded", id="threaded"), pytest.param("asyncio", id="asyncio")]
)
async def test_shutdown_returns_in_time_while_the_service_hangs(
    tmp_path: Path, reliability: dict[str, Any], twin: str
) -> None:
    with hanging_server() as url:
        # The default HTTP timeout (10 s) is longer than shutdown's: shutdown bounds it.
        if twin == "threaded":
            client = AnalyticsClient(url)
            for number in range(50):
                client.track(catalog_event(random.Random(number)))
            began = time.monotonic()
            report = await asyncio.to_thread(client.shutdown, 2)
        else:
            async_client = AsyncAnalyticsClient(url)
            for number in range(50):
                async_client.track(catalog_event(random.Random(number)))
            began = time.monotonic()
            report = await async_client.shutdown(2)
        took = time.monotonic() - began
    assert took < 3.0
    assert (report.delivered, report.pending, report.lost) == (0, 50, 50)
    reliability[f"client: shutdown(timeout=2), service hanging ({twin})"] = {
        "returned after (s)": round(took, 2),
        "pending reported": report.pending,
    }


async def test_the_spool_keeps_undelivered_batches_across_a_restart(
    timescale_database: str, tmp_path: Path
) -> None:
    options = Options(spool_directory=tmp_path / "spool")
    with hanging_server() as url:
        first = AnalyticsClient(url, options)
        ids = [first.track(catalog_event(random.Random(n))).event_id for n in range(30)]
        report = await asyncio.to_thread(first.shutdown, 1)
    assert (report.spooled, report.pending) == (30, 30)
    with running_service(timescale_database) as service:
        # The next start of the application, the service there this time.
        second = AnalyticsClient(service.url, options)
        ids.append(second.track(catalog_event(random.Random(99))).event_id)
        report = await asyncio.to_thread(second.shutdown, 30)
    assert report.delivered == 31
    await assert_exactly_once(timescale_database, ids)
    assert list((tmp_path / "spool").iterdir()) == []
