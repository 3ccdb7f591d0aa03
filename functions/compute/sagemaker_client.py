"""What the SageMaker training and serving backends share: boto3 clients made on first use, how SageMaker's errors
read (missing, already there), names derived within SageMaker's 63 characters, and idempotent call wrappers."""

from __future__ import annotations

import hashlib
import re
import threading
from typing import TYPE_CHECKING, Any

from functions.core.settings import Settings

if TYPE_CHECKING:
    from botocore.exceptions import ClientError


class SageMakerBackendError(RuntimeError):
    """SageMaker refused a request, or this backend is not configured to make one; the message says which setting."""


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def error_message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))


def is_missing(exc: ClientError) -> bool:
    """SageMaker answers a missing resource with ValidationException ("Could not find endpoint ...", "Requested
    resource not found.") more often than with ResourceNotFound; both mean the same here."""
    code, message = error_code(exc), error_message(exc).lower()
    if code in ("ResourceNotFound", "ResourceNotFoundException"):
        return True
    # sagemaker-runtime says ValidationError: "Endpoint x of account y not found."
    return code in ("ValidationException", "ValidationError") and any(
        s in message for s in ("could not find", "not found", "not exist")
    )


def already_exists(exc: ClientError) -> bool:
    """Training jobs answer a duplicate name with ResourceInUse; models, configs, endpoints and inference components
    with ValidationException "Cannot create already existing ..."."""
    return error_code(exc) == "ResourceInUse" or "already exist" in error_message(exc).lower()


def derived_name(name: str, suffix: str) -> str:
    """`{name}-{suffix}` kept DNS-1123 and ≤ 63 characters (SageMaker's limit too); when too long, the cut part of the
    name is replaced by a hash of the whole name so two long names never collide."""
    full = f"{name}-{suffix}"
    if len(full) <= 63:
        return full
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    head = name[: 63 - len(suffix) - len(digest) - 2].rstrip("-")
    return f"{head}-{digest}-{suffix}"


def require(value: str | None, setting: str) -> str:
    if not value:
        raise SageMakerBackendError(f"{setting} is not set: the sagemaker backend needs it (the CDK stack outputs it)")
    return value


class Clients:
    """boto3 clients created on first use (cold start), or given by tests (Stubber, or moto behind mock_aws)."""

    def __init__(self, settings: Settings, given: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self._clients = dict(given or {})
        self._lock = threading.Lock()

    def __call__(self, service: str) -> Any:
        with self._lock:
            client = self._clients.get(service)
            if client is None:
                from functions.store.aws import aws_client

                client = self._clients[service] = aws_client(service, self.settings)
            return client


def describe(client: Any, operation: str, **params: Any) -> dict[str, Any] | None:
    """A Describe* call; None when the resource does not exist."""
    from botocore.exceptions import ClientError

    try:
        return dict(getattr(client, snake(operation))(**params))
    except ClientError as exc:
        if is_missing(exc):
            return None
        raise SageMakerBackendError(f"{operation} {params}: {error_message(exc)}") from exc


def create(operation: str, call: Any, **params: Any) -> None:
    """A Create* call that finds an existing resource of the same name instead of failing (redeliveries)."""
    from botocore.exceptions import ClientError

    try:
        call(**params)
    except ClientError as exc:
        if not already_exists(exc):
            raise SageMakerBackendError(f"{operation}: {error_message(exc)}") from exc


def delete(client: Any, operation: str, **params: Any) -> None:
    """A Delete* call for which a resource already gone is success."""
    from botocore.exceptions import ClientError

    try:
        getattr(client, snake(operation))(**params)
    except ClientError as exc:
        if not is_missing(exc):
            raise SageMakerBackendError(f"{operation} {params}: {error_message(exc)}") from exc


def snake(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()
