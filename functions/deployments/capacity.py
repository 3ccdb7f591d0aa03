"""The proxy's SageMaker invocations while an inference component has no copy: scaled to zero (or its copy still
starting), SageMaker refuses an invocation as having no capacity; that refusal is what the CloudWatch alarm of AWS's
scale-out-from-zero policy counts (functions/compute/sagemaker_zero.py), so the proxy retries it with backoff, in a
worker thread, up to WAKE_TIMEOUT_SECONDS, then answers 503 saying so. Any other error passes at once."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import TypeVar

from functions.core.observability import log
from functions.core.settings import Settings

T = TypeVar("T")
FIRST_PAUSE_SECONDS = 1.0
MAX_PAUSE_SECONDS = 15.0


def no_capacity(exc: BaseException) -> bool:
    """SageMaker's refusal of an invocation for a component with no copy to run it."""
    from functions.compute.sagemaker_invoke import InvokeError

    return isinstance(exc, InvokeError) and not exc.body and "no capacity" in str(exc).lower()


async def retrying(settings: Settings, call: Callable[[], T], what: str) -> T:
    """`call()` in a worker thread, again with backoff while it finds no capacity, up to WAKE_TIMEOUT_SECONDS."""
    from functions.compute.sagemaker_invoke import InvokeError

    deadline = time.monotonic() + settings.wake_timeout_seconds
    pause, tries = FIRST_PAUSE_SECONDS, 0
    while True:
        try:
            return await asyncio.to_thread(call)
        except InvokeError as exc:
            tries += 1
            if not no_capacity(exc):
                raise
            if time.monotonic() + pause > deadline:
                log("warning", "sagemaker: no capacity until the wake timeout", target=what, tries=tries)
                raise _still_scaling(what, settings) from exc
        await asyncio.sleep(pause)
        pause = min(pause * 2, MAX_PAUSE_SECONDS)


def _still_scaling(what: str, settings: Settings) -> Exception:
    from functions.compute.sagemaker_invoke import InvokeError

    message = (
        f"the deployment has no copy running yet: SageMaker is scaling it out from zero, which takes minutes; "
        f"retry shortly (waited {settings.wake_timeout_seconds:g} s, WAKE_TIMEOUT_SECONDS)"
    )
    body = json.dumps({"error": {"message": message, "code": "wake_timeout"}}).encode()
    return InvokeError(f"{what}: {message}", 503, body)
