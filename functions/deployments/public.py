"""The names a tenant sees for its deployments. An adapter riding on a shared server has that server's backend name
in its record (`name`, which the backend calls), and that server may be another tenant's `vllm-ft-{their code}-...`:
what a tenant reads is its own name, in seed 001's pattern, never another tenant's."""

from __future__ import annotations

from functions.compute.serving import serving_name
from functions.core.models import Deployment


def own_name(deployment: Deployment) -> str:
    """Seed 001's `vllm-ft-{tenant}-{base}-...` for an adapter on a shared server; a server's own name otherwise."""
    if deployment.dedicated:
        return deployment.name
    return serving_name("ft", deployment.client_code, deployment.base_model, deployment.id)


def shown_name(deployment: Deployment) -> str:
    """/v1/deployments' `name`: the shared server's when it names no tenant (`vllm-base-...`), else `own_name`."""
    if deployment.dedicated or deployment.name.startswith("vllm-base-"):
        return deployment.name
    return own_name(deployment)
