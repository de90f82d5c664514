"""What the threaded and the asyncio client share: `track` and `track_flat`, the counters,
starting clean in a forked child, and the sender's work between its waits and its requests
(sealing, splitting, the spool, reporting). The two differ in how their sender waits and sends.

`track` never blocks and never raises: it checks and encodes the event in the caller's
thread, then holds the client's lock for as long as an append to a queue takes. Whatever
goes wrong, the caller gets a result that says so.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import threading
import time
import weakref
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from analytics_client import envelope, settling
from analytics_client.batching import seal_events, split
from analytics_client.events import EVENT_TYPES_BY_NAME, Event
from analytics_client.identifiers import (
    canonical_uuid,
    new_batch_key,
    new_event_id,
    normalise_event_id,
)
from analytics_client.options import Options
from analytics_client.outcome import Outcome, Retry, interpret
from analytics_client.pipeline import Close, Expire, Pipeline, Scheduled, Settlement, SplitInTwo
from analytics_client.processes import ProcessCheck
from analytics_client.reporting import FailureCallback, RateLimitedLog, log, log_drops
from analytics_client.results import Counters, Failure, Refusal, TrackResult
from analytics_client.spool import Spool
from analytics_client.transport import (
    Endpoint,
    HttpRequest,
    HttpResponse,
    batch_request,
    describe,
)
from analytics_client.validation import InvalidEvent, event_object, flat_data

DEFAULT_TIMEOUT = 10.0  # of flush and shutdown
# After shutdown's time: how long to wait for the sender to notice it was stopped (its
# request was aborted).
STOP_GRACE = 0.25
SPOOL_SCAN_INTERVAL = 5.0  # how often an idle sender looks for spooled batches

_CLIENTS: weakref.WeakSet[ClientBase] = weakref.WeakSet()


class ClientBase:
    def __init__(
        self,
        endpoint: str,
        options: Options | None = None,
        *,
        on_failure: FailureCallback | None = None,
    ) -> None:
        Endpoint.parse(endpoint)  # a wrong URL is the caller's mistake: said at once
        self.endpoint = endpoint
        self.options = options or Options()
        self._on_failure = on_failure
        directory = self.options.spool_directory
        self._spool = Spool(directory, self.options.spool_max_bytes) if directory else None
        self._start_clean()
        _CLIENTS.add(self)

    def _start_clean(self) -> None:
        """The state of a new client; a forked child calls it again (see `_after_fork`)."""
        self._process = ProcessCheck()
        self._lock = threading.Lock()
        self._pipeline = Pipeline(self.options, new_key=new_batch_key, draw=random.uniform)
        self._drop_log = RateLimitedLog()
        self._failure_log = RateLimitedLog()
        self._closed = False  # shutdown has begun
        self._stopping = False  # the sender is to stop
        self._shutdown_deadline: float | None = None
        # A settlement's failures being reported: flush returns once they are, so the caller's
        # callback has seen them (and the spool is tidied) when it does.
        self._reporting = False
        self._spool_watch = settling.SpoolWatch(self._spool, SPOOL_SCAN_INTERVAL)
        self._exit_handler_registered = False
        self._reset_sender()

    # --- the public surface shared by both clients ------------------------------------

    def track(
        self,
        event: Event,
        *,
        timestamp: datetime | None = None,
        event_id: UUID | str | None = None,
    ) -> TrackResult:
        """Queue a catalog event (shape A). Returns at once, truthy when accepted."""
        identifier = None
        try:
            if not isinstance(event, Event):
                raise InvalidEvent(
                    f"expected an event of analytics_client.events, got {event!r:.60}"
                )
            unix_nanoseconds = time.time_ns()
            identifier = self._identifier(event_id, unix_nanoseconds)
            element = envelope.shape_a(
                event_object(event),
                event_id=identifier,
                timestamp=self._timestamp(timestamp, unix_nanoseconds),
                hostname=self.options.hostname,
                environment=self.options.environment,
            )
            return self._enqueue(identifier, element)
        except Exception as error:
            return self._refused(identifier, error)

    def track_flat(
        self,
        event_type: str,
        data: Mapping[str, Any] | None = None,
        *,
        user_id: UUID | str | None = None,
        service: str | None = None,
        timestamp: datetime | None = None,
        event_id: UUID | str | None = None,
    ) -> TrackResult:
        """Queue a flat event (shape B): any type, catalog or not. A catalog type's fields in
        `data` are checked; `service` defaults to the client's `service` option."""
        identifier = None
        try:
            unix_nanoseconds = time.time_ns()
            identifier = self._identifier(event_id, unix_nanoseconds)
            element = envelope.shape_b(
                event_type,
                flat_data(EVENT_TYPES_BY_NAME.get(event_type), data or {}),
                event_id=identifier,
                user_id=None if user_id is None else _user_id(user_id),
                service=service if service is not None else self.options.service,
                timestamp=self._timestamp(timestamp, unix_nanoseconds),
            )
            return self._enqueue(identifier, element)
        except Exception as error:
            return self._refused(identifier, error)

    def counters(self) -> Counters:
        self._check_process()
        with self._lock:
            return self._pipeline.tally.snapshot(self._pipeline.pending)

    # --- for the clients ----------------------------------------------------------------

    def _after_offer(self, wake: bool) -> None:
        """With the lock held, after an event was queued: start or wake the sender."""
        raise NotImplementedError

    def _at_exit(self) -> None:
        """Registered with `atexit` by the first event accepted."""
        raise NotImplementedError

    def _reset_sender(self) -> None:
        """A sender not started yet: at the start, and in a forked child, where the parent's
        sender did not come along."""
        raise NotImplementedError

    def _check_process(self) -> None:
        # A fork that ran no at-fork hooks (a C extension's fork) is noticed here.
        if self._process.forked():
            self._after_fork()

    def _after_fork(self) -> None:
        """The child starts clean: the events queued before the fork are the parent's to send,
        and the locks may have been held by threads that did not come along."""
        self._start_clean()

    # --- the sender's work, the same in both clients ------------------------------------
    # Blocking where it compresses or touches the spool: the asyncio client runs those parts
    # in a worker thread. The lock is held around the pipeline, never around the slow part.

    def _take_from_spool(self, now: float) -> None:
        """The oldest spooled batch into the pipeline, or a note that the spool has none."""
        spooled = settling.load_from_spool(self._spool) if self._spool is not None else None
        if spooled is None:
            self._spool_watch.found_nothing(now)
            return
        with self._lock:
            self._pipeline.add_from_spool(spooled, time.monotonic())

    def _prepare(self, step: Close | SplitInTwo | Expire) -> Settlement:
        """A step that sends nothing: seal a batch, split one in two, or give one up."""
        pipeline = self._pipeline
        if isinstance(step, Close):
            try:
                batch = seal_events(step.key, step.events, compress=self.options.compress)
            except Exception as error:
                with self._lock:
                    self._reporting = True
                    return pipeline.seal_failed(step.events, f"cannot be sealed: {describe(error)}")
            with self._lock:
                pipeline.add_closed(batch, time.monotonic())
            return Settlement()
        if isinstance(step, SplitInTwo):
            try:
                halves = split(step.scheduled.batch)
            except Exception as error:
                reason = f"its halves cannot be sealed: {describe(error)}"
                with self._lock:
                    self._reporting = True
                    return pipeline.split_failed(step.scheduled, reason)
            with self._lock:
                pipeline.replace_split(step.scheduled, halves)
            return Settlement()
        expiry = settling.spool_expired(step.scheduled, self._spool)
        with self._lock:
            self._reporting = True
            return pipeline.settle_expired(
                step.scheduled, spooled=expiry.spooled, loss=expiry.loss, reason=expiry.reason
            )

    def _request(self, scheduled: Scheduled) -> tuple[HttpRequest, float]:
        """The batch's request, and how long to wait for its answer."""
        timeout = self.options.http_timeout
        if self._shutdown_deadline is not None:
            timeout = max(0.001, min(timeout, self._shutdown_deadline - time.monotonic()))
        return batch_request(scheduled.batch, self.options), timeout

    def _outcome(self, scheduled: Scheduled, response: HttpResponse) -> Outcome:
        """What the answer means. One that cannot be read is a retry: no exception may skip the
        batch's settlement, and with it its retry deadline."""
        try:
            return interpret(
                response.status, response.headers, response.body, len(scheduled.batch), time.time()
            )
        except Exception as error:
            status = getattr(response, "status", "?")  # a caller's transport may answer anything
            return Retry(f"HTTP {status} with an answer that cannot be read: {describe(error)}")

    def _settle(self, scheduled: Scheduled, outcome: Outcome) -> Settlement:
        with self._lock:
            self._reporting = True
            return self._pipeline.settle(scheduled, outcome, time.monotonic())

    def _tidy_spool(self, settlement: Settlement) -> None:
        """Remove the spool files done with; give back the others, which are not taken again
        before the events queued since are served."""
        settling.update_spool(settlement, self._spool)
        if settlement.spool_give_back:
            self._spool_watch.found_nothing(time.monotonic(), settlement.spool_rest)

    def _report(self, failures: list[Failure]) -> None:
        settling.report_failures(failures, self._on_failure, self._failure_log)

    def _dispose_leftovers(self) -> settling.Disposal:
        """At shutdown: spool what is left, or count it as lost. The failures are the caller's
        to report."""
        with self._lock:
            leftovers = self._pipeline.take_leftovers()
        disposal = settling.dispose(leftovers, self._spool, self.options)
        with self._lock:
            self._pipeline.settle_leftovers(disposal.spooled, disposal.lost)
        return disposal

    # --- track's steps ------------------------------------------------------------------

    def _identifier(self, given: UUID | str | None, unix_nanoseconds: int) -> str:
        if given is None:
            return new_event_id(unix_nanoseconds // 1_000_000)
        return normalise_event_id(given)

    def _timestamp(self, given: datetime | None, unix_nanoseconds: int) -> str:
        if given is None:
            return envelope.timestamp_from_unix_nanoseconds(unix_nanoseconds)
        return envelope.timestamp_text(given)

    def _enqueue(self, identifier: str, element: dict[str, Any]) -> TrackResult:
        payload = envelope.encode(element)
        if len(payload) > self.options.max_event_bytes:
            return self._refuse(
                identifier,
                Refusal.TOO_LARGE,
                f"{len(payload)} bytes, more than max_event_bytes={self.options.max_event_bytes}",
            )
        self._check_process()
        with self._lock:
            if not self.options.enabled:
                self._pipeline.tally.tracked += 1
                return TrackResult(identifier)
            refusal = self._pipeline.offer(identifier, payload, time.monotonic())
            if refusal is None:
                self._register_exit_handler()
                self._after_offer(self._pipeline.sender_wanted())
                return TrackResult(identifier)
            count = self._drop_log.line_due(refusal, time.monotonic())
        detail = self._queue_refusal_detail(refusal)
        if count:
            log_drops(refusal, count, detail)
        return TrackResult(identifier, refusal, detail)

    def _register_exit_handler(self) -> None:
        if not self._exit_handler_registered:
            self._exit_handler_registered = True
            atexit.unregister(self._at_exit)  # a forked child inherits its parent's
            atexit.register(self._at_exit)

    def _queue_refusal_detail(self, refusal: Refusal) -> str:
        if refusal is Refusal.QUEUE_FULL_EVENTS:
            return f"the queue holds max_queue_events={self.options.max_queue_events} events"
        if refusal is Refusal.QUEUE_FULL_BYTES:
            return f"the queue holds nearly max_queue_bytes={self.options.max_queue_bytes} bytes"
        return "the client is shut down"

    def _refused(self, identifier: str | None, error: Exception) -> TrackResult:
        if isinstance(error, envelope.NotSerialisable):
            return self._refuse(identifier, Refusal.NOT_SERIALISABLE, str(error))
        if isinstance(error, ValueError | TypeError):
            return self._refuse(identifier, Refusal.INVALID, str(error))
        log.exception("analytics track failed unexpectedly")
        return self._refuse(identifier, Refusal.INTERNAL_ERROR, repr(error))

    def _refuse(self, identifier: str | None, refusal: Refusal, detail: str) -> TrackResult:
        with contextlib.suppress(Exception):  # counting must not be what makes track raise
            self._check_process()
            with self._lock:
                self._pipeline.count_refusal(refusal)
                count = self._drop_log.line_due(refusal, time.monotonic())
            if count:
                log_drops(refusal, count, detail)
        return TrackResult(identifier, refusal, detail)


def _user_id(value: UUID | str) -> str:
    text = canonical_uuid(value)
    if text is None:
        raise InvalidEvent(f"user_id: expected a UUID, got {value!r:.60}")
    return text


def _reset_clients_in_child() -> None:
    for client in list(_CLIENTS):
        client._after_fork()


os.register_at_fork(after_in_child=_reset_clients_in_child)
