"""One proxied request as both proxies (HTTP and SageMaker) and the stream relay see it: who asked, for what, how
long the control plane took (`Timing`, sent back as x-ministudio-overhead-duration-ms), what it cost (the usage log,
written off the event loop), and how an upstream's error answer reaches the caller (`rejected`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import weakref
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from functions.core import ids
from functions.core.errors import DomainError
from functions.core.models import InferenceLog
from functions.core.observability import log
from functions.deployments import activity, proxy_errors
from functions.deployments.routing import Route
from functions.store.cache import get_cache
from functions.store.mongo import Store

_log_writes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, set[asyncio.Future[None]]] = (
    weakref.WeakKeyDictionary()
)


def pending_log_writes(loop: asyncio.AbstractEventLoop) -> set[asyncio.Future[None]]:
    """The usage-log writes still running on this loop's executor (the app's shutdown waits for them)."""
    return _log_writes.setdefault(loop, set())


@dataclass
class Timing:
    """Where a proxied request's time went: from the route's start (the proxy routes' handler sets it, see
    functions/api/routes/inference.py), less the time spent waiting on the upstream (for a stream: until its
    response headers). What is left is the control plane's overhead, sent back in OVERHEAD_HEADER."""

    started: float = field(default_factory=time.perf_counter)
    upstream: float = 0.0  # seconds

    def overhead_ms(self) -> float:
        return max(0.0, (time.perf_counter() - self.started - self.upstream) * 1000)


IN_FLIGHT_TTL_SECONDS = 3600  # a request that never reports its end stops counting as under way after this
timing_var: ContextVar[Timing | None] = ContextVar("proxy_timing", default=None)


@dataclass
class Call:
    """One proxied request: who asked, for what, and what it cost; becomes an InferenceLog."""

    client_code: str
    route: Route
    path: str
    request_id: str | None
    user: str | None
    stream: bool = False
    started: float = field(default_factory=time.perf_counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    timing: Timing = field(default_factory=lambda: timing_var.get() or Timing())

    def __post_init__(self) -> None:
        if self.route.sleeps:  # under way until `record`: the idle sweep leaves its server alone meanwhile
            activity.begin(get_cache(), self.route.deployment_id, IN_FLIGHT_TTL_SECONDS)

    def record_later(self, store: Store, status_code: int, error: str | None = None) -> None:
        """`record` in a worker thread: pymongo blocks, and the event loop serves every other request meanwhile.
        Not awaited (a stream's end may come with the caller's cancellation); `close_sessions` waits for them."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a stream finalised after its loop stopped: no request is waiting any more
            self.record(store, status_code, error)
            return
        done: asyncio.Future[None] = loop.create_future()  # pending from now: the app's shutdown waits for it
        pending = pending_log_writes(loop)
        pending.add(done)
        done.add_done_callback(pending.discard)
        if not self.stream:
            self._start_record(loop, done, store, status_code, error)
            return
        # A stream's on the loop's next turn: its relay calls this as its last event goes out, and a worker thread
        # taking the GIL at once would hold up that last write to the caller.
        loop.call_soon(self._start_record, loop, done, store, status_code, error)

    def _start_record(
        self, loop: asyncio.AbstractEventLoop, done: asyncio.Future[None], store: Store, status: int, error: str | None
    ) -> None:
        write = loop.run_in_executor(None, self.record, store, status, error)
        write.add_done_callback(lambda _: None if done.done() else done.set_result(None))

    def record(self, store: Store, status_code: int, error: str | None = None) -> None:
        activity.touch(get_cache(), self.route.deployment_id)  # its end counts too: a long answer is not idle time
        if self.route.sleeps:
            activity.end(get_cache(), self.route.deployment_id, IN_FLIGHT_TTL_SECONDS)
        entry = InferenceLog(
            id=ids.new_id("ilog-"),
            client_code=self.client_code,
            model=self.route.model,
            deployment_id=self.route.deployment_id,
            route=self.path,
            user=self.user,
            status_code=status_code,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            latency_ms=round((time.perf_counter() - self.started) * 1000, 3),
            stream=self.stream,
            error=error,
            request_id=self.request_id,
        )
        try:
            store.inference_logs.add(entry)
        except Exception as exc:  # the answer already left: a lost log line must not turn it into an error
            log("warning", "inference log write failed", error=str(exc), request_id=self.request_id)

    def record_answer(self, store: Store, status_code: int, content: bytes) -> None:
        """The log of a whole answer, its usage read from it (off the event loop too: answers can be long)."""
        self.take_usage_from(content)
        self.record(store, status_code)

    def take_usage_from(self, content: bytes) -> None:
        with contextlib.suppress(ValueError):
            self.take_usage(json.loads(content))

    def take_usage(self, body: Any) -> None:
        usage = body.get("usage") if isinstance(body, dict) else None
        if isinstance(usage, dict):
            self.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            self.completion_tokens = int(usage.get("completion_tokens") or usage.get("tokens_generated") or 0)
        elif isinstance(body, dict) and "tokens_generated" in body:  # seed 002's /predict
            self.completion_tokens = int(body.get("tokens_generated") or 0)


def rejected(call: Call, status: int, content: bytes, store: Store) -> DomainError:
    """A server's error answer: logged whole for the operator; for the caller, its message only, in the route's
    error shape with the caller's request id (the API's error handlers shape DomainErrors)."""
    body = content[:2000].decode(errors="replace")
    log("warning", "inference server answered an error", deployment_id=call.route.deployment_id, body=body)
    error = proxy_errors.rejected(status, content, [call.route.model])
    call.record_later(store, error.status_code, error.message)
    return error
