"""`AnalyticsClient`, for threaded code: one background sender thread.

The thread starts with the first event tracked, so a pre-fork server's parent that never
tracks runs nothing, and its workers each start their own. A forked child starts clean (see
`core.py`). At interpreter exit the client flushes for at most `exit_timeout` seconds.
"""

from __future__ import annotations

import atexit
import dataclasses
import threading
import time

from analytics_client.core import DEFAULT_TIMEOUT, STOP_GRACE, ClientBase
from analytics_client.options import Options
from analytics_client.outcome import Outcome, network_failure
from analytics_client.pipeline import (
    Close,
    Expire,
    LoadFromSpool,
    Pipeline,
    Scheduled,
    Send,
    SplitInTwo,
    Wait,
)
from analytics_client.reporting import FailureCallback, log
from analytics_client.results import FlushReport
from analytics_client.transport import HttpTransport, Transport, describe


class AnalyticsClient(ClientBase):
    """Tracks events from any thread; sends them in batches from one background thread.

    `track` and `track_flat` never block and never raise; `flush` and `shutdown` wait at
    most their `timeout`."""

    def __init__(
        self,
        endpoint: str,
        options: Options | None = None,
        *,
        transport: Transport | None = None,
        on_failure: FailureCallback | None = None,
    ) -> None:
        super().__init__(endpoint, options, on_failure=on_failure)
        self._transport: Transport = transport or HttpTransport(endpoint)

    def _reset_sender(self) -> None:
        self._condition = threading.Condition(self._lock)
        self._sender: threading.Thread | None = None

    # --- flush and shutdown -------------------------------------------------------------

    def flush(self, timeout: float = DEFAULT_TIMEOUT) -> FlushReport:
        """Send every event tracked so far, waiting at most `timeout` seconds; what was
        delivered, rejected, lost or spooled meanwhile, and what is still pending."""
        self._check_process()
        deadline = time.monotonic() + timeout
        with self._condition:
            before = self._pipeline.totals()
            if threading.current_thread() is self._sender:
                return self._pipeline.report_since(before)  # from the callback: cannot wait
            target = self._pipeline.request_flush()
            self._wait_for(target, deadline)
            return self._pipeline.report_since(before)

    def shutdown(self, timeout: float = DEFAULT_TIMEOUT) -> FlushReport:
        """Flush for at most `timeout` seconds, then stop: a request still in progress is
        abandoned, what is left goes to the spool (or is counted as lost). Later events are
        refused. Returns within about `timeout` even when the service does not answer; its
        `pending` are the events still undelivered then, now spooled or lost."""
        self._check_process()
        deadline = time.monotonic() + timeout
        with self._condition:
            before = self._pipeline.totals()
            if self._closed:
                return self._pipeline.report_since(before)
            self._closed = True
            self._shutdown_deadline = deadline
            target = self._pipeline.begin_shutdown()
            if threading.current_thread() is not self._sender:
                self._wait_for(target, deadline)
            flushed = self._pipeline.flushed(target)
            self._stopping = True
            self._condition.notify_all()
            sender = self._sender
        if sender is not None and sender is not threading.current_thread():
            if not flushed:
                self._transport.abort()
            sender.join(max(0.0, deadline - time.monotonic()) + STOP_GRACE)
        undelivered = self._dispose()
        self._transport.close()
        atexit.unregister(self._at_exit)
        with self._condition:
            return dataclasses.replace(self._pipeline.report_since(before), pending=undelivered)

    def __enter__(self) -> AnalyticsClient:
        return self

    def __exit__(self, *exception: object) -> None:
        self.shutdown()

    def _wait_for(self, target: int, deadline: float) -> None:
        """With the lock held: wake the sender and wait until `target` events are settled."""
        if self._pipeline.pending and not self._sender_alive() and not self._start_sender():
            return  # nothing would come of waiting
        self._condition.notify_all()
        while not self._pipeline.flushed(target) or self._reporting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._condition.wait(remaining)

    def _dispose(self) -> int:
        """Spool what is left, or count it as lost; how many of this process's events."""
        disposal = self._dispose_leftovers()
        with self._condition:
            self._condition.notify_all()
        self._report(disposal.failures)
        return disposal.spooled + disposal.lost

    def _send_in_this_thread(self, pipeline: Pipeline, timeout: float) -> None:
        """Send another client's events from the calling thread, for at most `timeout`
        seconds, then stop as `shutdown` does: the asyncio client's at interpreter exit, where
        its loop is gone and no new thread may start."""
        deadline = time.monotonic() + timeout
        with self._condition:
            self._pipeline = pipeline
            self._closed = True
            self._shutdown_deadline = deadline
            target = pipeline.begin_shutdown()
        while time.monotonic() < deadline:
            with self._condition:
                if pipeline.flushed(target) and not self._reporting:
                    break
            self._step(deadline)
        self._dispose()
        self._transport.close()

    def _at_exit(self) -> None:
        try:
            self.shutdown(self.options.exit_timeout)
        except Exception:
            log.exception("the analytics client could not flush at exit")

    # --- the sender ---------------------------------------------------------------------

    def _after_offer(self, wake: bool) -> None:
        if not self._sender_alive():
            self._start_sender()
        elif wake:
            self._condition.notify_all()

    def _sender_alive(self) -> bool:
        return self._sender is not None and self._sender.is_alive()

    def _start_sender(self) -> bool:
        """With the lock held: whether a sender runs now. One that cannot start (the process
        has no more threads) is tried again with the next event and the next flush."""
        if self._stopping:
            return False
        sender = threading.Thread(target=self._run, name="analytics-client-sender", daemon=True)
        try:
            sender.start()
        except Exception as error:
            if self._failure_log.line_due("sender", time.monotonic()):
                log.warning("the analytics sender thread cannot start: %s", describe(error))
            return False
        self._sender = sender
        return True

    def _run(self) -> None:
        while not self._stopping:
            self._step()

    def _step(self, deadline: float | None = None) -> None:
        """One step of the sender: a wait (until woken, or `deadline` at the latest), a batch
        closed, a request sent..."""
        watch = self._spool_watch
        try:
            with self._condition:
                if self._stopping:
                    return
                now = time.monotonic()
                step = self._pipeline.next_step(now, spool_waiting=watch.waiting(now))
                if isinstance(step, Wait):
                    wait = watch.wait_time(now, step.seconds)
                    if deadline is not None:
                        wait = deadline - now if wait is None else min(wait, deadline - now)
                    self._condition.wait(wait)
                    return
            if isinstance(step, LoadFromSpool):
                self._take_from_spool(now)
            else:
                self._perform(step)
        except Exception:
            log.exception("the analytics sender failed; it carries on")
            with self._condition:
                self._condition.wait(1.0)  # not a busy loop, should it fail again

    def _perform(self, step: Send | Close | SplitInTwo | Expire) -> None:
        if isinstance(step, Send):
            settlement = self._settle(step.scheduled, self._send(step.scheduled))
        else:
            settlement = self._prepare(step)
        try:
            self._tidy_spool(settlement)
            self._report(settlement.failures)
        finally:
            with self._condition:
                self._reporting = False
                self._condition.notify_all()

    def _send(self, scheduled: Scheduled) -> Outcome:
        request, timeout = self._request(scheduled)
        try:
            response = self._transport.send(request, timeout)
        except Exception as error:  # a transport of the caller's may raise anything
            return network_failure(error)
        return self._outcome(scheduled, response)
