"""One registration per compute backend (functions.core.backends.BACKENDS): settings accept exactly its names, each
entry names factories that exist, and nothing about the table imports a backend module before it is chosen."""

from __future__ import annotations

import importlib
import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from functions import compute
from functions.compute import BACKENDS, Backend, BackendUnavailable, get_serving_backend, reset_training_backends
from functions.core.settings import Settings


def test_settings_accept_exactly_the_registered_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in BACKENDS:
        assert Settings(_env_file=None, compute_backend=name).compute_backend == name
    with pytest.raises(ValidationError, match="unknown compute backend 'nomad'"):
        Settings(_env_file=None, compute_backend="nomad")
    # A new entry in the table is the only edit settings need to accept a new backend
    monkeypatch.setitem(BACKENDS, "nomad", BACKENDS["local"])
    assert Settings(_env_file=None, compute_backend="nomad").compute_backend == "nomad"


@pytest.mark.parametrize(("name", "role"), [(n, r) for n in BACKENDS for r in ("training", "serving")])
def test_every_entry_names_a_factory_that_exists(name: str, role: str) -> None:
    module_name, _, attribute = getattr(BACKENDS[name], role).partition(":")
    if name == "eks":
        pytest.importorskip("kubernetes", reason="the eks extra is not installed")
    assert callable(getattr(importlib.import_module(module_name), attribute))


def test_settings_validation_imports_no_backend_module() -> None:
    code = (
        "import sys; from functions.core.settings import Settings; Settings(_env_file=None, compute_backend='eks');"
        "print(sorted(m for m in sys.modules if m.startswith('functions.compute.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_serving_factory_comes_from_the_same_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Any] = []
    module = type(sys)("tests_fake_backend")

    def create_serving_backend(settings: Settings) -> str:
        made.append(settings)
        return "served"

    module.create_serving_backend = create_serving_backend  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tests_fake_backend", module)
    monkeypatch.setitem(
        BACKENDS, "fake", Backend("tests_fake_backend:nope", "tests_fake_backend:create_serving_backend")
    )
    settings = Settings(_env_file=None, compute_backend="fake")
    try:
        assert get_serving_backend(settings) == "served" and made == [settings]
        with pytest.raises(BackendUnavailable, match="does not define nope"):
            compute.get_training_backend(settings)
    finally:
        reset_training_backends()
