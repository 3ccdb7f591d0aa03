"""What the control plane needs from a compute stack, whichever backend it is.

The compute stack deploys first; the control plane then asks it for environment variables, for the events to route
to the status worker, and to grant its roles. Grants are made in the *control plane's* scope (an `iam.Policy`
or access entry living there), because the compute stack cannot reference the control plane's roles or buckets
without a dependency cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct


@dataclass(frozen=True)
class FunctionRoles:
    api: iam.IRole
    dispatch: iam.IRole
    status: iam.IRole
    reconcile: iam.IRole


class ComputeBackend(Protocol):
    backend: str

    def function_environment(self) -> Mapping[str, str]:
        """Variables the dispatch, status and reconcile functions need to reach this backend."""
        ...

    def event_patterns(self) -> list[events.EventPattern]:
        """Backend state changes to deliver to the status queue (empty where state is polled instead)."""
        ...

    def grant_functions(self, scope: Construct, roles: FunctionRoles) -> None:
        """Let each function do exactly its part on this backend (the API proxies inference to it)."""
        ...

    def grant_data(self, scope: Construct, datasets: s3.IBucket, artifacts: s3.IBucket) -> None:
        """Let training jobs and inference servers read datasets and read/write artifacts."""
        ...
