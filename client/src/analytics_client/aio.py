"""`AsyncAnalyticsClient`, for asyncio code: the same options and the same `track`, with the
sender as a task of the running loop and `flush` and `shutdown` to be awaited.

`track` is a plain method: it queues and returns, it does not await. The sender task runs in
the loop the client is used from: the one it was made in, else the first to track or flush. It
starts with the first event; one tracked from another thread (a sync endpoint's, or
`asyncio.to_thread`) starts or wakes it there with `call_soon_threadsafe`. Events tracked from
other threads before any loop is known wait for the first call from one, or the exit flush.

Call `await client.shutdown()` where the application stops (a lifespan handler): at interpreter
exit the loop is gone, and the client can only send what is left with blocking requests, for
at most `exit_timeout` seconds.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import threading
import time

from analytics_client.async_transport import AsyncHttpTransport
from analytics_client.batching import payload_bytes
from analytics_client.client import AnalyticsClient
from analytics_client.core import DEFAULT_TIMEOUT, STOP_GRACE, ClientBase
from analytics_client.options import Options
from analytics_client.outcome import Outcome, network_failure
from analytics_client.pipeline import (
    Close,
    Expire,
    LoadFromSpool,
    Scheduled,
    Send,
    SplitInTwo,
    Wait,
)
from analytics_client.reporting import FailureCallback, log
from analytics_client.results import FlushReport
from analytics_client.transport import AsyncTransport

# Smaller batches are sealed in the loop; larger ones in a worker thread, so that compressing
# them does not hold the loop.
SEAL_IN_LOOP_BYTES = 64 * 1024


class AsyncAnalyticsClient(ClientBase):
    """Tracks events from the loop's code, or from other threads; sends them in batches from
    one task of the loop."""

    _loop: asyncio.AbstractEventLoop | None  # the one the client is used from
    _loop_thread: int | None

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
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            pass  # known at the first call from a loop
        else:
            self._loop = loop
            self._loop_thread = threading.get_ident()

    def _reset_sender(self) -> None:
        self._loop = None
        self._loop_thread = None
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._progress: asyncio.Event | None = None  # set, and replaced, at each settlement

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
        current, earlier = asyncio.current_task(), self._task
        if earlier is not current:  # not from the sender's own callback
            await self._wait_for(target, deadline)  # which may start a sender in this loop
            self._stopping = True
            for task in {earlier, self._task}:
                if task is not None:
                    await _stop(task, deadline)
        self._stopping = True
        disposal = await asyncio.to_thread(self._dispose_leftovers)
        self._report(disposal.failures)
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
                self._report(self._dispose_leftovers().failures)
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
            self._after_offer_elsewhere(wake)
            return
        if not self._sender_running(loop):
            self._start_sender(loop)
        elif wake:
            self._wake()

    def _after_offer_elsewhere(self, wake: bool) -> None:
        """From a thread that runs no loop: start or wake the sender in the client's loop."""
        loop = self._loop
        if loop is None:
            return  # none known yet: the first call from a loop starts the sender
        if not self._sender_running(loop):
            with contextlib.suppress(RuntimeError):  # that loop is closed
                loop.call_soon_threadsafe(self._start_in_loop, loop)
        elif wake:
            self._wake()

    def _start_in_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            if self._pipeline.pending and not self._sender_running(loop):
                self._start_sender(loop)

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
                    await asyncio.to_thread(self._take_from_spool, now)
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

    async def _perform(self, step: Send | Close | SplitInTwo | Expire) -> None:
        if isinstance(step, Send):
            settlement = self._settle(step.scheduled, await self._send(step.scheduled))
        elif isinstance(step, Close) and _size(step) < SEAL_IN_LOOP_BYTES:
            settlement = self._prepare(step)
        else:
            settlement = await asyncio.to_thread(self._prepare, step)
        try:
            if settlement.spool_done or settlement.spool_give_back:
                await asyncio.to_thread(self._tidy_spool, settlement)
            self._report(settlement.failures)
        finally:
            self._reporting = False
            self._settled()

    async def _send(self, scheduled: Scheduled) -> Outcome:
        request, timeout = self._request(scheduled)
        try:
            response = await self._transport.send(request, timeout)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a transport of the caller's may raise anything
            return network_failure(error)
        return self._outcome(scheduled, response)


async def _stop(task: asyncio.Task[None], deadline: float) -> None:
    """Cancel a sender, and wait for it until `deadline` (and a little) if it is this loop's.
    One of another loop (the client was used from one, and is shut down from another) is
    cancelled there, when that loop runs."""
    if task.done():
        return
    loop = task.get_loop()
    if loop is asyncio.get_running_loop():
        task.cancel()
        await asyncio.wait([task], timeout=max(0.0, deadline - time.monotonic()) + STOP_GRACE)
    else:
        with contextlib.suppress(RuntimeError):  # that loop is closed
            loop.call_soon_threadsafe(task.cancel)


def _size(step: Close) -> int:
    return payload_bytes(step.events)
