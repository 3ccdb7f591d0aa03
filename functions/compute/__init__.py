"""Compute backends. `get_training_backend(settings)` picks one by `COMPUTE_BACKEND` and imports only that one.

Each backend module (`functions.compute.<name>`) exposes `create_backend(settings) -> TrainingBackend`. Imports stay
lazy: the Lambda bundle loads neither subprocess machinery nor the kubernetes client unless its backend is chosen.
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from functions.compute.base import TrainingBackend
    from functions.compute.serving import ServingBackend
    from functions.core.settings import Settings

_MODULES = {
    "local": "functions.compute.local",
    "ray": "functions.compute.ray",
    "eks": "functions.compute.eks",
    "sagemaker": "functions.compute.sagemaker",
}
# Serving: the ray backend trains on a Ray cluster and serves with the local backend's subprocesses.
_SERVING_MODULES = {
    "local": "functions.compute.local_serving",
    "ray": "functions.compute.local_serving",
    "eks": "functions.compute.eks",
    "sagemaker": "functions.compute.sagemaker_serving",
}
_cache: dict[str, TrainingBackend] = {}
_serving_cache: dict[str, ServingBackend] = {}
_cache_lock = threading.Lock()


class BackendUnavailable(RuntimeError):
    """COMPUTE_BACKEND names a backend this build does not have."""


def get_training_backend(settings: Settings | None = None) -> TrainingBackend:
    """One backend per distinct configuration: the local backend owns a launcher thread and the trainers it forked,
    so a reloaded but equal Settings object (tests clear `get_settings`) must find the same one."""
    if settings is None:
        from functions.core.settings import get_settings

        settings = get_settings()
    key = settings.model_dump_json()  # secrets dump masked: fine, no backend reads them
    with _cache_lock:
        backend = _cache.get(key)
        if backend is None:
            backend = _cache[key] = _create(settings)
        return backend


def get_serving_backend(settings: Settings | None = None) -> ServingBackend:
    """Like get_training_backend, for deployments: the module's `create_serving_backend(settings)`."""
    if settings is None:
        from functions.core.settings import get_settings

        settings = get_settings()
    key = settings.model_dump_json()
    with _cache_lock:
        backend = _serving_cache.get(key)
        if backend is None:
            module = _module(settings.compute_backend, _SERVING_MODULES)
            factory = getattr(module, "create_serving_backend", None)
            if not callable(factory):
                raise BackendUnavailable(f"{module.__name__} does not define create_serving_backend(settings)")
            backend = _serving_cache[key] = factory(settings)
        return backend


def reset_training_backends() -> None:
    """Forget created backends, training and serving (tests, and a settings reload); closes those that can be closed."""
    with _cache_lock:
        backends: list[object] = [*_cache.values(), *_serving_cache.values()]
        _cache.clear()
        _serving_cache.clear()
    for backend in backends:
        close = getattr(backend, "close", None)
        if callable(close):
            close()


def _create(settings: Settings) -> TrainingBackend:
    module = _module(settings.compute_backend, _MODULES)
    factory = getattr(module, "create_backend", None)
    if not callable(factory):
        raise BackendUnavailable(f"{module.__name__} does not define create_backend(settings)")
    backend: TrainingBackend = factory(settings)
    return backend


def _module(name: str, modules: dict[str, str]) -> ModuleType:
    module_name = modules.get(name)
    if module_name is None:
        raise BackendUnavailable(f"COMPUTE_BACKEND={name!r} is not a known backend; choose one of {sorted(_MODULES)}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # the backend exists but one of its own dependencies is missing: that message says which
        raise BackendUnavailable(
            f"COMPUTE_BACKEND={name!r}: {module_name} is missing from this installation; use 'local' or 'ray'"
        ) from exc
    return module
