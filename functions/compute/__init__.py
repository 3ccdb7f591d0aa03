"""Compute backends. `get_training_backend(settings)` picks one by `COMPUTE_BACKEND` and imports only that one.

Each backend module (`functions.compute.<name>`) exposes `create_backend(settings) -> TrainingBackend`. Imports stay
lazy: the Lambda bundle loads neither subprocess machinery nor the kubernetes client unless its backend is chosen.
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from functions.compute.base import TrainingBackend
    from functions.core.settings import Settings

_MODULES = {
    "local": "functions.compute.local",
    "ray": "functions.compute.ray",
    "eks": "functions.compute.eks",
    "sagemaker": "functions.compute.sagemaker",
}
_cache: dict[str, TrainingBackend] = {}
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


def reset_training_backends() -> None:
    """Forget created backends (tests, and a settings reload); closes those that can be closed."""
    with _cache_lock:
        backends = list(_cache.values())
        _cache.clear()
    for backend in backends:
        close = getattr(backend, "close", None)
        if callable(close):
            close()


def _create(settings: Settings) -> TrainingBackend:
    name = settings.compute_backend
    module_name = _MODULES.get(name)
    if module_name is None:
        raise BackendUnavailable(f"COMPUTE_BACKEND={name!r} is not a known backend; choose one of {sorted(_MODULES)}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # the backend exists but one of its own dependencies is missing: that message says which
        raise BackendUnavailable(
            f"COMPUTE_BACKEND={name!r}: {module_name} is not part of this build yet; use 'local' or 'ray'"
        ) from exc
    factory = getattr(module, "create_backend", None)
    if not callable(factory):
        raise BackendUnavailable(f"{module_name} does not define create_backend(settings)")
    backend: TrainingBackend = factory(settings)
    return backend
