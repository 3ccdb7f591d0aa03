"""The Lambda bundle: what pip is asked for, that the ML stack stays out, and when the asset hash changes."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
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


def test_build_vendors_the_shared_training_spec_byte_for_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The trainer reads the spec the control plane builds: both must run the very same module.
    _fake_pip(monkeypatch, 0, ("fastapi", "pydantic"))
    bundle.build(tmp_path)
    for relative in bundle.VENDORED:
        assert (tmp_path / relative).read_bytes() == (bundle.ROOT / bundle.SHARED_SRC / relative).read_bytes()
    assert not (tmp_path / "ministudio_common" / "loader.py").exists()  # the rest of the package needs torch


def test_bundled_functions_import_the_spec_from_the_bundle_without_the_ml_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_pip(monkeypatch, 0, ("fastapi",))
    bundle.build(tmp_path)
    monkeypatch.undo()  # the fake pip replaced subprocess.run itself
    # Given only the bundle ahead of site-packages (which keeps pydantic, as the bundle's pip would), and torch barred
    code = textwrap.dedent(
        f"""
        import sys
        class Bar:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {sorted(bundle.HEAVY)!r}:
                    raise ImportError(name + " is not in the Lambda bundle")
        sys.meta_path.insert(0, Bar())
        sys.path.insert(0, {str(tmp_path)!r})
        import ministudio_common.spec, functions.compute.base, functions.jobs.launch
        same = functions.compute.base.TrainingSpec is ministudio_common.spec.TrainingSpec
        print(ministudio_common.spec.__file__, functions.__file__, same)
        """
    )
    # When the bundled control plane is imported, it runs the bundle's copy of the spec
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    spec_path, functions_path, same = out.stdout.split()
    assert Path(spec_path) == tmp_path / "ministudio_common" / "spec.py" and same == "True"
    assert Path(functions_path).is_relative_to(tmp_path)


def test_every_ministudio_common_module_functions_imports_is_vendored() -> None:
    imported = set()
    for path in (bundle.ROOT / bundle.PACKAGE).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            imported |= {n for n in names if n.startswith("ministudio_common")}
    vendored = {v.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for v in bundle.VENDORED}
    # `from ministudio_common.spec import TrainingSpec` names a class, not a module: only modules must be vendored
    modules = {n for n in imported if (bundle.ROOT / bundle.SHARED_SRC / (n.replace(".", "/") + ".py")).exists()}
    assert "ministudio_common.spec" in modules and modules <= vendored


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
    second = bundle.source_hash()
    assert second != first
    vendored = tmp_path / bundle.SHARED_SRC / bundle.VENDORED[-1]
    vendored.parent.mkdir(parents=True)
    vendored.write_text("SEED = 42\n")
    assert bundle.source_hash() != second  # the vendored spec is part of the asset


def test_lambda_runtime_matches_the_bundles_python() -> None:
    pytest.importorskip("aws_cdk", reason="the `cdk` extra is not installed")
    from infra.cdk.constructs.python_function import ARCHITECTURE, RUNTIME

    assert RUNTIME.name == f"python{bundle.PYTHON_VERSION}"
    assert ARCHITECTURE.name == "x86_64" and bundle.PLATFORM.endswith("_x86_64")
