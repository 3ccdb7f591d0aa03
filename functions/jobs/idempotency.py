"""What a fine-tuning job's Idempotency-Key stands for: a fingerprint of the request, stored with the job, so a
repeated request gets its job back and a key reused for a different request is refused (Stripe's and OpenAI's
idempotency keys)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from functions.core.errors import Conflict
from functions.core.models import Job
from functions.store.mongo import Store

FINGERPRINTED = (
    "model",
    "training_file",
    "validation_file",
    "hyperparameters",
    "suffix",
    "seed",
    "metadata",
    "compute",
)


def request_fingerprint(**params: Any) -> dict[str, str]:
    """A hash of each request parameter's canonical JSON: what an Idempotency-Key stands for. Per field, so a
    reused key can be told which fields differ; hashes, so nothing of the request is stored twice."""
    canonical = {
        **params,
        "hyperparameters": {k: v for k, v in (params.get("hyperparameters") or {}).items() if v != "auto"},
        "metadata": params.get("metadata") or None,  # "auto" and absent, {} and absent: the same request
    }

    def digest(value: Any) -> str:
        return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]

    return {name: digest(canonical.get(name)) for name in FINGERPRINTED}


def replay(store: Store, client_code: str, key: str, fingerprint: dict[str, str]) -> Job | None:
    """The job this key already made, if the request is the same one (Stripe's and OpenAI's idempotency keys)."""
    found = store.jobs.by_idempotency_key(client_code, key)
    if found is None:
        return None
    job, stored = found
    # A field added since the job was stored (compute) is not held against it.
    differing = [n for n in FINGERPRINTED if stored is not None and stored.get(n, fingerprint[n]) != fingerprint[n]]
    if differing:
        raise Conflict(
            f"Idempotency-Key {key!r} was already used for fine-tuning job {job.id} with different parameters "
            f"({', '.join(differing)} differ); repeat that request exactly to get the job again, or use a new key",
            param="Idempotency-Key",
            code="idempotency_key_reused",
        )
    return job
