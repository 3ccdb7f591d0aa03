"""The Lambda bundle: what pip is asked for, that the ML stack stays out, and when the asset hash changes."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from infra.cdk import bundle


def test_bundle_asks_pip_for_lambda_wheels_not_this_machines() -> None:
    command = bundle.pip_command(Path("/out"), ["fastapi>=0.165"])
    joined = " ".join(command)
    assert "--platform manylinux2014_x86_64" in joined
    assert "--only-binary=:all:" in command
    assert "--python-version 3.12" in joined
    assert "--implementation cp" in joined
    assert command[-3:] == ["--target", "/out", "fastapi>=0.165"]


def test_bundle_holds_the_runtime_dependencies_and_no_ml_stack() -> None:
    core = {bundle.requirement_name(r) for r in bundle.runtime_requirements()}
    assert {"fastapi", "mangum", "aws-lambda-powertools", "pymongo", "redis", "pydantic-settings"} <= core
    assert not core & (bundle.HEAVY | {"moto", "mongomock", "uvicorn", "pytest", "kubernetes"})
    with_eks = {bundle.requirement_name(r) for r in bundle.runtime_requirements(("eks",))}
    assert with_eks - core == {"kubernetes"}
    with pytest.raises(bundle.BundlingError, match="no extra named"):
        bundle.runtime_requirements(("gpu",))


def _fake_pip(monkeypatch: pytest.MonkeyPatch, returncode: int, installs: tuple[str, ...] = ()) -> None:
    def run(command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        target = Path(command[command.index("--target") + 1])
        for dist in installs:
            (target / f"{dist}-1.0.dist-info").mkdir(parents=True)
        return subprocess.CompletedProcess(command, returncode, "", "ERROR: No matching distribution for nope")

    monkeypatch.setattr(bundle.subprocess, "run", run)


def test_build_copies_the_package_beside_the_dependencies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_pip(monkeypatch, 0, ("fastapi",))
    bundle.build(tmp_path)
    assert (tmp_path / "functions" / "api" / "handler.py").is_file()
    assert (tmp_path / "functions" / "workers" / "ingest.py").is_file()
    assert not list(tmp_path.rglob("__pycache__"))


def test_build_fails_with_pips_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_pip(monkeypatch, 1)
    with pytest.raises(bundle.BundlingError, match="No matching distribution"):
        bundle.build(tmp_path)


def test_build_refuses_a_bundle_that_pulled_in_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_pip(monkeypatch, 0, ("fastapi", "torch"))
    with pytest.raises(bundle.BundlingError, match="torch"):
        bundle.build(tmp_path)


def test_asset_hash_follows_the_package_and_pyproject_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "functions").mkdir()
    (tmp_path / "functions" / "app.py").write_text("x = 1\n")
    (tmp_path / "pyproject.toml").write_text("[project]\ndependencies = []\n")
    monkeypatch.setattr(bundle, "ROOT", tmp_path)
    first = bundle.source_hash()
    (tmp_path / "functions" / "__pycache__").mkdir()
    (tmp_path / "functions" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "README.md").write_text("docs")
    assert bundle.source_hash() == first
    assert bundle.source_hash(("eks",)) != first
    (tmp_path / "functions" / "app.py").write_text("x = 2\n")
    assert bundle.source_hash() != first


def test_lambda_runtime_matches_the_bundles_python() -> None:
    pytest.importorskip("aws_cdk", reason="the `cdk` extra is not installed")
    from infra.cdk.constructs.python_function import ARCHITECTURE, RUNTIME

    assert RUNTIME.name == f"python{bundle.PYTHON_VERSION}"
    assert ARCHITECTURE.name == "x86_64" and bundle.PLATFORM.endswith("_x86_64")
