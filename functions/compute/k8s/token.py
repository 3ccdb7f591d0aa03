"""EKS bearer tokens, made in-process the way `aws eks get-token` and aws-iam-authenticator make them.

A token is a presigned STS GetCallerIdentity URL whose signature covers an `x-k8s-aws-id: <cluster>` header,
base64url-encoded without padding and prefixed `k8s-aws-v1.`. The API server replays the URL to STS to learn the
caller's IAM role, then maps it through the cluster's access entries. No kubeconfig, no `aws` CLI, no exec plugin:
a Lambda has neither. EKS accepts a token for 15 minutes from its signing time (whatever X-Amz-Expires says), so
`TokenSource` hands out a cached token only while it is younger than `REFRESH_AFTER_SECONDS`.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from typing import Any

PREFIX = "k8s-aws-v1."
CLUSTER_HEADER = "x-k8s-aws-id"
PRESIGN_EXPIRES_SECONDS = 60  # what aws-iam-authenticator signs with; EKS itself allows 15 minutes
TOKEN_LIFETIME_SECONDS = 15 * 60
# A minute's margin under the lifetime covers clock skew and a request that starts just before the refresh.
REFRESH_AFTER_SECONDS = TOKEN_LIFETIME_SECONDS - 60


class TokenError(RuntimeError):
    """No AWS credentials to sign with: the eks backend cannot talk to the cluster."""


def sts_url(region: str) -> str:
    """The regional STS endpoint: EKS refuses tokens signed for the global endpoint in opt-in regions."""
    return f"https://sts.{region}.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15"


def eks_token(cluster_name: str, region: str, credentials: Any) -> str:
    """A fresh token for `cluster_name`, signed with botocore `credentials` (a `Credentials` object)."""
    from botocore.hooks import HierarchicalEmitter
    from botocore.model import ServiceId
    from botocore.signers import RequestSigner

    if credentials is None:
        raise TokenError(
            "no AWS credentials to sign an EKS token with: give the function a role (or AWS_* variables locally)"
        )
    emitter = HierarchicalEmitter()  # RequestSigner keeps only a weak reference: hold it for the call
    signer = RequestSigner(ServiceId("sts"), region, "sts", "v4", credentials, emitter)
    request = {
        "method": "GET",
        "url": sts_url(region),
        "body": {},
        "headers": {CLUSTER_HEADER: cluster_name},
        "context": {},
    }
    url = signer.generate_presigned_url(
        request, operation_name="", expires_in=PRESIGN_EXPIRES_SECONDS, region_name=region
    )
    return PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def decode(token: str) -> str:
    """The presigned URL inside a token (tests, and error messages that say which cluster a token was for)."""
    if not token.startswith(PREFIX):
        raise ValueError("not an EKS token: it does not start with k8s-aws-v1.")
    body = token[len(PREFIX) :]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()


class TokenSource:
    """Thread-safe cache of one cluster's token; `get()` signs a new one once the old is near its expiry.

    Credentials are read on every refresh (not once), so a rotated role session signs the next token.
    """

    def __init__(
        self,
        cluster_name: str,
        region: str,
        credentials: Callable[[], Any],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cluster_name = cluster_name
        self.region = region
        self._credentials = credentials
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._signed_at = 0.0

    def get(self) -> str:
        with self._lock:
            now = self._clock()
            if self._token is None or now - self._signed_at >= REFRESH_AFTER_SECONDS:
                self._token = eks_token(self.cluster_name, self.region, self._credentials())
                self._signed_at = now
            return self._token
