"""A stand-in for the context object Lambda's Python runtime passes to a handler.

Handlers and Powertools read these attributes (`Logger.inject_lambda_context`, idempotency's remaining-time
check), so the local runtime and the tests hand them the same shape instead of `None`. It subclasses
Powertools' `LambdaContext`, the type our handlers are annotated with, so passing it type-checks.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from aws_lambda_powertools.utilities.typing import LambdaContext as PowertoolsLambdaContext
from aws_lambda_powertools.utilities.typing.lambda_cognito_identity import LambdaCognitoIdentity

DEFAULT_ACCOUNT_ID = "123456789012"  # moto's default account, so local ARNs line up with moto's
DEFAULT_MEMORY_MB = 512


class LambdaContext(PowertoolsLambdaContext):
    def __init__(
        self,
        *,
        function_name: str,
        function_version: str,
        invoked_function_arn: str,
        memory_limit_in_mb: int,
        aws_request_id: str,
        log_group_name: str,
        log_stream_name: str,
        timeout_seconds: float,
    ) -> None:
        self._function_name = function_name
        self._function_version = function_version
        self._invoked_function_arn = invoked_function_arn
        # Powertools types this as int; the real runtime hands over the env var's string. int keeps handlers typed.
        self._memory_limit_in_mb = memory_limit_in_mb
        self._aws_request_id = aws_request_id
        self._log_group_name = log_group_name
        self._log_stream_name = log_stream_name
        # As Lambda's runtime does for a caller that is not a Cognito-authenticated mobile app: an empty identity.
        identity = LambdaCognitoIdentity()
        identity._cognito_identity_id = None  # type: ignore[assignment]
        identity._cognito_identity_pool_id = None  # type: ignore[assignment]
        self._identity = identity
        self._client_context = None  # type: ignore[assignment]  # None unless a mobile SDK sent one
        self.timeout_seconds = timeout_seconds
        # Monotonic, so a clock change on the machine cannot make an invocation look expired.
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:  # type: ignore[override]  # a staticmethod in the base
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def __repr__(self) -> str:
        return f"LambdaContext(function_name={self._function_name!r}, aws_request_id={self._aws_request_id!r})"


def new_context(
    function_name: str,
    timeout_seconds: float,
    *,
    region: str = "us-east-1",
    account_id: str = DEFAULT_ACCOUNT_ID,
    memory_mb: int = DEFAULT_MEMORY_MB,
    function_version: str = "$LATEST",
) -> LambdaContext:
    """A fresh context for one invocation: a new request id and the full timeout ahead of it."""
    day = datetime.now(UTC).strftime("%Y/%m/%d")
    return LambdaContext(
        function_name=function_name,
        function_version=function_version,
        invoked_function_arn=f"arn:aws:lambda:{region}:{account_id}:function:{function_name}",
        memory_limit_in_mb=memory_mb,
        aws_request_id=str(uuid.uuid4()),
        log_group_name=f"/aws/lambda/{function_name}",
        log_stream_name=f"{day}/[{function_version}]{uuid.uuid4().hex}",
        timeout_seconds=timeout_seconds,
    )
