"""`AsyncAnalyticsClient`, for asyncio code: the same options and the same `track`, with the
sender as a task of the running loop and `flush` and `shutdown` to be awaited.

`track` is a plain method: it queues and returns, it does not await. The sender task starts
with the first event tracked inside a running loop. Call `await client.shutdown()` where the
application stops (a lifespan handler): at interpreter exit the loop is gone, and the client
can only send what is left with blocking requests, for at most `exit_timeout` seconds.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import threading
import time

from analytics_client import settling
from analytics_client.async_transport import AsyncHttpTransport
from analytics_client.batching import ClosedBatch, QueuedEvent, seal_events, split
from analytics_client.client import AnalyticsClient
from analytics_client.core import ClientBase
from analytics_client.options import Options
from analytics_client.outcome import Outcome, interpret, network_failure
from analytics_client.pipeline import (
    Close,
    Expire,
    LoadFromSpool,
    Scheduled,
    Send,
    Settlement,
    SplitInTwo,
    Step,
    Wait,
)
from analytics_client.reporting import FailureCallback, log
from analytics_client.results import FlushReport
from analytics_client.transport import AsyncTransport, batch_request

DEFAULT_TIMEOUT = 10.0  # of flush and shutdown
SPOOL_SCAN_INTERVAL = 5.0
# Smaller batches are sealed in the loop; larger ones in a worker thread, so that compressing
# them does not hold the loop.
SEAL_IN_LOOP_BYTES = 64 * 1024


class AsyncAnalyticsClient(ClientBase):
    """Tracks events from the loop's code; sends them in batches from one task."""

    def __init__(
        self,
        endpoint: str,
        options: Options | None = None,
        *,
        transport: AsyncTransport | None = None,
        on_failure: FailureCallback | None = None,
    ) -> None:
        super().__init__(endpoint, options, on_failure=on_failure)
        self._given_transport = transport is not None
        self._transport: AsyncTransport = transport or AsyncHttpTransport(endpoint)

    def _reset_sender(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._progress: asyncio.Event | None = None  # set, and replaced, at each settlement
        self._stopping = False
        self._closed = False
        self._shutdown_deadline: float | None = None
        self._reporting = False  # as in the threaded client: flush waits for the callback
        self._spool_watch = settling.SpoolWatch(self._spool, SPOOL_SCAN_INTERVAL)

    # --- flush and shutdown -------------------------------------------------------------

    # The same signatures as the threaded client's; shutdown's timeout is its own deadline (a
    # request still in progress then is cancelled, what is left spooled), not an outer bound.
    async def flush(self, timeout: float = DEFAULT_TIMEOUT) -> FlushReport:  # noqa: ASYNC109
        """Send every event tracked so far, waiting at most `timeout` seconds."""
        self._check_process()
        deadline = time.monotonic() + timeout
        with self._lock:
            before = self._pipeline.totals()
            target = self._pipeline.request_flush()
        if asyncio.current_task() is not self._task:  # not from the sender's own callback
            await self._wait_for(target, deadline)
        with self._lock:
            return self._pipeline.report_since(before)

    async def shutdown(self, timeout: float = DEFAULT_TIMEOUT) -> FlushReport:  # noqa: ASYNC109
        """Flush for at most `timeout` seconds, then stop: a request in progress is abandoned,
        what is left goes to the spool (or is counted as lost). Its `pending` are the events
        still undelivered then, now spooled or lost."""
        self._check_process()
        deadline = time.monotonic() + timeout
        with self._lock:
            before = self._pipeline.totals()
            if self._closed:
                return self._pipeline.report_since(before)
            self._closed = True
            self._shutdown_deadline = deadline
            target = self._pipeline.begin_shutdown()
        task = self._task
        if task is not asyncio.current_task():
            await self._wait_for(target, deadline)
            self._stopping = True
            if task is not None and not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=max(0.0, deadline - time.monotonic()) + 0.25)
        self._stopping = True
        with self._lock:
            leftovers = self._pipeline.take_leftovers()
        disposal = await asyncio.to_thread(settling.dispose, leftovers, self._spool, self.options)
        with self._lock:
            self._pipeline.settle_leftovers(disposal.spooled, disposal.lost)
        settling.report_failures(disposal.failures, self._on_failure, self._failure_log)
        with contextlib.suppress(Exception):
            await self._transport.close()
        atexit.unregister(self._at_exit)
        with self._lock:
            report = self._pipeline.report_since(before)
        return dataclasses.replace(report, pending=disposal.spooled + disposal.lost)

    async def __aenter__(self) -> AsyncAnalyticsClient:
        return self

    async def __aexit__(self, *exception: object) -> None:
        await self.shutdown()

    async def _wait_for(self, target: int, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._pipeline.pending and not self._sender_running(loop):
                self._start_sender(loop)
        self._wake()
        while True:
            with self._lock:
                if self._pipeline.flushed(target) and not self._reporting:
                    return
            remaining = deadline - time.monotonic()
            progress = self._progress
            if remaining <= 0 or progress is None:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await progress.wait()

    def _at_exit(self) -> None:
        """The loop is gone: send what is left with blocking requests, for a bounded time."""
        try:
            with self._lock:
                if self._closed or not self._pipeline.pending:
                    return
                self._closed = True
                pipeline = self._pipeline
            if self._given_transport:
                # A transport of the caller's cannot be driven without its loop: what is left
                # goes to the spool, or is counted as lost.
                with self._lock:
                    leftovers = pipeline.take_leftovers()
                disposal = settling.dispose(leftovers, self._spool, self.options)
                with self._lock:
                    pipeline.settle_leftovers(disposal.spooled, disposal.lost)
                settling.report_failures(disposal.failures, self._on_failure, self._failure_log)
                return
            fallback = AnalyticsClient(self.endpoint, self.options, on_failure=self._on_failure)
            fallback._send_in_this_thread(pipeline, self.options.exit_timeout)
        except Exception:
            log.exception("the analytics client could not flush at exit")

    # --- the sender ---------------------------------------------------------------------

    def _after_offer(self, wake: bool) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None  # another thread, or no loop yet: the next call in the loop starts it
        if loop is not None and not self._sender_running(loop):
            self._start_sender(loop)
        elif wake:
            self._wake()

    def _sender_running(self, loop: asyncio.AbstractEventLoop) -> bool:
        return self._loop is loop and self._task is not None and not self._task.done()

    def _start_sender(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._stopping:
            return
        # A new loop (asyncio.run again, a test's own loop): the old one's task is gone.
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._wakeup = asyncio.Event()
        self._progress = asyncio.Event()
        self._task = loop.create_task(self._run(), name="analytics-client-sender")
        atexit.unregister(self._at_exit)
        atexit.register(self._at_exit)

    def _wake(self) -> None:
        loop, wakeup = self._loop, self._wakeup
        if loop is None or wakeup is None:
            return
        if threading.get_ident() == self._loop_thread:
            wakeup.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(wakeup.set)

    def _settled(self) -> None:
        progress, self._progress = self._progress, asyncio.Event()
        if progress is not None:
            progress.set()

    async def _run(self) -> None:
        watch = self._spool_watch
        wakeup = self._wakeup
        assert wakeup is not None
        while not self._stopping:
            try:
                wakeup.clear()
                with self._lock:
                    now = time.monotonic()
                    step = self._pipeline.next_step(now, spool_waiting=watch.waiting(now))
                if isinstance(step, LoadFromSpool):
                    await self._load_from_spool(watch, now)
                elif not isinstance(step, Wait):
                    await self._perform(step)
                else:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(watch.wait_time(now, step.seconds)):
                            await wakeup.wait()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the analytics sender failed; it carries on")
                await asyncio.sleep(1.0)  # not a busy loop, should it fail again

    async def _load_from_spool(self, watch: settling.SpoolWatch, now: float) -> None:
        spooled = None
        if self._spool is not None:
            spooled = await asyncio.to_thread(settling.load_from_spool, self._spool)
        if spooled is None:
            watch.found_nothing(now)
            return
        with self._lock:
            self._pipeline.add_from_spool(spooled, time.monotonic())

    async def _perform(self, step: Step) -> None:
        if isinstance(step, Close):
            batch = await self._seal(step.key, step.events)
            with self._lock:
                self._pipeline.add_closed(batch, time.monotonic())
        elif isinstance(step, SplitInTwo):
            halves = await asyncio.to_thread(split, step.scheduled.batch)
            with self._lock:
                self._pipeline.replace_split(step.scheduled, halves)
        elif isinstance(step, Expire):
            if step.scheduled.spooled is not None:
                # Given back: not taken again before the events queued since are served.
                self._spool_watch.found_nothing(time.monotonic())
            expiry = await asyncio.to_thread(settling.spool_expired, step.scheduled, self._spool)
            with self._lock:
                settlement = self._pipeline.settle_expired(
                    step.scheduled, spooled=expiry.spooled, loss=expiry.loss, reason=expiry.reason
                )
            await self._after_settlement(settlement)
        elif isinstance(step, Send):
            outcome = await self._send(step.scheduled)
            with self._lock:
                settlement = self._pipeline.settle(step.scheduled, outcome, time.monotonic())
            await self._after_settlement(settlement)

    async def _seal(self, key: str, events: list[QueuedEvent]) -> ClosedBatch:
        compress = self.options.compress
        if sum(len(event.payload) for event in events) < SEAL_IN_LOOP_BYTES:
            return seal_events(key, events, compress=compress)
        return await asyncio.to_thread(seal_events, key, events, compress=compress)

    async def _after_settlement(self, settlement: Settlement) -> None:
        self._reporting = True
        try:
            if settlement.spool_done or settlement.spool_give_back:
                await asyncio.to_thread(settling.update_spool, settlement, self._spool)
            settling.report_failures(settlement.failures, self._on_failure, self._failure_log)
        finally:
            self._reporting = False
            self._settled()

    async def _send(self, scheduled: Scheduled) -> Outcome:
        timeout = self.options.http_timeout
        if self._shutdown_deadline is not None:
            timeout = max(0.001, min(timeout, self._shutdown_deadline - time.monotonic()))
        request = batch_request(scheduled.batch, self.options)
        try:
            response = await self._transport.send(request, timeout)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a transport of the caller's may raise anything
            return network_failure(error)
        return interpret(
            response.status, response.headers, response.body, len(scheduled.batch), time.time()
        )
