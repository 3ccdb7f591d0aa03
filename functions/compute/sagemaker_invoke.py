"""The proxy's side of the `sagemaker` backend: calling a deployment through SageMaker's runtime.

`Endpoint(kind="sagemaker", target=<endpoint>, component=<inference component>)` comes from the serving backend's
status (the base component) or `adapter_endpoint(name, model_id)` (an adapter's). The request body is the OpenAI
request the proxy would POST to an http endpoint; the inference server's `/invocations` takes it as is.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from functions.compute.sagemaker_client import SageMakerBackendError, is_missing
from functions.compute.serving import Endpoint
from functions.core.settings import Settings, get_settings

_runtime: dict[tuple[str, str | None], Any] = {}
_runtime_lock = threading.Lock()


def _runtime_client(settings: Settings | None) -> Any:
    settings = settings or get_settings()
    key = (settings.aws_region, settings.aws_endpoint_url)
    with _runtime_lock:
        client = _runtime.get(key)
        if client is None:
            from functions.store.aws import aws_client

            client = _runtime[key] = aws_client(
                "sagemaker-runtime", settings, read_timeout=settings.proxy_timeout_seconds
            )
        return client


def _invoke_params(
    endpoint: Endpoint, body: bytes, content_type: str, custom_attributes: str | None = None
) -> dict[str, Any]:
    if endpoint.kind != "sagemaker" or not endpoint.target:
        raise ValueError(f"not a SageMaker endpoint: {endpoint}")
    params: dict[str, Any] = {"EndpointName": endpoint.target, "Body": body, "ContentType": content_type}
    if custom_attributes:  # the server's route for a seed request (ministudio_serve/sagemaker_routes.py)
        params["CustomAttributes"] = custom_attributes
    if endpoint.component:
        params["InferenceComponentName"] = endpoint.component
    return params


class InvokeError(SageMakerBackendError):
    """A call to a deployment failed. `status_code` and `body` are the server's own answer when the container
    answered (SageMaker's ModelError), else SageMaker's status for its refusal (throttled, no such endpoint)."""

    def __init__(self, message: str, status_code: int, body: bytes = b"") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body


def invoke(
    endpoint: Endpoint,
    body: bytes,
    content_type: str = "application/json",
    *,
    settings: Settings | None = None,
    client: Any = None,
    custom_attributes: str | None = None,
) -> bytes:
    """One request to `/invocations` through SageMaker's runtime; the answer's bytes as the server sent them."""
    from botocore.exceptions import ClientError

    params = _invoke_params(endpoint, body, content_type, custom_attributes)
    runtime = client or _runtime_client(settings)
    try:
        response = runtime.invoke_endpoint(**params, Accept="application/json")
    except ClientError as exc:
        raise _invoke_error(endpoint, exc) from exc
    return bytes(response["Body"].read())


def invoke_stream(
    endpoint: Endpoint,
    body: bytes,
    content_type: str = "application/json",
    *,
    settings: Settings | None = None,
    client: Any = None,
) -> Iterator[bytes]:
    """A streamed request (`"stream": true` in the body): the server's SSE bytes, part by part, as they arrive.
    A failure mid-stream (botocore raises the stream's ModelStreamError/InternalStreamFailure) ends it with
    InvokeError; the parts already yielded have been sent."""
    from botocore.exceptions import ClientError

    params = _invoke_params(endpoint, body, content_type)
    runtime = client or _runtime_client(settings)
    try:
        response = runtime.invoke_endpoint_with_response_stream(**params)
        for event in response["Body"]:
            part = event.get("PayloadPart")
            if part is not None:
                yield bytes(part.get("Bytes", b""))
    except ClientError as exc:
        raise _invoke_error(endpoint, exc) from exc


_REFUSALS = {
    "ThrottlingException": 429,
    "ServiceUnavailable": 503,
    "ValidationError": 400,
    "ModelNotReadyException": 503,
}


def _invoke_error(endpoint: Endpoint, exc: Any) -> InvokeError:
    error = exc.response.get("Error", {})
    code, message = str(error.get("Code", "")), str(error.get("Message", ""))
    where = f"{endpoint.target}" + (f"/{endpoint.component}" if endpoint.component else "")
    if code == "ModelError":  # the container answered with an error: pass its answer through
        status = int(exc.response.get("OriginalStatusCode") or 502)
        return InvokeError(f"{where}: {message}", status, str(exc.response.get("OriginalMessage", "")).encode())
    if is_missing(exc):
        return InvokeError(f"{where}: {message}", 404)
    status = _REFUSALS.get(code, int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 502))
    return InvokeError(f"{where}: {code}: {message}", status)
