"""The compute backends, one entry each: where a backend's training and serving factories live, as import strings so
that reading this table (settings validation, the factory in functions/compute/__init__.py) imports no backend.
Adding a backend is a module under functions/compute/ and one entry here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backend:
    training: str  # "module:factory", the factory returning a TrainingBackend
    serving: str  # "module:factory", the factory returning a ServingBackend


BACKENDS: dict[str, Backend] = {
    "local": Backend(
        "functions.compute.local:create_backend", "functions.compute.local_serving:create_serving_backend"
    ),
    # The ray backend trains on a Ray cluster and serves with the local backend's subprocesses.
    "ray": Backend("functions.compute.ray:create_backend", "functions.compute.local_serving:create_serving_backend"),
    "eks": Backend("functions.compute.eks:create_backend", "functions.compute.eks:create_serving_backend"),
    "sagemaker": Backend(
        "functions.compute.sagemaker:create_backend", "functions.compute.sagemaker_serving:create_serving_backend"
    ),
}
