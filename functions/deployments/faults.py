"""Which backend errors are worth another try: the deploy half of the dispatch worker re-raises those, so SQS
redelivers the message (after its visibility timeout; the DLQ after five receives), and fails the deployment for
the rest.

Transient: throttling, 5xx and 408 answers (botocore, the Kubernetes API, httpx, aiohttp), no answer at all
(connection errors, timeouts) and OS-level I/O errors. Permanent: everything else — bad input (ValueError), 4xx
refusals (quota, validation, forbidden), a backend this build does not have. A wrapper (SageMakerBackendError,
KubeError) is judged by what it says of itself when it can (a KubeError's status), else by the error it wraps.

Client libraries are looked up in `sys.modules`, never imported: an exception of a library that is not loaded
cannot be in hand, and the worker's cold start does not pay for kubernetes or aiohttp.
"""

from __future__ import annotations

import sys
from typing import Any

# botocore's standard retry mode treats these codes as throttling or transient (botocore/retries/standard.py).
_AWS_RETRY_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
    }
)
# OSErrors that say something about this machine's setup, not the network: another try finds the same.
_SETUP_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def transient(exc: BaseException) -> bool:
    """True when the same call may well succeed later (retry the message); False when it never will."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        verdict = _judge(current)
        if verdict is not None:
            return verdict
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return False


def retryable_status(status: int) -> bool:
    """HTTP statuses worth another try: no answer (0), timeouts, throttling, the server's faults."""
    return status in (0, 408, 429) or status >= 500


def _judge(exc: BaseException) -> bool | None:
    """This error's own verdict; None when it says nothing and the error it wraps decides."""
    if isinstance(exc, (ValueError, LookupError, TypeError, _SETUP_ERRORS)):
        return False
    if isinstance(exc, (TimeoutError, OSError)):  # ConnectionError and socket errors are OSErrors
        return True
    if (status := _library_status(exc)) is not None:
        return retryable_status(status)
    if _is(exc, "botocore.exceptions", "ClientError"):
        response: dict[str, Any] = getattr(exc, "response", None) or {}
        code = str(response.get("Error", {}).get("Code", ""))
        http = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return code in _AWS_RETRY_CODES or (http != 0 and retryable_status(http))
    no_answer = (
        ("botocore.exceptions", "HTTPClientError"),  # connection closed, read/connect timeouts
        ("botocore.exceptions", "ConnectionError"),  # endpoint unreachable
        ("urllib3.exceptions", "HTTPError"),
        ("httpx", "TransportError"),
        ("aiohttp", "ClientConnectionError"),
    )
    if any(_is(exc, module, name) for module, name in no_answer):
        return True
    return None


def _library_status(exc: BaseException) -> int | None:
    """The HTTP status a client library's error carries (KubeError, kubernetes' ApiException, httpx's and aiohttp's
    status errors); None when it carries none."""
    kube = _is(exc, "functions.compute.k8s.client", "KubeError")
    if kube or _is(exc, "kubernetes.client.exceptions", "ApiException"):
        # Status 0: no answer (the error it wraps says why) or no call made at all (a setting missing: permanent).
        return int(getattr(exc, "status", 0) or 0) or None
    if _is(exc, "aiohttp", "ClientResponseError"):
        return int(getattr(exc, "status", 0) or 0)
    if _is(exc, "httpx", "HTTPStatusError"):
        return int(exc.response.status_code)  # type: ignore[attr-defined]
    return None


def _is(exc: BaseException, module: str, name: str) -> bool:
    cls = getattr(sys.modules.get(module), name, None)
    return isinstance(cls, type) and isinstance(exc, cls)
